//! Codec throughput, each case beside a memcpy of the same number of bytes.
//!
//! Run with
//! `cargo bench -p nsq-proto --bench codec -- --warm-up-time 1 --measurement-time 3`;
//! results are in `BENCHMARKS.md`. Every group has a `codec` and a `memcpy`
//! benchmark per size: the memcpy copies as many bytes as the codec reads or
//! writes, into a buffer allocated beforehand, and is the ceiling to compare with.
//!
//! * `client_decode`: `ClientCodec` decoding message frames with 100 B bodies
//!   (10 000 frames per iteration), 1 KiB bodies (1 000 frames) and a 1 MiB body
//!   (one frame). The buffer is filled outside the timing, as a socket read
//!   would; `1MiB_fill` also times that fill, i.e. memcpy plus decode.
//! * `server_encode`: `Frame::encode` (through `ServerCodec`) of the same frames
//!   into a buffer that keeps its capacity between iterations.
//! * `client_encode`: 10 000 PUBs of 100 B, and one MPUB of 200 × 100 B
//!   (200 is the default batch of nsq's `bench_writer`).
//! * `server_decode`: `ServerCodec` decoding the same PUBs and MPUB.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkGroup, Criterion, Throughput,
};
use nsq_proto::{ClientCodec, Command, Frame, Message, MessageId, ServerCodec, Topic};
use tokio_util::codec::{Decoder, Encoder};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// (label, body size, frames per iteration): about 1 MiB of wire bytes each.
const MESSAGE_CASES: [(&str, usize, usize); 3] = [
    ("100B", 100, 10_000),
    ("1KiB", KIB, 1_000),
    ("1MiB", MIB, 1),
];

const PUBS: usize = 10_000;
const MPUB_BODIES: usize = 200;
const BODY: usize = 100;

fn body(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

fn message_frames(body_len: usize, count: usize) -> Vec<Frame> {
    let body = body(body_len);
    (0..count)
        .map(|i| {
            Frame::Message(Message {
                timestamp: 1_700_000_000_000_000_000 + i as i64,
                attempts: 1,
                id: MessageId::from_u64(i as u64),
                body: body.clone(),
            })
        })
        .collect()
}

fn encode_frames(frames: &[Frame]) -> Bytes {
    let mut codec = ServerCodec::new();
    let mut buf = BytesMut::new();
    for frame in frames {
        codec.encode(frame, &mut buf).expect("frames encode");
    }
    buf.freeze()
}

fn encode_commands(cmds: &[Command]) -> Bytes {
    let mut codec = ClientCodec::new();
    let mut buf = BytesMut::new();
    for cmd in cmds {
        codec.encode(cmd, &mut buf).expect("commands encode");
    }
    buf.freeze()
}

fn topic() -> Topic {
    Topic::new("sub_bench").expect("a valid topic")
}

fn pubs() -> Vec<Command> {
    let body = body(BODY);
    (0..PUBS)
        .map(|_| Command::Pub {
            topic: topic(),
            body: body.clone(),
        })
        .collect()
}

fn mpub() -> Command {
    Command::Mpub {
        topic: topic(),
        bodies: vec![body(BODY); MPUB_BODIES],
    }
}

/// The ceiling: copying `len` bytes into a buffer allocated beforehand.
fn bench_memcpy(group: &mut BenchmarkGroup<'_, WallTime>, label: &str, len: usize) {
    let src = vec![0x5a_u8; len];
    let mut dst: Vec<u8> = Vec::with_capacity(len);
    group.bench_function(format!("{label}/memcpy"), |b| {
        b.iter(|| {
            dst.clear();
            dst.extend_from_slice(black_box(&src));
            black_box(&dst);
        })
    });
}

/// Decodes everything in `buf` with `codec`, returning how many items it gave.
fn decode_all<D: Decoder>(codec: &mut D, buf: &mut BytesMut) -> usize
where
    D::Error: std::fmt::Debug,
{
    let mut n = 0;
    while let Some(item) = codec.decode(buf).expect("valid input decodes") {
        black_box(item);
        n += 1;
    }
    n
}

fn throughput(frames: usize, bytes: usize) -> Throughput {
    // One frame: report bytes; many: report frames (bytes/s follows from the size).
    if frames == 1 {
        Throughput::Bytes(bytes as u64)
    } else {
        Throughput::Elements(frames as u64)
    }
}

fn client_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("client_decode");
    for (label, body_len, count) in MESSAGE_CASES {
        let wire = encode_frames(&message_frames(body_len, count));
        group.throughput(throughput(count, wire.len()));
        group.bench_function(format!("{label}/codec"), |b| {
            b.iter_batched_ref(
                || BytesMut::from(&wire[..]),
                |buf| {
                    let n = decode_all(&mut ClientCodec::new(), buf);
                    debug_assert_eq!(n, count);
                },
                BatchSize::LargeInput,
            )
        });
        if count == 1 {
            // What a connection does: copy the bytes in, then decode them.
            let mut buf = BytesMut::with_capacity(wire.len());
            group.bench_function(format!("{label}_fill/codec"), |b| {
                b.iter(|| {
                    buf.clear();
                    buf.extend_from_slice(black_box(&wire));
                    decode_all(&mut ClientCodec::new(), &mut buf);
                    // The frame is dropped, so the allocation is reclaimed.
                    buf.reserve(wire.len());
                })
            });
        }
        bench_memcpy(&mut group, label, wire.len());
    }
    group.finish();
}

fn server_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("server_encode");
    for (label, body_len, count) in MESSAGE_CASES {
        let frames = message_frames(body_len, count);
        let len = encode_frames(&frames).len();
        group.throughput(throughput(count, len));
        let mut dst = BytesMut::with_capacity(len);
        group.bench_function(format!("{label}/codec"), |b| {
            let mut codec = ServerCodec::new();
            b.iter(|| {
                dst.clear();
                for frame in &frames {
                    codec.encode(frame, &mut dst).expect("frames encode");
                }
                black_box(&dst);
            })
        });
        bench_memcpy(&mut group, label, len);
    }
    group.finish();
}

fn client_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("client_encode");
    let cases = [("pub_100B", pubs()), ("mpub_200x100B", vec![mpub()])];
    for (label, cmds) in cases {
        let len = encode_commands(&cmds).len();
        let messages = if cmds.len() == 1 {
            MPUB_BODIES
        } else {
            cmds.len()
        };
        group.throughput(Throughput::Elements(messages as u64));
        let mut dst = BytesMut::with_capacity(len);
        group.bench_function(format!("{label}/codec"), |b| {
            let mut codec = ClientCodec::new();
            b.iter(|| {
                dst.clear();
                for cmd in &cmds {
                    codec.encode(cmd, &mut dst).expect("commands encode");
                }
                black_box(&dst);
            })
        });
        bench_memcpy(&mut group, label, len);
    }
    group.finish();
}

fn server_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("server_decode");
    let cases = [("pub_100B", pubs()), ("mpub_200x100B", vec![mpub()])];
    for (label, cmds) in cases {
        let wire = encode_commands(&cmds);
        let messages = if cmds.len() == 1 {
            MPUB_BODIES
        } else {
            cmds.len()
        };
        group.throughput(Throughput::Elements(messages as u64));
        group.bench_function(format!("{label}/codec"), |b| {
            b.iter_batched_ref(
                || BytesMut::from(&wire[..]),
                |buf| {
                    let n = decode_all(&mut ServerCodec::new(), buf);
                    debug_assert_eq!(n, cmds.len());
                },
                BatchSize::LargeInput,
            )
        });
        bench_memcpy(&mut group, label, wire.len());
    }
    group.finish();
}

criterion_group!(
    benches,
    client_decode,
    server_encode,
    client_encode,
    server_decode
);
criterion_main!(benches);
