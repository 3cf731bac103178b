//! Byte-exact behaviour of both codecs against nsqd 1.3.0's wire format and
//! its error texts (`nsqd/protocol_v2.go`).

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use nsq_proto::{
    Channel, ClientCodec, Command, ErrorCode, Frame, Limits, Message, MessageId, ProtocolError,
    Response, ServerCodec, ServerError, Topic, Verb,
};
use tokio_util::codec::{Decoder, Encoder};

const ID: &[u8; 16] = b"0a1b2c3d4e5f6071";

fn decode_one(input: &[u8]) -> Result<Option<Command>, ProtocolError> {
    let mut codec = ServerCodec::new();
    let mut buf = BytesMut::from(input);
    codec.decode(&mut buf)
}

fn decoded(input: &[u8]) -> Command {
    let mut codec = ServerCodec::new();
    let mut buf = BytesMut::from(input);
    let cmd = codec.decode(&mut buf).unwrap().expect("a whole command");
    assert!(buf.is_empty(), "left {buf:?}");
    cmd
}

fn with_len(line: &[u8], body: &[u8]) -> Vec<u8> {
    let mut v = line.to_vec();
    v.extend_from_slice(&(body.len() as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn with_raw_len(line: &[u8], len: i32) -> Vec<u8> {
    let mut v = line.to_vec();
    v.extend_from_slice(&len.to_be_bytes());
    v
}

#[test]
fn decodes_every_command_from_spec_bytes() {
    let topic = Topic::new("test").unwrap();
    let id = MessageId::new(*ID);
    assert_eq!(decoded(b"NOP\n"), Command::Nop);
    assert_eq!(decoded(b"CLS\n"), Command::Cls);
    assert_eq!(
        decoded(b"NOP\r\n"),
        Command::Nop,
        "a trailing \\r is stripped"
    );
    assert_eq!(decoded(b"RDY 2500\n"), Command::Rdy(2500));
    assert_eq!(
        decoded(b"RDY\n"),
        Command::Rdy(1),
        "RDY without a count is 1"
    );
    assert_eq!(
        decoded(b"RDY \n"),
        Command::Rdy(0),
        "nsqd parses an empty count as 0"
    );
    assert_eq!(decoded(b"FIN 0a1b2c3d4e5f6071\n"), Command::Fin(id));
    assert_eq!(decoded(b"TOUCH 0a1b2c3d4e5f6071\n"), Command::Touch(id));
    assert_eq!(
        decoded(b"REQ 0a1b2c3d4e5f6071 90000\n"),
        Command::Req {
            id,
            delay: Duration::from_secs(90)
        }
    );
    assert_eq!(
        decoded(b"SUB test ch#ephemeral\n"),
        Command::Sub {
            topic: topic.clone(),
            channel: Channel::new("ch#ephemeral").unwrap()
        }
    );
    assert_eq!(
        decoded(b"PUB test\n\x00\x00\x00\x05hello"),
        Command::Pub {
            topic: topic.clone(),
            body: Bytes::from_static(b"hello")
        }
    );
    assert_eq!(
        decoded(b"MPUB test\n\x00\x00\x00\x0f\x00\x00\x00\x02\x00\x00\x00\x01a\x00\x00\x00\x02bc"),
        Command::Mpub {
            topic: topic.clone(),
            bodies: vec![Bytes::from_static(b"a"), Bytes::from_static(b"bc")]
        }
    );
    assert_eq!(
        decoded(b"DPUB test 3600000\n\x00\x00\x00\x01x"),
        Command::Dpub {
            topic,
            delay: Duration::from_secs(3600),
            body: Bytes::from_static(b"x")
        }
    );
    assert_eq!(
        decoded(&with_len(b"AUTH\n", b"secret")),
        Command::Auth(Bytes::from_static(b"secret"))
    );
    let Command::Identify(identify) = decoded(&with_len(
        b"IDENTIFY\n",
        br#"{"client_id":"c","feature_negotiation":true,"heartbeat_interval":1000,"short_id":"s"}"#,
    )) else {
        panic!("not IDENTIFY")
    };
    assert_eq!(identify.client_id, "c");
    assert!(identify.feature_negotiation);
    assert_eq!(identify.heartbeat_interval, 1000);
}

#[test]
fn extra_parameters_are_ignored_like_nsqd() {
    assert_eq!(decoded(b"RDY 5 extra\n"), Command::Rdy(5));
    assert_eq!(
        decoded(b"FIN 0a1b2c3d4e5f6071 more words\n"),
        Command::Fin(MessageId::new(*ID))
    );
}

#[test]
fn extra_mpub_parameters_wait_for_the_body() {
    assert_eq!(decode_one(b"MPUB a b\n").unwrap(), None);
}

#[test]
fn mpub_is_read_by_count_even_when_the_declared_size_is_wrong() {
    // Some clients declare a body size that does not match; nsqd reads by count.
    let mut input = b"MPUB t\n".to_vec();
    input.extend_from_slice(&100u32.to_be_bytes());
    input.extend_from_slice(&1u32.to_be_bytes());
    input.extend_from_slice(&1u32.to_be_bytes());
    input.push(b'z');
    input.extend_from_slice(b"NOP\n");
    let mut codec = ServerCodec::new();
    let mut buf = BytesMut::from(&input[..]);
    assert_eq!(
        codec.decode(&mut buf).unwrap(),
        Some(Command::Mpub {
            topic: Topic::new("t").unwrap(),
            bodies: vec![Bytes::from_static(b"z")]
        })
    );
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(Command::Nop));
}

fn rejection(input: &[u8]) -> (Option<Verb>, String) {
    match decode_one(input) {
        Err(ProtocolError::Rejected(r)) => {
            assert!(r.error.is_fatal(), "codec refusals are fatal");
            (r.verb, r.error.to_string())
        }
        other => panic!(
            "{:?}: expected a rejection, got {other:?}",
            String::from_utf8_lossy(input)
        ),
    }
}

#[test]
fn rejections_carry_nsqd_exact_errors() {
    let id = std::str::from_utf8(ID).unwrap();
    let cases: Vec<(Vec<u8>, Option<Verb>, &str)> = vec![
        (b"FOO bar\n".to_vec(), None, "E_INVALID invalid command FOO"),
        (b"\n".to_vec(), None, "E_INVALID invalid command "),
        (b"nop\n".to_vec(), None, "E_INVALID invalid command nop"),
        (
            b"SUB t\n".to_vec(),
            Some(Verb::Sub),
            "E_INVALID SUB insufficient number of parameters",
        ),
        (
            b"SUB a!b c\n".to_vec(),
            Some(Verb::Sub),
            r#"E_BAD_TOPIC SUB topic name "a!b" is not valid"#,
        ),
        (
            b"SUB t c!\n".to_vec(),
            Some(Verb::Sub),
            r#"E_BAD_CHANNEL SUB channel name "c!" is not valid"#,
        ),
        (
            b"SUB t \n".to_vec(),
            Some(Verb::Sub),
            r#"E_BAD_CHANNEL SUB channel name "" is not valid"#,
        ),
        (
            b"RDY x\n".to_vec(),
            Some(Verb::Rdy),
            "E_INVALID RDY could not parse count x",
        ),
        (
            b"RDY -1\n".to_vec(),
            Some(Verb::Rdy),
            "E_INVALID RDY could not parse count -1",
        ),
        (
            b"RDY 2501\n".to_vec(),
            Some(Verb::Rdy),
            "E_INVALID RDY count 2501 out of range 0-2500",
        ),
        (
            b"FIN\n".to_vec(),
            Some(Verb::Fin),
            "E_INVALID FIN insufficient number of params",
        ),
        (
            b"FIN abc\n".to_vec(),
            Some(Verb::Fin),
            "E_INVALID invalid message ID",
        ),
        (
            b"TOUCH\n".to_vec(),
            Some(Verb::Touch),
            "E_INVALID TOUCH insufficient number of params",
        ),
        (
            b"TOUCH 0a1b2c3d4e5f60711\n".to_vec(),
            Some(Verb::Touch),
            "E_INVALID invalid message ID",
        ),
        (
            format!("REQ {id}\n").into_bytes(),
            Some(Verb::Req),
            "E_INVALID REQ insufficient number of params",
        ),
        (
            format!("REQ {id} 1s\n").into_bytes(),
            Some(Verb::Req),
            "E_INVALID REQ could not parse timeout 1s",
        ),
        (
            b"PUB\n".to_vec(),
            Some(Verb::Pub),
            "E_INVALID PUB insufficient number of parameters",
        ),
        (
            b"PUB bad!\n".to_vec(),
            Some(Verb::Pub),
            r#"E_BAD_TOPIC PUB topic name "bad!" is not valid"#,
        ),
        (
            with_raw_len(b"PUB t\n", 0),
            Some(Verb::Pub),
            "E_BAD_MESSAGE PUB invalid message body size 0",
        ),
        (
            with_raw_len(b"PUB t\n", -1),
            Some(Verb::Pub),
            "E_BAD_MESSAGE PUB invalid message body size -1",
        ),
        (
            with_raw_len(b"PUB t\n", 1_048_577),
            Some(Verb::Pub),
            "E_BAD_MESSAGE PUB message too big 1048577 > 1048576",
        ),
        (
            b"DPUB t\n".to_vec(),
            Some(Verb::Dpub),
            "E_INVALID DPUB insufficient number of parameters",
        ),
        (
            b"DPUB t! 1\n".to_vec(),
            Some(Verb::Dpub),
            r#"E_BAD_TOPIC DPUB topic name "t!" is not valid"#,
        ),
        (
            b"DPUB t x\n".to_vec(),
            Some(Verb::Dpub),
            "E_INVALID DPUB could not parse timeout x",
        ),
        (
            b"DPUB t 3600001\n".to_vec(),
            Some(Verb::Dpub),
            "E_INVALID DPUB timeout 3600001 out of range 0-3600000",
        ),
        (
            with_raw_len(b"DPUB t 0\n", 0),
            Some(Verb::Dpub),
            "E_BAD_MESSAGE DPUB invalid message body size 0",
        ),
        (
            with_raw_len(b"DPUB t 0\n", 1_048_577),
            Some(Verb::Dpub),
            "E_BAD_MESSAGE DPUB message too big 1048577 > 1048576",
        ),
        (
            b"MPUB\n".to_vec(),
            Some(Verb::Mpub),
            "E_INVALID MPUB insufficient number of parameters",
        ),
        (
            b"MPUB bad!\n".to_vec(),
            Some(Verb::Mpub),
            r#"E_BAD_TOPIC E_BAD_TOPIC MPUB topic name "bad!" is not valid"#,
        ),
        (
            with_raw_len(b"MPUB t\n", 0),
            Some(Verb::Mpub),
            "E_BAD_BODY MPUB invalid body size 0",
        ),
        (
            with_raw_len(b"MPUB t\n", 5_242_881),
            Some(Verb::Mpub),
            "E_BAD_BODY MPUB body too big 5242881 > 5242880",
        ),
        (
            mpub_header(100, 0),
            Some(Verb::Mpub),
            "E_BAD_BODY MPUB invalid message count 0",
        ),
        (
            mpub_header(100, 1_048_576),
            Some(Verb::Mpub),
            "E_BAD_BODY MPUB invalid message count 1048576",
        ),
        (
            [
                mpub_header(100, 2),
                1u32.to_be_bytes().to_vec(),
                b"a".to_vec(),
                0u32.to_be_bytes().to_vec(),
            ]
            .concat(),
            Some(Verb::Mpub),
            "E_BAD_MESSAGE MPUB invalid message(1) body size 0",
        ),
        (
            [mpub_header(100, 1), 1_048_577u32.to_be_bytes().to_vec()].concat(),
            Some(Verb::Mpub),
            "E_BAD_MESSAGE MPUB message too big 1048577 > 1048576",
        ),
        (
            with_raw_len(b"IDENTIFY\n", 5_242_881),
            Some(Verb::Identify),
            "E_BAD_BODY IDENTIFY body too big 5242881 > 5242880",
        ),
        (
            with_raw_len(b"IDENTIFY\n", 0),
            Some(Verb::Identify),
            "E_BAD_BODY IDENTIFY invalid body size 0",
        ),
        (
            with_len(b"IDENTIFY\n", b"{not json"),
            Some(Verb::Identify),
            "E_BAD_BODY IDENTIFY failed to decode JSON body",
        ),
        (
            with_len(b"IDENTIFY\n", br#"{"heartbeat_interval":"x"}"#),
            Some(Verb::Identify),
            "E_BAD_BODY IDENTIFY failed to decode JSON body",
        ),
        (
            b"AUTH x\n".to_vec(),
            Some(Verb::Auth),
            "E_INVALID AUTH invalid number of parameters",
        ),
        (
            b"AUTH \n".to_vec(),
            Some(Verb::Auth),
            "E_INVALID AUTH invalid number of parameters",
        ),
        (
            with_raw_len(b"AUTH\n", 0),
            Some(Verb::Auth),
            "E_BAD_BODY AUTH invalid body size 0",
        ),
        (
            with_raw_len(b"AUTH\n", 5_242_881),
            Some(Verb::Auth),
            "E_BAD_BODY AUTH body too big 5242881 > 5242880",
        ),
    ];
    for (input, verb, want) in cases {
        let (got_verb, got) = rejection(&input);
        assert_eq!(got, want, "input {:?}", String::from_utf8_lossy(&input));
        assert_eq!(
            got_verb,
            verb,
            "input {:?}",
            String::from_utf8_lossy(&input)
        );
    }
}

fn mpub_header(size: i32, count: i32) -> Vec<u8> {
    let mut v = b"MPUB t\n".to_vec();
    v.extend_from_slice(&size.to_be_bytes());
    v.extend_from_slice(&count.to_be_bytes());
    v
}

#[test]
fn go_quotes_odd_names_in_errors() {
    let (_, text) = rejection(b"PUB a\"b\\c\x01\xff\n");
    assert_eq!(
        text,
        r#"E_BAD_TOPIC PUB topic name "a\"b\\c\x01\xff" is not valid"#
    );
}

#[test]
fn limits_are_configurable() {
    let limits = Limits {
        max_msg_size: 10,
        max_body_size: 100,
        max_rdy_count: 5,
        max_req_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let check = |input: &[u8], want: &str| {
        let mut codec = ServerCodec::with_limits(limits);
        let mut buf = BytesMut::from(input);
        match codec.decode(&mut buf) {
            Err(ProtocolError::Rejected(r)) => assert_eq!(r.error.to_string(), want),
            other => panic!("{other:?}"),
        }
    };
    check(b"RDY 6\n", "E_INVALID RDY count 6 out of range 0-5");
    check(
        &with_raw_len(b"PUB t\n", 11),
        "E_BAD_MESSAGE PUB message too big 11 > 10",
    );
    check(
        b"DPUB t 1001\n",
        "E_INVALID DPUB timeout 1001 out of range 0-1000",
    );
    check(
        &with_raw_len(b"IDENTIFY\n", 101),
        "E_BAD_BODY IDENTIFY body too big 101 > 100",
    );
    check(
        &mpub_header(50, 25),
        "E_BAD_BODY MPUB invalid message count 25",
    );
}

#[test]
fn mpub_total_read_is_bounded_by_max_body_size() {
    // Declared size says 40 bytes, but the messages would read past max_body_size.
    let limits = Limits {
        max_msg_size: 60,
        max_body_size: 100,
        ..Limits::default()
    };
    let mut input = mpub_header(40, 2);
    for _ in 0..2 {
        input.extend_from_slice(&60u32.to_be_bytes());
        input.extend_from_slice(&[b'x'; 60]);
    }
    let mut codec = ServerCodec::with_limits(limits);
    let mut buf = BytesMut::from(&input[..]);
    match codec.decode(&mut buf) {
        Err(ProtocolError::Rejected(r)) => {
            assert_eq!(
                r.error.to_string(),
                "E_BAD_BODY MPUB body too big 132 > 100"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn sizes_are_refused_before_the_body_arrives_and_nothing_is_allocated_for_them() {
    for input in [
        with_raw_len(b"PUB t\n", i32::MAX),
        with_raw_len(b"IDENTIFY\n", i32::MAX),
        with_raw_len(b"MPUB t\n", i32::MAX),
        [
            mpub_header(100, 1),
            (i32::MAX as u32).to_be_bytes().to_vec(),
        ]
        .concat(),
    ] {
        let mut codec = ServerCodec::new();
        let mut buf = BytesMut::from(&input[..]);
        let before = buf.capacity();
        assert!(matches!(
            codec.decode(&mut buf),
            Err(ProtocolError::Rejected(_))
        ));
        assert_eq!(buf.capacity(), before);
    }
}

#[test]
fn a_line_without_newline_is_bounded() {
    let mut codec = ServerCodec::new();
    let mut buf = BytesMut::new();
    buf.put_bytes(b'A', 16 * 1024 - 1);
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    buf.put_u8(b'A');
    assert!(matches!(
        codec.decode(&mut buf),
        Err(ProtocolError::LineTooLong { max: 16384 })
    ));
    // 16383 bytes plus the newline fit nsqd's buffer.
    let mut line = vec![b'A'; 16 * 1024 - 1];
    line.push(b'\n');
    assert!(matches!(decode_one(&line), Err(ProtocolError::Rejected(_))));
}

#[test]
fn incomplete_input_is_not_consumed() {
    let input = b"MPUB test\n\x00\x00\x00\x0f\x00\x00\x00\x02\x00\x00\x00\x01a\x00\x00\x00\x02bcPUB t\n\x00\x00\x00\x01zNOP\n";
    for split in 0..input.len() {
        let mut codec = ServerCodec::new();
        let mut buf = BytesMut::from(&input[..split]);
        let mut got = Vec::new();
        while let Some(cmd) = codec.decode(&mut buf).unwrap() {
            got.push(cmd);
        }
        buf.extend_from_slice(&input[split..]);
        while let Some(cmd) = codec.decode(&mut buf).unwrap() {
            got.push(cmd);
        }
        assert_eq!(got.len(), 3, "split at {split}");
        assert!(buf.is_empty());
    }
}

#[test]
fn decoded_bodies_share_the_read_buffer() {
    let input = with_len(b"PUB t\n", &[9u8; 4096]);
    let mut buf = BytesMut::from(&input[..]);
    let start = buf.as_ptr() as usize;
    let Some(Command::Pub { body, .. }) = ServerCodec::new().decode(&mut buf).unwrap() else {
        panic!()
    };
    assert_eq!(body.as_ptr() as usize, start + 10);
}

#[test]
fn server_encodes_frames_client_decodes_them() {
    let frames = vec![
        Frame::Response(Response::Ok),
        Frame::Response(Response::Heartbeat),
        Frame::Error(ServerError::new(
            ErrorCode::FinFailed,
            "FIN x failed ID not in flight",
        )),
        Frame::Message(Message {
            timestamp: 1,
            attempts: 2,
            id: MessageId::new(*ID),
            body: Bytes::from_static(b"body"),
        }),
        Frame::Response(Response::CloseWait),
    ];
    let mut server = ServerCodec::new();
    let mut wire = BytesMut::new();
    for f in &frames {
        server.encode(f, &mut wire).unwrap();
    }
    let mut client = ClientCodec::new();
    let mut got = Vec::new();
    while let Some(f) = client.decode(&mut wire).unwrap() {
        got.push(f);
    }
    assert_eq!(got, frames);
}

#[test]
fn client_recognises_an_http_port() {
    let mut buf = BytesMut::from(&b"HTTP/1.1 400 Bad Request\r\n"[..]);
    assert!(matches!(
        ClientCodec::new().decode(&mut buf),
        Err(ProtocolError::HttpResponse)
    ));
}

#[test]
fn client_bounds_frames_before_allocating() {
    let mut codec = ClientCodec::new().with_max_frame_size(1024);
    let mut buf = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 2][..]);
    let before = buf.capacity();
    assert!(matches!(
        codec.decode(&mut buf),
        Err(ProtocolError::FrameTooLarge {
            len: 0x7fff_ffff,
            max: 1024
        })
    ));
    assert_eq!(buf.capacity(), before);
    let mut small = BytesMut::from(&[0, 0, 0, 3, 0, 0, 0][..]);
    assert!(matches!(
        codec.decode(&mut small),
        Err(ProtocolError::FrameTooSmall { len: 3 })
    ));
    // A frame at the limit is fine.
    let mut at_limit = BytesMut::new();
    at_limit.put_u32(1024);
    at_limit.put_i32(0);
    at_limit.put_bytes(b'x', 1020);
    assert!(codec.decode(&mut at_limit).unwrap().is_some());
}

/// What the stream's end makes of the bytes left: nsqd's refusal of a size or body cut short,
/// nothing for a command line cut short, and the commands that did arrive in full.
#[test]
fn the_end_of_the_stream_refuses_what_was_cut_short_as_nsqd_does() {
    let at_eof = |input: &[u8]| {
        let mut buf = BytesMut::from(input);
        ServerCodec::new().decode_eof(&mut buf)
    };
    let refused = |input: &[u8]| match at_eof(input) {
        Err(ProtocolError::Rejected(r)) => r.error.to_string(),
        other => panic!("{input:?}: expected a refusal, got {other:?}"),
    };
    assert_eq!(
        refused(b"PUB t\n\x00\x00\x00\x0ahello"),
        "E_BAD_MESSAGE PUB failed to read message body"
    );
    assert_eq!(
        refused(b"DPUB t 5\n\x00\x00"),
        "E_BAD_MESSAGE DPUB failed to read message body size"
    );
    assert_eq!(
        refused(b"MPUB t\n\x00\x00\x00\x20\x00\x00\x00\x02\x00\x00\x00\x01x\x00\x00"),
        "E_BAD_MESSAGE MPUB failed to read message(1) body size"
    );
    assert_eq!(
        refused(b"IDENTIFY\n\x00\x00\x00\x0a{}"),
        "E_BAD_BODY IDENTIFY failed to read body"
    );
    assert!(matches!(at_eof(b"PUB t"), Ok(None)), "a cut line: nothing");
    assert!(matches!(at_eof(b""), Ok(None)));
    assert!(matches!(
        at_eof(&with_len(b"PUB t\n", b"whole")),
        Ok(Some(Command::Pub { .. }))
    ));
}

/// An IDENTIFY nested deeper than Go's decoder goes is refused, as nsqd refuses it, even in
/// a field nsqd does not know (which serde would skip at any depth).
#[test]
fn identify_json_nested_beyond_go_s_bound_is_refused() {
    let nested = |levels: usize| {
        let inner = levels - 1;
        format!("{{\"x\":{}{}}}", "[".repeat(inner), "]".repeat(inner))
    };
    assert!(matches!(
        decode_one(&with_len(b"IDENTIFY\n", nested(10_000).as_bytes())),
        Ok(Some(Command::Identify(_)))
    ));
    for levels in [10_001, 100_000] {
        let (_, error) = rejection(&with_len(b"IDENTIFY\n", nested(levels).as_bytes()));
        assert_eq!(error, "E_BAD_BODY IDENTIFY failed to decode JSON body");
    }
}
