//! `nsq_to_file`: writes the messages of topics to files, one message per line, as nsq's
//! `nsq_to_file`: nsq's file names ([`naming`]), rotation by time, size or age, gzip, a work
//! dir whose finished files move to the output dir ([`output`]), and topics found through
//! nsqlookupd (`--topic-pattern`).
//!
//! Nothing is lost: a message is finished (FIN) only once it is written and synced to disk,
//! so whatever nsqd no longer holds is in a file. SIGINT or SIGTERM stop it gracefully (what
//! is delivered is written, synced and finished, the files are closed and moved); SIGHUP
//! closes the files, and the next messages open new ones.
//!
//! Differences from nsq's: the topics of `--topic-pattern` are looked up at once rather than
//! after the first `--topic-refresh`, and a `--filename-format` without the `<REV>` it needs is
//! refused at start rather than logged.

pub mod naming;
pub mod output;
mod router;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use nsq_client::{Channel, ConsumerConfig, Topic};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::cli::{Failure, Tool};
use crate::consume::Sources;
use crate::http::ApiClient;
use crate::logging::LogSettings;
use crate::opts::{ClientOptions, GoOpt, OptError};
use crate::rate::{Counter, Display, RateLine};
use crate::signal::{Hangups, Shutdown};
use naming::{FileNaming, NamingOptions};
use output::{FileOptions, OutputFile};
use router::{Control, RouterOptions};

/// `nsq_to_file`'s flags, nsq's names and defaults.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "nsq_to_file",
    version,
    about = "Write the messages of NSQ topics to files"
)]
pub struct ToFileArgs {
    /// Set log verbosity: debug, info, warn, error, or fatal.
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Log message prefix.
    #[arg(long, default_value = "[nsq_to_file] ")]
    pub log_prefix: String,
    /// NSQ channel.
    #[arg(long, default_value = "nsq_to_file")]
    pub channel: String,
    /// Max number of messages to allow in flight [default: 200].
    #[arg(long)]
    pub max_in_flight: Option<u32>,
    /// Directory to write output files to.
    #[arg(long, default_value = "/tmp")]
    pub output_dir: PathBuf,
    /// Directory for in-progress files before moving to output-dir.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// strftime compatible format for `<DATETIME>` in filename format.
    #[arg(
        long,
        default_value = "%Y-%m-%d_%H",
        help = "strftime compatible format for <DATETIME> in filename format"
    )]
    pub datetime_format: String,
    /// Output filename format (`<TOPIC>`, `<HOST>`, `<PID>`, `<DATETIME>`, `<REV>` are
    /// replaced. `<REV>` is increased when file already exists).
    #[arg(
        long,
        default_value = "<TOPIC>.<HOST><REV>.<DATETIME>.log",
        help = "Output filename format (<TOPIC>, <HOST>, <PID>, <DATETIME>, <REV> are replaced. <REV> is increased when file already exists)"
    )]
    pub filename_format: String,
    /// Value to output in log filename in place of hostname. `<SHORT_HOST>` and `<HOSTNAME>`
    /// are valid replacement tokens.
    #[arg(
        long,
        default_value = "",
        help = "Value to output in log filename in place of hostname. <SHORT_HOST> and <HOSTNAME> are valid replacement tokens"
    )]
    pub host_identifier: String,
    /// gzip compression level (1-9, 1=BestSpeed, 9=BestCompression).
    #[arg(long, default_value_t = 6)]
    pub gzip_level: u32,
    /// gzip output files.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = crate::args::go_bool)]
    pub gzip: bool,
    /// Skip writing empty files.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = crate::args::go_bool)]
    pub skip_empty_files: bool,
    /// How frequently the topic list should be refreshed.
    #[arg(long, default_value = "1m", value_parser = crate::args::go_duration)]
    pub topic_refresh: Duration,
    /// Only log topics matching the following pattern.
    #[arg(long, default_value = "")]
    pub topic_pattern: String,
    /// Rotate the file when it grows bigger than `rotate-size` bytes.
    #[arg(long, default_value_t = 0)]
    pub rotate_size: u64,
    /// Rotate the file every duration.
    #[arg(long, default_value = "0", value_parser = crate::args::go_duration)]
    pub rotate_interval: Duration,
    /// Sync file to disk every duration.
    #[arg(long, default_value = "30s", value_parser = crate::args::go_duration)]
    pub sync_interval: Duration,
    /// Timeout for HTTP connect.
    #[arg(long, default_value = "2s", value_parser = crate::args::go_duration)]
    pub http_client_connect_timeout: Duration,
    /// Timeout for HTTP request.
    #[arg(long, default_value = "5s", value_parser = crate::args::go_duration)]
    pub http_client_request_timeout: Duration,
    /// nsqd TCP address (may be given multiple times).
    #[arg(long)]
    pub nsqd_tcp_address: Vec<String>,
    /// lookupd HTTP address (may be given multiple times).
    #[arg(long)]
    pub lookupd_http_address: Vec<String>,
    /// NSQ topic (may be given multiple times).
    #[arg(long)]
    pub topic: Vec<String>,
    /// Option to passthrough to the consumers, go-nsq's `key,value` (may be given multiple
    /// times).
    #[arg(long, value_name = "KEY,VALUE", value_parser = crate::opts::parse_opt)]
    pub consumer_opt: Vec<GoOpt>,
}

/// Why `nsq_to_file` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ToFileError {
    /// A flag is missing or wrong.
    #[error("{0}")]
    Usage(String),
    /// A topic or channel name is not valid.
    #[error("{0}")]
    Name(#[from] nsq_client::proto::NameError),
    /// A `--consumer-opt` is wrong.
    #[error(transparent)]
    Opt(#[from] OptError),
    /// A consumer could not be set up.
    #[error("consumer: {0}")]
    Config(#[from] nsq_client::ConfigError),
    /// An nsqd given could not be subscribed.
    #[error("topic {topic}: {source}")]
    Connect {
        /// The topic.
        topic: String,
        /// Why.
        source: crate::consume::StartError,
    },
    /// Writing a topic's files failed.
    #[error("topic {topic}: {source}")]
    File {
        /// The topic.
        topic: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The signal handlers or the HTTP client could not be set up.
    #[error("{0}")]
    Setup(String),
}

impl Failure for ToFileError {
    fn is_usage(&self) -> bool {
        matches!(
            self,
            Self::Usage(_) | Self::Name(_) | Self::Opt(_) | Self::Config(_)
        )
    }
}

impl Tool for ToFileArgs {
    const NAME: &'static str = "nsq_to_file";
    type Error = ToFileError;

    fn logging(&self) -> Result<LogSettings, String> {
        LogSettings::new(self.log_prefix.clone(), &self.log_level)
            .map_err(|_| "--log-level is invalid".to_owned())
    }

    async fn run(self) -> Result<(), ToFileError> {
        to_file(self).await
    }
}

fn user_agent() -> String {
    format!(
        "nsq_to_file/{v} nsq-tools/{v}",
        v = env!("CARGO_PKG_VERSION")
    )
}

/// Everything a topic's file logger is made from.
struct Setup {
    args: ToFileArgs,
    sources: Sources,
    channel: Channel,
    config: ConsumerConfig,
    max_in_flight: u32,
    pattern: Option<regex::Regex>,
    files: FileOptions,
    naming: NamingOptions,
    hostname: String,
}

/// Checks the flags as nsq's `nsq_to_file` does.
fn setup(args: ToFileArgs) -> Result<Setup, ToFileError> {
    let usage = |s: &str| ToFileError::Usage(s.to_owned());
    if args.channel.is_empty() {
        return Err(usage("--channel is required"));
    }
    if args.http_client_connect_timeout.is_zero() {
        return Err(usage("--http-client-connect-timeout should be positive"));
    }
    if args.http_client_request_timeout.is_zero() {
        return Err(usage("--http-client-request-timeout should be positive"));
    }
    if args.sync_interval.is_zero() {
        return Err(usage("--sync-interval should be positive"));
    }
    let sources = Sources::new(
        args.nsqd_tcp_address.clone(),
        args.lookupd_http_address.clone(),
    )
    .map_err(usage)?;
    if !(1..=9).contains(&args.gzip_level) {
        return Err(ToFileError::Usage(format!(
            "invalid --gzip-level value ({}), should be 1-9",
            args.gzip_level
        )));
    }
    if args.topic.is_empty() && args.topic_pattern.is_empty() {
        return Err(usage("--topic or --topic-pattern required"));
    }
    if args.topic.is_empty() && args.lookupd_http_address.is_empty() {
        return Err(usage(
            "--lookupd-http-address must be specified when no --topic specified",
        ));
    }
    let pattern = if args.topic_pattern.is_empty() {
        None
    } else {
        Some(
            regex::Regex::new(&args.topic_pattern)
                .map_err(|e| ToFileError::Usage(format!("invalid --topic-pattern: {e}")))?,
        )
    };
    let channel = Channel::new(&args.channel)?;
    let opts = ClientOptions::new(args.consumer_opt.clone());
    // As nsq's: --max-in-flight is applied after the options.
    let max_in_flight = args.max_in_flight.or(opts.max_in_flight()).unwrap_or(200);
    let config = opts.consumer(&user_agent(), max_in_flight)?;
    let work_dir = args
        .work_dir
        .clone()
        .unwrap_or_else(|| args.output_dir.clone());
    let rotate_interval = (!args.rotate_interval.is_zero()).then_some(args.rotate_interval);
    let files = FileOptions {
        output_dir: args.output_dir.clone(),
        work_dir: work_dir.clone(),
        gzip_level: args.gzip.then_some(args.gzip_level),
        rotate_size: args.rotate_size,
        rotate_interval,
    };
    let naming = NamingOptions {
        filename_format: args.filename_format.clone(),
        datetime_format: args.datetime_format.clone(),
        host_identifier: args.host_identifier.clone(),
        gzip: args.gzip,
        rotating: args.gzip
            || args.rotate_size > 0
            || rotate_interval.is_some()
            || work_dir != args.output_dir,
    };
    let hostname = nsq_proto::identify::local_hostname();
    // The format is the same for every topic: refuse a bad one now.
    FileNaming::new(&naming, "topic", &hostname, std::process::id())
        .map_err(|e| ToFileError::Usage(e.to_string()))?;
    Ok(Setup {
        args,
        sources,
        channel,
        config,
        max_in_flight,
        pattern,
        files,
        naming,
        hostname,
    })
}

/// Runs `nsq_to_file` until a signal, or until writing a file fails.
///
/// # Errors
///
/// [`ToFileError`] for bad flags, an nsqd that cannot be subscribed, or a file that cannot be
/// written (the messages not yet synced are then left to nsqd).
pub async fn to_file(args: ToFileArgs) -> Result<(), ToFileError> {
    let setup = setup(args)?;
    let setup_error = |e: std::io::Error| ToFileError::Setup(e.to_string());
    let mut shutdown = Shutdown::new().map_err(setup_error)?;
    let mut hangups = Hangups::new().map_err(setup_error)?;
    let api = ApiClient::new(
        setup.args.http_client_connect_timeout,
        setup.args.http_client_request_timeout,
    )
    .map_err(|e| ToFileError::Setup(e.to_string()))?;

    let written = Counter::default();
    let rate = RateLine::start(
        "nsq_to_file",
        "messages",
        written.clone(),
        Display::detect(false),
    );
    let mut loggers = Loggers::default();
    let mut failure = None;
    for topic in setup.args.topic.clone() {
        if let Err(e) = loggers.add(&setup, &topic, &written).await {
            failure = Some(e);
            break;
        }
    }
    // Without --topic, the topics come from nsqlookupd, now and every --topic-refresh.
    let discovering = setup.args.topic.is_empty();
    let mut refresh = tokio::time::interval(setup.args.topic_refresh);
    let mut stopping = failure.is_some();
    if stopping {
        loggers.send(Control::Stop);
    }
    loop {
        tokio::select! {
            name = shutdown.recv(), if !stopping => {
                tracing::info!("{name}: stopping");
                loggers.send(Control::Stop);
                stopping = true;
            }
            () = hangups.recv(), if !stopping => loggers.send(Control::Reopen),
            _ = refresh.tick(), if discovering && !stopping => {
                for topic in discover(&api, setup.sources.lookupd()).await {
                    if let Err(e) = loggers.add(&setup, &topic, &written).await {
                        tracing::error!("{e}");
                    }
                }
            }
            done = loggers.tasks.join_next() => match done {
                Some(Ok((topic, Ok(())))) => tracing::info!("[{topic}] stopped"),
                Some(Ok((topic, Err(source)))) => {
                    let e = ToFileError::File { topic, source };
                    tracing::error!("{e}; stopping");
                    failure.get_or_insert(e);
                    loggers.send(Control::Stop);
                    stopping = true;
                }
                Some(Err(e)) => {
                    failure.get_or_insert(ToFileError::Setup(format!("a topic's task failed: {e}")));
                    loggers.send(Control::Stop);
                    stopping = true;
                }
                None if stopping || !discovering => break,
                None => {
                    // No topic yet: wait for the next refresh (join_next would return at once).
                    tokio::select! {
                        name = shutdown.recv() => {
                            tracing::info!("{name}: stopping");
                            break;
                        }
                        _ = refresh.tick() => {
                            for topic in discover(&api, setup.sources.lookupd()).await {
                                if let Err(e) = loggers.add(&setup, &topic, &written).await {
                                    tracing::error!("{e}");
                                }
                            }
                        }
                    }
                }
            },
        }
        if stopping && loggers.tasks.is_empty() {
            break;
        }
    }
    rate.finish().await;
    failure.map_or(Ok(()), Err)
}

/// The topics nsqlookupd knows (all of them answering), errors logged.
async fn discover(api: &ApiClient, lookupd: &[String]) -> Vec<String> {
    let mut topics = Vec::new();
    for addr in lookupd {
        match api.topics(addr).await {
            Ok(found) => topics.extend(found),
            Err(e) => tracing::error!("could not retrieve topic list: {e}"),
        }
    }
    topics.sort();
    topics.dedup();
    topics
}

/// The topics being written, each a task with its control channel.
#[derive(Default)]
struct Loggers {
    controls: HashMap<String, mpsc::UnboundedSender<Control>>,
    tasks: JoinSet<(String, std::io::Result<()>)>,
}

impl Loggers {
    /// Starts writing `topic` unless it is written already or does not match the pattern.
    async fn add(&mut self, s: &Setup, topic: &str, written: &Counter) -> Result<(), ToFileError> {
        if self.controls.contains_key(topic) {
            return Ok(());
        }
        if let Some(pattern) = &s.pattern {
            if !pattern.is_match(topic) {
                tracing::warn!("skipping topic {topic} (doesn't match pattern {pattern})");
                return Ok(());
            }
        }
        let naming = FileNaming::new(&s.naming, topic, &s.hostname, std::process::id())
            .map_err(|e| ToFileError::Usage(e.to_string()))?;
        let consumer =
            s.sources
                .consumer(Topic::new(topic)?, s.channel.clone(), s.config.clone())?;
        s.sources
            .check(&consumer)
            .await
            .map_err(|source| ToFileError::Connect {
                topic: topic.to_owned(),
                source,
            })?;
        let file = OutputFile::new(naming, s.files.clone());
        let opts = RouterOptions {
            sync_interval: s.args.sync_interval,
            skip_empty_files: s.args.skip_empty_files,
            max_in_flight: usize::try_from(s.max_in_flight)
                .unwrap_or(usize::MAX)
                .max(1),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        self.controls.insert(topic.to_owned(), tx);
        let name = topic.to_owned();
        let written = written.clone();
        tracing::info!(
            "[{name}/{}] writing to {}",
            s.channel,
            s.files.work_dir.display()
        );
        self.tasks.spawn(async move {
            let result = router::route(name.clone(), consumer, file, opts, rx, written).await;
            (name, result)
        });
        Ok(())
    }

    fn send(&self, control: Control) {
        for tx in self.controls.values() {
            let _ = tx.send(control);
        }
    }
}
