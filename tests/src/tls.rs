//! Throwaway TLS material for brokers under test: a CA, a server certificate for
//! `localhost` and `127.0.0.1` and a client certificate, both signed by it, written as PEM
//! files to a temporary directory that is removed on drop; and rustls client configurations
//! (ring provider) that trust the CA.

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

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
    /// A client certificate (CN `nsq-tests client`), for brokers that require one.
    pub client_cert: PathBuf,
    /// The client certificate's key.
    pub client_key: PathBuf,
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

        let client_key = KeyPair::generate().expect("client key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        params
            .distinguished_name
            .push(DnType::CommonName, "nsq-tests client");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client = params
            .signed_by(&client_key, &ca, &ca_key)
            .expect("client certificate");

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
            client_cert: write("client.pem", client.pem()),
            client_key: write("client.key", client_key.serialize_pem()),
            dir,
        }
    }

    /// A rustls client configuration (ring provider) that trusts only this CA, without a
    /// client certificate.
    ///
    /// # Panics
    ///
    /// When the files cannot be read.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        Arc::new(self.client_builder().with_no_client_auth())
    }

    /// Like [`client_config`](Self::client_config), presenting the client certificate.
    ///
    /// # Panics
    ///
    /// When the files cannot be read or rustls refuses the key.
    pub fn client_config_with_cert(&self) -> Arc<rustls::ClientConfig> {
        let chain = vec![CertificateDer::from_pem_file(&self.client_cert).expect("client cert")];
        let key = PrivateKeyDer::from_pem_file(&self.client_key).expect("client key");
        Arc::new(
            self.client_builder()
                .with_client_auth_cert(chain, key)
                .expect("client certificate accepted"),
        )
    }

    fn client_builder(
        &self,
    ) -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(&self.ca_cert).expect("CA certificate"))
            .expect("CA added to the roots");
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("default protocol versions")
        .with_root_certificates(roots)
    }
}

impl Drop for TestCerts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
