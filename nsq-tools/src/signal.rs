//! Stopping on SIGINT and SIGTERM (Ctrl-C included) as nsq's tools do, gracefully; a second
//! signal while the tool stops ends it at once (exit code 130). SIGHUP, for `nsq_to_file`'s
//! "close and reopen the files", is [`Hangups`].

use std::io;

use tokio::sync::watch;

#[cfg(unix)]
use tokio::signal::unix::{signal, Signal, SignalKind};

/// SIGINT and SIGTERM, listened for from creation on (so a signal that comes while the tool
/// starts up is not missed). The first asks the tool to stop; a second one, while it stops,
/// ends the process at once with exit code 130.
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() -> std::io::Result<()> {
/// let mut shutdown = nsq_tools::signal::Shutdown::new()?;
/// let name = shutdown.recv().await;
/// tracing::info!("{name}: stopping");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Shutdown {
    requested: watch::Receiver<Option<&'static str>>,
}

impl Shutdown {
    /// Starts listening, on a task of its own. Needs a tokio runtime with signals (and I/O)
    /// enabled.
    ///
    /// # Errors
    ///
    /// When the handlers cannot be installed.
    pub fn new() -> io::Result<Self> {
        let (tx, requested) = watch::channel(None);
        #[cfg(unix)]
        let (mut interrupt, mut terminate) = (
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        );
        tokio::spawn(async move {
            loop {
                #[cfg(unix)]
                let name = tokio::select! {
                    _ = interrupt.recv() => "SIGINT",
                    _ = terminate.recv() => "SIGTERM",
                };
                #[cfg(not(unix))]
                let name = {
                    let _ = tokio::signal::ctrl_c().await;
                    "Ctrl-C"
                };
                if tx.borrow().is_some() {
                    eprintln!("{name} again: exiting without waiting");
                    std::process::exit(130);
                }
                let _ = tx.send(Some(name));
            }
        });
        Ok(Self { requested })
    }

    /// Waits for the first SIGINT or SIGTERM and returns its name (at once when it came
    /// already).
    pub async fn recv(&mut self) -> &'static str {
        let name = self
            .requested
            .wait_for(Option::is_some)
            .await
            .map(|name| name.unwrap_or("signal"));
        match name {
            Ok(name) => name,
            // The listener is gone (the runtime is shutting down): never.
            Err(_) => std::future::pending().await,
        }
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
