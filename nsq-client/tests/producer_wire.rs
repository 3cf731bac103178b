//! The producer against a scripted nsqd on a raw socket: what reaches the wire, exactly.

mod scripted;

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use nsq_client::proto::Topic;
use nsq_client::{DisconnectReason, Producer, ProducerConfig, PublishError, PublishErrorKind};
use nsq_proto::{Command, ErrorCode, Frame, Response, ServerCodec, ServerError};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_util::codec::Framed;

type Publish = Pin<Box<dyn Future<Output = Result<(), PublishError>> + Send>>;

/// Polls every publish once, so each is queued for the connection before nsqd is let go on.
fn queue_all(publishes: &mut [Publish]) {
    let mut cx = Context::from_waker(futures::task::noop_waker_ref());
    for p in publishes.iter_mut() {
        assert!(
            p.as_mut().poll(&mut cx).is_pending(),
            "answered before nsqd spoke"
        );
    }
}

/// Accepts one producer and answers its IDENTIFY once `go` fires: until then the producer
/// cannot write, so whatever was published meanwhile waits in its queue.
async fn accept_producer(
    listener: &TcpListener,
    go: oneshot::Receiver<()>,
) -> Framed<TcpStream, ServerCodec> {
    let mut framed = scripted::accept_until_identify(listener).await;
    go.await.unwrap();
    scripted::answer_identify(&mut framed).await;
    framed
}

fn body(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// A scripted nsqd that answers the first `n` commands `OK`, one by one, and returns them.
fn nsqd_answering_ok(
    listener: TcpListener,
    go: oneshot::Receiver<()>,
    n: usize,
) -> tokio::task::JoinHandle<Vec<Command>> {
    tokio::spawn(async move {
        let mut framed = accept_producer(&listener, go).await;
        let mut seen = Vec::new();
        for _ in 0..n {
            seen.push(framed.next().await.unwrap().unwrap());
            framed.send(Frame::Response(Response::Ok)).await.unwrap();
        }
        seen
    })
}

/// One queued publish per body, to `topic`, in order.
fn publishes_of(producer: &Producer, topic: &Topic, bodies: &[&str]) -> Vec<Publish> {
    let mut publishes: Vec<Publish> = bodies
        .iter()
        .map(|b| Box::pin(producer.publish(topic, body(b))) as Publish)
        .collect();
    queue_all(&mut publishes);
    publishes
}

/// Publishes queued together go out merged per run of one topic, in order; an MPUB's `OK`
/// answers each of its publishes, and its error fails each with its own body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neighbouring_publishes_to_one_topic_share_an_mpub_and_its_answer() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (go, go_rx) = oneshot::channel();
    let nsqd = tokio::spawn(async move {
        let mut framed = accept_producer(&listener, go_rx).await;
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(framed.next().await.unwrap().unwrap());
        }
        // OK, OK, a fatal refusal of the third; nsqd then closes, so the fourth goes unanswered.
        framed.send(Frame::Response(Response::Ok)).await.unwrap();
        framed.send(Frame::Response(Response::Ok)).await.unwrap();
        let refusal = ServerError {
            code: ErrorCode::MpubFailed,
            description: "MPUB failed exiting".into(),
        };
        framed.send(Frame::Error(refusal)).await.unwrap();
        seen
    });

    let producer = Producer::new(addr.to_string(), ProducerConfig::default()).unwrap();
    let (t, u) = (Topic::new("t").unwrap(), Topic::new("u").unwrap());
    let mut publishes: Vec<Publish> = Vec::new();
    for i in 0..5 {
        let (p, t) = (producer.clone(), t.clone());
        publishes.push(Box::pin(async move {
            p.publish(&t, body(&format!("t{i}"))).await
        }));
    }
    let (p, u2) = (producer.clone(), u.clone());
    publishes.push(Box::pin(async move { p.publish(&u2, body("u0")).await }));
    for i in 5..7 {
        let (p, t) = (producer.clone(), t.clone());
        publishes.push(Box::pin(async move {
            p.publish(&t, body(&format!("t{i}"))).await
        }));
    }
    let (p, t2) = (producer.clone(), t.clone());
    publishes.push(Box::pin(async move {
        p.deferred_publish(&t2, Duration::from_secs(1), body("d0"))
            .await
    }));
    queue_all(&mut publishes);
    go.send(()).unwrap();

    let answers = tokio::time::timeout(
        Duration::from_secs(10),
        futures::future::join_all(publishes),
    )
    .await
    .expect("every publish answered");
    let seen = nsqd.await.unwrap();
    let mpub = |topic: &Topic, bodies: &[&str]| Command::Mpub {
        topic: topic.clone(),
        bodies: bodies.iter().map(|b| body(b)).collect(),
    };
    assert_eq!(
        seen,
        vec![
            mpub(&t, &["t0", "t1", "t2", "t3", "t4"]),
            Command::Pub {
                topic: u.clone(),
                body: body("u0")
            },
            mpub(&t, &["t5", "t6"]),
            Command::Dpub {
                topic: t.clone(),
                delay: Duration::from_secs(1),
                body: body("d0")
            },
        ]
    );
    let mut answers = answers.into_iter();
    for _ in 0..6 {
        assert!(
            answers.next().unwrap().is_ok(),
            "the first MPUB and the PUB were OK"
        );
    }
    for expected in ["t5", "t6"] {
        let err = answers.next().unwrap().unwrap_err();
        assert_eq!(
            err.server_error().map(|e| e.code.clone()),
            Some(ErrorCode::MpubFailed),
            "{err}"
        );
        assert_eq!(err.into_bodies(), vec![body(expected)], "its own body back");
    }
    let err = answers.next().unwrap().unwrap_err();
    // nsqd closes the connection after a fatal error: what was written after it is lost,
    // and says why.
    assert!(
        matches!(
            err.kind(),
            PublishErrorKind::Disconnected(DisconnectReason::Server(e)) if e.code == ErrorCode::MpubFailed
        ),
        "{err}"
    );
    let source = std::error::Error::source(&err).expect("a cause");
    assert!(source.is::<DisconnectReason>(), "{source:?}");
    assert_eq!(err.into_bodies(), vec![body("d0")]);
}

/// With merging off, every publish is its own PUB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_merging_off_each_publish_is_a_pub() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (go, go_rx) = oneshot::channel();
    let nsqd = nsqd_answering_ok(listener, go_rx, 3);
    let config = ProducerConfig::default().merge_publishes(None);
    let producer = Producer::new(addr.to_string(), config).unwrap();
    let t = Topic::new("t").unwrap();
    let publishes = publishes_of(&producer, &t, &["t0", "t1", "t2"]);
    go.send(()).unwrap();
    for answer in futures::future::join_all(publishes).await {
        answer.unwrap();
    }
    let pubs: Vec<Command> = ["t0", "t1", "t2"]
        .iter()
        .map(|b| Command::Pub {
            topic: t.clone(),
            body: body(b),
        })
        .collect();
    assert_eq!(nsqd.await.unwrap(), pubs);
}

/// A body too large for the merge bound goes alone, between the merged runs around it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_above_the_merge_bound_goes_alone() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (go, go_rx) = oneshot::channel();
    let nsqd = nsqd_answering_ok(listener, go_rx, 3);
    let config = ProducerConfig::default().merge_publishes(Some(100));
    let producer = Producer::new(addr.to_string(), config).unwrap();
    let t = Topic::new("t").unwrap();
    let big = "x".repeat(200);
    let publishes = publishes_of(&producer, &t, &["a", "b", big.as_str(), "c", "d"]);
    go.send(()).unwrap();
    for answer in futures::future::join_all(publishes).await {
        answer.unwrap();
    }
    let mpub = |bodies: &[&str]| Command::Mpub {
        topic: t.clone(),
        bodies: bodies.iter().map(|b| body(b)).collect(),
    };
    assert_eq!(
        nsqd.await.unwrap(),
        vec![
            mpub(&["a", "b"]),
            Command::Pub {
                topic: t.clone(),
                body: body(&big)
            },
            mpub(&["c", "d"]),
        ]
    );
}

/// A publish is queued when it is called, not when its future is first polled: futures
/// polled in the reverse order still go out in the order of the calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_go_out_in_the_order_of_the_calls() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (go, go_rx) = oneshot::channel();
    let nsqd = nsqd_answering_ok(listener, go_rx, 1);
    let producer = Producer::new(addr.to_string(), ProducerConfig::default()).unwrap();
    let t = Topic::new("t").unwrap();
    let mut publishes: Vec<Publish> = ["first", "second", "third"]
        .iter()
        .map(|b| Box::pin(producer.publish(&t, body(b))) as Publish)
        .collect();
    publishes.reverse();
    queue_all(&mut publishes);
    go.send(()).unwrap();
    for answer in futures::future::join_all(publishes).await {
        answer.unwrap();
    }
    let mpub = Command::Mpub {
        topic: t.clone(),
        bodies: vec![body("first"), body("second"), body("third")],
    };
    assert_eq!(nsqd.await.unwrap(), vec![mpub]);
}

/// Requests count in flight from the call until nsqd's answer, queued or written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_count_in_flight_until_answered() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (go, go_rx) = oneshot::channel();
    let nsqd = nsqd_answering_ok(listener, go_rx, 1);
    let producer = Producer::new(addr.to_string(), ProducerConfig::default()).unwrap();
    let t = Topic::new("t").unwrap();
    let publishes = publishes_of(&producer, &t, &["a", "b", "c"]);
    // The connection task takes the first request out of the queue to connect; for that
    // instant it is counted in neither place, so wait for the count to settle.
    let settled = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            let stats = producer.stats();
            if stats.in_flight == 3 {
                return stats;
            }
            assert!(stats.in_flight < 3, "{stats:?}");
            tokio::task::yield_now().await;
        }
    });
    let stats = settled.await.expect("three requests in flight");
    assert!(!stats.connected, "IDENTIFY is not answered yet: {stats:?}");
    go.send(()).unwrap();
    for answer in futures::future::join_all(publishes).await {
        answer.unwrap();
    }
    let stats = producer.stats();
    assert_eq!(stats.in_flight, 0, "{stats:?}");
    assert_eq!(stats.messages_published, 3, "{stats:?}");
    // (Whether it is still connected depends on whether the scripted nsqd, done answering,
    // has closed the socket yet.)
    nsqd.await.unwrap();
}

/// A frame that arrives with the IDENTIFY answer, in the same read, is handled at once: here
/// a heartbeat, which nsqd may send as the handshake ends, is answered with NOP although nsqd
/// sends nothing more until it gets one. (Found by the client_handshake fuzz target: what the
/// handshake had read past its last answer waited in the read buffer for the next read.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_read_with_the_identify_answer_is_answered_at_once() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let nsqd = tokio::spawn(async move {
        let mut framed = scripted::accept_until_identify(&listener).await;
        let mut wire = bytes::BytesMut::new();
        let identify = Bytes::from_static(br#"{"max_rdy_count":2500,"version":"1.3.0","max_msg_timeout":900000,"msg_timeout":60000,"tls_v1":false,"deflate":false,"deflate_level":6,"max_deflate_level":6,"snappy":false,"sample_rate":0,"auth_required":false,"output_buffer_size":16384,"output_buffer_timeout":250}"#);
        Frame::Response(Response::Data(identify))
            .encode(&mut wire)
            .unwrap();
        Frame::Response(Response::Heartbeat)
            .encode(&mut wire)
            .unwrap();
        tokio::io::AsyncWriteExt::write_all(framed.get_mut(), &wire)
            .await
            .unwrap();
        // The PUB and the NOP, in either order; the PUB is answered only after the NOP.
        let mut seen = vec![
            framed.next().await.unwrap().unwrap(),
            framed.next().await.unwrap().unwrap(),
        ];
        framed.send(Frame::Response(Response::Ok)).await.unwrap();
        seen.sort_by_key(|cmd| cmd.verb() != nsq_proto::Verb::Nop);
        seen
    });
    let config = ProducerConfig::default().publish_timeout(Some(Duration::from_secs(5)));
    let producer = Producer::new(addr.to_string(), config).unwrap();
    let t = Topic::new("t").unwrap();
    producer
        .publish(&t, body("beat"))
        .await
        .expect("the NOP went out, so nsqd answered the PUB");
    let seen = nsqd.await.unwrap();
    assert_eq!(
        seen,
        vec![
            Command::Nop,
            Command::Pub {
                topic: t,
                body: body("beat")
            }
        ]
    );
}

/// nsqd answers a publish with `OK` or an error: any other response is no success. The
/// publish fails, typed, and the connection, out of step, is dropped. (Found by the
/// client_handshake fuzz target, where a response of two stray bytes counted as `OK`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_other_than_ok_does_not_answer_a_publish() {
    for stray in [&b"\x1aK"[..], b"CLOSE_WAIT", b"{}"] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (go, go_rx) = oneshot::channel();
        let nsqd = tokio::spawn(async move {
            let mut framed = accept_producer(&listener, go_rx).await;
            let pub_cmd = framed.next().await.unwrap().unwrap();
            framed
                .send(Frame::Response(Response::Data(Bytes::from_static(stray))))
                .await
                .unwrap();
            pub_cmd
        });
        let producer = Producer::new(addr.to_string(), ProducerConfig::default()).unwrap();
        let t = Topic::new("t").unwrap();
        let mut publishes = publishes_of(&producer, &t, &["one"]);
        go.send(()).unwrap();
        let err = publishes.pop().unwrap().await.unwrap_err();
        assert!(
            matches!(
                err.kind(),
                PublishErrorKind::Disconnected(DisconnectReason::UnexpectedFrame(_))
            ),
            "{stray:?}: {err}"
        );
        assert!(matches!(nsqd.await.unwrap(), Command::Pub { .. }));
        assert_eq!(producer.stats().messages_published, 0, "{stray:?}");
    }
}
