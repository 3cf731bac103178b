//! What the `nsqd` and `nsqlookupd` binaries share: Go's flag syntax and duration format,
//! nsq's log levels, and waiting for a stop signal.
//!
//! ```
//! use nsq_server_lite::cli::{go_flag_syntax, parse_go_duration};
//! use std::time::Duration;
//!
//! let line = go_flag_syntax(["nsqd", "-msg-timeout=1m30s"].map(String::from), &[])?;
//! assert_eq!(line.args[1], "--msg-timeout=1m30s");
//! assert_eq!(parse_go_duration("1m30s")?, Duration::from_secs(90));
//! # Ok::<(), String>(())
//! ```

use std::time::Duration;

/// A flag of the Go binary whose feature this server does not have, and what it means here.
///
/// ```
/// use nsq_server_lite::cli::{Handling, LackedFlag};
/// const LACKED: &[LackedFlag] = &[LackedFlag::ignored("data-path", "no disk queue")];
/// assert_eq!(LACKED[0].name, "data-path");
/// assert!(matches!(LACKED[0].handling, Handling::Ignored(_)));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct LackedFlag {
    /// The flag's name, without dashes.
    pub name: &'static str,
    /// A Go boolean flag: alone it means `true`, and a value comes only after `=`.
    pub boolean: bool,
    /// What giving it does.
    pub handling: Handling,
}

/// What a [`LackedFlag`] does when given.
///
/// ```
/// use nsq_server_lite::cli::Handling;
/// let h = Handling::OnlyDefault { default: "25ms", why: "fixed at 25ms here" };
/// assert!(matches!(h, Handling::OnlyDefault { .. }));
/// ```
#[derive(Debug, Clone, Copy)]
pub enum Handling {
    /// Accepted and ignored, with a warning saying what is ignored: nothing a client sees
    /// depends on it (a disk queue, statsd, log prefixes).
    Ignored(&'static str),
    /// Accepted silently with its default value (which is what this server does anyway),
    /// refused with `why` otherwise.
    OnlyDefault {
        /// The Go binary's default, compared as a duration or a number when it is one.
        default: &'static str,
        /// Why another value cannot be honoured.
        why: &'static str,
    },
    /// Refused with `why`: without its feature, clients would see a difference.
    Refused(&'static str),
}

impl LackedFlag {
    /// A flag taking a value, accepted and ignored (`what` says what is ignored).
    ///
    /// ```
    /// let f = nsq_server_lite::cli::LackedFlag::ignored("statsd-address", "no statsd");
    /// assert!(!f.boolean);
    /// ```
    pub const fn ignored(name: &'static str, what: &'static str) -> Self {
        Self {
            name,
            boolean: false,
            handling: Handling::Ignored(what),
        }
    }

    /// The same flag as a Go boolean flag.
    ///
    /// ```
    /// let f = nsq_server_lite::cli::LackedFlag::ignored("statsd-mem-stats", "no statsd").boolean();
    /// assert!(f.boolean);
    /// ```
    pub const fn boolean(mut self) -> Self {
        self.boolean = true;
        self
    }

    /// A flag accepted only with its default value.
    ///
    /// ```
    /// let f = nsq_server_lite::cli::LackedFlag::only_default("broadcast-tcp-port", "0", "the listening port is registered");
    /// assert_eq!(f.name, "broadcast-tcp-port");
    /// ```
    pub const fn only_default(
        name: &'static str,
        default: &'static str,
        why: &'static str,
    ) -> Self {
        Self {
            name,
            boolean: false,
            handling: Handling::OnlyDefault { default, why },
        }
    }

    /// A flag always refused.
    ///
    /// ```
    /// let f = nsq_server_lite::cli::LackedFlag::refused("config", "give the settings as flags");
    /// assert_eq!(f.name, "config");
    /// ```
    pub const fn refused(name: &'static str, why: &'static str) -> Self {
        Self {
            name,
            boolean: false,
            handling: Handling::Refused(why),
        }
    }
}

/// A command line in clap's syntax, with what was taken out of it.
///
/// ```
/// use nsq_server_lite::cli::{go_flag_syntax, LackedFlag};
/// let lacked = [LackedFlag::ignored("data-path", "no disk queue")];
/// let line = go_flag_syntax(["nsqd", "-data-path", "/var/nsq"].map(String::from), &lacked)?;
/// assert_eq!(line.args, ["nsqd"]);
/// assert_eq!(line.ignored, ["--data-path (no disk queue)"]);
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoCommandLine {
    /// The arguments for clap.
    pub args: Vec<String>,
    /// Each ignored flag, once, with what is ignored: for one warning line.
    pub ignored: Vec<String>,
}

impl GoCommandLine {
    /// The one warning line for the ignored flags, if any were given.
    ///
    /// ```
    /// use nsq_server_lite::cli::{go_flag_syntax, LackedFlag};
    /// let lacked = [LackedFlag::ignored("log-prefix", "log lines carry no prefix")];
    /// let line = go_flag_syntax(["nsqd", "-log-prefix=[x] "].map(String::from), &lacked)?;
    /// assert!(line.warning().unwrap().contains("--log-prefix"));
    /// # Ok::<(), String>(())
    /// ```
    pub fn warning(&self) -> Option<String> {
        (!self.ignored.is_empty()).then(|| {
            format!(
                "nsq-server-lite accepts and ignores: {}",
                self.ignored.join("; ")
            )
        })
    }
}

/// Rewrites Go's one-dash long flags (`-flag=value`, `-flag value`) to the two-dash form
/// and takes out the flags of features this server lacks, as `lacked` says: ignored ones
/// are dropped (with their value) and listed, those accepted only with their default are
/// dropped when given it, the others are refused. A script written for the Go binary
/// either works unchanged or fails with a message naming what this server lacks.
///
/// # Errors
///
/// The message for the first refused flag, or a lacked flag missing its value.
pub fn go_flag_syntax(
    args: impl IntoIterator<Item = String>,
    lacked: &[LackedFlag],
) -> Result<GoCommandLine, String> {
    let mut line = GoCommandLine {
        args: Vec::new(),
        ignored: Vec::new(),
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let arg = match arg.strip_prefix('-') {
            Some(rest) if !rest.starts_with('-') && rest.len() > 1 => format!("--{rest}"),
            _ => arg,
        };
        let Some((name, inline)) = arg
            .strip_prefix("--")
            .map(|flag| match flag.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (flag, None),
            })
        else {
            line.args.push(arg);
            continue;
        };
        let Some(flag) = lacked.iter().find(|f| f.name == name) else {
            line.args.push(arg);
            continue;
        };
        let value = match (inline, flag.boolean) {
            (Some(value), _) => value.to_owned(),
            (None, true) => "true".to_owned(),
            (None, false) => args
                .next()
                .ok_or_else(|| format!("flag needs an argument: --{name}"))?,
        };
        match flag.handling {
            Handling::Ignored(what) => {
                let entry = format!("--{name} ({what})");
                if !line.ignored.contains(&entry) {
                    line.ignored.push(entry);
                }
            }
            Handling::OnlyDefault { default, why } if !same_value(&value, default) => {
                return Err(format!(
                    "flag --{name}={value} is not supported by nsq-server-lite: {why} (only --{name}={default} is accepted)"
                ));
            }
            Handling::OnlyDefault { .. } => {}
            Handling::Refused(why) => {
                return Err(format!(
                    "flag --{name} is not supported by nsq-server-lite: {why}"
                ));
            }
        }
    }
    Ok(line)
}

/// Whether a flag's value is its default: as text, as a Go duration or as a number.
fn same_value(value: &str, default: &str) -> bool {
    value == default
        || matches!((parse_go_duration(value), parse_go_duration(default)), (Ok(a), Ok(b)) if a == b)
        || matches!((value.parse::<i64>(), default.parse::<i64>()), (Ok(a), Ok(b)) if a == b)
}

/// Go's `time.ParseDuration` for the units nsq's flags use (`ns`, `us`, `ms`, `s`, `m`, `h`).
///
/// ```
/// use nsq_server_lite::cli::parse_go_duration;
/// assert_eq!(parse_go_duration("250ms"), Ok(std::time::Duration::from_millis(250)));
/// assert!(parse_go_duration("5").is_err());
/// ```
///
/// # Errors
///
/// When the text is not a Go duration.
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = text;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit in duration {text:?}"))?;
        let (number, tail) = rest.split_at(number_len);
        let value: f64 = number
            .parse()
            .map_err(|_| format!("invalid duration {text:?}"))?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(format!("unknown unit {unit:?} in duration {text:?}")),
        };
        total += value * scale;
        rest = tail;
    }
    Duration::try_from_secs_f64(total).map_err(|err| format!("invalid duration {text:?}: {err}"))
}

/// Where a listener listens, as nsqd 1.3.0 reads `--tcp-address`: `ip:port`, or a unix
/// socket's path.
///
/// ```
/// use nsq_server_lite::cli::ListenAddress;
/// let unix = ListenAddress::Unix("/run/nsqd.sock".into());
/// assert!(matches!(unix, ListenAddress::Unix(_)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddress {
    /// A TCP address.
    Tcp(std::net::SocketAddr),
    /// A unix socket at this path.
    Unix(std::path::PathBuf),
}

/// Reads a listening address the way nsqd 1.3.0 tells them apart: text that has the form
/// `host:port` is a TCP address (here the host must be an IP address), anything else is the
/// path of a unix socket.
///
/// ```
/// use nsq_server_lite::cli::{parse_listen_address, ListenAddress};
///
/// assert_eq!(parse_listen_address("127.0.0.1:4150"), Ok(ListenAddress::Tcp(([127, 0, 0, 1], 4150).into())));
/// assert_eq!(parse_listen_address("/run/nsqd.sock"), Ok(ListenAddress::Unix("/run/nsqd.sock".into())));
/// assert!(parse_listen_address("localhost:4150").is_err(), "a host name is not an address");
/// ```
///
/// # Errors
///
/// When the text has the form `host:port` but is not an IP address and port.
pub fn parse_listen_address(text: &str) -> Result<ListenAddress, String> {
    if let Ok(addr) = text.parse() {
        return Ok(ListenAddress::Tcp(addr));
    }
    // Go's net.SplitHostPort: a last colon with a port after it, and a host that has no
    // colon of its own unless bracketed.
    let host_port = text.rsplit_once(':').is_some_and(|(host, port)| {
        !port.contains('/')
            && !host.contains('/')
            && (!host.contains(':') || (host.starts_with('[') && host.ends_with(']')))
    });
    if host_port || text.is_empty() {
        return Err(format!(
            "invalid address {text:?}: want ip:port or the path of a unix socket"
        ));
    }
    Ok(ListenAddress::Unix(text.into()))
}

/// nsq's `--log-level` values.
///
/// ```
/// assert_eq!(nsq_server_lite::cli::parse_log_level("WARN"), Ok(tracing::Level::WARN));
/// ```
///
/// # Errors
///
/// When the text is not one of debug, info, warn, error, fatal.
pub fn parse_log_level(text: &str) -> Result<tracing::Level, String> {
    match text.to_ascii_lowercase().as_str() {
        "debug" => Ok(tracing::Level::DEBUG),
        "info" => Ok(tracing::Level::INFO),
        "warn" => Ok(tracing::Level::WARN),
        "error" | "fatal" => Ok(tracing::Level::ERROR),
        _ => Err(format!("invalid log level {text:?}")),
    }
}

/// Logs to stderr at `level`, without colours, as the Go binaries do.
///
/// ```no_run
/// nsq_server_lite::cli::init_logging(tracing::Level::INFO);
/// ```
pub fn init_logging(level: tracing::Level) {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        .with_ansi(false)
        .init();
}

/// Prints the "TCP: listening on" and "HTTP: listening on" lines the Go binaries print
/// (whatever the log level, for scripts that wait on them), then waits for a stop signal.
/// `tcp` is an address, or the path of a unix socket.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let addr: std::net::SocketAddr = "127.0.0.1:4150".parse().unwrap();
/// nsq_server_lite::cli::announce_and_wait(addr, addr).await;
/// # }
/// ```
pub async fn announce_and_wait(tcp: impl std::fmt::Display, http: impl std::fmt::Display) {
    eprintln!("TCP: listening on {tcp}");
    eprintln!("HTTP: listening on {http}");
    wait_for_signal().await;
}

/// Waits for Ctrl-C or SIGTERM.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// nsq_server_lite::cli::wait_for_signal().await;
/// # }
/// ```
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_flag_forms_and_lacked_flags() {
        const LACKED: &[LackedFlag] = &[
            LackedFlag::refused("config", "give the settings as flags"),
            LackedFlag::ignored("data-path", "no disk queue"),
            LackedFlag::ignored("statsd-mem-stats", "no statsd").boolean(),
            LackedFlag::only_default("min-output-buffer-timeout", "25ms", "fixed"),
        ];
        let line = |list: &[&str]| go_flag_syntax(list.iter().map(|s| s.to_string()), LACKED);
        let args = |list: &[&str]| line(list).map(|l| l.args);
        assert_eq!(
            args(&["x", "-a=1", "--b", "2", "-"]).unwrap(),
            ["x", "--a=1", "--b", "2", "-"]
        );
        let err = args(&["x", "-config=x.cfg"]).unwrap_err();
        assert!(err.contains("--config"), "{err}");
        assert!(args(&["x", "--config", "y"]).is_err());
        // Ignored flags go, with their value in either form, and are listed once.
        let ignored = line(&[
            "x",
            "-data-path",
            "/d",
            "-statsd-mem-stats",
            "--a=1",
            "--data-path=/e",
            "-statsd-mem-stats=false",
        ])
        .unwrap();
        assert_eq!(ignored.args, ["x", "--a=1"]);
        assert_eq!(
            ignored.ignored,
            [
                "--data-path (no disk queue)",
                "--statsd-mem-stats (no statsd)"
            ]
        );
        assert!(ignored
            .warning()
            .unwrap()
            .contains("--data-path (no disk queue)"));
        assert_eq!(line(&["x", "--a"]).unwrap().warning(), None);
        assert!(args(&["x", "-data-path"])
            .unwrap_err()
            .contains("needs an argument"));
        // The default is accepted in any spelling; another value is refused.
        for default in ["25ms", "25000us", "0.025s"] {
            let flag = format!("-min-output-buffer-timeout={default}");
            assert_eq!(args(&["x", &flag]).unwrap(), ["x"], "{default}");
        }
        let err = args(&["x", "-min-output-buffer-timeout=10ms"]).unwrap_err();
        assert!(err.contains("fixed") && err.contains("25ms"), "{err}");
    }

    #[test]
    fn listen_addresses_tell_tcp_from_unix_like_nsqd() {
        let tcp = |text: &str| match parse_listen_address(text) {
            Ok(ListenAddress::Tcp(addr)) => addr,
            other => panic!("{text}: {other:?}"),
        };
        assert_eq!(tcp("0.0.0.0:4150").port(), 4150);
        assert_eq!(tcp("[::1]:0").port(), 0);
        for path in ["/tmp/nsqd.sock", "nsqd.sock", "./a:b/c.sock", "/tmp/x:1/s"] {
            assert_eq!(
                parse_listen_address(path),
                Ok(ListenAddress::Unix(path.into())),
                "{path}"
            );
        }
        for bad in ["", "localhost:4150", "host:", ":4150x", "[::1]:port"] {
            assert!(parse_listen_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("5m0s"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_go_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert!(parse_go_duration("5").is_err());
        assert!(parse_go_duration("5x").is_err());
        assert!(parse_go_duration("").is_err());
    }
}
