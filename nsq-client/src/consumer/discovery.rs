//! Finding the nsqd of a topic through nsqlookupd: one query to every lookupd, together,
//! off the supervisor's loop (a slow lookupd delays discovery, never RDY or answers).

use std::collections::BTreeSet;
use std::sync::Arc;

use nsq_proto::lookup::Producer as ListedNsqd;
#[cfg(feature = "lookupd")]
use nsq_proto::Topic;

use crate::error::LookupdError;

/// Maps a listed nsqd to the address to connect to, or `None` to leave it out.
type FilterFn = dyn Fn(&ListedNsqd) -> Option<String> + Send + Sync;

/// The user's discovery hook.
#[derive(Clone)]
#[cfg_attr(not(feature = "lookupd"), allow(dead_code))]
pub(crate) struct DiscoveryFilter(pub(crate) Arc<FilterFn>);

impl std::fmt::Debug for DiscoveryFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DiscoveryFilter")
    }
}

/// What one round of queries found.
#[derive(Debug, Default)]
pub(crate) struct Discovery {
    /// The addresses to connect to, from every lookupd that answered.
    pub(crate) listed: BTreeSet<String>,
    /// Whether at least one lookupd answered.
    pub(crate) answered: bool,
    /// The lookupd that failed, and why.
    pub(crate) failures: Vec<(String, LookupdError)>,
}

/// Asks every lookupd in `lookupds` for `topic`'s nsqd, all at once.
#[cfg(feature = "lookupd")]
pub(crate) async fn discover(
    http: reqwest::Client,
    lookupds: Vec<String>,
    topic: Topic,
    filter: Option<DiscoveryFilter>,
) -> Discovery {
    let queries = lookupds.iter().map(|lookupd| {
        let (http, topic) = (&http, &topic);
        async move { (lookupd, crate::lookupd::lookup(http, lookupd, topic).await) }
    });
    let mut found = Discovery::default();
    for (lookupd, answer) in futures::future::join_all(queries).await {
        match answer {
            Ok(producers) => {
                found.answered = true;
                found.listed.extend(
                    producers
                        .iter()
                        .filter_map(|p| address_of(p, filter.as_ref())),
                );
            }
            Err(err) => found.failures.push((lookupd.clone(), err)),
        }
    }
    found
}

/// The address to connect to for a listed nsqd.
#[cfg(feature = "lookupd")]
fn address_of(producer: &ListedNsqd, filter: Option<&DiscoveryFilter>) -> Option<String> {
    match filter {
        Some(DiscoveryFilter(filter)) => filter(producer),
        None => Some(crate::lookupd::tcp_addr(producer)),
    }
}

#[cfg(all(test, feature = "lookupd"))]
mod tests {
    use super::*;

    fn listed(host: &str, port: u16) -> ListedNsqd {
        serde_json::from_value(serde_json::json!({
            "remote_address": "10.0.0.1:5000",
            "hostname": host,
            "broadcast_address": host,
            "tcp_port": port,
            "http_port": 4151,
            "version": "1.3.0",
        }))
        .unwrap()
    }

    #[test]
    fn the_filter_rewrites_or_drops_listed_nsqd() {
        let filter = DiscoveryFilter(Arc::new(|p: &ListedNsqd| {
            (p.hostname != "skip").then(|| format!("127.0.0.1:{}", p.tcp_port))
        }));
        assert_eq!(
            address_of(&listed("nsqd-1", 4150), None).as_deref(),
            Some("nsqd-1:4150")
        );
        assert_eq!(
            address_of(&listed("nsqd-1", 14150), Some(&filter)).as_deref(),
            Some("127.0.0.1:14150")
        );
        assert_eq!(address_of(&listed("skip", 4150), Some(&filter)), None);
    }
}
