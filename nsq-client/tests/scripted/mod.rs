//! A scripted nsqd on a raw socket, for tests that check exactly what reaches the wire.

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use nsq_proto::{Command, Frame, Response, ServerCodec};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

/// nsqd 1.3.0's IDENTIFY answer with its defaults.
const IDENTIFY_ANSWER: &str = r#"{"max_rdy_count":2500,"version":"1.3.0","max_msg_timeout":900000,"msg_timeout":60000,"tls_v1":false,"deflate":false,"deflate_level":6,"max_deflate_level":6,"snappy":false,"sample_rate":0,"auth_required":false,"output_buffer_size":16384,"output_buffer_timeout":250}"#;

/// Accepts one client and reads its magic and IDENTIFY, which is left unanswered.
pub(crate) async fn accept_until_identify(
    listener: &TcpListener,
) -> Framed<TcpStream, ServerCodec> {
    let (mut socket, _) = listener.accept().await.unwrap();
    let mut magic = [0u8; 4];
    socket.read_exact(&mut magic).await.unwrap();
    assert_eq!(&magic, b"  V2");
    let mut framed = Framed::new(socket, ServerCodec::new());
    match framed.next().await.unwrap().unwrap() {
        Command::Identify(_) => {}
        other => panic!("expected IDENTIFY, got {other:?}"),
    }
    framed
}

/// Answers IDENTIFY as nsqd 1.3.0 does with its defaults.
pub(crate) async fn answer_identify(framed: &mut Framed<TcpStream, ServerCodec>) {
    framed
        .send(Frame::Response(Response::Data(Bytes::from_static(
            IDENTIFY_ANSWER.as_bytes(),
        ))))
        .await
        .unwrap();
}
