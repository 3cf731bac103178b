//! What the benchmark binaries share: processes' CPU time, medians, running client programs,
//! the latency probe and the raw reader.
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
//!   in-process against a real nsqd process;
//! * `nsq-latency-bench`: publish-to-consumer latency at fixed rates, nsq-client against
//!   go-nsq and tokio-nsq, through nsqd 1.3.0 and nsq-server-lite;
//! * `nsq-scale-bench`: one consumer over 1 to 100 nsqd: throughput, CPU, Σ RDY, memory per
//!   connection and starvation, and the floor: the same load through go-nsq and through a raw
//!   protocol reader ([`raw_reader`]);
//! * `nsq-pool-bench`: one `ProducerPool` over 1 to 50 nsqd: throughput, and failover when
//!   one of them dies or hangs;
//! * `nsq-connections-bench`: 1,000 clients on one broker, nsq-server-lite against nsqd:
//!   memory per idle connection and per queued message, throughput.

pub mod latency;
pub mod raw_reader;

/// User + system CPU seconds of this process, every thread's, to the nanosecond
/// (`CLOCK_PROCESS_CPUTIME_ID`): runs of a fraction of a second are measured, where the
/// 10 ms ticks of `/proc/self/stat` would round them.
///
/// # Errors
///
/// None on Linux; the `Result` matches [`process_cpu_seconds`].
///
/// ```
/// let before = nsq_benchmarks::cpu_seconds()?;
/// let spun: u64 = (0..1_000_000u64).map(std::hint::black_box).sum();
/// assert!(spun > 0 && nsq_benchmarks::cpu_seconds()? > before);
/// # Ok::<(), String>(())
/// ```
pub fn cpu_seconds() -> Result<f64, String> {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Ok(t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9)
}

/// User + system CPU seconds of process `pid` (a number, or `self`), from `/proc/<pid>/stat`
/// (Linux; 100 ticks per second).
///
/// # Errors
///
/// When the process's `stat` cannot be read or parsed (for example, it has exited).
///
/// ```
/// let me = std::process::id().to_string();
/// assert!(nsq_benchmarks::process_cpu_seconds(&me)? >= 0.0);
/// assert!(nsq_benchmarks::process_cpu_seconds("not-a-pid").is_err());
/// # Ok::<(), String>(())
/// ```
pub fn process_cpu_seconds(pid: &str) -> Result<f64, String> {
    const USER_HZ: f64 = 100.0;
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    // Fields after the command name (which is in parentheses and may hold spaces):
    // state is field 3, utime field 14 and stime field 15.
    let rest = stat.rsplit_once(')').ok_or("bad /proc/<pid>/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> Result<f64, String> {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .map(|t| t as f64 / USER_HZ)
            .ok_or_else(|| "bad /proc/<pid>/stat".to_owned())
    };
    Ok(tick(11)? + tick(12)?)
}

/// The resident set of process `pid` (a number, or `self`), in bytes, from
/// `/proc/<pid>/statm` (Linux; 4 KiB pages).
///
/// # Errors
///
/// When the process's `statm` cannot be read or parsed.
///
/// ```
/// assert!(nsq_benchmarks::process_resident_bytes("self")? > 0);
/// assert!(nsq_benchmarks::process_resident_bytes("not-a-pid").is_err());
/// # Ok::<(), String>(())
/// ```
pub fn process_resident_bytes(pid: &str) -> Result<u64, String> {
    let path = format!("/proc/{pid}/statm");
    let statm = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .ok_or("bad /proc/<pid>/statm")?;
    Ok(pages * 4096)
}

/// A count above zero, for clap's `value_parser`.
///
/// # Errors
///
/// When `v` is not a whole number above zero.
///
/// ```
/// assert_eq!(nsq_benchmarks::positive("3"), Ok(3));
/// assert!(nsq_benchmarks::positive("0").is_err());
/// assert!(nsq_benchmarks::positive("x").is_err());
/// ```
pub fn positive(v: &str) -> Result<usize, String> {
    match v.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("not a positive count: {v:?}")),
    }
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

/// The path of binary `bin` of workspace package `package`, next to the running one. Under
/// `cargo run` it is built first (release when this one is), so that it is never stale.
///
/// # Errors
///
/// When the build fails or the binary is not there.
///
/// ```no_run
/// let client = nsq_benchmarks::sibling_binary("nsq-benchmarks", "nsq-producer-client")?;
/// let lite_nsqd = nsq_benchmarks::sibling_binary("nsq-server-lite", "nsqd")?;
/// # Ok::<(), String>(())
/// ```
pub fn sibling_binary(package: &str, bin: &str) -> Result<std::path::PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let path = exe.with_file_name(bin);
    if let Some(cargo) = std::env::var_os("CARGO") {
        let mut build = std::process::Command::new(cargo);
        build.args(["build", "-q", "-p", package, "--bin", bin]);
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        let status = build.status().map_err(|e| format!("cargo build: {e}"))?;
        if !status.success() {
            return Err(format!("cargo build of {bin} failed"));
        }
    }
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: cargo build --release -p {package} --bin {bin}",
            path.display()
        ))
    }
}

/// Runs `program` with `args` to its end; its stdout and stderr, or why it failed (its
/// stderr included).
///
/// # Errors
///
/// When it cannot start or exits unsuccessfully.
///
/// ```
/// let (out, _) = nsq_benchmarks::run_program("echo".as_ref(), &["hi".to_owned()])?;
/// assert_eq!(out, "hi\n");
/// assert!(nsq_benchmarks::run_program("false".as_ref(), &[]).is_err());
/// # Ok::<(), String>(())
/// ```
pub fn run_program(program: &std::path::Path, args: &[String]) -> Result<(String, String), String> {
    let out = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", program.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(format!(
            "{} {args:?}: {}: {stderr}",
            program.display(),
            out.status
        ));
    }
    Ok((String::from_utf8_lossy(&out.stdout).into_owned(), stderr))
}

/// Runs one client program (`nsq-producer-client`, go-nsq's or tokio-nsq's): the JSON line
/// it prints last, or why it failed.
///
/// # Errors
///
/// When it fails or its last line is not JSON.
///
/// ```
/// let report = nsq_benchmarks::run_client("echo".as_ref(), &[r#"{"messages":3}"#.to_owned()])?;
/// assert_eq!(report["messages"], 3);
/// # Ok::<(), String>(())
/// ```
pub fn run_client(program: &std::path::Path, args: &[String]) -> Result<serde_json::Value, String> {
    let (stdout, _) = run_program(program, args)?;
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line)
        .map_err(|e| format!("{}: bad report {line:?}: {e}", program.display()))
}

/// A broker process the benches start on loopback with default flags.
///
/// ```
/// use nsq_benchmarks::Broker;
/// assert_eq!(Broker::Lite.name(), "nsq-server-lite");
/// assert_eq!(Broker::Nsqd.to_string(), "nsqd");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Broker {
    /// nsqd 1.3.0 (`NSQD_BIN`).
    Nsqd,
    /// nsq-server-lite's `nsqd` binary.
    Lite,
}

impl Broker {
    /// The name a table shows.
    ///
    /// ```
    /// assert_eq!(nsq_benchmarks::Broker::Nsqd.name(), "nsqd 1.3.0");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Broker::Nsqd => "nsqd 1.3.0",
            Broker::Lite => "nsq-server-lite",
        }
    }

    /// The broker's program: `NSQD_BIN`, or nsq-server-lite's `nsqd` (built under `cargo run`).
    ///
    /// # Errors
    ///
    /// When `NSQD_BIN` is not set, or lite's binary cannot be built or found.
    ///
    /// ```no_run
    /// let nsqd = nsq_benchmarks::Broker::Nsqd.binary()?;
    /// # Ok::<(), String>(())
    /// ```
    pub fn binary(self) -> Result<std::path::PathBuf, String> {
        match self {
            Broker::Nsqd => std::env::var_os("NSQD_BIN")
                .map(std::path::PathBuf::from)
                .ok_or_else(|| "NSQD_BIN is not set".to_owned()),
            Broker::Lite => sibling_binary("nsq-server-lite", "nsqd"),
        }
    }
}

impl std::fmt::Display for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Broker::Nsqd => "nsqd",
            Broker::Lite => "lite",
        })
    }
}

impl Broker {
    /// Starts `n` processes of this broker on free loopback ports, with `extra` flags.
    ///
    /// # Errors
    ///
    /// When its program is missing or one of them does not start listening.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), String> {
    /// let brokers = nsq_benchmarks::Broker::Lite.start(10, &[]).await?;
    /// assert_eq!(brokers.len(), 10);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn start(self, n: usize, extra: &[&str]) -> Result<Vec<nsq_tests::RealNsqd>, String> {
        let bin = self.binary()?;
        let extra: Vec<String> = extra.iter().map(|&f| f.to_owned()).collect();
        tokio::task::spawn_blocking(move || {
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            (0..n)
                .map(|_| nsq_tests::RealNsqd::start(&bin, &extra))
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| format!("starting {n} brokers: {e}"))
    }
}

/// A bench's last line (how long it took) and its exit code.
///
/// ```
/// let code = nsq_benchmarks::finish(std::time::Instant::now(), false);
/// assert_eq!(code, std::process::ExitCode::SUCCESS);
/// ```
#[allow(clippy::print_stdout)]
pub fn finish(started: std::time::Instant, failed: bool) -> std::process::ExitCode {
    println!();
    println!("took {:.0} s", started.elapsed().as_secs_f64());
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
