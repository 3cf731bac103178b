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

/// The body of message `seq` of a kill scenario: its number, zero-padded to ten digits, then
/// dots up to `len` bytes, so that a consumer can tell which message it got.
///
/// ```
/// let body = nsq_tests::cluster::numbered_body(42, 16);
/// assert_eq!(body, b"0000000042......");
/// assert_eq!(nsq_tests::cluster::number_of(&body), Some(42));
/// ```
pub fn numbered_body(seq: usize, len: usize) -> Vec<u8> {
    let mut body = format!("{seq:010}").into_bytes();
    body.resize(len, b'.');
    body
}

/// The number of a [`numbered_body`], or `None` for another body.
pub fn number_of(body: &[u8]) -> Option<usize> {
    std::str::from_utf8(body.get(..10)?).ok()?.parse().ok()
}
