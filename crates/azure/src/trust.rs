//! Which certificates the client trusts, for TLS to Azure and for the release signature.
//!
//! The roots are the Mozilla set compiled into the binary (`webpki-roots`) plus the PEM file in
//! `QUARRY_AZURE_CA_FILE`. Compiled-in roots are part of the measured enclave; a CA bundle read
//! from the host at run time would let the host choose whom the enclave trusts. The same
//! [`TrustStore`] serves TLS and the JWS `x5c` check, and both use rustls-webpki with the
//! aws-lc-rs algorithms.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};

use crate::error::ErrorKind;

/// Why a trust store could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// The CA file could not be read.
    #[error("cannot read ca file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The CA file holds no PEM certificate, or a malformed one.
    #[error("ca file {path} has no usable pem certificate: {detail}")]
    Pem {
        /// The file (or `<memory>`).
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// A certificate cannot be a trust anchor.
    #[error("certificate {index} of {path} cannot be a trust anchor: {detail}")]
    Anchor {
        /// The file (or `<memory>`).
        path: PathBuf,
        /// Position of the certificate in the file, from 0.
        index: usize,
        /// The parser's error.
        detail: webpki::Error,
    },
    /// rustls refused the configuration.
    #[error("tls configuration refused: {0}")]
    Tls(#[from] rustls::Error),
    /// The HTTP client could not be built.
    #[error("cannot build the http client")]
    HttpClient(#[source] reqwest::Error),
}

/// A set of trusted root certificates.
#[derive(Clone, Default)]
pub struct TrustStore {
    anchors: Vec<TrustAnchor<'static>>,
}

impl fmt::Debug for TrustStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustStore")
            .field("anchors", &self.anchors.len())
            .finish()
    }
}

impl TrustStore {
    /// No roots at all.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The Mozilla roots compiled into the binary.
    pub fn system() -> Self {
        Self {
            anchors: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        }
    }

    /// The system roots plus the certificates of `ca_file`, if given.
    pub fn system_with(ca_file: Option<&Path>) -> Result<Self, TrustError> {
        let mut store = Self::system();
        if let Some(path) = ca_file {
            store.add_pem_file(path)?;
        }
        Ok(store)
    }

    /// Adds every certificate of a PEM file; returns how many.
    pub fn add_pem_file(&mut self, path: &Path) -> Result<usize, TrustError> {
        let pem = std::fs::read(path).map_err(|source| TrustError::Read {
            path: path.to_owned(),
            source,
        })?;
        self.add_pem_named(&pem, path)
    }

    /// Adds every certificate of PEM text; returns how many.
    pub fn add_pem(&mut self, pem: &[u8]) -> Result<usize, TrustError> {
        self.add_pem_named(pem, Path::new("<memory>"))
    }

    /// Adds one DER certificate.
    pub fn add_der(&mut self, der: &[u8]) -> Result<(), TrustError> {
        let cert = CertificateDer::from(der);
        let anchor =
            webpki::anchor_from_trusted_cert(&cert).map_err(|detail| TrustError::Anchor {
                path: PathBuf::from("<memory>"),
                index: 0,
                detail,
            })?;
        self.anchors.push(anchor.to_owned());
        Ok(())
    }

    fn add_pem_named(&mut self, pem: &[u8], path: &Path) -> Result<usize, TrustError> {
        let mut added = 0;
        for (index, cert) in CertificateDer::pem_slice_iter(pem).enumerate() {
            let cert = cert.map_err(|e| TrustError::Pem {
                path: path.to_owned(),
                detail: e.to_string(),
            })?;
            let anchor =
                webpki::anchor_from_trusted_cert(&cert).map_err(|detail| TrustError::Anchor {
                    path: path.to_owned(),
                    index,
                    detail,
                })?;
            self.anchors.push(anchor.to_owned());
            added += 1;
        }
        if added == 0 {
            return Err(TrustError::Pem {
                path: path.to_owned(),
                detail: "no CERTIFICATE block".into(),
            });
        }
        Ok(added)
    }

    /// The roots.
    pub fn anchors(&self) -> &[TrustAnchor<'static>] {
        &self.anchors
    }

    /// A rustls client configuration trusting exactly these roots, with aws-lc-rs as the only
    /// provider and ALPN `h2`, `http/1.1`.
    pub fn tls_config(&self) -> Result<rustls::ClientConfig, TrustError> {
        let roots = rustls::RootCertStore {
            roots: self.anchors.clone(),
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// Checks that `chain[0]` leads through `chain[1..]` to a root of `trust` at `now`, may be used
/// for TLS server authentication (the extended key usage, when present, includes serverAuth) and
/// is valid for `host`. This is the check the client runs on a release response's `x5c`.
pub fn verify_chain(
    chain: &[CertificateDer<'_>],
    host: &str,
    trust: &TrustStore,
    now: UnixTime,
) -> Result<(), ErrorKind> {
    let Some((leaf, intermediates)) = chain.split_first() else {
        return Err(ErrorKind::Malformed {
            what: "jws header",
            detail: "x5c is empty".into(),
        });
    };
    let leaf = webpki::EndEntityCert::try_from(leaf).map_err(ErrorKind::UntrustedChain)?;
    leaf.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        trust.anchors(),
        intermediates,
        now,
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .map_err(ErrorKind::UntrustedChain)?;

    let name = ServerName::try_from(host).map_err(|_| ErrorKind::WrongHost {
        host: host.to_owned(),
        detail: webpki::Error::MalformedDnsIdentifier,
    })?;
    leaf.verify_is_valid_for_subject_name(&name)
        .map_err(|detail| ErrorKind::WrongHost {
            host: host.to_owned(),
            detail,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_roots_are_not_empty() {
        assert!(TrustStore::system().anchors().len() > 50);
    }

    #[test]
    fn pem_without_certificates_is_refused() {
        let err = TrustStore::empty().add_pem(b"hello").unwrap_err();
        assert!(matches!(err, TrustError::Pem { .. }), "{err}");
    }

    #[test]
    fn empty_chain_is_malformed() {
        let err = verify_chain(&[], "h", &TrustStore::system(), UnixTime::now()).unwrap_err();
        assert!(matches!(err, ErrorKind::Malformed { .. }), "{err}");
    }
}
