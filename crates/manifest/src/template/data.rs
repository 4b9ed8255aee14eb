//! The data a template sees as `.`: the Marble's secrets, the previous generation of secrets,
//! and the Coordinator's own certificates under `.MarbleRun`.
//!
//! Every byte string that may be key material lives in a [`SecretBytes`], which is zeroed on
//! drop and never shown by `Debug`. The template engine itself never holds these bytes: it
//! sees opaque references, and only the encoders read the bytes (see the `engine` module).
//!
//! The shape of the data follows MarbleRun: a secret has three byte parts, `.Cert` (DER
//! certificate), `.Public` (PKIX `SubjectPublicKeyInfo` DER, or the key itself for symmetric
//! keys and plain secrets) and `.Private` (PKCS#8 DER, or again the key or the plain bytes).
//! The definition fields of MarbleRun's Go structure (`.Type`, `.Size`, the x509 fields of
//! `.Cert`) are not part of Quarry's template language; a template that uses them is refused
//! by the dry run.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use zeroize::Zeroizing;

/// A byte string that may be key material: zeroed on drop, never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Takes ownership of `bytes`; the buffer is zeroed when the value is dropped.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Copies `bytes` into a new zeroing buffer.
    pub fn from_slice(bytes: &[u8]) -> Self {
        Self::new(bytes.to_vec())
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The number of bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(bytes: Vec<u8>) -> Self {
        Self::new(bytes)
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBytes")
    }
}

/// A UTF-8 string that may contain key material (a rendered `Env` value): zeroed on drop,
/// never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// Takes ownership of `text`; the buffer is zeroed when the value is dropped.
    pub fn new(text: String) -> Self {
        Self(Zeroizing::new(text))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString")
    }
}

/// The `Type` of a manifest secret, spelled exactly as in the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SecretType {
    /// `symmetric-key`: random or derived key bytes.
    SymmetricKey,
    /// `cert-rsa`: an RSA key pair with a certificate.
    CertRsa,
    /// `cert-ecdsa`: an ECDSA key pair with a certificate.
    CertEcdsa,
    /// `cert-ed25519`: an Ed25519 key pair with a certificate.
    CertEd25519,
    /// `plain`: bytes uploaded by a user, never generated.
    Plain,
}

impl SecretType {
    /// The manifest spelling (`symmetric-key`, `cert-rsa`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SymmetricKey => "symmetric-key",
            Self::CertRsa => "cert-rsa",
            Self::CertEcdsa => "cert-ecdsa",
            Self::CertEd25519 => "cert-ed25519",
            Self::Plain => "plain",
        }
    }

    /// Whether secrets of this type carry a certificate and a key pair.
    pub fn is_certificate(self) -> bool {
        matches!(self, Self::CertRsa | Self::CertEcdsa | Self::CertEd25519)
    }
}

impl fmt::Display for SecretType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`SecretType`] from a string that is not one of the five types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown secret type {0:?}")]
pub struct UnknownSecretType(pub String);

impl FromStr for SecretType {
    type Err = UnknownSecretType;

    /// Parses the manifest spelling; like MarbleRun, the match is case-sensitive.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "symmetric-key" => Ok(Self::SymmetricKey),
            "cert-rsa" => Ok(Self::CertRsa),
            "cert-ecdsa" => Ok(Self::CertEcdsa),
            "cert-ed25519" => Ok(Self::CertEd25519),
            "plain" => Ok(Self::Plain),
            other => Err(UnknownSecretType(other.to_owned())),
        }
    }
}

/// One of the three byte parts of a [`Secret`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    /// `.Cert`: the DER certificate.
    Cert,
    /// `.Public`: the PKIX public key, or the key bytes of a symmetric key or plain secret.
    Public,
    /// `.Private`: the PKCS#8 private key, or the key bytes of a symmetric key or plain secret.
    Private,
}

impl Part {
    /// All parts, in the order they appear in the data model.
    pub const ALL: [Part; 3] = [Part::Cert, Part::Public, Part::Private];

    /// The field name in templates (`Cert`, `Public`, `Private`).
    pub fn field(self) -> &'static str {
        match self {
            Self::Cert => "Cert",
            Self::Public => "Public",
            Self::Private => "Private",
        }
    }

    /// The PEM label MarbleRun writes for this part.
    pub fn pem_label(self) -> &'static str {
        match self {
            Self::Cert => "CERTIFICATE",
            Self::Public => "PUBLIC KEY",
            Self::Private => "PRIVATE KEY",
        }
    }
}

/// A secret's value as templates see it.
///
/// Build one with the constructor that matches the secret's type; the parts follow MarbleRun's
/// layout (see the module documentation). `Debug` prints the type only.
#[derive(Clone)]
pub struct Secret {
    secret_type: Option<SecretType>,
    cert: SecretBytes,
    public: SecretBytes,
    private: SecretBytes,
}

impl Secret {
    /// A `symmetric-key` secret: `.Public` and `.Private` are both the key, `.Cert` is empty.
    pub fn symmetric_key(key: SecretBytes) -> Self {
        Self::same_bytes(SecretType::SymmetricKey, key)
    }

    /// A `plain` secret: `.Public` and `.Private` are both the data, `.Cert` is empty.
    pub fn plain(data: SecretBytes) -> Self {
        Self::same_bytes(SecretType::Plain, data)
    }

    /// A certificate secret (`cert-rsa`, `cert-ecdsa`, `cert-ed25519`) from the DER certificate,
    /// the PKIX public key and the PKCS#8 private key. Returns `None` if `secret_type` is not a
    /// certificate type. The private key may be empty (an uploaded certificate without key).
    pub fn certificate(
        secret_type: SecretType,
        cert_der: SecretBytes,
        public_der: SecretBytes,
        private_pkcs8: SecretBytes,
    ) -> Option<Self> {
        secret_type.is_certificate().then_some(Self {
            secret_type: Some(secret_type),
            cert: cert_der,
            public: public_der,
            private: private_pkcs8,
        })
    }

    /// One of the Coordinator's own entries under `.MarbleRun` (no manifest type). Parts that
    /// an entry does not have are left empty, and encoding them fails as in MarbleRun.
    pub fn reserved(cert_der: SecretBytes, public_der: SecretBytes, private: SecretBytes) -> Self {
        Self {
            secret_type: None,
            cert: cert_der,
            public: public_der,
            private,
        }
    }

    /// A `.MarbleRun` entry that only has a certificate (`RootCA`, `CoordinatorRoot`,
    /// `CoordinatorIntermediate`).
    pub fn reserved_certificate(cert_der: SecretBytes) -> Self {
        Self::reserved(cert_der, SecretBytes::default(), SecretBytes::default())
    }

    /// The manifest type, or `None` for a `.MarbleRun` entry.
    pub fn secret_type(&self) -> Option<SecretType> {
        self.secret_type
    }

    /// The bytes of one part (possibly empty).
    pub fn part(&self, part: Part) -> &SecretBytes {
        match part {
            Part::Cert => &self.cert,
            Part::Public => &self.public,
            Part::Private => &self.private,
        }
    }

    fn same_bytes(secret_type: SecretType, bytes: SecretBytes) -> Self {
        Self {
            secret_type: Some(secret_type),
            cert: SecretBytes::default(),
            public: bytes.clone(),
            private: bytes,
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret")
    }
}

/// The Coordinator's own certificates and the Marble's identity, `.MarbleRun` in templates.
#[derive(Clone, Debug)]
pub struct MarbleRunSecrets {
    /// `.MarbleRun.RootCA`: the Marble root certificate (`.Cert` only).
    pub root_ca: Secret,
    /// `.MarbleRun.MarbleCert`: this Marble's certificate, public key and PKCS#8 private key.
    pub marble_cert: Secret,
    /// `.MarbleRun.CoordinatorRoot`: the Coordinator root certificate (`.Cert` only).
    pub coordinator_root: Secret,
    /// `.MarbleRun.CoordinatorIntermediate`: the Coordinator intermediate certificate
    /// (`.Cert` only).
    pub coordinator_intermediate: Secret,
}

impl MarbleRunSecrets {
    /// The entries with their template field names, in template order.
    pub(crate) fn entries(&self) -> [(&'static str, &Secret); 4] {
        [
            ("CoordinatorIntermediate", &self.coordinator_intermediate),
            ("CoordinatorRoot", &self.coordinator_root),
            ("MarbleCert", &self.marble_cert),
            ("RootCA", &self.root_ca),
        ]
    }
}

/// Everything a template can reference: `.Secrets`, `.Previous.Secrets` and `.MarbleRun`.
#[derive(Clone, Debug)]
pub struct TemplateData {
    pub(crate) secrets: BTreeMap<String, Arc<Secret>>,
    pub(crate) previous: BTreeMap<String, Arc<Secret>>,
    pub(crate) marblerun: MarbleRunSecrets,
}

impl TemplateData {
    /// Data with no secrets and the given `.MarbleRun` entries.
    pub fn new(marblerun: MarbleRunSecrets) -> Self {
        Self {
            secrets: BTreeMap::new(),
            previous: BTreeMap::new(),
            marblerun,
        }
    }

    /// Sets `.Secrets.<name>`, replacing an earlier value.
    pub fn set_secret(&mut self, name: &str, secret: Secret) {
        self.secrets.insert(name.to_owned(), Arc::new(secret));
    }

    /// Sets `.Previous.Secrets.<name>`, replacing an earlier value.
    pub fn set_previous(&mut self, name: &str, secret: Secret) {
        self.previous.insert(name.to_owned(), Arc::new(secret));
    }

    /// Sets `.Secrets.<name>` and `.Previous.Secrets.<name>` to the same value, held once.
    pub(crate) fn set_secret_and_previous(&mut self, name: &str, secret: Secret) {
        let secret = Arc::new(secret);
        self.previous.insert(name.to_owned(), Arc::clone(&secret));
        self.secrets.insert(name.to_owned(), secret);
    }

    /// `.Secrets.<name>`, if set.
    pub fn secret(&self, name: &str) -> Option<&Secret> {
        self.secrets.get(name).map(Arc::as_ref)
    }

    /// The `.MarbleRun` entries.
    pub fn marblerun(&self) -> &MarbleRunSecrets {
        &self.marblerun
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_bytes() {
        let secret = Secret::plain(SecretBytes::from_slice(b"hunter2"));
        assert_eq!(format!("{secret:?}"), "Secret");
        assert_eq!(format!("{:?}", secret.part(Part::Private)), "SecretBytes");
        assert_eq!(
            format!("{:?}", SecretString::new("hunter2".into())),
            "SecretString"
        );
    }

    #[test]
    fn symmetric_key_and_plain_share_public_and_private() {
        let key = Secret::symmetric_key(SecretBytes::from_slice(&[1, 2, 3]));
        assert_eq!(key.part(Part::Public).as_bytes(), &[1, 2, 3]);
        assert_eq!(key.part(Part::Private).as_bytes(), &[1, 2, 3]);
        assert!(key.part(Part::Cert).is_empty());
    }

    #[test]
    fn certificate_constructor_refuses_non_certificate_types() {
        let empty = SecretBytes::default;
        assert!(Secret::certificate(SecretType::Plain, empty(), empty(), empty()).is_none());
        assert!(Secret::certificate(SecretType::CertRsa, empty(), empty(), empty()).is_some());
    }

    #[test]
    fn secret_types_round_trip_and_are_case_sensitive() {
        for ty in [
            SecretType::SymmetricKey,
            SecretType::CertRsa,
            SecretType::CertEcdsa,
            SecretType::CertEd25519,
            SecretType::Plain,
        ] {
            assert_eq!(ty.as_str().parse::<SecretType>(), Ok(ty));
        }
        assert_eq!(
            "Plain".parse::<SecretType>(),
            Err(UnknownSecretType("Plain".into()))
        );
    }
}
