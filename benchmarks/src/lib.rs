//! What the benchmark binaries share: this process's CPU time, and medians.
//!
//! The binaries (each prints the table that goes into BENCHMARKS.md):
//!
//! * `nsq-bench`: nsq-server-lite against nsqd 1.3.0, end to end;
//! * `nsq-client-bench`: nsq-client against go-nsq and tokio-nsq on real nsqd, with nsq's raw
//!   `bench_writer` and `bench_reader` and a blocking socket as references;
//! * `nsq-producer-client`: nsq-client's side of `nsq-client-bench`, one process per run;
//! * `nsq-replication-bench`: replicated against plain publishing, de-duplicated against
//!   plain consuming;
//! * `nsq-broker-cost`: from starting a broker to its first acknowledged PUB, nsq-server-lite
//!   in-process against a real nsqd process.

/// User + system CPU seconds of this process, from `/proc/self/stat` (Linux; 100 ticks per
/// second).
///
/// # Errors
///
/// When `/proc/self/stat` cannot be read or parsed.
///
/// ```
/// let before = nsq_benchmarks::cpu_seconds()?;
/// assert!(nsq_benchmarks::cpu_seconds()? >= before);
/// # Ok::<(), String>(())
/// ```
pub fn cpu_seconds() -> Result<f64, String> {
    const USER_HZ: f64 = 100.0;
    let stat = std::fs::read_to_string("/proc/self/stat").map_err(|e| e.to_string())?;
    // Fields after the command name (which is in parentheses and may hold spaces):
    // state is field 3, utime field 14 and stime field 15.
    let rest = stat.rsplit_once(')').ok_or("bad /proc/self/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> Result<f64, String> {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .map(|t| t as f64 / USER_HZ)
            .ok_or_else(|| "bad /proc/self/stat".to_owned())
    };
    Ok(tick(11)? + tick(12)?)
}

/// The median of `values` (the mean of the middle two of an even count); `None` for none.
///
/// ```
/// assert_eq!(nsq_benchmarks::median(vec![3.0, 1.0, 2.0]), Some(2.0));
/// assert_eq!(nsq_benchmarks::median(vec![4.0, 1.0]), Some(2.5));
/// assert_eq!(nsq_benchmarks::median(vec![]), None);
/// ```
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}
