//! `nsq_tail`: prints the messages of one or more topics to stdout, one per line, from a
//! channel of its own (`tail123456#ephemeral` unless `--channel` says otherwise), as nsq's
//! `nsq_tail`.

use std::io::Write;
use std::sync::Arc;

use futures::stream::{self, StreamExt};
use nsq_client::{Channel, ConsumerHandle, Message, Topic};

use crate::cli::{Failure, Tool};
use crate::consume::{ready, Sources};
use crate::opts::{ClientOptions, GoOpt, OptError};
use crate::rate::{Counter, Display, RateLine};
use crate::signal::Shutdown;

/// `nsq_tail`'s flags, nsq's names and defaults.
#[derive(Debug, clap::Parser)]
#[command(
    name = "nsq_tail",
    version,
    about = "Print the messages of NSQ topics to stdout"
)]
pub struct TailArgs {
    /// NSQ channel (default: "tail", six random digits, "#ephemeral").
    #[arg(long, default_value = "")]
    pub channel: String,
    /// Max number of messages to allow in flight.
    #[arg(long, default_value_t = 200)]
    pub max_in_flight: u32,
    /// Total messages to show (will wait if starved); 0 shows them until stopped.
    #[arg(short = 'n', long = "n", default_value_t = 0)]
    pub n: u64,
    /// Print topic name where message was received.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = crate::args::go_bool)]
    pub print_topic: bool,
    /// nsqd TCP address (may be given multiple times).
    #[arg(long)]
    pub nsqd_tcp_address: Vec<String>,
    /// lookupd HTTP address (may be given multiple times).
    #[arg(long)]
    pub lookupd_http_address: Vec<String>,
    /// NSQ topic (may be given multiple times).
    #[arg(long)]
    pub topic: Vec<String>,
    /// Option to passthrough to the consumer, go-nsq's `key,value` (may be given multiple
    /// times).
    #[arg(long, value_name = "KEY,VALUE", value_parser = crate::opts::parse_opt)]
    pub consumer_opt: Vec<GoOpt>,
}

/// Why `nsq_tail` stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TailError {
    /// A flag is missing or contradicts another.
    #[error("{0}")]
    Usage(&'static str),
    /// A name is not a valid topic or channel name.
    #[error("{0}")]
    Name(#[from] nsq_client::proto::NameError),
    /// A `--consumer-opt` is wrong.
    #[error(transparent)]
    Opt(#[from] OptError),
    /// The consumer could not be set up.
    #[error("consumer: {0}")]
    Config(#[from] nsq_client::ConfigError),
    /// No nsqd given could be subscribed.
    #[error("{0}")]
    Connect(crate::consume::StartError),
    /// Stdout or the signal handlers failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Failure for TailError {
    fn is_usage(&self) -> bool {
        matches!(
            self,
            Self::Usage(_) | Self::Name(_) | Self::Opt(_) | Self::Config(_)
        )
    }
}

impl Tool for TailArgs {
    const NAME: &'static str = "nsq_tail";
    type Error = TailError;

    async fn run(self) -> Result<(), TailError> {
        tail(self).await
    }
}

/// The user agent nsq_tail identifies as.
fn user_agent() -> String {
    format!("nsq_tail/{v} nsq-tools/{v}", v = env!("CARGO_PKG_VERSION"))
}

/// Runs `nsq_tail`: prints until `-n` messages were shown or a signal comes.
///
/// # Errors
///
/// [`TailError`] for bad flags, an nsqd that cannot be subscribed, or when stdout fails (other
/// than a closed pipe, which ends the tail normally).
pub async fn tail(args: TailArgs) -> Result<(), TailError> {
    let sources = Sources::new(
        args.nsqd_tcp_address.clone(),
        args.lookupd_http_address.clone(),
    )
    .map_err(TailError::Usage)?;
    if args.topic.is_empty() {
        return Err(TailError::Usage("--topic required"));
    }
    let channel = if args.channel.is_empty() {
        format!("tail{:06}#ephemeral", fastrand::u32(0..999_999))
    } else {
        args.channel.clone()
    };
    let channel = Channel::new(channel)?;
    // Do not ask for more messages than will be shown.
    let mut max_in_flight = args.max_in_flight;
    if args.n > 0 && args.n < u64::from(max_in_flight) {
        max_in_flight = u32::try_from(args.n).unwrap_or(max_in_flight);
    }
    let opts = ClientOptions::new(args.consumer_opt.clone());
    let config = opts.consumer(&user_agent(), max_in_flight)?;
    let mut shutdown = Shutdown::new()?;

    let mut consumers = Vec::new();
    for name in &args.topic {
        tracing::info!("Adding consumer for topic: {name}");
        let topic = Topic::new(name)?;
        consumers.push((
            name.clone(),
            sources.consumer(topic, channel.clone(), config.clone())?,
        ));
    }
    let handles: Vec<ConsumerHandle> = consumers.iter().map(|(_, c)| c.handle()).collect();
    for (_, consumer) in &consumers {
        if let Err(e) = sources.check(consumer).await {
            stop_all(&handles);
            return Err(TailError::Connect(e));
        }
    }
    let streams = consumers.into_iter().map(|(name, consumer)| {
        let topic: Arc<str> = name.into();
        consumer.map(move |msg| (topic.clone(), msg)).boxed()
    });
    let mut messages = stream::select_all(streams);

    let shown = Counter::default();
    let rate = RateLine::start("nsq_tail", "messages", shown.clone(), Display::detect(true));
    let mut out = Output {
        stdout: std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout()),
        print_topic: args.print_topic,
        failed: None,
    };
    let mut stopping = false;
    loop {
        let first = tokio::select! {
            next = messages.next() => next,
            name = shutdown.recv(), if !stopping => {
                tracing::info!("{name}: stopping");
                stop_all(&handles);
                stopping = true;
                continue;
            }
        };
        let Some(first) = first else { break };
        let (mut batch, ended) = ready(&mut messages, 1024);
        batch.insert(0, first);
        for (topic, msg) in batch {
            let wanted = args.n == 0 || shown.get() < args.n;
            if !wanted || out.failed.is_some() {
                // Shown all that was asked, or stdout is gone: hand the rest back.
                drop(msg);
                continue;
            }
            if out.print(&topic, &msg) {
                let _ = msg.finish();
                shown.add(1);
            }
        }
        out.flush();
        let done = args.n > 0 && shown.get() >= args.n;
        if (done || out.failed.is_some()) && !stopping {
            stop_all(&handles);
            stopping = true;
        }
        if ended {
            break;
        }
    }
    out.flush();
    for handle in handles {
        handle.stop().await;
    }
    rate.finish().await;
    match out.failed {
        Some(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(TailError::Io(e)),
        _ => Ok(()),
    }
}

/// Stops every consumer; their streams end once their connections closed.
fn stop_all(handles: &[ConsumerHandle]) {
    for handle in handles {
        // The stop starts with the call; the future only waits for it to be over.
        drop(handle.stop());
    }
}

/// Stdout, buffered, and the first error writing to it.
struct Output {
    stdout: std::io::BufWriter<std::io::Stdout>,
    print_topic: bool,
    failed: Option<std::io::Error>,
}

impl Output {
    /// Writes one message's line; `false` when stdout failed.
    fn print(&mut self, topic: &str, msg: &Message) -> bool {
        let mut line = || {
            if self.print_topic {
                self.stdout.write_all(topic.as_bytes())?;
                self.stdout.write_all(b" | ")?;
            }
            self.stdout.write_all(msg.body())?;
            self.stdout.write_all(b"\n")
        };
        match line() {
            Ok(()) => true,
            Err(e) => {
                self.failed.get_or_insert(e);
                false
            }
        }
    }

    fn flush(&mut self) {
        if self.failed.is_none() {
            if let Err(e) = self.stdout.flush() {
                self.failed = Some(e);
            }
        }
    }
}
