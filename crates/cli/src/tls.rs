//! TLS to the Coordinator's Client API.
//!
//! The Coordinator serves its self-signed root CA certificate as the TLS leaf. WebPKI refuses a
//! CA certificate as an end entity, so Quarry does not build a chain at all: [`PinnedRoot`]
//! accepts exactly one certificate, compared byte for byte with the pinned DER, and still
//! verifies the handshake signature with the crypto provider's functions, so a server that
//! merely copies the public certificate cannot complete the handshake.
//!
//! [`Unverified`] is for the one request that fetches the quote before anything is trusted
//! (and for `--insecure`): it accepts any certificate, records the one presented so that the
//! caller can compare it with the certificate the quote binds, and also verifies the handshake
//! signature. Both verifiers record what the server presented, so that a pin mismatch can be
//! reported with both fingerprints.
//!
//! Every configuration also records whether the server asked for a client certificate
//! ([`AuthRequested`]): the Client API asks but does without one, the Marble API insists, so a
//! connection that failed after such a request, made without a certificate, is a hint that the
//! address is the Marble API.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};

/// The crypto provider of every connection (aws-lc-rs).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The certificate the server presented in the last handshake, shared with the verifier.
#[derive(Debug, Clone, Default)]
pub struct Presented(Arc<Mutex<Option<Vec<u8>>>>);

impl Presented {
    fn record(&self, der: &[u8]) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(der.to_vec());
    }

    /// The DER of the last certificate presented, if a handshake got that far.
    pub fn get(&self) -> Option<Vec<u8>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// How the server's certificate is judged.
#[derive(Debug)]
enum Trust {
    /// Exactly this DER.
    Pinned(Vec<u8>),
    /// Anything (the caller checks the recorded certificate itself).
    Any,
}

/// A verifier that pins one certificate or accepts any; see the module documentation.
#[derive(Debug)]
pub struct CoordinatorVerifier {
    trust: Trust,
    provider: Arc<CryptoProvider>,
    presented: Presented,
}

/// Accepts only the pinned certificate.
pub type PinnedRoot = CoordinatorVerifier;
/// Accepts any certificate and records it.
pub type Unverified = CoordinatorVerifier;

impl CoordinatorVerifier {
    /// A verifier that accepts only `root_der`, exactly.
    pub fn pinned(root_der: Vec<u8>, presented: Presented) -> Self {
        Self {
            trust: Trust::Pinned(root_der),
            provider: provider(),
            presented,
        }
    }

    /// A verifier that accepts any certificate (the handshake signature is still checked).
    pub fn unverified(presented: Presented) -> Self {
        Self {
            trust: Trust::Any,
            provider: provider(),
            presented,
        }
    }
}

impl ServerCertVerifier for CoordinatorVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.presented.record(end_entity.as_ref());
        match &self.trust {
            // The exact DER is the trust decision: no chain, name or expiry is involved (the
            // Coordinator's root is valid for about 292 years and names only its own DNS names).
            Trust::Pinned(pinned) if pinned.as_slice() == end_entity.as_ref() => {
                Ok(ServerCertVerified::assertion())
            }
            Trust::Pinned(_) => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
            Trust::Any => Ok(ServerCertVerified::assertion()),
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

/// A user's TLS client certificate chain and key (`--cert`/`--key`).
pub struct ClientIdentity {
    /// The certificate chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key.
    pub key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientIdentity")
    }
}

/// Whether the server asked for a client certificate in a handshake, shared with the
/// configuration's certificate resolver.
#[derive(Debug, Clone, Default)]
pub struct AuthRequested(Arc<AtomicBool>);

impl AuthRequested {
    /// Whether a server asked for a client certificate.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Offers the user's certificate, if any, and records that the server asked for one.
#[derive(Debug)]
struct RecordingResolver {
    key: Option<Arc<CertifiedKey>>,
    requested: AuthRequested,
}

impl ResolvesClientCert for RecordingResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.requested.0.store(true, Ordering::Relaxed);
        self.key.clone()
    }

    fn has_certs(&self) -> bool {
        self.key.is_some()
    }
}

/// A rustls client configuration with `verifier` and, optionally, a client certificate;
/// `requested` learns whether the server asked for one.
pub fn client_config(
    verifier: CoordinatorVerifier,
    identity: Option<ClientIdentity>,
    requested: AuthRequested,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = provider();
    let key = identity
        .map(|id| CertifiedKey::from_der(id.chain, id.key, &provider).map(Arc::new))
        .transpose()?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_cert_resolver(Arc::new(RecordingResolver { key, requested }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_verifier_accepts_only_the_exact_der() {
        let presented = Presented::default();
        let v = CoordinatorVerifier::pinned(vec![1, 2, 3], presented.clone());
        let name = ServerName::try_from("localhost").unwrap();
        let now = UnixTime::now();
        assert!(
            v.verify_server_cert(&CertificateDer::from(vec![1, 2, 3]), &[], &name, &[], now)
                .is_ok()
        );
        assert!(
            v.verify_server_cert(&CertificateDer::from(vec![1, 2, 4]), &[], &name, &[], now)
                .is_err()
        );
        assert_eq!(presented.get(), Some(vec![1, 2, 4]));
    }
}
