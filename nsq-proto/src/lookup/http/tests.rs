//! Unit tests for the HTTP API types: fixtures built from nsqlookupd 1.3.0's struct tags
//! and handlers (`nsqlookupd/http.go`, `registration_db.go`), in v1 and legacy shapes.

use super::*;

const PRODUCER_1: &str = r#"{"remote_address":"10.0.0.5:51996","hostname":"nsqd-1","broadcast_address":"nsqd-1.example","tcp_port":4150,"http_port":4151,"version":"1.3.0"}"#;
const PRODUCER_2: &str = r#"{"remote_address":"[fd00::6]:40022","hostname":"nsqd-2","broadcast_address":"fd00::6","tcp_port":5150,"http_port":5151,"version":"1.3.0"}"#;

fn lookup_v1() -> String {
    format!(
        r#"{{"channels":["archive","audit#ephemeral"],"producers":[{PRODUCER_1},{PRODUCER_2}]}}"#
    )
}

fn legacy(data: &str) -> String {
    format!(r#"{{"status_code":200,"status_txt":"OK","data":{data}}}"#)
}

fn producer_1() -> Producer {
    Producer {
        remote_address: "10.0.0.5:51996".into(),
        hostname: "nsqd-1".into(),
        broadcast_address: "nsqd-1.example".into(),
        tcp_port: 4150,
        http_port: 4151,
        version: "1.3.0".into(),
        topology_zone: None,
        topology_region: None,
    }
}

fn producer_2() -> Producer {
    Producer {
        remote_address: "[fd00::6]:40022".into(),
        hostname: "nsqd-2".into(),
        broadcast_address: "fd00::6".into(),
        tcp_port: 5150,
        http_port: 5151,
        version: "1.3.0".into(),
        topology_zone: None,
        topology_region: None,
    }
}

fn nodes_v1() -> String {
    let node = PRODUCER_1.replace(
        '}',
        r#","tombstones":[false,true],"topics":["clicks","orders"]}"#,
    );
    format!(r#"{{"producers":[{node}]}}"#)
}

/// Checks that `json` decodes to `want` in the v1 shape (with and without the header)
/// and in the legacy wrapper, and that `want` serialises back to `json` byte for byte.
fn check_fixture<T>(json: &str, want: &T)
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    assert_eq!(&decode_body::<T>(json.as_bytes(), true).unwrap(), want);
    assert_eq!(&decode_body::<T>(json.as_bytes(), false).unwrap(), want);
    assert_eq!(
        &decode_body::<T>(legacy(json).as_bytes(), false).unwrap(),
        want
    );
    assert_eq!(
        &decode_response::<T>(200, true, json.as_bytes()).unwrap(),
        want
    );
    assert_eq!(serde_json::to_string(want).unwrap(), json);
}

#[test]
fn lookup_fixture_roundtrips_byte_exact() {
    let want = LookupResponse {
        channels: vec!["archive".into(), "audit#ephemeral".into()],
        producers: vec![producer_1(), producer_2()],
    };
    check_fixture(&lookup_v1(), &want);
    assert_eq!(want.producers[0].connect_address(), "nsqd-1.example:4150");
    assert_eq!(want.producers[1].connect_address(), "[fd00::6]:5150");
    assert_eq!(want.producers[1].http_address(), "[fd00::6]:5151");
}

#[test]
fn lookup_of_a_topic_whose_producers_left_is_empty_lists() {
    check_fixture(
        r#"{"channels":[],"producers":[]}"#,
        &LookupResponse::default(),
    );
}

#[test]
fn topics_channels_info_fixtures_roundtrip() {
    check_fixture(
        r#"{"topics":["clicks","orders"]}"#,
        &TopicsResponse {
            topics: vec!["clicks".into(), "orders".into()],
        },
    );
    check_fixture(
        r#"{"channels":["archive"]}"#,
        &ChannelsResponse {
            channels: vec!["archive".into()],
        },
    );
    check_fixture(
        r#"{"version":"1.3.0"}"#,
        &InfoResponse {
            version: "1.3.0".into(),
        },
    );
}

#[test]
fn nodes_fixture_roundtrips_byte_exact() {
    let want = NodesResponse {
        producers: vec![Node {
            producer: producer_1(),
            tombstones: vec![false, true],
            topics: vec!["clicks".into(), "orders".into()],
        }],
    };
    check_fixture(&nodes_v1(), &want);
    assert!(!want.producers[0].is_tombstoned("clicks"));
    assert!(want.producers[0].is_tombstoned("orders"));
}

#[test]
fn empty_body_counts_as_an_empty_object() {
    for body in [&b""[..], b" \r\n", b"{}"] {
        for v1 in [true, false] {
            assert_eq!(
                decode_body::<LookupResponse>(body, v1).unwrap(),
                LookupResponse::default()
            );
            assert_eq!(
                decode_body::<NodesResponse>(body, v1).unwrap(),
                NodesResponse::default()
            );
            assert_eq!(
                decode_body::<TopicsResponse>(body, v1).unwrap(),
                TopicsResponse::default()
            );
            assert_eq!(
                decode_body::<InfoResponse>(body, v1).unwrap(),
                InfoResponse::default()
            );
            assert_eq!(
                decode_body::<serde_json::Value>(body, v1).unwrap(),
                serde_json::json!({})
            );
        }
    }
    // A legacy wrapper without data (the POST endpoints) is empty too.
    for body in [
        r#"{"status_code":200,"status_txt":"OK","data":null}"#,
        r#"{"status_code":200,"status_txt":"OK"}"#,
    ] {
        assert_eq!(
            decode_body::<LookupResponse>(body.as_bytes(), false).unwrap(),
            LookupResponse::default()
        );
    }
}

#[test]
fn not_found_404_is_recognisable() {
    let body = br#"{"message":"TOPIC_NOT_FOUND"}"#;
    let err = decode_response::<LookupResponse>(404, true, body).unwrap_err();
    assert!(err.is_topic_not_found());
    assert_eq!(err.status(), Some(404));
    assert!(matches!(&err, ApiError::Status { body, .. } if body.message == TOPIC_NOT_FOUND));
    assert_eq!(err.to_string(), "nsqlookupd answered 404: TOPIC_NOT_FOUND");
    assert_eq!(
        serde_json::to_vec(&ErrorBody::new(TOPIC_NOT_FOUND)).unwrap(),
        body
    );
    // Other errors are not "no producers yet".
    for (status, message) in [
        (400, MISSING_ARG_TOPIC),
        (400, INVALID_REQUEST),
        (404, "NOT_FOUND"),
        (405, "METHOD_NOT_ALLOWED"),
        (500, "INTERNAL_ERROR"),
    ] {
        let body = serde_json::to_vec(&ErrorBody::new(message)).unwrap();
        let err = decode_response::<LookupResponse>(status, true, &body).unwrap_err();
        assert!(!err.is_topic_not_found(), "{message}");
        assert_eq!(err.status(), Some(status));
    }
    // Something other than lookupd (a proxy) still gives a message.
    let err =
        decode_response::<LookupResponse>(502, false, b"<html>bad gateway</html>").unwrap_err();
    assert!(
        matches!(&err, ApiError::Status { status: 502, body } if body.message == "<html>bad gateway</html>")
    );
}

#[test]
fn legacy_errors_come_from_status_code() {
    let body = br#"{"status_code":500,"status_txt":"TOPIC_NOT_FOUND","data":null}"#;
    let err = decode_body::<LookupResponse>(body, false).unwrap_err();
    assert!(err.is_topic_not_found());
    assert_eq!(err.status(), Some(500));
    // The same body through decode_response with a 500 status.
    let err = decode_response::<LookupResponse>(500, false, body).unwrap_err();
    assert!(err.is_topic_not_found());
}

#[test]
fn ancient_address_field_is_the_fallback() {
    let old = r#"{"address":"nsqd-0","tcp_port":4150,"http_port":4151,"version":"0.2.20"}"#;
    let p: Producer = serde_json::from_str(old).unwrap();
    assert_eq!(p.broadcast_address, "nsqd-0");
    assert_eq!(p.connect_address(), "nsqd-0:4150");
    // broadcast_address wins when both are there, and an empty one falls back.
    let both = r#"{"address":"a","broadcast_address":"b"}"#;
    assert_eq!(
        serde_json::from_str::<Producer>(both)
            .unwrap()
            .broadcast_address,
        "b"
    );
    let empty = r#"{"address":"a","broadcast_address":""}"#;
    assert_eq!(
        serde_json::from_str::<Producer>(empty)
            .unwrap()
            .broadcast_address,
        "a"
    );
    // Serialising writes only the modern name.
    assert!(!serde_json::to_string(&p).unwrap().contains("\"address\""));
    // In a legacy wrapped /lookup.
    let lookup = legacy(&format!(r#"{{"channels":["c"],"producers":[{old}]}}"#));
    let lookup: LookupResponse = decode_body(lookup.as_bytes(), false).unwrap();
    assert_eq!(lookup.producers[0].connect_address(), "nsqd-0:4150");
}

#[test]
fn later_topology_fields_are_read_and_written_in_place() {
    let json = PRODUCER_1.replace('}', r#","topology_zone":"z1","topology_region":"r1"}"#);
    let p: Producer = serde_json::from_str(&json).unwrap();
    assert_eq!(p.topology_zone.as_deref(), Some("z1"));
    assert_eq!(p.topology_region.as_deref(), Some("r1"));
    assert_eq!(serde_json::to_string(&p).unwrap(), json);
}

#[test]
fn nulls_and_unknown_fields_are_tolerated() {
    let body = br#"{"channels":null,"producers":[{"remote_address":null,"tcp_port":4150,"future":{"x":1}}],"extra":1}"#;
    let lookup: LookupResponse = decode_body(body, true).unwrap();
    assert!(lookup.channels.is_empty());
    assert_eq!(lookup.producers[0].tcp_port, 4150);
    assert_eq!(lookup.producers[0].remote_address, "");
    let nodes: NodesResponse = decode_body(
        br#"{"producers":[{"tombstones":null,"topics":null}]}"#,
        true,
    )
    .unwrap();
    assert_eq!(nodes.producers[0], Node::default());
}

#[test]
fn malformed_bodies_are_json_errors() {
    for body in [
        &b"OK"[..],
        b"{",
        b"[1]",
        br#"{"producers":[{"tcp_port":-1}]}"#,
    ] {
        for v1 in [true, false] {
            let err = decode_body::<LookupResponse>(body, v1).unwrap_err();
            assert!(matches!(err, ApiError::Json(_)), "{body:?}: {err:?}");
            assert_eq!(err.status(), None);
        }
    }
}

#[test]
fn v1_header_and_accept_values() {
    assert_eq!(ACCEPT_V1, "application/vnd.nsq; version=1.0");
    assert_eq!(V1_HEADER, "X-NSQ-Content-Type");
    assert!(is_v1_header(b"nsq; version=1.0"));
    assert!(is_v1_header(b" nsq; version=1.0\r"));
    assert!(!is_v1_header(b"nsq; version=2.0"));
    assert!(!is_v1_header(b""));
}

#[test]
fn join_host_port_brackets_ipv6_once() {
    assert_eq!(join_host_port("10.0.0.5", 4150), "10.0.0.5:4150");
    assert_eq!(join_host_port("::1", 1), "[::1]:1");
    assert_eq!(join_host_port("[::1]", 1), "[::1]:1");
    assert_eq!(join_host_port("", 4150), ":4150");
}
