//! Interop of the compression layers with Python's implementations.
//!
//! * snappy framing format: python-snappy's `StreamCompressor` / `StreamDecompressor`
//!   (`pip install python-snappy`);
//! * raw DEFLATE: the standard library's `zlib` with `wbits = -15` and `Z_SYNC_FLUSH`, as pynsq
//!   uses it.
//!
//! The helper script is `tests/interop/compress.py`; data goes through files in
//! `CARGO_TARGET_TMPDIR`. Set `PYTHON` to choose the interpreter (default `python3`).
//!
//! If python3 (or, for snappy, the `snappy` module) is missing, a test prints why and passes,
//! unless the environment variable `CI` is non-empty: then it fails and says what is missing.

#![cfg(all(feature = "snappy", feature = "deflate"))]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::executor::block_on;
use nsq_proto::stream::{DeflateStream, SnappyStream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string())
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/compress.py")
}

fn python_works() -> bool {
    Command::new(python())
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn snappy_module_works() -> bool {
    Command::new(python())
        .arg(script())
        .arg("probe-snappy")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether the test can run; if not, skips (prints why) or, under CI, fails.
fn available(need_snappy: bool) -> bool {
    let missing = if !python_works() {
        Some(format!(
            "compression interop: `{}` (python3) cannot be run",
            python()
        ))
    } else if need_snappy && !snappy_module_works() {
        Some(format!(
            "compression interop: the Python module `snappy` is not importable by `{}` (pip install python-snappy)",
            python()
        ))
    } else {
        None
    };
    nsq_peer_rule::present_or_skip(missing)
}

/// Runs the helper script: `mode`, an input file holding `input`, an output file, `options`.
fn run_python(mode: &str, input: &[u8], options: &[&str]) -> Vec<u8> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let src = dir.join(format!("interop-{}-{n}-in.bin", std::process::id()));
    let dst = dir.join(format!("interop-{}-{n}-out.bin", std::process::id()));
    std::fs::write(&src, input).unwrap();
    let output = Command::new(python())
        .arg(script())
        .arg(mode)
        .arg(&src)
        .arg(&dst)
        .args(options)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{mode} {options:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let out = std::fs::read(&dst).unwrap();
    let _ = std::fs::remove_file(&src);
    let _ = std::fs::remove_file(&dst);
    out
}

/// Compressible text runs mixed with incompressible noise.
fn sample_data(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let r = next();
        let run = 1 + (r >> 8) as usize % 5000;
        if r & 1 == 0 {
            out.extend((0..run).map(|_| next() as u8));
        } else {
            out.extend(
                b"MPUB topic 3\n{\"ts\":1700000000}"
                    .iter()
                    .cycle()
                    .take(run),
            );
        }
    }
    out.truncate(len);
    out
}

/// What to write through one of our encoders.
struct Plan {
    data: Vec<u8>,
    write_size: usize,
    flush_every: usize,
}

/// Encodes `plan` through `stream` (over a `Vec`), flushing as planned. Returns the wire bytes
/// and, for each flush, how many plaintext and wire bytes there were at that point.
async fn encode<S>(
    mut stream: S,
    plan: &Plan,
    get: fn(&S) -> &Vec<u8>,
) -> (Vec<u8>, Vec<(usize, usize)>)
where
    S: AsyncWrite + Unpin,
{
    let mut flushes = Vec::new();
    let mut written = 0;
    for (i, piece) in plan.data.chunks(plan.write_size).enumerate() {
        stream.write_all(piece).await.unwrap();
        written += piece.len();
        if (i + 1) % plan.flush_every == 0 {
            stream.flush().await.unwrap();
            flushes.push((written, get(&stream).len()));
        }
    }
    stream.flush().await.unwrap();
    let wire = get(&stream).clone();
    (wire, flushes)
}

/// Decodes everything from `stream`, reading `read_size` bytes at a time.
async fn decode<S: AsyncRead + Unpin>(mut stream: S, read_size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; read_size];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

fn plans() -> Vec<Plan> {
    vec![
        // Small writes, a flush every ten.
        Plan {
            data: sample_data(50_000, 1),
            write_size: 13,
            flush_every: 10,
        },
        // A flush after every write.
        Plan {
            data: sample_data(20_000, 2),
            write_size: 100,
            flush_every: 1,
        },
        // More than 1 MiB in one write.
        Plan {
            data: sample_data(2 * 1024 * 1024 + 5, 3),
            write_size: usize::MAX,
            flush_every: 1,
        },
        // Large writes, flushed now and then.
        Plan {
            data: sample_data(1536 * 1024, 4),
            write_size: 200_000,
            flush_every: 3,
        },
    ]
}

fn assert_same(got: &[u8], expected: &[u8], what: &str) {
    assert_eq!(got.len(), expected.len(), "{what}: length differs");
    assert!(got == expected, "{what}: data differs");
}

#[test]
fn snappy_ours_decodes_in_python() {
    if !available(true) {
        return;
    }
    for (i, plan) in plans().iter().enumerate() {
        let (wire, flushes) = block_on(encode(
            SnappyStream::new(Vec::new()),
            plan,
            SnappyStream::get_ref,
        ));
        let decoded = run_python("snappy-decode", &wire, &[]);
        assert_same(&decoded, &plan.data, &format!("plan {i}"));
        // Every flush point is a complete prefix Python can decode on its own.
        if let Some(&(plain, wire_len)) = flushes.first() {
            let decoded = run_python("snappy-decode", &wire[..wire_len], &[]);
            assert_same(
                &decoded,
                &plan.data[..plain],
                &format!("plan {i}, first flush"),
            );
        }
    }
}

#[test]
fn snappy_python_decodes_in_ours() {
    if !available(true) {
        return;
    }
    let cases: [(usize, usize, usize); 5] = [
        // (data length, Python piece size, our read size)
        (3000, 1, 7),
        (100_000, 1000, 1),
        (300_000, 65536, 4096),
        (2 * 1024 * 1024, 200_000, 65536),
        (0, 1, 10),
    ];
    for (i, &(len, piece, read_size)) in cases.iter().enumerate() {
        let data = sample_data(len, 10 + i as u64);
        let wire = run_python("snappy-encode", &data, &[&piece.to_string()]);
        let decoded = block_on(decode(SnappyStream::new(&wire[..]), read_size));
        assert_same(&decoded, &data, &format!("case {i}"));
    }
}

#[test]
fn deflate_ours_decodes_in_python() {
    if !available(false) {
        return;
    }
    for level in [1, 6, 9] {
        for (i, plan) in plans().iter().enumerate() {
            let stream = DeflateStream::with_level(Vec::new(), level).unwrap();
            let (wire, flushes) = block_on(encode(stream, plan, DeflateStream::get_ref));
            let decoded = run_python("deflate-decode", &wire, &[]);
            assert_same(&decoded, &plan.data, &format!("level {level}, plan {i}"));
            // A sync flush makes everything so far decodable.
            if let Some(&(plain, wire_len)) = flushes.get(flushes.len() / 2) {
                let decoded = run_python("deflate-decode", &wire[..wire_len], &[]);
                assert_same(
                    &decoded,
                    &plan.data[..plain],
                    &format!("level {level}, plan {i}, middle flush"),
                );
            }
        }
    }
    // With shutdown's final block too.
    let data = sample_data(100_000, 5);
    let wire = block_on(async {
        let mut stream = DeflateStream::new(Vec::new());
        stream.write_all(&data).await.unwrap();
        stream.shutdown().await.unwrap();
        stream.into_inner()
    });
    assert_same(&run_python("deflate-decode", &wire, &[]), &data, "finished");
}

#[test]
fn deflate_python_decodes_in_ours() {
    if !available(false) {
        return;
    }
    let cases: [(usize, usize, usize); 5] = [
        // (data length, Python piece size between sync flushes, our read size)
        (3000, 1, 5),
        (100_000, 1000, 1),
        (300_000, 65536, 4096),
        (2 * 1024 * 1024, 300_000, 65536),
        (0, 1, 10),
    ];
    for level in [1, 6, 9] {
        for end in ["sync", "finish"] {
            for (i, &(len, piece, read_size)) in cases.iter().enumerate() {
                let data = sample_data(len, 20 + i as u64);
                let options = [level.to_string(), piece.to_string(), end.to_string()];
                let options: Vec<&str> = options.iter().map(String::as_str).collect();
                let wire = run_python("deflate-encode", &data, &options);
                let decoded = block_on(decode(DeflateStream::new(&wire[..]), read_size));
                assert_same(&decoded, &data, &format!("level {level}, {end}, case {i}"));
            }
        }
    }
}
