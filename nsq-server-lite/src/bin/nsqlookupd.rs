//! An nsqlookupd-compatible server: `cargo run -p nsq-server-lite --bin nsqlookupd`.
//!
//! Takes nsqlookupd's flags in Go's syntax (`-flag=value`, `--flag=value`,
//! `--flag value`), prints "TCP: listening on ..." and "HTTP: listening on ..." on
//! stderr as nsqlookupd does, and stops gracefully on Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use nsq_server_lite::lookupd::{Lookupd, VERSION};

/// nsqlookupd flags this server does not have; refused rather than ignored.
const UNSUPPORTED: [&str; 2] = ["config", "log-prefix"];

/// The flags, named as nsqlookupd names them.
#[derive(Debug, Parser)]
#[command(name = "nsqlookupd", disable_version_flag = true)]
struct Args {
    /// ADDR:PORT to listen on for TCP clients
    #[arg(long, default_value = "0.0.0.0:4160")]
    tcp_address: SocketAddr,
    /// ADDR:PORT to listen on for HTTP clients
    #[arg(long, default_value = "0.0.0.0:4161")]
    http_address: SocketAddr,
    /// address of this lookupd node (default: the OS hostname)
    #[arg(long)]
    broadcast_address: Option<String>,
    /// how long a producer stays active since its last ping (Go duration, e.g. 5m0s)
    #[arg(long, default_value = "5m0s", value_parser = parse_go_duration)]
    inactive_producer_timeout: Duration,
    /// how long a producer stays tombstoned (Go duration)
    #[arg(long, default_value = "45s", value_parser = parse_go_duration)]
    tombstone_lifetime: Duration,
    /// log verbosity: debug, info, warn, error, or fatal
    #[arg(long, default_value = "info", value_parser = parse_log_level)]
    log_level: tracing::Level,
    /// Deprecated: has no effect, use --log-level
    #[arg(long)]
    verbose: bool,
    /// print version string
    #[arg(long)]
    version: bool,
}

/// Go's `flag` accepts one or two dashes; clap wants two for long names.
fn go_flag_syntax(args: impl Iterator<Item = String>) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for arg in args {
        let arg = match arg.strip_prefix('-') {
            Some(rest) if !rest.starts_with('-') && rest.len() > 1 => format!("--{rest}"),
            _ => arg,
        };
        if let Some(name) = arg.strip_prefix("--") {
            let name = name.split('=').next().unwrap_or_default();
            if UNSUPPORTED.contains(&name) {
                return Err(format!(
                    "flag --{name} of nsqlookupd is not supported by this server"
                ));
            }
        }
        out.push(arg);
    }
    Ok(out)
}

/// Go's `time.ParseDuration` for the units nsqlookupd's flags use.
fn parse_go_duration(text: &str) -> Result<Duration, String> {
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

fn parse_log_level(text: &str) -> Result<tracing::Level, String> {
    match text.to_ascii_lowercase().as_str() {
        "debug" => Ok(tracing::Level::DEBUG),
        "info" => Ok(tracing::Level::INFO),
        "warn" => Ok(tracing::Level::WARN),
        "error" | "fatal" => Ok(tracing::Level::ERROR),
        _ => Err(format!("invalid log level {text:?}")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match go_flag_syntax(std::env::args()) {
        Ok(args) => Args::parse_from(args),
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    if args.version {
        #[allow(clippy::print_stdout)]
        {
            println!(
                "nsqlookupd v{VERSION} (nsq-server-lite {})",
                env!("CARGO_PKG_VERSION")
            );
        }
        return ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(args.log_level)
        .with_target(false)
        .with_ansi(false)
        .init();
    let mut builder = Lookupd::builder()
        .tcp_address(args.tcp_address)
        .http_address(args.http_address)
        .inactive_producer_timeout(args.inactive_producer_timeout)
        .tombstone_lifetime(args.tombstone_lifetime);
    if let Some(broadcast) = args.broadcast_address {
        builder = builder.broadcast_address(broadcast);
    }
    let lookupd = match builder.start().await {
        Ok(lookupd) => lookupd,
        Err(err) => {
            eprintln!(
                "FATAL: {err}: {}",
                std::error::Error::source(&err)
                    .map(ToString::to_string)
                    .unwrap_or_default()
            );
            return ExitCode::FAILURE;
        }
    };
    // Printed whatever the log level, for scripts that wait on them.
    eprintln!("TCP: listening on {}", lookupd.tcp_addr());
    eprintln!("HTTP: listening on {}", lookupd.http_addr());
    wait_for_signal().await;
    lookupd.shutdown().await;
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
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
        let args = |list: &[&str]| go_flag_syntax(list.iter().map(|s| s.to_string()));
        let parsed = Args::parse_from(
            args(&[
                "nsqlookupd",
                "-tcp-address=127.0.0.1:1",
                "--http-address",
                "127.0.0.1:2",
                "-tombstone-lifetime=1m30s",
            ])
            .unwrap(),
        );
        assert_eq!(parsed.tcp_address.port(), 1);
        assert_eq!(parsed.http_address.port(), 2);
        assert_eq!(parsed.tombstone_lifetime, Duration::from_secs(90));
        assert_eq!(parsed.inactive_producer_timeout, Duration::from_secs(300));
        let err = args(&["nsqlookupd", "-config=x.cfg"]).unwrap_err();
        assert!(err.contains("--config"), "{err}");
        assert!(args(&["nsqlookupd", "--log-prefix", "x"]).is_err());
        assert!(Args::try_parse_from(args(&["nsqlookupd", "--https-address=x"]).unwrap()).is_err());
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("5m0s"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_go_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert!(parse_go_duration("5").is_err());
        assert!(parse_go_duration("5x").is_err());
        assert!(parse_go_duration("").is_err());
    }
}
