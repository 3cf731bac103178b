#![allow(clippy::print_stdout)] // reporting what happened is the point of this example
//! An NSQ cluster inside one process: an nsqlookupd and two nsqd from nsq-server-lite.
//!
//! Run with:
//!
//! ```text
//! cargo run -p nsq-examples --example embedded
//! ```
//!
//! A producer publishes to both brokers over TCP; a consumer asks the lookupd which brokers
//! hold the topic, subscribes to each, takes every message and FINs it. At the end each
//! broker's `/stats` must show every message finished and nothing in flight. No setup, no
//! Go: the same thing runs against real nsqd by pointing the addresses at it.

use std::collections::BTreeSet;
use std::error::Error;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use nsq_proto::lookup::{LookupResponse, ACCEPT_V1};
use nsq_proto::{Channel, ClientCodec, Command, Frame, Identify, Response, Topic, MAGIC_V2};
use nsq_server_lite::lookupd::Lookupd;
use nsq_server_lite::Nsqd;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

type Conn = Framed<TcpStream, ClientCodec>;

const MESSAGES_PER_BROKER: usize = 5;

async fn connect(addr: SocketAddr) -> Result<Conn, Box<dyn Error>> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(&MAGIC_V2).await?;
    let mut conn = Framed::new(stream, ClientCodec::new());
    conn.send(Command::Identify(Box::new(Identify::new(
        "embedded-example",
        "localhost",
        "nsq-examples/0.1",
    ))))
    .await?;
    expect_response(&mut conn).await?;
    Ok(conn)
}

/// The next frame that is not a heartbeat, which must be a response.
async fn expect_response(conn: &mut Conn) -> Result<Response, Box<dyn Error>> {
    loop {
        match conn.next().await.ok_or("connection closed")?? {
            Frame::Response(Response::Heartbeat) => conn.send(Command::Nop).await?,
            Frame::Response(r) => return Ok(r),
            other => return Err(format!("unexpected frame {other:?}").into()),
        }
    }
}

/// Asks the lookupd which brokers hold `topic`, the way a consumer discovers them.
async fn lookup(lookupd_http: SocketAddr, topic: &str) -> Result<Vec<SocketAddr>, Box<dyn Error>> {
    let mut stream = TcpStream::connect(lookupd_http).await?;
    let request = format!(
        "GET /lookup?topic={topic} HTTP/1.0\r\nHost: localhost\r\nAccept: {ACCEPT_V1}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut raw).await?;
    let text = String::from_utf8(raw)?;
    let body = text.split("\r\n\r\n").nth(1).ok_or("no HTTP body")?;
    let answer: LookupResponse = serde_json::from_str(body)?;
    answer
        .producers
        .iter()
        .map(|p| Ok(format!("{}:{}", p.broadcast_address, p.tcp_port).parse()?))
        .collect()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let lookupd = Lookupd::builder().start().await?;
    let mut brokers = Vec::new();
    for _ in 0..2 {
        let nsqd = Nsqd::builder()
            .broadcast_address("127.0.0.1")
            .lookupd_tcp_address(lookupd.tcp_addr().to_string())
            .start()
            .await?;
        println!("nsqd   tcp {}  http {}", nsqd.tcp_addr(), nsqd.http_addr());
        brokers.push(nsqd);
    }
    println!(
        "lookupd tcp {}  http {}",
        lookupd.tcp_addr(),
        lookupd.http_addr()
    );

    let topic = Topic::new("orders")?;
    let channel = Channel::new("billing")?;

    // Publish to every broker, waiting for each OK.
    for (b, nsqd) in brokers.iter().enumerate() {
        let mut producer = connect(nsqd.tcp_addr()).await?;
        for i in 0..MESSAGES_PER_BROKER {
            let body = Bytes::from(format!("order {b}-{i}"));
            producer
                .send(Command::Pub {
                    topic: topic.clone(),
                    body,
                })
                .await?;
            expect_response(&mut producer).await?;
        }
        println!(
            "published {MESSAGES_PER_BROKER} messages to {}",
            nsqd.tcp_addr()
        );
    }

    // Discover the brokers through the lookupd (registration is asynchronous: ask again
    // until both are listed, under a deadline).
    let mut poll = tokio::time::interval(Duration::from_millis(10));
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            poll.tick().await;
            let found = lookup(lookupd.http_addr(), topic.as_str()).await?;
            if found.len() == brokers.len() {
                return Ok::<_, Box<dyn Error>>(found);
            }
        }
    })
    .await??;
    println!("lookupd lists {} brokers for {topic}", found.len());

    // Consume from each: SUB, RDY, FIN every message.
    let mut seen = BTreeSet::new();
    for addr in found {
        let mut consumer = connect(addr).await?;
        consumer
            .send(Command::Sub {
                topic: topic.clone(),
                channel: channel.clone(),
            })
            .await?;
        expect_response(&mut consumer).await?;
        consumer.send(Command::Rdy(10)).await?;
        let mut taken = 0;
        while taken < MESSAGES_PER_BROKER {
            match consumer.next().await.ok_or("consumer closed")?? {
                Frame::Message(msg) => {
                    println!(
                        "  {addr} -> {} (attempt {}) {:?}",
                        msg.id,
                        msg.attempts,
                        String::from_utf8_lossy(&msg.body)
                    );
                    seen.insert(msg.body.clone());
                    consumer.send(Command::Fin(msg.id)).await?;
                    taken += 1;
                }
                Frame::Response(Response::Heartbeat) => consumer.send(Command::Nop).await?,
                other => return Err(format!("unexpected frame {other:?}").into()),
            }
        }
        consumer.send(Command::Cls).await?;
        expect_response(&mut consumer).await?; // CLOSE_WAIT
    }
    assert_eq!(seen.len(), brokers.len() * MESSAGES_PER_BROKER);

    for nsqd in brokers {
        // FIN has no reply: wait for the broker to have processed the last one.
        let finished = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                poll.tick().await;
                let stats = nsqd.stats();
                if let Some(c) = stats.channel(topic.as_str(), channel.as_str()) {
                    if c.in_flight_count == 0 && c.depth == 0 {
                        return c.message_count;
                    }
                }
            }
        })
        .await?;
        println!("{}: {finished} messages, all finished", nsqd.tcp_addr());
        nsqd.shutdown().await;
    }
    lookupd.shutdown().await;
    println!(
        "done: {} distinct messages consumed exactly once",
        seen.len()
    );
    Ok(())
}
