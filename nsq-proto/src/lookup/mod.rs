//! nsqlookupd: the V1 TCP registration protocol and the HTTP API types.
//!
//! Two unrelated halves, both checked against nsqlookupd 1.3.0:
//!
//! * [`tcp`]: what an nsqd (or a broker standing in for one) speaks to nsqlookupd's TCP
//!   port to announce its topics and channels: [`LookupCommand`] one way,
//!   [`LookupReply`] the other, and the codecs [`LookupClientCodec`] and
//!   [`LookupServerCodec`].
//! * [`http`]: the JSON that nsqlookupd's HTTP API answers with (`/lookup`, `/nodes`, ...),
//!   in both the current (v1) shape and the legacy `{"status_code","status_txt","data"}`
//!   wrapper, with [`decode_response`] to read either.
//!
//! ```text
//! nsqd ──"  V1"──────────────────────────────────▶ nsqlookupd :4160
//!      ──IDENTIFY\n[u32 size][JSON PeerInfo]─────▶
//!      ◀─[u32 size]{"broadcast_address":..}──────   (unframed: no frame type)
//!      ──REGISTER topic[ channel]\n──────────────▶
//!      ◀─[u32 size]OK────────────────────────────
//!      ──PING\n──────────────────────────────────▶  (every 15 s)
//!      ◀─[u32 size]OK────────────────────────────
//! consumer ──GET /lookup?topic=t──────────────────▶ nsqlookupd :4161
//!          ◀─{"channels":[..],"producers":[..]}───
//! ```
//!
//! ```
//! use bytes::BytesMut;
//! use nsq_proto::lookup::{LookupCommand, LookupReply};
//! use nsq_proto::Topic;
//!
//! let mut wire = BytesMut::new();
//! LookupCommand::Register { topic: Topic::new("clicks")?, channel: None }.encode(&mut wire)?;
//! assert_eq!(&wire[..], b"REGISTER clicks\n");
//! assert_eq!(LookupReply::parse(bytes::Bytes::from_static(b"OK")), LookupReply::Ok);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod http;
pub mod tcp;

pub use http::{
    decode_body, decode_response, is_v1_header, join_host_port, ApiError, ChannelsResponse,
    ErrorBody, InfoResponse, LookupResponse, Node, NodesResponse, Producer, TopicsResponse,
    ACCEPT_V1, V1_HEADER, V1_HEADER_VALUE,
};
pub use tcp::{
    check_magic, LookupClientCodec, LookupCommand, LookupReply, LookupServerCodec, LookupVerb,
    LookupdInfo, PeerInfo, DEFAULT_MAX_IDENTIFY_LEN, DEFAULT_MAX_LINE_LEN, DEFAULT_MAX_REPLY_LEN,
    MAGIC_V1,
};

/// Go's `json.Unmarshal` leaves a field untouched on `null`; this gives the field's default.
pub(crate) fn null_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + Default,
{
    use serde::Deserialize;
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}
