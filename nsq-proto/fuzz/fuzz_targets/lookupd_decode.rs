//! The start of an nsqlookupd (protocol V1) connection on arbitrary bytes.
//!
//! PLACEHOLDER UNTIL THE LOOKUPD CODEC IS MERGED. The V1 codec is being written
//! in `nsq_proto::lookup` on another branch; on this one that module has no
//! codec. Until the merge this target fuzzes what V1 shares with what exists:
//! the 4-byte magic, then line commands with an optional `[u32 size][body]`
//! after them, read with `ServerCodec` (which refuses V1's REGISTER, UNREGISTER
//! and PING as unknown commands but walks the same line and body paths). After
//! the merge, decode the bytes after the magic with the lookupd codec instead,
//! in both directions: nsqd's lines to lookupd, and lookupd's unframed
//! `[u32 size][data]` replies.

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use nsq_proto::{Limits, Magic, ProtocolError, ServerCodec};
use nsq_proto_fuzz::decode_whole_and_split;

/// nsqlookupd reads IDENTIFY bodies up to nsqd's `--max-body-size`; smaller
/// here so that the fuzzer reaches it.
const LIMITS: Limits = Limits {
    max_line_len: 256,
    max_msg_size: 512,
    max_body_size: 2048,
    max_rdy_count: 2500,
    max_req_timeout: Duration::from_secs(3600),
};

const COMMAND_BOUND: usize = 256 + 4 + 2048 + 4;

fuzz_target!(|data: &[u8]| {
    let Some((magic, rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    match Magic::parse(*magic) {
        Ok(parsed) => assert_eq!(parsed.as_bytes(), *magic),
        Err(ProtocolError::BadMagic(bytes)) => {
            assert_eq!(bytes, *magic);
            return;
        }
        Err(other) => panic!("a bad magic gave {other:?}"),
    }
    decode_whole_and_split(ServerCodec::with_limits(LIMITS), rest, COMMAND_BOUND);
});
