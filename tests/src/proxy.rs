//! A TCP proxy in front of a broker, so tests can make the network misbehave on purpose:
//! hold the broker's replies (to make a client time out), blackhole the connections (bytes
//! vanish both ways, and no FIN or RST ever comes: a dead path, as a pulled cable or a
//! dropped route makes it), or cut every connection and refuse new ones (so the broker is
//! dead as far as clients can tell, while the test can still ask it what it received).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What the proxy lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Bytes flow both ways.
    Open,
    /// Bytes from the broker to clients are held until [`Proxy::open`].
    HoldReplies,
    /// Bytes vanish both ways and nothing is closed; a connection that lost bytes so stays
    /// dead after [`Proxy::open`] (new connections then work).
    Blackhole,
    /// Every connection is closed and new ones are dropped at once.
    Dead,
}

/// A proxy to one broker address; stops when dropped.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    stop: CancellationToken,
    tasks: TaskTracker,
    /// Connections forwarded so far (each one connected to the broker).
    forwarded: Arc<AtomicUsize>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards each connection to `target`.
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let (mode, _) = watch::channel(Mode::Open);
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let forwarded = Arc::new(AtomicUsize::new(0));
        let (mode_rx, stop2, tasks2) = (mode.subscribe(), stop.clone(), tasks.clone());
        let forwarded2 = forwarded.clone();
        tasks.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = stop2.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((client, _)) = accepted else { continue };
                if *mode_rx.borrow() == Mode::Dead {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                forwarded2.fetch_add(1, Ordering::SeqCst);
                tasks2.spawn(pipe(client, server, mode_rx.clone(), stop2.clone()));
            }
        });
        Self {
            addr,
            mode,
            stop,
            tasks,
            forwarded,
        }
    }

    /// How many client connections the proxy has forwarded so far, each one connected to the
    /// broker before it is counted.
    pub fn forwarded(&self) -> usize {
        self.forwarded.load(Ordering::SeqCst)
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Holds the broker's replies until [`open`](Self::open).
    pub fn hold_replies(&self) {
        self.mode.send_replace(Mode::HoldReplies);
    }

    /// Blackholes every connection, open and new: nothing gets through either way, and
    /// nothing is closed, until [`open`](Self::open) (after which new connections work, and
    /// those that lost bytes stay silent).
    pub fn blackhole(&self) {
        self.mode.send_replace(Mode::Blackhole);
    }

    /// Lets bytes flow again, releasing what was held.
    pub fn open(&self) {
        self.mode.send_replace(Mode::Open);
    }

    /// Cuts every connection and refuses new ones: to clients, the broker is dead.
    pub fn kill(&self) {
        self.mode.send_replace(Mode::Dead);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.tasks.close();
    }
}

/// Copies bytes both ways, obeying the mode.
async fn pipe(
    client: TcpStream,
    server: TcpStream,
    mode: watch::Receiver<Mode>,
    stop: CancellationToken,
) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_rd, mut client_wr) = client.into_split();
    let (mut server_rd, mut server_wr) = server.into_split();
    // Set once bytes were dropped in a blackhole: from then on both ways drop everything.
    let lost = Arc::new(AtomicBool::new(false));
    let swallowed = |mode: &watch::Receiver<Mode>, lost: &AtomicBool| {
        if *mode.borrow() == Mode::Blackhole {
            lost.store(true, Ordering::Relaxed);
        }
        lost.load(Ordering::Relaxed)
    };
    let up = {
        let (mut mode, lost) = (mode.clone(), lost.clone());
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = tokio::select! {
                    n = client_rd.read(&mut buf) => n,
                    _ = mode.wait_for(|m| *m == Mode::Dead) => return,
                };
                match n {
                    Ok(0) | Err(_) => return,
                    Ok(_) if swallowed(&mode, &lost) => {}
                    Ok(n) => {
                        if server_wr.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    };
    let down = {
        let mut mode = mode.clone();
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = tokio::select! {
                    n = server_rd.read(&mut buf) => n,
                    _ = mode.wait_for(|m| *m == Mode::Dead) => return,
                };
                let n = match n {
                    // The broker's close (its own heartbeat timeout, say) vanishes in a
                    // blackhole too: the client is left to notice on its own.
                    Ok(0) | Err(_) if swallowed(&mode, &lost) => {
                        return std::future::pending().await
                    }
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if swallowed(&mode, &lost) {
                    continue;
                }
                // Held replies wait here until the proxy opens (or dies).
                match mode.wait_for(|m| *m != Mode::HoldReplies).await {
                    Ok(m) if *m == Mode::Dead => return,
                    Ok(_) => {}
                    Err(_) => return,
                }
                if swallowed(&mode, &lost) {
                    continue;
                }
                if client_wr.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    };
    // Either direction ending (or the proxy stopping) closes both sockets.
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = stop.cancelled() => {}
    }
}
