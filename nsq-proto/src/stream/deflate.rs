//! Raw DEFLATE (RFC 1951, no zlib or gzip header), as Go's `compress/flate` speaks it.

use std::io;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::engine::{compressed_stream_io, invalid_data, Codec, Engine, Progress};

/// Spare output room given to the compressor per call.
const COMPRESS_CHUNK: usize = 32 * 1024;
/// Compressed input buffered for the decompressor (it can always use whatever it gets).
const READ_BUF: usize = 16 * 1024;
/// go-nsq's default `deflate_level`.
const DEFAULT_LEVEL: u32 = 6;

/// A stream that speaks raw DEFLATE in both directions, like nsqd's `flate.NewReader` and
/// `flate.NewWriter(conn, level)`.
///
/// Writes are compressed as they come; [`flush`](tokio::io::AsyncWriteExt::flush) does a sync
/// flush (`Z_SYNC_FLUSH`: the empty stored block `00 00 ff ff`), so the peer can decode
/// everything written so far, then flushes the wrapped stream. nsqd does the same on every flush.
/// [`shutdown`](tokio::io::AsyncWriteExt::shutdown) writes the final block; writing after that
/// fails.
///
/// Reading stops at the final block. An end of the wrapped stream without a final block is a
/// clean end of file, because nsqd never writes one (it just closes the connection). Each read
/// inflates at most into the caller's buffer, so a small input that expands hugely never makes
/// this type allocate more: compressed input is read into a fixed 16 KiB buffer, and compressed
/// output waits in a buffer written out once it passes 64 KiB. Malformed input
/// gives an [`io::ErrorKind::InvalidData`] error, after which the read half stays failed.
///
/// Dropping the stream or calling [`into_inner`](Self::into_inner) discards unflushed writes.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// use nsq_proto::stream::DeflateStream;
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// let (a, b) = tokio::io::duplex(64 * 1024);
/// let (mut a, mut b) = (DeflateStream::new(a), DeflateStream::with_level(b, 9)?);
///
/// a.write_all(b"NOP\n").await?;
/// a.flush().await?; // sync flush: the peer can decode it now
/// let mut got = [0u8; 4];
/// b.read_exact(&mut got).await?;
/// assert_eq!(&got, b"NOP\n");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct DeflateStream<S> {
    inner: S,
    engine: Engine<Deflate>,
}

impl<S> DeflateStream<S> {
    /// Wraps `inner` at compression level 6 (go-nsq's default `deflate_level`).
    ///
    /// To keep bytes an earlier codec read ahead, pass a [`Rewind`](super::Rewind).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// use nsq_proto::stream::DeflateStream;
    /// use tokio::io::AsyncWriteExt;
    ///
    /// let mut stream = DeflateStream::new(Vec::new());
    /// stream.write_all(b"hello").await?;
    /// stream.flush().await?;
    /// // Raw DEFLATE: no zlib header; a sync flush ends with an empty stored block.
    /// assert!(stream.get_ref().ends_with(&[0x00, 0x00, 0xff, 0xff]));
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(inner: S) -> Self {
        Self::at_level(inner, DEFAULT_LEVEL)
    }

    /// Wraps `inner`, compressing at `level` (1 fastest … 9 smallest), the level negotiated as
    /// IDENTIFY's `deflate_level`.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] if `level` is not in `1..=9`.
    ///
    /// # Examples
    ///
    /// ```
    /// use nsq_proto::stream::DeflateStream;
    ///
    /// assert!(DeflateStream::with_level(Vec::<u8>::new(), 1).is_ok());
    /// let err = DeflateStream::with_level(Vec::<u8>::new(), 10).unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    /// ```
    pub fn with_level(inner: S, level: u32) -> io::Result<Self> {
        if !(1..=9).contains(&level) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("deflate level {level} is not in 1..=9"),
            ));
        }
        Ok(Self::at_level(inner, level))
    }

    fn at_level(inner: S, level: u32) -> Self {
        Self {
            inner,
            engine: Engine::new(Deflate {
                compress: Compress::new(Compression::new(level), false),
                unflushed: false,
                finished: false,
                decompress: Decompress::new(false),
                ended: false,
            }),
        }
    }

    /// The wrapped stream.
    ///
    /// # Examples
    ///
    /// ```
    /// use nsq_proto::stream::DeflateStream;
    ///
    /// let stream = DeflateStream::new(Vec::<u8>::new());
    /// assert!(stream.get_ref().is_empty());
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped stream, mutably. Reading or writing it directly corrupts the deflate stream.
    ///
    /// # Examples
    ///
    /// ```
    /// use nsq_proto::stream::DeflateStream;
    ///
    /// let mut stream = DeflateStream::new(Vec::<u8>::new());
    /// stream.get_mut().clear();
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped stream. Buffered data in either direction is discarded, so flush first.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// use nsq_proto::stream::DeflateStream;
    /// use tokio::io::AsyncWriteExt;
    ///
    /// let mut stream = DeflateStream::new(Vec::new());
    /// stream.write_all(b"data").await?;
    /// stream.flush().await?;
    /// let wire: Vec<u8> = stream.into_inner();
    /// assert!(!wire.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

compressed_stream_io!(DeflateStream);

/// The raw DEFLATE codec.
struct Deflate {
    compress: Compress,
    /// Input was taken since the last completed sync flush.
    unflushed: bool,
    /// The final block was written.
    finished: bool,
    decompress: Decompress,
    /// The final block was read.
    ended: bool,
}

impl Deflate {
    /// One compressor call with at least `COMPRESS_CHUNK` spare room in `out`. Returns the input
    /// taken, whether the call left room unused (so a flush is complete) and the status.
    fn run(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        flush: FlushCompress,
    ) -> io::Result<(usize, bool, Status)> {
        out.reserve(COMPRESS_CHUNK);
        let room = out.capacity() - out.len();
        let (in_before, out_before) = (self.compress.total_in(), out.len());
        let status = self
            .compress
            .compress_vec(input, out, flush)
            .map_err(io::Error::other)?;
        let taken =
            usize::try_from(self.compress.total_in() - in_before).map_err(io::Error::other)?;
        Ok((taken, out.len() - out_before < room, status))
    }
}

impl Codec for Deflate {
    const READ_BUF: usize = READ_BUF;

    fn encode(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<usize> {
        if self.finished {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "deflate stream already finished by shutdown",
            ));
        }
        let (taken, _, _) = self.run(input, out, FlushCompress::None)?;
        self.unflushed |= taken > 0;
        Ok(taken)
    }

    fn flush(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        if !self.unflushed || self.finished {
            return Ok(true);
        }
        // As zlib: repeat with more room until a call leaves room unused.
        let (_, complete, _) = self.run(&[], out, FlushCompress::Sync)?;
        self.unflushed = !complete;
        Ok(complete)
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        if self.finished {
            return Ok(true);
        }
        let (_, _, status) = self.run(&[], out, FlushCompress::Finish)?;
        self.finished = status == Status::StreamEnd;
        self.unflushed &= !self.finished;
        Ok(self.finished)
    }

    fn decode(&mut self, input: &[u8], out: &mut [u8]) -> io::Result<Progress> {
        if self.ended {
            return Ok(Progress::default());
        }
        let (in_before, out_before) = (self.decompress.total_in(), self.decompress.total_out());
        let status = self
            .decompress
            .decompress(input, out, FlushDecompress::None)
            .map_err(|e| invalid_data(format!("deflate: corrupt stream: {e}")))?;
        self.ended = status == Status::StreamEnd;
        let count = |n: u64| usize::try_from(n).map_err(io::Error::other);
        Ok(Progress {
            consumed: count(self.decompress.total_in() - in_before)?,
            produced: count(self.decompress.total_out() - out_before)?,
        })
    }

    fn decode_finished(&self) -> bool {
        self.ended
    }

    fn at_boundary(&self) -> bool {
        // Raw DEFLATE has no framing to check, and nsqd never writes a final block.
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::test_util::{self, sample_data};
    use proptest::prelude::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn encode_with(level: u32, pieces: &[&[u8]]) -> Vec<u8> {
        let mut s = DeflateStream::with_level(Vec::new(), level).unwrap();
        for piece in pieces {
            s.write_all(piece).await.unwrap();
            s.flush().await.unwrap();
        }
        s.into_inner()
    }

    async fn decode_all(wire: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        DeflateStream::new(wire).read_to_end(&mut out).await?;
        Ok(out)
    }

    fn wrap(io: tokio::io::DuplexStream) -> DeflateStream<tokio::io::DuplexStream> {
        DeflateStream::new(io)
    }

    #[tokio::test]
    async fn levels_outside_1_to_9_are_refused() {
        for level in [0, 10, u32::MAX] {
            let err = DeflateStream::with_level(Vec::<u8>::new(), level).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        }
        let data = sample_data(100_000, 8);
        for level in 1..=9 {
            let wire = encode_with(level, &[&data]).await;
            assert_eq!(decode_all(&wire).await.unwrap(), data, "level {level}");
        }
    }

    #[tokio::test]
    async fn output_is_raw_deflate_with_sync_flush() {
        let wire = encode_with(6, &[b"hello"]).await;
        // A sync flush ends with an empty stored block.
        assert!(wire.ends_with(&[0x00, 0x00, 0xff, 0xff]));
        // Independent check: flate2's raw decoder reads it, its zlib decoder does not.
        let mut out = Vec::new();
        let mut raw = flate2::read::DeflateDecoder::new(&wire[..]);
        let _ = std::io::Read::read_to_end(&mut raw, &mut out);
        assert_eq!(out, b"hello");
        let mut zlib = flate2::read::ZlibDecoder::new(&wire[..]);
        assert!(std::io::Read::read_to_end(&mut zlib, &mut Vec::new()).is_err());
    }

    #[tokio::test]
    async fn repeated_flushes_add_nothing() {
        let mut s = DeflateStream::new(Vec::new());
        s.write_all(b"x").await.unwrap();
        s.flush().await.unwrap();
        let len = s.get_ref().len();
        s.flush().await.unwrap();
        s.flush().await.unwrap();
        assert_eq!(s.get_ref().len(), len);
    }

    #[tokio::test]
    async fn shutdown_ends_the_stream_and_refuses_writes() {
        let mut s = DeflateStream::new(Vec::new());
        s.write_all(b"last words").await.unwrap();
        s.shutdown().await.unwrap();
        let err = s.write_all(b"more").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        let mut wire = s.into_inner();
        // Bytes after the final block are ignored.
        wire.extend_from_slice(b"trailing garbage");
        assert_eq!(decode_all(&wire).await.unwrap(), b"last words");
    }

    #[tokio::test]
    async fn eof_after_a_sync_flush_is_clean() {
        let wire = encode_with(6, &[b"one ", b"two"]).await;
        assert_eq!(decode_all(&wire).await.unwrap(), b"one two");
    }

    #[tokio::test]
    async fn corrupt_input_is_invalid_data() {
        // Block type 3 is reserved.
        for wire in [&[0xffu8; 16][..], &[0x07, 0x00][..]] {
            let err = decode_all(wire).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
            assert!(err.to_string().contains("deflate"), "{err}");
        }
        // A stored block whose length check (NLEN) is wrong.
        let err = decode_all(&[0x00, 0x05, 0x00, 0x00, 0x00, b'a'])
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    }

    #[tokio::test]
    async fn errors_stick() {
        let mut s = DeflateStream::new(&[0xffu8; 4][..]);
        let mut buf = [0u8; 8];
        assert!(s.read(&mut buf).await.is_err());
        assert_eq!(
            s.read(&mut buf).await.unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[tokio::test]
    async fn huge_expansion_is_read_in_bounded_pieces() {
        // 16 MiB of zeros compress to ~16 KiB; each read yields at most the caller's buffer.
        let plain = vec![0u8; 16 * 1024 * 1024];
        let wire = encode_with(9, &[&plain]).await;
        assert!(wire.len() < 50_000, "{}", wire.len());
        let mut s = DeflateStream::new(&wire[..]);
        let mut buf = vec![0u8; 1000];
        let mut total = 0usize;
        loop {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            assert!(buf[..n].iter().all(|&b| b == 0));
            total += n;
        }
        assert_eq!(total, plain.len());
    }

    #[tokio::test]
    async fn roundtrip_small_writes() {
        test_util::roundtrip_small_writes(wrap).await;
    }

    #[tokio::test]
    async fn roundtrip_large_writes() {
        test_util::roundtrip_large_writes(wrap).await;
    }

    #[tokio::test]
    async fn roundtrip_many_flushes() {
        test_util::roundtrip_many_flushes(wrap).await;
    }

    #[tokio::test]
    async fn roundtrip_tiny_pieces() {
        test_util::roundtrip_tiny_pieces(wrap).await;
    }

    #[tokio::test]
    async fn flush_delivers_without_shutdown() {
        test_util::flush_delivers_without_shutdown(wrap).await;
    }

    #[tokio::test]
    async fn both_directions_at_once() {
        test_util::both_directions(wrap).await;
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(wire in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let _ = futures::executor::block_on(decode_all(&wire));
        }

        #[test]
        fn roundtrip_any_split(
            data in proptest::collection::vec(any::<u8>(), 0..5000),
            split in 1usize..200,
            level in 1u32..=9,
        ) {
            let wire = futures::executor::block_on(async {
                let mut s = DeflateStream::with_level(Vec::new(), level).unwrap();
                for piece in data.chunks(split) {
                    s.write_all(piece).await.unwrap();
                    s.flush().await.unwrap();
                }
                s.into_inner()
            });
            prop_assert_eq!(futures::executor::block_on(decode_all(&wire)).unwrap(), data);
        }
    }
}
