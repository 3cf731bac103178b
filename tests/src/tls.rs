//! Throwaway TLS material for brokers under test: a CA and a server certificate for
//! `localhost` and `127.0.0.1` signed by it, written as PEM files to a temporary
//! directory that is removed on drop.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

/// The name clients verify the server certificate against.
pub const SERVER_NAME: &str = "localhost";

/// PEM files of a fresh CA and of a server certificate (and key) it signed.
#[derive(Debug)]
pub struct TestCerts {
    dir: PathBuf,
    /// The CA certificate clients trust.
    pub ca_cert: PathBuf,
    /// The server certificate (`nsqd --tls-cert`).
    pub server_cert: PathBuf,
    /// The server key (`nsqd --tls-key`).
    pub server_key: PathBuf,
}

impl TestCerts {
    /// Generates the certificates into a new directory under the system temp dir.
    ///
    /// # Panics
    ///
    /// When generating or writing them fails.
    pub fn generate() -> Self {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "nsq-rs test CA");
        let ca = ca_params.self_signed(&ca_key).expect("self-signed CA");

        let key = KeyPair::generate().expect("server key");
        // Both names: clients that cannot set a server name verify the connect host.
        let mut params =
            CertificateParams::new(vec![SERVER_NAME.to_owned(), "127.0.0.1".to_owned()])
                .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, SERVER_NAME);
        let cert = params
            .signed_by(&key, &ca, &ca_key)
            .expect("server certificate");

        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "nsq-rs-tls-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create TLS dir");
        let write = |name: &str, pem: String| {
            let path = dir.join(name);
            std::fs::write(&path, pem).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
            path
        };
        Self {
            ca_cert: write("ca.pem", ca.pem()),
            server_cert: write("server.pem", cert.pem()),
            server_key: write("server.key", key.serialize_pem()),
            dir,
        }
    }
}

impl Drop for TestCerts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
