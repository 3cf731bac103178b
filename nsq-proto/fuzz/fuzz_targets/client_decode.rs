//! `ClientCodec` on arbitrary bytes: what a client reads from a hostile or
//! broken nsqd.
//!
//! The frame bound is small (1 KiB) so that the fuzzer, whose inputs are at
//! most 4 KiB by default, reaches it and goes past it. Besides the
//! checks in `nsq_proto_fuzz` (no panic, bounded buffer, same result when the
//! input is cut), every frame decoded must survive `Frame::encode` and decode
//! to itself.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use nsq_proto::ClientCodec;
use nsq_proto_fuzz::decode_whole_and_split;
use tokio_util::codec::Decoder;

const MAX_FRAME: usize = 1024;

fuzz_target!(|data: &[u8]| {
    let codec = ClientCodec::new().with_max_frame_size(MAX_FRAME);
    let outcome = decode_whole_and_split(codec, data, 4 + MAX_FRAME);
    for frame in outcome.items {
        let mut wire = BytesMut::new();
        frame.encode(&mut wire).expect("a decoded frame encodes");
        assert_eq!(wire.len(), frame.encoded_len());
        let again = ClientCodec::new().decode(&mut wire);
        assert_eq!(again.expect("a re-encoded frame decodes"), Some(frame));
        assert!(wire.is_empty());
    }
});
