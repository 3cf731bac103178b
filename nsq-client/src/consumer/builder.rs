//! Building a [`Consumer`]: where to find nsqd, the configuration, and the hooks.

use std::sync::Arc;

#[cfg(feature = "lookupd")]
use nsq_proto::lookup::Producer as ListedNsqd;
use nsq_proto::{Channel, Topic};

use crate::consumer::config::ConsumerConfig;
use crate::consumer::delivery::GiveUp;
use crate::consumer::discovery::DiscoveryFilter;
use crate::consumer::message::Message;
use crate::consumer::Consumer;
use crate::error::ConfigError;
use crate::replication::Dedup;

/// Builds a [`Consumer`].
///
/// ```
/// use nsq_client::{proto::{Channel, Topic}, Consumer};
/// let consumer = Consumer::builder(Topic::new("orders")?, Channel::new("billing")?)
///     .lookupd("127.0.0.1:4161")
///     .build()?;
/// # drop(consumer);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[must_use]
pub struct ConsumerBuilder {
    pub(crate) topic: Topic,
    pub(crate) channel: Channel,
    pub(crate) config: ConsumerConfig,
    pub(crate) nsqd: Vec<String>,
    pub(crate) lookupd: Vec<String>,
    pub(crate) give_up: Option<GiveUp>,
    pub(crate) discovery_filter: Option<DiscoveryFilter>,
    pub(crate) dedup: Option<Dedup>,
}

impl ConsumerBuilder {
    pub(crate) fn new(topic: Topic, channel: Channel) -> Self {
        Self {
            topic,
            channel,
            config: ConsumerConfig::default(),
            nsqd: Vec::new(),
            lookupd: Vec::new(),
            give_up: None,
            discovery_filter: None,
            dedup: None,
        }
    }

    /// Connects to this nsqd directly; may be given several times. `host:port` of its TCP
    /// port, or the path of its unix socket (`/run/nsqd.sock` or `unix:/run/nsqd.sock`, for
    /// an nsqd started with `--tcp-address=/run/nsqd.sock`).
    ///
    /// ```
    /// # use nsq_client::{proto::{Channel, Topic}, Consumer};
    /// let b = Consumer::builder(Topic::new("t")?, Channel::new("c")?)
    ///     .nsqd("10.0.0.1:4150")
    ///     .nsqd("unix:/run/nsqd.sock");
    /// # drop(b);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn nsqd(mut self, addr: impl Into<String>) -> Self {
        self.nsqd.push(addr.into());
        self
    }

    /// Discovers nsqd through this nsqlookupd; may be given several times: the union of their
    /// answers is used. `host:port` of its HTTP port, or an `http://` or `https://` URL; a URL
    /// path is kept as given (`http://gw/nsq/lookup`), `/lookup` is used when there is none.
    /// For `https://`, the connection's TLS configuration is used when one is set, else the
    /// system's trusted roots.
    ///
    /// ```
    /// # use nsq_client::{proto::{Channel, Topic}, Consumer};
    /// let b = Consumer::builder(Topic::new("t")?, Channel::new("c")?)
    ///     .lookupd("10.0.0.9:4161")
    ///     .lookupd("https://lookupd.internal/lookup");
    /// # drop(b);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "lookupd")]
    pub fn lookupd(mut self, addr: impl Into<String>) -> Self {
        self.lookupd.push(addr.into());
        self
    }

    /// The configuration (default [`ConsumerConfig::default`]).
    ///
    /// ```
    /// # use nsq_client::{proto::{Channel, Topic}, Consumer, ConsumerConfig};
    /// let b = Consumer::builder(Topic::new("t")?, Channel::new("c")?)
    ///     .config(ConsumerConfig::default().max_in_flight(50));
    /// # drop(b);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn config(mut self, config: ConsumerConfig) -> Self {
        self.config = config;
        self
    }

    /// Called for each message delivered more than `max_attempts` times, before it is
    /// finished, whether the consumer is read as a stream or runs a handler: the place to
    /// dead-letter it. The message never reaches the stream or the handler.
    ///
    /// ```
    /// # use nsq_client::{proto::{Channel, Topic}, Consumer};
    /// let b = Consumer::builder(Topic::new("t")?, Channel::new("c")?)
    ///     .give_up(|msg| eprintln!("dead letter {} after {} attempts", msg.id(), msg.attempts()));
    /// # drop(b);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn give_up(mut self, hook: impl Fn(&Message) + Send + Sync + 'static) -> Self {
        self.give_up = Some(GiveUp(Arc::new(hook)));
        self
    }

    /// Decides, for each nsqd an nsqlookupd lists, the address to connect to, or `None` to
    /// leave it out. By default the listed `broadcast_address:tcp_port` is used. For nsqd in
    /// containers whose broadcast address cannot be reached from here, rewrite it (go-nsq's
    /// `DiscoveryFilter`).
    ///
    /// ```
    /// # use nsq_client::{proto::{Channel, Topic}, Consumer};
    /// let b = Consumer::builder(Topic::new("t")?, Channel::new("c")?)
    ///     .lookupd("127.0.0.1:4161")
    ///     .discovery_filter(|nsqd| {
    ///         // Reach each nsqd through its published port on the Docker host.
    ///         (nsqd.hostname != "canary").then(|| format!("127.0.0.1:{}", nsqd.tcp_port))
    ///     });
    /// # drop(b);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "lookupd")]
    pub fn discovery_filter(
        mut self,
        filter: impl Fn(&ListedNsqd) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.discovery_filter = Some(DiscoveryFilter(Arc::new(filter)));
        self
    }

    /// De-duplicates the copies of a message that several nsqd deliver (a
    /// [`ReplicatedProducer`](crate::ReplicatedProducer) puts each message on several): the
    /// first copy reaches the stream or the handler; one arriving while it is there is held
    /// until it is answered; one arriving after it was finished is finished without reaching
    /// the user. Stream and handler alike: the connections decide on each copy as it
    /// arrives, before it is queued for the user. See [`Dedup`] for the key and the window's
    /// bounds.
    ///
    /// ```
    /// use nsq_client::{proto::{Channel, Topic}, Consumer, Dedup};
    /// let consumer = Consumer::builder(Topic::new("invoices")?, Channel::new("billing")?)
    ///     .nsqd("10.0.0.1:4150")
    ///     .nsqd("10.0.0.2:4150")
    ///     .deduplicate(Dedup::envelope())
    ///     .build()?;
    /// # drop(consumer);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn deduplicate(mut self, dedup: Dedup) -> Self {
        self.dedup = Some(dedup);
        self
    }

    /// Validates and creates the consumer. Nothing connects until it is first polled (or
    /// [`Consumer::run`] or [`Consumer::connected`] is called); a tokio runtime must be
    /// running then.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when a setting is out of range or no nsqd and no lookupd is given.
    ///
    /// ```
    /// # use nsq_client::{proto::{Channel, Topic}, Consumer};
    /// let err = Consumer::builder(Topic::new("t")?, Channel::new("c")?).build().unwrap_err();
    /// assert!(err.to_string().contains("nsqd"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn build(self) -> Result<Consumer, ConfigError> {
        self.config.validate()?;
        if let Some(dedup) = &self.dedup {
            dedup.validate()?;
        }
        if self.nsqd.is_empty() && self.lookupd.is_empty() {
            return Err(ConfigError::new(
                "a consumer needs at least one nsqd or nsqlookupd address",
            ));
        }
        #[cfg(feature = "lookupd")]
        for lookupd in &self.lookupd {
            crate::lookupd::endpoint_url(lookupd, crate::lookupd::Endpoint::Lookup)
                .map_err(ConfigError::caused_by)?;
        }
        #[cfg(not(feature = "lookupd"))]
        if !self.lookupd.is_empty() {
            return Err(ConfigError::new(
                "nsqlookupd discovery needs nsq-client's `lookupd` feature",
            ));
        }
        Ok(Consumer::from_builder(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookupd_addresses_need_the_lookupd_feature() {
        let result = Consumer::new(
            Topic::new("t").unwrap(),
            Channel::new("c").unwrap(),
            ConsumerConfig::default(),
            vec![],
            vec!["127.0.0.1:4161".into()],
        );
        if cfg!(feature = "lookupd") {
            assert!(result.is_ok());
        } else {
            let Err(err) = result else {
                panic!("lookupd addresses accepted without the feature");
            };
            assert!(err.to_string().contains("`lookupd` feature"), "{err}");
        }
    }
}
