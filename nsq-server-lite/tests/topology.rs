//! nsq master's topology hints (after 1.3.0): a client's `topology_region`/`topology_zone` in
//! IDENTIFY are accepted, recorded and shown in `/stats`; a broker given a region and zone
//! reports its own in the IDENTIFY reply and `/info`, and one without answers as nsqd 1.3.0.

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use futures::{SinkExt, StreamExt};
use nsq_proto::lookup::{LookupCommand, LookupServerCodec, MAGIC_V1};
use nsq_proto::{Channel, ClientCodec, Command, Frame, Response, Topic};
use nsq_server_lite::Nsqd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_util::codec::Framed;

type Conn = Framed<TcpStream, ClientCodec>;

const WAIT: Duration = Duration::from_secs(20);

async fn next_frame(conn: &mut Conn) -> Frame {
    match timeout(WAIT, conn.next()).await {
        Ok(Some(Ok(frame))) => frame,
        other => panic!("wanted a frame, got {other:?}"),
    }
}

/// Connects and sends `json` as the IDENTIFY body, byte for byte (so that fields this crate's
/// `Identify` does not know can be sent too); returns the parsed reply.
async fn identify_raw(nsqd: &Nsqd, json: &str) -> (Conn, serde_json::Value) {
    let mut stream = TcpStream::connect(nsqd.tcp_addr()).await.expect("connect");
    let mut wire = BytesMut::new();
    wire.put_slice(b"  V2IDENTIFY\n");
    wire.put_u32(u32::try_from(json.len()).expect("small body"));
    wire.put_slice(json.as_bytes());
    stream.write_all(&wire).await.expect("write");
    let mut conn = Framed::new(stream, ClientCodec::new());
    let reply = match next_frame(&mut conn).await {
        Frame::Response(Response::Data(data)) => {
            serde_json::from_slice(&data).expect("IDENTIFY reply is JSON")
        }
        other => panic!("IDENTIFY refused: {other:?}"),
    };
    (conn, reply)
}

async fn subscribe(conn: &mut Conn) {
    conn.send(Command::Sub {
        topic: Topic::new("t").expect("valid"),
        channel: Channel::new("c").expect("valid"),
    })
    .await
    .expect("send");
    assert_eq!(next_frame(conn).await, Frame::Response(Response::Ok));
}

async fn http_json(nsqd: &Nsqd, path: &str) -> serde_json::Value {
    let url = format!("http://{}{path}", nsqd.http_addr());
    let body = reqwest::get(&url)
        .await
        .expect("HTTP request")
        .bytes()
        .await
        .expect("HTTP body");
    serde_json::from_slice(&body).expect("JSON")
}

#[tokio::test]
async fn a_client_identifying_with_a_topology_is_accepted_and_shown_in_stats() {
    let nsqd = Nsqd::builder()
        .topology_region("eu")
        .topology_zone("eu-1a")
        .start()
        .await
        .expect("broker starts");
    // go-nsq master's request: the topology fields and the short_id/long_id nsqd ignores.
    let (mut zoned, reply) = identify_raw(
        &nsqd,
        r#"{"client_id":"zoned","hostname":"h","user_agent":"go-nsq/1.1.1-alpha","feature_negotiation":true,"topology_region":"eu","topology_zone":"eu-1b","short_id":"z","long_id":"zoned"}"#,
    )
    .await;
    assert_eq!(reply["topology_region"], "eu", "the broker's own: {reply}");
    assert_eq!(reply["topology_zone"], "eu-1a", "the broker's own: {reply}");
    subscribe(&mut zoned).await;
    let (mut plain, _) = identify_raw(
        &nsqd,
        r#"{"client_id":"plain","hostname":"h","feature_negotiation":true}"#,
    )
    .await;
    subscribe(&mut plain).await;

    let stats = nsqd.stats();
    let clients = &stats.channel("t", "c").expect("channel").clients;
    let client = |id: &str| {
        clients
            .iter()
            .find(|c| c.client_id == id)
            .unwrap_or_else(|| panic!("{id} in {clients:?}"))
    };
    assert_eq!(client("zoned").topology_region, "eu");
    assert_eq!(client("zoned").topology_zone, "eu-1b");
    assert_eq!(client("plain").topology_region, "");

    // The JSON /stats carries them for the client that gave them, and only for it.
    let json = http_json(&nsqd, "/stats?format=json").await;
    let clients = json["topics"][0]["channels"][0]["clients"]
        .as_array()
        .expect("clients")
        .clone();
    let zoned_json = clients
        .iter()
        .find(|c| c["client_id"] == "zoned")
        .expect("zoned client");
    assert_eq!(zoned_json["topology_region"], "eu");
    assert_eq!(zoned_json["topology_zone"], "eu-1b");
    let plain_json = clients
        .iter()
        .find(|c| c["client_id"] == "plain")
        .expect("plain client");
    assert!(plain_json.get("topology_region").is_none(), "{plain_json}");
    assert!(plain_json.get("topology_zone").is_none(), "{plain_json}");

    let info = http_json(&nsqd, "/info").await;
    assert_eq!(info["topology_region"], "eu", "{info}");
    assert_eq!(info["topology_zone"], "eu-1a", "{info}");
    nsqd.shutdown().await;
}

#[tokio::test]
async fn a_broker_without_a_topology_answers_as_nsqd_1_3_0() {
    let nsqd = Nsqd::start().await.expect("broker starts");
    let (mut conn, reply) = identify_raw(
        &nsqd,
        r#"{"client_id":"zoned","feature_negotiation":true,"topology_region":"eu","topology_zone":"eu-1b"}"#,
    )
    .await;
    assert!(reply.get("topology_region").is_none(), "{reply}");
    assert!(reply.get("topology_zone").is_none(), "{reply}");
    subscribe(&mut conn).await;
    // The client's hints are still recorded.
    let stats = nsqd.stats();
    let client = &stats.channel("t", "c").expect("channel").clients[0];
    assert_eq!(
        (
            client.topology_region.as_str(),
            client.topology_zone.as_str()
        ),
        ("eu", "eu-1b")
    );
    let info = http_json(&nsqd, "/info").await;
    assert!(info.get("topology_region").is_none(), "{info}");
    nsqd.shutdown().await;
}

/// What a broker tells nsqlookupd in its IDENTIFY, read by a stand-in lookupd.
async fn registration(builder: nsq_server_lite::NsqdBuilder) -> nsq_proto::lookup::PeerInfo {
    let lookupd = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = lookupd.local_addr().expect("addr");
    let nsqd = builder
        .lookupd_tcp_address(addr.to_string())
        .start()
        .await
        .expect("broker starts");
    let (mut stream, _) = timeout(WAIT, lookupd.accept())
        .await
        .expect("the broker connects")
        .expect("accept");
    let mut magic = [0u8; 4];
    stream.read_exact(&mut magic).await.expect("magic");
    assert_eq!(magic, MAGIC_V1);
    let mut conn = Framed::new(stream, LookupServerCodec::new());
    let peer = match timeout(WAIT, conn.next()).await {
        Ok(Some(Ok(LookupCommand::Identify(peer)))) => peer,
        other => panic!("wanted IDENTIFY, got {other:?}"),
    };
    nsqd.shutdown().await;
    peer
}

#[tokio::test]
async fn the_broker_registers_its_topology_with_nsqlookupd_only_when_it_has_one() {
    let zoned = registration(Nsqd::builder().topology_region("eu").topology_zone("eu-1a")).await;
    assert_eq!(zoned.topology_region.as_deref(), Some("eu"));
    assert_eq!(zoned.topology_zone.as_deref(), Some("eu-1a"));
    let plain = registration(Nsqd::builder()).await;
    assert_eq!((plain.topology_region, plain.topology_zone), (None, None));
}
