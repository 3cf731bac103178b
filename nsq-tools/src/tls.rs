//! go-nsq's `tls_*` options as an `nsq_client::TlsConfig`: the CA file to trust instead of the
//! system roots, a client certificate, or no verification at all.

use std::path::PathBuf;

use nsq_client::TlsConfig;

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
    /// `tls_cert` without `tls_key`, or the other way round.
    #[error("tls: tls_cert and tls_key go together; only {0} was given")]
    HalfClientCert(&'static str),
    /// A file could not be read, holds nothing usable, or rustls refused it.
    #[error("tls: {0}")]
    Config(#[from] nsq_client::TlsConfigError),
}

/// The one place where the options become a [`TlsConfig`].
pub(crate) fn client_config(s: &TlsSettings) -> Result<TlsConfig, TlsError> {
    let mut builder = TlsConfig::builder();
    if let Some(ca) = &s.root_ca_file {
        builder = builder.ca_file(ca);
    }
    match (&s.cert_file, &s.key_file) {
        (Some(cert), Some(key)) => builder = builder.client_cert_files(cert, key),
        (Some(_), None) => return Err(TlsError::HalfClientCert("tls_cert")),
        (None, Some(_)) => return Err(TlsError::HalfClientCert("tls_key")),
        (None, None) => {}
    }
    if s.insecure_skip_verify {
        builder = builder.danger_accept_invalid_certs();
    }
    if let Some(version) = &s.min_version {
        tracing::debug!("tls_min_version {version}: TLS 1.2 is the least rustls speaks anyway");
    }
    Ok(builder.build()?)
}
