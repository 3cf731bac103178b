//! The client's care of an AUTH secret, against nsq-server-lite and real nsqd 1.3.0 (the real
//! one is skipped without `NSQD_BIN` unless `CI` is set), both requiring AUTH through the
//! harness's auth service:
//!
//! * over plain TCP the secret is not sent unless `allow_plaintext_auth(true)` says so: the
//!   consumer and the producer get the permanent `ConnectError::AuthWithoutTls`, and the auth
//!   service never hears of the secret;
//! * over TLS it is sent with no opt-in;
//! * no log line, at any level, holds it.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nsq_client::{
    Channel, ConnectError, ConnectedError, ConnectionConfig, Consumer, ConsumerConfig,
    ConsumerFailure, Producer, ProducerConfig, PublishErrorKind, TlsConfig, Topic,
};
use nsq_tests::broker::{Broker, BrokerKind, BrokerOpts, BrokerTls};
use nsq_tests::tls::{TestCerts, SERVER_NAME};

const SECRET: &str = "correct-horse-battery-staple";
const WAIT: Duration = Duration::from_secs(20);

fn grant() -> serde_json::Value {
    serde_json::json!({
        "ttl": 3600, "identity": "tester", "identity_url": "",
        "authorizations": [{"topic": ".*", "channels": [".*"], "permissions": ["subscribe", "publish"]}],
    })
}

fn consumer(broker: &Broker, connection: ConnectionConfig) -> Consumer {
    Consumer::builder(Topic::new("auth").unwrap(), Channel::new("c").unwrap())
        .nsqd(broker.tcp_addr().to_string())
        .config(ConsumerConfig::default().connection(connection))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auth_secret_is_not_sent_over_plaintext_unless_allowed() {
    nsq_tests::broker::each_kind(Duration::from_secs(120), plaintext).await;
}

async fn plaintext(kind: BrokerKind) {
    let what = kind.name();
    if !kind.available() {
        return;
    }
    let service = nsq_tests::auth::serve(SECRET, grant()).await;
    let opts = BrokerOpts {
        auth_http_address: Some(service.addr.to_string()),
        ..BrokerOpts::default()
    };
    let broker = Broker::start(kind, &opts).await.unwrap();
    let addr = broker.tcp_addr().to_string();

    let c = consumer(&broker, ConnectionConfig::default().auth_secret(SECRET));
    match c.connected(WAIT).await {
        Err(ConnectedError::Refused(ConsumerFailure::Nsqd(e))) => {
            assert!(
                matches!(&*e, ConnectError::AuthWithoutTls { addr: a } if *a == addr),
                "{what}: {e:?}"
            );
            assert!(e.is_permanent(), "{what}");
            assert!(!e.to_string().contains(SECRET), "{what}: {e}");
        }
        other => panic!("{what}: expected AuthWithoutTls, got {other:?}"),
    }
    c.stop().await;

    let p = Producer::new(
        &addr,
        ProducerConfig::default().connection(ConnectionConfig::default().auth_secret(SECRET)),
    )
    .unwrap();
    let err = p
        .publish(&Topic::new("auth").unwrap(), "never sent")
        .await
        .expect_err("no publish without AUTH");
    match err.kind() {
        PublishErrorKind::Connect(e) => {
            assert!(
                matches!(**e, ConnectError::AuthWithoutTls { .. }),
                "{what}: {e:?}"
            );
        }
        other => panic!("{what}: expected a connect failure, got {other:?}"),
    }
    p.stop().await;
    assert_eq!(
        service.requests(),
        0,
        "{what}: the auth service heard of the secret"
    );

    // Opting in sends it, and the broker grants the subscription.
    let c = consumer(
        &broker,
        ConnectionConfig::default()
            .auth_secret(SECRET)
            .allow_plaintext_auth(true),
    );
    c.connected(WAIT).await.expect("opted in");
    c.stop().await;
    assert!(service.requests() >= 1, "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_the_secret_is_sent_without_opting_in() {
    nsq_tests::broker::each_kind(Duration::from_secs(120), over_tls).await;
}

async fn over_tls(kind: BrokerKind) {
    let what = kind.name();
    if !kind.available() {
        return;
    }
    let service = nsq_tests::auth::serve(SECRET, grant()).await;
    let certs = TestCerts::generate();
    let opts = BrokerOpts {
        auth_http_address: Some(service.addr.to_string()),
        tls: Some(BrokerTls::server(&certs)),
        ..BrokerOpts::default()
    };
    let broker = Broker::start(kind, &opts).await.unwrap();
    let tls = TlsConfig::new(certs.client_config()).server_name(SERVER_NAME);
    let c = consumer(
        &broker,
        ConnectionConfig::default().tls(tls).auth_secret(SECRET),
    );
    c.connected(WAIT)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    c.stop().await;
    assert!(service.requests() >= 1, "{what}");
}

/// Everything the subscriber writes, shared with the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_secret_never_reaches_the_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // A current-thread runtime keeps every task on this thread, under this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let service = nsq_tests::auth::serve(SECRET, grant()).await;
        let opts = BrokerOpts {
            auth_http_address: Some(service.addr.to_string()),
            ..BrokerOpts::default()
        };
        let broker = Broker::start(BrokerKind::Lite, &opts).await.unwrap();
        let connection = |secret: &str| {
            ConnectionConfig::default()
                .auth_secret(secret)
                .allow_plaintext_auth(true)
        };
        // Granted, refused, and refused before sending: every path the secret can take.
        let c = consumer(&broker, connection(SECRET));
        c.connected(WAIT).await.expect("granted");
        c.stop().await;
        let wrong = format!("{SECRET}-but-wrong");
        let c = consumer(&broker, connection(&wrong));
        c.connected(WAIT).await.expect_err("refused");
        c.stop().await;
        let c = consumer(&broker, ConnectionConfig::default().auth_secret(SECRET));
        c.connected(WAIT).await.expect_err("not sent");
        tracing::debug!(config = ?connection(SECRET), "the configuration as Debug shows it");
        c.stop().await;
        let p = Producer::new(
            broker.tcp_addr().to_string(),
            ProducerConfig::default().connection(connection(SECRET)),
        )
        .unwrap();
        p.publish(&Topic::new("auth").unwrap(), "logged?")
            .await
            .expect("PUB");
        p.stop().await;
    });
    drop(rt);
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("authenticated"),
        "the logs were not captured:\n{logs}"
    );
    assert!(!logs.contains(SECRET), "the secret is in the logs:\n{logs}");
}
