//! Server → client frames.
//!
//! ```text
//! [u32 BE size][i32 BE frame type][data]      size = 4 + len(data)
//!   type 0  response: OK, CLOSE_WAIT, _heartbeat_, or a JSON body
//!   type 1  error:    "<E_CODE> <description>"
//!   type 2  message:  [i64 timestamp][u16 attempts][16-byte id][body]
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{ProtocolError, ServerError};
use crate::message::Message;

/// The frame type of a response frame.
pub const FRAME_TYPE_RESPONSE: i32 = 0;
/// The frame type of an error frame.
pub const FRAME_TYPE_ERROR: i32 = 1;
/// The frame type of a message frame.
pub const FRAME_TYPE_MESSAGE: i32 = 2;

/// The bytes of the size field and the frame type in front of each frame's data.
pub const FRAME_HEADER_LEN: usize = 8;

const OK: &[u8] = b"OK";
const CLOSE_WAIT: &[u8] = b"CLOSE_WAIT";
const HEARTBEAT: &[u8] = b"_heartbeat_";

/// The data of a response frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `OK`: a command (or an upgrade) succeeded.
    Ok,
    /// `CLOSE_WAIT`: the answer to CLS.
    CloseWait,
    /// `_heartbeat_`: answer it with NOP.
    Heartbeat,
    /// Any other data: the IDENTIFY or AUTH JSON reply.
    Data(Bytes),
}

impl Response {
    /// Classifies a response frame's data.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use nsq_proto::Response;
    /// assert_eq!(Response::parse(Bytes::from_static(b"_heartbeat_")), Response::Heartbeat);
    /// assert_eq!(Response::parse(Bytes::from_static(b"{}")), Response::Data(Bytes::from_static(b"{}")));
    /// ```
    pub fn parse(data: Bytes) -> Self {
        match &data[..] {
            OK => Response::Ok,
            CLOSE_WAIT => Response::CloseWait,
            HEARTBEAT => Response::Heartbeat,
            _ => Response::Data(data),
        }
    }

    /// The response's data as sent on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Response::Ok => OK,
            Response::CloseWait => CLOSE_WAIT,
            Response::Heartbeat => HEARTBEAT,
            Response::Data(data) => data,
        }
    }
}

/// A frame from nsqd.
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use nsq_proto::{Frame, Response};
///
/// let mut buf = BytesMut::new();
/// Frame::Response(Response::Ok).encode(&mut buf)?;
/// assert_eq!(&buf[..], b"\x00\x00\x00\x06\x00\x00\x00\x00OK");
/// let frame = Frame::parse(buf.freeze().slice(4..))?;
/// assert_eq!(frame, Frame::Response(Response::Ok));
/// # Ok::<(), nsq_proto::ProtocolError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Frame type 0.
    Response(Response),
    /// Frame type 1.
    Error(ServerError),
    /// Frame type 2.
    Message(Message),
}

impl Frame {
    /// Parses a frame from everything after its size field: the frame type and the data.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::FrameTooSmall`] without a frame type,
    /// [`ProtocolError::UnknownFrameType`] for a type other than 0, 1 or 2, and
    /// [`ProtocolError::MessageTooShort`] for a message shorter than its header.
    pub fn parse(mut buf: Bytes) -> Result<Self, ProtocolError> {
        if buf.len() < 4 {
            return Err(ProtocolError::FrameTooSmall {
                len: buf.len() as u32,
            });
        }
        match buf.get_i32() {
            FRAME_TYPE_RESPONSE => Ok(Frame::Response(Response::parse(buf))),
            FRAME_TYPE_ERROR => Ok(Frame::Error(ServerError::parse(&buf))),
            FRAME_TYPE_MESSAGE => Message::parse(buf).map(Frame::Message),
            other => Err(ProtocolError::UnknownFrameType(other)),
        }
    }

    /// The frame type on the wire.
    pub fn frame_type(&self) -> i32 {
        match self {
            Frame::Response(_) => FRAME_TYPE_RESPONSE,
            Frame::Error(_) => FRAME_TYPE_ERROR,
            Frame::Message(_) => FRAME_TYPE_MESSAGE,
        }
    }

    fn data_len(&self) -> usize {
        match self {
            Frame::Response(r) => r.as_bytes().len(),
            Frame::Error(e) => e.wire_len(),
            Frame::Message(m) => m.encoded_len(),
        }
    }

    /// The number of bytes [`Frame::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        FRAME_HEADER_LEN + self.data_len()
    }

    /// Writes the whole frame, size field included.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::FrameTooLarge`] when the frame cannot be described by a
    /// 32-bit size.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        let data_len = self.data_len();
        let size =
            u32::try_from(4 + data_len as u64).map_err(|_| ProtocolError::FrameTooLarge {
                len: 4 + data_len as u64,
                max: u32::MAX as usize,
            })?;
        dst.reserve(FRAME_HEADER_LEN + data_len);
        dst.put_u32(size);
        dst.put_i32(self.frame_type());
        match self {
            Frame::Response(r) => dst.put_slice(r.as_bytes()),
            Frame::Error(e) => e.write_to(dst),
            Frame::Message(m) => m.encode(dst),
        }
        Ok(())
    }
}

impl From<Message> for Frame {
    fn from(msg: Message) -> Self {
        Frame::Message(msg)
    }
}

impl From<ServerError> for Frame {
    fn from(err: ServerError) -> Self {
        Frame::Error(err)
    }
}

impl From<Response> for Frame {
    fn from(resp: Response) -> Self {
        Frame::Response(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorCode, MessageId};

    fn encoded(frame: &Frame) -> Vec<u8> {
        let mut buf = BytesMut::new();
        frame.encode(&mut buf).unwrap();
        assert_eq!(buf.len(), frame.encoded_len());
        buf.to_vec()
    }

    #[test]
    fn spec_bytes_for_ok_and_heartbeat() {
        assert_eq!(
            encoded(&Frame::Response(Response::Ok)),
            [0, 0, 0, 6, 0, 0, 0, 0, b'O', b'K']
        );
        let mut hb = vec![0, 0, 0, 0x0f, 0, 0, 0, 0];
        hb.extend_from_slice(b"_heartbeat_");
        assert_eq!(encoded(&Frame::Response(Response::Heartbeat)), hb);
        let mut cw = vec![0, 0, 0, 14, 0, 0, 0, 0];
        cw.extend_from_slice(b"CLOSE_WAIT");
        assert_eq!(encoded(&Frame::Response(Response::CloseWait)), cw);
    }

    #[test]
    fn spec_bytes_for_message() {
        let msg = Message {
            timestamp: 0x0102_0304_0506_0708,
            attempts: 1,
            id: MessageId::new(*b"0a1b2c3d4e5f6071"),
            body: Bytes::from_static(b"hello"),
        };
        let mut want = vec![0, 0, 0, 0x23, 0, 0, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1];
        want.extend_from_slice(b"0a1b2c3d4e5f6071hello");
        assert_eq!(encoded(&Frame::Message(msg)), want);
    }

    #[test]
    fn spec_bytes_for_error() {
        let err = ServerError::new(
            ErrorCode::BadTopic,
            "PUB topic name \"bad name\" is not valid",
        );
        let got = encoded(&Frame::Error(err));
        let text = b"E_BAD_TOPIC PUB topic name \"bad name\" is not valid";
        assert_eq!(&got[..4], &(4 + text.len() as u32).to_be_bytes());
        assert_eq!(&got[4..8], &[0, 0, 0, 1]);
        assert_eq!(&got[8..], text);
    }

    #[test]
    fn parse_refuses_unknown_types_and_short_frames() {
        assert!(matches!(
            Frame::parse(Bytes::from_static(&[0, 0, 0, 3, b'x'])),
            Err(ProtocolError::UnknownFrameType(3))
        ));
        assert!(matches!(
            Frame::parse(Bytes::from_static(&[0, 0])),
            Err(ProtocolError::FrameTooSmall { len: 2 })
        ));
        assert!(matches!(
            Frame::parse(Bytes::from_static(&[0, 0, 0, 2, 1, 2, 3])),
            Err(ProtocolError::MessageTooShort { len: 3 })
        ));
    }

    #[test]
    fn every_frame_roundtrips() {
        let frames = [
            Frame::Response(Response::Ok),
            Frame::Response(Response::CloseWait),
            Frame::Response(Response::Heartbeat),
            Frame::Response(Response::Data(Bytes::from_static(
                b"{\"max_rdy_count\":2500}",
            ))),
            Frame::Error(ServerError::new(
                ErrorCode::FinFailed,
                "FIN x failed ID not in flight",
            )),
            Frame::Error(ServerError::new(ErrorCode::BadProtocol, "")),
            Frame::Message(Message {
                timestamp: -1,
                attempts: u16::MAX,
                id: MessageId::from_u64(42),
                body: Bytes::new(),
            }),
        ];
        for frame in frames {
            let bytes = Bytes::from(encoded(&frame));
            assert_eq!(Frame::parse(bytes.slice(4..)).unwrap(), frame);
        }
    }
}
