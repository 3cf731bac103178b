//! `nsq_stat`: polls `/stats` of every nsqd that has a topic (found through nsqlookupd, or
//! given) and prints one channel's counters, summed over them, every `--interval`, in the
//! table of nsq's `nsq_stat`:
//!
//! ```text
//! ------rate------+----------------depth----------------+--------------metadata---------------
//! ingress  egress |   total     mem    disk inflt   def |     req     t-o         msgs clients
//!     120     118 |      14      14       0     2     0 |       0       0         9213       1
//! ```
//!
//! The header is repeated every 25 reports; the first poll only sets the base of the rates.

use std::io::Write;
use std::time::Duration;

use crate::cli::{Failure, Tool};
use crate::http::{ApiClient, ChannelStats, HttpError, NsqdStats};
use crate::signal::Shutdown;

/// `nsq_stat`'s flags, nsq's names and defaults.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "nsq_stat",
    version,
    about = "Show an NSQ channel's depth and rates, live"
)]
pub struct StatArgs {
    /// NSQ topic.
    #[arg(long, default_value = "")]
    pub topic: String,
    /// NSQ channel.
    #[arg(long, default_value = "")]
    pub channel: String,
    /// Duration of time between polling/printing output.
    #[arg(long, alias = "status-every", default_value = "2s", value_parser = crate::args::go_duration)]
    pub interval: Duration,
    /// Timeout for HTTP connect.
    #[arg(long, default_value = "2s", value_parser = crate::args::go_duration)]
    pub http_client_connect_timeout: Duration,
    /// Timeout for HTTP request.
    #[arg(long, default_value = "5s", value_parser = crate::args::go_duration)]
    pub http_client_request_timeout: Duration,
    /// Number of reports (default: until stopped).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub count: Option<i32>,
    /// nsqd HTTP address (may be given multiple times).
    #[arg(long)]
    pub nsqd_http_address: Vec<String>,
    /// lookupd HTTP address (may be given multiple times).
    #[arg(long)]
    pub lookupd_http_address: Vec<String>,
}

/// Why `nsq_stat` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatError {
    /// A flag is missing or wrong.
    #[error("{0}")]
    Usage(String),
    /// nsqlookupd could not say which nsqd have the topic.
    #[error("failed to get topic producers - {0}")]
    Producers(HttpError),
    /// An nsqd's stats could not be read.
    #[error("failed to get nsqd stats - {0}")]
    Stats(HttpError),
    /// No nsqd reports the channel.
    #[error("failed to find channel({channel}) in stats metadata for topic({topic})")]
    NoChannel {
        /// The topic.
        topic: String,
        /// The channel.
        channel: String,
    },
    /// Stdout, the signal handlers or the HTTP client failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Failure for StatError {
    fn is_usage(&self) -> bool {
        matches!(self, Self::Usage(_))
    }
}

impl Tool for StatArgs {
    const NAME: &'static str = "nsq_stat";
    type Error = StatError;

    async fn run(self) -> Result<(), StatError> {
        stat(self, std::io::stdout()).await
    }
}

/// Checks the flags as nsq's `nsq_stat` does.
fn check(args: &StatArgs) -> Result<(), StatError> {
    let usage = |s: &str| Err(StatError::Usage(s.to_owned()));
    if args.topic.is_empty() || args.channel.is_empty() {
        return usage("--topic and --channel are required");
    }
    if args.interval.is_zero() {
        return usage("--interval should be positive");
    }
    if args.http_client_connect_timeout.is_zero() {
        return usage("--http-client-connect-timeout should be positive");
    }
    if args.http_client_request_timeout.is_zero() {
        return usage("--http-client-request-timeout should be positive");
    }
    if args.count.is_some_and(|n| n <= 0) {
        return usage("--count should be positive");
    }
    match (
        args.nsqd_http_address.is_empty(),
        args.lookupd_http_address.is_empty(),
    ) {
        (true, true) => return usage("--nsqd-http-address or --lookupd-http-address required"),
        (false, false) => {
            return usage("use --nsqd-http-address or --lookupd-http-address not both")
        }
        _ => {}
    }
    for (flag, addrs) in [
        ("--nsqd-http-address", &args.nsqd_http_address),
        ("--lookupd-http-address", &args.lookupd_http_address),
    ] {
        if addrs.iter().any(|a| a.starts_with("http")) {
            return Err(StatError::Usage(format!(
                "{flag} error - address should not contain scheme"
            )));
        }
    }
    Ok(())
}

/// Runs `nsq_stat`, writing the table to `out`, until `--count` reports were printed or a
/// signal comes.
///
/// # Errors
///
/// [`StatError`] for bad flags, and as nsq's when a poll fails.
pub async fn stat(args: StatArgs, mut out: impl Write) -> Result<(), StatError> {
    check(&args)?;
    let mut shutdown = Shutdown::new()?;
    let api = ApiClient::new(
        args.http_client_connect_timeout,
        args.http_client_request_timeout,
    )
    .map_err(|e| StatError::Io(std::io::Error::other(e.to_string())))?;
    let mut ticks = tokio::time::interval(args.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut previous: Option<ChannelStats> = None;
    let mut i: i64 = 0;
    while args.count.is_none_or(|n| i64::from(n) >= i) {
        tokio::select! {
            _ = ticks.tick() => {}
            name = shutdown.recv() => {
                tracing::info!("{name}: stopping");
                return Ok(());
            }
        }
        let current = poll(&api, &args).await?;
        if i % 25 == 0 {
            out.write_all(header().as_bytes())?;
        }
        if let Some(before) = &previous {
            out.write_all(row(before, &current, args.interval).as_bytes())?;
        }
        out.flush()?;
        previous = Some(current);
        i += 1;
    }
    Ok(())
}

/// One poll: the channel's counters summed over the nsqd that have the topic.
async fn poll(api: &ApiClient, args: &StatArgs) -> Result<ChannelStats, StatError> {
    let nsqd: Vec<String> = if args.lookupd_http_address.is_empty() {
        args.nsqd_http_address.clone()
    } else {
        let mut found = Vec::new();
        for lookupd in &args.lookupd_http_address {
            let producers = api
                .lookup(lookupd, &args.topic)
                .await
                .map_err(StatError::Producers)?;
            found.extend(producers.iter().map(|p| p.http_address()));
        }
        found.sort();
        found.dedup();
        found
    };
    let polls = nsqd
        .iter()
        .map(|addr| api.stats(addr, &args.topic, Some(&args.channel)));
    let mut stats = Vec::new();
    for answer in futures::future::join_all(polls).await {
        stats.push(answer.map_err(StatError::Stats)?);
    }
    aggregate(&stats, &args.topic, &args.channel).ok_or_else(|| StatError::NoChannel {
        topic: args.topic.clone(),
        channel: args.channel.clone(),
    })
}

/// The channel's counters summed over `stats` (nsq's `ChannelStats.Add`); `None` when no
/// nsqd has it.
///
/// ```
/// let stats: nsq_tools::http::NsqdStats = serde_json::from_str(
///     r#"{"topics":[{"topic_name":"t","channels":[{"channel_name":"c","depth":3,"client_count":1}]}]}"#,
/// )?;
/// let sum = nsq_tools::stat::aggregate(&[stats.clone(), stats], "t", "c").expect("the channel");
/// assert_eq!((sum.depth, sum.client_count), (6, 2));
/// # Ok::<(), serde_json::Error>(())
/// ```
pub fn aggregate(stats: &[NsqdStats], topic: &str, channel: &str) -> Option<ChannelStats> {
    let mut sum: Option<ChannelStats> = None;
    let channels = stats
        .iter()
        .flat_map(|s| &s.topics)
        .filter(|t| t.topic_name == topic)
        .flat_map(|t| &t.channels)
        .filter(|c| c.channel_name == channel);
    for c in channels {
        let s = sum.get_or_insert_with(|| ChannelStats {
            channel_name: channel.to_owned(),
            ..ChannelStats::default()
        });
        s.depth += c.depth;
        s.backend_depth += c.backend_depth;
        s.in_flight_count += c.in_flight_count;
        s.deferred_count += c.deferred_count;
        s.requeue_count += c.requeue_count;
        s.timeout_count += c.timeout_count;
        s.message_count += c.message_count;
        s.client_count += c.client_count;
        s.paused |= c.paused;
    }
    sum
}

/// The two header lines of nsq's table.
///
/// ```
/// let h = nsq_tools::stat::header();
/// assert!(h.starts_with("------rate------+"));
/// assert!(h.lines().nth(1).unwrap().starts_with("ingress  egress |"));
/// ```
pub fn header() -> String {
    format!(
        "{}+{}+{}\n{:>7} {:>7} | {:>7} {:>7} {:>7} {:>5} {:>5} | {:>7} {:>7} {:>12} {:>7}\n",
        "------rate------",
        "----------------depth----------------",
        "--------------metadata---------------",
        "ingress",
        "egress",
        "total",
        "mem",
        "disk",
        "inflt",
        "def",
        "req",
        "t-o",
        "msgs",
        "clients"
    )
}

/// One report: the rates since `before` (per second of `interval`, truncated as nsq's) and the
/// counters now.
///
/// ```
/// use std::time::Duration;
/// use nsq_tools::http::ChannelStats;
/// let before = ChannelStats { message_count: 100, depth: 10, ..Default::default() };
/// let now = ChannelStats { message_count: 300, depth: 30, ..Default::default() };
/// let line = nsq_tools::stat::row(&before, &now, Duration::from_secs(2));
/// assert!(line.starts_with("    100      90 |      30"));
/// ```
pub fn row(before: &ChannelStats, now: &ChannelStats, interval: Duration) -> String {
    let secs = interval.as_secs_f64();
    let messages = now.message_count - before.message_count;
    let ingress = (messages as f64 / secs) as i64;
    let egress = ((messages - (now.depth - before.depth)) as f64 / secs) as i64;
    format!(
        "{:>7} {:>7} | {:>7} {:>7} {:>7} {:>5} {:>5} | {:>7} {:>7} {:>12} {:>7}\n",
        ingress,
        egress,
        now.depth,
        now.depth - now.backend_depth,
        now.backend_depth,
        now.in_flight_count,
        now.deferred_count,
        now.requeue_count,
        now.timeout_count,
        now.message_count,
        now.client_count
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_nsqs() {
        let expected = "------rate------+----------------depth----------------+--------------metadata---------------\n\
                        ingress  egress |   total     mem    disk inflt   def |     req     t-o         msgs clients\n";
        assert_eq!(header(), expected);
    }

    #[test]
    fn a_row_lines_up_under_the_header() {
        let now = ChannelStats {
            depth: 5,
            backend_depth: 2,
            in_flight_count: 3,
            deferred_count: 1,
            requeue_count: 4,
            timeout_count: 6,
            message_count: 1000,
            client_count: 2,
            ..ChannelStats::default()
        };
        let line = row(&ChannelStats::default(), &now, Duration::from_secs(1));
        assert_eq!(
            line,
            "   1000     995 |       5       3       2     3     1 |       4       6         1000       2\n"
        );
        assert_eq!(line.len(), header().lines().nth(1).unwrap().len() + 1);
    }

    #[test]
    fn flags_are_checked_as_nsq_does() {
        use clap::Parser;
        let parse = |argv: &[&str]| StatArgs::try_parse_from(argv).expect("parses");
        let base = ["nsq_stat", "--topic=t", "--channel=c"];
        assert!(check(&parse(&base)).is_err());
        let mut ok = base.to_vec();
        ok.push("--nsqd-http-address=127.0.0.1:4151");
        assert!(check(&parse(&ok)).is_ok());
        let mut scheme = base.to_vec();
        scheme.push("--lookupd-http-address=http://127.0.0.1:4161");
        assert!(check(&parse(&scheme)).is_err());
        let mut zero = ok.clone();
        zero.push("--count=0");
        assert!(check(&parse(&zero)).is_err());
    }
}
