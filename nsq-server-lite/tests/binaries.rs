//! The `nsqd` and `nsqlookupd` binaries, run as a script would run the Go ones: nsqd
//! registers with nsqlookupd, takes a publish over TCP, and lookupd lists it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A child process killed on drop, with the addresses it said it listens on.
struct Server {
    child: Child,
    /// What follows "TCP: listening on": an address, or a unix socket's path.
    tcp: String,
    http: SocketAddr,
    /// Its stderr up to the listening lines.
    said: Vec<String>,
}

impl Server {
    fn tcp_addr(&self) -> SocketAddr {
        self.tcp.parse().expect("TCP listens on ip:port")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `bin` and waits (under a timeout) for its "TCP/HTTP: listening on" lines.
fn start(bin: &str, args: &[&str]) -> Server {
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Keeps reading after the listening lines, so the child never writes to a closed pipe.
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut tcp, mut http) = (None, None);
    let mut said = Vec::new();
    while tcp.is_none() || http.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("listening lines within 20 s; it said: {said:#?}"));
        said.push(line.clone());
        let after = |prefix: &str| line.strip_prefix(prefix).map(|a| a.trim().to_owned());
        tcp = tcp.or_else(|| after("TCP: listening on "));
        http = http.or_else(|| after("HTTP: listening on ").and_then(|a| a.parse().ok()));
    }
    Server {
        child,
        tcp: tcp.unwrap_or_else(|| unreachable!()),
        http: http.unwrap_or_else(|| unreachable!()),
        said,
    }
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect HTTP");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

#[test]
fn nsqd_binary_registers_with_nsqlookupd_binary_and_takes_a_publish() {
    let lookupd = start(
        env!("CARGO_BIN_EXE_nsqlookupd"),
        &["-tcp-address=127.0.0.1:0", "-http-address=127.0.0.1:0"],
    );
    let lookupd_tcp = format!("-lookupd-tcp-address={}", lookupd.tcp);
    let nsqd = start(
        env!("CARGO_BIN_EXE_nsqd"),
        &[
            "-tcp-address=127.0.0.1:0",
            "--http-address",
            "127.0.0.1:0",
            "-broadcast-address=127.0.0.1",
            &lookupd_tcp,
        ],
    );

    let mut conn = TcpStream::connect(nsqd.tcp_addr()).expect("connect TCP");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    conn.write_all(b"  V2PUB bin_topic\n\x00\x00\x00\x02hi")
        .expect("write");
    let mut reply = [0u8; 10];
    conn.read_exact(&mut reply).expect("read OK frame");
    assert_eq!(&reply, b"\x00\x00\x00\x06\x00\x00\x00\x00OK");

    // The registration reaches lookupd asynchronously: poll its answer under a deadline.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = http_get(lookupd.http, "/lookup?topic=bin_topic");
        if answer.contains(&format!("\"tcp_port\":{}", nsqd.tcp_addr().port())) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "lookupd never listed nsqd: {answer}"
        );
        std::thread::yield_now();
    }
    let stats = http_get(nsqd.http, "/stats?format=json");
    assert!(stats.contains("\"topic_name\":\"bin_topic\""), "{stats}");
}

/// Every flag of nsqd 1.3.0's `--help` (but `-config` and `-version`), in Go's one-dash
/// spelling, with a value nsqd would take.
const EVERY_NSQD_FLAG: &[&str] = &[
    "-tcp-address=127.0.0.1:0",
    "-http-address=127.0.0.1:0",
    "-https-address=127.0.0.1:0",
    "-auth-http-address=127.0.0.1:1",
    "-broadcast-address=127.0.0.1",
    "-broadcast-tcp-port=0",
    "-broadcast-http-port=0",
    "-lookupd-tcp-address=127.0.0.1:1",
    "-data-path=/tmp/nsq-server-lite-flags",
    "-deflate=true",
    "-e2e-processing-latency-percentile=0.99",
    "-e2e-processing-latency-window-time=10m0s",
    "-http-client-connect-timeout=2s",
    "-http-client-request-timeout=5s",
    "-log-level=info",
    "-log-prefix=[nsqd] ",
    "-max-body-size=5242880",
    "-max-bytes-per-file=104857600",
    "-max-channel-consumers=0",
    "-max-deflate-level=6",
    "-max-heartbeat-interval=1m0s",
    "-max-msg-size=1048576",
    "-max-msg-timeout=15m0s",
    "-max-output-buffer-size=65536",
    "-max-output-buffer-timeout=30s",
    "-max-rdy-count=2500",
    "-max-req-timeout=1h0m0s",
    "-mem-queue-size=10000",
    "-min-output-buffer-timeout=25ms",
    "-msg-timeout=1m0s",
    "-node-id=617",
    "-output-buffer-timeout=250ms",
    "-queue-scan-selection-count=20",
    "-queue-scan-worker-pool-max=4",
    "-snappy=true",
    "-statsd-address=127.0.0.1:8125",
    "-statsd-exclude-ephemeral",
    "-statsd-interval=1m0s",
    "-statsd-mem-stats=true",
    "-statsd-prefix=nsq.%s",
    "-statsd-udp-packet-size=508",
    "-sync-every=2500",
    "-sync-timeout=2s",
    "-tls-client-auth-policy=",
    "-tls-min-version=tls1.2",
    "-tls-required=false",
    "-verbose=false",
    "-worker-id",
];

#[test]
fn nsqd_binary_takes_every_nsqd_flag_and_says_once_what_it_ignores() {
    let nsqd = start(env!("CARGO_BIN_EXE_nsqd"), EVERY_NSQD_FLAG);
    let warnings: Vec<&String> = nsqd
        .said
        .iter()
        .filter(|l| l.contains("accepts and ignores"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning line: {:#?}", nsqd.said);
    for ignored in [
        "--data-path",
        "--statsd-address",
        "--node-id",
        "--e2e-processing-latency-percentile",
    ] {
        assert!(warnings[0].contains(ignored), "{ignored}: {}", warnings[0]);
    }
    // It serves, with the flags it honours in force (AUTH, from -auth-http-address).
    let mut conn = TcpStream::connect(nsqd.tcp_addr()).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    conn.write_all(b"  V2PUB t\n\x00\x00\x00\x01x")
        .expect("write");
    let mut reply = Vec::new();
    let _ = conn.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.contains("E_AUTH_FIRST"), "{reply}");

    // The list above is nsqd's own, when a real nsqd is at hand to ask.
    if let Some(bin) = nsq_peer_rule::peer_or_skip("NSQD_BIN") {
        let help = Command::new(bin)
            .arg("--help")
            .output()
            .expect("nsqd --help");
        let help = String::from_utf8_lossy(&help.stderr).into_owned()
            + &String::from_utf8_lossy(&help.stdout);
        for flag in help
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix('-'))
        {
            let name = flag.split_whitespace().next().unwrap_or_default();
            if name.is_empty()
                || [
                    "config",
                    "version",
                    "tls-cert",
                    "tls-key",
                    "tls-root-ca-file",
                ]
                .contains(&name)
            {
                continue;
            }
            assert!(
                EVERY_NSQD_FLAG
                    .iter()
                    .any(|f| f[1..].split('=').next() == Some(name)),
                "nsqd 1.3.0 has -{name}, which this test does not give"
            );
        }
    }
}

#[test]
fn nsqd_binary_refuses_flags_whose_absence_a_client_would_notice() {
    for (flag, why) in [
        ("-config=/etc/nsqd.cfg", "give them as flags"),
        ("-broadcast-tcp-port=4150", "listens on"),
        ("-min-output-buffer-timeout=10ms", "25ms"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_nsqd"))
            .arg(flag)
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(2), "{flag}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("not supported") && stderr.contains(why),
            "{flag}: {stderr}"
        );
    }
}

#[cfg(unix)]
#[test]
fn nsqd_binary_serves_v2_on_a_unix_socket_when_tcp_address_is_a_path() {
    use std::os::unix::net::UnixStream;

    let path = std::env::temp_dir().join(format!("nsq-lite-bin-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let tcp_address = format!("-tcp-address={}", path.display());
    let nsqd = start(
        env!("CARGO_BIN_EXE_nsqd"),
        &[
            &tcp_address,
            "-http-address=127.0.0.1:0",
            "-topology-region=eu",
            "-topology-zone=eu-1a",
        ],
    );
    assert_eq!(nsqd.tcp, path.display().to_string(), "announces the socket");

    let mut conn = UnixStream::connect(&path).expect("connect the unix socket");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    conn.write_all(b"  V2PUB bin_unix\n\x00\x00\x00\x02hi")
        .expect("write");
    let mut reply = [0u8; 10];
    conn.read_exact(&mut reply).expect("read OK frame");
    assert_eq!(&reply, b"\x00\x00\x00\x06\x00\x00\x00\x00OK");

    let info = http_get(nsqd.http, "/info");
    assert!(info.contains("\"tcp_port\":-1"), "{info}");
    assert!(info.contains("\"topology_region\":\"eu\""), "{info}");
    assert!(info.contains("\"topology_zone\":\"eu-1a\""), "{info}");
    drop(nsqd);
    // Killed, the binary leaves its socket behind (as nsqd does on SIGKILL).
    let _ = std::fs::remove_file(&path);
}
