//! What the consuming tools share: where the messages come from (`--nsqd-tcp-address` or
//! `--lookupd-http-address`, not both, as nsq's tools), and the start-up check that nsq's tools
//! make when given nsqd directly (go-nsq's `ConnectToNSQDs` fails when an nsqd cannot be
//! reached; nsqlookupd, by contrast, is only polled).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use nsq_client::{
    Channel, ConfigError, ConnectError, ConnectedError, Consumer, ConsumerConfig, ConsumerEvent,
    Topic,
};

/// How long the start-up check waits for a subscription to a given nsqd.
const CONNECT_WITHIN: Duration = Duration::from_secs(10);

/// The nsqd and nsqlookupd a consuming tool was given.
///
/// ```
/// let sources = nsq_tools::consume::Sources::new(vec!["127.0.0.1:4150".into()], vec![])?;
/// # let _ = sources;
/// # Ok::<(), &'static str>(())
/// ```
#[derive(Debug, Clone)]
pub struct Sources {
    nsqd: Vec<String>,
    lookupd: Vec<String>,
}

impl Sources {
    /// Checks nsq's rule: nsqd addresses or lookupd addresses, one kind, at least one.
    ///
    /// # Errors
    ///
    /// nsq's message for the rule broken.
    pub fn new(nsqd: Vec<String>, lookupd: Vec<String>) -> Result<Self, &'static str> {
        match (nsqd.is_empty(), lookupd.is_empty()) {
            (true, true) => Err("--nsqd-tcp-address or --lookupd-http-address required"),
            (false, false) => Err("use --nsqd-tcp-address or --lookupd-http-address not both"),
            _ => Ok(Self { nsqd, lookupd }),
        }
    }

    /// The lookupd addresses (empty when nsqd were given).
    pub fn lookupd(&self) -> &[String] {
        &self.lookupd
    }

    /// A consumer of `topic`/`channel` from these sources.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the client refuses the configuration.
    pub fn consumer(
        &self,
        topic: Topic,
        channel: Channel,
        config: ConsumerConfig,
    ) -> Result<Consumer, ConfigError> {
        let mut builder = Consumer::builder(topic, channel).config(config);
        for addr in &self.nsqd {
            builder = builder.nsqd(addr.clone());
        }
        for addr in &self.lookupd {
            builder = builder.lookupd(addr.clone());
        }
        builder.build()
    }

    /// With nsqd given directly: waits until the consumer subscribed to each, and fails at
    /// the first refusal, as go-nsq's `ConnectToNSQDs`. With lookupd: returns at once.
    ///
    /// # Errors
    ///
    /// [`StartError`] when an nsqd refused or none could be subscribed in time.
    pub async fn check(&self, consumer: &Consumer) -> Result<(), StartError> {
        if self.nsqd.is_empty() {
            return Ok(());
        }
        let mut waiting: HashSet<&str> = self.nsqd.iter().map(String::as_str).collect();
        let mut events = consumer.events();
        // Starts the consumer; `Ok` once one nsqd is subscribed.
        let first = consumer.connected(CONNECT_WITHIN);
        tokio::pin!(first);
        let mut one_subscribed = false;
        let deadline = tokio::time::sleep(CONNECT_WITHIN);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(ConsumerEvent::Connected { nsqd }) => {
                        waiting.remove(nsqd.as_str());
                        if waiting.is_empty() {
                            return Ok(());
                        }
                    }
                    Some(ConsumerEvent::ConnectFailed { nsqd, error }) => {
                        return Err(StartError::Refused { nsqd, error });
                    }
                    Some(_) => {}
                    None => return Err(StartError::NotConnected(ConnectedError::Stopped)),
                },
                result = &mut first, if !one_subscribed => match result {
                    Ok(()) => one_subscribed = true,
                    Err(e) => return Err(StartError::NotConnected(e)),
                },
                () = &mut deadline => {
                    // Subscribed somewhere, if under other names than those given.
                    return if one_subscribed {
                        Ok(())
                    } else {
                        Err(StartError::NotConnected(ConnectedError::Timeout { after: CONNECT_WITHIN, last: None }))
                    };
                }
            }
        }
    }
}

/// Why a consumer given nsqd directly did not start.
///
/// ```
/// # fn show(e: &nsq_tools::consume::StartError) { eprintln!("{e}"); }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// An nsqd could not be connected to or subscribed at.
    #[error("{error}")]
    Refused {
        /// The nsqd.
        nsqd: String,
        /// Why.
        error: Arc<ConnectError>,
    },
    /// No subscription came about.
    #[error(transparent)]
    NotConnected(ConnectedError),
}

/// Takes what else the stream holds right now, up to `max` messages, without waiting; `None`
/// in the second place when the stream ended.
pub(crate) fn ready<S>(stream: &mut S, max: usize) -> (Vec<S::Item>, bool)
where
    S: futures::Stream + Unpin,
{
    use futures::FutureExt;
    let mut batch = Vec::new();
    while batch.len() < max {
        match stream.next().now_or_never() {
            Some(Some(item)) => batch.push(item),
            Some(None) => return (batch, true),
            None => break,
        }
    }
    (batch, false)
}
