//! Tests of the lookup peers against the lite and the real nsqlookupd.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use nsq_proto::lookup::{LookupCommand, LookupReply, LookupServerCodec, LookupdInfo, MAGIC_V1};
use tokio::io::AsyncReadExt;
use tokio_util::codec::Framed;

use super::*;
use crate::lookupd::test_support::{http, peer_or_skip, RealLookupd};
use crate::lookupd::Lookupd;

const TIMEOUT: Duration = Duration::from_secs(10);

fn topic(name: &str) -> Topic {
    Topic::new(name).unwrap()
}

fn channel(name: &str) -> Channel {
    Channel::new(name).unwrap()
}

fn info() -> PeerInfo {
    PeerInfo::new("127.0.0.1", 4150, 4151, "1.3.0")
}

fn snapshot() -> Snapshot {
    Arc::new(|| {
        vec![
            Registration::Register {
                topic: topic("alone"),
                channel: None,
            },
            Registration::Register {
                topic: topic("t"),
                channel: Some(channel("c")),
            },
        ]
    })
}

async fn lite(tcp: Option<std::net::SocketAddr>) -> Lookupd {
    let mut builder = Lookupd::builder().broadcast_address("127.0.0.1".into());
    if let Some(tcp) = tcp {
        builder = builder.tcp_address(tcp);
    }
    builder.start().await.unwrap()
}

fn key(topic: &str, channel: Option<&str>) -> crate::lookupd::db::Key {
    use crate::lookupd::db::Key;
    match channel {
        Some(c) => Key::Channel(topic.into(), c.into()),
        None => Key::Topic(topic.into()),
    }
}

async fn wait_registered(lookupd: &Lookupd, topic: &str, channel: Option<&str>, count: usize) {
    let key = key(topic, channel);
    tokio::time::timeout(
        TIMEOUT,
        lookupd.wait_until(|db| db.producer_count(&key) == Some(count)),
    )
    .await
    .unwrap_or_else(|_| panic!("{key:?} never had {count} producers"));
}

#[tokio::test]
async fn registers_snapshot_forwards_changes_and_queries_channels() {
    let lookupd = lite(None).await;
    let shutdown = CancellationToken::new();
    let peers = LookupPeers::start(
        vec![lookupd.tcp_addr().to_string()],
        info(),
        snapshot(),
        shutdown.clone(),
    );
    wait_registered(&lookupd, "alone", None, 1).await;
    wait_registered(&lookupd, "t", Some("c"), 1).await;
    wait_registered(&lookupd, "t", None, 1).await;

    peers.notify(Registration::Register {
        topic: topic("t"),
        channel: Some(channel("d")),
    });
    wait_registered(&lookupd, "t", Some("d"), 1).await;
    peers.notify(Registration::Unregister {
        topic: topic("t"),
        channel: Some(channel("c")),
    });
    wait_registered(&lookupd, "t", Some("c"), 0).await;

    // The channel keys outlive their producers, as in nsqlookupd.
    assert_eq!(
        peers.channels(&topic("t")).await,
        [channel("c"), channel("d")]
    );
    assert!(peers.channels(&topic("none")).await.is_empty());
    shutdown.cancel();
    wait_registered(&lookupd, "t", None, 0).await;
}

#[tokio::test]
async fn reconnects_and_registers_the_snapshot_after_lookupd_restarts() {
    let lookupd = lite(None).await;
    let tcp = lookupd.tcp_addr();
    let shutdown = CancellationToken::new();
    let _peers = LookupPeers::start(vec![tcp.to_string()], info(), snapshot(), shutdown.clone());
    wait_registered(&lookupd, "t", Some("c"), 1).await;
    lookupd.shutdown().await;

    let restarted = lite(Some(tcp)).await;
    wait_registered(&restarted, "alone", None, 1).await;
    wait_registered(&restarted, "t", Some("c"), 1).await;
    shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn pings_every_15_seconds() {
    let (client, server) = tokio::io::duplex(4096);
    let slot = Arc::new(std::sync::Mutex::new(Some(client)));
    let connect: Connector = Arc::new(move |_addr| {
        let io = slot.lock().unwrap().take();
        Box::pin(async move {
            io.map(|io| Box::new(io) as Box<dyn Io>)
                .ok_or_else(|| io::Error::new(io::ErrorKind::ConnectionRefused, "used"))
        })
    });
    let shutdown = CancellationToken::new();
    let empty: Snapshot = Arc::new(Vec::new);
    let _peers = LookupPeers::start_with(
        vec!["lookupd".into()],
        info(),
        empty,
        shutdown.clone(),
        connect,
    );

    let mut server = server;
    let mut magic = [0u8; 4];
    server.read_exact(&mut magic).await.unwrap();
    assert_eq!(magic, MAGIC_V1);
    let mut framed = Framed::new(server, LookupServerCodec::new());
    assert_eq!(
        framed.next().await.unwrap().unwrap(),
        LookupCommand::Identify(info())
    );
    let reply = LookupdInfo {
        broadcast_address: "lookupd".into(),
        http_port: 4161,
        ..Default::default()
    };
    framed
        .send(LookupReply::identify(&reply).unwrap())
        .await
        .unwrap();
    let identified = tokio::time::Instant::now();
    for n in 1..=3u32 {
        assert_eq!(framed.next().await.unwrap().unwrap(), LookupCommand::Ping);
        assert_eq!(identified.elapsed(), PING_INTERVAL * n);
        framed.send(LookupReply::Ok).await.unwrap();
    }
    shutdown.cancel();
}

#[tokio::test]
async fn registers_with_real_nsqlookupd() {
    let Some(bin) = peer_or_skip("NSQLOOKUPD_BIN") else {
        return;
    };
    let real = RealLookupd::start(&bin);
    let shutdown = CancellationToken::new();
    let peers = LookupPeers::start(
        vec![real.tcp_addr.to_string()],
        info(),
        snapshot(),
        shutdown.clone(),
    );
    let found = poll_lookup(real.http_addr, "t").await;
    assert_eq!(found.channels, ["c"]);
    assert_eq!(found.producers[0].broadcast_address, "127.0.0.1");
    assert_eq!(found.producers[0].http_port, 4151);
    peers.notify(Registration::Register {
        topic: topic("later"),
        channel: None,
    });
    assert_eq!(
        poll_lookup(real.http_addr, "later").await.producers[0].tcp_port,
        4150
    );
    assert_eq!(peers.channels(&topic("t")).await, [channel("c")]);
    shutdown.cancel();
}

/// The real lookupd offers no events: polls its `/lookup` until the topic has a producer.
async fn poll_lookup(addr: std::net::SocketAddr, topic: &str) -> nsq_proto::lookup::LookupResponse {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let target = format!("/lookup?topic={topic}");
    loop {
        let reply = http(addr, "GET", &target, true).await;
        if reply.status == 200 {
            let found: nsq_proto::lookup::LookupResponse =
                serde_json::from_str(&reply.body).unwrap();
            if !found.producers.is_empty() {
                return found;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "real nsqlookupd never listed {topic}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
