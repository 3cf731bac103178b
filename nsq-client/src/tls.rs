//! TLS to nsqd: which certificates to trust, which to present, which name to check, built
//! from PEM files (or PEM in memory) without writing rustls code, or from a rustls
//! configuration for everything else.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// TLS for connections to nsqd: the rustls client configuration (what to trust, what to
/// present) and the name to verify when it is not the host connected to.
///
/// Most users build it with [`TlsConfig::builder`] from the files nsqd's operators hand
/// out; [`TlsConfig::new`] takes a rustls configuration for anything the builder does not
/// cover. The same configuration serves `https://` nsqlookupd addresses.
///
/// ```no_run
/// use nsq_client::{ConnectionConfig, TlsConfig};
///
/// let tls = TlsConfig::builder()
///     .ca_file("/etc/nsq/ca.pem")
///     .client_cert_files("/etc/nsq/client.pem", "/etc/nsq/client.key")
///     .server_name("nsqd.internal")
///     .build()?;
/// let config = ConnectionConfig::default().tls(tls);
/// # let _ = config;
/// # Ok::<(), nsq_client::TlsConfigError>(())
/// ```
#[derive(Clone)]
pub struct TlsConfig {
    pub(crate) config: Arc<rustls::ClientConfig>,
    pub(crate) server_name: Option<String>,
    verification: Verification,
}

/// How the server's certificate is checked, for `Debug`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verification {
    /// Against the system's trusted roots.
    SystemRoots,
    /// Against the CA certificates given.
    GivenRoots,
    /// Not at all.
    Off,
    /// As the user's rustls configuration says.
    Custom,
}

impl TlsConfig {
    /// A builder starting from go-nsq's defaults: the system's trusted roots, no client
    /// certificate, the connect host as the name to verify.
    ///
    /// ```no_run
    /// let tls = nsq_client::TlsConfig::builder().build()?;
    /// # let _ = tls;
    /// # Ok::<(), nsq_client::TlsConfigError>(())
    /// ```
    pub fn builder() -> TlsConfigBuilder {
        TlsConfigBuilder::default()
    }

    /// TLS with this rustls configuration; certificates are verified as it says (on, unless
    /// the configuration was built to skip it).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use nsq_client::rustls;
    ///
    /// let provider = Arc::new(rustls::crypto::ring::default_provider());
    /// let config = rustls::ClientConfig::builder_with_provider(provider)
    ///     .with_safe_default_protocol_versions()?
    ///     .with_root_certificates(rustls::RootCertStore::empty())
    ///     .with_no_client_auth();
    /// let tls = nsq_client::TlsConfig::new(Arc::new(config));
    /// # let _ = tls;
    /// # Ok::<(), rustls::Error>(())
    /// ```
    pub fn new(config: Arc<rustls::ClientConfig>) -> Self {
        Self {
            config,
            server_name: None,
            verification: Verification::Custom,
        }
    }

    /// The name to verify the certificate against (default: the host connected to).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use nsq_client::rustls;
    /// # let provider = Arc::new(rustls::crypto::ring::default_provider());
    /// # let config = rustls::ClientConfig::builder_with_provider(provider)
    /// #     .with_safe_default_protocol_versions().unwrap()
    /// #     .with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth();
    /// let tls = nsq_client::TlsConfig::new(Arc::new(config)).server_name("nsqd-1.internal");
    /// # let _ = tls;
    /// ```
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Whether this configuration checks the server's certificate: false only after
    /// [`TlsConfigBuilder::danger_accept_invalid_certs`].
    ///
    /// ```no_run
    /// let tls = nsq_client::TlsConfig::builder().build()?;
    /// assert!(tls.verifies_certificates());
    /// # Ok::<(), nsq_client::TlsConfigError>(())
    /// ```
    pub fn verifies_certificates(&self) -> bool {
        self.verification != Verification::Off
    }
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("verification", &self.verification)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// Where PEM text comes from: a file, read by [`TlsConfigBuilder::build`], or memory.
#[derive(Clone)]
enum Pem {
    File(PathBuf),
    Memory(Arc<[u8]>),
}

impl Pem {
    fn origin(&self) -> String {
        match self {
            Pem::File(path) => path.display().to_string(),
            Pem::Memory(_) => "(PEM in memory)".to_owned(),
        }
    }

    fn read(&self, what: &'static str) -> Result<Arc<[u8]>, TlsConfigError> {
        match self {
            Pem::File(path) => {
                std::fs::read(path)
                    .map(Arc::from)
                    .map_err(|source| TlsConfigError::Read {
                        what,
                        path: path.clone(),
                        source,
                    })
            }
            Pem::Memory(bytes) => Ok(bytes.clone()),
        }
    }

    /// Every certificate in it; at least one.
    fn certificates(
        &self,
        what: &'static str,
    ) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
        let bytes = self.read(what)?;
        let certs = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| TlsConfigError::Pem {
                what,
                origin: self.origin(),
                source,
            })?;
        if certs.is_empty() {
            return Err(TlsConfigError::Empty {
                what,
                origin: self.origin(),
                expected: "CERTIFICATE block",
            });
        }
        Ok(certs)
    }

    /// The first private key in it (PKCS#8, PKCS#1 or SEC1).
    fn private_key(&self, what: &'static str) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
        let bytes = self.read(what)?;
        PrivateKeyDer::from_pem_slice(&bytes).map_err(|source| match source {
            rustls::pki_types::pem::Error::NoItemsFound => TlsConfigError::Empty {
                what,
                origin: self.origin(),
                expected: "PRIVATE KEY block",
            },
            source => TlsConfigError::Pem {
                what,
                origin: self.origin(),
                source,
            },
        })
    }
}

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin())
    }
}

/// Builds a [`TlsConfig`] from PEM files, as go-nsq's `tls_root_ca_file`, `tls_cert`,
/// `tls_key` and `tls_insecure_skip_verify` do.
///
/// Files are read by [`build`](Self::build), which reports a missing file, a file without
/// the expected PEM block, or a key that does not fit its certificate as a
/// [`TlsConfigError`] naming the file.
///
/// ```no_run
/// let tls = nsq_client::TlsConfig::builder()
///     .ca_file("/etc/nsq/ca.pem")
///     .build()?;
/// # let _ = tls;
/// # Ok::<(), nsq_client::TlsConfigError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct TlsConfigBuilder {
    roots: Vec<Pem>,
    client: Option<(Pem, Pem)>,
    server_name: Option<String>,
    accept_invalid_certs: bool,
}

impl TlsConfigBuilder {
    /// Trusts the CA certificates in this PEM file instead of the system's roots. May be
    /// given more than once; every certificate of every file is trusted.
    ///
    /// ```
    /// let builder = nsq_client::TlsConfig::builder().ca_file("/etc/nsq/ca.pem");
    /// # let _ = builder;
    /// ```
    pub fn ca_file(mut self, path: impl AsRef<Path>) -> Self {
        self.roots.push(Pem::File(path.as_ref().to_owned()));
        self
    }

    /// Like [`ca_file`](Self::ca_file), from PEM text held in memory (a secret store, a
    /// test).
    ///
    /// ```
    /// # let pem = b"-----BEGIN CERTIFICATE-----\n...".to_vec();
    /// let builder = nsq_client::TlsConfig::builder().ca_pem(pem);
    /// # let _ = builder;
    /// ```
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.roots.push(Pem::Memory(pem.into().into()));
        self
    }

    /// Presents this client certificate (chain, PEM) with its private key (PEM), for an
    /// nsqd started with `--tls-client-auth-policy=require` or `require-verify`.
    ///
    /// ```
    /// let builder = nsq_client::TlsConfig::builder()
    ///     .client_cert_files("/etc/nsq/client.pem", "/etc/nsq/client.key");
    /// # let _ = builder;
    /// ```
    pub fn client_cert_files(mut self, cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Self {
        self.client = Some((
            Pem::File(cert.as_ref().to_owned()),
            Pem::File(key.as_ref().to_owned()),
        ));
        self
    }

    /// Like [`client_cert_files`](Self::client_cert_files), from PEM text held in memory.
    ///
    /// ```
    /// # let (cert, key) = (Vec::<u8>::new(), Vec::<u8>::new());
    /// let builder = nsq_client::TlsConfig::builder().client_cert_pem(cert, key);
    /// # let _ = builder;
    /// ```
    pub fn client_cert_pem(mut self, cert: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.client = Some((
            Pem::Memory(cert.into().into()),
            Pem::Memory(key.into().into()),
        ));
        self
    }

    /// The name the server's certificate must carry (default: the host connected to).
    /// Useful when nsqd is reached by IP address or through nsqlookupd's broadcast address.
    ///
    /// ```
    /// let builder = nsq_client::TlsConfig::builder().server_name("nsqd.internal");
    /// # let _ = builder;
    /// ```
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// **Turns certificate verification off**: any certificate for any name is accepted,
    /// so anyone on the path can read and change the traffic while appearing to be nsqd.
    /// The connection is still encrypted. CA files given are then unused. go-nsq's
    /// `tls_insecure_skip_verify`; for throwaway setups only. [`build`](Self::build) logs a
    /// warning every time.
    ///
    /// ```
    /// let tls = nsq_client::TlsConfig::builder().danger_accept_invalid_certs().build()?;
    /// assert!(!tls.verifies_certificates());
    /// # Ok::<(), nsq_client::TlsConfigError>(())
    /// ```
    pub fn danger_accept_invalid_certs(mut self) -> Self {
        self.accept_invalid_certs = true;
        self
    }

    /// Reads the files and builds the configuration (rustls with its ring provider, TLS 1.2
    /// and 1.3).
    ///
    /// # Errors
    ///
    /// [`TlsConfigError`] when a file cannot be read, holds no certificate or key, or rustls
    /// refuses one; or, with no CA given, when the system has no trusted roots.
    ///
    /// ```
    /// let err = nsq_client::TlsConfig::builder().ca_file("/no/such/ca.pem").build().unwrap_err();
    /// assert!(err.to_string().contains("/no/such/ca.pem"));
    /// ```
    pub fn build(self) -> Result<TlsConfig, TlsConfigError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsConfigError::Refused {
                what: "protocol versions",
                origin: "ring provider".to_owned(),
                source,
            })?;
        let (builder, verification) = if self.accept_invalid_certs {
            tracing::warn!(
                "TLS certificate verification is off (danger_accept_invalid_certs): \
                 any server can pose as nsqd"
            );
            let verifier = Arc::new(AcceptAnyCertificate { provider });
            let builder = builder
                .dangerous()
                .with_custom_certificate_verifier(verifier);
            (builder, Verification::Off)
        } else if self.roots.is_empty() {
            (
                builder.with_root_certificates(system_roots()?),
                Verification::SystemRoots,
            )
        } else {
            let mut roots = rustls::RootCertStore::empty();
            for pem in &self.roots {
                for cert in pem.certificates("CA file")? {
                    roots.add(cert).map_err(|source| TlsConfigError::Refused {
                        what: "CA certificate",
                        origin: pem.origin(),
                        source,
                    })?;
                }
            }
            (
                builder.with_root_certificates(roots),
                Verification::GivenRoots,
            )
        };
        let config = match &self.client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = cert.certificates("client certificate")?;
                let private = key.private_key("client key")?;
                builder
                    .with_client_auth_cert(chain, private)
                    .map_err(|source| TlsConfigError::Refused {
                        what: "client certificate and key",
                        origin: format!("{} with {}", cert.origin(), key.origin()),
                        source,
                    })?
            }
        };
        Ok(TlsConfig {
            config: Arc::new(config),
            server_name: self.server_name,
            verification,
        })
    }
}

/// The system's trusted roots (as go-nsq uses by default); an error when none load.
fn system_roots() -> Result<rustls::RootCertStore, TlsConfigError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let details = if found.errors.is_empty() {
            "none installed".to_owned()
        } else {
            found
                .errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        };
        return Err(TlsConfigError::NoSystemRoots { details });
    }
    Ok(roots)
}

/// Why a [`TlsConfig`] could not be built from its files.
///
/// ```
/// use nsq_client::{TlsConfig, TlsConfigError};
///
/// match TlsConfig::builder().ca_pem("not PEM").build() {
///     Err(TlsConfigError::Empty { expected, .. }) => assert_eq!(expected, "CERTIFICATE block"),
///     other => panic!("{other:?}"),
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// A file could not be read.
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        /// Which file: `CA file`, `client certificate` or `client key`.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file holds no block of the kind expected.
    #[error("{what} {origin} holds no {expected}")]
    Empty {
        /// Which file.
        what: &'static str,
        /// Its path, or `(PEM in memory)`.
        origin: String,
        /// The PEM block looked for.
        expected: &'static str,
    },
    /// A file is not valid PEM.
    #[error("{what} {origin}: {source}")]
    Pem {
        /// Which file.
        what: &'static str,
        /// Its path, or `(PEM in memory)`.
        origin: String,
        /// The cause.
        source: rustls::pki_types::pem::Error,
    },
    /// rustls refused a certificate or key (malformed, or a key that is not the
    /// certificate's).
    #[error("{what} from {origin} refused: {source}")]
    Refused {
        /// What was refused.
        what: &'static str,
        /// Where it came from.
        origin: String,
        /// The cause.
        source: rustls::Error,
    },
    /// No CA was given and the system has no trusted roots.
    #[error("no trusted CA certificates on this system ({details}); give one with ca_file")]
    NoSystemRoots {
        /// What loading them reported.
        details: String,
    },
}

/// The verifier of [`TlsConfigBuilder::danger_accept_invalid_certs`]: any certificate is
/// accepted, the handshake's signatures are still checked (so the session is encrypted to
/// whoever holds the key of the certificate shown).
#[derive(Debug)]
struct AcceptAnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCertificate {
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem_of(cert: &rcgen::Certificate) -> Vec<u8> {
        cert.pem().into_bytes()
    }

    fn self_signed() -> (rcgen::Certificate, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert, key)
    }

    #[test]
    fn a_ca_and_a_client_certificate_from_pem_build_a_verifying_config() {
        let (ca, _) = self_signed();
        let (client, key) = self_signed();
        let tls = TlsConfig::builder()
            .ca_pem(pem_of(&ca))
            .client_cert_pem(pem_of(&client), key.serialize_pem())
            .server_name("nsqd.internal")
            .build()
            .unwrap();
        assert!(tls.verifies_certificates());
        assert_eq!(tls.verification, Verification::GivenRoots);
        assert!(tls.config.client_auth_cert_resolver.has_certs());
        assert_eq!(tls.server_name.as_deref(), Some("nsqd.internal"));
    }

    #[test]
    fn a_missing_file_is_named_in_the_error() {
        let err = TlsConfig::builder()
            .client_cert_files("/no/such/client.pem", "/no/such/client.key")
            .danger_accept_invalid_certs()
            .build()
            .unwrap_err();
        match &err {
            TlsConfigError::Read { what, path, .. } => {
                assert_eq!(*what, "client certificate");
                assert_eq!(path, Path::new("/no/such/client.pem"));
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("/no/such/client.pem"), "{err}");
    }

    #[test]
    fn a_file_without_the_expected_block_is_refused() {
        let (cert, key) = self_signed();
        let err = TlsConfig::builder()
            .ca_pem(key.serialize_pem())
            .build()
            .unwrap_err();
        assert!(
            matches!(
                err,
                TlsConfigError::Empty {
                    expected: "CERTIFICATE block",
                    ..
                }
            ),
            "{err:?}"
        );
        let err = TlsConfig::builder()
            .ca_pem(pem_of(&cert))
            .client_cert_pem(pem_of(&cert), pem_of(&cert))
            .build()
            .unwrap_err();
        assert!(
            matches!(
                err,
                TlsConfigError::Empty {
                    what: "client key",
                    expected: "PRIVATE KEY block",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused() {
        let (cert, _) = self_signed();
        let (_, other_key) = self_signed();
        let err = TlsConfig::builder()
            .ca_pem(pem_of(&cert))
            .client_cert_pem(pem_of(&cert), other_key.serialize_pem())
            .build()
            .unwrap_err();
        assert!(
            matches!(
                err,
                TlsConfigError::Refused {
                    what: "client certificate and key",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn the_opt_out_is_visible() {
        let tls = TlsConfig::builder()
            .danger_accept_invalid_certs()
            .build()
            .unwrap();
        assert!(!tls.verifies_certificates());
        assert!(format!("{tls:?}").contains("Off"), "{tls:?}");
    }
}
