//! What the fuzz targets share: the codec checks here, a counting allocator
//! ([`alloc`]) and the runtime of the targets that run the broker or the client ([`rt`]).
//!
//! Each codec target decodes its input twice, whole and cut in two, and asserts:
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

/// The heap in use, counted, so that a target can check what one call allocates.
///
/// A target that wants it declares the allocator itself
/// (`#[global_allocator] static ALLOC: nsq_proto_fuzz::alloc::Counting = nsq_proto_fuzz::alloc::Counting;`);
/// the others keep the system allocator unwrapped.
pub mod alloc {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicUsize, Ordering};

    static IN_USE: AtomicUsize = AtomicUsize::new(0);
    static PEAK: AtomicUsize = AtomicUsize::new(0);

    /// The system allocator, counting the bytes in use and their peak.
    #[derive(Debug)]
    pub struct Counting;

    fn grew(by: usize) {
        let now = IN_USE.fetch_add(by, Ordering::Relaxed) + by;
        PEAK.fetch_max(now, Ordering::Relaxed);
    }

    fn shrank(by: usize) {
        IN_USE.fetch_sub(by, Ordering::Relaxed);
    }

    // SAFETY: every call goes to `System` unchanged; the counters are only bookkeeping.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let ptr = System.alloc(layout);
            if !ptr.is_null() {
                grew(layout.size());
            }
            ptr
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            let ptr = System.alloc_zeroed(layout);
            if !ptr.is_null() {
                grew(layout.size());
            }
            ptr
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            System.dealloc(ptr, layout);
            shrank(layout.size());
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let new = System.realloc(ptr, layout, new_size);
            if !new.is_null() {
                if new_size >= layout.size() {
                    grew(new_size - layout.size());
                } else {
                    shrank(layout.size() - new_size);
                }
            }
            new
        }
    }

    /// Runs `f` and returns its result with the most heap it held at once beyond what was
    /// in use before it ran. Meaningful only with [`Counting`] as the global allocator, and
    /// only on one thread.
    pub fn peak_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
        let before = IN_USE.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let result = f();
        let peak = PEAK.load(Ordering::Relaxed);
        (result, peak.saturating_sub(before))
    }
}

/// What the targets that run the broker or the client share.
pub mod rt {
    use std::future::Future;
    use std::time::Duration;

    /// A current-thread runtime with IO and time, its clock paused: whenever every task
    /// waits, the clock jumps to the next timer, so timeouts cost no real time, and a run
    /// is as repeatable as real sockets allow.
    pub fn paused_runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("a tokio runtime")
    }

    /// Awaits `fut` for at most `limit`, panicking (a libFuzzer crash) with `what` when it
    /// takes longer: a hang is a finding, not something to wait out.
    pub async fn within<F: Future>(limit: Duration, what: &str, fut: F) -> F::Output {
        match tokio::time::timeout(limit, fut).await {
            Ok(out) => out,
            Err(_) => panic!("{what} took longer than {limit:?}"),
        }
    }
}
