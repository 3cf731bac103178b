//! Logging for the tools: `tracing` events on stderr in the layout of nsq's Go tools
//! (`[prefix] 2024/05/06 10:11:12.123456 INFO: message`), filtered by `RUST_LOG` when it is
//! set and by the tool's level otherwise.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// What a tool logs and how its lines start.
///
/// ```
/// let settings = nsq_tools::logging::LogSettings::new("[nsq_to_file] ", "warn")?;
/// assert_eq!(settings.prefix(), "[nsq_to_file] ");
/// # Ok::<(), nsq_tools::logging::LogLevelError>(())
/// ```
#[derive(Debug, Clone)]
pub struct LogSettings {
    prefix: String,
    level: Level,
}

/// A `--log-level` that is not one of nsq's.
///
/// ```
/// assert!(nsq_tools::logging::LogSettings::new("", "loud").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid log level {0:?} (want debug, info, warn, error or fatal)")]
pub struct LogLevelError(String);

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            prefix: String::new(),
            level: Level::INFO,
        }
    }
}

impl LogSettings {
    /// Lines start with `prefix`; `level` is one of nsq's `--log-level` values (`debug`,
    /// `info`, `warn`, `error`, `fatal`, any case).
    ///
    /// ```
    /// let s = nsq_tools::logging::LogSettings::new("", "DEBUG")?;
    /// # let _ = s;
    /// # Ok::<(), nsq_tools::logging::LogLevelError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`LogLevelError`] for another level.
    pub fn new(prefix: impl Into<String>, level: &str) -> Result<Self, LogLevelError> {
        let level = match level.to_ascii_lowercase().as_str() {
            "debug" => Level::DEBUG,
            "info" => Level::INFO,
            "warn" | "warning" => Level::WARN,
            "error" | "fatal" => Level::ERROR,
            _ => return Err(LogLevelError(level.to_owned())),
        };
        Ok(Self {
            prefix: prefix.into(),
            level,
        })
    }

    /// The prefix of every line.
    ///
    /// ```
    /// assert_eq!(nsq_tools::logging::LogSettings::default().prefix(), "");
    /// ```
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

/// Installs the global subscriber: stderr, Go's layout, `RUST_LOG` or the settings' level.
/// Does nothing when a subscriber is already installed.
///
/// ```no_run
/// nsq_tools::logging::init(&nsq_tools::logging::LogSettings::default());
/// tracing::info!("ready");
/// ```
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(settings.level.as_str().to_ascii_lowercase()));
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_ansi(false)
        .event_format(GoLayout {
            prefix: settings.prefix.clone(),
        })
        .try_init();
}

/// `[prefix]YYYY/MM/DD HH:MM:SS.micros LEVEL: span{fields}: message fields`.
struct GoLayout {
    prefix: String,
}

impl<S, N> FormatEvent<S, N> for GoLayout
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = match *event.metadata().level() {
            Level::ERROR => "ERROR",
            Level::WARN => "WARNING",
            Level::INFO => "INFO",
            Level::DEBUG => "DEBUG",
            Level::TRACE => "TRACE",
        };
        let now = chrono::Local::now().format("%Y/%m/%d %H:%M:%S%.6f");
        write!(writer, "{}{now} {level}: ", self.prefix)?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                write!(writer, "{}", span.name())?;
                if let Some(fields) = span.extensions().get::<FormattedFields<N>>() {
                    if !fields.is_empty() {
                        write!(writer, "{{{fields}}}")?;
                    }
                }
                writer.write_str(": ")?;
            }
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
