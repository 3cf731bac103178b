//! Asking nsqlookupd over HTTP, for the consumer (`/lookup`) and the producer pool (`/nodes`).

use nsq_proto::lookup::{
    decode_response, is_v1_header, join_host_port, Producer, ACCEPT_V1, V1_HEADER,
};
use serde::de::DeserializeOwned;

/// `GET <lookupd>/<path>?<query>` with the v1 `Accept` header, read in either response shape.
/// `lookupd` is `host:port` or a URL. `Ok(None)` on 404 (for `/lookup`: the topic has no
/// producers yet).
pub(crate) async fn get<T: DeserializeOwned>(
    http: &reqwest::Client,
    lookupd: &str,
    path: &str,
    query: &[(&str, &str)],
) -> Result<Option<T>, String> {
    let base = if lookupd.contains("://") {
        lookupd.trim_end_matches('/').to_owned()
    } else {
        format!("http://{lookupd}")
    };
    let url = format!("{base}/{path}");
    let response = http
        .get(&url)
        .query(query)
        .header("Accept", ACCEPT_V1)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = response.status().as_u16();
    let v1 = response
        .headers()
        .get(V1_HEADER)
        .is_some_and(|v| is_v1_header(v.as_bytes()));
    let body = response.bytes().await.map_err(|e| format!("{url}: {e}"))?;
    if status == 404 {
        return Ok(None);
    }
    decode_response(status, v1, &body)
        .map(Some)
        .map_err(|e| format!("{url}: {e}"))
}

/// The TCP address (`host:port`) consumers and producers connect to for a listed nsqd.
pub(crate) fn tcp_addr(producer: &Producer) -> String {
    join_host_port(&producer.broadcast_address, producer.tcp_port)
}
