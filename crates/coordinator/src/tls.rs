//! TLS for the Coordinator's listeners.
//!
//! Both APIs let the peer present any certificate, self-signed ones included: the Client API
//! requests one optionally (users are matched on the exact leaf DER), the Marble API requires one
//! (the Marble's quote is bound to its hash). Only the chain decision is custom: the handshake
//! signature is still verified with the crypto provider's signature algorithms, so a peer cannot
//! present a certificate whose private key it does not hold.
//!
//! The client certificate is read with `x509-parser`, not webpki: webpki accepts only X.509 v3,
//! while user certificates made by `openssl x509 -req` without extensions are v1, and MarbleRun
//! accepts any certificate for a user. The handshake signature is checked against the
//! certificate's `SubjectPublicKeyInfo` with the provider's algorithm for the signature scheme,
//! chosen as rustls chooses it: in TLS 1.3 only the scheme's own algorithm (so an ECDSA scheme
//! names its curve, and RSA PKCS#1 is not allowed), in TLS 1.2 each algorithm mapped to the
//! scheme whose public-key algorithm matches the certificate's (ML-DSA, defined for TLS 1.3
//! only, is refused there).
//!
//! The server certificate can change at run time (after recovery or a root rotation), so it is
//! resolved per handshake from a [`SwappableCert`].

use std::sync::{Arc, RwLock};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, SignatureVerificationAlgorithm, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, PeerMisbehaved, SignatureScheme,
};
use x509_parser::asn1_rs::{Any, FromDer};

/// The crypto provider every Quarry TLS endpoint uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Accepts any client certificate that parses as X.509 (any version) and holds a public key the
/// provider can verify with, and verifies the handshake signature with that key.
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
        // well-formed and hold a key that can verify the handshake signature below.
        let key = CertificateKey::parse(end_entity)?;
        let algorithms = &self.provider.signature_verification_algorithms;
        if !algorithms.all.iter().any(|alg| key.matches(*alg)) {
            return Err(CertificateError::UnsupportedSignatureAlgorithmContext {
                signature_algorithm_id: key.algorithm.to_vec(),
                supported_algorithms: algorithms
                    .all
                    .iter()
                    .map(|alg| alg.public_key_alg_id())
                    .collect(),
            }
            .into());
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_handshake_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
            false,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_handshake_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
            true,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The public key of a client certificate: the contents of its `SubjectPublicKeyInfo`'s
/// algorithm identifier (as `SignatureVerificationAlgorithm::public_key_alg_id` returns them)
/// and the key bits.
struct CertificateKey<'a> {
    algorithm: &'a [u8],
    key: std::borrow::Cow<'a, [u8]>,
}

impl<'a> CertificateKey<'a> {
    /// Parses `cert` as X.509 of any version; trailing bytes are refused.
    fn parse(cert: &'a CertificateDer<'_>) -> Result<Self, rustls::Error> {
        let bad = || rustls::Error::from(CertificateError::BadEncoding);
        let (rest, parsed) =
            x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|_| bad())?;
        if !rest.is_empty() {
            return Err(bad());
        }
        let spki = parsed.tbs_certificate.subject_pki;
        if spki.subject_public_key.unused_bits != 0 {
            return Err(bad());
        }
        // SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey
        // BIT STRING }: the algorithm's contents are what the provider's algorithms name.
        let (_, outer) = Any::from_der(spki.raw).map_err(|_| bad())?;
        let (_, algorithm) = Any::from_der(outer.data).map_err(|_| bad())?;
        Ok(Self {
            algorithm: algorithm.data,
            key: spki.subject_public_key.data,
        })
    }

    /// Whether `alg` verifies with keys of this certificate's type (and curve).
    fn matches(&self, alg: &dyn SignatureVerificationAlgorithm) -> bool {
        alg.public_key_alg_id().as_ref() == self.algorithm
    }
}

/// The signature schemes TLS 1.3 allows in `CertificateVerify` (RFC 8446, 4.2.3): no RSA
/// PKCS#1, no SHA-1; ML-DSA is defined for TLS 1.3 only.
fn allowed_in_tls13(scheme: SignatureScheme) -> bool {
    matches!(
        scheme,
        SignatureScheme::ECDSA_NISTP256_SHA256
            | SignatureScheme::ECDSA_NISTP384_SHA384
            | SignatureScheme::ECDSA_NISTP521_SHA512
            | SignatureScheme::RSA_PSS_SHA256
            | SignatureScheme::RSA_PSS_SHA384
            | SignatureScheme::RSA_PSS_SHA512
            | SignatureScheme::ED25519
            | SignatureScheme::ED448
    ) || tls13_only(scheme)
}

/// The signature schemes that exist only in TLS 1.3 (they have no TLS 1.2 signature
/// algorithm), refused in TLS 1.2 as rustls refuses them.
fn tls13_only(scheme: SignatureScheme) -> bool {
    matches!(
        scheme,
        SignatureScheme::ML_DSA_44 | SignatureScheme::ML_DSA_65 | SignatureScheme::ML_DSA_87
    )
}

/// Verifies the client's handshake signature `dss` over `message` with the public key of
/// `cert`, using the provider's algorithms for the scheme (see the module documentation for
/// which ones per TLS version). A key the scheme does not fit, or a signature by another key,
/// is refused.
fn verify_handshake_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    algorithms: &WebPkiSupportedAlgorithms,
    tls13: bool,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    let unadvertised =
        || rustls::Error::from(PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme);
    let allowed = if tls13 {
        allowed_in_tls13(dss.scheme)
    } else {
        !tls13_only(dss.scheme)
    };
    if !allowed {
        return Err(unadvertised());
    }
    let candidates = algorithms
        .mapping
        .iter()
        .find(|(scheme, _)| *scheme == dss.scheme)
        .map(|(_, algs)| *algs)
        .ok_or_else(unadvertised)?;
    let candidates = if tls13 {
        candidates.get(..1).unwrap_or_default()
    } else {
        candidates
    };
    let key = CertificateKey::parse(cert)?;

    let mut fitting = candidates
        .iter()
        .filter(|alg| key.matches(**alg))
        .peekable();
    if fitting.peek().is_none() {
        return Err(
            CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext {
                signature_algorithm_id: candidates
                    .first()
                    .map(|alg| alg.signature_alg_id().as_ref().to_vec())
                    .unwrap_or_default(),
                public_key_algorithm_id: key.algorithm.to_vec(),
            }
            .into(),
        );
    }
    if fitting.any(|alg| {
        alg.verify_signature(&key.key, message, dss.signature())
            .is_ok()
    }) {
        Ok(HandshakeSignatureValid::assertion())
    } else {
        Err(CertificateError::BadSignature.into())
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

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;
    use std::process::Command;

    use rustls::client::ResolvesClientCert;
    use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{PrivatePkcs8KeyDer, ServerName};
    use rustls::{ClientConfig, ClientConnection, ServerConnection};

    use super::*;

    /// A self-signed X.509 v1 certificate (no extensions, as `openssl x509 -req` makes it) and
    /// its PKCS#8 key, both DER.
    fn v1_cert(dir: &Path, name: &str, algorithm: &[&str]) -> (Vec<u8>, Vec<u8>) {
        let path = |ext: &str| dir.join(format!("{name}.{ext}"));
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl").args(args).output().unwrap();
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let key = path("key.pem");
        let mut genpkey = vec!["genpkey", "-out", key.to_str().unwrap()];
        genpkey.extend_from_slice(algorithm);
        openssl(&genpkey);
        let csr = path("csr");
        openssl(
            &[
                "req",
                "-new",
                "-key",
                key.to_str().unwrap(),
                "-subj",
                &format!("/CN={name}"),
            ]
            .into_iter()
            .chain(["-out", csr.to_str().unwrap()])
            .collect::<Vec<_>>(),
        );
        let cert = path("cert.der");
        openssl(&[
            "x509",
            "-req",
            "-in",
            csr.to_str().unwrap(),
            "-signkey",
            key.to_str().unwrap(),
            "-days",
            "2",
            "-outform",
            "DER",
            "-out",
            cert.to_str().unwrap(),
        ]);
        let pkcs8 = path("key.der");
        openssl(&[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            key.to_str().unwrap(),
            "-outform",
            "DER",
            "-out",
            pkcs8.to_str().unwrap(),
        ]);
        let cert = std::fs::read(cert).unwrap();
        assert_eq!(
            x509_parser::parse_x509_certificate(&cert)
                .unwrap()
                .1
                .version(),
            x509_parser::x509::X509Version::V1
        );
        (cert, std::fs::read(pkcs8).unwrap())
    }

    const P256: &[&str] = &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];
    const P384: &[&str] = &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"];
    const ED25519: &[&str] = &["-algorithm", "ED25519"];
    const RSA: &[&str] = &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"];

    /// The client trusts any server: only the server's side is under test.
    #[derive(Debug)]
    pub(crate) struct AnyServer(pub(crate) Arc<CryptoProvider>);

    impl ServerCertVerifier for AnyServer {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }

        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    /// Presents `cert` and signs with `key`, whether or not they belong together.
    #[derive(Debug)]
    struct Present(Arc<CertifiedKey>);

    impl ResolvesClientCert for Present {
        fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
            Some(Arc::clone(&self.0))
        }

        fn has_certs(&self) -> bool {
            true
        }
    }

    fn certified(cert: &[u8], key: &[u8]) -> Arc<CertifiedKey> {
        let key = provider()
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.to_vec())))
            .unwrap();
        Arc::new(CertifiedKey::new(
            vec![CertificateDer::from(cert.to_vec())],
            key,
        ))
    }

    /// Runs a handshake in memory; returns the client certificate the server accepted.
    fn handshake(
        server_cert: &(Vec<u8>, Vec<u8>),
        client: Arc<CertifiedKey>,
        version: &'static rustls::SupportedProtocolVersion,
    ) -> Result<Vec<u8>, rustls::Error> {
        let swappable = Arc::new(SwappableCert::default());
        swappable
            .set(
                vec![CertificateDer::from(server_cert.0.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_cert.1.clone())),
            )
            .unwrap();
        let server_config = server_config(swappable, true, &[]).unwrap();
        let client_config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[version])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(provider())))
            .with_client_cert_resolver(Arc::new(Present(client)));
        let mut server = ServerConnection::new(Arc::new(server_config)).unwrap();
        let mut client = ClientConnection::new(
            Arc::new(client_config),
            ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();

        // TLS 1.3 clients finish before the server has read their certificate: keep pumping
        // until the server has decided.
        for _ in 0..20 {
            let mut buf = Vec::new();
            client.write_tls(&mut buf).unwrap();
            if !buf.is_empty() {
                server.read_tls(&mut buf.as_slice()).unwrap();
                server.process_new_packets()?;
            }
            let mut buf = Vec::new();
            server.write_tls(&mut buf).unwrap();
            if !buf.is_empty() {
                client.read_tls(&mut buf.as_slice()).unwrap();
                client.process_new_packets()?;
            }
            if !server.is_handshaking() {
                let chain = server.peer_certificates().expect("a client certificate");
                return Ok(chain[0].to_vec());
            }
        }
        panic!("the handshake did not finish");
    }

    const VERSIONS: [&rustls::SupportedProtocolVersion; 2] =
        [&rustls::version::TLS13, &rustls::version::TLS12];

    #[test]
    fn accepts_v1_client_certificates_of_every_key_type_in_both_tls_versions() {
        let dir = tempfile::tempdir().unwrap();
        let server = v1_cert(dir.path(), "server", P256);
        for (name, algorithm) in [
            ("p256", P256),
            ("p384", P384),
            ("ed25519", ED25519),
            ("rsa", RSA),
        ] {
            let (cert, key) = v1_cert(dir.path(), name, algorithm);
            for version in VERSIONS {
                let seen = handshake(&server, certified(&cert, &key), version)
                    .unwrap_or_else(|e| panic!("{name} {version:?}: {e}"));
                assert_eq!(seen, cert, "{name} {version:?}");
            }
        }
    }

    #[test]
    fn rejects_a_client_that_signs_with_another_key_than_its_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let server = v1_cert(dir.path(), "server", P256);
        let (alice, _) = v1_cert(dir.path(), "alice", P256);
        // Same type and curve, another key; and keys of other types and curves.
        for (name, algorithm) in [
            ("mallory", P256),
            ("p384", P384),
            ("ed25519", ED25519),
            ("rsa", RSA),
        ] {
            let (_, other_key) = v1_cert(dir.path(), name, algorithm);
            for version in VERSIONS {
                let result = handshake(&server, certified(&alice, &other_key), version);
                assert!(
                    matches!(
                        result,
                        Err(rustls::Error::InvalidCertificate(
                            CertificateError::BadSignature
                                | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. }
                        ))
                    ),
                    "{name} {version:?}: {result:?}"
                );
            }
        }
    }

    #[test]
    fn rejects_certificates_that_are_not_x509() {
        let verifier = AnyClientCert::new(provider(), true);
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = v1_cert(dir.path(), "alice", P256);
        let mut trailing = cert.clone();
        trailing.push(0);
        for bad in [
            b"not a certificate".to_vec(),
            cert[..cert.len() - 1].to_vec(),
            trailing,
        ] {
            let result =
                verifier.verify_client_cert(&CertificateDer::from(bad), &[], UnixTime::now());
            assert!(
                matches!(
                    result,
                    Err(rustls::Error::InvalidCertificate(
                        CertificateError::BadEncoding
                    ))
                ),
                "{result:?}"
            );
        }
    }
}
