//! The upgrades after IDENTIFY (TLS, snappy, deflate and TLS with compression), driven with
//! nsq-proto's codecs and stream layers: each is confirmed with a framed `OK` in nsqd's order,
//! and the connection then carries commands, replies and messages both ways, so the writer's
//! hand-over of its half of the stream and back works.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use nsq_proto::stream::{tls_connect, DeflateStream, Rewind, SnappyStream};
use nsq_proto::{Channel, ClientCodec, Command, Frame, Identify, Response, Topic};
use nsq_server_lite::Nsqd;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::codec::Framed;

trait AsyncStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> AsyncStream for T {}
type Io = Box<dyn AsyncStream>;
type Conn = Framed<Io, ClientCodec>;

const WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Compress {
    None,
    Snappy,
    Deflate,
}

/// A self-signed certificate for `nsqd.local`: the broker's config and a client's trusting it.
fn tls_configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let cert = rcgen::generate_simple_self_signed(vec!["nsqd.local".to_owned()]).expect("cert");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .expect("server config");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).expect("root");
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

async fn next_frame(conn: &mut Conn) -> Frame {
    match timeout(WAIT, conn.next()).await {
        Ok(Some(Ok(frame))) => frame,
        other => panic!("wanted a frame, got {other:?}"),
    }
}

/// Reads the framed `OK` that confirms an upgrade and gives back the stream, with whatever
/// the codec read past the `OK` put back in front of it.
async fn confirmed(io: Io) -> Io {
    let mut conn = Framed::new(io, ClientCodec::new());
    assert_eq!(next_frame(&mut conn).await, Frame::Response(Response::Ok));
    let parts = conn.into_parts();
    Box::new(Rewind::with_prefix(parts.io, parts.read_buf.freeze()))
}

/// Connects, IDENTIFYs asking for `tls` and `compress`, and does the upgrades the reply
/// announces, in nsqd's order: TLS, then compression.
async fn upgraded(nsqd: &Nsqd, tls: Option<Arc<rustls::ClientConfig>>, compress: Compress) -> Conn {
    let mut stream = TcpStream::connect(nsqd.tcp_addr()).await.expect("connect");
    stream.write_all(b"  V2").await.expect("magic");
    let mut conn: Conn = Framed::new(Box::new(stream), ClientCodec::new());
    let mut identify = Identify::new("upgrades", "host", "tests");
    identify.tls_v1 = tls.is_some();
    identify.snappy = compress == Compress::Snappy;
    identify.deflate = compress == Compress::Deflate;
    conn.send(Command::Identify(Box::new(identify)))
        .await
        .expect("send");
    let reply = match next_frame(&mut conn).await {
        Frame::Response(Response::Data(json)) => {
            serde_json::from_slice::<serde_json::Value>(&json).expect("IDENTIFY reply is JSON")
        }
        other => panic!("IDENTIFY: {other:?}"),
    };
    assert_eq!(reply["tls_v1"], tls.is_some(), "{reply}");
    assert_eq!(reply["snappy"], compress == Compress::Snappy, "{reply}");
    assert_eq!(reply["deflate"], compress == Compress::Deflate, "{reply}");

    let parts = conn.into_parts();
    let mut io: Io = Box::new(Rewind::with_prefix(parts.io, parts.read_buf.freeze()));
    if let Some(config) = tls {
        let name = rustls::pki_types::ServerName::try_from("nsqd.local").expect("name");
        let tls = tls_connect(config, name, io).await.expect("TLS handshake");
        io = confirmed(Box::new(tls)).await;
    }
    io = match compress {
        Compress::None => io,
        Compress::Snappy => confirmed(Box::new(SnappyStream::new(io))).await,
        Compress::Deflate => confirmed(Box::new(DeflateStream::new(io))).await,
    };
    Framed::new(io, ClientCodec::new())
}

#[tokio::test]
async fn every_upgrade_hands_the_stream_over_and_carries_traffic() {
    let (server_tls, client_tls) = tls_configs();
    let nsqd = Nsqd::builder()
        .tls(server_tls)
        .start()
        .await
        .expect("broker starts");
    let cases = [
        (true, Compress::None),
        (false, Compress::Snappy),
        (false, Compress::Deflate),
        (true, Compress::Snappy),
        (true, Compress::Deflate),
    ];
    for (i, (tls, compress)) in cases.into_iter().enumerate() {
        let case = format!("tls {tls}, {compress:?}");
        let mut conn = upgraded(&nsqd, tls.then(|| client_tls.clone()), compress).await;
        let topic = Topic::new(format!("t{i}")).expect("valid");
        let body = Bytes::from(format!("through {case}"));
        conn.send(Command::Pub {
            topic: topic.clone(),
            body: body.clone(),
        })
        .await
        .expect("send");
        assert_eq!(
            next_frame(&mut conn).await,
            Frame::Response(Response::Ok),
            "{case}: PUB"
        );
        conn.send(Command::Sub {
            topic: topic.clone(),
            channel: Channel::new("c").expect("valid"),
        })
        .await
        .expect("send");
        assert_eq!(
            next_frame(&mut conn).await,
            Frame::Response(Response::Ok),
            "{case}: SUB"
        );
        conn.send(Command::Rdy(1)).await.expect("send");
        match next_frame(&mut conn).await {
            Frame::Message(msg) => assert_eq!(msg.body, body, "{case}"),
            other => panic!("{case}: wanted the message, got {other:?}"),
        }

        let stats = nsqd.stats();
        let client = &stats
            .channel(topic.as_str(), "c")
            .expect("channel in stats")
            .clients[0];
        assert_eq!(client.tls, tls, "{case}: stats");
        assert_eq!(client.snappy, compress == Compress::Snappy, "{case}: stats");
        assert_eq!(
            client.deflate,
            compress == Compress::Deflate,
            "{case}: stats"
        );
    }
    nsqd.shutdown().await;
}
