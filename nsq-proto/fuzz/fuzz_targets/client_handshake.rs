//! nsq-client facing a hostile or broken nsqd: arbitrary bytes as nsqd's side of the
//! connection setup (the IDENTIFY reply, the upgrades' `OK`, AUTH's reply, SUB's `OK`) and
//! of what follows (publish answers, heartbeats, messages, errors).
//!
//! Per input, a fake nsqd listens on a fresh unix socket (in the temporary directory,
//! removed after the input), accepts one connection, writes the reply at once and reads
//! (and drops) what the client sends until the client closes.
//! The runtime's clock is paused: it jumps to the next timer whenever every task waits, so
//! the client's own timeouts (dial, publish, read deadline, backoff, requeue, touch) run
//! in no real time and end an exchange that nsqd's bytes leave hanging.
//!
//! The first byte picks the client:
//!
//! * bits 0-1: a `Producer`'s publish, multi-publish or deferred publish (0, 1, 2), or a
//!   `Consumer` subscribing (3);
//! * bits 2-3: the compression asked for in IDENTIFY: none, snappy, deflate, none;
//! * bit 4: an AUTH secret is configured;
//! * bit 5: nsqd closes its sending side after the reply (else the client's timers end it).
//!
//! The second byte is the consumer's: bits 0-3 are max_in_flight - 1; bits 4-5 how it
//! answers each message (finish, requeue, requeue without backoff, touch then finish);
//! bit 6 turns on auto-touch. The rest of the input is the reply.
//!
//! Checks:
//!
//! * no panic, in the caller's task or the client's (libfuzzer-sys aborts on any);
//! * the publish resolves, or the consumer reports its first connect failure or
//!   disconnection, and the client stops and closes its socket, all within [`LIMIT`] of
//!   the paused clock; every failure is one of the client's typed errors by construction;
//! * without compression, a publish reported `OK` or a subscription reported made means
//!   the reply holds an `OK` frame: the client invents no success.

#![no_main]

use std::cell::RefCell;
use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use libfuzzer_sys::fuzz_target;
use nsq_client::{
    Channel, Compression, ConnectionConfig, Consumer, ConsumerConfig, ConsumerEvent, Producer,
    ProducerConfig, Topic,
};
use nsq_proto_fuzz::rt::{paused_runtime, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::runtime::Runtime;

/// How long (on the paused clock) one input may take, from the listener's bind to the
/// client's close: past every timeout the client is configured with below.
const LIMIT: Duration = Duration::from_secs(600);
/// A whole `OK` response frame.
const OK_FRAME: &[u8] = b"\x00\x00\x00\x06\x00\x00\x00\x00OK";

struct Fixture {
    rt: Runtime,
    inputs: u64,
}

thread_local! {
    static FIXTURE: RefCell<Option<Fixture>> = const { RefCell::new(None) };
}

/// What the client is to do, from the first two input bytes.
#[derive(Debug, Clone, Copy)]
struct Plan {
    op: u8,
    compression: Compression,
    auth: bool,
    eof: bool,
    max_in_flight: u32,
    answer: u8,
    auto_touch: bool,
}

impl Plan {
    fn from_bytes(client: u8, consumer: u8) -> Self {
        Plan {
            op: client & 3,
            compression: match (client >> 2) & 3 {
                1 => Compression::Snappy,
                2 => Compression::Deflate { level: 6 },
                _ => Compression::None,
            },
            auth: client & 0x10 != 0,
            eof: client & 0x20 != 0,
            max_in_flight: 1 + u32::from(consumer & 0x0f),
            answer: (consumer >> 4) & 3,
            auto_touch: consumer & 0x40 != 0,
        }
    }

    fn connection(&self) -> ConnectionConfig {
        let mut config = ConnectionConfig::default()
            .client_id("fuzz")
            .hostname("fuzz.invalid")
            .compression(self.compression)
            .heartbeat_interval(Duration::from_secs(5))
            .dial_timeout(Duration::from_secs(2))
            .write_timeout(Duration::from_secs(2));
        if self.auth {
            config = config.auth_secret("s3cret");
        }
        config
    }
}

/// Runs the client against `addr`; `true` when it reported a success that needs an `OK`
/// from nsqd.
async fn client(plan: Plan, addr: String) -> bool {
    let topic = Topic::new("fuzz").expect("a valid topic");
    if plan.op == 3 {
        return consume(plan, addr, topic).await;
    }
    let config = ProducerConfig::default()
        .connection(plan.connection())
        .publish_timeout(Some(Duration::from_secs(5)))
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(10));
    let producer = Producer::new(addr, config).expect("a valid producer config");
    let result = match plan.op {
        0 => producer.publish(&topic, "body").await,
        1 => {
            producer
                .multi_publish(&topic, vec!["one".into(), "two".into()])
                .await
        }
        _ => {
            producer
                .deferred_publish(&topic, Duration::from_millis(1500), "later")
                .await
        }
    };
    producer.stop().await;
    result.is_ok()
}

async fn consume(plan: Plan, addr: String, topic: Topic) -> bool {
    let config = ConsumerConfig::default()
        .connection(plan.connection())
        .max_in_flight(plan.max_in_flight)
        .shutdown_timeout(Duration::from_secs(2))
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(10))
        .auto_touch(plan.auto_touch.then_some(Duration::from_secs(1)));
    let mut consumer = Consumer::builder(topic, Channel::new("fuzz").expect("a valid channel"))
        .nsqd(addr)
        .config(config)
        .build()
        .expect("a valid consumer config");
    let mut events = consumer.events();
    let mut subscribed = false;
    loop {
        tokio::select! {
            // Messages first: those delivered before the connection ended are answered.
            biased;
            msg = consumer.recv() => {
                let Some(msg) = msg else { break };
                // Refused answers (the connection is gone) are typed errors, not findings.
                let _ = match plan.answer {
                    0 => msg.finish(),
                    1 => msg.requeue(Some(Duration::from_millis(10))),
                    2 => msg.requeue_without_backoff(None),
                    _ => msg.touch().and_then(|()| msg.finish()),
                };
            }
            event = events.next() => match event {
                Some(ConsumerEvent::Connected { .. }) => subscribed = true,
                Some(ConsumerEvent::ConnectFailed { .. } | ConsumerEvent::Disconnected { .. })
                | None => break,
                Some(_) => {}
            },
        }
    }
    consumer.stop().await;
    subscribed
}

/// The fake nsqd: sends `reply` to the one client that connects (then closes its sending
/// side if `eof`), and reads the client to its end.
async fn nsqd(listener: UnixListener, reply: &[u8], eof: bool) {
    let (socket, _) = listener.accept().await.expect("the client connects");
    drop(listener);
    let (mut rd, mut wr) = socket.into_split();
    let send = async {
        // The client may give up and close first: what it did not read is of no interest.
        let _ = wr.write_all(reply).await;
        if eof {
            let _ = wr.shutdown().await;
        }
    };
    let drain = async {
        let mut sink = [0u8; 4096];
        while let Ok(n) = rd.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::join!(send, drain);
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            rt: paused_runtime(),
            inputs: 0,
        }
    }

    /// A socket path no other input or fuzzing process uses.
    fn socket_path(&self) -> PathBuf {
        let name = format!("nsq-fuzz-{}-{}.sock", std::process::id(), self.inputs);
        std::env::temp_dir().join(name)
    }

    fn run(&mut self, data: &[u8]) {
        let Some((&[client_byte, consumer_byte], reply)) = data.split_first_chunk::<2>() else {
            return;
        };
        let plan = Plan::from_bytes(client_byte, consumer_byte);
        self.inputs += 1;
        let path = self.socket_path();
        let addr = format!("unix:{}", path.display());
        let claimed_ok = self.rt.block_on(within(LIMIT, "one exchange", async {
            let listener = UnixListener::bind(&path).expect("a unix socket");
            let ((), claimed_ok) =
                tokio::join!(nsqd(listener, reply, plan.eof), client(plan, addr));
            claimed_ok
        }));
        let _ = std::fs::remove_file(&path);
        if claimed_ok && matches!(plan.compression, Compression::None) {
            assert!(
                reply.windows(OK_FRAME.len()).any(|w| w == OK_FRAME),
                "{plan:?}: the client reported success, but nsqd never sent OK"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    FIXTURE.with(|fixture| {
        fixture
            .borrow_mut()
            .get_or_insert_with(Fixture::new)
            .run(data);
    });
});
