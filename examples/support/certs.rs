//! Throwaway certificates for the TLS examples: a CA, and a server certificate for
//! `localhost` and `127.0.0.1` signed by it, written as PEM files into a temporary directory
//! (the files an operator would hand out). The directory is removed on drop.

use std::path::PathBuf;

use std::sync::Arc;

use nsq_server_lite::tls::{server_config, ClientAuth, TlsError};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

/// PEM files of a fresh CA and of a server certificate it signed.
pub(crate) struct Certs {
    dir: PathBuf,
    /// The CA certificate clients trust (`TlsConfig::builder().ca_file(..)`).
    pub(crate) ca: PathBuf,
    /// The server's certificate.
    pub(crate) server_cert: PathBuf,
    /// The server's key.
    pub(crate) server_key: PathBuf,
}

impl Certs {
    /// Generates the CA and server certificate into a new temporary directory.
    pub(crate) fn generate() -> Result<Self, Box<dyn std::error::Error>> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "example CA");
        let ca = ca_params.self_signed(&ca_key)?;

        let key = KeyPair::generate()?;
        let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        let cert = params.signed_by(&key, &ca, &ca_key)?;

        let dir = std::env::temp_dir().join(format!("nsq-example-certs-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let write = |name: &str, pem: String| -> std::io::Result<PathBuf> {
            let path = dir.join(name);
            std::fs::write(&path, pem)?;
            Ok(path)
        };
        Ok(Self {
            ca: write("ca.pem", ca.pem())?,
            server_cert: write("server.pem", cert.pem())?,
            server_key: write("server.key", key.serialize_pem())?,
            dir,
        })
    }
}

impl Certs {
    /// The broker's side: what `nsqd --tls-cert=server.pem --tls-key=server.key` loads.
    pub(crate) fn server_config(&self) -> Result<Arc<nsq_client::rustls::ServerConfig>, TlsError> {
        server_config(&self.server_cert, &self.server_key, None, ClientAuth::None)
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
