//! TLS for the Coordinator's listeners.
//!
//! Both APIs let the peer present any certificate, self-signed ones included: the Client API
//! requests one optionally (users are matched on the exact leaf DER), the Marble API requires one
//! (the Marble's quote is bound to its hash). Only the chain decision is custom: the handshake
//! signature is still verified with the crypto provider's functions, so a peer cannot present a
//! certificate whose private key it does not hold.
//!
//! The server certificate can change at run time (after recovery or a root rotation), so it is
//! resolved per handshake from a [`SwappableCert`].

use std::sync::{Arc, RwLock};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// The crypto provider every Quarry TLS endpoint uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Accepts any client certificate that parses as X.509, but verifies the handshake signature.
#[derive(Debug)]
pub struct AnyClientCert {
    provider: Arc<CryptoProvider>,
    mandatory: bool,
}

impl AnyClientCert {
    /// A verifier that asks for a certificate and, if `mandatory`, refuses clients without one.
    pub fn new(provider: Arc<CryptoProvider>, mandatory: bool) -> Self {
        Self {
            provider,
            mandatory,
        }
    }
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Chain and expiry are deliberately not checked (user certificates are usually
        // self-signed and MarbleRun does not check their expiry); the certificate must still be
        // well-formed so that its public key verifies the handshake signature below.
        webpki::EndEntityCert::try_from(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        Ok(ClientCertVerified::assertion())
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

/// A server certificate that can be replaced while the server runs.
#[derive(Debug, Default)]
pub struct SwappableCert {
    current: RwLock<Option<Arc<CertifiedKey>>>,
}

impl SwappableCert {
    /// Serves `chain` (leaf first) with `key` from the next handshake on.
    pub fn set(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<(), rustls::Error> {
        let signing_key = provider().key_provider.load_private_key(key)?;
        let certified = Arc::new(CertifiedKey::new(chain, signing_key));
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(certified);
        Ok(())
    }
}

impl ResolvesServerCert for SwappableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // No certificate yet means the handshake fails, as MarbleRun's does before its CA exists.
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A server configuration for one of the Coordinator's listeners.
pub fn server_config(
    cert: Arc<SwappableCert>,
    client_cert_mandatory: bool,
    alpn: &[&[u8]],
) -> Result<rustls::ServerConfig, rustls::Error> {
    let provider = provider();
    let verifier = Arc::new(AnyClientCert::new(provider.clone(), client_cert_mandatory));
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(cert);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}
