//! Checks the fuzz targets share.
//!
//! Each target decodes its input twice, whole and cut in two, and asserts:
//!
//! * the `Decoder` contract on every call: an item consumes input, `Ok(None)`
//!   consumes nothing, and no loop runs without progress;
//! * the buffer never grows past a bound set by the limits and the input length,
//!   whatever sizes the input declares;
//! * both runs give the same items and end the same way (the decoders keep
//!   resume state between calls, and this is what exercises it);
//! * every decoded item, encoded again, decodes to itself.

use std::fmt::Display;

use bytes::BytesMut;
use tokio_util::codec::Decoder;

/// How a run over some input went.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome<T> {
    /// The items decoded, in order.
    pub items: Vec<T>,
    /// `Ok(n)` when the decoder waited for more input with `n` bytes buffered,
    /// or the error's text.
    pub end: Result<usize, String>,
}

/// Feeds `pieces` one after another to `codec`, decoding after each, and
/// checks the `Decoder` contract on every call. When `capacity_bound` is given
/// the buffer's capacity is checked against it after every call.
pub fn decode_pieces<D>(
    mut codec: D,
    pieces: &[&[u8]],
    capacity_bound: Option<usize>,
) -> Outcome<D::Item>
where
    D: Decoder,
    D::Error: Display,
{
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    for piece in pieces {
        if buf.is_empty() && buf.capacity() == 0 {
            // Exactly the input's size, so the bound below is about the decoder.
            buf = BytesMut::from(*piece);
        } else {
            buf.extend_from_slice(piece);
        }
        loop {
            let before = buf.len();
            let result = codec.decode(&mut buf);
            if let Some(bound) = capacity_bound {
                assert!(
                    buf.capacity() <= bound,
                    "buffer grew to {} bytes, bound {bound}",
                    buf.capacity()
                );
            }
            match result {
                Ok(Some(item)) => {
                    assert!(buf.len() < before, "an item consumed no input");
                    items.push(item);
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "Ok(None) consumed input");
                    break;
                }
                Err(err) => {
                    return Outcome {
                        items,
                        end: Err(err.to_string()),
                    }
                }
            }
        }
    }
    Outcome {
        items,
        end: Ok(buf.len()),
    }
}

/// The capacity a buffer that starts as exactly `input_len` bytes may reach
/// while a decoder that holds at most `frame_bound` bytes per item works on it:
/// `BytesMut` may double its allocation when the decoder reserves room for one
/// item.
pub fn capacity_bound(input_len: usize, frame_bound: usize) -> usize {
    2 * input_len + frame_bound + 64
}

/// Decodes `data` whole (checking the capacity bound) and cut in two at an
/// offset the input picks, asserts both runs agree, and returns the first.
pub fn decode_whole_and_split<D>(codec: D, data: &[u8], frame_bound: usize) -> Outcome<D::Item>
where
    D: Decoder + Clone,
    D::Item: PartialEq + std::fmt::Debug,
    D::Error: Display,
{
    let bound = capacity_bound(data.len(), frame_bound);
    let whole = decode_pieces(codec.clone(), &[data], Some(bound));
    let at = data
        .last()
        .map_or(0, |&b| data.len() * usize::from(b) / 255);
    let (head, tail) = data.split_at(at);
    let split = decode_pieces(codec, &[head, tail], None);
    assert_eq!(whole, split, "cutting the input at {at} changed the result");
    whole
}
