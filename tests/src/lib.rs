//! Test harness for the workspace's integration tests.
//!
//! [`RealNsqd`] starts a real `nsqd` v1.3.0 (the binary named by `NSQD_BIN`, which
//! `scripts/install-peers.sh` builds) on free loopback ports and stops it on drop.
//! [`peer_or_skip`] applies the project's one rule for optional peers (the
//! `nsq-peer-rule` crate, re-exported here): on a developer machine without the peer a
//! test is skipped with a message, and under CI (`CI` set to anything but empty, `0` or
//! `false`) a missing peer fails the test. [`RealNsqlookupd`] does the same for
//! `nsqlookupd` (`NSQLOOKUPD_BIN`).
//!
//! For the third-party client interop tests: [`broker`] starts the broker under test
//! (real `nsqd` for now) and reads its stats, [`clients`] runs the go-nsq, pynsq and
//! nsqjs peers from `tests/peers/`, [`tls`] makes throwaway certificates and [`http`]
//! is a tiny HTTP client for the brokers' APIs, [`auth`] a tiny auth service for brokers that
//! require AUTH.

pub mod auth;
pub mod broker;
pub mod clients;
pub mod cluster;
pub mod consume;
pub mod http;
pub mod proxy;
pub mod tls;

pub use nsq_peer_rule::{in_ci, peer_or_skip, present_or_skip};

/// The Rust code blocks of the workspace's README.md, compiled (and those with a `main`,
/// run) as this crate's doctests, so that the README cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// How long a peer may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Polls `check` every 20 ms until it returns `Ok`, and returns that value.
///
/// # Panics
///
/// When `check` still fails after `within`, with `what` and its last error.
pub async fn eventually<F, Fut, T>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(why) if tokio::time::Instant::now() >= deadline => {
                panic!("{what} within {within:?}: {why}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// A free loopback port: bound once by the OS, then released for the child to take.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Numbers the data paths of this process's nsqd children.
static NEXT_DATA_PATH: AtomicUsize = AtomicUsize::new(0);

/// A real `nsqd` process on loopback, killed (and its data removed) on drop.
#[derive(Debug)]
pub struct RealNsqd {
    child: Child,
    bin: PathBuf,
    extra: Vec<String>,
    data_path: PathBuf,
    /// The TCP protocol address.
    pub tcp_addr: SocketAddr,
    /// The HTTP API address.
    pub http_addr: SocketAddr,
}

impl RealNsqd {
    /// Starts `nsqd` from `bin` with `extra` flags, returning once it listens on
    /// both its TCP and HTTP ports (it says so on stderr).
    ///
    /// # Panics
    ///
    /// When the process cannot start or does not report listening in time.
    pub fn start(bin: &std::path::Path, extra: &[&str]) -> Self {
        let extra: Vec<String> = extra.iter().map(|&f| f.to_owned()).collect();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let tcp_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            let http_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            // Named by a counter, not by the port: two starts at once can be handed the same
            // free port (one of them then fails to bind and starts again), and must not share
            // a data path, which nsqd locks.
            let data_path = std::env::temp_dir().join(format!(
                "nsqd-test-{}-{}",
                std::process::id(),
                NEXT_DATA_PATH.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&data_path).expect("create nsqd data dir");
            let child = Self::spawn(bin, &extra, tcp_addr, http_addr, &data_path);
            // Built before waiting, so that Drop kills the child and removes its data path.
            let mut nsqd = Self {
                child,
                bin: bin.to_owned(),
                extra: extra.clone(),
                data_path,
                tcp_addr,
                http_addr,
            };
            match wait_listening("nsqd", &mut nsqd.child, tcp_addr, http_addr) {
                Ok(()) => return nsqd,
                Err(why) if port_taken(&why) && attempt < START_ATTEMPTS => continue,
                Err(why) => panic!("{why}"),
            }
        }
    }

    fn spawn(
        bin: &std::path::Path,
        extra: &[String],
        tcp_addr: SocketAddr,
        http_addr: SocketAddr,
        data_path: &std::path::Path,
    ) -> Child {
        Command::new(bin)
            .arg(format!("--tcp-address={tcp_addr}"))
            .arg(format!("--http-address={http_addr}"))
            .arg("--https-address=")
            .arg(format!("--data-path={}", data_path.display()))
            .arg("--broadcast-address=127.0.0.1")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()))
    }

    /// Stops nsqd with SIGTERM and waits for it to exit. On SIGTERM nsqd closes its clients and
    /// writes every queued, in-flight and deferred message to its data path, which is kept, so
    /// [`restart`](Self::restart) brings them back.
    ///
    /// # Panics
    ///
    /// When the signal cannot be sent.
    pub fn terminate(&mut self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM nsqd: {status}");
        let _ = self.child.wait();
    }

    /// The process id of the running nsqd.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills nsqd with SIGKILL, as a crash would, and waits for it to exit: what it held in
    /// memory (its memory queue, in-flight and deferred messages) is lost, what its disk queue
    /// holds stays in the data path for [`restart`](Self::restart).
    ///
    /// # Panics
    ///
    /// When the signal cannot be sent.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL nsqd");
        let _ = self.child.wait();
    }

    /// Starts nsqd again (after [`terminate`](Self::terminate) or [`kill`](Self::kill)) on the same ports, with the same
    /// data path and flags; returns once it listens.
    ///
    /// # Panics
    ///
    /// When it cannot start or does not report listening in time.
    pub fn restart(&mut self) {
        self.child = Self::spawn(
            &self.bin,
            &self.extra,
            self.tcp_addr,
            self.http_addr,
            &self.data_path,
        );
        if let Err(why) = wait_listening("nsqd", &mut self.child, self.tcp_addr, self.http_addr) {
            panic!("{why}");
        }
    }
}

/// Waits until a child that logs Go-NSQ style (`TCP: listening on ADDR`, `HTTP: listening
/// on ADDR` on stderr) listens on both addresses; keeps draining its stderr afterwards.
///
/// # Errors
///
/// What it said, when it does not say so within [`START_TIMEOUT`] (or exits first).
fn wait_listening(
    what: &str,
    child: &mut Child,
    tcp_addr: SocketAddr,
    http_addr: SocketAddr,
) -> Result<(), String> {
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                // Nobody listens any more: keep draining so the child never blocks.
                continue;
            }
        }
    });
    let (mut tcp, mut http) = (false, false);
    let deadline = std::time::Instant::now() + START_TIMEOUT;
    let mut seen = Vec::new();
    while !(tcp && http) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                tcp |= line.contains(&format!("TCP: listening on {tcp_addr}"));
                http |= line.contains(&format!("HTTP: listening on {http_addr}"));
                seen.push(line);
            }
            Err(_) => {
                let status = child.try_wait();
                return Err(format!("{what} did not start listening within {START_TIMEOUT:?} (status {status:?}); it said:\n{}", seen.join("\n")));
            }
        }
    }
    Ok(())
}

/// How many times a child is started on fresh ports when a port it was given was taken
/// meanwhile (`free_port` releases the port before the child binds it).
const START_ATTEMPTS: usize = 5;

/// Whether a start failed only because a port was taken between `free_port` and the bind.
fn port_taken(output: &str) -> bool {
    // Go says "address already in use", Rust's std "Address already in use".
    output
        .to_ascii_lowercase()
        .contains("address already in use")
}

/// A real `nsqlookupd` process on loopback, killed on drop.
#[derive(Debug)]
pub struct RealNsqlookupd {
    child: Child,
    /// The TCP address nsqd registers with (`nsqd --lookupd-tcp-address`).
    pub tcp_addr: SocketAddr,
    /// The HTTP API address consumers query (`/lookup?topic=...`).
    pub http_addr: SocketAddr,
}

impl RealNsqlookupd {
    /// Starts `nsqlookupd` from `bin`, returning once it listens on both ports.
    ///
    /// # Panics
    ///
    /// When the process cannot start or does not report listening in time.
    pub fn start(bin: &std::path::Path) -> Self {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let tcp_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            let http_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            let child = Command::new(bin)
                .arg(format!("--tcp-address={tcp_addr}"))
                .arg(format!("--http-address={http_addr}"))
                .arg("--broadcast-address=127.0.0.1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
            let mut lookupd = Self {
                child,
                tcp_addr,
                http_addr,
            };
            match wait_listening("nsqlookupd", &mut lookupd.child, tcp_addr, http_addr) {
                Ok(()) => return lookupd,
                Err(why) if port_taken(&why) && attempt < START_ATTEMPTS => continue,
                Err(why) => panic!("{why}"),
            }
        }
    }
}

impl Drop for RealNsqlookupd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RealNsqd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_path);
    }
}

#[cfg(test)]
mod tests {
    /// Both brokers' words for a port taken between `free_port` and the bind start the child
    /// again on fresh ports; any other failure does not.
    #[test]
    fn a_taken_port_is_recognised_from_nsqd_and_from_nsq_server_lite() {
        assert!(super::port_taken(
            "FATAL: listen (127.0.0.1:4151) failed - listen tcp 127.0.0.1:4151: bind: address already in use"
        ));
        assert!(super::port_taken(
            "FATAL: cannot listen on HTTP address 127.0.0.1:37541: Address already in use (os error 98)"
        ));
        assert!(!super::port_taken("FATAL: --mem-queue-size: invalid value"));
    }
}
