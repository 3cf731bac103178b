//! TLS for the broker from PEM files, the way nsqd's `--tls-*` flags describe it.
//!
//! ```no_run
//! use nsq_server_lite::tls::{server_config, ClientAuth};
//! use std::path::Path;
//!
//! let config = server_config(Path::new("cert.pem"), Path::new("key.pem"), None, ClientAuth::None)?;
//! let builder = nsq_server_lite::Nsqd::builder().tls(config);
//! # let _ = builder;
//! # Ok::<(), nsq_server_lite::tls::TlsError>(())
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// What the broker asks of client certificates (`--tls-client-auth-policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// No client certificate is asked for; with a root CA, one that is given is verified
    /// (nsqd's default).
    #[default]
    None,
    /// A client certificate is required and verified against the root CA (`require-verify`;
    /// nsqd's `require`, which accepts any certificate, is treated the same here).
    RequireVerify,
}

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or held nothing usable.
    #[error("cannot read {what} from {path}: {reason}")]
    File {
        /// `certificate`, `private key` or `root CA`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the combination.
    #[error("invalid TLS configuration: {0}")]
    Config(String),
}

fn file_error(what: &'static str, path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        what,
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(what, path, e))?;
    if certs.is_empty() {
        return Err(file_error(what, path, "no certificate in the file"));
    }
    Ok(certs)
}

/// A server configuration from a certificate chain, its key and optionally a root CA for
/// client certificates.
///
/// # Errors
///
/// [`TlsError`] when a file cannot be read or rustls refuses the configuration.
pub fn server_config(
    cert: &Path,
    key: &Path,
    root_ca: Option<&Path>,
    client_auth: ClientAuth,
) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates("certificate", cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| file_error("private key", key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match (root_ca, client_auth) {
        (None, ClientAuth::None) => builder.with_no_client_auth(),
        (None, ClientAuth::RequireVerify) => {
            return Err(TlsError::Config(
                "requiring client certificates needs a root CA (--tls-root-ca-file)".to_owned(),
            ))
        }
        (Some(ca), policy) => {
            let mut roots = RootCertStore::empty();
            for c in certificates("root CA", ca)? {
                roots.add(c).map_err(|e| file_error("root CA", ca, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if policy == ClientAuth::None {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(Arc::new(config))
}
