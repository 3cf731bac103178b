//! The TCP side: one task per nsqd connection speaking protocol V1.

use std::net::SocketAddr;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use nsq_proto::lookup::{check_magic, LookupCommand, LookupReply, LookupServerCodec, LookupVerb};
use nsq_proto::ProtocolError;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::codec::{Encoder, Framed};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn, Instrument};

use super::db::ConnId;
use super::Shared;

/// Accepts connections until `shutdown`, each served on its own tracked task.
pub(super) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let addr = listener.local_addr().ok();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, remote)) => {
                spawn_connection(&tracker, stream, remote, &shared, &shutdown);
            }
            Err(err) => warn!(cause = %err, "TCP: accept failed"),
        }
    }
    info!(addr = ?addr, "TCP: closing");
}

/// Serves one connection on a task of `tracker`.
pub(super) fn spawn_connection<S>(
    tracker: &TaskTracker,
    io: S,
    remote: SocketAddr,
    shared: &Arc<Shared>,
    shutdown: &CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn_id = shared.next_conn_id();
    let span = tracing::info_span!("lookupd_conn", addr = %remote, conn_id);
    let shared = Arc::clone(shared);
    let shutdown = shutdown.clone();
    tracker.spawn(
        async move {
            debug!("TCP: new client");
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = serve(io, remote, conn_id, &shared) => {}
            }
            // Whatever ended the connection, its producer leaves every registration.
            shared.update(|db| db.disconnect(conn_id));
            debug!("TCP: client gone");
        }
        .instrument(span),
    );
}

/// The protocol: the magic, then commands until an error or the end of the stream.
async fn serve<S>(mut io: S, remote: SocketAddr, conn_id: ConnId, shared: &Shared)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut magic = [0u8; 4];
    if let Err(err) = io.read_exact(&mut magic).await {
        debug!(cause = %err, "failed to read protocol version");
        return;
    }
    if check_magic(&magic).is_err() {
        warn!(magic = ?magic, "bad protocol magic");
        let mut wire = bytes::BytesMut::new();
        if LookupServerCodec::new()
            .encode(LookupReply::bad_protocol(), &mut wire)
            .is_ok()
        {
            let _ = io.write_all(&wire).await;
        }
        return;
    }
    let mut framed = Framed::new(io, LookupServerCodec::new());
    let mut identified = false;
    while let Some(decoded) = framed.next().await {
        let reply = match decoded {
            Ok(cmd) => match cmd.verb().state_error(identified) {
                Some(err) => Err(err),
                None => Ok(execute(cmd, remote, conn_id, shared, &mut identified)),
            },
            Err(ProtocolError::Rejected(rejected)) => {
                let state = LookupVerb::from_name(&rejected.name)
                    .and_then(|verb| verb.state_error(identified));
                Err(state.unwrap_or(rejected.error))
            }
            Err(err) => {
                debug!(cause = %err, "closing connection");
                return;
            }
        };
        match reply {
            Ok(reply) => {
                if framed.send(reply).await.is_err() {
                    return;
                }
            }
            Err(err) => {
                // Every nsqlookupd error is fatal: reply, then close.
                warn!(error = %err, "client error");
                let _ = framed.send(LookupReply::Error(err)).await;
                return;
            }
        }
    }
}

/// Runs a command that passed the state check.
fn execute(
    cmd: LookupCommand,
    remote: SocketAddr,
    conn_id: ConnId,
    shared: &Shared,
    identified: &mut bool,
) -> LookupReply {
    let now = tokio::time::Instant::now();
    match cmd {
        LookupCommand::Identify(peer) => {
            info!(
                broadcast_address = %peer.broadcast_address,
                tcp_port = peer.tcp_port,
                http_port = peer.http_port,
                version = %peer.version,
                "IDENTIFY"
            );
            shared.update(|db| db.identify(conn_id, peer, remote.to_string(), now));
            *identified = true;
            LookupReply::identify(&shared.info).unwrap_or(LookupReply::Ok)
        }
        LookupCommand::Register { topic, channel } => {
            info!(topic = %topic.as_str(), channel = ?channel.as_ref().map(|c| c.as_str()), "REGISTER");
            shared.update(|db| {
                db.register(
                    conn_id,
                    topic.as_str(),
                    channel.as_ref().map(|c| c.as_str()),
                );
            });
            LookupReply::Ok
        }
        LookupCommand::Unregister { topic, channel } => {
            info!(topic = %topic.as_str(), channel = ?channel.as_ref().map(|c| c.as_str()), "UNREGISTER");
            shared.update(|db| {
                db.unregister(
                    conn_id,
                    topic.as_str(),
                    channel.as_ref().map(|c| c.as_str()),
                );
            });
            LookupReply::Ok
        }
        LookupCommand::Ping => {
            if *identified {
                shared.update(|db| db.ping(conn_id, now));
            }
            LookupReply::Ok
        }
    }
}
