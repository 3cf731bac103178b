//! The consumer's user-facing API against nsq-server-lite and real nsqd 1.3.0: the options
//! that act on every delivered message (max_attempts with the give-up hook, auto-touch) mean
//! the same through the Stream and through `run`; failures reach the user as typed values
//! (`connected()`, events); and nsqd can be added and removed while `run` runs, with stats and
//! pausing still at hand.
//!
//! Each test runs against both brokers (the real one is skipped without `NSQD_BIN` and
//! `NSQLOOKUPD_BIN`, unless `CI` is set). Outcomes are read from the brokers' `/stats`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use nsq_client::{
    Channel, ConnectError, ConnectedError, ConnectionConfig, Consumer, ConsumerConfig,
    ConsumerEvent, ConsumerFailure, HandlerError, Message, Producer, ProducerConfig, Topic,
};
use nsq_proto::ErrorCode;
use nsq_tests::broker::{Broker, BrokerKind, BrokerOpts, BrokerTls};
use nsq_tests::{auth, eventually, http, tls::TestCerts};

mod addresses;

/// How long a condition polled on `/stats` may take to hold.
const WAIT: Duration = Duration::from_secs(20);

/// Runs `case` for every broker kind at once, within 120 s.
async fn each_kind<F, Fut>(case: F)
where
    F: Fn(BrokerKind) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    nsq_tests::broker::each_kind(Duration::from_secs(120), case).await;
}

fn topic(name: &str) -> Topic {
    Topic::new(name).unwrap()
}

fn channel(name: &str) -> Channel {
    Channel::new(name).unwrap()
}

async fn broker(kind: BrokerKind, opts: &BrokerOpts) -> Option<Broker> {
    if !kind.available() {
        return None;
    }
    Broker::start(kind, opts).await
}

async fn publish(addr: SocketAddr, topic: &Topic, body: &'static str) {
    let producer = Producer::new(addr.to_string(), ProducerConfig::default()).unwrap();
    producer.publish(topic, body).await.unwrap();
}

/// One channel's figures at a broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ChannelFigures {
    depth: i64,
    in_flight: usize,
    deferred: usize,
    requeued: u64,
    timed_out: u64,
    clients: usize,
    ready: i64,
}

async fn figures(broker: &Broker, topic: &str, channel: &str) -> Result<ChannelFigures, String> {
    let stats = broker.stats().await?;
    let c = stats
        .channel(topic, channel)
        .ok_or_else(|| format!("no channel {topic}/{channel}"))?;
    Ok(ChannelFigures {
        depth: c.depth,
        in_flight: c.in_flight_count,
        deferred: c.deferred_count,
        requeued: c.requeue_count,
        timed_out: c.timeout_count,
        clients: c.clients.len(),
        ready: c.clients.iter().map(|c| c.ready_count).sum(),
    })
}

/// Waits until the channel holds nothing: no depth, nothing in flight or deferred.
async fn until_empty(broker: &Broker, topic: &str, channel: &str, what: &str) -> ChannelFigures {
    eventually(
        &format!("{what}: {topic}/{channel} empty"),
        WAIT,
        || async {
            let f = figures(broker, topic, channel).await?;
            if f.depth == 0 && f.in_flight == 0 && f.deferred == 0 {
                Ok(f)
            } else {
                Err(format!("{f:?}"))
            }
        },
    )
    .await
}

async fn next_event(events: &mut nsq_client::Events) -> ConsumerEvent {
    tokio::time::timeout(WAIT, events.next())
        .await
        .expect("an event")
        .expect("events open")
}

/// Waits until `broker`'s channel has `want` clients (with `ready` RDY in total, if given).
async fn clients_at(broker: &Broker, want: usize, ready: Option<i64>, what: &str) {
    eventually(what, WAIT, || async {
        let f = figures(broker, "runtime", "c").await?;
        if f.clients == want && ready.is_none_or(|r| f.ready == r) {
            Ok(())
        } else {
            Err(format!("{f:?}"))
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// max_attempts and the give-up hook, through the Stream and through run.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_is_given_up_after_max_attempts_through_stream_and_handler() {
    each_kind(poison).await;
}

async fn poison(kind: BrokerKind) {
    const MAX_ATTEMPTS: u16 = 3;
    let what = kind.name();
    let Some(broker) = broker(kind, &BrokerOpts::default()).await else {
        return;
    };
    let t = topic("poison");
    for c in ["stream", "handler"] {
        broker.create_channel("poison", c).await.unwrap();
    }
    publish(broker.tcp_addr(), &t, "poison").await;

    let consumer = |channel_name: &str, given_up: Arc<Mutex<Vec<u16>>>| {
        Consumer::builder(t.clone(), channel(channel_name))
            .nsqd(broker.tcp_addr().to_string())
            .config(ConsumerConfig::default().max_attempts(MAX_ATTEMPTS))
            .give_up(move |msg| given_up.lock().unwrap().push(msg.attempts()))
            .build()
            .unwrap()
    };

    // The Stream: every delivery is requeued at once, without backoff.
    let stream_given_up = Arc::new(Mutex::new(Vec::new()));
    let mut stream = consumer("stream", stream_given_up.clone());
    let stream_seen = Arc::new(Mutex::new(Vec::new()));
    let reader = tokio::spawn({
        let seen = stream_seen.clone();
        async move {
            while let Some(msg) = stream.next().await {
                seen.lock().unwrap().push(msg.attempts());
                msg.requeue_without_backoff(Some(Duration::ZERO)).unwrap();
            }
        }
    });

    // run: the handler fails every time, without backoff and with no delay.
    let handler_given_up = Arc::new(Mutex::new(Vec::new()));
    let runner = consumer("handler", handler_given_up.clone());
    let handle = runner.handle();
    let handler_seen = Arc::new(Mutex::new(Vec::new()));
    let running = tokio::spawn({
        let seen = handler_seen.clone();
        async move {
            runner
                .run(1, move |msg: Message| {
                    let seen = seen.clone();
                    async move {
                        seen.lock().unwrap().push(msg.attempts());
                        Err(HandlerError::new("poison")
                            .requeue_after(Duration::ZERO)
                            .without_backoff())
                    }
                })
                .await;
        }
    });

    for (api, given_up) in [("stream", &stream_given_up), ("handler", &handler_given_up)] {
        eventually(&format!("{what}/{api}: given up"), WAIT, || async {
            match given_up.lock().unwrap().as_slice() {
                [] => Err("not yet".to_owned()),
                _ => Ok(()),
            }
        })
        .await;
        until_empty(&broker, "poison", api, &format!("{what}/{api}")).await;
    }
    for (api, seen, given_up) in [
        ("stream", &stream_seen, &stream_given_up),
        ("handler", &handler_seen, &handler_given_up),
    ] {
        assert_eq!(
            *seen.lock().unwrap(),
            [1, 2, 3],
            "{what}/{api}: the deliveries that reached the user"
        );
        assert_eq!(
            *given_up.lock().unwrap(),
            [MAX_ATTEMPTS + 1],
            "{what}/{api}: the hook ran once, on the delivery past max_attempts"
        );
    }
    assert_eq!(handle.stats().given_up, 1, "{what}: stats count it");
    tokio::time::timeout(WAIT, handle.stop())
        .await
        .expect("the handler consumer stops");
    running.await.unwrap();
    reader.abort();
}

// ---------------------------------------------------------------------------------------------
// Auto-touch keeps a slow message alive, through the Stream and through run.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_touch_keeps_a_slow_message_alive_through_stream_and_handler() {
    each_kind(auto_touch).await;
}

/// How long the touched messages are held after an untouched one timed out: longer than the
/// message timeout (1 s).
const HOLD_AFTER_CONTROL: Duration = Duration::from_millis(1500);

fn touching(auto_touch: Option<Duration>) -> ConsumerConfig {
    ConsumerConfig::default()
        .connection(ConnectionConfig::default().msg_timeout(Duration::from_secs(1)))
        .auto_touch(auto_touch)
}

async fn auto_touch(kind: BrokerKind) {
    let what = kind.name();
    let Some(broker) = broker(kind, &BrokerOpts::default()).await else {
        return;
    };
    let t = topic("slow");
    for c in ["stream", "handler", "untouched"] {
        broker.create_channel("slow", c).await.unwrap();
    }
    publish(broker.tcp_addr(), &t, "slow").await;
    let build = |channel_name: &str, config: ConsumerConfig| {
        Consumer::builder(t.clone(), channel(channel_name))
            .nsqd(broker.tcp_addr().to_string())
            .config(config)
            .build()
            .unwrap()
    };

    // Without auto-touch a message held this long times out at the broker; the touched ones
    // are held until that has happened, and past another message timeout.
    let (control_timed_out, timed_out_rx) = tokio::sync::watch::channel(false);
    let held_long_enough = move || {
        let mut timed_out = timed_out_rx.clone();
        async move {
            let _ = timed_out.wait_for(|&t| t).await;
            tokio::time::sleep(HOLD_AFTER_CONTROL).await; // the slow work itself
        }
    };
    let control = async {
        let mut consumer = build("untouched", touching(None));
        let msg = tokio::time::timeout(WAIT, consumer.next())
            .await
            .expect("a message")
            .unwrap();
        eventually(&format!("{what}/untouched: timed out"), WAIT, || async {
            let f = figures(&broker, "slow", "untouched").await?;
            if f.timed_out >= 1 {
                Ok(())
            } else {
                Err(format!("{f:?}"))
            }
        })
        .await;
        control_timed_out.send_replace(true);
        drop(msg);
        consumer.stop().await;
    };

    let stream_case = async {
        let mut consumer = build("stream", touching(Some(Duration::from_millis(300))));
        let msg = tokio::time::timeout(WAIT, consumer.next())
            .await
            .expect("a message")
            .unwrap();
        held_long_enough().await;
        msg.finish().expect("still ours to finish");
        let f = until_empty(&broker, "slow", "stream", what).await;
        assert_eq!(f.timed_out, 0, "{what}/stream: touched, never timed out");
        assert_eq!(consumer.stats().received, 1, "{what}/stream: no redelivery");
        consumer.stop().await;
    };

    let handler_case = async {
        let consumer = build("handler", touching(Some(Duration::from_millis(300))));
        let handle = consumer.handle();
        let hold = held_long_enough.clone();
        let running = tokio::spawn(async move {
            consumer
                .run(1, move |_msg: Message| {
                    let hold = hold.clone();
                    async move {
                        hold().await;
                        Ok(())
                    }
                })
                .await;
        });
        eventually(&format!("{what}/handler: finished"), WAIT, || async {
            match handle.stats().finished {
                0 => Err("not yet".to_owned()),
                _ => Ok(()),
            }
        })
        .await;
        let f = until_empty(&broker, "slow", "handler", what).await;
        assert_eq!(f.timed_out, 0, "{what}/handler: touched, never timed out");
        assert_eq!(handle.stats().received, 1, "{what}/handler: no redelivery");
        tokio::time::timeout(WAIT, handle.stop()).await.unwrap();
        running.await.unwrap();
    };
    tokio::join!(stream_case, handler_case, control);
}

// ---------------------------------------------------------------------------------------------
// Typed failures: a closed port, AUTH refused, TLS required.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_is_a_transient_typed_failure() {
    let port = nsq_tests::free_port();
    let consumer = Consumer::builder(topic("t"), channel("c"))
        .nsqd(format!("127.0.0.1:{port}"))
        .build()
        .unwrap();
    let mut events = consumer.events();
    let started = std::time::Instant::now();
    let err = consumer
        .connected(Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    let ConnectedError::Timeout {
        last: Some(ConsumerFailure::Nsqd(error)),
        ..
    } = &err
    else {
        panic!("expected a timeout with the connect error, got {err:?}");
    };
    assert!(
        matches!(error.as_ref(), ConnectError::Io { source, .. } if source.kind() == std::io::ErrorKind::ConnectionRefused),
        "{error:?}"
    );
    assert!(!error.is_permanent());
    let event = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("an event")
        .unwrap();
    assert!(
        matches!(&event, ConsumerEvent::ConnectFailed { nsqd, .. } if *nsqd == format!("127.0.0.1:{port}")),
        "{event:?}"
    );
    consumer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_auth_is_a_permanent_typed_failure() {
    each_kind(refused_auth).await;
}

async fn refused_auth(kind: BrokerKind) {
    let what = kind.name();
    if !kind.available() {
        return;
    }
    let grant = serde_json::json!({
        "ttl": 3600, "identity": "tester", "identity_url": "",
        "authorizations": [{"topic": ".*", "channels": [".*"], "permissions": ["subscribe", "publish"]}],
    });
    let auth = auth::start("right", grant).await;
    let opts = BrokerOpts {
        auth_http_address: Some(auth.to_string()),
        ..BrokerOpts::default()
    };
    let broker = broker(kind, &opts).await.unwrap();
    let consumer = Consumer::builder(topic("t"), channel("c"))
        .nsqd(broker.tcp_addr().to_string())
        .config(
            ConsumerConfig::default().connection(
                ConnectionConfig::default()
                    .auth_secret("wrong")
                    .allow_plaintext_auth(true),
            ),
        )
        .build()
        .unwrap();
    let err = consumer.connected(WAIT).await.unwrap_err();
    let ConnectedError::Refused(ConsumerFailure::Nsqd(error)) = &err else {
        panic!("{what}: expected a refusal, got {err:?}");
    };
    assert_eq!(
        error.server_error().map(|e| e.code.clone()),
        Some(ErrorCode::AuthFailed),
        "{what}: {error}"
    );
    assert!(error.is_permanent(), "{what}");
    consumer.stop().await;

    // The right secret subscribes.
    let consumer = Consumer::builder(topic("t"), channel("c"))
        .nsqd(broker.tcp_addr().to_string())
        .config(
            ConsumerConfig::default().connection(
                ConnectionConfig::default()
                    .auth_secret("right")
                    .allow_plaintext_auth(true),
            ),
        )
        .build()
        .unwrap();
    consumer.connected(WAIT).await.expect("the right secret");
    consumer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_required_nsqd_without_tls_is_a_permanent_typed_failure() {
    each_kind(tls_required).await;
}

async fn tls_required(kind: BrokerKind) {
    let what = kind.name();
    if !kind.available() {
        return;
    }
    let certs = TestCerts::generate();
    let opts = BrokerOpts {
        tls: Some(BrokerTls::server(&certs)),
        ..BrokerOpts::default()
    };
    let broker = broker(kind, &opts).await.unwrap();
    let consumer = Consumer::builder(topic("t"), channel("c"))
        .nsqd(broker.tcp_addr().to_string())
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let err = consumer.connected(WAIT).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{what}: bounded"
    );
    let ConnectedError::Refused(ConsumerFailure::Nsqd(error)) = &err else {
        panic!("{what}: expected a refusal, got {err:?}");
    };
    assert!(
        matches!(error.as_ref(), ConnectError::Subscribe { error, .. } if error.code == ErrorCode::Invalid),
        "{what}: {error:?}"
    );
    assert!(error.is_permanent());
    consumer.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Events, and changes while run runs.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_report_connections_backoff_and_the_stop() {
    each_kind(events).await;
}

async fn events(kind: BrokerKind) {
    let what = kind.name();
    let Some(broker) = broker(kind, &BrokerOpts::default()).await else {
        return;
    };
    let t = topic("events");
    broker.create_channel("events", "c").await.unwrap();
    let consumer = Consumer::builder(t.clone(), channel("c"))
        .nsqd(broker.tcp_addr().to_string())
        .config(ConsumerConfig::default().backoff_multiplier(Duration::from_millis(50)))
        .build()
        .unwrap();
    let mut events = consumer.events();
    let handle = consumer.handle();
    let failures = Arc::new(AtomicUsize::new(0));
    let running = tokio::spawn({
        let failures = failures.clone();
        async move {
            consumer
                .run(1, move |_msg: Message| {
                    let failures = failures.clone();
                    async move {
                        // The first delivery fails (with backoff), the next succeeds.
                        if failures.fetch_add(1, Ordering::Relaxed) == 0 {
                            Err(HandlerError::new("once").requeue_after(Duration::ZERO))
                        } else {
                            Ok(())
                        }
                    }
                })
                .await;
        }
    });
    let nsqd = broker.tcp_addr().to_string();
    assert!(
        matches!(next_event(&mut events).await, ConsumerEvent::Connected { nsqd: n } if n == nsqd),
        "{what}"
    );
    publish(broker.tcp_addr(), &t, "once").await;
    assert!(
        matches!(
            next_event(&mut events).await,
            ConsumerEvent::BackoffEntered { level: 1 }
        ),
        "{what}"
    );
    // Results that arrive during the backoff wait do not count (go-nsq's rule): the level
    // falls with a success on the RDY 1 probe. The requeued message may have come back during
    // the wait (and its success not counted) or on the probe: give the probe a message.
    eventually(&format!("{what}: probing or recovered"), WAIT, || async {
        let stats = handle.stats();
        if stats.total_rdy == 1 {
            Ok(())
        } else {
            Err(format!("{stats:?}"))
        }
    })
    .await;
    publish(broker.tcp_addr(), &t, "then fine").await;
    assert!(
        matches!(next_event(&mut events).await, ConsumerEvent::BackoffLeft),
        "{what}"
    );
    until_empty(&broker, "events", "c", what).await;
    let stopping = handle.stop();
    assert!(
        matches!(next_event(&mut events).await, ConsumerEvent::Disconnected { nsqd: n, .. } if n == nsqd),
        "{what}"
    );
    assert!(
        matches!(next_event(&mut events).await, ConsumerEvent::Stopped),
        "{what}"
    );
    tokio::time::timeout(WAIT, stopping).await.unwrap();
    running.await.unwrap();
    assert!(events.next().await.is_none(), "{what}: the events end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsqd_are_added_and_removed_and_paused_while_run_runs() {
    each_kind(runtime_changes).await;
}

async fn runtime_changes(kind: BrokerKind) {
    let what = kind.name();
    let (Some(a), Some(b)) = (
        broker(kind, &BrokerOpts::default()).await,
        broker(kind, &BrokerOpts::default()).await,
    ) else {
        return;
    };
    for x in [&a, &b] {
        x.create_channel("runtime", "c").await.unwrap();
    }
    let consumer = Consumer::builder(topic("runtime"), channel("c"))
        .nsqd(a.tcp_addr().to_string())
        .config(ConsumerConfig::default().max_in_flight(10))
        .build()
        .unwrap();
    let handle = consumer.handle();
    let handled = Arc::new(AtomicU64::new(0));
    let running = tokio::spawn({
        let handled = handled.clone();
        async move {
            consumer
                .run(4, move |_msg: Message| {
                    let handled = handled.clone();
                    async move {
                        handled.fetch_add(1, Ordering::Relaxed);
                        Ok(())
                    }
                })
                .await;
        }
    });
    handle.connected(WAIT).await.unwrap();
    handle.connect_nsqd(b.tcp_addr().to_string());
    clients_at(&b, 1, None, &format!("{what}: b joined")).await;
    assert_eq!(handle.stats().connections, 2);

    // Paused while run runs: RDY 0 at both brokers; resumed: the messages are handled.
    handle.set_max_in_flight(0);
    clients_at(&a, 1, Some(0), &format!("{what}: a paused")).await;
    clients_at(&b, 1, Some(0), &format!("{what}: b paused")).await;
    publish(b.tcp_addr(), &topic("runtime"), "while paused").await;
    let f = figures(&b, "runtime", "c").await.unwrap();
    assert_eq!((f.depth, f.in_flight), (1, 0), "{what}: held while paused");
    handle.set_max_in_flight(10);
    until_empty(&b, "runtime", "c", what).await;
    assert_eq!(handled.load(Ordering::Relaxed), 1);

    handle.disconnect_nsqd(a.tcp_addr().to_string());
    clients_at(&a, 0, None, &format!("{what}: a left")).await;
    eventually(&format!("{what}: one connection"), WAIT, || async {
        match handle.stats().connections {
            1 => Ok(()),
            n => Err(format!("{n}")),
        }
    })
    .await;
    tokio::time::timeout(WAIT, handle.stop()).await.unwrap();
    running.await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Discovery: a URL path kept as given, and the discovery filter.
