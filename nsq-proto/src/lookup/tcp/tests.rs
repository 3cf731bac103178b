//! Unit tests for the V1 TCP protocol: spec byte layouts, lookupd's exact refusals, bounds, splits.

use tokio_util::codec::{Decoder, Encoder};

use super::*;

/// nsqd's IDENTIFY body for this peer: Go marshals a map, so keys come sorted.
const IDENTIFY_JSON: &[u8] = br#"{"broadcast_address":"nsqd-1.example","hostname":"nsqd-1","http_port":4151,"tcp_port":4150,"version":"1.3.0"}"#;
/// lookupd's IDENTIFY reply: also a sorted Go map.
const LOOKUPD_JSON: &[u8] = br#"{"broadcast_address":"lookupd-1.example","hostname":"lookupd-1","http_port":4161,"tcp_port":4160,"version":"1.3.0"}"#;

fn peer() -> PeerInfo {
    PeerInfo {
        hostname: "nsqd-1".into(),
        ..PeerInfo::new("nsqd-1.example", 4150, 4151, "1.3.0")
    }
}

fn topic(name: &str) -> Topic {
    Topic::new(name).unwrap()
}

fn channel(name: &str) -> Channel {
    Channel::new(name).unwrap()
}

fn identify_wire(body: &[u8]) -> Vec<u8> {
    let mut wire = b"IDENTIFY\n".to_vec();
    wire.extend_from_slice(&(body.len() as u32).to_be_bytes());
    wire.extend_from_slice(body);
    wire
}

fn reply_wire(data: &[u8]) -> Vec<u8> {
    let mut wire = (data.len() as u32).to_be_bytes().to_vec();
    wire.extend_from_slice(data);
    wire
}

/// Every command, with its exact wire form from NSQ.md §2.3.
fn command_fixtures() -> Vec<(LookupCommand, Vec<u8>)> {
    vec![
        (
            LookupCommand::Identify(peer()),
            identify_wire(IDENTIFY_JSON),
        ),
        (
            LookupCommand::Register {
                topic: topic("clicks"),
                channel: None,
            },
            b"REGISTER clicks\n".to_vec(),
        ),
        (
            LookupCommand::Register {
                topic: topic("clicks"),
                channel: Some(channel("archive#ephemeral")),
            },
            b"REGISTER clicks archive#ephemeral\n".to_vec(),
        ),
        (
            LookupCommand::Unregister {
                topic: topic("clicks"),
                channel: None,
            },
            b"UNREGISTER clicks\n".to_vec(),
        ),
        (
            LookupCommand::Unregister {
                topic: topic("clicks"),
                channel: Some(channel("archive")),
            },
            b"UNREGISTER clicks archive\n".to_vec(),
        ),
        (LookupCommand::Ping, b"PING\n".to_vec()),
    ]
}

/// Every reply, with its exact wire form.
fn reply_fixtures() -> Vec<(LookupReply, Vec<u8>)> {
    vec![
        (LookupReply::Ok, b"\x00\x00\x00\x02OK".to_vec()),
        (
            LookupReply::Data(Bytes::from_static(LOOKUPD_JSON)),
            reply_wire(LOOKUPD_JSON),
        ),
        (
            LookupReply::Error(ServerError::new(ErrorCode::Invalid, "client must IDENTIFY")),
            reply_wire(b"E_INVALID client must IDENTIFY"),
        ),
        (
            LookupReply::Error(ServerError::new(
                ErrorCode::BadTopic,
                "REGISTER topic name 'a b' is not valid",
            )),
            reply_wire(b"E_BAD_TOPIC REGISTER topic name 'a b' is not valid"),
        ),
        (LookupReply::bad_protocol(), reply_wire(b"E_BAD_PROTOCOL")),
    ]
}

fn parse(src: &[u8]) -> Result<Option<(LookupCommand, usize)>, ProtocolError> {
    LookupCommand::parse(src, DEFAULT_MAX_LINE_LEN, DEFAULT_MAX_IDENTIFY_LEN)
}

fn rejection(src: &[u8]) -> String {
    match parse(src) {
        Err(ProtocolError::Rejected(r)) => {
            assert_eq!(r.verb, None);
            r.error.to_string()
        }
        other => panic!("{src:?} was not rejected: {other:?}"),
    }
}

#[test]
fn magic_is_two_spaces_then_v1() {
    assert_eq!(MAGIC_V1, [b' ', b' ', b'V', b'1']);
    assert!(check_magic(b"  V1").is_ok());
    assert!(matches!(
        check_magic(b"  V2"),
        Err(ProtocolError::BadMagic(m)) if &m == b"  V2"
    ));
}

#[test]
fn every_command_encodes_to_its_spec_bytes() {
    for (cmd, wire) in command_fixtures() {
        let mut dst = BytesMut::new();
        cmd.encode(&mut dst).unwrap();
        assert_eq!(&dst[..], &wire[..], "{cmd:?}");
    }
}

#[test]
fn every_command_parses_from_its_spec_bytes() {
    for (cmd, wire) in command_fixtures() {
        assert_eq!(parse(&wire).unwrap(), Some((cmd.clone(), wire.len())));
        // Trailing bytes of the next command are not taken.
        let mut longer = wire.clone();
        longer.extend_from_slice(b"PIN");
        assert_eq!(parse(&longer).unwrap(), Some((cmd, wire.len())));
    }
}

#[test]
fn topology_fields_are_sent_only_when_set() {
    let mut peer = peer();
    peer.topology_zone = Some("z1".into());
    peer.topology_region = Some("r1".into());
    let json = serde_json::to_string(&peer).unwrap();
    assert_eq!(
        json,
        r#"{"broadcast_address":"nsqd-1.example","hostname":"nsqd-1","http_port":4151,"tcp_port":4150,"topology_region":"r1","topology_zone":"z1","version":"1.3.0"}"#
    );
    let cmd = LookupCommand::Identify(peer);
    let mut dst = BytesMut::new();
    cmd.encode(&mut dst).unwrap();
    assert_eq!(parse(&dst).unwrap(), Some((cmd, dst.len())));
}

#[test]
fn every_reply_encodes_to_and_parses_from_its_bytes() {
    for (reply, wire) in reply_fixtures() {
        let mut dst = BytesMut::new();
        reply.encode(&mut dst).unwrap();
        assert_eq!(&dst[..], &wire[..], "{reply:?}");
        let mut src = BytesMut::from(&wire[..]);
        let decoded = LookupClientCodec::new().decode(&mut src).unwrap();
        assert_eq!(decoded, Some(reply));
        assert!(src.is_empty());
    }
}

#[test]
fn reply_classification() {
    let parse = |b: &'static [u8]| LookupReply::parse(Bytes::from_static(b));
    assert_eq!(parse(b"OK"), LookupReply::Ok);
    assert_eq!(parse(b"OK "), LookupReply::Data(Bytes::from_static(b"OK ")));
    assert_eq!(parse(b""), LookupReply::Data(Bytes::new()));
    // nsqd's own check for a refused IDENTIFY.
    assert_eq!(
        parse(b"E_INVALID"),
        LookupReply::Error(ServerError::new(ErrorCode::Invalid, ""))
    );
    let LookupReply::Data(json) = parse(LOOKUPD_JSON) else {
        panic!("IDENTIFY JSON is data")
    };
    let info = LookupdInfo::parse(&json).unwrap();
    assert_eq!(
        info,
        LookupdInfo {
            broadcast_address: "lookupd-1.example".into(),
            hostname: "lookupd-1".into(),
            http_port: 4161,
            tcp_port: 4160,
            version: "1.3.0".into(),
        }
    );
    assert_eq!(serde_json::to_vec(&info).unwrap(), LOOKUPD_JSON);
    assert_eq!(
        LookupReply::identify(&info).unwrap(),
        LookupReply::Data(Bytes::from_static(LOOKUPD_JSON))
    );
}

#[test]
fn lines_are_trimmed_and_split_like_go() {
    let reg = |t: &str, c: Option<&str>| LookupCommand::Register {
        topic: topic(t),
        channel: c.map(channel),
    };
    let cases: &[(&[u8], LookupCommand)] = &[
        (b"PING\r\n", LookupCommand::Ping),
        (b" \tPING \x0b\x0c\r\n", LookupCommand::Ping),
        (b"PING ignored words\n", LookupCommand::Ping),
        ("\u{a0}PING\u{3000}\n".as_bytes(), LookupCommand::Ping),
        (b"REGISTER t \n", reg("t", None)),
        // An empty second word is "no channel" in lookupd's getTopicChan.
        (b"REGISTER t  c\n", reg("t", None)),
        (b"REGISTER t c extra\n", reg("t", Some("c"))),
        (b"REGISTER t c\r\n", reg("t", Some("c"))),
    ];
    for (line, cmd) in cases {
        assert_eq!(
            parse(line).unwrap(),
            Some((cmd.clone(), line.len())),
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }
    // IDENTIFY ignores words after it, too.
    let mut wire = b"IDENTIFY now please\n".to_vec();
    wire.extend_from_slice(&identify_wire(IDENTIFY_JSON)[9..]);
    assert_eq!(
        parse(&wire).unwrap(),
        Some((LookupCommand::Identify(peer()), wire.len()))
    );
}

#[test]
fn go_trim_space_matches_go() {
    let cases: &[(&[u8], &[u8])] = &[
        (b"", b""),
        (b" \t\r\n", b""),
        (b"  a b  ", b"a b"),
        ("\u{85}\u{2028}x\u{2009}".as_bytes(), b"x"),
        // Invalid UTF-8 is not white space: trimming stops at it.
        (b"\xff ", b"\xff"),
        (b" \xff", b"\xff"),
        (b" a\xffb\xfe  ", b"a\xffb\xfe"),
        // U+200B is not white space in Go or Rust.
        ("\u{200b}".as_bytes(), "\u{200b}".as_bytes()),
    ];
    for (input, want) in cases {
        assert_eq!(go_trim_space(input), *want, "{input:?}");
    }
}

#[test]
fn every_rejection_carries_lookupd_exact_text() {
    let cases: &[(&[u8], &str)] = &[
        (b"FOO\n", "E_INVALID invalid command FOO"),
        (b"ping\n", "E_INVALID invalid command ping"),
        (b"\n", "E_INVALID invalid command "),
        (b"   \r\n", "E_INVALID invalid command "),
        (b"SUB t c\n", "E_INVALID invalid command SUB"),
        (b" PING\x00\n", "E_INVALID invalid command PING\x00"),
        (
            b"REGISTER\n",
            "E_INVALID REGISTER insufficient number of params",
        ),
        (
            b"UNREGISTER  \n",
            "E_INVALID UNREGISTER insufficient number of params",
        ),
        (
            b"REGISTER  t\n",
            "E_BAD_TOPIC REGISTER topic name '' is not valid",
        ),
        (
            b"REGISTER x!\n",
            "E_BAD_TOPIC REGISTER topic name 'x!' is not valid",
        ),
        (
            b"UNREGISTER #ephemeral c\n",
            "E_BAD_TOPIC UNREGISTER topic name '#ephemeral' is not valid",
        ),
        (
            b"REGISTER t c:d\n",
            "E_BAD_CHANNEL REGISTER channel name 'c:d' is not valid",
        ),
        (
            b"UNREGISTER t c\x01\n",
            "E_BAD_CHANNEL UNREGISTER channel name 'c\x01' is not valid",
        ),
    ];
    for (line, text) in cases {
        assert_eq!(
            rejection(line),
            *text,
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }
    let long = "x".repeat(65);
    assert_eq!(
        rejection(format!("REGISTER {long}\n").as_bytes()),
        format!("E_BAD_TOPIC REGISTER topic name '{long}' is not valid")
    );

    let identify_cases: &[(&[u8], &str)] = &[
        (b"", "E_BAD_BODY IDENTIFY failed to decode JSON body"),
        (b"{", "E_BAD_BODY IDENTIFY failed to decode JSON body"),
        (b"[]", "E_BAD_BODY IDENTIFY failed to decode JSON body"),
        (b" [1]", "E_BAD_BODY IDENTIFY failed to decode JSON body"),
        (b"4150", "E_BAD_BODY IDENTIFY failed to decode JSON body"),
        (
            br#"{"tcp_port":"4150"}"#,
            "E_BAD_BODY IDENTIFY failed to decode JSON body",
        ),
        (b"{} x", "E_BAD_BODY IDENTIFY failed to decode JSON body"),
        (b"null", "E_BAD_BODY IDENTIFY missing fields"),
        (b"{}", "E_BAD_BODY IDENTIFY missing fields"),
        (
            br#"{"broadcast_address":"h","tcp_port":4150,"http_port":4151}"#,
            "E_BAD_BODY IDENTIFY missing fields",
        ),
        (
            br#"{"broadcast_address":"","tcp_port":4150,"http_port":4151,"version":"1"}"#,
            "E_BAD_BODY IDENTIFY missing fields",
        ),
        (
            br#"{"broadcast_address":"h","tcp_port":0,"http_port":4151,"version":"1"}"#,
            "E_BAD_BODY IDENTIFY missing fields",
        ),
    ];
    for (body, text) in identify_cases {
        assert_eq!(
            rejection(&identify_wire(body)),
            *text,
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
    // ... but not nested beyond Go's bound (10 000 levels), even in an unknown field.
    let deep = format!(
        r#"{{"broadcast_address":"h","tcp_port":1,"http_port":2,"version":"v","new":{}{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    assert_eq!(
        rejection(&identify_wire(deep.as_bytes())),
        "E_BAD_BODY IDENTIFY failed to decode JSON body"
    );
    // Unknown fields are ignored, as by Go's json.Unmarshal.
    let lenient = br#"{"broadcast_address":"h","tcp_port":1,"http_port":2,"version":"v","remote_address":"x","hostname":null,"new":[1]}"#;
    assert_eq!(
        parse(&identify_wire(lenient)).unwrap(),
        Some((
            LookupCommand::Identify(PeerInfo::new("h", 1, 2, "v")),
            identify_wire(lenient).len()
        ))
    );
}

#[test]
fn state_checks_are_left_to_the_server_and_come_first() {
    for verb in LookupVerb::ALL {
        assert_eq!(LookupVerb::from_name(verb.as_str().as_bytes()), Some(verb));
        assert_eq!(verb.to_string(), verb.as_str());
    }
    let text = |e: Option<ServerError>| e.map(|e| e.to_string());
    let must = Some("E_INVALID client must IDENTIFY".to_owned());
    let again = Some("E_INVALID cannot IDENTIFY again".to_owned());
    assert_eq!(text(LookupVerb::Register.state_error(false)), must);
    assert_eq!(text(LookupVerb::Unregister.state_error(false)), must);
    assert_eq!(text(LookupVerb::Register.state_error(true)), None);
    assert_eq!(text(LookupVerb::Identify.state_error(true)), again);
    assert_eq!(text(LookupVerb::Identify.state_error(false)), None);
    assert_eq!(text(LookupVerb::Ping.state_error(false)), None);
    assert_eq!(text(LookupVerb::Ping.state_error(true)), None);

    // A rejected command keeps its name, so a server can put the state check first.
    let Err(ProtocolError::Rejected(r)) = parse(b"UNREGISTER\n") else {
        panic!("should be rejected")
    };
    assert_eq!(&r.name[..], b"UNREGISTER");
    assert_eq!(LookupVerb::from_name(&r.name), Some(LookupVerb::Unregister));
    let Err(ProtocolError::Rejected(r)) = parse(&identify_wire(b"{}")) else {
        panic!("should be rejected")
    };
    assert_eq!(LookupVerb::from_name(&r.name), Some(LookupVerb::Identify));
}

#[test]
fn oversized_identify_is_refused_before_its_body_arrives() {
    let mut codec = LookupServerCodec::with_limits(DEFAULT_MAX_LINE_LEN, 100);
    for size in [101u32, i32::MAX as u32, u32::MAX] {
        let mut src = BytesMut::with_capacity(16);
        src.extend_from_slice(b"IDENTIFY\n");
        src.extend_from_slice(&size.to_be_bytes());
        src.extend_from_slice(b"{");
        let err = codec.decode(&mut src).unwrap_err();
        let r = err.rejected().expect("rejected");
        assert_eq!(
            r.error.to_string(),
            format!("E_BAD_BODY IDENTIFY body too big {size} > 100")
        );
        // Nothing was reserved for the body; the line and size were consumed.
        assert_eq!(src.capacity(), 16 - 13);
        assert_eq!(&src[..], b"{");
    }
    // At the limit it waits for the body, and takes it.
    let pad = 100 - r#"{"broadcast_address":"h","tcp_port":1,"http_port":2,"version":""}"#.len();
    let body = format!(
        r#"{{"broadcast_address":"h","tcp_port":1,"http_port":2,"version":"{}"}}"#,
        "v".repeat(pad)
    );
    assert_eq!(body.len(), 100);
    let wire = identify_wire(body.as_bytes());
    let mut src = BytesMut::from(&wire[..wire.len() - 1]);
    assert_eq!(codec.decode(&mut src).unwrap(), None);
    assert_eq!(src.len(), wire.len() - 1);
    src.extend_from_slice(&wire[wire.len() - 1..]);
    assert!(matches!(
        codec.decode(&mut src).unwrap(),
        Some(LookupCommand::Identify(_))
    ));
}

#[test]
fn overlong_line_is_refused_without_allocation() {
    let max = 32;
    let mut codec = LookupServerCodec::with_limits(max, DEFAULT_MAX_IDENTIFY_LEN);
    // A line of exactly `max` bytes, newline included, is accepted.
    let ok = format!("REGISTER {}\n", "t".repeat(max - 10));
    assert_eq!(ok.len(), max);
    let mut src = BytesMut::from(ok.as_bytes());
    assert!(codec.decode(&mut src).unwrap().is_some());

    let mut src = BytesMut::with_capacity(64);
    src.extend_from_slice(&[b'x'; 31]);
    assert_eq!(codec.decode(&mut src).unwrap(), None);
    src.extend_from_slice(b"x");
    let capacity = src.capacity();
    assert!(matches!(
        codec.decode(&mut src),
        Err(ProtocolError::LineTooLong { max: 32 })
    ));
    assert_eq!(src.capacity(), capacity);

    // A newline just past the bound does not help.
    let mut src = BytesMut::from(format!("REGISTER {}\n", "t".repeat(max - 9)).as_bytes());
    assert!(matches!(
        LookupServerCodec::with_limits(max, 100).decode(&mut src),
        Err(ProtocolError::LineTooLong { max: 32 })
    ));
    assert!(matches!(
        LookupCommand::parse(&[b'a'; 40], max, 100),
        Err(ProtocolError::LineTooLong { max: 32 })
    ));
}

#[test]
fn oversized_reply_is_refused_without_allocation() {
    let mut codec = LookupClientCodec::with_max_reply_len(1024);
    for size in [1025u32, u32::MAX] {
        let mut src = BytesMut::with_capacity(8);
        src.extend_from_slice(&size.to_be_bytes());
        let err = codec.decode(&mut src).unwrap_err();
        assert!(
            matches!(err, ProtocolError::FrameTooLarge { len, max: 1024 } if len == u64::from(size)),
            "{err:?}"
        );
        assert_eq!(src.capacity(), 8);
    }
    // The default is nsqd's max-body-size.
    let mut src = BytesMut::from(&(5 * 1024 * 1024 + 1u32).to_be_bytes()[..]);
    assert!(LookupClientCodec::default().decode(&mut src).is_err());
    let mut src = BytesMut::from(&(5 * 1024 * 1024u32).to_be_bytes()[..]);
    assert_eq!(LookupClientCodec::default().decode(&mut src).unwrap(), None);
}

/// Feeds `wire` split at `at`, decoding as far as possible after each part.
fn decode_split<D>(mut codec: D, wire: &[u8], at: usize) -> Vec<D::Item>
where
    D: Decoder,
    D::Error: fmt::Debug,
{
    let mut src = BytesMut::new();
    let mut out = Vec::new();
    for part in [&wire[..at], &wire[at..]] {
        src.extend_from_slice(part);
        while let Some(item) = codec.decode(&mut src).unwrap() {
            out.push(item);
        }
    }
    assert!(src.is_empty(), "left over: {src:?}");
    out
}

/// Feeds `wire` one byte at a time.
fn decode_bytewise<D>(mut codec: D, wire: &[u8]) -> Vec<D::Item>
where
    D: Decoder,
    D::Error: fmt::Debug,
{
    let mut src = BytesMut::new();
    let mut out = Vec::new();
    for &b in wire {
        src.put_u8(b);
        while let Some(item) = codec.decode(&mut src).unwrap() {
            out.push(item);
        }
    }
    assert!(src.is_empty());
    out
}

#[test]
fn server_codec_decodes_a_command_stream_split_at_every_offset() {
    let (commands, wires): (Vec<_>, Vec<_>) = command_fixtures().into_iter().unzip();
    let wire = wires.concat();
    for at in 0..=wire.len() {
        assert_eq!(
            decode_split(LookupServerCodec::new(), &wire, at),
            commands,
            "split at {at}"
        );
    }
    assert_eq!(decode_bytewise(LookupServerCodec::new(), &wire), commands);
}

#[test]
fn client_codec_decodes_a_reply_stream_split_at_every_offset() {
    let (replies, wires): (Vec<_>, Vec<_>) = reply_fixtures().into_iter().unzip();
    let wire = wires.concat();
    for at in 0..=wire.len() {
        assert_eq!(
            decode_split(LookupClientCodec::new(), &wire, at),
            replies,
            "split at {at}"
        );
    }
    assert_eq!(decode_bytewise(LookupClientCodec::new(), &wire), replies);
}

#[test]
fn codecs_encode_what_the_other_side_decodes() {
    let mut client = LookupClientCodec::new();
    let mut server = LookupServerCodec::new();
    let mut wire = BytesMut::new();
    for (cmd, _) in command_fixtures() {
        client.encode(cmd, &mut wire).unwrap();
    }
    let mut decoded = Vec::new();
    while let Some(cmd) = server.decode(&mut wire).unwrap() {
        decoded.push(cmd);
    }
    let expected: Vec<_> = command_fixtures().into_iter().map(|(c, _)| c).collect();
    assert_eq!(decoded, expected);

    for (reply, _) in reply_fixtures() {
        server.encode(reply, &mut wire).unwrap();
    }
    let mut decoded = Vec::new();
    while let Some(reply) = client.decode(&mut wire).unwrap() {
        decoded.push(reply);
    }
    let expected: Vec<_> = reply_fixtures().into_iter().map(|(r, _)| r).collect();
    assert_eq!(decoded, expected);
}

#[test]
fn a_rejected_command_is_consumed_and_the_next_one_decodes() {
    let mut codec = LookupServerCodec::new();
    let mut src = BytesMut::from(&b"REGISTER a:b\nPING\n"[..]);
    assert!(codec.decode(&mut src).is_err());
    assert_eq!(codec.decode(&mut src).unwrap(), Some(LookupCommand::Ping));

    let mut src = BytesMut::from(&identify_wire(b"{}")[..]);
    src.extend_from_slice(b"PING\n");
    assert!(codec.decode(&mut src).is_err());
    assert_eq!(codec.decode(&mut src).unwrap(), Some(LookupCommand::Ping));
    assert!(src.is_empty());
}

#[test]
fn incomplete_identify_is_not_consumed() {
    let wire = identify_wire(IDENTIFY_JSON);
    let mut codec = LookupServerCodec::new();
    for len in 0..wire.len() {
        let mut src = BytesMut::from(&wire[..len]);
        assert_eq!(codec.decode(&mut src).unwrap(), None, "prefix {len}");
        assert_eq!(&src[..], &wire[..len]);
        codec = LookupServerCodec::new();
    }
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn name() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9._-]{1,54}(#ephemeral)?"
    }

    fn command() -> impl Strategy<Value = LookupCommand> {
        let peer = (
            ".{0,20}",
            ".{0,20}",
            any::<u16>(),
            any::<u16>(),
            proptest::option::of(".{0,8}"),
            ".{0,10}",
        )
            .prop_map(|(addr, host, tcp, http, zone, version)| PeerInfo {
                broadcast_address: addr,
                hostname: host,
                http_port: http,
                tcp_port: tcp,
                topology_region: None,
                topology_zone: zone,
                version,
            });
        let topic_channel = || (name(), proptest::option::of(name()));
        prop_oneof![
            peer.prop_map(LookupCommand::Identify),
            topic_channel().prop_map(|(t, c)| LookupCommand::Register {
                topic: Topic::new(t).unwrap(),
                channel: c.map(|c| Channel::new(c).unwrap()),
            }),
            topic_channel().prop_map(|(t, c)| LookupCommand::Unregister {
                topic: Topic::new(t).unwrap(),
                channel: c.map(|c| Channel::new(c).unwrap()),
            }),
            Just(LookupCommand::Ping),
        ]
    }

    proptest! {
        #[test]
        fn encoded_commands_decode_to_themselves_or_lookupds_refusal(cmd in command()) {
            let mut wire = BytesMut::new();
            cmd.encode(&mut wire).unwrap();
            let len = wire.len();
            match LookupServerCodec::new().decode(&mut wire) {
                Ok(decoded) => prop_assert_eq!(decoded, Some(cmd)),
                Err(err) => {
                    // Only an incomplete IDENTIFY may be refused, and for missing fields.
                    let LookupCommand::Identify(peer) = &cmd else { panic!("{err}") };
                    prop_assert!(!peer.is_complete());
                    let text = err.rejected().unwrap().error.to_string();
                    prop_assert_eq!(text, "E_BAD_BODY IDENTIFY missing fields");
                    prop_assert!(wire.is_empty(), "consumed {} of {}", len - wire.len(), len);
                }
            }
        }

        #[test]
        fn server_decode_never_panics(input in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut codec = LookupServerCodec::with_limits(64, 64);
            let mut src = BytesMut::from(&input[..]);
            while let Ok(Some(_)) = codec.decode(&mut src) {}
        }

        #[test]
        fn client_decode_never_panics(input in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut codec = LookupClientCodec::with_max_reply_len(64);
            let mut src = BytesMut::from(&input[..]);
            while let Ok(Some(_)) = codec.decode(&mut src) {}
        }
    }
}
