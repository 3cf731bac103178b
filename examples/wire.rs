#![allow(clippy::print_stdout)] // printing the conversation is the point of this example
//! A tour of the NSQ wire protocol: a client and a server built on `nsq-proto`'s
//! two codecs talk over an in-memory pipe, and every frame is printed as it
//! crosses, in hex and as decoded.
//!
//! Run with:
//!
//! ```text
//! cargo run -p nsq-examples --example wire
//! ```
//!
//! No nsqd is needed. The server side here is a few lines of demo logic that
//! answers IDENTIFY with nsqd's negotiation and delivers what it is published
//! to the subscriber once RDY allows; nsq-server-lite is the full broker.

use std::error::Error;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use nsq_proto::{
    Channel, ClientCodec, Command, ErrorCode, Frame, Identify, Message, MessageId, Response,
    ServerCodec, ServerError, ServerOptions, Topic, MAGIC_V2,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::{Encoder, Framed};

fn show(direction: &str, what: &str, wire: &[u8]) {
    let hex: Vec<String> = wire.iter().take(48).map(|b| format!("{b:02x}")).collect();
    let more = if wire.len() > 48 { " …" } else { "" };
    println!(
        "{direction} {what}\n    {} bytes: {}{more}",
        wire.len(),
        hex.join(" ")
    );
}

fn frame_name(frame: &Frame) -> &'static str {
    match frame {
        Frame::Response(_) => "response",
        Frame::Error(_) => "error",
        Frame::Message(_) => "message",
    }
}

fn command_bytes(cmd: &Command) -> Vec<u8> {
    let mut buf = BytesMut::new();
    ClientCodec::new()
        .encode(cmd, &mut buf)
        .expect("valid command");
    buf.to_vec()
}

fn frame_bytes(frame: &Frame) -> Vec<u8> {
    let mut buf = BytesMut::new();
    ServerCodec::new()
        .encode(frame, &mut buf)
        .expect("valid frame");
    buf.to_vec()
}

/// The demo server: nsqd's IDENTIFY negotiation, then SUB/PUB/RDY/FIN/CLS.
async fn serve(mut io: tokio::io::DuplexStream) -> Result<(), Box<dyn Error + Send + Sync>> {
    let mut magic = [0u8; 4];
    io.read_exact(&mut magic).await?;
    nsq_proto::Magic::parse(magic)?;
    let mut conn = Framed::new(io, ServerCodec::new());
    let options = ServerOptions::default();
    let mut published = Vec::new();
    let mut next_id = 0;
    while let Some(cmd) = conn.next().await {
        let mut replies = Vec::new();
        match cmd? {
            Command::Identify(identify) => replies.push(match options.negotiate(&identify) {
                Ok(negotiated) => match negotiated.response {
                    Some(json) => {
                        Frame::Response(Response::Data(serde_json::to_vec(&json)?.into()))
                    }
                    None => Frame::Response(Response::Ok),
                },
                Err(err) => Frame::Error(err),
            }),
            Command::Sub { .. } => replies.push(Frame::Response(Response::Ok)),
            Command::Pub { body, .. } => {
                published.push(body);
                replies.push(Frame::Response(Response::Ok));
            }
            // RDY opens the window: deliver what was published.
            Command::Rdy(count) => {
                let ready = published.len().min(count as usize);
                for body in published.drain(..ready) {
                    next_id += 1;
                    replies.push(Frame::Message(Message {
                        timestamp: 1_700_000_000_000_000_000,
                        attempts: 1,
                        id: MessageId::from_u64(next_id),
                        body,
                    }));
                }
            }
            Command::Cls => replies.push(Frame::Response(Response::CloseWait)),
            Command::Fin(_) | Command::Nop => {}
            other => replies.push(Frame::Error(ServerError::new(
                ErrorCode::Invalid,
                format!("the demo server does not do {}", other.verb()),
            ))),
        }
        for frame in replies {
            show(
                "<-",
                &format!("{} frame", frame_name(&frame)),
                &frame_bytes(&frame),
            );
            conn.send(&frame).await?;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(serve(server_io));

    let mut io = client_io;
    show("->", "magic", &MAGIC_V2);
    io.write_all(&MAGIC_V2).await?;
    let mut conn = Framed::new(io, ClientCodec::new());

    let topic = Topic::new("events")?;
    let script = [
        Command::Identify(Box::new(
            Identify::new("tour", "localhost", "nsq-examples/0.1")
                .with_heartbeat_interval(Some(Duration::from_secs(30))),
        )),
        Command::Sub {
            topic: topic.clone(),
            channel: Channel::new("printer")?,
        },
        Command::Pub {
            topic,
            body: Bytes::from_static(b"hello, nsq"),
        },
        Command::Rdy(1),
    ];
    for cmd in &script {
        show("->", &format!("{:?}", cmd.verb()), &command_bytes(cmd));
        conn.send(cmd).await?;
        if matches!(cmd, Command::Rdy(_)) {
            break;
        }
        let reply = conn.next().await.ok_or("server closed")??;
        println!("   decoded: {reply:?}");
    }
    // The message published above comes back to the subscription.
    match conn.next().await.ok_or("server closed")?? {
        Frame::Message(msg) => {
            println!("   decoded: message {} body {:?}", msg.id, msg.body);
            let fin = Command::Fin(msg.id);
            show("->", "FIN", &command_bytes(&fin));
            conn.send(fin).await?;
        }
        other => return Err(format!("expected a message, got {other:?}").into()),
    }
    show("->", "CLS", &command_bytes(&Command::Cls));
    conn.send(Command::Cls).await?;
    let reply = conn.next().await.ok_or("server closed")??;
    println!("   decoded: {reply:?}");
    drop(conn);
    server.await??;
    Ok(())
}
