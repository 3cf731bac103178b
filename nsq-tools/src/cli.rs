//! What every tool's `main` does: Go's flag spelling, clap, logging, a tokio runtime, and the
//! exit code (0 done, 1 failed, 2 a usage error, as Go's `flag` package).

use std::future::Future;
use std::process::ExitCode;

use crate::logging::{self, LogSettings};

/// The exit code of a usage error (a bad flag or option), as Go's `flag` package and clap.
pub const EXIT_USAGE: u8 = 2;
/// The exit code of a failure at run time.
pub const EXIT_FAILURE: u8 = 1;

/// A tool's failure, and whether it was the user's command line.
///
/// ```
/// #[derive(Debug, thiserror::Error)]
/// #[error("--topic required")]
/// struct NoTopic;
/// impl nsq_tools::cli::Failure for NoTopic {
///     fn is_usage(&self) -> bool { true }
/// }
/// ```
pub trait Failure: std::error::Error {
    /// Whether the command line was wrong (exit code 2) rather than the run (exit code 1).
    fn is_usage(&self) -> bool;
}

/// One of the command-line tools: its flags (clap) and what it does with them.
///
/// ```no_run
/// use clap::Parser;
/// use nsq_tools::cli::{Failure, Tool};
///
/// #[derive(Parser)]
/// struct Hello {
///     #[arg(long)]
///     name: String,
/// }
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("never")]
/// struct Never;
/// impl Failure for Never {
///     fn is_usage(&self) -> bool { false }
/// }
///
/// impl Tool for Hello {
///     const NAME: &'static str = "hello";
///     type Error = Never;
///     async fn run(self) -> Result<(), Never> {
///         tracing::info!("hello {}", self.name);
///         Ok(())
///     }
/// }
///
/// fn main() -> std::process::ExitCode {
///     nsq_tools::cli::main::<Hello>()
/// }
/// ```
pub trait Tool: clap::Parser + Send + 'static {
    /// The tool's name, as nsq's (`nsq_tail`, ...).
    const NAME: &'static str;
    /// How it fails.
    type Error: Failure + Send;

    /// How it logs (default: `info`, no prefix).
    ///
    /// # Errors
    ///
    /// A message, when the flags that say so are wrong.
    fn logging(&self) -> Result<LogSettings, String> {
        Ok(LogSettings::default())
    }

    /// Runs the tool with its flags.
    fn run(self) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// Parses the command line of `T` (Go's one-dash spelling included), sets up logging, runs
/// the tool on a tokio runtime, and returns its exit code.
///
/// The process exits from here rather than returning when a thread may still block on stdin,
/// so that the tool ends when its work does.
pub fn main<T: Tool>() -> ExitCode {
    let argv = crate::args::normalise(std::env::args_os(), &T::command());
    let args = match T::try_parse_from(argv) {
        Ok(args) => args,
        Err(e) => e.exit(),
    };
    let settings = match args.logging() {
        Ok(settings) => settings,
        Err(why) => {
            eprintln!("{}: {why}", T::NAME);
            return ExitCode::from(EXIT_USAGE);
        }
    };
    logging::init(&settings);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{}: cannot start the runtime: {e}", T::NAME);
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let code = match runtime.block_on(args.run()) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e}");
            if e.is_usage() {
                EXIT_USAGE
            } else {
                EXIT_FAILURE
            }
        }
    };
    runtime.shutdown_background();
    std::process::exit(i32::from(code))
}
