//! `nsq_client::Producer` negotiating each feature with nsq-server-lite and real nsqd 1.3.0:
//! TLS (with and without a client certificate), snappy, deflate, both compressions over TLS,
//! and AUTH. In each case the producer publishes and multi-publishes, the messages arrive, and
//! the broker's `/stats` shows the connection with exactly the features asked for. Failures are
//! checked too: certificate verification is on by default, a broker that requires a client
//! certificate refuses a producer without one, and AUTH with a wrong or no secret fails clearly.
//!
//! Each test runs against both brokers (the real one is skipped without `NSQD_BIN`, unless `CI`
//! is set).

use std::time::Duration;

use bytes::Bytes;
use nsq_client::proto::Topic;
use nsq_client::{
    Compression, ConnectionConfig, Producer, ProducerConfig, PublishErrorKind, TlsConfig,
};
use nsq_server_lite::stats::ClientStats;
use nsq_tests::broker::{Broker, BrokerKind, BrokerOpts, BrokerTls};
use nsq_tests::tls::{TestCerts, SERVER_NAME};
use nsq_tests::{consume, eventually};

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

/// The broker's `/stats` entry for the connected producer whose client_id is `id`.
async fn producer_stats(broker: &Broker, id: &str) -> ClientStats {
    eventually(&format!("producer {id} in /stats"), WAIT, || async {
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
    p.stop().await;
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

/// Publishes through a producer with `connection` and checks that it cannot connect, with an
/// error that says `expected`, that the body is handed back, and that nothing reached the
/// broker.
async fn assert_refused(broker: &Broker, connection: ConnectionConfig, expected: &str) {
    let p = producer(broker.tcp_addr(), connection);
    let err = p
        .publish(&Topic::new(TOPIC).unwrap(), "x")
        .await
        .unwrap_err();
    match err.kind() {
        PublishErrorKind::Connect(why) => assert!(why.to_string().contains(expected), "{why}"),
        other => panic!("expected a connect error, got {other:?}: {err}"),
    }
    // The cause is the typed connect error itself.
    let source = std::error::Error::source(&err).expect("a cause");
    assert!(source.is::<nsq_client::ConnectError>(), "{source:?}");
    assert_eq!(err.into_body().as_deref(), Some(&b"x"[..]));
    assert_eq!(message_count(broker).await, 0);
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
        assert_refused(&broker, connection, "invalid peer certificate").await;
        // The right CA, but a name the certificate is not for.
        let connection = ConnectionConfig::default()
            .tls(TlsConfig::new(certs.client_config()).server_name("not-the-broker.invalid"));
        assert_refused(&broker, connection, "invalid peer certificate").await;
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
        assert_refused(&broker, connection, "CertificateRequired").await;
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
            .auth_secret(SECRET)
            .allow_plaintext_auth(true);
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
        p.stop().await;
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
        let wrong = ConnectionConfig::default()
            .auth_secret("not-the-secret")
            .allow_plaintext_auth(true);
        assert_refused(&broker, wrong, "refused the handshake: E_AUTH_FAILED").await;
        let expected = nsq_client::ConnectError::AuthRequired {
            addr: broker.tcp_addr().to_string(),
        }
        .to_string();
        assert_refused(&broker, ConnectionConfig::default(), &expected).await;
    }
}
