//! Round-trip scenarios shared by the snappy and deflate tests, and TLS test configs.

#[cfg(feature = "tls")]
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};

/// A self-signed certificate for `host`, a server config serving it and a client config
/// trusting it.
#[cfg(feature = "tls")]
pub(crate) fn tls_configs(host: &str) -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let cert = rcgen::generate_simple_self_signed(vec![host.to_string()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

/// Deterministic test data: runs of text (compressible) mixed with noise (incompressible).
pub(crate) fn sample_data(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let r = next();
        let run = 1 + (r >> 8) as usize % 3000;
        if r & 1 == 0 {
            out.extend((0..run).map(|_| next() as u8));
        } else {
            let text = b"PUB events {\"user\":42,\"action\":\"click\"}\n";
            out.extend(text.iter().cycle().take(run));
        }
    }
    out.truncate(len);
    out
}

/// Writes `data` through `wrap(a)` in pieces of `write_size`, flushing every `flush_every`
/// pieces, then shuts down; reads everything from `wrap(b)` with a `read_size` buffer.
pub(crate) async fn roundtrip<T, F>(
    wrap: F,
    data: Vec<u8>,
    duplex_capacity: usize,
    write_size: usize,
    flush_every: usize,
    read_size: usize,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(DuplexStream) -> T,
{
    let (a, b) = tokio::io::duplex(duplex_capacity);
    let mut writer = wrap(a);
    let mut reader = wrap(b);
    let expected = data.clone();
    let write = tokio::spawn(async move {
        for (i, piece) in data.chunks(write_size).enumerate() {
            writer.write_all(piece).await.unwrap();
            if (i + 1) % flush_every == 0 {
                writer.flush().await.unwrap();
            }
        }
        writer.shutdown().await.unwrap();
    });
    let mut got = Vec::with_capacity(expected.len());
    let mut buf = vec![0u8; read_size];
    loop {
        let n = reader.read(&mut buf).await.unwrap();
        assert!(n <= read_size);
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    write.await.unwrap();
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "data differs");
}

pub(crate) async fn roundtrip_small_writes<T, F>(wrap: F)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(DuplexStream) -> T,
{
    roundtrip(wrap, sample_data(20_000, 1), 4096, 7, 10, 4096).await;
}

pub(crate) async fn roundtrip_large_writes<T, F>(wrap: F)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(DuplexStream) -> T,
{
    // Over 1 MiB in a single write, and in 300 KiB writes.
    let data = sample_data(3 * 1024 * 1024 + 17, 2);
    roundtrip(&wrap, data.clone(), 64 * 1024, data.len(), 1, 64 * 1024).await;
    roundtrip(&wrap, data, 16 * 1024, 300 * 1024, 2, 100_000).await;
}

pub(crate) async fn roundtrip_many_flushes<T, F>(wrap: F)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(DuplexStream) -> T,
{
    roundtrip(wrap, sample_data(30_000, 3), 8192, 3, 1, 1000).await;
}

pub(crate) async fn roundtrip_tiny_pieces<T, F>(wrap: F)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(DuplexStream) -> T,
{
    // The pipe carries one byte at a time and the reader asks for one byte at a time.
    roundtrip(&wrap, sample_data(150_000, 4), 1, 5000, 3, 1).await;
    roundtrip(&wrap, sample_data(20_000, 5), 1, 1, 100, 7).await;
}

/// A flush alone (no shutdown, no more writes) makes everything written so far readable.
pub(crate) async fn flush_delivers_without_shutdown<T, F>(wrap: F)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(DuplexStream) -> T,
{
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (mut a, mut b) = (wrap(a), wrap(b));
    for round in 0..50u32 {
        let msg = format!("message {round}\n").repeat(round as usize + 1);
        a.write_all(msg.as_bytes()).await.unwrap();
        a.flush().await.unwrap();
        let mut got = vec![0u8; msg.len()];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(got, msg.as_bytes());
    }
}

/// Both ends write and read concurrently over the same duplex.
pub(crate) async fn both_directions<T, F>(wrap: F)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(DuplexStream) -> T,
{
    let (a, b) = tokio::io::duplex(1024);
    let (a, b) = (wrap(a), wrap(b));
    let a_data = sample_data(500_000, 6);
    let b_data = sample_data(400_000, 7);
    let run = |stream: T, send: Vec<u8>, expect: Vec<u8>| async move {
        let (mut r, mut w) = tokio::io::split(stream);
        let writer = async move {
            w.write_all(&send).await.unwrap();
            w.shutdown().await.unwrap();
        };
        let reader = async move {
            let mut got = Vec::new();
            r.read_to_end(&mut got).await.unwrap();
            assert!(got == expect, "data differs");
        };
        tokio::join!(writer, reader);
    };
    let one = tokio::spawn(run(a, a_data.clone(), b_data.clone()));
    run(b, b_data, a_data).await;
    one.await.unwrap();
}
