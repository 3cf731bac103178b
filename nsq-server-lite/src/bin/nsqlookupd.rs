//! An nsqlookupd-compatible server: `cargo run -p nsq-server-lite --bin nsqlookupd`.
//!
//! Takes nsqlookupd's flags in Go's syntax (`-flag=value`, `--flag=value`,
//! `--flag value`), prints "TCP: listening on ..." and "HTTP: listening on ..." on
//! stderr as nsqlookupd does, and stops gracefully on Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use nsq_server_lite::cli::{
    announce_and_wait, go_flag_syntax, init_logging, parse_go_duration, parse_log_level, LackedFlag,
};
use nsq_server_lite::lookupd::{Lookupd, VERSION};

/// nsqlookupd 1.3.0's flags this server does not have: ignored with a warning, or refused
/// where ignoring them would change what a client sees.
const LACKED: &[LackedFlag] = &[
    LackedFlag::refused(
        "config",
        "its settings would be lost without a word; give them as flags",
    ),
    LackedFlag::ignored("log-prefix", "log lines carry no prefix"),
];

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

#[tokio::main]
async fn main() -> ExitCode {
    let (args, warning) = match go_flag_syntax(std::env::args(), LACKED) {
        Ok(line) => (Args::parse_from(&line.args), line.warning()),
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
    init_logging(args.log_level);
    if let Some(warning) = warning {
        tracing::warn!("{warning}");
    }
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
    announce_and_wait(lookupd.tcp_addr(), lookupd.http_addr()).await;
    lookupd.shutdown().await;
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_flag_forms_and_unsupported_flags() {
        let args = |list: &[&str]| {
            go_flag_syntax(list.iter().map(|s| s.to_string()), LACKED).map(|line| line.args)
        };
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
        assert_eq!(
            args(&["nsqlookupd", "--log-prefix", "x"]).unwrap(),
            ["nsqlookupd"]
        );
        assert!(Args::try_parse_from(args(&["nsqlookupd", "--https-address=x"]).unwrap()).is_err());
    }
}
