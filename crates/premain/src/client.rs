//! The activation call: gRPC `/rpc.Marble/Activate` over TLS 1.2/1.3 with ALPN `h2`, the
//! Marble's self-signed certificate as client certificate, retried while the Coordinator is
//! unreachable or not yet accepting Marbles.
//!
//! Server verification: like MarbleRun's premain, the Coordinator is not verified by default
//! (the quote binds the Marble's key, so secrets cannot go to anyone else, but a
//! man-in-the-middle could hand out wrong parameters). With `QUARRY_COORDINATOR_ROOT_CA` set to
//! a PEM file, the premain verifies it: the server's certificate (the Marble root) is accepted
//! when it is one of the file's certificates, or when an intermediate certificate with the same
//! subject and key — sent by the Coordinator after the Marble root, or present in the file —
//! is signed by a certificate of the file. The Coordinator root from `/api/v2/quote`'s `cert`
//! (after verifying the quote) is the intended content. The handshake signature is always
//! checked with the server certificate's key.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use quarry_marble_api::rpc::marble_client::MarbleClient;
use quarry_marble_api::{ActivationReq, Parameters};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::Code;
use tonic::transport::{Endpoint, Uri};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::identity::MarbleIdentity;

/// Timeout of one TCP connect and TLS handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of one activation call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest pause between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Why activation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ActivationError {
    /// TLS could not be configured.
    #[error("tls configuration")]
    Tls(#[source] rustls::Error),
    /// The pinned root file could not be read or holds no certificate.
    #[error("coordinator root ca {path}: {reason}")]
    RootCa {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The Coordinator address is not a `host:port`.
    #[error("invalid coordinator address {addr:?}")]
    Address {
        /// The address.
        addr: String,
    },
    /// The Coordinator refused the activation.
    #[error("coordinator refused activation: {code:?}: {message}")]
    Refused {
        /// The gRPC status code.
        code: Code,
        /// The Coordinator's message.
        message: String,
    },
    /// The Coordinator stayed unreachable or not ready until the retry timeout.
    #[error("coordinator at {addr} not reachable or not ready after {waited:?}: {last}")]
    GaveUp {
        /// The address.
        addr: String,
        /// How long it was tried.
        waited: Duration,
        /// The last failure.
        last: String,
    },
    /// The response has no parameters.
    #[error("activation response has no parameters")]
    NoParameters,
}

/// How the premain treats the Coordinator's certificate.
#[derive(Debug, Clone)]
pub enum ServerTrust {
    /// Not verified, as MarbleRun's premain does.
    Unverified,
    /// Verified against these certificates (see the module documentation).
    Pinned(Vec<CertificateDer<'static>>),
}

impl ServerTrust {
    /// The trust of the PEM file at `path`.
    pub fn from_pem_file(path: &std::path::Path) -> Result<Self, ActivationError> {
        let err = |reason: String| ActivationError::RootCa {
            path: path.display().to_string(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let certs: Vec<CertificateDer<'static>> =
            rustls::pki_types::pem::PemObject::pem_slice_iter(&bytes)
                .collect::<Result<_, _>>()
                .map_err(|e| err(format!("invalid pem: {e}")))?;
        if certs.is_empty() {
            return Err(err("holds no certificate".into()));
        }
        Ok(Self::Pinned(certs))
    }
}

/// A TLS client configuration presenting `identity` and trusting the server as `trust` says.
pub fn client_config(
    identity: &MarbleIdentity,
    trust: &ServerTrust,
) -> Result<rustls::ClientConfig, ActivationError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(CoordinatorVerifier {
        provider: Arc::clone(&provider),
        pinned: match trust {
            ServerTrust::Unverified => None,
            ServerTrust::Pinned(certs) => Some(certs.clone()),
        },
    });
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        identity.private_key_der().to_vec(),
    ));
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(ActivationError::Tls)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(
            vec![CertificateDer::from(identity.certificate_der().to_vec())],
            key,
        )
        .map_err(ActivationError::Tls)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Sends one activation request over a new connection to `addr` (`host:port`).
pub async fn activate_once(
    addr: &str,
    tls: Arc<rustls::ClientConfig>,
    request: ActivationReq,
) -> Result<Parameters, tonic::Status> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| tonic::Status::invalid_argument(format!("coordinator address: {e}")))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT);
    let connector = tower::service_fn(move |uri: Uri| {
        let tls = Arc::clone(&tls);
        async move {
            let host = uri.host().unwrap_or("localhost").trim_matches(['[', ']']);
            let port = uri.port_u16().unwrap_or(2001);
            let tcp = TcpStream::connect((host, port)).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from(host.to_owned())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let stream = TlsConnector::from(tls).connect(name, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }
    });
    let channel = endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|e| tonic::Status::unavailable(format!("connecting: {}", error_chain(&e))))?;
    let response = MarbleClient::new(channel).activate(request).await?;
    response
        .into_inner()
        .parameters
        .ok_or_else(|| tonic::Status::internal("activation response has no parameters"))
}

/// Whether a failed attempt is worth repeating: the Coordinator is unreachable, or not in
/// state 3 yet.
pub fn is_retryable(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::FailedPrecondition | Code::DeadlineExceeded | Code::Unknown
    )
}

/// Activates, retrying with capped backoff for at most `retry_timeout` while
/// [`is_retryable`].
pub async fn activate(
    addr: &str,
    tls: Arc<rustls::ClientConfig>,
    request: ActivationReq,
    retry_timeout: Duration,
) -> Result<Parameters, ActivationError> {
    if !addr.contains(':') {
        return Err(ActivationError::Address {
            addr: addr.to_owned(),
        });
    }
    let started = Instant::now();
    let mut backoff = Duration::from_millis(200);
    loop {
        match activate_once(addr, Arc::clone(&tls), request.clone()).await {
            Ok(parameters) => return Ok(parameters),
            Err(status) if is_retryable(&status) => {
                let waited = started.elapsed();
                if waited + backoff > retry_timeout {
                    return Err(ActivationError::GaveUp {
                        addr: addr.to_owned(),
                        waited,
                        last: status.message().to_owned(),
                    });
                }
                tracing::info!(
                    code = ?status.code(),
                    message = status.message(),
                    retry_in = ?backoff,
                    "coordinator not ready, retrying"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(status) => {
                return Err(ActivationError::Refused {
                    code: status.code(),
                    message: status.message().to_owned(),
                });
            }
        }
    }
}

/// The server verifier: no chain decision without a pin, the rule of the module documentation
/// with one; the handshake signature always.
#[derive(Debug)]
struct CoordinatorVerifier {
    provider: Arc<CryptoProvider>,
    pinned: Option<Vec<CertificateDer<'static>>>,
}

impl ServerCertVerifier for CoordinatorVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(pinned) = &self.pinned else {
            return Ok(ServerCertVerified::assertion());
        };
        if pinned_accepts(pinned, end_entity, intermediates) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
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
        verify_tls13_signature(
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

/// Whether the server's `leaf` is pinned, or shares subject and key with a certificate (sent
/// or pinned) that a pinned certificate signed.
fn pinned_accepts(
    pinned: &[CertificateDer<'static>],
    leaf: &CertificateDer<'_>,
    sent: &[CertificateDer<'_>],
) -> bool {
    if pinned.iter().any(|p| p.as_ref() == leaf.as_ref()) {
        return true;
    }
    let Ok((_, leaf)) = X509Certificate::from_der(leaf) else {
        return false;
    };
    let anchors: Vec<X509Certificate<'_>> = pinned
        .iter()
        .filter_map(|p| X509Certificate::from_der(p).ok().map(|(_, c)| c))
        .collect();
    let candidates = sent
        .iter()
        .map(AsRef::as_ref)
        .chain(pinned.iter().map(AsRef::as_ref));
    for der in candidates {
        let Ok((_, twin)) = X509Certificate::from_der(der) else {
            continue;
        };
        if twin.subject().as_raw() != leaf.subject().as_raw()
            || twin.public_key().raw != leaf.public_key().raw
            || !twin.is_ca()
        {
            continue;
        }
        let signed_by_anchor = anchors.iter().any(|anchor| {
            anchor.is_ca() && twin.verify_signature(Some(anchor.public_key())).is_ok()
        });
        if signed_by_anchor {
            return true;
        }
    }
    false
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

    fn ca(cn: &str) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
    }

    #[test]
    fn pin_accepts_the_marble_root_through_its_intermediate_twin() {
        let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let root = ca("Root").self_signed(&root_key).unwrap();
        let root_params = ca("Root");
        let issuer = rcgen::Issuer::from_params(&root_params, &root_key);
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let intermediate = ca("Intermediate").signed_by(&key, &issuer).unwrap();
        let marble_root = ca("Intermediate").self_signed(&key).unwrap();
        let other_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let impostor = ca("Intermediate").self_signed(&other_key).unwrap();

        let pinned = vec![root.der().clone()];
        let sent = [intermediate.der().clone()];
        assert!(pinned_accepts(&pinned, marble_root.der(), &sent));
        assert!(!pinned_accepts(&pinned, marble_root.der(), &[]));
        assert!(!pinned_accepts(&pinned, impostor.der(), &sent));
        let both = vec![root.der().clone(), intermediate.der().clone()];
        assert!(pinned_accepts(&both, marble_root.der(), &[]));
        assert!(pinned_accepts(
            &[marble_root.der().clone()],
            marble_root.der(),
            &[]
        ));
    }

    #[test]
    fn retry_only_while_unreachable_or_not_ready() {
        assert!(is_retryable(&tonic::Status::unavailable("down")));
        assert!(is_retryable(&tonic::Status::failed_precondition("state 2")));
        assert!(!is_retryable(&tonic::Status::permission_denied("quote")));
        assert!(!is_retryable(&tonic::Status::invalid_argument("uuid")));
    }
}
