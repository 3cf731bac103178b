//! The buffering shared by the compression layers.
//!
//! A [`Codec`] only turns bytes into bytes; an [`Engine`] owns the bounded buffers and drives a
//! codec against an inner stream. `SnappyStream` and `DeflateStream` are an inner stream plus an
//! engine, and [`compressed_stream_io!`] gives both the same `AsyncRead`/`AsyncWrite` impls.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Compressed output is written to the inner stream once this much is pending (and on flush).
const WRITE_HIGH_WATER: usize = 64 * 1024;

/// At most this much of the caller's read buffer is handed to a decoder at once, which bounds the
/// zeroing `ReadBuf::initialize_unfilled_to` does. It is at least one snappy block.
const MAX_DECODE_OUT: usize = 64 * 1024;

/// Progress made by one [`Codec::decode`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Progress {
    /// Compressed input bytes used up.
    pub(crate) consumed: usize,
    /// Plaintext bytes written to the output slice.
    pub(crate) produced: usize,
}

/// A compressor and a decompressor for one direction each of a stream.
pub(crate) trait Codec {
    /// Size of the compressed-input buffer. Once this many bytes are buffered, `decode` must make
    /// progress or fail: it is the largest unit the codec ever needs whole.
    const READ_BUF: usize;

    /// Takes a prefix of `input` (non-empty) and may append compressed bytes to `out`.
    /// Returns how much of `input` was taken. A call that takes nothing must append something.
    fn encode(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<usize>;

    /// Appends what the peer needs to decode everything taken so far. Returns `true` when that is
    /// complete; `false` asks to be called again once `out` has been written. Calling it again with
    /// nothing new taken appends nothing.
    fn flush(&mut self, out: &mut Vec<u8>) -> io::Result<bool>;

    /// Like [`Codec::flush`], and also ends the compressed stream where the format has an end.
    fn finish(&mut self, out: &mut Vec<u8>) -> io::Result<bool>;

    /// Decodes from `input` into `out` (non-empty). Nothing consumed and nothing produced means
    /// "need more input". Errors are `InvalidData`.
    fn decode(&mut self, input: &[u8], out: &mut [u8]) -> io::Result<Progress>;

    /// The compressed stream has ended (further input is ignored).
    fn decode_finished(&self) -> bool;

    /// An end of the inner stream now would be a clean end (no partial unit pending).
    fn at_boundary(&self) -> bool;
}

/// Bounded read and write buffers plus a codec; the IO-free half of a compressed stream.
pub(crate) struct Engine<C> {
    codec: C,
    /// Compressed input, valid in `rbuf[rstart..rend]`; allocated on first read.
    rbuf: Box<[u8]>,
    rstart: usize,
    rend: usize,
    /// The inner stream reported end of file.
    reof: bool,
    /// A decode error happened; the stream cannot be resynchronised.
    rfailed: bool,
    /// Compressed output, pending in `wbuf[wpos..]`.
    wbuf: Vec<u8>,
    wpos: usize,
}

impl<C> fmt::Debug for Engine<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("read_buffered", &(self.rend - self.rstart))
            .field("read_eof", &self.reof)
            .field("write_pending", &(self.wbuf.len() - self.wpos))
            .finish_non_exhaustive()
    }
}

impl<C: Codec> Engine<C> {
    pub(crate) fn new(codec: C) -> Self {
        Self {
            codec,
            rbuf: Box::default(),
            rstart: 0,
            rend: 0,
            reof: false,
            rfailed: false,
            wbuf: Vec::new(),
            wpos: 0,
        }
    }

    pub(crate) fn poll_read<S: AsyncRead + Unpin>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.rfailed {
            return Poll::Ready(Err(invalid_data(
                "compressed stream is unusable after an earlier decode error",
            )));
        }
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if self.rbuf.is_empty() {
            self.rbuf = vec![0; C::READ_BUF].into_boxed_slice();
        }
        loop {
            let want = buf.remaining().min(MAX_DECODE_OUT);
            let out = buf.initialize_unfilled_to(want);
            let progress = match self.codec.decode(&self.rbuf[self.rstart..self.rend], out) {
                Ok(progress) => progress,
                Err(e) => {
                    self.rfailed = true;
                    return Poll::Ready(Err(e));
                }
            };
            // A decoder never reports more than it was given; `min` keeps a bug from panicking.
            self.rstart = (self.rstart + progress.consumed).min(self.rend);
            if progress.produced > 0 {
                buf.advance(progress.produced.min(want));
                return Poll::Ready(Ok(()));
            }
            if self.codec.decode_finished() {
                return Poll::Ready(Ok(()));
            }
            if progress.consumed > 0 {
                continue;
            }
            // The decoder needs more input.
            if self.reof {
                if self.rstart == self.rend && self.codec.at_boundary() {
                    return Poll::Ready(Ok(()));
                }
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "compressed stream ended in the middle of a chunk",
                )));
            }
            if self.rstart == self.rend {
                self.rstart = 0;
                self.rend = 0;
            } else if self.rend == self.rbuf.len() {
                self.rbuf.copy_within(self.rstart..self.rend, 0);
                self.rend -= self.rstart;
                self.rstart = 0;
            }
            if self.rend == self.rbuf.len() {
                self.rfailed = true;
                return Poll::Ready(Err(invalid_data(
                    "compressed unit does not fit the read buffer",
                )));
            }
            let mut space = ReadBuf::new(&mut self.rbuf[self.rend..]);
            ready!(Pin::new(&mut *io).poll_read(cx, &mut space))?;
            let n = space.filled().len();
            if n == 0 {
                self.reof = true;
            } else {
                self.rend += n;
            }
        }
    }

    pub(crate) fn poll_write<S: AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            if self.wbuf.len() - self.wpos >= WRITE_HIGH_WATER {
                ready!(self.poll_drain(io, cx, WRITE_HIGH_WATER - 1))?;
            }
            if self.wpos > 0 {
                self.wbuf.drain(..self.wpos);
                self.wpos = 0;
            }
            let before = self.wbuf.len();
            let taken = self.codec.encode(data, &mut self.wbuf)?;
            if taken > 0 {
                return Poll::Ready(Ok(taken.min(data.len())));
            }
            if self.wbuf.len() == before {
                return Poll::Ready(Err(io::Error::other("compressor made no progress")));
            }
        }
    }

    pub(crate) fn poll_flush<S: AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        ready!(self.poll_drain_codec(io, cx, C::flush))?;
        Pin::new(io).poll_flush(cx)
    }

    pub(crate) fn poll_shutdown<S: AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        ready!(self.poll_drain_codec(io, cx, C::finish))?;
        ready!(Pin::new(&mut *io).poll_flush(cx))?;
        Pin::new(io).poll_shutdown(cx)
    }

    /// Runs `step` (flush or finish) until it is complete and everything is written.
    fn poll_drain_codec<S: AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
        step: fn(&mut C, &mut Vec<u8>) -> io::Result<bool>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.poll_drain(io, cx, 0))?;
            let done = step(&mut self.codec, &mut self.wbuf)?;
            if done && self.wbuf.is_empty() {
                return Poll::Ready(Ok(()));
            }
        }
    }

    /// Writes pending output until at most `keep` bytes are pending.
    fn poll_drain<S: AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
        keep: usize,
    ) -> Poll<io::Result<()>> {
        while self.wbuf.len() - self.wpos > keep {
            let n = ready!(Pin::new(&mut *io).poll_write(cx, &self.wbuf[self.wpos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.wpos = (self.wpos + n).min(self.wbuf.len());
        }
        if self.wpos == self.wbuf.len() {
            self.wbuf.clear();
            self.wpos = 0;
        }
        Poll::Ready(Ok(()))
    }
}

/// An `InvalidData` error with a message.
pub(crate) fn invalid_data(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// `AsyncRead` and `AsyncWrite` for a struct with fields `inner: S` and `engine: Engine<_>`.
macro_rules! compressed_stream_io {
    ($name:ident) => {
        impl<S: ::tokio::io::AsyncRead + Unpin> ::tokio::io::AsyncRead for $name<S> {
            fn poll_read(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                buf: &mut ::tokio::io::ReadBuf<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                let this = self.get_mut();
                this.engine.poll_read(&mut this.inner, cx, buf)
            }
        }

        impl<S: ::tokio::io::AsyncWrite + Unpin> ::tokio::io::AsyncWrite for $name<S> {
            fn poll_write(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                buf: &[u8],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                let this = self.get_mut();
                this.engine.poll_write(&mut this.inner, cx, buf)
            }

            fn poll_flush(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                let this = self.get_mut();
                this.engine.poll_flush(&mut this.inner, cx)
            }

            fn poll_shutdown(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                let this = self.get_mut();
                this.engine.poll_shutdown(&mut this.inner, cx)
            }
        }
    };
}
pub(crate) use compressed_stream_io;
