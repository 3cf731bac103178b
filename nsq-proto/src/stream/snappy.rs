//! The snappy framing format, as golang/snappy's `NewReader` / `NewBufferedWriter` speak it.
//!
//! From `framing_format.txt`: a stream is a sequence of chunks, each a 1-byte type, a 3-byte
//! little-endian length and that many bytes of data.
//!
//! | type | meaning |
//! | --- | --- |
//! | `0xff` | stream identifier, body `sNaPpY` (the stream starts with one) |
//! | `0x00` | compressed data: masked CRC-32C of the uncompressed data (4 bytes LE), raw snappy block |
//! | `0x01` | uncompressed data: masked CRC-32C (4 bytes LE), the data |
//! | `0x02`-`0x7f` | reserved unskippable: an error |
//! | `0x80`-`0xfd` | reserved skippable: skipped |
//! | `0xfe` | padding: skipped |
//!
//! A data chunk holds at most 65536 uncompressed bytes.

use std::io;

use snap::raw::{decompress_len, max_compress_len, Decoder, Encoder};

use super::engine::{compressed_stream_io, invalid_data, Codec, Engine, Progress};

/// Largest uncompressed payload of one data chunk.
const MAX_BLOCK: usize = 65536;
/// `snap::raw::max_compress_len(MAX_BLOCK)`, as golang/snappy's `maxEncodedLenOfMaxBlockSize`.
const MAX_COMPRESSED_BLOCK: usize = 32 + MAX_BLOCK + MAX_BLOCK / 6;
const CHECKSUM_LEN: usize = 4;
const HEADER_LEN: usize = 4;
/// Largest chunk length (after the header) accepted for a compressed data chunk.
const MAX_COMPRESSED_CHUNK: usize = CHECKSUM_LEN + MAX_COMPRESSED_BLOCK;
/// Largest chunk length (after the header) accepted for an uncompressed data chunk.
const MAX_UNCOMPRESSED_CHUNK: usize = CHECKSUM_LEN + MAX_BLOCK;

const CHUNK_COMPRESSED: u8 = 0x00;
const CHUNK_UNCOMPRESSED: u8 = 0x01;
const CHUNK_STREAM_ID: u8 = 0xff;
/// The stream identifier chunk, header included.
const STREAM_ID: [u8; 10] = *b"\xff\x06\x00\x00sNaPpY";

/// A stream that speaks the snappy framing format in both directions.
///
/// Reads decompress and verify every chunk's checksum; writes are buffered and go out as chunks
/// of at most 64 KiB of input, on [`flush`](tokio::io::AsyncWriteExt::flush) and whenever 64 KiB
/// has accumulated, like golang/snappy's `NewBufferedWriter`. The stream identifier is written
/// once, in front of the first chunk. Like Go's writer, a chunk is stored uncompressed when
/// compression saves less than 12.5%.
///
/// Memory is bounded: reading never buffers more than one maximal chunk (76,498 bytes), and chunk
/// lengths above the format's maximum are rejected before their data arrives. Malformed input
/// gives an [`io::ErrorKind::InvalidData`] error, after which the read half stays failed.
///
/// Dropping the stream or calling [`into_inner`](Self::into_inner) discards unflushed writes.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// use nsq_proto::stream::SnappyStream;
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// let (a, b) = tokio::io::duplex(64 * 1024);
/// let (mut a, mut b) = (SnappyStream::new(a), SnappyStream::new(b));
///
/// a.write_all(b"PUB topic\n").await?;
/// a.flush().await?; // a chunk goes out only on flush (or at 64 KiB)
/// let mut got = [0u8; 10];
/// b.read_exact(&mut got).await?;
/// assert_eq!(&got, b"PUB topic\n");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct SnappyStream<S> {
    inner: S,
    engine: Engine<Snappy>,
}

impl<S> SnappyStream<S> {
    /// Wraps `inner`; both directions speak the snappy framing format from now on.
    ///
    /// To keep bytes an earlier codec read ahead, pass a [`Rewind`](super::Rewind).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// use nsq_proto::stream::SnappyStream;
    /// use tokio::io::AsyncWriteExt;
    ///
    /// let mut stream = SnappyStream::new(Vec::new());
    /// stream.write_all(b"hi").await?;
    /// stream.flush().await?;
    /// // Stream identifier, then one uncompressed chunk: length 6, CRC, "hi".
    /// assert_eq!(&stream.get_ref()[..10], b"\xff\x06\x00\x00sNaPpY");
    /// assert_eq!(&stream.get_ref()[10..14], b"\x01\x06\x00\x00");
    /// assert_eq!(&stream.get_ref()[18..], b"hi");
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            engine: Engine::new(Snappy::new()),
        }
    }

    /// The wrapped stream.
    ///
    /// # Examples
    ///
    /// ```
    /// use nsq_proto::stream::SnappyStream;
    ///
    /// let stream = SnappyStream::new(Vec::<u8>::new());
    /// assert!(stream.get_ref().is_empty());
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped stream, mutably. Reading or writing it directly corrupts the snappy stream.
    ///
    /// # Examples
    ///
    /// ```
    /// use nsq_proto::stream::SnappyStream;
    ///
    /// let mut stream = SnappyStream::new(Vec::<u8>::new());
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
    /// use nsq_proto::stream::SnappyStream;
    /// use tokio::io::AsyncWriteExt;
    ///
    /// let mut stream = SnappyStream::new(Vec::new());
    /// stream.write_all(b"data").await?;
    /// stream.flush().await?;
    /// let wire: Vec<u8> = stream.into_inner();
    /// assert!(wire.starts_with(b"\xff\x06\x00\x00sNaPpY"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

compressed_stream_io!(SnappyStream);

/// The snappy framing codec: a buffering chunk writer and a chunk reader.
struct Snappy {
    encoder: Encoder,
    /// Uncompressed input not yet framed, at most `MAX_BLOCK` bytes.
    pending: Vec<u8>,
    wrote_stream_id: bool,

    decoder: Decoder,
    /// Decoded data that did not fit the caller's buffer, handed out from `decoded_pos`.
    decoded: Vec<u8>,
    decoded_pos: usize,
    saw_stream_id: bool,
    /// Bytes of a skippable chunk still to be skipped.
    skip: usize,
}

impl Snappy {
    fn new() -> Self {
        Self {
            encoder: Encoder::new(),
            pending: Vec::new(),
            wrote_stream_id: false,
            decoder: Decoder::new(),
            decoded: Vec::new(),
            decoded_pos: 0,
            saw_stream_id: false,
            skip: 0,
        }
    }

    /// Frames `data` (at most `MAX_BLOCK` bytes) as one data chunk appended to `out`.
    fn write_chunk(
        encoder: &mut Encoder,
        wrote_stream_id: &mut bool,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        if !*wrote_stream_id {
            out.extend_from_slice(&STREAM_ID);
            *wrote_stream_id = true;
        }
        let start = out.len();
        let body = start + HEADER_LEN + CHECKSUM_LEN;
        out.resize(body + max_compress_len(data.len()), 0);
        let compressed = encoder
            .compress(data, &mut out[body..])
            .map_err(io::Error::other)?;
        // golang/snappy keeps the compressed form only if it saves at least 12.5%.
        let (kind, len) = if compressed >= data.len() - data.len() / 8 {
            out.truncate(body);
            out.extend_from_slice(data);
            (CHUNK_UNCOMPRESSED, data.len())
        } else {
            out.truncate(body + compressed);
            (CHUNK_COMPRESSED, compressed)
        };
        let chunk_len = u32::try_from(CHECKSUM_LEN + len)
            .map_err(|_| io::Error::other("snappy chunk too long"))?
            .to_le_bytes();
        out[start] = kind;
        out[start + 1..start + HEADER_LEN].copy_from_slice(&chunk_len[..3]);
        out[start + HEADER_LEN..body].copy_from_slice(&masked_crc32c(data).to_le_bytes());
        Ok(())
    }

    fn write_pending(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        if !self.pending.is_empty() {
            Self::write_chunk(
                &mut self.encoder,
                &mut self.wrote_stream_id,
                &self.pending,
                out,
            )?;
            self.pending.clear();
        }
        Ok(())
    }

    /// Copies buffered decoded data into `out`.
    fn hand_out(&mut self, out: &mut [u8]) -> usize {
        let rest = &self.decoded[self.decoded_pos..];
        let n = rest.len().min(out.len());
        out[..n].copy_from_slice(&rest[..n]);
        self.decoded_pos += n;
        if self.decoded_pos == self.decoded.len() {
            self.decoded.clear();
            self.decoded_pos = 0;
        }
        n
    }

    /// Decodes one data chunk (`body` = checksum + payload) into `out`, or into `decoded` when
    /// `out` is too small. Returns the number of bytes written to `out`.
    fn decode_data(&mut self, kind: u8, body: &[u8], out: &mut [u8]) -> io::Result<usize> {
        let (checksum, payload) = body.split_at(CHECKSUM_LEN);
        let checksum = u32::from_le_bytes([checksum[0], checksum[1], checksum[2], checksum[3]]);
        let len = if kind == CHUNK_COMPRESSED {
            decompress_len(payload)
                .map_err(|e| invalid_data(format!("snappy: corrupt compressed chunk: {e}")))?
        } else {
            payload.len()
        };
        if len > MAX_BLOCK {
            return Err(invalid_data(format!(
                "snappy: chunk decodes to {len} bytes, more than {MAX_BLOCK}"
            )));
        }
        let direct = out.len() >= len;
        let dst = if direct {
            &mut out[..len]
        } else {
            self.decoded.resize(len, 0);
            &mut self.decoded[..]
        };
        if kind == CHUNK_COMPRESSED {
            let n = self
                .decoder
                .decompress(payload, dst)
                .map_err(|e| invalid_data(format!("snappy: corrupt compressed chunk: {e}")))?;
            if n != len {
                return Err(invalid_data(
                    "snappy: compressed chunk has the wrong length",
                ));
            }
        } else {
            dst.copy_from_slice(payload);
        }
        if masked_crc32c(dst) != checksum {
            self.decoded.clear();
            return Err(invalid_data("snappy: chunk checksum mismatch"));
        }
        if direct {
            Ok(len)
        } else {
            self.decoded_pos = 0;
            Ok(self.hand_out(out))
        }
    }
}

impl Codec for Snappy {
    const READ_BUF: usize = HEADER_LEN + MAX_COMPRESSED_CHUNK;

    fn encode(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<usize> {
        if self.pending.is_empty() && input.len() >= MAX_BLOCK {
            // A whole block: frame it straight from the caller's buffer.
            let block = &input[..MAX_BLOCK];
            Self::write_chunk(&mut self.encoder, &mut self.wrote_stream_id, block, out)?;
            return Ok(MAX_BLOCK);
        }
        let n = input.len().min(MAX_BLOCK - self.pending.len());
        self.pending.extend_from_slice(&input[..n]);
        if self.pending.len() == MAX_BLOCK {
            self.write_pending(out)?;
        }
        Ok(n)
    }

    fn flush(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        self.write_pending(out)?;
        Ok(true)
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        // The framing format has no end marker.
        self.flush(out)
    }

    fn decode(&mut self, input: &[u8], out: &mut [u8]) -> io::Result<Progress> {
        if self.decoded_pos < self.decoded.len() {
            let produced = self.hand_out(out);
            return Ok(Progress {
                consumed: 0,
                produced,
            });
        }
        if self.skip > 0 {
            let consumed = self.skip.min(input.len());
            self.skip -= consumed;
            return Ok(Progress {
                consumed,
                produced: 0,
            });
        }
        let Some(&[kind, l0, l1, l2]) = input.get(..HEADER_LEN) else {
            return Ok(Progress::default());
        };
        let len = usize::from(l0) | usize::from(l1) << 8 | usize::from(l2) << 16;
        if !self.saw_stream_id && kind != CHUNK_STREAM_ID {
            return Err(invalid_data(
                "snappy: stream does not start with the stream identifier",
            ));
        }
        let total = HEADER_LEN + len;
        match kind {
            CHUNK_STREAM_ID => {
                if len != STREAM_ID.len() - HEADER_LEN {
                    return Err(invalid_data("snappy: bad stream identifier length"));
                }
                let Some(chunk) = input.get(..total) else {
                    return Ok(Progress::default());
                };
                if chunk != STREAM_ID {
                    return Err(invalid_data("snappy: bad stream identifier"));
                }
                self.saw_stream_id = true;
                Ok(Progress {
                    consumed: total,
                    produced: 0,
                })
            }
            CHUNK_COMPRESSED | CHUNK_UNCOMPRESSED => {
                let max = if kind == CHUNK_COMPRESSED {
                    MAX_COMPRESSED_CHUNK
                } else {
                    MAX_UNCOMPRESSED_CHUNK
                };
                if len < CHECKSUM_LEN {
                    return Err(invalid_data(format!(
                        "snappy: data chunk of {len} bytes is too short"
                    )));
                }
                if len > max {
                    return Err(invalid_data(format!(
                        "snappy: chunk length {len} exceeds the maximum {max}"
                    )));
                }
                let Some(body) = input.get(HEADER_LEN..total) else {
                    return Ok(Progress::default());
                };
                let produced = self.decode_data(kind, body, out)?;
                Ok(Progress {
                    consumed: total,
                    produced,
                })
            }
            0x02..=0x7f => Err(invalid_data(format!(
                "snappy: reserved unskippable chunk type {kind:#04x}"
            ))),
            // 0x80-0xfd reserved skippable, 0xfe padding: skipped without being buffered.
            _ => {
                let consumed = total.min(input.len());
                self.skip = total - consumed;
                Ok(Progress {
                    consumed,
                    produced: 0,
                })
            }
        }
    }

    fn decode_finished(&self) -> bool {
        false
    }

    fn at_boundary(&self) -> bool {
        self.skip == 0
    }
}

/// CRC-32C (Castagnoli, reflected polynomial `0x82f63b78`) lookup tables for slicing-by-8.
static CRC32C_TABLES: [[u32; 256]; 8] = crc32c_tables();

const fn crc32c_tables() -> [[u32; 256]; 8] {
    let mut tables = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
            bit += 1;
        }
        tables[0][i] = crc;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut t = 1;
        while t < 8 {
            let prev = tables[t - 1][i];
            tables[t][i] = (prev >> 8) ^ tables[0][(prev & 0xff) as usize];
            t += 1;
        }
        i += 1;
    }
    tables
}

/// CRC-32C of `data`.
fn crc32c(data: &[u8]) -> u32 {
    let t = &CRC32C_TABLES;
    let byte = |v: u32, shift: u32| ((v >> shift) & 0xff) as usize;
    let mut crc = !0u32;
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let lo = u32::from_le_bytes([w[0], w[1], w[2], w[3]]) ^ crc;
        let hi = u32::from_le_bytes([w[4], w[5], w[6], w[7]]);
        crc = t[7][byte(lo, 0)]
            ^ t[6][byte(lo, 8)]
            ^ t[5][byte(lo, 16)]
            ^ t[4][byte(lo, 24)]
            ^ t[3][byte(hi, 0)]
            ^ t[2][byte(hi, 8)]
            ^ t[1][byte(hi, 16)]
            ^ t[0][byte(hi, 24)];
    }
    for &b in words.remainder() {
        crc = t[0][byte(crc ^ u32::from(b), 0)] ^ (crc >> 8);
    }
    !crc
}

/// The framing format's masked checksum: `((crc >> 15) | (crc << 17)) + 0xa282ead8`.
fn masked_crc32c(data: &[u8]) -> u32 {
    crc32c(data).rotate_right(15).wrapping_add(0xa282_ead8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::test_util::{self, sample_data};
    use proptest::prelude::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn chunk(kind: u8, body: &[u8]) -> Vec<u8> {
        let len = u32::try_from(body.len()).unwrap().to_le_bytes();
        let mut c = vec![kind, len[0], len[1], len[2]];
        c.extend_from_slice(body);
        c
    }

    fn data_chunk(kind: u8, plain: &[u8]) -> Vec<u8> {
        let mut body = masked_crc32c(plain).to_le_bytes().to_vec();
        if kind == CHUNK_COMPRESSED {
            body.extend(Encoder::new().compress_vec(plain).unwrap());
        } else {
            body.extend_from_slice(plain);
        }
        chunk(kind, &body)
    }

    async fn decode_all(wire: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        SnappyStream::new(wire).read_to_end(&mut out).await?;
        Ok(out)
    }

    async fn encode_all(data: &[u8]) -> Vec<u8> {
        let mut s = SnappyStream::new(Vec::new());
        s.write_all(data).await.unwrap();
        s.flush().await.unwrap();
        s.into_inner()
    }

    #[test]
    fn crc32c_known_answers() {
        assert_eq!(crc32c(b""), 0);
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62a8_ab43);
        let ascending: Vec<u8> = (0..32).collect();
        assert_eq!(crc32c(&ascending), 0x46dd_794e);
    }

    #[test]
    fn crc32c_slicing_matches_bytewise() {
        let data = sample_data(1000, 3);
        for len in 0..40 {
            let mut crc = !0u32;
            for &b in &data[..len] {
                crc = CRC32C_TABLES[0][((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
            }
            assert_eq!(crc32c(&data[..len]), !crc, "len {len}");
        }
    }

    #[test]
    fn masked_crc_of_go_example() {
        // golang/snappy's `crc("")` is the mask alone.
        assert_eq!(masked_crc32c(b""), 0xa282_ead8);
    }

    #[test]
    fn max_compressed_block_matches_snap() {
        assert_eq!(MAX_COMPRESSED_BLOCK, max_compress_len(MAX_BLOCK));
    }

    #[tokio::test]
    async fn stream_identifier_is_written_once() {
        let mut s = SnappyStream::new(Vec::new());
        s.write_all(b"one").await.unwrap();
        s.flush().await.unwrap();
        s.write_all(b"two").await.unwrap();
        s.flush().await.unwrap();
        let wire = s.into_inner();
        assert!(wire.starts_with(&STREAM_ID));
        assert_eq!(wire.windows(6).filter(|w| w == b"sNaPpY").count(), 1);
        let mut expected = STREAM_ID.to_vec();
        expected.extend(data_chunk(CHUNK_UNCOMPRESSED, b"one"));
        expected.extend(data_chunk(CHUNK_UNCOMPRESSED, b"two"));
        assert_eq!(wire, expected);
    }

    #[tokio::test]
    async fn nothing_is_written_before_data() {
        let mut s = SnappyStream::new(Vec::new());
        s.flush().await.unwrap();
        assert!(s.get_ref().is_empty());
    }

    #[tokio::test]
    async fn compressible_data_is_compressed_in_64k_chunks() {
        let data = vec![b'a'; 200_000];
        let wire = encode_all(&data).await;
        assert!(wire.len() < 20_000, "{} bytes", wire.len());
        let mut pos = STREAM_ID.len();
        let mut chunks = 0;
        while pos < wire.len() {
            assert_eq!(wire[pos], CHUNK_COMPRESSED);
            let len = usize::from(wire[pos + 1])
                | usize::from(wire[pos + 2]) << 8
                | usize::from(wire[pos + 3]) << 16;
            pos += HEADER_LEN + len;
            chunks += 1;
        }
        assert_eq!(chunks, 4); // 65536 * 3 + 3392
        assert_eq!(decode_all(&wire).await.unwrap(), data);
    }

    #[tokio::test]
    async fn writes_emit_at_64k_without_flush() {
        let mut s = SnappyStream::new(Vec::new());
        // Below the high-water mark nothing reaches the inner stream.
        s.write_all(&sample_data(1000, 1)).await.unwrap();
        assert!(s.get_ref().is_empty());
        // Incompressible data: each 64 KiB chunk is ~64 KiB, so the pending output passes the
        // high-water mark and is written without a flush.
        s.write_all(&sample_data(3 * MAX_BLOCK, 2)).await.unwrap();
        assert!(!s.get_ref().is_empty());
    }

    #[tokio::test]
    async fn reads_every_chunk_kind() {
        let mut wire = STREAM_ID.to_vec();
        wire.extend(data_chunk(CHUNK_COMPRESSED, b"compressed "));
        wire.extend(chunk(0xfe, &[0; 7])); // padding
        wire.extend(data_chunk(CHUNK_UNCOMPRESSED, b"uncompressed "));
        wire.extend(chunk(0x80, &[1; 300_000])); // skippable, larger than any buffer
        wire.extend(chunk(0xfd, b""));
        wire.extend_from_slice(&STREAM_ID); // concatenated streams repeat it
        wire.extend(data_chunk(CHUNK_COMPRESSED, b""));
        wire.extend(data_chunk(CHUNK_UNCOMPRESSED, b"end"));
        assert_eq!(
            decode_all(&wire).await.unwrap(),
            b"compressed uncompressed end"
        );
    }

    #[tokio::test]
    async fn empty_stream_is_clean_eof() {
        assert_eq!(decode_all(b"").await.unwrap(), b"");
        assert_eq!(decode_all(&STREAM_ID).await.unwrap(), b"");
    }

    async fn expect_invalid(wire: &[u8], needle: &str) {
        let err = decode_all(wire).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert!(err.to_string().contains(needle), "{err}");
    }

    #[tokio::test]
    async fn corrupt_checksum_is_invalid_data() {
        for kind in [CHUNK_COMPRESSED, CHUNK_UNCOMPRESSED] {
            let mut wire = STREAM_ID.to_vec();
            let mut c = data_chunk(kind, b"hello hello hello hello");
            c[HEADER_LEN] ^= 1;
            wire.extend(c);
            expect_invalid(&wire, "checksum").await;
        }
        // The data itself corrupted, checksum intact.
        let mut wire = STREAM_ID.to_vec();
        let mut c = data_chunk(CHUNK_UNCOMPRESSED, b"hello");
        let last = c.len() - 1;
        c[last] ^= 0x20;
        wire.extend(c);
        expect_invalid(&wire, "checksum").await;
    }

    #[tokio::test]
    async fn unknown_unskippable_chunk_is_invalid_data() {
        for kind in [0x02, 0x42, 0x7f] {
            let mut wire = STREAM_ID.to_vec();
            wire.extend(chunk(kind, b"x"));
            expect_invalid(&wire, "unskippable").await;
        }
    }

    #[tokio::test]
    async fn oversized_chunk_is_rejected_before_its_data() {
        // Only the header is present: the length alone must be refused.
        let mut wire = STREAM_ID.to_vec();
        wire.extend_from_slice(&[CHUNK_COMPRESSED, 0xff, 0xff, 0xff]);
        expect_invalid(&wire, "exceeds").await;

        let mut wire = STREAM_ID.to_vec();
        wire.extend(chunk(
            CHUNK_UNCOMPRESSED,
            &vec![0; MAX_UNCOMPRESSED_CHUNK + 1],
        ));
        expect_invalid(&wire, "exceeds").await;

        // The largest legal uncompressed chunk is fine.
        let mut wire = STREAM_ID.to_vec();
        wire.extend(data_chunk(CHUNK_UNCOMPRESSED, &vec![7; MAX_BLOCK]));
        assert_eq!(decode_all(&wire).await.unwrap().len(), MAX_BLOCK);
    }

    #[tokio::test]
    async fn compressed_chunk_claiming_too_much_is_invalid_data() {
        // A raw block whose varint length says 65537 bytes.
        let plain = vec![0u8; MAX_BLOCK + 1];
        let mut body = 0u32.to_le_bytes().to_vec();
        body.extend(Encoder::new().compress_vec(&plain).unwrap());
        let mut wire = STREAM_ID.to_vec();
        wire.extend(chunk(CHUNK_COMPRESSED, &body));
        expect_invalid(&wire, "more than").await;
    }

    #[tokio::test]
    async fn garbage_compressed_block_is_invalid_data() {
        let mut wire = STREAM_ID.to_vec();
        wire.extend(chunk(CHUNK_COMPRESSED, &[0, 0, 0, 0, 0x05, 0xff, 0xff]));
        expect_invalid(&wire, "corrupt").await;
    }

    #[tokio::test]
    async fn bad_stream_start_is_invalid_data() {
        expect_invalid(&data_chunk(CHUNK_UNCOMPRESSED, b"x"), "stream identifier").await;
        expect_invalid(b"\xff\x06\x00\x00sNaPpX", "stream identifier").await;
        expect_invalid(b"\xff\x05\x00\x00sNaPp", "stream identifier").await;
        let mut short = STREAM_ID.to_vec();
        short.extend(chunk(CHUNK_UNCOMPRESSED, b"abc"));
        expect_invalid(&short, "too short").await;
    }

    #[tokio::test]
    async fn errors_stick() {
        let mut wire = STREAM_ID.to_vec();
        wire.extend(chunk(0x02, b""));
        let mut s = SnappyStream::new(&wire[..]);
        let mut buf = [0u8; 8];
        assert!(s.read(&mut buf).await.is_err());
        let err = s.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn truncated_stream_is_unexpected_eof() {
        let wire = encode_all(b"some data that will be cut").await;
        for cut in [3, STREAM_ID.len() + 2, wire.len() - 1] {
            let err = decode_all(&wire[..cut]).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "cut at {cut}");
        }
        // Cut inside a skippable chunk too.
        let mut wire = STREAM_ID.to_vec();
        wire.extend(chunk(0x99, &[0; 100]));
        let err = decode_all(&wire[..wire.len() - 1]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn small_reads_of_a_large_chunk() {
        let data = sample_data(3 * MAX_BLOCK, 9);
        let wire = encode_all(&data).await;
        let mut s = SnappyStream::new(&wire[..]);
        let mut out = Vec::new();
        let mut buf = [0u8; 3];
        loop {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, data);
    }

    #[tokio::test]
    async fn roundtrip_small_writes() {
        test_util::roundtrip_small_writes(SnappyStream::new).await;
    }

    #[tokio::test]
    async fn roundtrip_large_writes() {
        test_util::roundtrip_large_writes(SnappyStream::new).await;
    }

    #[tokio::test]
    async fn roundtrip_many_flushes() {
        test_util::roundtrip_many_flushes(SnappyStream::new).await;
    }

    #[tokio::test]
    async fn roundtrip_tiny_pieces() {
        test_util::roundtrip_tiny_pieces(SnappyStream::new).await;
    }

    #[tokio::test]
    async fn flush_delivers_without_shutdown() {
        test_util::flush_delivers_without_shutdown(SnappyStream::new).await;
    }

    #[tokio::test]
    async fn both_directions_at_once() {
        test_util::both_directions(SnappyStream::new).await;
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let mut wire = STREAM_ID.to_vec();
            wire.extend(tail);
            let _ = futures::executor::block_on(decode_all(&wire));
        }

        #[test]
        fn arbitrary_chunks_never_panic(
            chunks in proptest::collection::vec(
                (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..64)), 0..8)
        ) {
            let mut wire = STREAM_ID.to_vec();
            for (kind, body) in chunks {
                wire.extend(chunk(kind, &body));
            }
            let _ = futures::executor::block_on(decode_all(&wire));
        }

        #[test]
        fn roundtrip_any_split(
            data in proptest::collection::vec(any::<u8>(), 0..5000),
            split in 1usize..200,
        ) {
            let wire = futures::executor::block_on(async {
                let mut s = SnappyStream::new(Vec::new());
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
