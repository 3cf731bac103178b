//! Several brokers behind one lookupd, for the scenarios that kill one of them: started,
//! each with the test's channel, and listed by the lookupd before the scenario begins.

use std::time::Duration;

use crate::broker::{Broker, BrokerKind, BrokerOpts, Lookupd};
use crate::{eventually, http};

/// A lookupd and the brokers registered with it.
#[derive(Debug)]
pub struct Cluster {
    /// The lookupd every broker registers with.
    pub lookupd: Lookupd,
    /// The brokers, in start order.
    pub brokers: Vec<Broker>,
}

impl Cluster {
    /// Starts a lookupd and `n` brokers of `kind` (node `i` with `opts(i)`, its lookupd
    /// address filled in), creates `topic`/`channel` on each, and waits until the lookupd
    /// lists all of them for `topic`. `None` when a peer is missing outside CI.
    ///
    /// # Panics
    ///
    /// When a broker cannot start, or the lookupd does not list them within `wait`.
    pub async fn start(
        kind: BrokerKind,
        n: usize,
        topic: &str,
        channel: &str,
        opts: impl Fn(usize) -> BrokerOpts,
        wait: Duration,
    ) -> Option<Self> {
        if !kind.available() {
            return None;
        }
        let lookupd = Lookupd::start(kind).await?;
        let mut brokers = Vec::new();
        for node in 0..n {
            let opts = BrokerOpts {
                lookupd_tcp: vec![lookupd.tcp_addr()],
                ..opts(node)
            };
            let b = Broker::start(kind, &opts).await.expect("broker");
            b.create_channel(topic, channel).await.expect("channel");
            brokers.push(b);
        }
        let what = format!("{}: {n} nsqd listed", kind.name());
        eventually(&what, wait, || async {
            let answer = http::json(
                lookupd.http_addr(),
                "GET",
                &format!("/lookup?topic={topic}"),
            )
            .await?;
            match answer["producers"].as_array().map_or(0, Vec::len) {
                listed if listed == n => Ok(()),
                listed => Err(format!("{listed} listed: {answer}")),
            }
        })
        .await;
        Some(Self { lookupd, brokers })
    }
}
