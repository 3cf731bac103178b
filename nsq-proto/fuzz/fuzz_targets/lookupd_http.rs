//! nsqlookupd's HTTP API on arbitrary bytes, both ends: the answers a client reads
//! (`nsq_proto::lookup::http`, what nsq-client's discovery and producer pool decode) and the
//! query strings the lookupd (and nsqd) of nsq-server-lite parse.
//!
//! The first byte is flags: bit 0 says whether the answer carried `X-NSQ-Content-Type:
//! nsq; version=1.0`; bits 1-7 pick the status (0 is 200, the rest a status from a short
//! list). The rest is the body, and, as a string, the query. Checks:
//!
//! * no panic;
//! * allocation stays linear in the input: decoding the body as each answer type, or
//!   parsing the query, never holds more than [`ALLOC_PER_BYTE`] bytes per input byte
//!   plus [`ALLOC_BASE`] at once (whatever lengths or counts the input claims);
//! * a non-200 status always gives `ApiError::Status` with that status, and
//!   `is_topic_not_found` exactly when the message is `TOPIC_NOT_FOUND`;
//! * every answer decoded, written again with serde_json, decodes to itself;
//! * `parse_query` agrees with a model of Go's `url.ParseQuery` written here from Go's
//!   rules (pairs split on `&`, a `;` anywhere refuses the query, `%` must be followed by
//!   two hex digits, `+` is a space), which is what nsqlookupd runs.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nsq_proto::lookup::http::TOPIC_NOT_FOUND;
use nsq_proto::lookup::{
    decode_response, ApiError, ChannelsResponse, ErrorBody, InfoResponse, LookupResponse,
    NodesResponse, TopicsResponse,
};
use nsq_proto_fuzz::alloc::{peak_during, Counting};
use nsq_server_lite::lookupd::parse_query;
use serde::de::DeserializeOwned;
use serde::Serialize;

#[global_allocator]
static ALLOC: Counting = Counting;

/// Heap allowed per input byte: a JSON value of a few bytes may become a map node or a
/// vector of 32-byte values.
const ALLOC_PER_BYTE: usize = 256;
/// Heap allowed whatever the input.
const ALLOC_BASE: usize = 64 * 1024;

/// Statuses other than 200 that lookupd answers with, and two it does not.
const STATUSES: [u16; 8] = [400, 404, 405, 500, 502, 503, 0, 65535];

fn status_of(flags: u8) -> u16 {
    match flags >> 1 {
        0 => 200,
        n => STATUSES[usize::from(n) % STATUSES.len()],
    }
}

fn check_alloc(what: &str, peak: usize, input: &[u8]) {
    let bound = ALLOC_BASE + ALLOC_PER_BYTE * input.len();
    assert!(
        peak <= bound,
        "{what}: {peak} bytes of heap at once for {} input bytes (bound {bound})",
        input.len()
    );
}

/// Decodes `body` as a `T` answer and checks what came out.
fn answer<T>(name: &str, status: u16, v1: bool, body: &[u8])
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let (decoded, peak) = peak_during(|| decode_response::<T>(status, v1, body));
    check_alloc(name, peak, body);
    match decoded {
        Ok(value) => {
            assert_eq!(status, 200, "{name}: a {status} decoded as an answer");
            let json = serde_json::to_vec(&value).expect("an answer serialises");
            let again = decode_response::<T>(200, true, &json).unwrap_or_else(|e| {
                panic!("{name}: {value:?} written as {json:?} reads back as {e}")
            });
            assert_eq!(again, value, "{name}: written again as {json:?}");
        }
        Err(ApiError::Status { status: got, body }) => {
            if status != 200 {
                assert_eq!(got, status, "{name}: the status changed");
            }
            assert_eq!(body.is_topic_not_found(), body.message == TOPIC_NOT_FOUND);
        }
        Err(err) => assert_eq!(status, 200, "{name}: a {status} failed as {err}"),
    }
}

/// Go's `url.QueryUnescape`, from its rules: `%` and two hex digits is a byte, `+` a space.
/// Rust strings are UTF-8, so invalid bytes become U+FFFD, as `parse_query` documents.
fn go_unescape(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let (hi, lo) = (*bytes.get(i + 1)?, *bytes.get(i + 2)?);
                let digit = |c: u8| char::from(c).to_digit(16);
                out.push((digit(hi)? * 16 + digit(lo)?) as u8);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Go's `url.ParseQuery`, from its rules; `None` when it returns an error (nsqlookupd then
/// answers `INVALID_REQUEST`).
fn go_parse_query(query: &str) -> Option<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    let mut failed = false;
    for piece in query.split('&') {
        if piece.contains(';') {
            failed = true;
            continue;
        }
        if piece.is_empty() {
            continue;
        }
        let (key, value) = piece.split_once('=').unwrap_or((piece, ""));
        match (go_unescape(key), go_unescape(value)) {
            (Some(key), Some(value)) => pairs.push((key, value)),
            _ => failed = true,
        }
    }
    (!failed).then_some(pairs)
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    let v1 = flags & 1 != 0;
    let status = status_of(flags);
    answer::<LookupResponse>("/lookup", status, v1, body);
    answer::<NodesResponse>("/nodes", status, v1, body);
    answer::<TopicsResponse>("/topics", status, v1, body);
    answer::<ChannelsResponse>("/channels", status, v1, body);
    answer::<InfoResponse>("/info", status, v1, body);
    let (error, peak) = peak_during(|| ErrorBody::parse(body));
    check_alloc("ErrorBody::parse", peak, body);
    assert_eq!(error.is_topic_not_found(), error.message == TOPIC_NOT_FOUND);

    if let Ok(query) = std::str::from_utf8(body) {
        let (parsed, peak) = peak_during(|| parse_query(query));
        check_alloc("parse_query", peak, body);
        assert_eq!(parsed, go_parse_query(query), "query {query:?}");
    }
});
