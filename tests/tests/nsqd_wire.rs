//! nsq-proto against a real nsqd 1.3.0: the server codec refuses what nsqd
//! refuses with nsqd's exact words, IDENTIFY negotiation replies as nsqd does,
//! and the client codec carries a whole publish/consume conversation.
//!
//! Needs `NSQD_BIN` (see `scripts/install-peers.sh`); skipped without it unless `CI` is set.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use nsq_proto::{
    Channel, ClientCodec, Command, ErrorCode, Frame, Identify, ProtocolError, Response,
    ServerCodec, ServerOptions, Topic, MAGIC_V2,
};
use nsq_tests::{peer_or_skip, RealNsqd};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::codec::{Decoder, Framed};

const WAIT: Duration = Duration::from_secs(10);

fn start() -> Option<RealNsqd> {
    peer_or_skip("NSQD_BIN").map(|bin| RealNsqd::start(&bin, &[]))
}

async fn connect(nsqd: &RealNsqd) -> TcpStream {
    let mut stream = TcpStream::connect(nsqd.tcp_addr).await.expect("connect");
    stream.write_all(&MAGIC_V2).await.unwrap();
    stream
}

/// Sends raw bytes, then reads frames until an error frame or EOF.
async fn error_for(nsqd: &RealNsqd, prefix: &[u8], input: &[u8]) -> Option<String> {
    let mut stream = connect(nsqd).await;
    stream.write_all(prefix).await.unwrap();
    stream.write_all(input).await.unwrap();
    let mut framed = Framed::new(stream, ClientCodec::new());
    loop {
        match timeout(WAIT, framed.next()).await.expect("nsqd answers") {
            Some(Ok(Frame::Error(err))) => return Some(err.to_string()),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("decoding nsqd's reply: {e}"),
            None => return None,
        }
    }
}

fn codec_error(input: &[u8]) -> String {
    let mut buf = BytesMut::from(input);
    match ServerCodec::new().decode(&mut buf) {
        Err(ProtocolError::Rejected(r)) => r.error.to_string(),
        other => panic!(
            "{:?}: codec did not reject: {other:?}",
            String::from_utf8_lossy(input)
        ),
    }
}

/// A negotiating IDENTIFY with one change.
fn ask(change: impl FnOnce(&mut Identify)) -> Identify {
    let mut identify = Identify::new("c", "h", "nsq-tests");
    change(&mut identify);
    identify
}

async fn next(framed: &mut Framed<TcpStream, ClientCodec>) -> Frame {
    timeout(WAIT, framed.next())
        .await
        .expect("a frame in time")
        .expect("connection open")
        .expect("a valid frame")
}

fn with_len(line: &[u8], len: i32, body: &[u8]) -> Vec<u8> {
    [line, &len.to_be_bytes(), body].concat()
}

#[tokio::test(flavor = "multi_thread")]
async fn server_codec_rejects_exactly_like_nsqd() {
    let Some(nsqd) = start() else { return };
    let id = b"0a1b2c3d4e5f6071";
    let mpub = |count: i32, rest: &[u8]| -> Vec<u8> {
        [
            &b"MPUB t\n"[..],
            &100i32.to_be_bytes(),
            &count.to_be_bytes(),
            rest,
        ]
        .concat()
    };
    // Commands refused in the connection's first state.
    let init: Vec<Vec<u8>> = vec![
        b"FOO bar\n".to_vec(),
        b"nop\n".to_vec(),
        b"SUB t\n".to_vec(),
        b"SUB a!b c\n".to_vec(),
        b"SUB t c!\n".to_vec(),
        b"PUB\n".to_vec(),
        b"PUB bad!\n".to_vec(),
        b"PUB a\"b\\c\x01\xff\n".to_vec(),
        with_len(b"PUB t\n", 0, b""),
        with_len(b"PUB t\n", -1, b""),
        with_len(b"PUB t\n", 1_048_577, b""),
        b"DPUB t\n".to_vec(),
        b"DPUB t! 1\n".to_vec(),
        b"DPUB t x\n".to_vec(),
        b"DPUB t 3600001\n".to_vec(),
        with_len(b"DPUB t 0\n", 0, b""),
        with_len(b"DPUB t 0\n", 1_048_577, b""),
        b"MPUB\n".to_vec(),
        b"MPUB bad!\n".to_vec(),
        with_len(b"MPUB t\n", 0, b""),
        with_len(b"MPUB t\n", 5_242_881, b""),
        mpub(0, b""),
        mpub(1_048_576, b""),
        mpub(
            2,
            &[&1u32.to_be_bytes()[..], b"a", &0u32.to_be_bytes()].concat(),
        ),
        mpub(1, &1_048_577u32.to_be_bytes()),
        with_len(b"IDENTIFY\n", 5_242_881, b""),
        with_len(b"IDENTIFY\n", 0, b""),
        with_len(b"IDENTIFY\n", 9, b"{not json"),
        b"AUTH x\n".to_vec(),
        with_len(b"AUTH\n", 0, b""),
        with_len(b"AUTH\n", 5_242_881, b""),
    ];
    for input in &init {
        let want = error_for(&nsqd, b"", input).await;
        assert_eq!(
            Some(codec_error(input)),
            want,
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }
    // Commands refused by their parameters once subscribed.
    let subscribed: Vec<Vec<u8>> = vec![
        b"RDY x\n".to_vec(),
        b"RDY -1\n".to_vec(),
        b"RDY 2501\n".to_vec(),
        b"FIN\n".to_vec(),
        b"FIN abc\n".to_vec(),
        b"TOUCH\n".to_vec(),
        [&b"REQ "[..], id, b"\n"].concat(),
        [&b"REQ "[..], id, b" 1s\n"].concat(),
    ];
    for input in &subscribed {
        let want = error_for(&nsqd, b"SUB t c\n", input).await;
        assert_eq!(
            Some(codec_error(input)),
            want,
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_overlong_line_is_dropped_without_reply_like_nsqd() {
    let Some(nsqd) = start() else { return };
    let mut stream = connect(&nsqd).await;
    stream.write_all(&vec![b'A'; 16 * 1024 + 1]).await.unwrap();
    let mut rest = Vec::new();
    timeout(WAIT, stream.read_to_end(&mut rest))
        .await
        .expect("nsqd closes")
        .ok();
    assert!(rest.is_empty(), "nsqd sent {rest:?}");
    let mut buf = BytesMut::from(&vec![b'A'; 16 * 1024 + 1][..]);
    assert!(matches!(
        ServerCodec::new().decode(&mut buf),
        Err(ProtocolError::LineTooLong { .. })
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn identify_negotiation_matches_nsqd() {
    let Some(nsqd) = start() else { return };
    let options = ServerOptions::default();
    let asks = [
        Identify::new("c", "h", "nsq-tests"),
        Identify::new("c", "h", "nsq-tests")
            .with_heartbeat_interval(Some(Duration::from_secs(5)))
            .with_msg_timeout(Duration::from_secs(2)),
        ask(|i| {
            i.deflate = true;
            i.deflate_level = 9;
            i.sample_rate = 10;
        }),
        Identify::new("c", "h", "nsq-tests").with_output_buffer(None),
    ];
    for identify in asks {
        let mut framed = Framed::new(connect(&nsqd).await, ClientCodec::new());
        framed
            .send(Command::Identify(Box::new(identify.clone())))
            .await
            .unwrap();
        let Some(Ok(Frame::Response(Response::Data(json)))) =
            timeout(WAIT, framed.next()).await.unwrap()
        else {
            panic!("no JSON reply to {identify:?}")
        };
        let ours = options.negotiate(&identify).unwrap().response.unwrap();
        assert_eq!(
            std::str::from_utf8(&json).unwrap(),
            serde_json::to_string(&ours).unwrap(),
            "{identify:?}"
        );
    }

    let refused = [
        ask(|i| i.heartbeat_interval = 999),
        ask(|i| i.output_buffer_timeout = 24),
        ask(|i| i.output_buffer_size = 63),
        ask(|i| i.sample_rate = 100),
        ask(|i| i.msg_timeout = 900_001),
        ask(|i| {
            i.snappy = true;
            i.deflate = true;
        }),
    ];
    for identify in refused {
        let mut wire = BytesMut::new();
        Command::Identify(Box::new(identify.clone()))
            .encode(&mut wire)
            .unwrap();
        let theirs = error_for(&nsqd, b"", &wire).await;
        let ours = options.negotiate(&identify).unwrap_err().to_string();
        assert_eq!(Some(ours), theirs, "{identify:?}");
    }

    // Without feature negotiation nsqd answers a plain OK.
    let mut framed = Framed::new(connect(&nsqd).await, ClientCodec::new());
    framed
        .send(Command::Identify(Box::default()))
        .await
        .unwrap();
    let reply = timeout(WAIT, framed.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(reply, Frame::Response(Response::Ok));
    assert!(options
        .negotiate(&Identify::default())
        .unwrap()
        .response
        .is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn client_codec_carries_a_whole_conversation() {
    let Some(nsqd) = start() else { return };
    let topic = Topic::new("wire_roundtrip").unwrap();
    let channel = Channel::new("c").unwrap();

    let mut consumer = Framed::new(connect(&nsqd).await, ClientCodec::new());
    let identify = Identify::new("consumer", "h", "nsq-tests")
        .with_heartbeat_interval(Some(Duration::from_secs(1)));
    consumer
        .send(Command::Identify(Box::new(identify)))
        .await
        .unwrap();
    assert!(matches!(
        next(&mut consumer).await,
        Frame::Response(Response::Data(_))
    ));
    consumer
        .send(Command::Sub {
            topic: topic.clone(),
            channel,
        })
        .await
        .unwrap();
    assert_eq!(next(&mut consumer).await, Frame::Response(Response::Ok));
    consumer.send(Command::Rdy(10)).await.unwrap();

    let mut producer = Framed::new(connect(&nsqd).await, ClientCodec::new());
    let bodies: Vec<Bytes> = (0..3).map(|i| Bytes::from(format!("m{i}"))).collect();
    producer
        .send(Command::Pub {
            topic: topic.clone(),
            body: bodies[0].clone(),
        })
        .await
        .unwrap();
    producer
        .send(Command::Mpub {
            topic: topic.clone(),
            bodies: bodies[1..].to_vec(),
        })
        .await
        .unwrap();
    producer
        .send(Command::Dpub {
            topic,
            delay: Duration::from_millis(10),
            body: Bytes::from_static(b"deferred"),
        })
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(next(&mut producer).await, Frame::Response(Response::Ok));
    }

    let mut got = Vec::new();
    let mut heartbeats = 0;
    while got.len() < 4 {
        match next(&mut consumer).await {
            Frame::Message(msg) => {
                assert_eq!(msg.attempts, 1);
                consumer.send(Command::Fin(msg.id)).await.unwrap();
                got.push(msg.body);
            }
            Frame::Response(Response::Heartbeat) => {
                heartbeats += 1;
                consumer.send(Command::Nop).await.unwrap();
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    got.sort();
    let mut want = bodies.clone();
    want.push(Bytes::from_static(b"deferred"));
    want.sort();
    assert_eq!(got, want);

    // FIN of a message this connection does not hold is a non-fatal error:
    // the connection stays usable.
    consumer
        .send(Command::Fin(nsq_proto::MessageId::from_u64(1)))
        .await
        .unwrap();
    loop {
        match next(&mut consumer).await {
            Frame::Error(err) => {
                assert_eq!(err.code, ErrorCode::FinFailed);
                assert!(!err.is_fatal());
                assert_eq!(
                    err.description,
                    "FIN 0000000000000001 failed ID not in flight"
                );
                break;
            }
            Frame::Response(Response::Heartbeat) => consumer.send(Command::Nop).await.unwrap(),
            other => panic!("unexpected {other:?}"),
        }
    }
    // Wait for a heartbeat (1 s interval) to show the connection still works.
    while heartbeats == 0 {
        if next(&mut consumer).await == Frame::Response(Response::Heartbeat) {
            heartbeats += 1;
            consumer.send(Command::Nop).await.unwrap();
        }
    }
    consumer.send(Command::Cls).await.unwrap();
    assert_eq!(
        next(&mut consumer).await,
        Frame::Response(Response::CloseWait)
    );
}
