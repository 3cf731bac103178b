//! nsq-server-lite's connection handling on arbitrary bytes: what the broker's command
//! loop, output writer and stream upgrades make of a hostile or broken client.
//!
//! Each input is one client's whole stream, served by `Nsqd::serve_connection` (the code
//! the TCP listener runs per socket) over an in-memory pipe that holds 256 bytes, so the
//! broker reads the input in pieces and its output must be read as it comes. The first
//! byte picks the setting:
//!
//! * bit 0: the broker. Clear: no auth. Set: AUTH required, where the secret `fuzz` may
//!   publish and subscribe anywhere, `pub-only` may publish to topics starting with `p`,
//!   `nobody` may do nothing, and any other secret is refused.
//! * bit 1: set puts the `"  V2"` magic in front of the rest, so that most inputs get past
//!   it; clear leaves the rest to carry its own.
//! * bit 2: clear closes the client's side right after the rest is written; set keeps it
//!   open for [`HOLD`] more, so that the broker's timers run: heartbeats, the read
//!   deadline, output buffer flushes, in-flight timeouts and deferred messages.
//!
//! The runtime's clock is paused while an input runs: it jumps to the next timer whenever
//! every task waits, so those timers cost no real time. The brokers' timers are short
//! (heartbeat 1 s, read deadline 2 s, in-flight timeout 1 s) to keep those jumps few.
//!
//! Checks:
//!
//! * no panic, in the connection's tasks or the broker's (libfuzzer-sys aborts on any);
//! * the input, its hold included, is served and the connection over within [`LIMIT`] of
//!   the paused clock;
//! * what the broker writes is whole frames that `ClientCodec` reads, until an IDENTIFY
//!   reply that turns on snappy or deflate (the rest is compressed);
//! * every [`CHECK_EVERY`] inputs, each broker still serves a fresh client: one that
//!   connects over TCP gets `OK` for its PUB (nsq-client's `Producer` on the open broker;
//!   AUTH `fuzz` and PUB written by hand on the other). Then both brokers are shut down,
//!   which must finish within [`LIMIT`], and started afresh, so that topics and messages
//!   from earlier inputs do not pile up.

#![no_main]

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use libfuzzer_sys::fuzz_target;
use nsq_client::{ConnectionConfig, Producer, ProducerConfig};
use nsq_proto::{ClientCodec, Command, Frame, IdentifyResponse, Response, Topic, MAGIC_V2};
use nsq_proto_fuzz::rt::{paused_runtime, within};
use nsq_server_lite::auth::{AuthState, Authorization, Permission, StaticAuth};
use nsq_server_lite::Nsqd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio_util::codec::{Decoder, Framed};

/// How long one input (on the paused clock), one liveness check or one shutdown (on the
/// real one) may take.
const LIMIT: Duration = Duration::from_secs(10);
/// How long a client that keeps its side open holds it before closing (paused clock).
const HOLD: Duration = Duration::from_secs(5);
/// Inputs between two liveness checks (and broker restarts).
const CHECK_EVERY: u32 = 1024;
/// The pipe's buffer: small, so that reads and writes come in pieces.
const PIPE: usize = 256;

/// The runtime and the two brokers, kept from input to input.
struct Fixture {
    rt: Runtime,
    open: Nsqd,
    auth: Nsqd,
    inputs: u32,
}

thread_local! {
    static FIXTURE: RefCell<Option<Fixture>> = const { RefCell::new(None) };
}

/// Small limits, so that inputs reach them; a small memory queue, so that messages from
/// earlier inputs stay few.
async fn start(auth: bool) -> Nsqd {
    let mut builder = Nsqd::builder()
        .max_msg_size(512)
        .max_body_size(2048)
        .mem_queue_size(64)
        .client_timeout(Duration::from_secs(2))
        .max_heartbeat_interval(Duration::from_secs(2))
        .msg_timeout(Duration::from_secs(1))
        .max_msg_timeout(Duration::from_secs(3))
        .max_req_timeout(Duration::from_secs(3));
    if auth {
        let hour = Duration::from_secs(3600);
        let anything = [Permission::Publish, Permission::Subscribe];
        let table = StaticAuth::new()
            .with_secret(
                "fuzz",
                AuthState::new("fuzzer", hour)
                    .with(Authorization::new(".*", [".*"], anything).expect("a valid pattern")),
            )
            .with_secret(
                "pub-only",
                AuthState::new("publisher", hour).with(
                    Authorization::new("^p", [".*"], [Permission::Publish])
                        .expect("a valid pattern"),
                ),
            )
            .with_secret("nobody", AuthState::new("nobody", hour));
        builder = builder.authenticator(Arc::new(table));
    }
    builder.start().await.expect("the broker starts")
}

impl Fixture {
    fn new() -> Self {
        let rt = paused_runtime();
        let (open, auth) = rt.block_on(async { (start(false).await, start(true).await) });
        Fixture {
            rt,
            open,
            auth,
            inputs: 0,
        }
    }

    fn run(&mut self, data: &[u8]) {
        let Some((&flags, rest)) = data.split_first() else {
            return;
        };
        let nsqd = if flags & 1 == 0 {
            &self.open
        } else {
            &self.auth
        };
        let mut input = Vec::with_capacity(4 + rest.len());
        if flags & 2 != 0 {
            input.extend_from_slice(&MAGIC_V2);
        }
        input.extend_from_slice(rest);
        let hold = flags & 4 != 0;

        let (client, server) = tokio::io::duplex(PIPE);
        let served = nsqd.serve_connection(server);
        self.rt.block_on(within(LIMIT, "serving one input", async {
            let (rd, mut wr) = tokio::io::split(client);
            let (ended, broker_closed) = oneshot::channel::<()>();
            let read = async {
                check_output(rd).await;
                let _ = ended.send(());
            };
            let write = async {
                // The broker may close first (a fatal error): the rest is not read then.
                let _ = wr.write_all(&input).await;
                if hold {
                    // Until HOLD is over or the broker has closed its side.
                    let _ = tokio::time::timeout(HOLD, broker_closed).await;
                }
                let _ = wr.shutdown().await;
            };
            let ((), (), ()) = tokio::join!(served, write, read);
        }));

        self.inputs += 1;
        if self.inputs.is_multiple_of(CHECK_EVERY) {
            self.check_and_restart();
        }
    }

    /// On the real clock: the real sockets' connects and the shutdowns are not to race a
    /// jumping one.
    fn check_and_restart(&mut self) {
        self.rt.block_on(async { tokio::time::resume() });
        self.rt.block_on(async {
            within(
                LIMIT,
                "a PUB to the open broker",
                publish_ok(&self.open, false),
            )
            .await;
            within(
                LIMIT,
                "a PUB to the auth broker",
                publish_ok(&self.auth, true),
            )
            .await;
            let _ = self.open.stats();
            let _ = self.auth.stats();
        });
        let (open, auth) = self
            .rt
            .block_on(async { (start(false).await, start(true).await) });
        let old_open = std::mem::replace(&mut self.open, open);
        let old_auth = std::mem::replace(&mut self.auth, auth);
        self.rt.block_on(async {
            within(LIMIT, "shutting the open broker down", old_open.shutdown()).await;
            within(LIMIT, "shutting the auth broker down", old_auth.shutdown()).await;
        });
        self.rt.block_on(async { tokio::time::pause() });
    }
}

/// A well-formed client publishes over TCP and must get `OK`: nsq-client's `Producer` for
/// the open broker; for the auth broker, AUTH and PUB written by hand, so that the check does
/// not depend on when the client agrees to send a secret (not over plain TCP, by default).
async fn publish_ok(nsqd: &Nsqd, auth: bool) {
    let topic = Topic::new("fuzz_alive").expect("a valid topic");
    if !auth {
        // Within the brokers' 2 s bound.
        let heartbeat = ConnectionConfig::default().heartbeat_interval(Duration::from_secs(1));
        let config = ProducerConfig::default().connection(heartbeat);
        let producer =
            Producer::new(nsqd.tcp_addr().to_string(), config).expect("a valid producer config");
        let published = producer.publish(&topic, "still serving").await;
        producer.stop().await;
        if let Err(err) = published {
            panic!("the open broker stopped serving: {err}");
        }
        return;
    }
    let mut wire = BytesMut::from(&MAGIC_V2[..]);
    let commands = [
        Command::Auth(Bytes::from_static(b"fuzz")),
        Command::Pub {
            topic,
            body: Bytes::from_static(b"still serving"),
        },
    ];
    for cmd in &commands {
        cmd.encode(&mut wire).expect("a valid command");
    }
    let mut socket = TcpStream::connect(nsqd.tcp_addr())
        .await
        .expect("the auth broker accepts");
    socket
        .write_all(&wire)
        .await
        .expect("the auth broker reads");
    let mut answers = Framed::new(socket, ClientCodec::new());
    for cmd in &commands {
        match answers.next().await {
            Some(Ok(Frame::Response(Response::Ok | Response::Data(_)))) => {}
            other => panic!("the auth broker answered {:?} with {other:?}", cmd.verb()),
        }
    }
}

/// Whether this frame is an IDENTIFY reply after which the broker compresses its output.
fn starts_compression(frame: &Frame) -> bool {
    let Frame::Response(Response::Data(data)) = frame else {
        return false;
    };
    matches!(IdentifyResponse::parse(data), Ok(Some(reply)) if reply.snappy || reply.deflate)
}

/// Reads the broker's output to its end, checking that it is whole frames (until
/// compression starts).
async fn check_output(mut rd: impl AsyncRead + Unpin) {
    let mut codec = ClientCodec::new().with_max_frame_size(1 << 20);
    let mut buf = BytesMut::with_capacity(4096);
    let mut compressed = false;
    loop {
        while !compressed {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => compressed = starts_compression(&frame),
                Ok(None) => break,
                Err(err) => panic!("the broker wrote a malformed frame ({err}): {buf:?}"),
            }
        }
        if compressed {
            buf.clear();
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(err) => panic!("reading an in-memory pipe failed: {err}"),
        }
    }
    assert!(
        compressed || buf.is_empty(),
        "the broker's output ends inside a frame: {buf:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    FIXTURE.with(|fixture| {
        fixture
            .borrow_mut()
            .get_or_insert_with(Fixture::new)
            .run(data);
    });
});
