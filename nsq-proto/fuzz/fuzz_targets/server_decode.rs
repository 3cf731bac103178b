//! `ServerCodec` on arbitrary bytes: what a broker reads from a hostile or
//! broken client.
//!
//! The limits are small so that the fuzzer, whose inputs are at most 4 KiB by
//! default, reaches them and goes past them. Besides the checks in
//! `nsq_proto_fuzz` (no panic, bounded buffer, same result when the input is
//! cut), every command decoded that a client could send (`Command::encode`
//! refuses, for instance, an ID holding a carriage return, which the line
//! format lets through) must decode to itself.

#![no_main]

use std::time::Duration;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use nsq_proto::{Limits, ServerCodec};
use nsq_proto_fuzz::decode_whole_and_split;
use tokio_util::codec::Decoder;

/// At or below nsqd's defaults, so what passes them also passes the defaults.
const LIMITS: Limits = Limits {
    max_line_len: 256,
    max_msg_size: 512,
    max_body_size: 2048,
    max_rdy_count: 2500,
    max_req_timeout: Duration::from_secs(3600),
};

/// A line, a size field and a body, plus MPUB's look-ahead of one length field.
const COMMAND_BOUND: usize = 256 + 4 + 2048 + 4;

fuzz_target!(|data: &[u8]| {
    let outcome = decode_whole_and_split(ServerCodec::with_limits(LIMITS), data, COMMAND_BOUND);
    for cmd in outcome.items {
        let mut wire = BytesMut::new();
        if cmd.encode(&mut wire).is_err() {
            assert!(wire.is_empty(), "a refused {cmd:?} wrote bytes");
            continue;
        }
        // Default limits: a re-encoded IDENTIFY may be longer than the original.
        let again = ServerCodec::new().decode(&mut wire);
        assert_eq!(again.expect("a re-encoded command decodes"), Some(cmd));
        assert!(wire.is_empty());
    }
});
