//! Against a real nsqlookupd: our V1 client codec, our server codec's refusals and our
//! HTTP types, checked byte for byte.
//!
//! Set `NSQLOOKUPD_BIN` to an nsqlookupd binary (1.3.0) to run these tests:
//!
//! ```text
//! NSQLOOKUPD_BIN=/path/to/nsqlookupd cargo test -p nsq-proto --test lookupd_real
//! ```
//!
//! Without it they print a line and pass, unless `CI` is set: then they fail.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use nsq_proto::lookup::{
    decode_body, decode_response, is_v1_header, ApiError, ChannelsResponse, ErrorBody,
    InfoResponse, LookupClientCodec, LookupCommand, LookupReply, LookupResponse, LookupServerCodec,
    LookupVerb, LookupdInfo, NodesResponse, PeerInfo, TopicsResponse, ACCEPT_V1, MAGIC_V1,
    V1_HEADER,
};
use nsq_proto::{Channel, ProtocolError, Topic};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::codec::{Decoder, Framed};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long any one step may take before the test fails.
const STEP: Duration = Duration::from_secs(10);

/// The binary to test against, or `None` to skip (the workspace's rule: a failure under CI).
fn lookupd_bin() -> Option<PathBuf> {
    nsq_peer_rule::peer_or_skip("NSQLOOKUPD_BIN")
}

/// A running nsqlookupd on loopback ports, killed when dropped.
struct Lookupd {
    /// Held so that `kill_on_drop` ends the process with the test.
    _child: Child,
    tcp: SocketAddr,
    http: SocketAddr,
}

/// A loopback port that was free a moment ago (nsqlookupd cannot listen on port 0 and
/// tell us which it got, so pick, release and hand over).
fn free_port() -> Result<u16, BoxError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

impl Lookupd {
    async fn start(bin: &PathBuf) -> Result<Self, BoxError> {
        // Another process may take a released port before lookupd binds it: try again.
        let mut last_error = String::new();
        for _ in 0..5 {
            let tcp = SocketAddr::from(([127, 0, 0, 1], free_port()?));
            let http = SocketAddr::from(([127, 0, 0, 1], free_port()?));
            if tcp == http {
                continue;
            }
            let mut child = Command::new(bin)
                .arg(format!("--tcp-address={tcp}"))
                .arg(format!("--http-address={http}"))
                .arg("--broadcast-address=127.0.0.1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()?;
            let stderr = child.stderr.take().ok_or("no stderr")?;
            // Drain lookupd's log for as long as it runs: a full pipe would block it, and
            // a closed one would kill it (Go exits on SIGPIPE from writes to fd 2).
            let (lines_tx, mut lines) = mpsc::unbounded_channel();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    // Nobody listens once lookupd is up; keep reading regardless.
                    let _ = lines_tx.send(line);
                }
            });
            let ready = timeout(STEP, async {
                let (mut tcp_up, mut http_up) = (false, false);
                let mut log = String::new();
                while let Some(line) = lines.recv().await {
                    tcp_up |= line.contains(&format!("TCP: listening on {tcp}"));
                    http_up |= line.contains(&format!("HTTP: listening on {http}"));
                    log.push_str(&line);
                    log.push('\n');
                    if tcp_up && http_up {
                        return Ok(());
                    }
                }
                Err(log)
            })
            .await;
            match ready {
                Ok(Ok(())) => {
                    return Ok(Self {
                        _child: child,
                        tcp,
                        http,
                    })
                }
                Ok(Err(log)) => last_error = format!("nsqlookupd exited:\n{log}"),
                Err(_) => return Err("nsqlookupd did not start listening in time".into()),
            }
        }
        Err(last_error.into())
    }

    /// A V1 connection: the magic is already sent.
    async fn connect(&self) -> Result<Framed<TcpStream, LookupClientCodec>, BoxError> {
        let mut stream = timeout(STEP, TcpStream::connect(self.tcp)).await??;
        stream.write_all(&MAGIC_V1).await?;
        Ok(Framed::new(stream, LookupClientCodec::new()))
    }

    /// One HTTP/1.0 exchange: the status, whether the v1 header was present, the body.
    async fn http(&self, method: &str, path: &str) -> Result<(u16, bool, Vec<u8>), BoxError> {
        let mut stream = timeout(STEP, TcpStream::connect(self.http)).await??;
        let request = format!(
            "{method} {path} HTTP/1.0\r\nHost: {}\r\nAccept: {ACCEPT_V1}\r\nContent-Length: 0\r\n\r\n",
            self.http
        );
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        timeout(STEP, stream.read_to_end(&mut response)).await??;
        let split = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or("no end of headers")?;
        let head = std::str::from_utf8(&response[..split])?;
        let body = response[split + 4..].to_vec();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().ok_or("no status line")?;
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .ok_or("no status code")?
            .parse()?;
        let v1 = lines.any(|line| {
            line.split_once(':').is_some_and(|(name, value)| {
                name.eq_ignore_ascii_case(V1_HEADER) && is_v1_header(value.as_bytes())
            })
        });
        Ok((status, v1, body))
    }

    /// GETs `path` and decodes a 200 into `T`, checking that `T` serialises back to
    /// lookupd's exact bytes.
    async fn get<T>(&self, path: &str) -> Result<T, BoxError>
    where
        T: serde::de::DeserializeOwned + serde::Serialize,
    {
        let (status, v1, body) = self.http("GET", path).await?;
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        assert!(v1, "{path}: no {V1_HEADER} header");
        let value: T = decode_response(status, v1, &body)?;
        assert_eq!(
            String::from_utf8(serde_json::to_vec(&value)?)?,
            String::from_utf8(body)?,
            "{path}: our serialisation differs from lookupd's"
        );
        Ok(value)
    }
}

async fn roundtrip(
    conn: &mut Framed<TcpStream, LookupClientCodec>,
    cmd: LookupCommand,
) -> Result<LookupReply, BoxError> {
    timeout(STEP, conn.send(cmd)).await??;
    let reply = timeout(STEP, conn.next())
        .await?
        .ok_or("connection closed")??;
    Ok(reply)
}

fn peer() -> PeerInfo {
    PeerInfo {
        hostname: "nsqd-test".into(),
        ..PeerInfo::new("nsqd-test.example", 4150, 4151, "1.3.0")
    }
}

#[tokio::test]
async fn real_nsqlookupd_speaks_our_v1_and_http() -> Result<(), BoxError> {
    let Some(bin) = lookupd_bin() else {
        return Ok(());
    };
    let lookupd = Lookupd::start(&bin).await?;
    let mut conn = lookupd.connect().await?;
    let local = conn.get_ref().local_addr()?;

    // IDENTIFY: lookupd answers with its own address, as a sorted Go map.
    let LookupReply::Data(json) = roundtrip(&mut conn, LookupCommand::Identify(peer())).await?
    else {
        panic!("IDENTIFY should answer with JSON");
    };
    let info = LookupdInfo::parse(&json)?;
    assert_eq!(info.tcp_port, lookupd.tcp.port());
    assert_eq!(info.http_port, lookupd.http.port());
    assert_eq!(info.broadcast_address, "127.0.0.1");
    assert_eq!(info.version, "1.3.0");
    assert_eq!(serde_json::to_vec(&info)?, json);

    let topic = Topic::new("lookup_real")?;
    let channel = Channel::new("archive")?;
    let register = LookupCommand::Register {
        topic: topic.clone(),
        channel: Some(channel.clone()),
    };
    assert_eq!(roundtrip(&mut conn, register).await?, LookupReply::Ok);
    assert_eq!(
        roundtrip(&mut conn, LookupCommand::Ping).await?,
        LookupReply::Ok
    );

    // The registration, as consumers see it.
    let lookup: LookupResponse = lookupd.get("/lookup?topic=lookup_real").await?;
    assert_eq!(lookup.channels, ["archive"]);
    assert_eq!(lookup.producers.len(), 1);
    let producer = &lookup.producers[0];
    assert_eq!(producer.connect_address(), "nsqd-test.example:4150");
    assert_eq!(producer.http_address(), "nsqd-test.example:4151");
    assert_eq!(producer.hostname, "nsqd-test");
    assert_eq!(producer.version, "1.3.0");
    assert_eq!(producer.remote_address, local.to_string());

    let nodes: NodesResponse = lookupd.get("/nodes").await?;
    assert_eq!(nodes.producers.len(), 1);
    assert_eq!(nodes.producers[0].producer, *producer);
    assert_eq!(nodes.producers[0].topics, ["lookup_real"]);
    assert_eq!(nodes.producers[0].tombstones, [false]);

    let topics: TopicsResponse = lookupd.get("/topics").await?;
    assert_eq!(topics.topics, ["lookup_real"]);
    let channels: ChannelsResponse = lookupd.get("/channels?topic=lookup_real").await?;
    assert_eq!(channels.channels, ["archive"]);
    let version: InfoResponse = lookupd.get("/info").await?;
    assert_eq!(version.version, "1.3.0");

    // Errors: 404 TOPIC_NOT_FOUND is "no producers yet", and is recognisable.
    let (status, v1, body) = lookupd.http("GET", "/lookup?topic=never_seen").await?;
    assert!(v1);
    assert_eq!(serde_json::to_vec(&ErrorBody::parse(&body))?, body);
    let err = decode_response::<LookupResponse>(status, v1, &body).unwrap_err();
    assert!(err.is_topic_not_found(), "{err}");
    assert_eq!(err.status(), Some(404));
    let (status, v1, body) = lookupd.http("GET", "/lookup").await?;
    let err = decode_response::<LookupResponse>(status, v1, &body).unwrap_err();
    assert!(
        matches!(&err, ApiError::Status { status: 400, body } if body.message == "MISSING_ARG_TOPIC"),
        "{err}"
    );

    // An empty 200 body counts as {}.
    let (status, v1, body) = lookupd
        .http("POST", "/topic/create?topic=made_by_http")
        .await?;
    assert_eq!((status, v1, body.as_slice()), (200, true, &b""[..]));
    assert_eq!(
        decode_body::<serde_json::Value>(&body, v1)?,
        serde_json::json!({})
    );
    let created: LookupResponse = lookupd.get("/lookup?topic=made_by_http").await?;
    assert_eq!(created, LookupResponse::default());

    // UNREGISTER the channel, then the topic: the keys stay, the producer goes.
    let unregister_channel = LookupCommand::Unregister {
        topic: topic.clone(),
        channel: Some(channel),
    };
    assert_eq!(
        roundtrip(&mut conn, unregister_channel).await?,
        LookupReply::Ok
    );
    let unregister_topic = LookupCommand::Unregister {
        topic,
        channel: None,
    };
    assert_eq!(
        roundtrip(&mut conn, unregister_topic).await?,
        LookupReply::Ok
    );
    let lookup: LookupResponse = lookupd.get("/lookup?topic=lookup_real").await?;
    assert_eq!(lookup.channels, ["archive"]);
    assert!(lookup.producers.is_empty());
    Ok(())
}

/// What a server built on [`LookupServerCodec`] answers to `input` (one command), state
/// checks first as lookupd makes them.
fn our_reply(input: &[u8], identified: bool) -> LookupReply {
    let mut src = BytesMut::from(input);
    match LookupServerCodec::new().decode(&mut src) {
        Ok(Some(cmd)) => match cmd.verb().state_error(identified) {
            Some(err) => LookupReply::Error(err),
            None => LookupReply::Ok,
        },
        Err(ProtocolError::Rejected(rejected)) => LookupReply::Error(
            LookupVerb::from_name(&rejected.name)
                .and_then(|verb| verb.state_error(identified))
                .unwrap_or(rejected.error),
        ),
        other => panic!("{input:?}: {other:?}"),
    }
}

fn identify_wire(body: &[u8]) -> Vec<u8> {
    let mut wire = b"IDENTIFY\n".to_vec();
    wire.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    wire.extend_from_slice(body);
    wire
}

#[tokio::test]
async fn real_nsqlookupd_refuses_exactly_as_our_server_codec() -> Result<(), BoxError> {
    let Some(bin) = lookupd_bin() else {
        return Ok(());
    };
    let lookupd = Lookupd::start(&bin).await?;
    let mut valid_identify = BytesMut::new();
    LookupCommand::Identify(peer()).encode(&mut valid_identify)?;

    let mut cases: Vec<(bool, Vec<u8>)> = Vec::new();
    for line in [
        &b"REGISTER t\n"[..],
        b"REGISTER\n",
        b"UNREGISTER t c\n",
        b"FOO bar\n",
        b"\n",
        b"ping\n",
        b" PING \r\n",
    ] {
        cases.push((false, line.to_vec()));
    }
    for line in [
        &b"REGISTER\n"[..],
        b"UNREGISTER \n",
        b"REGISTER  t\n",
        b"REGISTER x!\n",
        b"REGISTER t c:d\n",
        b"UNREGISTER t c\x01\n",
        b"REGISTER t  c\n",
        b"SUB t c\n",
    ] {
        cases.push((true, line.to_vec()));
    }
    cases.push((true, valid_identify.to_vec()));
    for body in [
        &b"{}"[..],
        b"{",
        b"[]",
        b"null",
        br#"{"broadcast_address":"h","tcp_port":"4150","http_port":1,"version":"v"}"#,
        br#"{"broadcast_address":"h","tcp_port":4150,"http_port":0,"version":"v"}"#,
    ] {
        cases.push((false, identify_wire(body)));
    }

    for (identified, input) in cases {
        let mut conn = lookupd.connect().await?;
        if identified {
            let reply = roundtrip(&mut conn, LookupCommand::Identify(peer())).await?;
            assert!(matches!(reply, LookupReply::Data(_)), "{reply:?}");
        }
        conn.get_mut().write_all(&input).await?;
        let theirs = timeout(STEP, conn.next())
            .await?
            .ok_or("connection closed")??;
        let ours = our_reply(&input, identified);
        assert_eq!(
            theirs,
            ours,
            "identified={identified}, input {:?}",
            String::from_utf8_lossy(&input)
        );
        if let LookupReply::Error(err) = &theirs {
            // Every lookupd error closes the connection.
            let next = timeout(STEP, conn.next()).await?;
            assert!(next.is_none(), "{err}: connection still open: {next:?}");
        }
    }

    // A wrong magic gets an unframed E_BAD_PROTOCOL, then the connection closes.
    let stream = timeout(STEP, TcpStream::connect(lookupd.tcp)).await??;
    let mut conn = Framed::new(stream, LookupClientCodec::new());
    conn.get_mut().write_all(b"  V2").await?;
    let reply = timeout(STEP, conn.next()).await?.ok_or("closed")??;
    assert_eq!(reply, LookupReply::bad_protocol());
    assert!(timeout(STEP, conn.next()).await?.is_none());
    Ok(())
}
