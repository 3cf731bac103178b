//! What the `nsqd` and `nsqlookupd` binaries share: Go's flag syntax and duration format,
//! nsq's log levels, and waiting for a stop signal.
//!
//! ```
//! use nsq_server_lite::cli::{go_flag_syntax, parse_go_duration};
//! use std::time::Duration;
//!
//! let args = go_flag_syntax(["nsqd", "-msg-timeout=1m30s"].map(String::from), &["config"])?;
//! assert_eq!(args[1], "--msg-timeout=1m30s");
//! assert_eq!(parse_go_duration("1m30s")?, Duration::from_secs(90));
//! # Ok::<(), String>(())
//! ```

use std::time::Duration;

/// Rewrites Go's one-dash long flags (`-flag=value`) to the two-dash form, and refuses
/// the flags in `unsupported` by name, so that a script written for the Go binary either
/// works unchanged or fails with a message naming what this server lacks.
///
/// # Errors
///
/// The message for the first unsupported flag.
pub fn go_flag_syntax(
    args: impl IntoIterator<Item = String>,
    unsupported: &[&str],
) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for arg in args {
        let arg = match arg.strip_prefix('-') {
            Some(rest) if !rest.starts_with('-') && rest.len() > 1 => format!("--{rest}"),
            _ => arg,
        };
        if let Some(name) = arg.strip_prefix("--") {
            let name = name.split('=').next().unwrap_or_default();
            if unsupported.contains(&name) {
                return Err(format!(
                    "flag --{name} is not supported by nsq-server-lite (the feature it configures does not exist here)"
                ));
            }
        }
        out.push(arg);
    }
    Ok(out)
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
    fn go_flag_forms_and_unsupported_flags() {
        let args = |list: &[&str]| go_flag_syntax(list.iter().map(|s| s.to_string()), &["config"]);
        assert_eq!(
            args(&["x", "-a=1", "--b", "2", "-"]).unwrap(),
            ["x", "--a=1", "--b", "2", "-"]
        );
        let err = args(&["x", "-config=x.cfg"]).unwrap_err();
        assert!(err.contains("--config"), "{err}");
        assert!(args(&["x", "--config", "y"]).is_err());
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
