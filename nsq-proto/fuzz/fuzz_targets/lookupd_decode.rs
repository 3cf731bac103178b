//! The nsqd↔nsqlookupd V1 protocol on arbitrary bytes, both directions.
//!
//! The first input byte picks the side. Even: what nsqlookupd reads from an
//! nsqd, the 4-byte magic then line commands (IDENTIFY with its sized JSON
//! body), read by `LookupServerCodec`. Odd: what an nsqd reads back, nsqlookupd's
//! unframed `[u32 size][data]` replies, read by `LookupClientCodec`. Besides the
//! checks in `nsq_proto_fuzz` (no panic, bounded buffer, same result when the
//! input is cut), every command decoded that encodes again must decode to itself.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use nsq_proto::lookup::{check_magic, LookupClientCodec, LookupServerCodec};
use nsq_proto_fuzz::decode_whole_and_split;
use tokio_util::codec::Decoder;

/// Small so that the fuzzer, whose inputs are at most 4 KiB, goes past them.
const MAX_LINE_LEN: usize = 256;
const MAX_IDENTIFY_LEN: usize = 2048;
const MAX_REPLY_LEN: usize = 2048;

fuzz_target!(|data: &[u8]| {
    let Some((&side, rest)) = data.split_first() else {
        return;
    };
    if side % 2 == 1 {
        let codec = LookupClientCodec::with_max_reply_len(MAX_REPLY_LEN);
        decode_whole_and_split(codec, rest, 4 + MAX_REPLY_LEN);
        return;
    }
    let Some((magic, commands)) = rest.split_first_chunk::<4>() else {
        return;
    };
    if check_magic(magic).is_err() {
        return;
    }
    let codec = LookupServerCodec::with_limits(MAX_LINE_LEN, MAX_IDENTIFY_LEN);
    let outcome = decode_whole_and_split(codec, commands, MAX_LINE_LEN + 4 + MAX_IDENTIFY_LEN);
    for cmd in outcome.items {
        let mut wire = BytesMut::new();
        if cmd.encode(&mut wire).is_err() {
            assert!(wire.is_empty(), "a refused {cmd:?} wrote bytes");
            continue;
        }
        let again = LookupServerCodec::new().decode(&mut wire);
        assert_eq!(again.expect("a re-encoded command decodes"), Some(cmd));
        assert!(wire.is_empty());
    }
});
