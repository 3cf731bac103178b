//! Asking nsqlookupd over HTTP(S), for the consumer (`/lookup`) and the producer pool
//! (`/nodes`).
//!
//! An address is `host:port` (plain HTTP) or an `http://` / `https://` URL. A URL's path is
//! kept as given when it has one (a reverse proxy may serve lookupd under its own path);
//! without one, the endpoint's own path is used.

use std::time::Duration;

use nsq_proto::lookup::{decode_response, is_v1_header, join_host_port, Producer, ACCEPT_V1};
use nsq_proto::lookup::{LookupResponse, NodesResponse, V1_HEADER};
use nsq_proto::Topic;
use reqwest::Url;
use serde::de::DeserializeOwned;

use crate::config::ConnectionConfig;
use crate::error::LookupdError;

/// The lookupd endpoint asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `/lookup?topic=`: the nsqd that hold a topic.
    Lookup,
    /// `/nodes`: every nsqd.
    Nodes,
}

impl Endpoint {
    fn path(self) -> &'static str {
        match self {
            Endpoint::Lookup => "/lookup",
            Endpoint::Nodes => "/nodes",
        }
    }
}

/// The URL of `endpoint` at `lookupd`, without its query.
///
/// A URL path other than `/` is kept as given for `/lookup`; for `/nodes`, a path ending in
/// `/lookup` has that last segment replaced by `/nodes` (so one address serves a consumer and
/// a pool), and any other path is kept as given.
pub(crate) fn endpoint_url(lookupd: &str, endpoint: Endpoint) -> Result<Url, LookupdError> {
    let bad = |why| LookupdError::Address {
        url: lookupd.to_owned(),
        why,
    };
    let mut url = if lookupd.contains("://") {
        Url::parse(lookupd).map_err(|_| bad("not a valid URL"))?
    } else {
        Url::parse(&format!("http://{lookupd}")).map_err(|_| bad("not host:port"))?
    };
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    if url.scheme() == "https" && !cfg!(feature = "tls") {
        return Err(bad("https needs nsq-client's `tls` feature"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    if url.port_or_known_default().is_none() {
        return Err(bad("no port"));
    }
    let path = url.path().to_owned();
    let path = if path.is_empty() || path == "/" {
        endpoint.path().to_owned()
    } else if endpoint == Endpoint::Nodes && path.ends_with("/lookup") {
        format!("{}/nodes", path.trim_end_matches("/lookup"))
    } else {
        path
    };
    url.set_path(&path);
    url.set_query(None);
    Ok(url)
}

/// An HTTP client for lookupd: the request timeout, and for `https://` the TLS configuration
/// of the nsqd connections when one is set (so one CA serves both), else the system's roots.
pub(crate) fn http_client(
    timeout: Duration,
    connection: &ConnectionConfig,
) -> Result<reqwest::Client, reqwest::Error> {
    let builder = reqwest::Client::builder().timeout(timeout);
    #[cfg(feature = "tls")]
    let builder = match &connection.tls {
        Some(tls) => builder.use_preconfigured_tls((*tls.config).clone()),
        None => builder,
    };
    #[cfg(not(feature = "tls"))]
    let _ = connection;
    builder.build()
}

/// `GET <url>?<query>` with the v1 `Accept` header, read in either response shape.
/// `Ok(None)` on 404 (for `/lookup`: the topic has no producers yet).
async fn get<T: DeserializeOwned>(
    http: &reqwest::Client,
    mut url: Url,
    query: &[(&str, &str)],
) -> Result<Option<T>, LookupdError> {
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    let shown = url.to_string();
    let request_failed = |source| LookupdError::Request {
        url: shown.clone(),
        source,
    };
    let response = http
        .get(url)
        .header("Accept", ACCEPT_V1)
        .send()
        .await
        .map_err(request_failed)?;
    let status = response.status().as_u16();
    let v1 = response
        .headers()
        .get(V1_HEADER)
        .is_some_and(|v| is_v1_header(v.as_bytes()));
    let body = response.bytes().await.map_err(request_failed)?;
    if status == 404 {
        return Ok(None);
    }
    decode_response(status, v1, &body)
        .map(Some)
        .map_err(|source| LookupdError::Response {
            url: shown.clone(),
            source,
        })
}

/// The nsqd that one lookupd lists for `topic`. A 404 (topic not produced yet) is none,
/// not an error.
pub(crate) async fn lookup(
    http: &reqwest::Client,
    lookupd: &str,
    topic: &Topic,
) -> Result<Vec<Producer>, LookupdError> {
    let url = endpoint_url(lookupd, Endpoint::Lookup)?;
    let answer: Option<LookupResponse> = get(http, url, &[("topic", topic.as_str())]).await?;
    Ok(answer.map(|a| a.producers).unwrap_or_default())
}

/// Every nsqd one lookupd knows.
pub(crate) async fn nodes(
    http: &reqwest::Client,
    lookupd: &str,
) -> Result<Vec<Producer>, LookupdError> {
    let url = endpoint_url(lookupd, Endpoint::Nodes)?;
    let answer: Option<NodesResponse> = get(http, url, &[]).await?;
    Ok(answer
        .map(|a| a.producers.into_iter().map(|n| n.producer).collect())
        .unwrap_or_default())
}

/// The TCP address (`host:port`) consumers and producers connect to for a listed nsqd.
pub(crate) fn tcp_addr(producer: &Producer) -> String {
    join_host_port(&producer.broadcast_address, producer.tcp_port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(lookupd: &str, endpoint: Endpoint) -> String {
        endpoint_url(lookupd, endpoint).unwrap().to_string()
    }

    #[test]
    fn host_port_gets_the_endpoint_path() {
        assert_eq!(
            url("127.0.0.1:4161", Endpoint::Lookup),
            "http://127.0.0.1:4161/lookup"
        );
        assert_eq!(
            url("[::1]:4161", Endpoint::Nodes),
            "http://[::1]:4161/nodes"
        );
    }

    #[test]
    #[cfg(feature = "tls")]
    fn a_url_path_is_kept_as_given() {
        assert_eq!(
            url("https://gw.internal/nsq/lookupd/find", Endpoint::Lookup),
            "https://gw.internal/nsq/lookupd/find"
        );
        assert_eq!(
            url("http://lookupd:4161/", Endpoint::Lookup),
            "http://lookupd:4161/lookup"
        );
        assert_eq!(
            url("http://gw/nsq/lookup", Endpoint::Nodes),
            "http://gw/nsq/nodes"
        );
        assert_eq!(
            url("http://lookupd:4161/lookup?topic=old", Endpoint::Lookup),
            "http://lookupd:4161/lookup"
        );
    }

    #[test]
    #[cfg(not(feature = "tls"))]
    fn https_without_the_tls_feature_is_a_typed_error() {
        assert!(matches!(
            endpoint_url("https://lookupd:4161", Endpoint::Lookup),
            Err(LookupdError::Address { why, .. }) if why.contains("`tls` feature")
        ));
    }

    #[test]
    fn bad_addresses_are_typed_errors() {
        for bad in ["ftp://h:21/", "http://:4161", "::::", ""] {
            assert!(
                matches!(
                    endpoint_url(bad, Endpoint::Lookup),
                    Err(LookupdError::Address { .. })
                ),
                "{bad:?}"
            );
        }
    }
}
