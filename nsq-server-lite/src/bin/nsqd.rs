//! An nsqd-compatible broker: `cargo run -p nsq-server-lite --bin nsqd -- [nsqd flags]`.
//!
//! Takes nsqd 1.3.0's flags in Go's syntax (`-flag=value`, `--flag=value`, `--flag value`;
//! booleans as `--flag` or `--flag=false`) for every feature it has, refuses the flags of
//! features it lacks (disk queue, statsd, HTTPS, ...) with a message, prints "TCP: listening
//! on ..." and "HTTP: listening on ..." on stderr as nsqd does, and stops on Ctrl-C or SIGTERM.
//! A `--tcp-address` that is a path rather than `ip:port` is a unix socket, as in nsqd 1.3.0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use nsq_server_lite::cli::{
    announce_and_wait, go_flag_syntax, init_logging, parse_go_duration, parse_listen_address,
    parse_log_level, LackedFlag, ListenAddress,
};
use nsq_server_lite::tls::{server_config, ClientAuth};
use nsq_server_lite::{Nsqd, TlsRequired};

/// nsqd 1.3.0's flags whose features this broker does not have. Most are accepted and
/// ignored with a warning (what they configure is invisible to clients); a few are accepted
/// only with nsqd's default, or refused, where ignoring them would change what a client sees.
const LACKED: &[LackedFlag] = &[
    LackedFlag::refused(
        "config",
        "its settings would be lost without a word; give them as flags",
    ),
    LackedFlag::ignored("log-prefix", "log lines carry no prefix"),
    LackedFlag::ignored(
        "node-id",
        "message IDs are unique per broker without a node id",
    ),
    LackedFlag::ignored("worker-id", "deprecated in nsqd too").boolean(),
    LackedFlag::ignored(
        "https-address",
        "no HTTPS listener: the HTTP API is served on --http-address",
    ),
    LackedFlag::only_default(
        "broadcast-tcp-port",
        "0",
        "nsqlookupd is told the TCP port this broker listens on",
    ),
    LackedFlag::only_default(
        "broadcast-http-port",
        "0",
        "nsqlookupd is told the HTTP port this broker listens on",
    ),
    LackedFlag::ignored(
        "http-client-connect-timeout",
        "the auth service is asked with the broker's own timeouts",
    ),
    LackedFlag::ignored(
        "http-client-request-timeout",
        "the auth service is asked with the broker's own timeouts",
    ),
    LackedFlag::ignored("data-path", "no disk queue: messages are kept in memory"),
    LackedFlag::ignored("max-bytes-per-file", "no disk queue"),
    LackedFlag::ignored("sync-every", "no disk queue"),
    LackedFlag::ignored("sync-timeout", "no disk queue"),
    LackedFlag::ignored(
        "queue-scan-interval",
        "in-flight and deferred timeouts are timers, not a periodic scan",
    ),
    LackedFlag::ignored(
        "queue-scan-worker-pool-max",
        "in-flight and deferred timeouts are timers, not a periodic scan",
    ),
    LackedFlag::ignored(
        "queue-scan-selection-count",
        "in-flight and deferred timeouts are timers, not a periodic scan",
    ),
    LackedFlag::ignored(
        "queue-scan-dirty-percent",
        "in-flight and deferred timeouts are timers, not a periodic scan",
    ),
    LackedFlag::only_default(
        "min-output-buffer-timeout",
        "25ms",
        "the lowest output_buffer_timeout a client may ask for is 25ms",
    ),
    LackedFlag::ignored("statsd-address", "no statsd"),
    LackedFlag::ignored("statsd-interval", "no statsd"),
    LackedFlag::ignored("statsd-mem-stats", "no statsd").boolean(),
    LackedFlag::ignored("statsd-prefix", "no statsd"),
    LackedFlag::ignored("statsd-udp-packet-size", "no statsd"),
    LackedFlag::ignored("statsd-exclude-ephemeral", "no statsd").boolean(),
    LackedFlag::ignored(
        "e2e-processing-latency-percentile",
        "/stats reports no end-to-end latency percentiles",
    ),
    LackedFlag::ignored(
        "e2e-processing-latency-window-time",
        "/stats reports no end-to-end latency percentiles",
    ),
    LackedFlag::ignored(
        "tls-min-version",
        "TLS 1.2 is the lowest version offered, and TLS 1.3 is always offered too",
    ),
];

/// nsqd's flags, with nsqd's defaults (except the listening addresses' hosts, see below).
#[derive(Debug, Parser)]
#[command(name = "nsqd", disable_version_flag = true)]
struct Args {
    /// ADDR:PORT, or the path of a unix socket, to listen on for TCP clients
    #[arg(long, default_value = "0.0.0.0:4150", value_parser = parse_listen_address)]
    tcp_address: ListenAddress,
    /// ADDR:PORT to listen on for HTTP clients (a unix socket path is refused here)
    #[arg(long, default_value = "0.0.0.0:4151", value_parser = parse_http_address)]
    http_address: SocketAddr,
    /// address registered with lookupd (default: the OS hostname)
    #[arg(long)]
    broadcast_address: Option<String>,
    /// lookupd TCP address (may be given multiple times)
    #[arg(long)]
    lookupd_tcp_address: Vec<String>,
    /// ADDR:PORT or a full URL of an auth server (may be given multiple times)
    #[arg(long)]
    auth_http_address: Vec<String>,
    /// number of messages to keep in memory per topic and per channel (no disk here:
    /// publishes beyond it are refused)
    #[arg(long, default_value_t = 1_000_000)]
    mem_queue_size: usize,
    /// default duration to wait before auto-requeing a message
    #[arg(long, default_value = "1m0s", value_parser = parse_go_duration)]
    msg_timeout: Duration,
    /// maximum duration before a message will timeout
    #[arg(long, default_value = "15m0s", value_parser = parse_go_duration)]
    max_msg_timeout: Duration,
    /// maximum size of a single message in bytes
    #[arg(long, default_value_t = 1_048_576)]
    max_msg_size: u32,
    /// maximum requeuing timeout for a message
    #[arg(long, default_value = "1h0m0s", value_parser = parse_go_duration)]
    max_req_timeout: Duration,
    /// maximum size of a single command body
    #[arg(long, default_value_t = 5_242_880)]
    max_body_size: u32,
    /// maximum client configurable duration of time between client heartbeats
    #[arg(long, default_value = "1m0s", value_parser = parse_go_duration)]
    max_heartbeat_interval: Duration,
    /// maximum RDY count for a client
    #[arg(long, default_value_t = 2500)]
    max_rdy_count: u32,
    /// maximum client configurable size (in bytes) for a client output buffer
    #[arg(long, default_value_t = 65536)]
    max_output_buffer_size: u32,
    /// maximum client configurable duration of time between flushing to a client
    #[arg(long, default_value = "30s", value_parser = parse_go_duration)]
    max_output_buffer_timeout: Duration,
    /// default duration of time between flushing data to clients
    #[arg(long, default_value = "250ms", value_parser = parse_go_duration)]
    output_buffer_timeout: Duration,
    /// maximum channel consumer connection count per nsqd instance (default 0, i.e., unlimited)
    #[arg(long, default_value_t = 0)]
    max_channel_consumers: usize,
    /// path to certificate file
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// path to key file
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// client certificate auth policy ('require' or 'require-verify')
    #[arg(long)]
    tls_client_auth_policy: Option<String>,
    /// path to certificate authority file
    #[arg(long)]
    tls_root_ca_file: Option<PathBuf>,
    /// require TLS for client connections (true, false, tcp-https)
    #[arg(long, default_value = "false")]
    tls_required: String,
    /// enable deflate feature negotiation (client compression)
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = "true", default_missing_value = "true")]
    deflate: bool,
    /// max deflate compression level a client can negotiate (> values == > nsqd CPU usage)
    #[arg(long, default_value_t = 6)]
    max_deflate_level: u32,
    /// enable snappy feature negotiation (client compression)
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = "true", default_missing_value = "true")]
    snappy: bool,
    /// this nsqd's region, reported to clients and nsqlookupd (nsq after 1.3.0; messages are
    /// not steered by it here)
    #[arg(long, default_value = "")]
    topology_region: String,
    /// this nsqd's zone, reported to clients and nsqlookupd (nsq after 1.3.0; messages are
    /// not steered by it here)
    #[arg(long, default_value = "")]
    topology_zone: String,
    /// log verbosity: debug, info, warn, error, or fatal
    #[arg(long, default_value = "info", value_parser = parse_log_level)]
    log_level: tracing::Level,
    /// (deprecated) has no effect, use --log-level
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    verbose: Option<bool>,
    /// print version string
    #[arg(long)]
    version: bool,
}

/// `--http-address`: nsqd 1.3.0 also takes a unix socket path, this server does not.
fn parse_http_address(text: &str) -> Result<SocketAddr, String> {
    match parse_listen_address(text)? {
        ListenAddress::Tcp(addr) => Ok(addr),
        ListenAddress::Unix(_) => Err(format!(
            "{text:?}: nsq-server-lite serves HTTP on ip:port only (unix sockets: --tcp-address)"
        )),
    }
}

impl Args {
    fn builder(&self) -> Result<nsq_server_lite::NsqdBuilder, String> {
        let mut b = Nsqd::builder().http_address(self.http_address);
        b = match &self.tcp_address {
            ListenAddress::Tcp(addr) => b.tcp_address(*addr),
            #[cfg(unix)]
            ListenAddress::Unix(path) => b.tcp_unix_socket(path.clone()),
            #[cfg(not(unix))]
            ListenAddress::Unix(path) => {
                return Err(format!(
                    "cannot listen on {}: unix sockets need a unix platform",
                    path.display()
                ))
            }
        };
        let mut b = b
            .mem_queue_size(self.mem_queue_size)
            .msg_timeout(self.msg_timeout)
            .max_msg_timeout(self.max_msg_timeout)
            .max_msg_size(self.max_msg_size)
            .max_req_timeout(self.max_req_timeout)
            .max_body_size(self.max_body_size)
            .max_heartbeat_interval(self.max_heartbeat_interval)
            .max_rdy_count(self.max_rdy_count)
            .max_output_buffer_size(self.max_output_buffer_size)
            .max_output_buffer_timeout(self.max_output_buffer_timeout)
            .output_buffer_timeout(self.output_buffer_timeout)
            .max_channel_consumers(self.max_channel_consumers)
            .deflate(self.deflate)
            .max_deflate_level(self.max_deflate_level)
            .snappy(self.snappy)
            .topology_region(self.topology_region.clone())
            .topology_zone(self.topology_zone.clone());
        if let Some(host) = &self.broadcast_address {
            b = b.broadcast_address(host.clone());
        }
        for addr in &self.lookupd_tcp_address {
            b = b.lookupd_tcp_address(addr.clone());
        }
        if !self.auth_http_address.is_empty() {
            b = b.auth_http_addresses(self.auth_http_address.clone());
        }
        let required = match self.tls_required.as_str() {
            "false" | "0" | "f" | "F" | "FALSE" | "False" => TlsRequired::No,
            "true" | "1" | "t" | "T" | "TRUE" | "True" => TlsRequired::Yes,
            "tcp-https" => TlsRequired::TcpOnly,
            other => {
                return Err(format!(
                    "invalid --tls-required {other:?} (true, false, tcp-https)"
                ))
            }
        };
        let client_auth = match self.tls_client_auth_policy.as_deref() {
            None | Some("") => ClientAuth::None,
            Some("require" | "require-verify") => ClientAuth::RequireVerify,
            Some(other) => return Err(format!("invalid --tls-client-auth-policy {other:?}")),
        };
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                let config =
                    server_config(cert, key, self.tls_root_ca_file.as_deref(), client_auth)
                        .map_err(|e| e.to_string())?;
                b = b.tls(config);
            }
            (None, None) => {}
            _ => return Err("--tls-cert and --tls-key must be given together".to_owned()),
        }
        Ok(b.tls_required(required))
    }
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
        #[allow(clippy::print_stdout)] // --version prints to stdout, as nsqd does
        {
            println!(
                "nsqd v{} (nsq-server-lite {})",
                nsq_proto::NSQD_VERSION,
                env!("CARGO_PKG_VERSION")
            );
        }
        return ExitCode::SUCCESS;
    }
    init_logging(args.log_level);
    if let Some(warning) = warning {
        tracing::warn!("{warning}");
    }
    let nsqd = match args.builder() {
        Ok(builder) => builder.start().await.map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    let nsqd = match nsqd {
        Ok(nsqd) => nsqd,
        Err(err) => {
            eprintln!("FATAL: {err}");
            return ExitCode::FAILURE;
        }
    };
    match nsqd.unix_socket_path() {
        Some(path) => announce_and_wait(path.display(), nsqd.http_addr()).await,
        None => announce_and_wait(nsqd.tcp_addr(), nsqd.http_addr()).await,
    }
    nsqd.shutdown().await;
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(list: &[&str]) -> Result<Args, String> {
        let line = go_flag_syntax(list.iter().map(|s| s.to_string()), LACKED)?;
        Args::try_parse_from(line.args).map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn nsqd_flags_in_go_syntax() {
        let args = parse(&[
            "nsqd",
            "-tcp-address=127.0.0.1:0",
            "--http-address",
            "127.0.0.1:0",
            "-lookupd-tcp-address=a:4160",
            "-lookupd-tcp-address=b:4160",
            "-msg-timeout=2s",
            "-max-rdy-count=10",
            "-snappy=false",
            "-deflate",
            "-tls-required=tcp-https",
            "-topology-region=eu",
            "--topology-zone",
            "eu-1b",
        ])
        .unwrap();
        assert_eq!(
            (args.topology_region.as_str(), args.topology_zone.as_str()),
            ("eu", "eu-1b")
        );
        assert_eq!(args.lookupd_tcp_address, ["a:4160", "b:4160"]);
        assert_eq!(args.msg_timeout, Duration::from_secs(2));
        assert_eq!(args.max_rdy_count, 10);
        assert!(!args.snappy);
        assert!(args.deflate);
        // TLS required without TLS files is refused before anything listens.
        let err = args.builder().unwrap().start().await.unwrap_err();
        assert!(err.to_string().contains("TLS"), "{err}");
    }

    #[test]
    fn a_tcp_address_that_is_a_path_is_a_unix_socket() {
        let args = parse(&["nsqd", "-tcp-address=/tmp/nsqd.sock"]).unwrap();
        assert_eq!(
            args.tcp_address,
            ListenAddress::Unix("/tmp/nsqd.sock".into())
        );
        assert!(args.builder().is_ok() == cfg!(unix));
        let args = parse(&["nsqd", "--tcp-address", "127.0.0.1:4150"]).unwrap();
        assert_eq!(
            args.tcp_address,
            ListenAddress::Tcp(([127, 0, 0, 1], 4150).into())
        );
        let err = parse(&["nsqd", "-http-address=/tmp/nsqd-http.sock"])
            .map(|_| ())
            .unwrap_err();
        assert!(err.contains("ip:port only"), "{err}");
        assert!(parse(&["nsqd", "-tcp-address=localhost:4150"]).is_err());
    }

    #[test]
    fn flags_of_missing_features_are_ignored_unless_a_client_would_notice() {
        for flag in [
            "-data-path=/tmp/x",
            "--statsd-address=h:1",
            "-https-address=:1",
            "-min-output-buffer-timeout=25ms",
            "-broadcast-tcp-port=0",
        ] {
            assert!(parse(&["nsqd", flag]).is_ok(), "{flag}");
        }
        for (flag, why) in [
            ("-config=x.cfg", "as flags"),
            ("-min-output-buffer-timeout=10ms", "25ms"),
            ("-broadcast-tcp-port=4150", "listens on"),
        ] {
            let err = parse(&["nsqd", flag]).map(|_| ()).unwrap_err();
            assert!(
                err.contains("not supported") && err.contains(why),
                "{flag}: {err}"
            );
        }
        assert!(parse(&["nsqd", "--no-such-flag=1"]).is_err());
        assert!(parse(&["nsqd", "-tls-required=maybe"])
            .unwrap()
            .builder()
            .is_err());
    }
}
