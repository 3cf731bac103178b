//! go-nsq's `tls_*` options as an `nsq_client::TlsConfig`: the CA file to trust instead of the
//! system roots, a client certificate, or no verification at all.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use nsq_client::TlsConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// The `tls_*` options given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TlsSettings {
    /// `tls_root_ca_file`: PEM CA certificates trusted instead of the system's.
    pub(crate) root_ca_file: Option<PathBuf>,
    /// `tls_insecure_skip_verify`: no verification of nsqd's certificate.
    pub(crate) insecure_skip_verify: bool,
    /// `tls_cert`: the client certificate chain (PEM).
    pub(crate) cert_file: Option<PathBuf>,
    /// `tls_key`: the client certificate's key (PEM).
    pub(crate) key_file: Option<PathBuf>,
    /// `tls_min_version`: accepted for go-nsq's sake; rustls never goes below TLS 1.2.
    pub(crate) min_version: Option<String>,
}

/// Why the TLS options could not be turned into a configuration.
///
/// ```
/// # fn show(e: &nsq_tools::tls::TlsError) { eprintln!("{e}"); }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read or holds nothing usable.
    #[error("tls: {path}: {why}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
    /// `tls_cert` without `tls_key`, or the other way round.
    #[error("tls: tls_cert and tls_key go together; only {0} was given")]
    HalfClientCert(&'static str),
    /// rustls refused the settings.
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The one place where the options become a [`TlsConfig`].
///
/// nsq-client is to gain `TlsConfig::builder()`; with it this function becomes:
///
/// ```text
/// let mut b = TlsConfig::builder();
/// if let Some(ca) = &s.root_ca_file { b = b.ca_file(ca) }
/// if let (Some(cert), Some(key)) = (&s.cert_file, &s.key_file) { b = b.client_cert_files(cert, key) }
/// if s.insecure_skip_verify { b = b.danger_accept_invalid_certs() }
/// b.build()
/// ```
///
/// Until then it builds the rustls configuration itself, with the same meaning.
pub(crate) fn client_config(s: &TlsSettings) -> Result<TlsConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = if s.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
    } else {
        builder.with_root_certificates(roots(s.root_ca_file.as_deref())?)
    };
    let config = match (&s.cert_file, &s.key_file) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| file_error(cert, e))?;
            if chain.is_empty() {
                return Err(file_error(cert, "no certificate in the file"));
            }
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| file_error(key, e))?;
            builder.with_client_auth_cert(chain, key)?
        }
        (Some(_), None) => return Err(TlsError::HalfClientCert("tls_cert")),
        (None, Some(_)) => return Err(TlsError::HalfClientCert("tls_key")),
        (None, None) => builder.with_no_client_auth(),
    };
    Ok(TlsConfig::new(Arc::new(config)))
}

/// The CA file's certificates, or the system's when there is none.
fn roots(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| file_error(path, e))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(file_error(path, "no CA certificate in the file"));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for error in &found.errors {
                tracing::debug!(%error, "reading the system's root certificates");
            }
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::warn!(
                    "no system root certificates found; give tls_root_ca_file to trust a CA"
                );
            }
        }
    }
    Ok(roots)
}

fn file_error(path: &Path, why: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        why: why.to_string(),
    }
}

/// `tls_insecure_skip_verify`: any certificate, any name. Signatures are still checked, so
/// the handshake is sound, only not authenticated.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
