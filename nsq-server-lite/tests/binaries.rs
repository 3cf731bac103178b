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
    while tcp.is_none() || http.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("listening lines within 20 s");
        let after = |prefix: &str| line.strip_prefix(prefix).map(|a| a.trim().to_owned());
        tcp = tcp.or_else(|| after("TCP: listening on "));
        http = http.or_else(|| after("HTTP: listening on ").and_then(|a| a.parse().ok()));
    }
    Server {
        child,
        tcp: tcp.unwrap_or_else(|| unreachable!()),
        http: http.unwrap_or_else(|| unreachable!()),
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

#[test]
fn nsqd_binary_refuses_flags_of_features_it_lacks() {
    let out = Command::new(env!("CARGO_BIN_EXE_nsqd"))
        .arg("-data-path=/tmp")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--data-path") && stderr.contains("not supported"),
        "{stderr}"
    );
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
