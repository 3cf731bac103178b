//! Helpers for the lookupd and lookup peer tests: real nsqd/nsqlookupd processes,
//! a raw protocol V1 client and a raw HTTP/1.1 client (no timers, so it is safe
//! under paused time).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use nsq_proto::lookup::{LookupClientCodec, LookupCommand, LookupReply, ACCEPT_V1, MAGIC_V1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// How long a real peer may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);

pub(crate) use nsq_peer_rule::peer_or_skip;

/// A real process, killed on drop.
#[derive(Debug)]
pub(crate) struct RealProcess {
    child: Child,
    data_path: Option<PathBuf>,
}

impl Drop for RealProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(path) = &self.data_path {
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

/// Starts `bin` and waits (bounded) until its stderr has said "TCP: listening on" and
/// "HTTP: listening on"; returns the two addresses it printed.
fn start_listening(
    bin: &Path,
    args: &[String],
    data_path: Option<PathBuf>,
) -> (RealProcess, SocketAddr, SocketAddr) {
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            // Keep draining after the reader is gone, so the child never blocks.
            let _ = tx.send(line);
        }
    });
    let process = RealProcess { child, data_path };
    let listening = |line: &str, what: &str| -> Option<SocketAddr> {
        let (_, rest) = line.split_once(what)?;
        rest.trim().parse().ok()
    };
    let (mut tcp, mut http) = (None, None);
    let deadline = Instant::now() + START_TIMEOUT;
    let mut seen = Vec::new();
    while tcp.is_none() || http.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            panic!(
                "{} did not start listening; it said:\n{}",
                bin.display(),
                seen.join("\n")
            );
        };
        tcp = tcp.or_else(|| listening(&line, "TCP: listening on "));
        http = http.or_else(|| listening(&line, "HTTP: listening on "));
        seen.push(line);
    }
    (process, tcp.expect("tcp"), http.expect("http"))
}

/// A real nsqlookupd on free loopback ports.
#[derive(Debug)]
pub(crate) struct RealLookupd {
    _process: RealProcess,
    pub(crate) tcp_addr: SocketAddr,
    pub(crate) http_addr: SocketAddr,
}

impl RealLookupd {
    pub(crate) fn start(bin: &Path) -> Self {
        let args = [
            "--tcp-address=127.0.0.1:0".to_owned(),
            "--http-address=127.0.0.1:0".to_owned(),
            "--broadcast-address=127.0.0.1".to_owned(),
        ];
        let (process, tcp_addr, http_addr) = start_listening(bin, &args, None);
        Self {
            _process: process,
            tcp_addr,
            http_addr,
        }
    }
}

/// A real nsqd on free loopback ports, registering with `lookupd_tcp`.
#[derive(Debug)]
pub(crate) struct RealNsqd {
    _process: RealProcess,
    pub(crate) tcp_addr: SocketAddr,
    pub(crate) http_addr: SocketAddr,
}

impl RealNsqd {
    pub(crate) fn start(bin: &Path, lookupd_tcp: SocketAddr) -> Self {
        let data_path = std::env::temp_dir().join(format!(
            "nsqd-lookupd-test-{}-{}",
            std::process::id(),
            lookupd_tcp.port()
        ));
        std::fs::create_dir_all(&data_path).expect("create nsqd data dir");
        let args = [
            "--tcp-address=127.0.0.1:0".to_owned(),
            "--http-address=127.0.0.1:0".to_owned(),
            "--https-address=".to_owned(),
            "--broadcast-address=127.0.0.1".to_owned(),
            format!("--data-path={}", data_path.display()),
            format!("--lookupd-tcp-address={lookupd_tcp}"),
        ];
        let (process, tcp_addr, http_addr) = start_listening(bin, &args, Some(data_path));
        Self {
            _process: process,
            tcp_addr,
            http_addr,
        }
    }
}

/// A raw protocol V1 client.
pub(crate) struct V1Client {
    framed: Framed<TcpStream, LookupClientCodec>,
}

impl V1Client {
    /// Connects and sends the magic.
    pub(crate) async fn connect(addr: SocketAddr) -> Self {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(&MAGIC_V1).await.expect("magic");
        Self {
            framed: Framed::new(stream, LookupClientCodec::new()),
        }
    }

    /// Sends a command and returns the reply, `None` when the server closed.
    pub(crate) async fn call(&mut self, cmd: LookupCommand) -> Option<LookupReply> {
        self.framed.send(cmd).await.expect("send");
        self.reply().await
    }

    /// Sends raw bytes and returns the reply.
    pub(crate) async fn call_raw(&mut self, bytes: &[u8]) -> Option<LookupReply> {
        self.framed.get_mut().write_all(bytes).await.expect("send");
        self.reply().await
    }

    /// The next reply, `None` when the server closed the connection.
    pub(crate) async fn reply(&mut self) -> Option<LookupReply> {
        self.framed.next().await.and_then(Result::ok)
    }

    /// The reply as text, for comparisons.
    pub(crate) async fn call_text(&mut self, cmd: LookupCommand) -> String {
        reply_text(self.call(cmd).await)
    }
}

/// A reply as text: `OK`, the data, the error, or `<closed>`.
pub(crate) fn reply_text(reply: Option<LookupReply>) -> String {
    match reply {
        None => "<closed>".to_owned(),
        Some(LookupReply::Ok) => "OK".to_owned(),
        Some(LookupReply::Data(data)) => String::from_utf8_lossy(&data).into_owned(),
        Some(LookupReply::Error(err)) => err.to_string(),
    }
}

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpReply {
    pub(crate) status: u16,
    pub(crate) content_type: Option<String>,
    pub(crate) nsq_content_type: Option<String>,
    pub(crate) body: String,
}

/// One HTTP/1.1 request on its own connection; `accept_v1` sends nsq's Accept header.
pub(crate) async fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    accept_v1: bool,
) -> HttpReply {
    let mut stream = TcpStream::connect(addr).await.expect("connect http");
    let accept = if accept_v1 {
        format!("Accept: {ACCEPT_V1}\r\n")
    } else {
        String::new()
    };
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\n{accept}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write http");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read http");
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").expect("http head");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("status line");
    let mut reply = HttpReply {
        status,
        content_type: None,
        nsq_content_type: None,
        body: body.to_owned(),
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        match name.trim().to_ascii_lowercase().as_str() {
            "content-type" => reply.content_type = Some(value.trim().to_owned()),
            "x-nsq-content-type" => reply.nsq_content_type = Some(value.trim().to_owned()),
            _ => {}
        }
    }
    reply
}
