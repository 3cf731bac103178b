#![allow(clippy::print_stdout)] // reporting what happened is the point of this example
//! TLS from the files an operator hands out: a CA certificate to trust, and optionally a
//! client certificate and key.
//!
//! Run with:
//!
//! ```text
//! cargo run -p nsq-examples --example tls
//! ```
//!
//! Generates a throwaway CA and server certificate, starts an nsq-server-lite nsqd that
//! requires TLS (`--tls-required`, `--tls-cert`, `--tls-key`), then:
//!
//! 1. connects with `TlsConfig::builder().ca_file(..)`: verified, publishes and consumes;
//! 2. connects trusting only the system's roots: refused, as a typed permanent error;
//! 3. connects with verification turned off (`danger_accept_invalid_certs`): accepted, which
//!    is why that option carries its name.
//!
//! Against a real nsqd: `nsqd --tls-cert=server.pem --tls-key=server.key --tls-required=true`
//! and the same client code. A client certificate is one more line:
//! `.client_cert_files("client.pem", "client.key")`.

use std::error::Error;
use std::time::Duration;

use nsq_client::{ConnectionConfig, Producer, ProducerConfig, TlsConfig, TlsConfigError, Topic};
use nsq_server_lite::{Nsqd, TlsRequired};

#[path = "support/certs.rs"]
mod certs;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let certs = certs::Certs::generate()?;
    let nsqd = Nsqd::builder()
        .tls(certs.server_config()?)
        .tls_required(TlsRequired::Yes)
        .start()
        .await?;
    let addr = nsqd.tcp_addr().to_string();
    let topic = Topic::new("secure")?;
    println!(
        "nsqd requiring TLS on {addr}; CA file {}",
        certs.ca.display()
    );

    // 1. The CA file: the server's certificate is verified against it, for `localhost`.
    let tls = TlsConfig::builder()
        .ca_file(&certs.ca)
        .server_name("localhost")
        .build()?;
    let producer = tls_producer(&addr, tls)?;
    producer.publish(&topic, "over TLS").await?;
    println!("1. with the CA file: published, nsqd answered OK over TLS");
    producer.stop().await;

    // 2. Only the system's roots: they do not know this CA.
    match TlsConfig::builder().server_name("localhost").build() {
        Ok(system_roots) => {
            let producer = tls_producer(&addr, system_roots)?;
            let err = producer
                .publish(&topic, "never sent")
                .await
                .expect_err("an unknown CA is refused");
            let cause = err.connect_error().ok_or("a connect error")?;
            println!(
                "2. with the system's roots: refused ({cause}; permanent: {})",
                cause.is_permanent()
            );
            producer.stop().await;
        }
        Err(TlsConfigError::NoSystemRoots { details }) => {
            println!("2. this machine has no system roots ({details}); skipped");
        }
        Err(other) => return Err(other.into()),
    }

    // 3. Verification off: anything is accepted. Logged as a warning when built.
    let insecure = TlsConfig::builder().danger_accept_invalid_certs().build()?;
    let producer = tls_producer(&addr, insecure)?;
    producer.publish(&topic, "unverified").await?;
    println!("3. with danger_accept_invalid_certs: published to a server nobody verified");
    producer.stop().await;

    nsqd.shutdown().await;
    Ok(())
}

fn tls_producer(addr: &str, tls: TlsConfig) -> Result<Producer, nsq_client::ConfigError> {
    let config = ProducerConfig::default()
        .publish_timeout(Some(Duration::from_secs(5)))
        .connection(ConnectionConfig::default().tls(tls));
    Producer::new(addr, config)
}
