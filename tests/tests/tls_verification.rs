//! TLS to nsqd, configured from PEM files with `TlsConfig::builder`, verifies the server by
//! default: a certificate from a CA the client does not trust (the system's roots included),
//! or for another name, is refused with a typed, permanent error, against nsq-server-lite and
//! real nsqd 1.3.0 (skipped without `NSQD_BIN` unless `CI` is set); the right CA file and
//! name connect. The loudly named opt-out connects to anything. A broker requiring client
//! certificates refuses a client without one and accepts the certificate and key files.

use std::time::Duration;

use nsq_client::{
    Channel, ConnectError, ConnectedError, ConnectionConfig, Consumer, ConsumerConfig,
    ConsumerFailure, TlsConfig, TlsConfigError, Topic,
};
use nsq_tests::broker::{Broker, BrokerKind, BrokerOpts, BrokerTls};
use nsq_tests::tls::{TestCerts, SERVER_NAME};

const KINDS: [BrokerKind; 2] = [BrokerKind::Lite, BrokerKind::RealNsqd];
const WAIT: Duration = Duration::from_secs(20);

fn consumer(broker: &Broker, tls: TlsConfig) -> Consumer {
    Consumer::builder(Topic::new("tls").unwrap(), Channel::new("c").unwrap())
        .nsqd(broker.tcp_addr().to_string())
        .config(ConsumerConfig::default().connection(ConnectionConfig::default().tls(tls)))
        .build()
        .unwrap()
}

/// The refusal `connected()` reports; panics on anything else.
async fn refusal(consumer: &Consumer, what: &str) -> std::sync::Arc<ConnectError> {
    match consumer.connected(WAIT).await {
        Err(ConnectedError::Refused(ConsumerFailure::Nsqd(e))) => e,
        other => panic!("{what}: expected a permanent refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_ca_or_a_wrong_name_is_refused_and_the_right_ones_connect() {
    let all = futures::future::join_all(KINDS.map(verification));
    tokio::time::timeout(Duration::from_secs(120), all)
        .await
        .expect("within 120 s");
}

async fn verification(kind: BrokerKind) {
    let what = kind.name();
    if !kind.available() {
        return;
    }
    let certs = TestCerts::generate();
    let opts = BrokerOpts {
        tls: Some(BrokerTls::server(&certs)),
        ..BrokerOpts::default()
    };
    let broker = Broker::start(kind, &opts).await.unwrap();

    let stranger = TestCerts::generate();
    let c = consumer(&broker, from_files(&stranger, SERVER_NAME));
    let e = refusal(&c, &format!("{what}: an untrusted CA")).await;
    assert!(matches!(*e, ConnectError::Tls { .. }), "{what}: {e:?}");
    assert!(e.is_permanent());
    c.stop().await;

    // No CA file: the system's roots, which do not hold the test CA.
    match TlsConfig::builder().server_name(SERVER_NAME).build() {
        Ok(system) => {
            let c = consumer(&broker, system);
            let e = refusal(&c, &format!("{what}: the system's roots")).await;
            assert!(matches!(*e, ConnectError::Tls { .. }), "{what}: {e:?}");
            c.stop().await;
        }
        Err(TlsConfigError::NoSystemRoots { details }) => {
            eprintln!("{what}: no system roots here ({details}); that refusal is the builder's");
        }
        Err(other) => panic!("{what}: system roots: {other}"),
    }

    let c = consumer(&broker, from_files(&certs, "not-the-server.example"));
    let e = refusal(&c, &format!("{what}: a wrong name")).await;
    assert!(matches!(*e, ConnectError::Tls { .. }), "{what}: {e:?}");
    c.stop().await;

    let c = consumer(&broker, from_files(&certs, SERVER_NAME));
    c.connected(WAIT)
        .await
        .unwrap_or_else(|e| panic!("{what}: the right CA and name: {e}"));
    c.stop().await;

    // The opt-out: an untrusted CA and a wrong name, accepted.
    let insecure = TlsConfig::builder()
        .ca_file(&stranger.ca_cert)
        .server_name("not-the-server.example")
        .danger_accept_invalid_certs()
        .build()
        .unwrap();
    assert!(!insecure.verifies_certificates());
    let c = consumer(&broker, insecure);
    c.connected(WAIT)
        .await
        .unwrap_or_else(|e| panic!("{what}: with verification off: {e}"));
    c.stop().await;
}

/// TLS trusting `certs`' CA file, verifying `name`.
fn from_files(certs: &TestCerts, name: &str) -> TlsConfig {
    TlsConfig::builder()
        .ca_file(&certs.ca_cert)
        .server_name(name)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_requiring_client_certificates_refuses_a_client_without_one() {
    let all = futures::future::join_all(KINDS.map(client_certificates));
    tokio::time::timeout(Duration::from_secs(120), all)
        .await
        .expect("within 120 s");
}

async fn client_certificates(kind: BrokerKind) {
    let what = kind.name();
    if !kind.available() {
        return;
    }
    let certs = TestCerts::generate();
    let opts = BrokerOpts {
        tls: Some(BrokerTls {
            cert: certs.server_cert.clone(),
            key: certs.server_key.clone(),
            client_ca: Some(certs.ca_cert.clone()),
        }),
        ..BrokerOpts::default()
    };
    let broker = Broker::start(kind, &opts).await.unwrap();
    let without = consumer(&broker, from_files(&certs, SERVER_NAME));
    let e = refusal(&without, &format!("{what}: no client certificate")).await;
    assert!(matches!(*e, ConnectError::Tls { .. }), "{what}: {e:?}");
    without.stop().await;

    let with_cert = TlsConfig::builder()
        .ca_file(&certs.ca_cert)
        .client_cert_files(&certs.client_cert, &certs.client_key)
        .server_name(SERVER_NAME)
        .build()
        .unwrap();
    let with = consumer(&broker, with_cert);
    with.connected(WAIT)
        .await
        .unwrap_or_else(|e| panic!("{what}: with the client certificate: {e}"));
    with.stop().await;
}
