//! The listener clients speak the TCP protocol (V2) to: a TCP port, or a unix socket, as
//! nsqd 1.3.0 listens on one when `--tcp-address` is a path rather than `host:port`.

use std::net::SocketAddr;
use std::path::Path;
#[cfg(unix)]
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
#[cfg(unix)]
use tokio::net::UnixListener;
use tokio_util::task::TaskTracker;

use crate::broker::{Broker, Options};
use crate::client::Peer;
use crate::server::StartError;

/// The bound protocol listener.
#[derive(Debug)]
pub(crate) enum ProtocolListener {
    Tcp(TcpListener),
    #[cfg(unix)]
    Unix {
        listener: UnixListener,
        /// The socket file, removed when the listener stops (Go's `UnixListener.Close` does
        /// the same).
        path: PathBuf,
    },
}

impl ProtocolListener {
    /// Binds what the options ask for: the unix socket when one is set, else the TCP address.
    /// Like Go's `net.Listen("unix", ..)`, binding fails when the socket file exists.
    pub(crate) async fn bind(opts: &Options) -> Result<Self, StartError> {
        match &opts.tcp_unix_socket {
            None => listen(opts.tcp_address)
                .map(Self::Tcp)
                .map_err(|source| StartError::Bind {
                    what: "TCP",
                    addr: opts.tcp_address,
                    source,
                }),
            #[cfg(unix)]
            Some(path) => UnixListener::bind(path)
                .map(|listener| Self::Unix {
                    listener,
                    path: path.clone(),
                })
                .map_err(|source| StartError::BindUnix {
                    path: path.clone(),
                    source,
                }),
            #[cfg(not(unix))]
            Some(path) => Err(StartError::Invalid(format!(
                "cannot listen on {}: unix sockets need a unix platform",
                path.display()
            ))),
        }
    }

    /// The TCP address bound; for a unix socket, which has none, the unspecified address
    /// with port 0.
    pub(crate) fn tcp_addr(&self, opts: &Options) -> Result<SocketAddr, StartError> {
        match self {
            Self::Tcp(listener) => listener.local_addr().map_err(|source| StartError::Bind {
                what: "TCP",
                addr: opts.tcp_address,
                source,
            }),
            #[cfg(unix)]
            Self::Unix { .. } => Ok(SocketAddr::from(([0, 0, 0, 0], 0))),
        }
    }

    /// The unix socket's path, when listening on one.
    pub(crate) fn unix_socket_path(&self) -> Option<&Path> {
        match self {
            Self::Tcp(_) => None,
            #[cfg(unix)]
            Self::Unix { path, .. } => Some(path),
        }
    }

    /// Accepts connections, each served on a task of `tasks`, until the broker shuts down.
    pub(crate) async fn accept_loop(self, broker: Arc<Broker>, tasks: TaskTracker) {
        match self {
            Self::Tcp(listener) => loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, remote)) => {
                            let _ = stream.set_nodelay(true);
                            tasks.spawn(crate::conn::serve(broker.clone(), stream, Peer::Tcp(remote)));
                        }
                        Err(err) => accept_failed(&err).await,
                    },
                    _ = broker.shutdown.cancelled() => return,
                }
            },
            #[cfg(unix)]
            Self::Unix { listener, path } => {
                loop {
                    tokio::select! {
                        accepted = listener.accept() => match accepted {
                            Ok((stream, _)) => {
                                tasks.spawn(crate::conn::serve(broker.clone(), stream, Peer::Unix));
                            }
                            Err(err) => accept_failed(&err).await,
                        },
                        _ = broker.shutdown.cancelled() => break,
                    }
                }
                drop(listener);
                if let Err(err) = std::fs::remove_file(&path) {
                    tracing::warn!(path = %path.display(), %err, "cannot remove the unix socket");
                }
            }
        }
    }
}

/// Out of file descriptors and the like: nsqd logs and goes on too.
async fn accept_failed(err: &std::io::Error) {
    tracing::warn!(%err, "accept failed");
    tokio::task::yield_now().await;
}

/// Binds a TCP listener on `addr` with the accept backlog Go gives nsqd and nsqlookupd: the
/// kernel's `net.core.somaxconn` (4,096 on current Linux), where tokio (like the standard
/// library) asks for 128. With 128, a burst of a few hundred clients connecting at once
/// overflows the queue, and the kernel drops their SYNs to retry a second later: past a
/// client's one-second dial timeout.
pub(crate) fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    #[cfg(not(windows))]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog())
}

/// The kernel's `net.core.somaxconn` (as Go reads it, capped at 65,535), else 4,096.
fn backlog() -> u32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|&n| n > 0)
        .map_or(4096, |n| n.min(65_535))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Six hundred connections made at once (or as many as the kernel's `somaxconn` allows)
    /// are all queued for accept while nobody accepts: with tokio's default backlog of 128
    /// the rest would wait on SYN retries.
    #[tokio::test]
    async fn the_accept_queue_holds_a_burst_of_connections() {
        let n = 600.min(backlog() as usize);
        let listener = listen(([127, 0, 0, 1], 0).into()).unwrap();
        let addr = listener.local_addr().unwrap();
        let connects = (0..n).map(|_| {
            tokio::time::timeout(
                std::time::Duration::from_millis(500),
                tokio::net::TcpStream::connect(addr),
            )
        });
        let results = futures::future::join_all(connects).await;
        let made = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
        assert_eq!(made, n, "connections established without an accept");
        drop(listener);
    }
}
