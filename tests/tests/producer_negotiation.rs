//! `nsq_client::Producer` negotiating each feature with nsq-server-lite and real nsqd 1.3.0:
//! TLS (with and without a client certificate), snappy, deflate, both compressions over TLS,
//! and AUTH. In each case the producer publishes and multi-publishes, the messages arrive, and
//! the broker's `/stats` shows the connection with exactly the features asked for. Failures are
//! checked too: certificate verification is on by default, a broker that requires a client
//! certificate refuses a producer without one, and AUTH with a wrong or no secret fails clearly.
//!
//! Each test runs against both brokers (the real one is skipped without `NSQD_BIN`, unless `CI`
//! is set).

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use nsq_client::proto::Topic;
use nsq_client::{
    Compression, ConnectionConfig, Producer, ProducerConfig, PublishError, PublishErrorKind,
    TlsConfig,
};
use nsq_server_lite::stats::ClientStats;
use nsq_tests::broker::{Broker, BrokerKind, BrokerOpts, BrokerTls};
use nsq_tests::consume;
use nsq_tests::tls::{TestCerts, SERVER_NAME};
use tokio::time::Instant;

const KINDS: [BrokerKind; 2] = [BrokerKind::Lite, BrokerKind::RealNsqd];
const TOPIC: &str = "negotiated";
const CHANNEL: &str = "c";
/// How long a condition polled on `/stats` may take to hold.
const WAIT: Duration = Duration::from_secs(10);

/// What a case asks of TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tls {
    Off,
    /// The broker requires TLS; the producer trusts its CA.
    On,
    /// As `On`, and the broker requires and verifies a client certificate, which the
    /// producer presents.
    ClientCert,
}

#[derive(Debug, Clone, Copy)]
struct Case {
    name: &'static str,
    tls: Tls,
    compression: Compression,
}

const CASES: [Case; 7] = [
    Case {
        name: "plain",
        tls: Tls::Off,
        compression: Compression::None,
    },
    Case {
        name: "tls",
        tls: Tls::On,
        compression: Compression::None,
    },
    Case {
        name: "tls-snappy",
        tls: Tls::On,
        compression: Compression::Snappy,
    },
    Case {
        name: "tls-deflate",
        tls: Tls::On,
        compression: Compression::Deflate { level: 3 },
    },
    Case {
        name: "snappy",
        tls: Tls::Off,
        compression: Compression::Snappy,
    },
    Case {
        name: "deflate",
        tls: Tls::Off,
        compression: Compression::Deflate { level: 3 },
    },
    Case {
        name: "tls-client-cert",
        tls: Tls::ClientCert,
        compression: Compression::None,
    },
];

fn broker_tls(certs: &TestCerts, tls: Tls) -> Option<BrokerTls> {
    (tls != Tls::Off).then(|| BrokerTls {
        cert: certs.server_cert.clone(),
        key: certs.server_key.clone(),
        client_ca: (tls == Tls::ClientCert).then(|| certs.ca_cert.clone()),
    })
}

fn producer(addr: impl ToString, connection: ConnectionConfig) -> Producer {
    let config = ProducerConfig::default()
        .publish_timeout(Some(Duration::from_secs(10)))
        .connection(connection);
    Producer::new(addr.to_string(), config).expect("valid config")
}

/// Waits until `check` is `Ok` (polling every 20 ms), or fails with its last error.
async fn eventually<F, Fut, T>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(why) if Instant::now() >= deadline => panic!("{what} within {WAIT:?}: {why}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// The broker's `/stats` entry for the connected producer whose client_id is `id`.
async fn producer_stats(broker: &Broker, id: &str) -> ClientStats {
    eventually(&format!("producer {id} in /stats"), || async {
        let stats = broker.stats().await?;
        stats
            .producers
            .into_iter()
            .find(|c| c.client_id == id)
            .ok_or_else(|| format!("no producer {id}"))
    })
    .await
}

/// How many messages the broker's topic holds (0 when the topic does not exist).
async fn message_count(broker: &Broker) -> u64 {
    let stats = broker.stats().await.expect("stats");
    stats.topic(TOPIC).map_or(0, |t| t.message_count)
}

/// PUB one and MPUB two, and check they arrive.
async fn publish_and_check(broker: &Broker, p: &Producer, consume_plain: bool) {
    let topic = Topic::new(TOPIC).unwrap();
    p.publish(&topic, "one").await.expect("PUB");
    p.multi_publish(&topic, vec![Bytes::from("two"), Bytes::from("three")])
        .await
        .expect("MPUB");
    assert_eq!(message_count(broker).await, 3);
    if consume_plain {
        let bodies = consume::take(broker.tcp_addr(), TOPIC, CHANNEL, 3, 10, WAIT)
            .await
            .unwrap();
        assert_eq!(bodies, ["one", "two", "three"]);
    }
}

async fn negotiation_case(kind: BrokerKind, certs: &TestCerts, case: Case) {
    let opts = BrokerOpts {
        tls: broker_tls(certs, case.tls),
        ..BrokerOpts::default()
    };
    let broker = Broker::start(kind, &opts).await.expect("broker starts");
    broker.create_channel(TOPIC, CHANNEL).await.unwrap();
    let id = format!("neg-{}", case.name);
    let mut connection = ConnectionConfig::default()
        .client_id(&id)
        .compression(case.compression);
    connection = match case.tls {
        Tls::Off => connection,
        // The default server name is the host connected to (127.0.0.1, in the certificate).
        Tls::On => connection.tls(TlsConfig::new(certs.client_config())),
        Tls::ClientCert => {
            connection.tls(TlsConfig::new(certs.client_config_with_cert()).server_name(SERVER_NAME))
        }
    };
    let p = producer(broker.tcp_addr(), connection);
    // A TLS-only broker refuses plain consumers; the message count says they arrived.
    publish_and_check(&broker, &p, case.tls == Tls::Off).await;

    let client = producer_stats(&broker, &id).await;
    let what = format!("{} {}: {client:?}", kind.name(), case.name);
    assert_eq!(client.tls, case.tls != Tls::Off, "tls: {what}");
    assert_eq!(
        client.snappy,
        case.compression == Compression::Snappy,
        "snappy: {what}"
    );
    assert_eq!(
        client.deflate,
        matches!(case.compression, Compression::Deflate { .. }),
        "deflate: {what}"
    );
    assert!(!client.authed, "authed: {what}");
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_negotiated_feature_publishes_and_shows_in_stats() {
    let certs = TestCerts::generate();
    for kind in KINDS {
        if !kind.available() {
            continue;
        }
        // The cases of one broker kind run concurrently, each with its own broker.
        futures::future::join_all(
            CASES
                .iter()
                .map(|case| negotiation_case(kind, &certs, *case)),
        )
        .await;
    }
}

fn connect_error(err: &PublishError) -> &str {
    match err.kind() {
        PublishErrorKind::Connect(why) => why,
        other => panic!("expected a connect error, got {other:?}: {err}"),
    }
}

#[tokio::test]
async fn tls_verification_is_on_by_default() {
    let certs = TestCerts::generate();
    let strangers = TestCerts::generate();
    let opts = BrokerOpts {
        tls: broker_tls(&certs, Tls::On),
        ..BrokerOpts::default()
    };
    for kind in KINDS {
        if !kind.available() {
            continue;
        }
        let broker = Broker::start(kind, &opts).await.expect("broker starts");
        // Trusts another CA only: the broker's certificate must be rejected.
        let connection = ConnectionConfig::default().tls(TlsConfig::new(strangers.client_config()));
        let p = producer(broker.tcp_addr(), connection);
        let err = p
            .publish(&Topic::new(TOPIC).unwrap(), "x")
            .await
            .unwrap_err();
        let why = connect_error(&err);
        assert!(
            why.contains("invalid peer certificate"),
            "{}: {why}",
            kind.name()
        );
        assert_eq!(err.into_body().as_deref(), Some(&b"x"[..]));
        assert_eq!(message_count(&broker).await, 0);

        // The right CA, but a name the certificate is not for.
        let connection = ConnectionConfig::default()
            .tls(TlsConfig::new(certs.client_config()).server_name("not-the-broker.invalid"));
        let p = producer(broker.tcp_addr(), connection);
        let err = p.ping().await.unwrap_err();
        let why = connect_error(&err);
        assert!(
            why.contains("invalid peer certificate"),
            "{}: {why}",
            kind.name()
        );
    }
}

#[tokio::test]
async fn a_broker_requiring_a_client_certificate_refuses_a_producer_without_one() {
    let certs = TestCerts::generate();
    let opts = BrokerOpts {
        tls: broker_tls(&certs, Tls::ClientCert),
        ..BrokerOpts::default()
    };
    for kind in KINDS {
        if !kind.available() {
            continue;
        }
        let broker = Broker::start(kind, &opts).await.expect("broker starts");
        let connection = ConnectionConfig::default().tls(TlsConfig::new(certs.client_config()));
        let p = producer(broker.tcp_addr(), connection);
        let err = p
            .publish(&Topic::new(TOPIC).unwrap(), "x")
            .await
            .unwrap_err();
        let why = connect_error(&err);
        assert!(
            why.contains("CertificateRequired"),
            "{}: {why}",
            kind.name()
        );
        assert_eq!(message_count(&broker).await, 0, "{}", kind.name());
    }
}

const SECRET: &str = "producer-secret";

/// A broker of `kind` that requires AUTH, decided by the auth service at `service`.
async fn auth_broker(kind: BrokerKind, service: std::net::SocketAddr) -> Broker {
    let opts = BrokerOpts {
        auth_http_address: Some(service.to_string()),
        ..BrokerOpts::default()
    };
    Broker::start(kind, &opts).await.expect("broker starts")
}

async fn auth_service() -> std::net::SocketAddr {
    let grant = serde_json::json!({
        "ttl": 3600,
        "identity": "producer",
        "identity_url": "https://auth.invalid/producer",
        "authorizations": [
            {"topic": ".*", "channels": [".*"], "permissions": ["publish", "subscribe"]},
        ],
    });
    nsq_tests::auth::start(SECRET, grant).await
}

#[tokio::test]
async fn auth_with_the_right_secret_publishes_and_is_authed() {
    let service = auth_service().await;
    for kind in KINDS {
        if !kind.available() {
            continue;
        }
        let broker = auth_broker(kind, service).await;
        let id = "neg-auth";
        let connection = ConnectionConfig::default()
            .client_id(id)
            .auth_secret(SECRET);
        let p = producer(broker.tcp_addr(), connection);
        let topic = Topic::new(TOPIC).unwrap();
        p.publish(&topic, "one").await.expect("PUB");
        p.multi_publish(&topic, vec![Bytes::from("two"), Bytes::from("three")])
            .await
            .expect("MPUB");
        assert_eq!(message_count(&broker).await, 3, "{}", kind.name());
        let client = producer_stats(&broker, id).await;
        let what = format!("{}: {client:?}", kind.name());
        assert!(client.authed, "{what}");
        assert_eq!(client.auth_identity, "producer", "{what}");
        assert!(!client.tls && !client.snappy && !client.deflate, "{what}");
        p.close().await;
    }
}

#[tokio::test]
async fn auth_with_a_wrong_or_no_secret_fails_clearly() {
    let service = auth_service().await;
    for kind in KINDS {
        if !kind.available() {
            continue;
        }
        let broker = auth_broker(kind, service).await;
        let topic = Topic::new(TOPIC).unwrap();

        let wrong = producer(
            broker.tcp_addr(),
            ConnectionConfig::default().auth_secret("not-the-secret"),
        );
        let err = wrong.publish(&topic, "x").await.unwrap_err();
        let why = connect_error(&err);
        assert!(
            why.contains("refused the handshake") && why.contains("E_AUTH_FAILED"),
            "{}: {why}",
            kind.name()
        );
        assert_eq!(err.into_body().as_deref(), Some(&b"x"[..]));

        let none = producer(broker.tcp_addr(), ConnectionConfig::default());
        let err = none.publish(&topic, "x").await.unwrap_err();
        let why = connect_error(&err);
        let expected = nsq_client::ConnectError::AuthRequired {
            addr: broker.tcp_addr().to_string(),
        }
        .to_string();
        assert!(why.contains(&expected), "{}: {why}", kind.name());
        assert_eq!(message_count(&broker).await, 0, "{}", kind.name());
    }
}
