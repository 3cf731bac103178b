//! `to_nsq`: publishes stdin to a topic, one message per line (or per `--delimiter`), to
//! every nsqd given, as nsq's `to_nsq`. Each publish waits for nsqd's `OK` (pipelined, so
//! many are under way at once); the tool exits 0 only when every line read was acknowledged
//! by every nsqd.
//!
//! Unlike nsq's, a last line without a trailing delimiter is published whole (nsq's drops its
//! last byte), and a failure does not end the tool before the publishes under way are
//! answered, so that the count it reports is exact.

use std::collections::VecDeque;
use std::io::BufRead;
use std::time::Instant;

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use nsq_client::{Producer, PublishError, Topic};
use tokio::sync::mpsc;

use crate::cli::{Failure, Tool};
use crate::opts::{ClientOptions, GoOpt, OptError};
use crate::rate::{Counter, Display, RateLine};
use crate::signal::Shutdown;
use crate::throttle::Throttle;

/// How many publishes may wait for nsqd's answer at once, across the nsqd.
const WINDOW: usize = 4096;
/// How many lines the reader hands over at a time.
const LINES_PER_BATCH: usize = 256;

/// `to_nsq`'s flags, nsq's names and defaults.
#[derive(Debug, clap::Parser)]
#[command(
    name = "to_nsq",
    version,
    about = "Publish the lines of stdin to an NSQ topic"
)]
pub struct ToNsqArgs {
    /// NSQ topic to publish to.
    #[arg(long, default_value = "")]
    pub topic: String,
    /// Character to split input from stdin.
    #[arg(
        long,
        default_value = "\n",
        hide_default_value = true,
        allow_hyphen_values = true
    )]
    pub delimiter: String,
    /// Destination nsqd TCP address (may be given multiple times; every line goes to each).
    #[arg(long)]
    pub nsqd_tcp_address: Vec<String>,
    /// Option to passthrough to the producers, go-nsq's `key,value` (may be given multiple
    /// times).
    #[arg(long, value_name = "KEY,VALUE", value_parser = crate::opts::parse_opt)]
    pub producer_opt: Vec<GoOpt>,
    /// Throttle messages to n/second. 0 to disable.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub rate: i64,
}

/// Why `to_nsq` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ToNsqError {
    /// A flag is missing or wrong.
    #[error("{0}")]
    Usage(&'static str),
    /// The topic name is not valid.
    #[error("{0}")]
    Name(#[from] nsq_client::proto::NameError),
    /// A `--producer-opt` is wrong.
    #[error(transparent)]
    Opt(#[from] OptError),
    /// The producer could not be set up.
    #[error("producer: {0}")]
    Config(#[from] nsq_client::ConfigError),
    /// Some publishes were not acknowledged.
    #[error("{failed} of {attempted} publishes failed; first: {first}")]
    Publish {
        /// Publishes that failed.
        failed: u64,
        /// Publishes attempted (lines times nsqd).
        attempted: u64,
        /// The first failure.
        first: PublishError,
    },
    /// Stdin or the signal handlers failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Failure for ToNsqError {
    fn is_usage(&self) -> bool {
        matches!(
            self,
            Self::Usage(_) | Self::Name(_) | Self::Opt(_) | Self::Config(_)
        )
    }
}

impl Tool for ToNsqArgs {
    const NAME: &'static str = "to_nsq";
    type Error = ToNsqError;

    async fn run(self) -> Result<(), ToNsqError> {
        to_nsq(self, std::io::stdin()).await
    }
}

fn user_agent() -> String {
    format!("to_nsq/{v} nsq-tools/{v}", v = env!("CARGO_PKG_VERSION"))
}

/// Runs `to_nsq` on `input` (stdin for the binary) until its end or a signal.
///
/// # Errors
///
/// [`ToNsqError`] for bad flags, a read error, or any publish that nsqd did not acknowledge.
pub async fn to_nsq<R>(args: ToNsqArgs, input: R) -> Result<(), ToNsqError>
where
    R: std::io::Read + Send + 'static,
{
    if args.topic.is_empty() {
        return Err(ToNsqError::Usage("--topic required"));
    }
    let &[delimiter] = args.delimiter.as_bytes() else {
        return Err(ToNsqError::Usage("--delimiter must be a single byte"));
    };
    if args.nsqd_tcp_address.is_empty() {
        return Err(ToNsqError::Usage("--nsqd-tcp-address required"));
    }
    let topic = Topic::new(&args.topic)?;
    let config = ClientOptions::new(args.producer_opt.clone()).producer(&user_agent())?;
    let producers = args
        .nsqd_tcp_address
        .iter()
        .map(|addr| Producer::new(addr.clone(), config.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut shutdown = Shutdown::new()?;
    let mut throttle = u64::try_from(args.rate)
        .ok()
        .and_then(|rate| Throttle::new(rate, Instant::now()));
    if throttle.is_some() {
        tracing::info!("Throttling messages rate to max:{}/second", args.rate);
    }

    let mut lines = spawn_reader(input, delimiter);
    let published = Counter::default();
    let rate = RateLine::start(
        "to_nsq",
        "published",
        published.clone(),
        Display::detect(false),
    );
    let mut in_flight = FuturesUnordered::new();
    let mut pending: VecDeque<Bytes> = VecDeque::new();
    let (mut attempted, mut failed) = (0u64, 0u64);
    let mut first_failure: Option<PublishError> = None;
    let mut read_error = None;
    let (mut input_open, mut stopping) = (true, false);
    let mut throttled_until: Option<Instant> = None;
    loop {
        // Publish what may go now: within the window and the rate.
        while first_failure.is_none() && !stopping && in_flight.len() < WINDOW {
            if pending.is_empty() {
                break;
            }
            if let Some(wait) = throttle.as_mut().and_then(|t| t.take(Instant::now())) {
                throttled_until = Some(Instant::now() + wait);
                break;
            }
            let Some(line) = pending.pop_front() else {
                break;
            };
            for producer in &producers {
                attempted += 1;
                in_flight.push(producer.publish(&topic, line.clone()));
            }
        }
        let publishing = first_failure.is_none() && !stopping;
        if in_flight.is_empty() && !(publishing && (input_open || !pending.is_empty())) {
            break;
        }
        tokio::select! {
            biased;
            name = shutdown.recv(), if !stopping => {
                tracing::info!("{name}: publishing no more; waiting for the answers under way");
                stopping = true;
            }
            Some(result) = in_flight.next(), if !in_flight.is_empty() => match result {
                Ok(()) => published.add(1),
                Err(e) => {
                    failed += 1;
                    if first_failure.is_none() {
                        tracing::error!("publish failed: {e}; publishing no more");
                        first_failure = Some(e);
                    }
                }
            },
            () = sleep_until(throttled_until), if throttled_until.is_some() => {
                throttled_until = None;
            }
            batch = lines.recv(), if publishing && input_open && pending.is_empty() => match batch {
                Some(Ok(batch)) => pending.extend(batch),
                Some(Err(e)) => {
                    tracing::error!("reading stdin: {e}; publishing no more");
                    read_error = Some(e);
                    input_open = false;
                    stopping = true;
                }
                None => input_open = false,
            },
        }
    }
    drop(lines);
    for producer in &producers {
        producer.stop().await;
    }
    rate.finish().await;
    tracing::info!(
        "{} of {attempted} publishes acknowledged ({} nsqd)",
        published.get(),
        producers.len()
    );
    if let Some(first) = first_failure {
        return Err(ToNsqError::Publish {
            failed,
            attempted,
            first,
        });
    }
    match read_error {
        Some(e) => Err(ToNsqError::Io(e)),
        None => Ok(()),
    }
}

/// Reads `input` on a thread of its own (stdin blocks), splitting it at `delimiter` and
/// dropping empty lines, as nsq's `to_nsq`.
fn spawn_reader<R>(input: R, delimiter: u8) -> mpsc::Receiver<std::io::Result<Vec<Bytes>>>
where
    R: std::io::Read + Send + 'static,
{
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        let mut input = std::io::BufReader::with_capacity(64 * 1024, input);
        let mut batch = Vec::with_capacity(LINES_PER_BATCH);
        loop {
            let mut line = Vec::new();
            match input.read_until(delimiter, &mut line) {
                Ok(0) => break,
                Ok(_) => {
                    if line.last() == Some(&delimiter) {
                        line.pop();
                    }
                    if !line.is_empty() {
                        batch.push(Bytes::from(line));
                    }
                    // Hand over a full batch, or what there is when no more input is ready.
                    let hand_over = batch.len() == LINES_PER_BATCH || input.buffer().is_empty();
                    if hand_over && tx.blocking_send(Ok(std::mem::take(&mut batch))).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.blocking_send(Ok(std::mem::take(&mut batch)));
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
        if !batch.is_empty() {
            let _ = tx.blocking_send(Ok(batch));
        }
    });
    rx
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
}
