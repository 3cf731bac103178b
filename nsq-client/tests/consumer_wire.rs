//! The consumer against a scripted nsqd on a raw socket: what reaches the wire, exactly.

mod scripted;

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use nsq_client::proto::{Channel, Topic};
use nsq_client::{Consumer, ConsumerConfig};
use nsq_proto::{Command, Frame, Message, MessageId, Response, ServerCodec};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

/// Accepts one client and answers its IDENTIFY and SUB; returns the framed socket.
async fn accept_subscriber(listener: &TcpListener) -> Framed<TcpStream, ServerCodec> {
    let mut framed = scripted::accept_until_identify(listener).await;
    scripted::answer_identify(&mut framed).await;
    match framed.next().await.unwrap().unwrap() {
        Command::Sub { .. } => {}
        other => panic!("expected SUB, got {other:?}"),
    }
    framed.send(Frame::Response(Response::Ok)).await.unwrap();
    framed
}

/// Thousands of messages that arrive in one burst are all handed out and finished: the
/// connection hands messages on in batches, and none may fall between two batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_larger_than_one_batch_is_delivered_and_finished_in_full() {
    const BURST: u64 = 5000;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let nsqd = tokio::spawn(async move {
        let mut framed = accept_subscriber(&listener).await;
        match framed.next().await.unwrap().unwrap() {
            Command::Rdy(n) => assert!(n >= 1),
            other => panic!("expected RDY, got {other:?}"),
        }
        // More than the client's RDY, all at once: a hostile or lagging nsqd may do so, and
        // it makes the socket hold far more than one batch.
        for n in 0..BURST {
            let msg = Message {
                timestamp: 0,
                attempts: 1,
                id: MessageId::from_u64(n),
                body: Bytes::from(n.to_string()),
            };
            framed.feed(Frame::Message(msg)).await.unwrap();
        }
        SinkExt::<Frame>::flush(&mut framed).await.unwrap();
        let mut finished = HashSet::new();
        while finished.len() < BURST as usize {
            match framed.next().await.unwrap().unwrap() {
                Command::Fin(id) => assert!(finished.insert(id), "FIN {id} twice"),
                Command::Rdy(_) | Command::Nop => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        finished.len()
    });

    let mut consumer = Consumer::builder(Topic::new("t").unwrap(), Channel::new("c").unwrap())
        .nsqd(addr.to_string())
        .config(ConsumerConfig::default().max_in_flight(2500))
        .build()
        .unwrap();
    let mut bodies = HashSet::new();
    while bodies.len() < BURST as usize {
        let msg = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .expect("every message of the burst within 10 s")
            .expect("stream open");
        assert!(bodies.insert(msg.body().clone()), "a message twice");
        msg.finish().unwrap();
    }
    let finished = tokio::time::timeout(Duration::from_secs(10), nsqd)
        .await
        .expect("every FIN within 10 s")
        .unwrap();
    assert_eq!(finished, BURST as usize);
    drop(consumer);
}
