//! The latency probe every client program of `nsq-latency-bench` speaks (nsq-client's here,
//! go-nsq's in `tests/peers/go/cmd/nsq-bench-client`, tokio-nsq's in
//! `tests/peers/rust/tokio-nsq-bench`).
//!
//! * **Pacing.** Every millisecond the publisher publishes the messages due by then
//!   (`rate × elapsed`, rounded down) without waiting for their answers, so each program paces
//!   alike whatever its timers' resolution.
//! * **Body.** The first 16 bytes are the message's number (0, 1, 2, …) and the nanoseconds
//!   from the program's start to the publish call, both big-endian `u64`; the rest is padding
//!   up to `--size` (at least 16).
//! * **Measure.** The consumer (same process, same clock) takes each message's latency as its
//!   arrival time minus the time in its body, and finishes it. The first second's messages
//!   (`rate` of them) warm up connections and are not counted; the next `--count` are.
//! * **Report.** The JSON line of the other modes on stdout, and the counted latencies in
//!   the file of `--latencies`, nanoseconds, one a line; [`read_latencies`] and
//!   [`percentiles`] turn them into the table's figures, the same way for every client.

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes of a probe body before its padding.
pub const STAMP_LEN: usize = 16;

/// A probe body: message `number`, published `nanos` after the program started, padded to
/// `size` bytes (at least [`STAMP_LEN`]).
///
/// ```
/// use nsq_benchmarks::latency::{body, read};
/// let b = body(7, 1_500, 100);
/// assert_eq!(b.len(), 100);
/// assert_eq!(read(&b), Some((7, 1_500)));
/// assert_eq!(body(1, 2, 3).len(), 16);
/// ```
pub fn body(number: u64, nanos: u64, size: usize) -> Bytes {
    let mut out = BytesMut::with_capacity(size.max(STAMP_LEN));
    out.put_u64(number);
    out.put_u64(nanos);
    out.resize(size.max(STAMP_LEN), b'x');
    out.freeze()
}

/// The number and publish time of a probe body; `None` when it is too short to be one.
///
/// ```
/// assert_eq!(nsq_benchmarks::latency::read(b"short"), None);
/// ```
pub fn read(body: &[u8]) -> Option<(u64, u64)> {
    let number = u64::from_be_bytes(body.get(..8)?.try_into().ok()?);
    let nanos = u64::from_be_bytes(body.get(8..16)?.try_into().ok()?);
    Some((number, nanos))
}

/// Percentiles of a run's latencies, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    /// The median.
    pub p50: f64,
    /// The 99th percentile.
    pub p99: f64,
    /// The 99.9th percentile.
    pub p999: f64,
    /// The largest.
    pub max: f64,
}

/// The percentiles of `nanos` (sorted here): the `q`-th is the smallest value that at least
/// `q` of the values do not exceed. `None` for no values.
///
/// ```
/// let mut lat: Vec<u64> = (1..=1000).map(|us| us * 1000).collect();
/// let p = nsq_benchmarks::latency::percentiles(&mut lat).unwrap();
/// assert_eq!((p.p50, p.p99, p.p999, p.max), (500.0, 990.0, 999.0, 1000.0));
/// assert!(nsq_benchmarks::latency::percentiles(&mut Vec::new()).is_none());
/// ```
pub fn percentiles(nanos: &mut [u64]) -> Option<Percentiles> {
    nanos.sort_unstable();
    let n = nanos.len();
    let at = |q: f64| -> Option<f64> {
        let rank = ((q * n as f64).ceil() as usize).max(1);
        nanos.get(rank - 1).map(|&v| v as f64 / 1000.0)
    };
    Some(Percentiles {
        p50: at(0.5)?,
        p99: at(0.99)?,
        p999: at(0.999)?,
        max: at(1.0)?,
    })
}

/// The latencies a client program wrote to `path` (nanoseconds, one a line).
///
/// # Errors
///
/// When the file cannot be read or a line is not a number.
///
/// ```
/// let path = std::env::temp_dir().join(format!("latencies-doc-{}", std::process::id()));
/// std::fs::write(&path, "1500\n2000\n")?;
/// assert_eq!(nsq_benchmarks::latency::read_latencies(&path), Ok(vec![1500, 2000]));
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn read_latencies(path: &std::path::Path) -> Result<Vec<u64>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .map(|line| {
            line.trim()
                .parse()
                .map_err(|_| format!("{}: not a number: {line:?}", path.display()))
        })
        .collect()
}
