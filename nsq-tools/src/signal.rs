//! Stopping on SIGINT and SIGTERM (Ctrl-C included) as nsq's tools do, gracefully; a second
//! signal while the tool stops ends it at once (exit code 130). SIGHUP, for `nsq_to_file`'s
//! "close and reopen the files", is [`Hangups`].

use std::io;

#[cfg(unix)]
use tokio::signal::unix::{signal, Signal, SignalKind};

/// SIGINT and SIGTERM, listened for from creation on (so a signal that comes while the tool
/// starts up is not missed).
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() -> std::io::Result<()> {
/// let mut shutdown = nsq_tools::signal::Shutdown::new()?;
/// let name = shutdown.recv().await;
/// tracing::info!("{name}: stopping");
/// shutdown.force_exit_on_next();
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Shutdown {
    #[cfg(unix)]
    interrupt: Signal,
    #[cfg(unix)]
    terminate: Signal,
}

impl Shutdown {
    /// Starts listening. Needs a tokio runtime with signals (and I/O) enabled.
    ///
    /// # Errors
    ///
    /// When the handlers cannot be installed.
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            #[cfg(unix)]
            interrupt: signal(SignalKind::interrupt())?,
            #[cfg(unix)]
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for the next SIGINT or SIGTERM and returns its name.
    pub async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => "SIGINT",
                _ = self.terminate.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }

    /// From now on, the next SIGINT or SIGTERM ends the process at once with exit code 130
    /// (for a user who does not want to wait for a graceful stop).
    pub fn force_exit_on_next(mut self) {
        tokio::spawn(async move {
            let name = self.recv().await;
            eprintln!("{name} again: exiting without waiting");
            std::process::exit(130);
        });
    }
}

/// SIGHUP, listened for from creation on.
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() -> std::io::Result<()> {
/// let mut hangups = nsq_tools::signal::Hangups::new()?;
/// hangups.recv().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Hangups {
    #[cfg(unix)]
    hangup: Signal,
}

impl Hangups {
    /// Starts listening for SIGHUP.
    ///
    /// # Errors
    ///
    /// When the handler cannot be installed.
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            #[cfg(unix)]
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for the next SIGHUP (never returns where there is none).
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        {
            self.hangup.recv().await;
        }
        #[cfg(not(unix))]
        {
            std::future::pending::<()>().await;
        }
    }
}
