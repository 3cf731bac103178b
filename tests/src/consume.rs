//! A minimal raw-protocol consumer, to check what a broker holds after a test published.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use nsq_proto::{Channel, ClientCodec, Command, Frame, Identify, Response, Topic, MAGIC_V2};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// Subscribes to `topic`/`channel` at `addr` with RDY `rdy`, FINs every message, and returns
/// the bodies of the first `count` messages, in arrival order.
///
/// # Errors
///
/// When the connection fails, the broker answers with an error, or fewer than `count`
/// messages arrive within `within`.
pub async fn take(
    addr: SocketAddr,
    topic: &str,
    channel: &str,
    count: usize,
    rdy: u32,
    within: Duration,
) -> Result<Vec<Bytes>, String> {
    let topic = Topic::new(topic).map_err(|e| e.to_string())?;
    let channel = Channel::new(channel).map_err(|e| e.to_string())?;
    let run = async {
        let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        stream
            .write_all(&MAGIC_V2)
            .await
            .map_err(|e| e.to_string())?;
        let mut conn = Framed::new(stream, ClientCodec::new());
        let identify = Identify::new("consume", "localhost", "nsq-tests").with_output_buffer(None);
        for cmd in [
            Command::Identify(Box::new(identify)),
            Command::Sub { topic, channel },
            Command::Rdy(rdy),
        ] {
            conn.send(cmd).await.map_err(|e| e.to_string())?;
        }
        let mut bodies = Vec::with_capacity(count);
        let mut answers = 0;
        while bodies.len() < count {
            let frame = conn
                .next()
                .await
                .ok_or("broker closed the connection")?
                .map_err(|e| e.to_string())?;
            match frame {
                Frame::Message(msg) => {
                    bodies.push(msg.body.clone());
                    conn.feed(Command::Fin(msg.id))
                        .await
                        .map_err(|e| e.to_string())?;
                    if bodies.len() % 256 == 0 || bodies.len() == count {
                        SinkExt::<Command>::flush(&mut conn)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                }
                Frame::Response(Response::Heartbeat) => {
                    conn.send(Command::Nop).await.map_err(|e| e.to_string())?;
                }
                // The answers to IDENTIFY and SUB.
                Frame::Response(_) if answers < 2 => answers += 1,
                other => return Err(format!("unexpected frame {other:?}")),
            }
        }
        conn.send(Command::Cls).await.map_err(|e| e.to_string())?;
        Ok(bodies)
    };
    tokio::time::timeout(within, run)
        .await
        .map_err(|_| format!("fewer than {count} messages from {addr} within {within:?}"))?
}
