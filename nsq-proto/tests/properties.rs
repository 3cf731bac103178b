//! Property tests for the nsqd TCP codecs (STYLE.md b9.2).
//!
//! * `Command` encoded by the client and decoded by [`ServerCodec`], and `Frame`
//!   encoded by the server and decoded by [`ClientCodec`], come back unchanged.
//! * A valid stream decodes to the same items however it is cut: in two at every
//!   byte offset, or one byte at a time.
//! * Any input makes the decoders return `Ok(None)`, `Ok(Some)` or `Err` (never a
//!   panic, never a loop without progress), and their buffer never grows past
//!   what their limits allow, whatever sizes the input declares.
//!
//! Every block runs 256 cases unless `PROPTEST_CASES` says otherwise; the
//! split-everywhere tests run a quarter of that because each case decodes the
//! stream once per byte.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use nsq_proto::{
    Channel, ClientCodec, Command, ErrorCode, Frame, Identify, Limits, Message, MessageId,
    ProtocolError, Response, ServerCodec, ServerError, Topic,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::FileFailurePersistence;
use tokio_util::codec::{Decoder, Encoder};

/// `default_cases` cases unless `PROPTEST_CASES` is set. Failures are saved to
/// `nsq-proto/proptest-regressions/properties.txt` (commit it): the default
/// location needs a `lib.rs` beside the test file, which `tests/` lacks.
fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default_cases);
    let mut config = ProptestConfig::with_cases(cases);
    config.failure_persistence = Some(Box::new(FileFailurePersistence::Direct(
        "proptest-regressions/properties.txt",
    )));
    config
}

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

/// nsqd's name rule: `[.a-zA-Z0-9_-]+(#ephemeral)?`, at most 64 bytes in all.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[.a-zA-Z0-9_-]{1,64}",
        "[.a-zA-Z0-9_-]{1,54}".prop_map(|stem| format!("{stem}#ephemeral")),
    ]
}

fn topic() -> impl Strategy<Value = Topic> {
    name().prop_map(|n| Topic::new(n).expect("generated names follow nsqd's rule"))
}

fn channel() -> impl Strategy<Value = Channel> {
    name().prop_map(|n| Channel::new(n).expect("generated names follow nsqd's rule"))
}

fn body(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 1..=max).prop_map(Bytes::from)
}

/// IDs a client can echo on a command line: anything but a space or line break.
fn line_safe_id() -> impl Strategy<Value = MessageId> {
    let allowed: Vec<u8> = (0..=u8::MAX)
        .filter(|b| !matches!(b, b' ' | b'\n' | b'\r'))
        .collect();
    prop::array::uniform16(prop::sample::select(allowed)).prop_map(MessageId::new)
}

fn identify() -> impl Strategy<Value = Identify> {
    let texts = (any::<String>(), any::<String>(), any::<String>());
    let flags = any::<[bool; 4]>();
    let numbers = any::<[i64; 6]>();
    (texts, flags, numbers).prop_map(|((client_id, hostname, user_agent), flags, numbers)| {
        let mut id = Identify::new(client_id, hostname, user_agent);
        [id.feature_negotiation, id.tls_v1, id.snappy, id.deflate] = flags;
        [
            id.heartbeat_interval,
            id.output_buffer_size,
            id.output_buffer_timeout,
            id.deflate_level,
            id.sample_rate,
            id.msg_timeout,
        ] = numbers;
        id
    })
}

/// Commands nsqd would accept under [`Limits::default`], with bodies of up to
/// `max_body` bytes and MPUBs of up to `max_bodies` messages.
fn command(max_body: usize, max_bodies: usize) -> impl Strategy<Value = Command> {
    const HOUR_MS: u64 = 60 * 60 * 1000;
    prop_oneof![
        identify().prop_map(|id| Command::Identify(Box::new(id))),
        body(max_body).prop_map(Command::Auth),
        (topic(), channel()).prop_map(|(topic, channel)| Command::Sub { topic, channel }),
        (topic(), body(max_body)).prop_map(|(topic, body)| Command::Pub { topic, body }),
        (topic(), vec(body(max_body), 1..=max_bodies))
            .prop_map(|(topic, bodies)| Command::Mpub { topic, bodies }),
        (topic(), 0..=HOUR_MS, body(max_body)).prop_map(|(topic, ms, body)| Command::Dpub {
            topic,
            delay: Duration::from_millis(ms),
            body,
        }),
        (0..=2500u32).prop_map(Command::Rdy),
        line_safe_id().prop_map(Command::Fin),
        (line_safe_id(), any::<u64>()).prop_map(|(id, ms)| Command::Req {
            id,
            delay: Duration::from_millis(ms),
        }),
        line_safe_id().prop_map(Command::Touch),
        Just(Command::Cls),
        Just(Command::Nop),
    ]
}

fn response(max_data: usize) -> impl Strategy<Value = Response> {
    prop_oneof![
        Just(Response::Ok),
        Just(Response::CloseWait),
        Just(Response::Heartbeat),
        // Data spelling a keyword parses as the keyword, so it is not a `Data`.
        vec(any::<u8>(), 0..=max_data)
            .prop_map(|data| Response::Data(Bytes::from(data)))
            .prop_filter("keyword data is not Data", |r| !matches!(
                r.as_bytes(),
                b"OK" | b"CLOSE_WAIT" | b"_heartbeat_"
            )),
    ]
}

/// Known codes, and unknown ones: printable ASCII without spaces (the code ends
/// at the first space) that does not spell a known code.
fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop_oneof![
        prop::sample::select(ErrorCode::KNOWN.to_vec()),
        "[!-~]{0,24}"
            .prop_filter("known codes parse as themselves", |code| matches!(
                ErrorCode::parse(code),
                ErrorCode::Other(_)
            ))
            .prop_map(ErrorCode::Other),
    ]
}

/// Error texts are ASCII: [`ServerError::parse`] replaces invalid UTF-8, so only
/// text roundtrips.
fn server_error() -> impl Strategy<Value = ServerError> {
    (error_code(), "[ -~]{0,200}").prop_map(|(code, text)| ServerError::new(code, text))
}

fn message(max_body: usize) -> impl Strategy<Value = Message> {
    (
        any::<i64>(),
        any::<u16>(),
        any::<[u8; 16]>(),
        vec(any::<u8>(), 0..=max_body),
    )
        .prop_map(|(timestamp, attempts, id, body)| Message {
            timestamp,
            attempts,
            id: MessageId::new(id),
            body: Bytes::from(body),
        })
}

fn frame(max_body: usize) -> impl Strategy<Value = Frame> {
    prop_oneof![
        1 => response(max_body).prop_map(Frame::Response),
        1 => server_error().prop_map(Frame::Error),
        2 => message(max_body).prop_map(Frame::Message),
    ]
}

fn encode_commands(cmds: &[Command]) -> BytesMut {
    let mut codec = ClientCodec::new();
    let mut buf = BytesMut::new();
    for cmd in cmds {
        codec.encode(cmd, &mut buf).expect("valid commands encode");
    }
    buf
}

fn encode_frames(frames: &[Frame]) -> BytesMut {
    let mut codec = ServerCodec::new();
    let mut buf = BytesMut::new();
    for frame in frames {
        codec.encode(frame, &mut buf).expect("frames encode");
    }
    buf
}

/// A valid stream with a few bytes overwritten and its tail possibly cut off:
/// input that gets past the first checks, unlike uniform noise.
fn corrupt(stream: &[u8], edits: &[(Index, u8)], keep: Index) -> Vec<u8> {
    let mut bytes = stream.to_vec();
    if bytes.is_empty() {
        return bytes;
    }
    for (at, byte) in edits {
        let at = at.index(bytes.len());
        bytes[at] = *byte;
    }
    bytes.truncate(keep.index(bytes.len() + 1));
    bytes
}

// ---------------------------------------------------------------------------
// Decoding helpers
// ---------------------------------------------------------------------------

fn decode_available<D>(codec: &mut D, buf: &mut BytesMut, out: &mut Vec<D::Item>)
where
    D: Decoder<Error = ProtocolError>,
{
    loop {
        match codec.decode(buf) {
            Ok(Some(item)) => out.push(item),
            Ok(None) => return,
            Err(err) => panic!("a valid stream failed to decode: {err}"),
        }
    }
}

/// Decodes `stream` delivered as the pieces that `cuts` (ascending offsets) make.
fn decode_in_pieces<D>(mut codec: D, stream: &[u8], cuts: &[usize]) -> (Vec<D::Item>, usize)
where
    D: Decoder<Error = ProtocolError>,
{
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut from = 0;
    for &to in cuts.iter().chain(std::iter::once(&stream.len())) {
        buf.extend_from_slice(&stream[from..to]);
        decode_available(&mut codec, &mut buf, &mut out);
        from = to;
    }
    (out, buf.len())
}

/// Checks that `stream` decodes to `want` when cut in two at every offset and
/// when delivered one byte at a time.
fn check_every_split<D>(codec: &D, stream: &[u8], want: &[D::Item]) -> Result<(), TestCaseError>
where
    D: Decoder<Error = ProtocolError> + Clone,
    D::Item: PartialEq + std::fmt::Debug,
{
    for at in 0..=stream.len() {
        let (got, left) = decode_in_pieces(codec.clone(), stream, &[at]);
        prop_assert_eq!(left, 0, "bytes left over when cut at {}", at);
        prop_assert_eq!(&got[..], want, "cut at {}", at);
    }
    let every_byte: Vec<usize> = (1..stream.len()).collect();
    let (got, left) = decode_in_pieces(codec.clone(), stream, &every_byte);
    prop_assert_eq!(left, 0, "bytes left over when fed byte by byte");
    prop_assert_eq!(&got[..], want, "fed byte by byte");
    Ok(())
}

/// Decodes `input` until the codec wants more or fails, checking that every item
/// consumes input and that `Ok(None)` consumes nothing. Returns the largest
/// capacity the buffer reached.
fn exhaust<D>(codec: &mut D, input: &[u8]) -> Result<usize, TestCaseError>
where
    D: Decoder<Error = ProtocolError>,
{
    let mut buf = BytesMut::from(input);
    let mut max_capacity = buf.capacity();
    loop {
        let before = buf.len();
        let result = codec.decode(&mut buf);
        max_capacity = max_capacity.max(buf.capacity());
        match result {
            Ok(Some(_)) => prop_assert!(buf.len() < before, "an item consumed nothing"),
            Ok(None) => {
                prop_assert_eq!(buf.len(), before, "Ok(None) consumed input");
                // What a `Framed` does at end of stream must not panic either.
                let _ = codec.decode_eof(&mut buf);
                return Ok(max_capacity.max(buf.capacity()));
            }
            Err(_) => return Ok(max_capacity),
        }
    }
}

/// The small limits the robustness tests decode under.
const MAX_FRAME: usize = 4096;
const SMALL_LIMITS: Limits = Limits {
    max_line_len: 256,
    max_msg_size: 1024,
    max_body_size: 4096,
    max_rdy_count: 2500,
    max_req_timeout: Duration::from_secs(3600),
};

fn small_client() -> ClientCodec {
    ClientCodec::new().with_max_frame_size(MAX_FRAME)
}

fn small_server() -> ServerCodec {
    ServerCodec::with_limits(SMALL_LIMITS)
}

/// The most a decoder may hold for a frame: a size field plus `MAX_FRAME`.
const CLIENT_FRAME_BOUND: usize = 4 + MAX_FRAME;
/// The most a server decoder may hold for a command: a line, a size field and a
/// body, plus MPUB's look-ahead of one length field.
const SERVER_COMMAND_BOUND: usize = SMALL_LIMITS.max_line_len + 4 + 4096 + 4;

/// The capacity a buffer holding `input` may reach while decoding it. When the
/// decoder reserves room for one bounded frame, `BytesMut` may double the
/// allocation it already has (amortised growth), so the bound is twice the input
/// plus one frame, plus slack: it does not depend on any size the input declares.
fn capacity_bound(input_len: usize, frame_bound: usize) -> usize {
    2 * input_len + frame_bound + 64
}

// ---------------------------------------------------------------------------
// Roundtrips
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn command_encode_then_server_decode_is_identity(cmd in command(2000, 20)) {
        let mut buf = BytesMut::new();
        ClientCodec::new().encode(cmd.clone(), &mut buf)?;
        let mut direct = BytesMut::new();
        cmd.encode(&mut direct)?;
        prop_assert_eq!(&buf, &direct, "the codec is Command::encode");

        let mut codec = ServerCodec::new();
        prop_assert_eq!(codec.decode(&mut buf)?, Some(cmd));
        prop_assert!(buf.is_empty(), "{} bytes left over", buf.len());
        prop_assert_eq!(codec.decode(&mut buf)?, None);
    }

    #[test]
    fn frame_encode_then_client_decode_is_identity(frame in frame(2000)) {
        let mut buf = BytesMut::new();
        ServerCodec::new().encode(frame.clone(), &mut buf)?;
        prop_assert_eq!(buf.len(), frame.encoded_len());
        let mut direct = BytesMut::new();
        frame.encode(&mut direct)?;
        prop_assert_eq!(&buf, &direct, "the codec is Frame::encode");

        let mut codec = ClientCodec::new();
        prop_assert_eq!(codec.decode(&mut buf)?, Some(frame.clone()));
        prop_assert!(buf.is_empty(), "{} bytes left over", buf.len());
        prop_assert_eq!(codec.decode(&mut buf)?, None);

        // `Frame::parse` takes what follows the size field.
        let wire = encode_frames(std::slice::from_ref(&frame)).freeze();
        prop_assert_eq!(Frame::parse(wire.slice(4..))?, frame);
    }

    #[test]
    fn message_ids_with_a_space_or_line_break_refuse_to_encode(
        id in line_safe_id(),
        at in 0..16usize,
        bad in prop::sample::select(vec![b' ', b'\n', b'\r']),
        which in 0..3u8,
    ) {
        let mut raw = *id.as_bytes();
        raw[at] = bad;
        let id = MessageId::new(raw);
        let cmd = match which {
            0 => Command::Fin(id),
            1 => Command::Touch(id),
            _ => Command::Req { id, delay: Duration::ZERO },
        };
        let mut buf = BytesMut::new();
        let refused = matches!(cmd.encode(&mut buf), Err(ProtocolError::Encode { .. }));
        prop_assert!(refused, "{:?} was not refused", cmd);
        prop_assert!(buf.is_empty());
    }
}

// ---------------------------------------------------------------------------
// Streams cut anywhere
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn command_stream_decodes_the_same_however_it_is_cut(
        cmds in vec(command(48, 4), 1..10),
    ) {
        let stream = encode_commands(&cmds);
        check_every_split(&ServerCodec::new(), &stream, &cmds)?;
    }

    #[test]
    fn frame_stream_decodes_the_same_however_it_is_cut(frames in vec(frame(64), 1..16)) {
        let stream = encode_frames(&frames);
        check_every_split(&ClientCodec::new(), &stream, &frames)?;
    }
}

// ---------------------------------------------------------------------------
// Hostile input
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn client_decoder_survives_any_bytes(input in vec(any::<u8>(), 0..=64 * 1024)) {
        let capacity = exhaust(&mut small_client(), &input)?;
        prop_assert!(capacity <= capacity_bound(input.len(), CLIENT_FRAME_BOUND), "capacity {}", capacity);
        exhaust(&mut ClientCodec::new(), &input)?;
    }

    #[test]
    fn server_decoder_survives_any_bytes(input in vec(any::<u8>(), 0..=64 * 1024)) {
        let capacity = exhaust(&mut small_server(), &input)?;
        prop_assert!(capacity <= capacity_bound(input.len(), SERVER_COMMAND_BOUND), "capacity {}", capacity);
        exhaust(&mut ServerCodec::new(), &input)?;
    }

    #[test]
    fn client_decoder_survives_corrupted_frames(
        frames in vec(frame(1500), 1..12),
        edits in vec((any::<Index>(), any::<u8>()), 0..6),
        keep in any::<Index>(),
    ) {
        let input = corrupt(&encode_frames(&frames), &edits, keep);
        let capacity = exhaust(&mut small_client(), &input)?;
        prop_assert!(capacity <= capacity_bound(input.len(), CLIENT_FRAME_BOUND), "capacity {}", capacity);
    }

    #[test]
    fn server_decoder_survives_corrupted_commands(
        cmds in vec(command(1500, 6), 1..12),
        edits in vec((any::<Index>(), any::<u8>()), 0..6),
        keep in any::<Index>(),
    ) {
        let input = corrupt(&encode_commands(&cmds), &edits, keep);
        let capacity = exhaust(&mut small_server(), &input)?;
        prop_assert!(capacity <= capacity_bound(input.len(), SERVER_COMMAND_BOUND), "capacity {}", capacity);
    }

    /// A frame header declaring more than the limit fails at once, allocating nothing.
    #[test]
    fn oversized_frames_fail_without_allocating(
        size in (MAX_FRAME as u32 + 1)..=u32::MAX,
        tail in vec(any::<u8>(), 0..64),
    ) {
        let mut input = size.to_be_bytes().to_vec();
        input.extend_from_slice(&tail);
        let mut buf = BytesMut::from(&input[..]);
        let capacity = buf.capacity();
        prop_assert!(small_client().decode(&mut buf).is_err());
        prop_assert_eq!(buf.capacity(), capacity);
        prop_assert_eq!(buf.len(), input.len());
    }

    /// A body length above its limit, or not positive, fails at once,
    /// allocating nothing.
    #[test]
    fn oversized_bodies_fail_without_allocating(
        which in 0..6u8,
        len in prop_oneof![(SMALL_LIMITS.max_body_size + 1)..=u32::MAX, Just(0u32)],
        tail in vec(any::<u8>(), 0..64),
    ) {
        let mut input = BytesMut::new();
        match which {
            0 => input.put_slice(b"PUB t\n"),
            1 => input.put_slice(b"DPUB t 10\n"),
            2 => input.put_slice(b"IDENTIFY\n"),
            3 => input.put_slice(b"AUTH\n"),
            4 => input.put_slice(b"MPUB t\n"),
            // An MPUB whose body size passes but whose first message does not.
            _ => input.put_slice(b"MPUB t\n\x00\x00\x01\x00\x00\x00\x00\x01"),
        }
        input.put_u32(len);
        input.put_slice(&tail);
        let mut buf = input.clone();
        let capacity = buf.capacity();
        let result = small_server().decode(&mut buf);
        prop_assert!(result.is_err(), "{:?}", result);
        prop_assert_eq!(buf.capacity(), capacity);
        prop_assert_eq!(&buf, &input);
    }
}

// ---------------------------------------------------------------------------
// Fixed cases
// ---------------------------------------------------------------------------

#[test]
fn crafted_huge_frame_sizes_are_refused_without_growing_the_buffer() {
    for size in [u32::MAX, i32::MAX as u32, (MAX_FRAME + 1) as u32] {
        for codec in [small_client(), ClientCodec::new()] {
            let mut buf = BytesMut::from(&size.to_be_bytes()[..]);
            buf.put_i32(2);
            let capacity = buf.capacity();
            let result = codec.clone().decode(&mut buf);
            if size as usize > codec.max_frame_size() {
                assert!(
                    matches!(result, Err(ProtocolError::FrameTooLarge { .. })),
                    "{size}: {result:?}"
                );
                assert_eq!(buf.capacity(), capacity, "{size}");
            } else {
                // Within the default bound: wait for the frame, holding only it.
                assert!(matches!(result, Ok(None)), "{size}: {result:?}");
                assert!(buf.capacity() <= 4 + size as usize + 64, "{size}");
            }
        }
    }
}

#[test]
fn crafted_huge_body_sizes_are_refused_without_growing_the_buffer() {
    let heads: [&[u8]; 6] = [
        b"PUB t\n",
        b"DPUB t 1\n",
        b"IDENTIFY\n",
        b"AUTH\n",
        b"MPUB t\n",
        b"MPUB t\n\x00\x00\x00\x10",
    ];
    for codec in [small_server(), ServerCodec::new()] {
        for head in heads {
            for size in [u32::MAX, i32::MAX as u32, 0x8000_0000] {
                let mut buf = BytesMut::from(head);
                buf.put_u32(size);
                let capacity = buf.capacity();
                let result = codec.clone().decode(&mut buf);
                let rejected = result.as_ref().err().and_then(ProtocolError::rejected);
                assert!(rejected.is_some(), "{head:?} {size}: {result:?}");
                assert_eq!(buf.capacity(), capacity, "{head:?} {size}");
            }
        }
    }
}

#[test]
fn a_frame_at_the_limit_reserves_only_that_frame() {
    let mut buf = BytesMut::from(&(MAX_FRAME as u32).to_be_bytes()[..]);
    buf.put_i32(2);
    assert!(small_client().decode(&mut buf).unwrap().is_none());
    assert!(buf.capacity() >= 4 + MAX_FRAME);
    assert!(buf.capacity() <= 4 + MAX_FRAME + 64, "{}", buf.capacity());
}

#[test]
fn a_body_at_the_limit_reserves_only_that_command() {
    let mut buf = BytesMut::from(&b"IDENTIFY\n"[..]);
    buf.put_u32(SMALL_LIMITS.max_body_size);
    assert!(small_server().decode(&mut buf).unwrap().is_none());
    let want = 9 + 4 + SMALL_LIMITS.max_body_size as usize;
    assert!(buf.capacity() >= want);
    assert!(buf.capacity() <= want + 64, "{}", buf.capacity());
}

#[test]
fn an_mpub_count_beyond_what_its_body_can_hold_is_refused() {
    // Each message takes at least 5 bytes, so a 4096-byte body holds at most 818.
    let mut buf = BytesMut::from(&b"MPUB t\n"[..]);
    buf.put_u32(4096);
    buf.put_u32(819);
    let capacity = buf.capacity();
    let rejected = small_server().decode(&mut buf).unwrap_err();
    assert!(rejected.rejected().is_some(), "{rejected}");
    assert_eq!(buf.capacity(), capacity);
}
