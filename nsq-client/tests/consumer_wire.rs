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

async fn next_command(framed: &mut Framed<TcpStream, ServerCodec>) -> Command {
    tokio::time::timeout(Duration::from_secs(10), framed.next())
        .await
        .expect("a command within 10 s")
        .expect("the client keeps the connection open")
        .expect("a valid command")
}

/// Plays nsqd for one subscriber: sends each of `bodies` as a message (ids 1, 2, ...) once
/// the client has RDY for it, and returns every command the client sent after SUB, up to
/// the answer (FIN or REQ) to the last message and `tail` more commands after it.
async fn play(listener: TcpListener, bodies: Vec<&'static str>, tail: usize) -> Vec<Command> {
    let mut framed = accept_subscriber(&listener).await;
    let mut log = Vec::new();
    let mut rdy = 0;
    for (n, body) in bodies.iter().enumerate() {
        let id = MessageId::from_u64(n as u64 + 1);
        while rdy == 0 {
            let cmd = next_command(&mut framed).await;
            if let Command::Rdy(count) = cmd {
                rdy = count;
            }
            log.push(cmd);
        }
        let msg = Message {
            timestamp: 0,
            attempts: 1,
            id,
            body: Bytes::from_static(body.as_bytes()),
        };
        framed.send(Frame::Message(msg)).await.unwrap();
        loop {
            let cmd = next_command(&mut framed).await;
            let answered = matches!(&cmd, Command::Fin(i) | Command::Req { id: i, .. } if *i == id);
            if let Command::Rdy(count) = cmd {
                rdy = count;
            }
            log.push(cmd);
            if answered {
                break;
            }
        }
    }
    for _ in 0..tail {
        log.push(next_command(&mut framed).await);
    }
    log
}

/// The commands in `log` after the first that matches `from`, up to the next answer.
fn after(log: &[Command], from: impl Fn(&Command) -> bool) -> &[Command] {
    let start = log
        .iter()
        .position(from)
        .expect("the command is in the log")
        + 1;
    let end = log[start..]
        .iter()
        .position(|c| matches!(c, Command::Fin(_) | Command::Req { .. } | Command::Touch(_)))
        .map_or(log.len(), |e| start + e);
    &log[start..end]
}

/// What a handler chooses reaches nsqd exactly: a requeue with its own delay and without
/// backoff, a touch mid-work then the automatic FIN, a manual answer after the handler
/// returned, and a plain error, which requeues after the default delay and backs off (RDY 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_choices_reach_the_wire_as_specified() {
    use nsq_client::{HandlerError, Message as Delivered};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let nsqd = tokio::spawn(play(listener, vec!["delay", "touch", "manual", "fail"], 1));

    let consumer = Consumer::builder(Topic::new("t").unwrap(), Channel::new("c").unwrap())
        .nsqd(addr.to_string())
        .config(
            ConsumerConfig::default()
                .max_in_flight(1)
                .backoff_multiplier(Duration::from_millis(100)),
        )
        .build()
        .unwrap();
    let (manual_tx, mut manual_rx) = tokio::sync::mpsc::unbounded_channel::<Delivered>();
    let handle = consumer.handle();
    let runner = tokio::spawn(async move {
        consumer
            .run(1, move |msg: Delivered| {
                let manual_tx = manual_tx.clone();
                async move {
                    match &msg.body()[..] {
                        b"delay" => Err(HandlerError::new("later")
                            .requeue_after(Duration::from_millis(1500))
                            .without_backoff()),
                        b"touch" => {
                            msg.touch()?;
                            Ok(())
                        }
                        b"manual" => {
                            msg.disable_auto_response();
                            manual_tx.send(msg).map_err(|_| "test ended")?;
                            Ok(())
                        }
                        _ => Err("boom".into()),
                    }
                }
            })
            .await;
    });
    // The manual answer comes from here, after its handler returned.
    let manual = tokio::time::timeout(Duration::from_secs(10), manual_rx.recv())
        .await
        .expect("the manual message within 10 s")
        .unwrap();
    assert_eq!(manual.id(), MessageId::from_u64(3));
    manual.finish().unwrap();

    let log = tokio::time::timeout(Duration::from_secs(20), nsqd)
        .await
        .expect("the scripted nsqd finishes")
        .unwrap();
    let id = MessageId::from_u64;
    let is = |want: Command| move |c: &Command| *c == want;
    assert!(log.contains(&Command::Req {
        id: id(1),
        delay: Duration::from_millis(1500)
    }));
    assert!(
        !after(
            &log,
            is(Command::Req {
                id: id(1),
                delay: Duration::from_millis(1500)
            })
        )
        .contains(&Command::Rdy(0)),
        "a requeue without backoff does not back off: {log:?}"
    );
    let touch = log
        .iter()
        .position(|c| *c == Command::Touch(id(2)))
        .expect("TOUCH 2");
    let fin = log
        .iter()
        .position(|c| *c == Command::Fin(id(2)))
        .expect("FIN 2");
    assert!(touch < fin, "TOUCH before the automatic FIN: {log:?}");
    assert!(
        log.contains(&Command::Fin(id(3))),
        "the manual FIN: {log:?}"
    );
    assert!(log.contains(&Command::Req {
        id: id(4),
        delay: Duration::from_secs(90)
    }));
    assert_eq!(
        log.last(),
        Some(&Command::Rdy(0)),
        "a handler error backs off: {log:?}"
    );
    tokio::time::timeout(Duration::from_secs(10), handle.stop())
        .await
        .expect("stop completes");
    runner.await.unwrap();
}

/// With backoff disabled, a handler error requeues without RDY 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_backoff_keeps_rdy_after_failures() {
    use nsq_client::{BackoffStrategy, Message as Delivered};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let nsqd = tokio::spawn(play(listener, vec!["fail", "fail", "ok"], 0));
    let consumer = Consumer::builder(Topic::new("t").unwrap(), Channel::new("c").unwrap())
        .nsqd(addr.to_string())
        .config(
            ConsumerConfig::default()
                .max_in_flight(1)
                .backoff_strategy(BackoffStrategy::Disabled),
        )
        .build()
        .unwrap();
    let handle = consumer.handle();
    let runner = tokio::spawn(async move {
        consumer
            .run(1, |msg: Delivered| async move {
                if &msg.body()[..] == b"ok" {
                    Ok(())
                } else {
                    Err("boom".into())
                }
            })
            .await;
    });
    let log = tokio::time::timeout(Duration::from_secs(20), nsqd)
        .await
        .expect("the scripted nsqd finishes")
        .unwrap();
    assert!(
        !log.contains(&Command::Rdy(0)),
        "no backoff with backoff disabled: {log:?}"
    );
    assert_eq!(log.last(), Some(&Command::Fin(MessageId::from_u64(3))));
    tokio::time::timeout(Duration::from_secs(10), handle.stop())
        .await
        .expect("stop completes");
    runner.await.unwrap();
}

/// A message above `max_message_size` ends the connection with a typed reason, before
/// anything is allocated for it, and the consumer says so through its events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_above_max_message_size_ends_the_connection_with_a_typed_reason() {
    use nsq_client::{ConnectionConfig, ConsumerEvent, DisconnectReason};
    use nsq_proto::ProtocolError;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let nsqd = tokio::spawn(async move {
        let mut framed = accept_subscriber(&listener).await;
        let msg = Message {
            timestamp: 0,
            attempts: 1,
            id: MessageId::from_u64(1),
            body: Bytes::from(vec![b'x'; 2048]),
        };
        framed.send(Frame::Message(msg)).await.unwrap();
        // Keep the socket open: the client must close it on its own.
        while let Some(Ok(_)) = framed.next().await {}
    });
    let consumer = Consumer::builder(Topic::new("t").unwrap(), Channel::new("c").unwrap())
        .nsqd(addr.to_string())
        .config(
            ConsumerConfig::default()
                .connection(ConnectionConfig::default().max_message_size(1024)),
        )
        .build()
        .unwrap();
    let mut events = consumer.events();
    consumer.connected(Duration::from_secs(10)).await.unwrap();
    let reason = loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("an event within 10 s")
            .expect("events open");
        if let ConsumerEvent::Disconnected { reason, .. } = event {
            break reason;
        }
    };
    let DisconnectReason::Protocol(e) = &reason else {
        panic!("expected a protocol error, got {reason:?}");
    };
    assert!(
        matches!(e.as_ref(), ProtocolError::FrameTooLarge { max, .. } if *max > 1024),
        "{e:?}"
    );
    drop(consumer);
    nsqd.abort();
}
