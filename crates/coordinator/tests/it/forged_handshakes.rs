//! The client-certificate verifier against forged handshakes: in-memory TLS 1.2 and 1.3
//! handshakes with the Coordinator's server configuration, where the client presents one
//! certificate and signs `CertificateVerify` with any key, hash and padding under any signature
//! scheme label. The signatures are made by `openssl`, so keys the provider cannot load (DSA,
//! Ed448, RSA-1024) can sign too.
//!
//! What must hold: a client is accepted only if the signature is by the certificate's own key,
//! made the way the labelled scheme prescribes, with a scheme the TLS version allows (in TLS 1.3
//! the ECDSA scheme fixes the curve and RSA PKCS#1 is not allowed), with a key type, curve and
//! size the provider verifies, and a certificate that parses as exactly one X.509 structure
//! whose key algorithm identifier is the standard one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use quarry_coordinator::tls::{SwappableCert, provider, server_config};
use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, ServerConnection, SignatureAlgorithm,
    SignatureScheme,
};

use crate::tools::openssl;

/// A private key in a PEM file, made by `openssl genpkey`.
#[derive(Debug, Clone)]
struct Key(PathBuf);

impl Key {
    fn generate(dir: &Path, name: &str, algorithm: &[&str]) -> Self {
        let path = dir.join(format!("{name}.key"));
        let mut args = vec!["genpkey", "-out", path.to_str().unwrap()];
        args.extend_from_slice(algorithm);
        openssl(&args);
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }

    /// A self-signed certificate (DER) for this key.
    fn certificate(&self, name: &str) -> Vec<u8> {
        let out = self.0.with_extension("der");
        openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            self.path(),
            "-subj",
            &format!("/CN={name}"),
            "-days",
            "2",
            "-outform",
            "DER",
            "-out",
            out.to_str().unwrap(),
        ]);
        std::fs::read(out).unwrap()
    }

    fn pkcs8_der(&self) -> Vec<u8> {
        let out = self.0.with_extension("p8");
        openssl(&[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            self.path(),
            "-outform",
            "DER",
            "-out",
            out.to_str().unwrap(),
        ]);
        std::fs::read(out).unwrap()
    }
}

const P256: &[&str] = &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];
const P384: &[&str] = &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"];
const ED25519: &[&str] = &["-algorithm", "ED25519"];
const ED448: &[&str] = &["-algorithm", "ED448"];
const RSA2048: &[&str] = &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"];
const RSA1024: &[&str] = &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"];
const RSA_PSS_KEY: &[&str] = &["-algorithm", "RSA-PSS", "-pkeyopt", "rsa_keygen_bits:2048"];

/// How `openssl` signs the handshake message.
#[derive(Debug, Clone, Copy)]
enum Sign {
    /// `dgst -<hash> -sign`: RSA PKCS#1 v1.5, ECDSA (DER) or DSA over the hash.
    Digest(&'static str),
    /// RSA-PSS with the hash and a salt as long as the hash (as TLS prescribes).
    Pss(&'static str),
    /// EdDSA over the message itself.
    Raw,
}

/// Signs with `key` as `how` says and labels the signature `scheme`, whether or not they fit.
#[derive(Debug, Clone)]
struct Forged {
    key: Key,
    how: Sign,
    scheme: SignatureScheme,
}

impl Signer for Forged {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let dir = tempfile::tempdir().unwrap();
        let msg = dir.path().join("msg");
        let sig = dir.path().join("sig");
        std::fs::write(&msg, message).unwrap();
        let (msg, out) = (msg.to_str().unwrap(), sig.to_str().unwrap());
        match self.how {
            Sign::Digest(hash) => openssl(&[
                "dgst",
                &format!("-{hash}"),
                "-sign",
                self.key.path(),
                "-out",
                out,
                msg,
            ]),
            Sign::Pss(hash) => openssl(&[
                "dgst",
                &format!("-{hash}"),
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                "rsa_pss_saltlen:digest",
                "-sign",
                self.key.path(),
                "-out",
                out,
                msg,
            ]),
            Sign::Raw => openssl(&[
                "pkeyutl",
                "-sign",
                "-rawin",
                "-inkey",
                self.key.path(),
                "-in",
                msg,
                "-out",
                out,
            ]),
        };
        Ok(std::fs::read(sig).unwrap())
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}

impl SigningKey for Forged {
    fn choose_scheme(&self, _offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        Some(Box::new(self.clone()))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::Unknown(0)
    }
}

/// Presents `chain` and signs with `signer`.
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

/// The client trusts any server: only the server's side is under test.
#[derive(Debug)]
struct AnyServer;

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
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tls {
    V12,
    V13,
}

impl Tls {
    fn version(self) -> &'static rustls::SupportedProtocolVersion {
        match self {
            Self::V12 => &rustls::version::TLS12,
            Self::V13 => &rustls::version::TLS13,
        }
    }
}

/// The Coordinator's server certificate for the handshakes.
struct Server {
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl Server {
    fn new(dir: &Path) -> Self {
        let key = Key::generate(dir, "server", P256);
        Self {
            cert: key.certificate("localhost"),
            key: key.pkcs8_der(),
        }
    }

    /// Runs a handshake in memory with a client that presents `chain` and signs with `signer`.
    /// Returns the leaf the server accepted, or the server's error.
    fn handshake(
        &self,
        chain: &[&[u8]],
        signer: Arc<dyn SigningKey>,
        tls: Tls,
    ) -> Result<Vec<u8>, String> {
        let swappable = Arc::new(SwappableCert::default());
        swappable
            .set(
                vec![CertificateDer::from(self.cert.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone())),
            )
            .unwrap();
        let server_config = server_config(swappable, true, &[]).unwrap();
        let chain = chain
            .iter()
            .map(|c| CertificateDer::from(c.to_vec()))
            .collect();
        let client_key = Arc::new(CertifiedKey::new(chain, signer));
        let client_config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[tls.version()])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer))
            .with_client_cert_resolver(Arc::new(Present(client_key)));
        let mut server = ServerConnection::new(Arc::new(server_config)).unwrap();
        let mut client = ClientConnection::new(
            Arc::new(client_config),
            ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();

        for _ in 0..20 {
            let mut buf = Vec::new();
            client.write_tls(&mut buf).unwrap();
            let mut rest = buf.as_slice();
            while !rest.is_empty() {
                server.read_tls(&mut rest).unwrap();
                server
                    .process_new_packets()
                    .map_err(|e| format!("server: {e:?}"))?;
            }
            let mut buf = Vec::new();
            server.write_tls(&mut buf).unwrap();
            let mut rest = buf.as_slice();
            while !rest.is_empty() {
                client.read_tls(&mut rest).unwrap();
                client
                    .process_new_packets()
                    .map_err(|e| format!("client: {e:?}"))?;
            }
            if !server.is_handshaking() {
                let certs = server.peer_certificates().expect("a client certificate");
                return Ok(certs[0].to_vec());
            }
        }
        panic!("the handshake did not finish");
    }
}

fn forged(key: &Key, how: Sign, scheme: SignatureScheme) -> Arc<dyn SigningKey> {
    Arc::new(Forged {
        key: key.clone(),
        how,
        scheme,
    })
}

/// Asserts the outcome of one handshake: accepted with `cert` as the leaf, or refused by the
/// server (never by the client: a client-side failure would prove nothing about the server).
fn expect(
    server: &Server,
    case: &str,
    chain: &[&[u8]],
    signer: Arc<dyn SigningKey>,
    tls: Tls,
    accept: bool,
) {
    let result = server
        .handshake(chain, signer, tls)
        .map(|leaf| (leaf.as_slice() == chain[0], leaf.len()));
    match (accept, result) {
        (true, Ok((is_leaf, _))) => assert!(is_leaf, "{case} {tls:?}: another leaf"),
        (false, Err(e)) if e.starts_with("server:") => {}
        (_, other) => panic!("{case} {tls:?}: expected accepted = {accept}, got {other:?}"),
    }
}

#[test]
fn each_signature_scheme_is_verified_with_its_own_algorithm_curve_and_version_rules() {
    use SignatureScheme as S;
    use Tls::{V12, V13};

    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let server = Server::new(dir);
    let p256 = Key::generate(dir, "p256", P256);
    let p384 = Key::generate(dir, "p384", P384);
    let rsa = Key::generate(dir, "rsa", RSA2048);
    let ed25519 = Key::generate(dir, "ed25519", ED25519);
    let certs: Vec<(&Key, Vec<u8>)> = [&p256, &p384, &rsa, &ed25519]
        .into_iter()
        .map(|k| (k, k.certificate("user")))
        .collect();
    let cert = |key: &Key| {
        certs
            .iter()
            .find(|(k, _)| k.0 == key.0)
            .map(|(_, c)| c.clone())
            .unwrap()
    };

    // (case, key, how it signs, scheme label, accepted in TLS 1.3, accepted in TLS 1.2)
    let cases: Vec<(&str, &Key, Sign, SignatureScheme, bool, bool)> = vec![
        // The genuine combinations: the signer works, so refusals below are the verifier's.
        (
            "p256",
            &p256,
            Sign::Digest("sha256"),
            S::ECDSA_NISTP256_SHA256,
            true,
            true,
        ),
        (
            "p384",
            &p384,
            Sign::Digest("sha384"),
            S::ECDSA_NISTP384_SHA384,
            true,
            true,
        ),
        (
            "rsa pss",
            &rsa,
            Sign::Pss("sha256"),
            S::RSA_PSS_SHA256,
            true,
            true,
        ),
        (
            "rsa pss 512",
            &rsa,
            Sign::Pss("sha512"),
            S::RSA_PSS_SHA512,
            true,
            true,
        ),
        ("ed25519", &ed25519, Sign::Raw, S::ED25519, true, true),
        // In TLS 1.3 the ECDSA scheme names the curve; TLS 1.2 only names the hash.
        (
            "p256 key, p384 scheme",
            &p256,
            Sign::Digest("sha384"),
            S::ECDSA_NISTP384_SHA384,
            false,
            true,
        ),
        (
            "p384 key, p256 scheme",
            &p384,
            Sign::Digest("sha256"),
            S::ECDSA_NISTP256_SHA256,
            false,
            true,
        ),
        // The hash the label names is the one verified.
        (
            "p256 sha256 as sha384",
            &p256,
            Sign::Digest("sha256"),
            S::ECDSA_NISTP384_SHA384,
            false,
            false,
        ),
        (
            "p384 sha384 as sha512",
            &p384,
            Sign::Digest("sha384"),
            S::ECDSA_NISTP521_SHA512,
            false,
            false,
        ),
        // RSA PKCS#1 is TLS 1.2 only; PSS and PKCS#1 are not interchangeable.
        (
            "rsa pkcs1",
            &rsa,
            Sign::Digest("sha256"),
            S::RSA_PKCS1_SHA256,
            false,
            true,
        ),
        (
            "rsa pkcs1 as pss",
            &rsa,
            Sign::Digest("sha256"),
            S::RSA_PSS_SHA256,
            false,
            false,
        ),
        (
            "rsa pss as pkcs1",
            &rsa,
            Sign::Pss("sha256"),
            S::RSA_PKCS1_SHA256,
            false,
            false,
        ),
        (
            "rsa pss sha256 as sha384",
            &rsa,
            Sign::Pss("sha256"),
            S::RSA_PSS_SHA384,
            false,
            false,
        ),
        (
            "rsa pkcs1 sha1",
            &rsa,
            Sign::Digest("sha1"),
            S::RSA_PKCS1_SHA1,
            false,
            false,
        ),
        // Schemes of another key type, unsupported and unknown schemes.
        (
            "ed25519 as ed448",
            &ed25519,
            Sign::Raw,
            S::ED448,
            false,
            false,
        ),
        (
            "ed25519 as ecdsa",
            &ed25519,
            Sign::Raw,
            S::ECDSA_NISTP256_SHA256,
            false,
            false,
        ),
        (
            "ed25519 as unknown",
            &ed25519,
            Sign::Raw,
            S::Unknown(0xfe00),
            false,
            false,
        ),
        (
            "p256 as ed25519",
            &p256,
            Sign::Digest("sha256"),
            S::ED25519,
            false,
            false,
        ),
        (
            "p256 as rsa pss",
            &p256,
            Sign::Digest("sha256"),
            S::RSA_PSS_SHA256,
            false,
            false,
        ),
        (
            "rsa as ecdsa",
            &rsa,
            Sign::Digest("sha256"),
            S::ECDSA_NISTP256_SHA256,
            false,
            false,
        ),
        (
            "p256 as ml-dsa",
            &p256,
            Sign::Digest("sha256"),
            S::ML_DSA_44,
            false,
            false,
        ),
    ];
    for (case, key, how, scheme, tls13, tls12) in cases {
        let cert = cert(key);
        for (tls, accept) in [(V13, tls13), (V12, tls12)] {
            expect(
                &server,
                case,
                &[&cert],
                forged(key, how, scheme),
                tls,
                accept,
            );
        }
    }
}

#[test]
fn no_certificate_is_accepted_with_a_signature_by_another_key() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let server = Server::new(dir);
    let keys = [
        (
            "p256",
            P256,
            Sign::Digest("sha256"),
            SignatureScheme::ECDSA_NISTP256_SHA256,
        ),
        (
            "p384",
            P384,
            Sign::Digest("sha384"),
            SignatureScheme::ECDSA_NISTP384_SHA384,
        ),
        (
            "rsa",
            RSA2048,
            Sign::Pss("sha256"),
            SignatureScheme::RSA_PSS_SHA256,
        ),
        ("ed25519", ED25519, Sign::Raw, SignatureScheme::ED25519),
    ];
    let users: Vec<(&str, Vec<u8>)> = keys
        .iter()
        .map(|(name, alg, ..)| {
            let key = Key::generate(dir, &format!("user-{name}"), alg);
            (*name, key.certificate(name))
        })
        .collect();
    // Mallory holds keys of every type (and the same curves), none of them a user's.
    for (mallory, alg, how, scheme) in keys {
        let key = Key::generate(dir, &format!("mallory-{mallory}"), alg);
        for (user, cert) in &users {
            for tls in [Tls::V13, Tls::V12] {
                let case = format!("{user} certificate, {mallory} key");
                expect(
                    &server,
                    &case,
                    &[cert],
                    forged(&key, how, scheme),
                    tls,
                    false,
                );
            }
        }
    }
}

#[test]
fn keys_the_provider_does_not_verify_with_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let server = Server::new(dir);
    let rsa1024 = Key::generate(dir, "rsa1024", RSA1024);
    let ed448 = Key::generate(dir, "ed448", ED448);
    let dsa_params = dir.join("dsa.params");
    openssl(&[
        "genpkey",
        "-genparam",
        "-algorithm",
        "DSA",
        "-pkeyopt",
        "dsa_paramgen_bits:2048",
        "-out",
        dsa_params.to_str().unwrap(),
    ]);
    let dsa = Key::generate(dir, "dsa", &["-paramfile", dsa_params.to_str().unwrap()]);
    let rsa_pss_key = Key::generate(dir, "rsapss", RSA_PSS_KEY);
    let cases = [
        (
            "rsa-1024 pss",
            &rsa1024,
            Sign::Pss("sha256"),
            SignatureScheme::RSA_PSS_SHA256,
        ),
        (
            "rsa-1024 pkcs1",
            &rsa1024,
            Sign::Digest("sha256"),
            SignatureScheme::RSA_PKCS1_SHA256,
        ),
        ("ed448", &ed448, Sign::Raw, SignatureScheme::ED448),
        // dsa_sha256 in the TLS 1.2 registry.
        (
            "dsa",
            &dsa,
            Sign::Digest("sha256"),
            SignatureScheme::Unknown(0x0402),
        ),
        (
            "dsa as ecdsa",
            &dsa,
            Sign::Digest("sha256"),
            SignatureScheme::ECDSA_NISTP256_SHA256,
        ),
        // An RSASSA-PSS key (SPKI id-RSASSA-PSS): rsa_pss_pss_sha256, or the rsaEncryption label.
        (
            "rsa-pss key",
            &rsa_pss_key,
            Sign::Pss("sha256"),
            SignatureScheme::Unknown(0x0809),
        ),
        (
            "rsa-pss key as rsae",
            &rsa_pss_key,
            Sign::Pss("sha256"),
            SignatureScheme::RSA_PSS_SHA256,
        ),
    ];
    for (case, key, how, scheme) in cases {
        let cert = key.certificate(case);
        for tls in [Tls::V13, Tls::V12] {
            expect(
                &server,
                case,
                &[&cert],
                forged(key, how, scheme),
                tls,
                false,
            );
        }
    }
}

/// One DER element: tag, header length, content length.
fn element(der: &[u8]) -> (u8, usize, usize) {
    let tag = der[0];
    let first = der[1] as usize;
    if first < 0x80 {
        return (tag, 2, first);
    }
    let n = first & 0x7f;
    let len = der[2..2 + n]
        .iter()
        .fold(0usize, |acc, b| (acc << 8) | *b as usize);
    (tag, 2 + n, len)
}

/// The elements (whole TLVs) inside a constructed element's content.
fn children(mut content: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let (_, header, len) = element(content);
        out.push(&content[..header + len]);
        content = &content[header + len..];
    }
    out
}

fn content(der: &[u8]) -> &[u8] {
    let (_, header, len) = element(der);
    &der[header..header + len]
}

fn encode(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(content);
    out
}

fn sequence(parts: &[&[u8]]) -> Vec<u8> {
    encode(0x30, &parts.concat())
}

/// `cert` with its SubjectPublicKeyInfo replaced by `spki(old)` (the self-signature is not
/// redone: the verifier does not check it).
fn with_spki(cert: &[u8], spki: impl Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
    let outer = children(content(cert));
    let mut tbs = children(content(outer[0]));
    let at = if tbs[0][0] == 0xa0 { 6 } else { 5 };
    let new = spki(tbs[at]);
    tbs[at] = &new;
    let tbs = sequence(&tbs);
    sequence(&[&tbs, outer[1], outer[2]])
}

/// The algorithm identifier's parts and the key bit string of an SPKI.
fn spki_parts(spki: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let parts = children(content(spki));
    (children(content(parts[0])), parts[1])
}

const OID_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
const NULL: &[u8] = &[0x05, 0x00];

#[test]
fn certificates_with_altered_key_algorithms_or_extra_bytes_are_refused() {
    use SignatureScheme as S;

    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let server = Server::new(dir);
    let p256 = Key::generate(dir, "p256", P256);
    let rsa = Key::generate(dir, "rsa", RSA2048);
    let ed25519 = Key::generate(dir, "ed25519", ED25519);
    let other = Key::generate(dir, "other", P256);
    let (p256_cert, rsa_cert, ed_cert) = (
        p256.certificate("p256"),
        rsa.certificate("rsa"),
        ed25519.certificate("ed25519"),
    );
    let other_cert = other.certificate("other");

    // The P-256 point under the P-384 curve identifier.
    let curve_swapped = with_spki(&p256_cert, |spki| {
        let (alg, key) = spki_parts(spki);
        sequence(&[&sequence(&[alg[0], OID_P384]), key])
    });
    // rsaEncryption without its NULL parameters; Ed25519 with NULL parameters.
    let rsa_no_null = with_spki(&rsa_cert, |spki| {
        let (alg, key) = spki_parts(spki);
        sequence(&[&sequence(&[alg[0]]), key])
    });
    let ed_with_null = with_spki(&ed_cert, |spki| {
        let (alg, key) = spki_parts(spki);
        sequence(&[&sequence(&[alg[0], NULL]), key])
    });
    // A bit string that claims unused bits.
    let unused_bits = with_spki(&ed_cert, |spki| {
        let (alg, key) = spki_parts(spki);
        let mut bits = content(key).to_vec();
        bits[0] = 1;
        sequence(&[&sequence(&alg), &encode(0x03, &bits)])
    });
    // Two certificates in one entry: the key of the first one signs.
    let concatenated = [p256_cert.clone(), other_cert.clone()].concat();
    let cases = [
        (
            "p256 point as p384",
            &curve_swapped,
            &p256,
            Sign::Digest("sha256"),
            S::ECDSA_NISTP256_SHA256,
        ),
        (
            "p256 point as p384, p384 scheme",
            &curve_swapped,
            &p256,
            Sign::Digest("sha384"),
            S::ECDSA_NISTP384_SHA384,
        ),
        (
            "rsa without null",
            &rsa_no_null,
            &rsa,
            Sign::Pss("sha256"),
            S::RSA_PSS_SHA256,
        ),
        (
            "ed25519 with null",
            &ed_with_null,
            &ed25519,
            Sign::Raw,
            S::ED25519,
        ),
        ("unused bits", &unused_bits, &ed25519, Sign::Raw, S::ED25519),
        (
            "two certificates",
            &concatenated,
            &p256,
            Sign::Digest("sha256"),
            S::ECDSA_NISTP256_SHA256,
        ),
    ];
    for (case, cert, key, how, scheme) in cases {
        for tls in [Tls::V13, Tls::V12] {
            expect(&server, case, &[cert], forged(key, how, scheme), tls, false);
        }
    }

    // The rewriting itself keeps a certificate usable: unchanged SPKI, accepted.
    let same = with_spki(&p256_cert, |spki| spki.to_vec());
    assert_eq!(same, p256_cert);
}

#[test]
fn only_the_leaf_is_proven_and_appended_certificates_do_not_help() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let server = Server::new(dir);
    let alice = Key::generate(dir, "alice", P256).certificate("alice");
    let mallory_key = Key::generate(dir, "mallory", P256);
    let mallory = mallory_key.certificate("mallory");
    let sign = || {
        forged(
            &mallory_key,
            Sign::Digest("sha256"),
            SignatureScheme::ECDSA_NISTP256_SHA256,
        )
    };
    for tls in [Tls::V13, Tls::V12] {
        // Alice's certificate appended: accepted as Mallory (the leaf), never as Alice.
        expect(
            &server,
            "mallory then alice",
            &[&mallory, &alice],
            sign(),
            tls,
            true,
        );
        // Alice's certificate as the leaf with Mallory's behind it: refused.
        expect(
            &server,
            "alice then mallory",
            &[&alice, &mallory],
            sign(),
            tls,
            false,
        );
    }
}

/// An ML-DSA key held by aws-lc-rs (openssl 3.0 has none), signing under any scheme label.
#[derive(Debug)]
struct MlDsa {
    key: Arc<aws_lc_rs::signature::PqdsaKeyPair>,
    scheme: SignatureScheme,
}

impl Signer for MlDsa {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let mut signature = vec![0; self.key.algorithm().signature_len()];
        let len = self.key.sign(message, &mut signature).unwrap();
        signature.truncate(len);
        Ok(signature)
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}

impl SigningKey for MlDsa {
    fn choose_scheme(&self, _offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        Some(Box::new(Self {
            key: Arc::clone(&self.key),
            scheme: self.scheme,
        }))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::Unknown(0)
    }
}

/// ML-DSA is defined for TLS 1.3 only: the provider verifies it there, as rustls's own verifier
/// does, and TLS 1.2 refuses it.
#[test]
fn ml_dsa_client_certificates_are_verified_in_tls13_only() {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{KeyPair, ML_DSA_44_SIGNING, PqdsaKeyPair};

    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let server = Server::new(dir);
    let key = Arc::new(PqdsaKeyPair::generate(&ML_DSA_44_SIGNING).unwrap());
    let spki = key.public_key().as_der().unwrap();
    // A certificate around the ML-DSA key (its self-signature is not checked).
    let cert = with_spki(
        &Key::generate(dir, "carrier", P256).certificate("mldsa"),
        |_| spki.as_ref().to_vec(),
    );
    let other = Arc::new(PqdsaKeyPair::generate(&ML_DSA_44_SIGNING).unwrap());
    let signer = |key: &Arc<PqdsaKeyPair>, scheme| -> Arc<dyn SigningKey> {
        Arc::new(MlDsa {
            key: Arc::clone(key),
            scheme,
        })
    };
    let ml_dsa_44 = SignatureScheme::ML_DSA_44;
    expect(
        &server,
        "ml-dsa-44",
        &[&cert],
        signer(&key, ml_dsa_44),
        Tls::V13,
        true,
    );
    expect(
        &server,
        "ml-dsa-44",
        &[&cert],
        signer(&key, ml_dsa_44),
        Tls::V12,
        false,
    );
    for tls in [Tls::V13, Tls::V12] {
        let case = "ml-dsa-44, another key";
        expect(
            &server,
            case,
            &[&cert],
            signer(&other, ml_dsa_44),
            tls,
            false,
        );
        let case = "ml-dsa-44 as ml-dsa-65";
        let ml_dsa_65 = SignatureScheme::ML_DSA_65;
        expect(&server, case, &[&cert], signer(&key, ml_dsa_65), tls, false);
    }
}
