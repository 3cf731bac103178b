#![allow(clippy::print_stdout)] // reporting what happened is the point of this example
//! AUTH: an nsqd that asks an auth service who a secret belongs to and what it may do.
//!
//! Run with:
//!
//! ```text
//! cargo run -p nsq-examples --example auth
//! ```
//!
//! Starts an nsq-server-lite nsqd with TLS and an in-process authenticator (a real nsqd asks
//! an HTTP service: `--auth-http-address`; nsq-server-lite can do that too). Then:
//!
//! 1. a producer with the right secret over TLS publishes to the topic its grant allows;
//! 2. the same secret may not publish elsewhere: nsqd's `E_UNAUTHORIZED`, as a typed error;
//! 3. a wrong secret is refused at connect, permanently (retrying cannot fix it);
//! 4. over plain TCP the client refuses to send the secret at all (`AuthWithoutTls`) unless
//!    told otherwise with `allow_plaintext_auth(true)`.

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use nsq_client::{ConnectionConfig, Producer, ProducerConfig, TlsConfig, Topic};
use nsq_server_lite::auth::{AuthState, Authorization, Permission, StaticAuth};
use nsq_server_lite::Nsqd;

#[path = "support/certs.rs"]
mod certs;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let certs = certs::Certs::generate()?;
    // "billing" may publish to topics starting with "invoices", nothing else.
    let grant = Authorization::new("^invoices", [".*"], [Permission::Publish])?;
    let auth = StaticAuth::new().with_secret(
        "billing-secret",
        AuthState::new("billing", Duration::from_secs(3600)).with(grant),
    );
    let nsqd = Nsqd::builder()
        .tls(certs.server_config()?)
        .authenticator(Arc::new(auth))
        .start()
        .await?;
    let addr = nsqd.tcp_addr().to_string();
    println!("nsqd with AUTH on {addr}");
    let tls = TlsConfig::builder()
        .ca_file(&certs.ca)
        .server_name("localhost")
        .build()?;

    // 1. The right secret, over TLS, to an allowed topic.
    let billing = producer(&addr, Some(tls.clone()), "billing-secret")?;
    billing.publish(&Topic::new("invoices")?, "INV-1").await?;
    println!("1. billing published to \"invoices\"");

    // 2. A topic the grant does not cover.
    let err = billing
        .publish(&Topic::new("payroll")?, "nope")
        .await
        .expect_err("not granted");
    println!("2. billing to \"payroll\": {err}");
    billing.stop().await;

    // 3. A secret the auth service does not know.
    let stranger = producer(&addr, Some(tls), "guessed")?;
    let err = stranger
        .publish(&Topic::new("invoices")?, "nope")
        .await
        .expect_err("unknown secret");
    let permanent = err.connect_error().is_some_and(|e| e.is_permanent());
    println!("3. a wrong secret: {err} (permanent: {permanent})");
    stranger.stop().await;

    // 4. No TLS: the secret is not sent.
    let plain = producer(&addr, None, "billing-secret")?;
    let err = plain
        .publish(&Topic::new("invoices")?, "nope")
        .await
        .expect_err("AUTH over plain TCP");
    println!("4. over plain TCP: {err}");
    plain.stop().await;

    nsqd.shutdown().await;
    Ok(())
}

fn producer(
    addr: &str,
    tls: Option<TlsConfig>,
    secret: &str,
) -> Result<Producer, nsq_client::ConfigError> {
    let mut connection = ConnectionConfig::default().auth_secret(secret);
    if let Some(tls) = tls {
        connection = connection.tls(tls);
    }
    let config = ProducerConfig::default()
        .publish_timeout(Some(Duration::from_secs(5)))
        .connection(connection);
    Producer::new(addr, config)
}
