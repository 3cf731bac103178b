//! Scenarios: the commands, each on its success and error paths, hostile sizes included.

use super::*;

// ---------------------------------------------------------------------------------------------
// Commands: success and error paths
// ---------------------------------------------------------------------------------------------

pub(super) async fn bad_magic(b: Broker) -> Log {
    let mut stream = TcpStream::connect(b.tcp_addr()).await.expect("connect");
    stream.write_all(b"  V1").await.expect("write");
    let mut c = Framed::new(stream, ClientCodec::new());
    vec![render(next(&mut c).await), render(next(&mut c).await)]
}

pub(super) async fn identify_replies(b: Broker) -> Log {
    let mut log = Log::new();
    let mut c = connect(&b).await;
    log.push(format!(
        "negotiating: {}",
        reply(&mut c, identify(|_| {})).await
    ));
    log.push(format!("again: {}", reply(&mut c, identify(|_| {})).await));
    log.push(alive(&mut c).await);

    let mut c = connect(&b).await;
    let plain = Command::Identify(Box::default());
    log.push(format!("plain: {}", reply(&mut c, plain).await));
    log.push(alive(&mut c).await);

    let mut c = connect(&b).await;
    let asks = identify(|i| {
        i.heartbeat_interval = 5000;
        i.msg_timeout = 2000;
        i.sample_rate = 10;
        i.output_buffer_size = 100;
        i.output_buffer_timeout = 500;
        i.deflate = true;
        i.deflate_level = 9;
    });
    // The JSON comes plain; the deflate upgrade's `OK` after it is compressed and not read.
    log.push(format!("with options: {}", reply(&mut c, asks).await));

    let refused: [(&str, Change); 8] = [
        ("heartbeat 999", |i| i.heartbeat_interval = 999),
        ("heartbeat 60001", |i| i.heartbeat_interval = 60_001),
        ("output buffer 63", |i| i.output_buffer_size = 63),
        ("output buffer timeout 24", |i| i.output_buffer_timeout = 24),
        ("sample rate 100", |i| i.sample_rate = 100),
        ("msg timeout 999", |i| i.msg_timeout = 999),
        ("msg timeout 900001", |i| i.msg_timeout = 900_001),
        ("snappy and deflate", |i| {
            i.snappy = true;
            i.deflate = true;
        }),
    ];
    for (what, change) in refused {
        let mut c = connect(&b).await;
        log.push(format!("{what}: {}", reply(&mut c, identify(change)).await));
        log.push(render(next(&mut c).await));
    }
    let mut c = connect(&b).await;
    log.push(format!(
        "not JSON: {}",
        reply_raw(&mut c, &with_body("IDENTIFY\n", b"{nope")).await
    ));
    log.push(render(next(&mut c).await));
    log
}

/// An IDENTIFY body nested deeper than Go's JSON decoder goes (10 000 levels): refused as
/// nsqd refuses it, even inside a field nsqd does not know.
pub(super) async fn identify_json_depth(b: Broker) -> Log {
    let mut log = Log::new();
    for levels in [10_000usize, 10_001] {
        // An object holding `levels - 1` nested arrays: `levels` levels in all.
        let inner = levels - 1;
        let body = format!("{{\"x\":{}{}}}", "[".repeat(inner), "]".repeat(inner));
        let mut c = connect(&b).await;
        let answer = reply_raw(&mut c, &with_body("IDENTIFY\n", body.as_bytes())).await;
        log.push(format!("{levels} levels: {answer}"));
    }
    log
}

/// Commands whose size or body the client cuts short by closing its side: nsqd says what it
/// could not read, then closes. A command line cut short gets nothing.
pub(super) async fn truncated_commands(b: Broker) -> Log {
    let mut log = Log::new();
    let cases: [(&str, &[u8]); 14] = [
        ("PUB line cut", b"PUB t"),
        ("PUB without a size", b"PUB t\n"),
        ("PUB half a size", b"PUB t\n\x00\x00"),
        ("PUB half a body", b"PUB t\n\x00\x00\x00\x0ahello"),
        ("DPUB half a body", b"DPUB t 10\n\x00\x00\x00\x0ahello"),
        ("MPUB without a size", b"MPUB t\n"),
        ("MPUB without a count", b"MPUB t\n\x00\x00\x00\x20"),
        (
            "MPUB half a message size",
            b"MPUB t\n\x00\x00\x00\x20\x00\x00\x00\x02\x00\x00",
        ),
        (
            "MPUB half a message",
            b"MPUB t\n\x00\x00\x00\x20\x00\x00\x00\x02\x00\x00\x00\x05hel",
        ),
        (
            "MPUB second size cut",
            b"MPUB t\n\x00\x00\x00\x20\x00\x00\x00\x02\x00\x00\x00\x05hello\x00",
        ),
        ("IDENTIFY without a size", b"IDENTIFY\n"),
        ("IDENTIFY half a body", b"IDENTIFY\n\x00\x00\x00\x0a{}"),
        ("AUTH without a size", b"AUTH\n"),
        ("AUTH half a body", b"AUTH\n\x00\x00\x00\x0asecret"),
    ];
    for (what, bytes) in cases {
        let mut c = connect(&b).await;
        raw(&mut c, bytes).await;
        c.get_mut().shutdown().await.expect("half-close");
        log.push(format!("{what}: {}", reply_then(&mut c).await));
    }
    log
}

/// The next frame and, unless it was the end, the one after it.
pub(super) async fn reply_then(c: &mut Conn) -> String {
    match render(next(c).await) {
        eof if eof == "EOF" => eof,
        first => format!("{first} then {}", render(next(c).await)),
    }
}

/// Declared sizes a hostile client sends: near 2^31, negative (as nsqd reads them, int32),
/// and commands with more parameters than they take. Each on a connection of its own; the
/// reply, then what follows.
pub(super) async fn hostile_sizes(b: Broker) -> Log {
    let mut log = Log::new();
    let cases: [(&str, &[u8]); 11] = [
        ("PUB size 2^31-1", b"PUB t\n\x7f\xff\xff\xff"),
        ("PUB size -1", b"PUB t\n\xff\xff\xff\xff"),
        ("PUB size -2^31", b"PUB t\n\x80\x00\x00\x00"),
        ("DPUB size -1", b"DPUB t 10\n\xff\xff\xff\xff"),
        ("MPUB size 2^31-1", b"MPUB t\n\x7f\xff\xff\xff"),
        ("MPUB size -1", b"MPUB t\n\xff\xff\xff\xff"),
        ("MPUB count -1", b"MPUB t\n\x00\x00\x00\x20\xff\xff\xff\xff"),
        (
            "MPUB message size -1",
            b"MPUB t\n\x00\x00\x00\x20\x00\x00\x00\x01\xff\xff\xff\xff",
        ),
        ("IDENTIFY size 2^31-1", b"IDENTIFY\n\x7f\xff\xff\xff"),
        ("IDENTIFY size -1", b"IDENTIFY\n\xff\xff\xff\xff"),
        ("AUTH size -1", b"AUTH\n\xff\xff\xff\xff"),
    ];
    for (what, bytes) in cases {
        let mut c = connect(&b).await;
        raw(&mut c, bytes).await;
        log.push(format!("{what}: {}", reply_then(&mut c).await));
    }
    // More parameters than a command takes: its answer (if any), then whether the
    // connection still works.
    let extra: [(&str, &[u8]); 4] = [
        ("SUB with extra parameters", b"SUB t c extra more\n"),
        ("RDY with extra parameters", b"RDY 1 2\n"),
        ("NOP with parameters", b"NOP x\n"),
        (
            "PUB with extra parameters",
            b"PUB t extra\n\x00\x00\x00\x01x",
        ),
    ];
    for (what, bytes) in extra {
        let mut c = connect(&b).await;
        raw(&mut c, bytes).await;
        let first = quiet(&mut c, Duration::from_millis(300)).await;
        let first = first
            .strip_prefix("not quiet: ")
            .unwrap_or(&first)
            .to_owned();
        let then = if first.starts_with("ERR") {
            render(next(&mut c).await)
        } else {
            alive(&mut c).await
        };
        log.push(format!("{what}: {first} then {then}"));
    }
    log
}

pub(super) async fn sub_commands(b: Broker) -> Log {
    let mut log = Log::new();
    for line in ["SUB a!b c\n", "SUB t c!\n", "SUB t\n"] {
        let mut c = connect(&b).await;
        log.push(format!(
            "{line:?}: {}",
            reply_raw(&mut c, line.as_bytes()).await
        ));
        log.push(render(next(&mut c).await));
    }
    let mut c = connect(&b).await;
    log.push(format!("SUB: {}", reply(&mut c, sub("t", "c")).await));
    log.push(format!("SUB again: {}", reply(&mut c, sub("t", "d")).await));
    log.push(render(next(&mut c).await));

    let mut c = connect(&b).await;
    let no_heartbeats = identify(|i| i.heartbeat_interval = -1);
    log.push(format!(
        "IDENTIFY no heartbeats: {}",
        reply(&mut c, no_heartbeats).await
    ));
    log.push(format!("SUB: {}", reply(&mut c, sub("t", "c")).await));
    log.push(render(next(&mut c).await));
    log.extend(stats_of(&b, "t").await);
    log
}

pub(super) async fn publish_commands(b: Broker) -> Log {
    let mut log = Log::new();
    let ok: Vec<(&str, Vec<u8>)> = vec![
        ("PUB", with_body("PUB t\n", b"one")),
        (
            "MPUB",
            with_body(
                "MPUB t\n",
                &[
                    &2u32.to_be_bytes()[..],
                    &3u32.to_be_bytes(),
                    b"two",
                    &5u32.to_be_bytes(),
                    b"three",
                ]
                .concat(),
            ),
        ),
        ("DPUB", with_body("DPUB t 60000\n", b"later")),
        ("DPUB max", with_body("DPUB t 3600000\n", b"latest")),
        ("PUB at max size", with_body("PUB t\n", &[b'x'; 100])),
    ];
    let mut c = connect(&b).await;
    for (what, bytes) in &ok {
        log.push(format!("{what}: {}", reply_raw(&mut c, bytes).await));
    }
    let refused: Vec<(&str, Vec<u8>)> = vec![
        ("PUB empty", with_body("PUB t\n", b"")),
        ("PUB too big", with_body("PUB t\n", &[b'x'; 101])),
        ("PUB bad topic", with_body("PUB t!\n", b"x")),
        ("PUB no topic", b"PUB\n".to_vec()),
        (
            "MPUB no messages",
            with_body("MPUB t\n", &0u32.to_be_bytes()),
        ),
        (
            "MPUB message too big",
            with_body(
                "MPUB t\n",
                &[&1u32.to_be_bytes()[..], &101u32.to_be_bytes(), &[b'x'; 101]].concat(),
            ),
        ),
        (
            "MPUB empty message",
            with_body(
                "MPUB t\n",
                &[&1u32.to_be_bytes()[..], &0u32.to_be_bytes()].concat(),
            ),
        ),
        ("MPUB body too big", with_body("MPUB t\n", &[0; 1001])),
        ("DPUB out of range", with_body("DPUB t 3600001\n", b"x")),
        ("DPUB negative", with_body("DPUB t -1\n", b"x")),
        ("DPUB not a number", with_body("DPUB t soon\n", b"x")),
        ("DPUB empty", with_body("DPUB t 10\n", b"")),
    ];
    for (what, bytes) in &refused {
        let mut c = connect(&b).await;
        log.push(format!("{what}: {}", reply_raw(&mut c, bytes).await));
        log.push(render(next(&mut c).await));
    }
    log.extend(stats_of(&b, "t").await);
    log
}

pub(super) async fn rdy_commands(b: Broker) -> Log {
    let mut log = Log::new();
    let mut c = connect(&b).await;
    log.push(format!(
        "RDY before SUB: {}",
        reply_raw(&mut c, b"RDY 1\n").await
    ));
    log.push(render(next(&mut c).await));
    for line in ["RDY 11\n", "RDY -1\n", "RDY x\n"] {
        let mut c = consumer(&b, "t", "c", |_| {}, &mut log).await;
        log.push(format!(
            "{line:?}: {}",
            reply_raw(&mut c, line.as_bytes()).await
        ));
        log.push(render(next(&mut c).await));
    }
    let mut c = consumer(&b, "t", "c", |_| {}, &mut log).await;
    raw(&mut c, b"RDY 10\nRDY 0\nRDY 7\n").await;
    log.push(alive(&mut c).await);
    log.extend(stats_of(&b, "t").await);
    log
}

pub(super) async fn fin_req_touch(b: Broker) -> Log {
    let mut log = Log::new();
    let unknown = MessageId::from_u64(0xabc);
    for cmd in [
        Command::Fin(unknown),
        Command::Req {
            id: unknown,
            delay: Duration::ZERO,
        },
        Command::Touch(unknown),
    ] {
        let verb = cmd.verb().as_str();
        let mut c = connect(&b).await;
        log.push(format!("{verb} before SUB: {}", reply(&mut c, cmd).await));
        log.push(render(next(&mut c).await));
    }

    let mut a = consumer(&b, "t", "c", |_| {}, &mut log).await;
    let mut other = consumer(&b, "t", "c", |_| {}, &mut log).await;
    for cmd in [
        Command::Fin(unknown),
        Command::Req {
            id: unknown,
            delay: Duration::ZERO,
        },
        Command::Touch(unknown),
    ] {
        let verb = cmd.verb().as_str();
        log.push(format!("{verb} unknown: {}", reply(&mut a, cmd).await));
        log.push(alive(&mut a).await);
    }
    send(&mut a, Command::Rdy(1)).await;
    publish_all(&b, publish("t", "mine"), &mut log).await;
    let msg = message(&mut a).await;
    log.push(render_msg(&msg));
    for cmd in [
        Command::Fin(msg.id),
        Command::Req {
            id: msg.id,
            delay: Duration::ZERO,
        },
        Command::Touch(msg.id),
    ] {
        let verb = cmd.verb().as_str();
        log.push(format!(
            "{verb} by another: {}",
            reply(&mut other, cmd).await
        ));
        log.push(alive(&mut other).await);
    }
    send(&mut a, Command::Touch(msg.id)).await;
    log.push(format!("FIN by owner after TOUCH: {}", {
        send(&mut a, Command::Fin(msg.id)).await;
        alive(&mut a).await
    }));
    log.push(format!(
        "FIN again: {}",
        reply(&mut a, Command::Fin(msg.id)).await
    ));
    log.extend(stats_of(&b, "t").await);
    log
}

pub(super) async fn cls(b: Broker) -> Log {
    let mut log = Log::new();
    let mut c = consumer(&b, "t", "c", |_| {}, &mut log).await;
    log.push(format!("CLS before SUB: {}", {
        let mut fresh = connect(&b).await;
        let r = reply(&mut fresh, Command::Cls).await;
        format!("{r} then {}", render(next(&mut fresh).await))
    }));
    send(&mut c, Command::Rdy(1)).await;
    publish_all(&b, mpub("t", &["a", "b"]), &mut log).await;
    let msg = message(&mut c).await;
    log.push(render_msg(&msg));
    log.push(format!("CLS: {}", reply(&mut c, Command::Cls).await));
    send(&mut c, Command::Fin(msg.id)).await;
    raw(&mut c, b"RDY 5\nRDY 100000\n").await;
    log.push(format!(
        "FIN and RDY after CLS, then {}",
        alive(&mut c).await
    ));
    log.push(format!(
        "nothing more: {}",
        quiet(&mut c, Duration::from_millis(300)).await
    ));
    log.push(format!("CLS again: {}", reply(&mut c, Command::Cls).await));
    log.push(render(next(&mut c).await));
    log.extend(stats_of(&b, "t").await);
    log
}

pub(super) async fn nop_and_unknown(b: Broker) -> Log {
    let mut log = Log::new();
    let mut c = connect(&b).await;
    send(&mut c, Command::Nop).await;
    log.push(format!("NOP, then {}", alive(&mut c).await));
    log.push(format!("FOO: {}", reply_raw(&mut c, b"FOO bar\n").await));
    log.push(render(next(&mut c).await));
    log
}
