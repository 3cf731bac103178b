//! [`Rewind`]: put bytes that were read too early back in front of a stream.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A stream with a prefix that is read before the stream itself.
///
/// A codec reads ahead. When a connection is upgraded (TLS, snappy, deflate), the bytes the old
/// codec had already buffered (`FramedParts::read_buf`) belong to the new layer. `Rewind` hands
/// them out first, then reads from the wrapped stream. Writes go straight to the wrapped stream.
///
/// The wrapped stream must be [`Unpin`], as sockets, `DuplexStream` and the TLS streams are.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// use nsq_proto::stream::Rewind;
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// let (inner, mut peer) = tokio::io::duplex(64);
/// peer.write_all(b" world").await?;
/// drop(peer);
///
/// let mut stream = Rewind::with_prefix(inner, &b"hello"[..]);
/// let mut all = String::new();
/// stream.read_to_string(&mut all).await?;
/// assert_eq!(all, "hello world");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Rewind<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Rewind<S> {
    /// Wraps `inner` with nothing in front of it.
    ///
    /// # Examples
    ///
    /// ```
    /// use nsq_proto::stream::Rewind;
    ///
    /// let (inner, _peer) = tokio::io::duplex(64);
    /// let stream = Rewind::new(inner);
    /// assert!(stream.prefix().is_empty());
    /// ```
    pub fn new(inner: S) -> Self {
        Self::with_prefix(inner, Bytes::new())
    }

    /// Wraps `inner`, handing out `prefix` before anything read from `inner`.
    ///
    /// `prefix` is typically `FramedParts::read_buf` (a `BytesMut`), taken when a `Framed`
    /// is split for an upgrade.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use nsq_proto::stream::Rewind;
    ///
    /// let (inner, _peer) = tokio::io::duplex(64);
    /// let read_ahead = BytesMut::from(&b"\x16\x03\x01"[..]);
    /// let stream = Rewind::with_prefix(inner, read_ahead);
    /// assert_eq!(stream.prefix(), &b"\x16\x03\x01"[..]);
    /// ```
    pub fn with_prefix(inner: S, prefix: impl Into<Bytes>) -> Self {
        Self {
            prefix: prefix.into(),
            inner,
        }
    }

    /// The part of the prefix not read yet.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// use nsq_proto::stream::Rewind;
    /// use tokio::io::AsyncReadExt;
    ///
    /// let (inner, _peer) = tokio::io::duplex(64);
    /// let mut stream = Rewind::with_prefix(inner, &b"abc"[..]);
    /// let mut first = [0u8; 1];
    /// stream.read_exact(&mut first).await?;
    /// assert_eq!(stream.prefix(), &b"bc"[..]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// The wrapped stream.
    ///
    /// # Examples
    ///
    /// ```
    /// use nsq_proto::stream::Rewind;
    ///
    /// let stream = Rewind::new(Vec::<u8>::new());
    /// assert!(stream.get_ref().is_empty());
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped stream, mutably. Reading from it directly skips the prefix.
    ///
    /// # Examples
    ///
    /// ```
    /// use nsq_proto::stream::Rewind;
    ///
    /// let mut stream = Rewind::new(Vec::<u8>::new());
    /// stream.get_mut().extend_from_slice(b"raw");
    /// assert_eq!(stream.get_ref(), b"raw");
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Takes the wrapper apart: the wrapped stream and the part of the prefix not read yet.
    ///
    /// # Examples
    ///
    /// ```
    /// use nsq_proto::stream::Rewind;
    ///
    /// let stream = Rewind::with_prefix(Vec::<u8>::new(), &b"unread"[..]);
    /// let (inner, rest) = stream.into_inner();
    /// assert!(inner.is_empty());
    /// assert_eq!(rest, &b"unread"[..]);
    /// ```
    pub fn into_inner(self) -> (S, Bytes) {
        (self.inner, self.prefix)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.is_empty() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let n = this.prefix.len().min(buf.remaining());
        buf.put_slice(&this.prefix[..n]);
        this.prefix.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn prefix_is_read_first_even_in_tiny_reads() {
        let (inner, mut peer) = tokio::io::duplex(64);
        peer.write_all(b"-inner").await.unwrap();
        drop(peer);
        let mut stream = Rewind::with_prefix(inner, &b"prefix"[..]);
        let mut got = Vec::new();
        let mut one = [0u8; 1];
        // The first reads come only from the prefix, one byte at a time.
        for _ in 0..6 {
            assert_eq!(stream.read(&mut one).await.unwrap(), 1);
            got.push(one[0]);
        }
        assert!(stream.prefix().is_empty());
        stream.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"prefix-inner");
    }

    #[tokio::test]
    async fn a_read_never_mixes_prefix_and_inner() {
        let (inner, mut peer) = tokio::io::duplex(64);
        peer.write_all(b"inner").await.unwrap();
        let mut stream = Rewind::with_prefix(inner, &b"ab"[..]);
        let mut buf = [0u8; 16];
        assert_eq!(stream.read(&mut buf).await.unwrap(), 2);
        assert_eq!(&buf[..2], b"ab");
        assert_eq!(stream.read(&mut buf).await.unwrap(), 5);
        assert_eq!(&buf[..5], b"inner");
    }

    #[tokio::test]
    async fn empty_prefix_reads_inner() {
        let (inner, mut peer) = tokio::io::duplex(64);
        peer.write_all(b"x").await.unwrap();
        drop(peer);
        let mut stream = Rewind::new(inner);
        let mut got = Vec::new();
        stream.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"x");
    }

    #[tokio::test]
    async fn writes_pass_through() {
        let (inner, mut peer) = tokio::io::duplex(64);
        let mut stream = Rewind::with_prefix(inner, &b"unread"[..]);
        stream.write_all(b"out").await.unwrap();
        stream.flush().await.unwrap();
        stream.shutdown().await.unwrap();
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"out");
        // Writing did not touch the prefix.
        assert_eq!(stream.prefix(), b"unread");
    }

    #[tokio::test]
    async fn into_inner_returns_the_unread_prefix() {
        let (inner, _peer) = tokio::io::duplex(64);
        let mut stream = Rewind::with_prefix(inner, &b"abcdef"[..]);
        let mut two = [0u8; 2];
        stream.read_exact(&mut two).await.unwrap();
        let (_inner, rest) = stream.into_inner();
        assert_eq!(rest, &b"cdef"[..]);
    }
}
