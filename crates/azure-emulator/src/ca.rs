//! The emulator's private certificate authority.
//!
//! On first start the emulator creates a root CA and an issuing CA below it (both RSA-2048,
//! like the DigiCert root and Microsoft issuing CA behind real Azure endpoints) and writes them
//! to the state directory: `ca.pem` is the root that clients trust (`QUARRY_AZURE_CA_FILE`,
//! `REQUESTS_CA_BUNDLE`); `ca-key.pem`, `issuing-ca.pem` and `issuing-ca-key.pem` stay private.
//! Later starts load them, so a client that trusts `ca.pem` keeps working across restarts.
//!
//! Leaf certificates ([`Ca::issue_leaf`]) are made on demand and never stored by this module:
//! the HTTPS listener's certificate for `localhost`, `127.0.0.1` and `::1`, and the Managed
//! HSM's release-signing certificate for its host name. A leaf's chain is leaf, issuing CA,
//! root — the same three-certificate shape as a real Managed HSM's `x5c`.

use std::fmt;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256, RsaKeySize,
    SerialNumber,
};
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::jose::RsaSigningKey;
use crate::persist::{PersistError, StateDir};

const ROOT_CERT: &str = "ca.pem";
const ROOT_KEY: &str = "ca-key.pem";
const ISSUING_CERT: &str = "issuing-ca.pem";
const ISSUING_KEY: &str = "issuing-ca-key.pem";

/// A failure of the certificate authority.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// Reading or writing the CA files failed.
    #[error(transparent)]
    Persist(#[from] PersistError),
    /// A stored CA file cannot be used.
    #[error("ca file {file} is unusable: {detail}")]
    BadFile {
        /// The file name in the state directory.
        file: &'static str,
        /// Why.
        detail: String,
    },
    /// Certificate or key generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(String),
    /// A host name cannot go into a certificate.
    #[error("invalid host name {name:?} for a certificate: {detail}")]
    HostName {
        /// The name.
        name: String,
        /// Why.
        detail: String,
    },
}

impl From<rcgen::Error> for CaError {
    fn from(e: rcgen::Error) -> Self {
        CaError::Generate(e.to_string())
    }
}

/// The key type of a leaf certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeafKeyType {
    /// ECDSA P-256: fast, for TLS.
    EcdsaP256,
    /// RSA-2048: for certificates that sign RS256 (the Managed HSM's release responses).
    Rsa2048,
}

/// A leaf certificate with its chain and private key. `Debug` hides the key.
pub struct Leaf {
    /// DER certificates: leaf, issuing CA, root.
    pub chain: Vec<CertificateDer<'static>>,
    /// PKCS#8 DER of the leaf's private key, zeroed on drop.
    pub key_pkcs8: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for Leaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leaf")
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// The private CA: root and issuing CA.
pub struct Ca {
    root_der: CertificateDer<'static>,
    root_pem: String,
    issuing_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Ca(..)")
    }
}

impl Ca {
    /// Loads the CA from the state directory, creating it on first use.
    pub fn open(state: &StateDir) -> Result<Self, CaError> {
        let _lock = state.lock()?;
        if state.file(ROOT_CERT).exists() {
            return Self::load(state);
        }
        Self::create(state)
    }

    fn create(state: &StateDir) -> Result<Self, CaError> {
        let now = OffsetDateTime::now_utc();
        let root_key = KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048)?;
        let root_params = ca_params("Quarry Azure Emulator Root CA", now, 3650 * 2);
        let root = root_params.self_signed(&root_key)?;
        let root_issuer = Issuer::new(root_params, root_key);

        let issuing_key = KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048)?;
        let mut issuing_params = ca_params("Quarry Azure Emulator Issuing CA", now, 3650);
        issuing_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        issuing_params.use_authority_key_identifier_extension = true;
        let issuing = issuing_params.signed_by(&issuing_key, &root_issuer)?;

        state.write_secret(ROOT_KEY, root_issuer.key().serialize_pem().as_bytes())?;
        state.write_secret(ISSUING_KEY, issuing_key.serialize_pem().as_bytes())?;
        state.write_public(ISSUING_CERT, issuing.pem().as_bytes())?;
        // The root certificate last: its presence marks a complete CA.
        state.write_public(ROOT_CERT, root.pem().as_bytes())?;
        tracing::info!(path = %state.file(ROOT_CERT).display(), "created the emulator's ca");

        Ok(Self {
            root_pem: root.pem(),
            root_der: root.der().clone(),
            issuing_der: issuing.der().clone(),
            issuer: Issuer::new(issuing_params, issuing_key),
        })
    }

    fn load(state: &StateDir) -> Result<Self, CaError> {
        let read = |file: &'static str| -> Result<Zeroizing<String>, CaError> {
            let bytes = state.read_secret(file)?.ok_or(CaError::BadFile {
                file,
                detail: "missing".into(),
            })?;
            String::from_utf8(bytes.to_vec())
                .map(Zeroizing::new)
                .map_err(|_| CaError::BadFile {
                    file,
                    detail: "not utf-8".into(),
                })
        };
        let cert_der = |file: &'static str| -> Result<CertificateDer<'static>, CaError> {
            let pem = pem::parse(read(file)?.as_bytes()).map_err(|e| CaError::BadFile {
                file,
                detail: e.to_string(),
            })?;
            Ok(CertificateDer::from(pem.into_contents()))
        };
        let root_pem = read(ROOT_CERT)?.to_string();
        let root_der = cert_der(ROOT_CERT)?;
        let issuing_der = cert_der(ISSUING_CERT)?;
        let issuing_key = KeyPair::from_pem(&read(ISSUING_KEY)?).map_err(|e| CaError::BadFile {
            file: ISSUING_KEY,
            detail: e.to_string(),
        })?;
        let issuer =
            Issuer::from_ca_cert_der(&issuing_der, issuing_key).map_err(|e| CaError::BadFile {
                file: ISSUING_CERT,
                detail: e.to_string(),
            })?;
        Ok(Self {
            root_der,
            root_pem,
            issuing_der,
            issuer,
        })
    }

    /// The root certificate, PEM (the content of `ca.pem`).
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// The root certificate, DER.
    pub fn root_der(&self) -> &CertificateDer<'static> {
        &self.root_der
    }

    /// Issues a leaf certificate for `host_names` (DNS names or IP addresses), valid for TLS
    /// server and client authentication and for signing, for one year from an hour ago.
    pub fn issue_leaf(
        &self,
        host_names: &[String],
        key_type: LeafKeyType,
    ) -> Result<Leaf, CaError> {
        let first = host_names.first().ok_or_else(|| CaError::HostName {
            name: String::new(),
            detail: "a leaf needs at least one host name".into(),
        })?;
        let mut params =
            CertificateParams::new(host_names.to_vec()).map_err(|e| CaError::HostName {
                name: host_names.join(","),
                detail: e.to_string(),
            })?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, first.as_str());
        dn.push(DnType::OrganizationName, "Quarry Azure Emulator");
        params.distinguished_name = dn;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(365);
        params.serial_number = Some(random_serial());
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::DataEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;

        let key = match key_type {
            LeafKeyType::EcdsaP256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?,
            LeafKeyType::Rsa2048 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048)?,
        };
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Leaf {
            chain: vec![
                cert.der().clone(),
                self.issuing_der.clone(),
                self.root_der.clone(),
            ],
            key_pkcs8: Zeroizing::new(key.serialize_der()),
        })
    }
}

fn ca_params(common_name: &str, now: OffsetDateTime, days: i64) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "Quarry Azure Emulator");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(days);
    params.serial_number = Some(random_serial());
    params
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    // The system random generator does not fail on supported platforms; a zero serial would
    // still give a valid (if less unique) certificate.
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

/// A self-signed certificate for an RSA token-signing key with the subject `CN=common_name`,
/// as MAA and Entra ID publish their signing keys in `x5c`. Returns the DER.
pub fn self_signed_for_key(common_name: &str, key: &RsaSigningKey) -> Result<Vec<u8>, CaError> {
    let pkcs8 = PrivatePkcs8KeyDer::from(key.pkcs8());
    let key_pair = KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &PKCS_RSA_SHA256)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(3650);
    params.serial_number = Some(random_serial());
    Ok(params.self_signed(&key_pair)?.der().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reload_and_issues_chained_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let ca = Ca::open(&state).unwrap();
        let again = Ca::open(&state).unwrap();
        assert_eq!(ca.root_der(), again.root_der());

        let leaf = again
            .issue_leaf(&["myhsm.localhost".into()], LeafKeyType::Rsa2048)
            .unwrap();
        assert_eq!(leaf.chain.len(), 3);
        let (_, cert) = x509_parser::parse_x509_certificate(&leaf.chain[0]).unwrap();
        let (_, issuing) = x509_parser::parse_x509_certificate(&leaf.chain[1]).unwrap();
        let (_, root) = x509_parser::parse_x509_certificate(&leaf.chain[2]).unwrap();
        cert.verify_signature(Some(issuing.public_key())).unwrap();
        issuing.verify_signature(Some(root.public_key())).unwrap();
        assert_eq!(cert.issuer(), issuing.subject());
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(san.value.general_names.len(), 1);
    }

    #[test]
    fn refuses_a_leaf_without_names() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::open(&StateDir::open(dir.path()).unwrap()).unwrap();
        assert!(matches!(
            ca.issue_leaf(&[], LeafKeyType::EcdsaP256),
            Err(CaError::HostName { .. })
        ));
    }
}
