//! The consumer facing a hostile or broken nsqd: frames sized near 2^31 or negative, too
//! small for their type, of unknown types, messages shorter than their header, a fatal error,
//! and a frame cut short by a close. Each must end that connection with a typed
//! [`DisconnectReason`] (nothing allocated for a size it refuses, no panic), and the consumer
//! must connect again and go on. A hostile IDENTIFY answer (a JSON bomb, garbage, or one
//! dribbled a byte at a time, slowloris fashion) is a typed connect error within the dial
//! timeout.

mod scripted;

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use nsq_client::{Channel, Consumer, ConsumerConfig, ConsumerEvent, DisconnectReason, Topic};
use nsq_proto::{Command, Frame, ProtocolError, Response};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// A frame on the wire: its size (which may lie), its type, then `data`.
fn frame(size: u32, kind: i32, data: &[u8]) -> Vec<u8> {
    let mut wire = size.to_be_bytes().to_vec();
    wire.extend_from_slice(&kind.to_be_bytes());
    wire.extend_from_slice(data);
    wire
}

/// A consumer of `t/c` on the hostile nsqd at `addr`.
fn consumer_of(addr: std::net::SocketAddr, config: ConsumerConfig) -> Consumer {
    Consumer::builder(Topic::new("t").unwrap(), Channel::new("c").unwrap())
        .nsqd(addr.to_string())
        .config(config)
        .build()
        .unwrap()
}

/// What the hostile nsqd sends after SUB's `OK`, and what the consumer must make of it.
struct Hostile {
    what: &'static str,
    bytes: Vec<u8>,
    /// Close the socket right after sending.
    close: bool,
    expect: fn(&DisconnectReason) -> bool,
}

fn cases() -> Vec<Hostile> {
    vec![
        Hostile {
            what: "a size near 2^31",
            bytes: frame(0x7fff_fff0, 2, b""),
            close: false,
            expect: |r| matches!(r, DisconnectReason::Protocol(e) if matches!(**e, ProtocolError::FrameTooLarge { .. })),
        },
        Hostile {
            what: "a negative size",
            bytes: frame(0xffff_fff0, 0, b""),
            close: false,
            expect: |r| matches!(r, DisconnectReason::Protocol(e) if matches!(**e, ProtocolError::FrameTooLarge { .. })),
        },
        Hostile {
            what: "a size too small for the frame type",
            bytes: 2u32.to_be_bytes().to_vec(),
            close: false,
            expect: |r| matches!(r, DisconnectReason::Protocol(e) if matches!(**e, ProtocolError::FrameTooSmall { .. })),
        },
        Hostile {
            what: "an unknown frame type",
            bytes: frame(6, 7, b"hi"),
            close: false,
            expect: |r| matches!(r, DisconnectReason::Protocol(e) if matches!(**e, ProtocolError::UnknownFrameType(7))),
        },
        Hostile {
            what: "a message shorter than its header",
            bytes: frame(14, 2, b"0123456789"),
            close: false,
            expect: |r| matches!(r, DisconnectReason::Protocol(e) if matches!(**e, ProtocolError::MessageTooShort { .. })),
        },
        Hostile {
            what: "a fatal error",
            bytes: frame(4 + 27, 1, b"E_INVALID you did something"),
            close: false,
            expect: |r| matches!(r, DisconnectReason::Server(e) if e.code == nsq_proto::ErrorCode::Invalid),
        },
        Hostile {
            what: "a frame cut short by a close",
            bytes: frame(100, 2, b"only a little"),
            close: true,
            expect: |r| {
                matches!(
                    r,
                    DisconnectReason::ClosedByPeer
                        | DisconnectReason::Io(_)
                        | DisconnectReason::Protocol(_)
                )
            },
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_end_the_connection_with_a_typed_reason_and_the_consumer_reconnects() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cases = cases();
    let count = cases.len();
    let nsqd = tokio::spawn(async move {
        for case in &cases {
            let mut framed = scripted::accept_until_identify(&listener).await;
            scripted::answer_identify(&mut framed).await;
            match framed.next().await.unwrap().unwrap() {
                Command::Sub { .. } => {}
                other => panic!("expected SUB, got {other:?}"),
            }
            framed.send(Frame::Response(Response::Ok)).await.unwrap();
            // Wait for RDY: the consumer is past SUB and reading messages.
            loop {
                if let Command::Rdy(_) = framed.next().await.unwrap().unwrap() {
                    break;
                }
            }
            let socket = framed.get_mut();
            socket.write_all(&case.bytes).await.unwrap();
            if case.close {
                drop(framed);
                continue;
            }
            // The consumer must close it; read until it does.
            while let Some(Ok(_)) = framed.next().await {}
        }
    });

    let consumer = consumer_of(
        addr,
        ConsumerConfig::default()
            .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(50)),
    );
    let mut events = consumer.events();
    consumer.connected(Duration::from_secs(10)).await.unwrap();
    for (n, case) in self::cases().iter().enumerate() {
        let reason = loop {
            let event = tokio::time::timeout(Duration::from_secs(10), events.next())
                .await
                .unwrap_or_else(|_| panic!("{}: no event within 10 s", case.what))
                .expect("events open");
            match event {
                ConsumerEvent::Disconnected { reason, .. } => break reason,
                ConsumerEvent::Connected { .. } => {}
                other => panic!("{}: unexpected {other:?}", case.what),
            }
        };
        assert!((case.expect)(&reason), "{}: {reason:?}", case.what);
        if n + 1 < count {
            // ... and it connects again.
            loop {
                let event = tokio::time::timeout(Duration::from_secs(10), events.next())
                    .await
                    .unwrap_or_else(|_| panic!("{}: no reconnect within 10 s", case.what))
                    .expect("events open");
                if let ConsumerEvent::Connected { .. } = event {
                    break;
                }
            }
        }
    }
    tokio::time::timeout(Duration::from_secs(10), nsqd)
        .await
        .expect("the hostile nsqd served every case")
        .unwrap();
    drop(consumer);
}

/// A hostile IDENTIFY answer (a JSON bomb nested far beyond any sane depth, or garbage) is a
/// typed connect error, and the consumer keeps trying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_identify_answer_is_a_typed_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bomb = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let answers = vec![bomb.into_bytes(), b"not json at all".to_vec()];
    let nsqd = tokio::spawn(async move {
        for answer in answers {
            let mut framed = scripted::accept_until_identify(&listener).await;
            framed
                .send(Frame::Response(Response::Data(answer.into())))
                .await
                .unwrap();
            while let Some(Ok(_)) = framed.next().await {}
        }
    });
    let consumer = consumer_of(
        addr,
        ConsumerConfig::default()
            .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(50)),
    );
    let mut events = consumer.events();
    let _ = consumer.connected(Duration::from_millis(1)).await; // starts it
    for what in ["a JSON bomb", "garbage"] {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .unwrap_or_else(|_| panic!("{what}: no event within 10 s"))
            .expect("events open");
        let ConsumerEvent::ConnectFailed { error, .. } = &event else {
            panic!("{what}: expected a connect failure, got {event:?}");
        };
        assert!(
            matches!(error.as_ref(), nsq_client::ConnectError::Protocol { .. }),
            "{what}: {error:?}"
        );
    }
    tokio::time::timeout(Duration::from_secs(10), nsqd)
        .await
        .expect("both answers served")
        .unwrap();
    drop(consumer);
}

/// A slowloris nsqd, dribbling its IDENTIFY answer a byte at a time: the dial timeout bounds
/// the whole handshake, not each read, so the attempt fails typed (`Timeout`) in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dribbled_handshake_answer_times_out_as_a_whole() {
    const DIAL_TIMEOUT: Duration = Duration::from_millis(500);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let nsqd = tokio::spawn(async move {
        let framed = scripted::accept_until_identify(&listener).await;
        let mut socket = framed.into_inner();
        let answer = br#"{"max_rdy_count":2500,"version":"1.3.0","max_msg_timeout":900000,"msg_timeout":60000,"tls_v1":false,"deflate":false,"deflate_level":6,"max_deflate_level":6,"snappy":false,"sample_rate":0,"auth_required":false,"output_buffer_size":16384,"output_buffer_timeout":250}"#;
        let wire = frame(4 + answer.len() as u32, 0, answer);
        // 50 ms a byte: the whole answer would take over ten seconds.
        let mut pace = tokio::time::interval(Duration::from_millis(50));
        for byte in wire {
            pace.tick().await;
            if socket.write_all(&[byte]).await.is_err() {
                return; // the client gave up: what this test wants
            }
        }
    });
    let consumer = consumer_of(
        addr,
        ConsumerConfig::default()
            .connection(nsq_client::ConnectionConfig::default().dial_timeout(DIAL_TIMEOUT)),
    );
    let mut events = consumer.events();
    let started = std::time::Instant::now();
    let _ = consumer.connected(Duration::from_millis(1)).await; // starts it
    let event = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("an event within 10 s")
        .expect("events open");
    let ConsumerEvent::ConnectFailed { error, .. } = &event else {
        panic!("expected a connect failure, got {event:?}");
    };
    assert!(
        matches!(error.as_ref(), nsq_client::ConnectError::Timeout { after, .. } if *after == DIAL_TIMEOUT),
        "{error:?}"
    );
    assert!(
        started.elapsed() < DIAL_TIMEOUT * 4,
        "the handshake took {:?}",
        started.elapsed()
    );
    drop(consumer);
    nsqd.abort();
}
