//! What a Marble presents at activation: a fresh P-384 key with a self-signed TLS client
//! certificate, a CSR signed with the same key, and its UUID from the UUID file.
//!
//! Certificate (MarbleRun's profile): `CN=MarbleRun Marble`, random serial, valid from now for
//! about 292 years, DNS SANs from `EDG_MARBLE_DNS_NAMES`, IP SANs from that list followed by
//! `127.0.0.1` and `::1`, key usage digitalSignature + keyAgreement, extended key usage
//! serverAuth + clientAuth, `CA:FALSE`. CSR: empty subject, the same DNS names, and
//! `127.0.0.1`, `::1` followed by the listed IPs. The Coordinator ignores the CSR's key and
//! issues the Marble's certificate for a key of its own; the quote binds this certificate.
//!
//! The UUID file holds the canonical UUID (36 characters, no newline). A missing file is
//! created (mode 0600, parent directories created) with a new random version-4 UUID; an
//! existing one must parse, in any form MarbleRun accepts.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use time::OffsetDateTime;
use uuid::Uuid;
use zeroize::Zeroizing;

/// Subject CN of the Marble's self-signed certificate.
pub const MARBLE_COMMON_NAME: &str = "MarbleRun Marble";

/// Why the Marble's identity could not be made or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// Key, certificate or CSR generation failed.
    #[error("generating the marble's {what}")]
    Generate {
        /// What was generated.
        what: &'static str,
        /// The cause.
        #[source]
        source: rcgen::Error,
    },
    /// The random generator failed.
    #[error("random generator failed")]
    Random,
    /// A DNS name cannot go into a certificate.
    #[error("dns name {0:?} cannot go into a certificate")]
    DnsName(String),
    /// The UUID file could not be read or written.
    #[error("{op} uuid file {path}")]
    UuidFile {
        /// `read`, `create`, `write`.
        op: &'static str,
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The UUID file does not hold a UUID.
    #[error("uuid file {path} holds {content:?}, not a uuid")]
    InvalidUuid {
        /// The file.
        path: String,
        /// Its content (at most 64 characters).
        content: String,
    },
}

/// The Marble's TLS credentials and CSR. The key is zeroed on drop; `Debug` hides it.
pub struct MarbleIdentity {
    certificate: Vec<u8>,
    private_key: Zeroizing<Vec<u8>>,
    csr: Vec<u8>,
}

impl std::fmt::Debug for MarbleIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MarbleIdentity")
    }
}

impl MarbleIdentity {
    /// A new key, self-signed certificate and CSR for these names.
    pub fn generate(dns_names: &[String], ip_addresses: &[IpAddr]) -> Result<Self, IdentityError> {
        let generate = |what| move |source| IdentityError::Generate { what, source };
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).map_err(generate("key"))?;
        let dns = |name: &String| {
            name.clone()
                .try_into()
                .map(SanType::DnsName)
                .map_err(|_| IdentityError::DnsName(name.clone()))
        };
        let loopback = [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ];

        let now = OffsetDateTime::now_utc();
        let mut cert = CertificateParams::default();
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, MARBLE_COMMON_NAME);
        cert.distinguished_name = subject;
        cert.serial_number = Some(random_serial()?);
        cert.not_before = now;
        // MarbleRun: now + 2^63-1 ns, about 292 years.
        cert.not_after = now + time::Duration::days(292 * 365);
        cert.subject_alt_names = dns_names.iter().map(dns).collect::<Result<_, _>>()?;
        cert.subject_alt_names.extend(
            ip_addresses
                .iter()
                .chain(loopback.iter())
                .map(|ip| SanType::IpAddress(*ip)),
        );
        cert.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyAgreement,
        ];
        cert.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        cert.is_ca = IsCa::ExplicitNoCa;
        let certificate = cert.self_signed(&key).map_err(generate("certificate"))?;

        let mut request = CertificateParams::default();
        request.distinguished_name = DistinguishedName::new();
        request.subject_alt_names = dns_names.iter().map(dns).collect::<Result<_, _>>()?;
        request.subject_alt_names.extend(
            loopback
                .iter()
                .chain(ip_addresses.iter())
                .map(|ip| SanType::IpAddress(*ip)),
        );
        let csr = request
            .serialize_request(&key)
            .map_err(generate("certificate signing request"))?;

        Ok(Self {
            certificate: certificate.der().to_vec(),
            private_key: Zeroizing::new(key.serialize_der()),
            csr: csr.der().to_vec(),
        })
    }

    /// The self-signed TLS client certificate, DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate
    }

    /// The private key, PKCS#8 DER.
    pub fn private_key_der(&self) -> &[u8] {
        &self.private_key
    }

    /// The CSR, DER.
    pub fn csr_der(&self) -> &[u8] {
        &self.csr
    }

    /// The 64 bytes of report data a quote must carry: SHA-256 of the certificate's DER,
    /// followed by 32 zero bytes.
    pub fn report_data(&self) -> [u8; 64] {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &self.certificate);
        let mut data = [0u8; 64];
        data[..32].copy_from_slice(digest.as_ref());
        data
    }
}

/// A random positive serial below 2^128.
fn random_serial() -> Result<SerialNumber, IdentityError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| IdentityError::Random)?;
    // A leading zero bit keeps the DER INTEGER positive without a padding byte.
    bytes[0] &= 0x7f;
    Ok(SerialNumber::from_slice(&bytes))
}

/// The UUID in `path`, or a new random one written there when the file does not exist.
pub fn load_or_create_uuid(path: &Path) -> Result<Uuid, IdentityError> {
    let shown = path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            // MarbleRun does not trim: a trailing newline makes the file invalid there too.
            Uuid::parse_str(&text).map_err(|_| IdentityError::InvalidUuid {
                path: shown,
                content: text.chars().take(64).collect(),
            })
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let uuid = Uuid::new_v4();
            write_private_file(path, uuid.hyphenated().to_string().as_bytes()).map_err(
                |source| IdentityError::UuidFile {
                    op: "write",
                    path: shown,
                    source,
                },
            )?;
            tracing::info!(uuid = %uuid, file = %path.display(), "created a new marble uuid");
            Ok(uuid)
        }
        Err(source) => Err(IdentityError::UuidFile {
            op: "read",
            path: shown,
            source,
        }),
    }
}

/// Writes `bytes` to `path` with mode 0600 (truncating), creating parent directories (0700).
pub fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};

    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An existing file keeps its mode on open; make it 0600 like a new one.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use x509_parser::prelude::*;

    #[test]
    fn certificate_and_csr_follow_marbleruns_profile() {
        let ips = ["10.1.2.3".parse().unwrap()];
        let id = MarbleIdentity::generate(&["web".into()], &ips).unwrap();
        let (_, cert) = X509Certificate::from_der(id.certificate_der()).unwrap();
        assert_eq!(cert.subject().to_string(), "CN=MarbleRun Marble");
        assert!(!cert.is_ca());
        let san = cert.subject_alternative_name().unwrap().unwrap().value;
        let names: Vec<String> = san.general_names.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            names,
            [
                "DNSName(web)",
                "IPAddress(0a:01:02:03)",
                "IPAddress(7f:00:00:01)",
                &format!("IPAddress({}01)", "00:".repeat(15))
            ]
        );

        let (_, csr) =
            x509_parser::certification_request::X509CertificationRequest::from_der(id.csr_der())
                .unwrap();
        csr.verify_signature().unwrap();
        assert_eq!(
            csr.certification_request_info.subject_pki.raw,
            cert.public_key().raw,
            "the csr and the certificate share the key"
        );
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, id.certificate_der());
        assert_eq!(&id.report_data()[..32], digest.as_ref());
        assert_eq!(id.report_data()[32..], [0; 32]);
        assert_eq!(format!("{id:?}"), "MarbleIdentity");
    }

    #[test]
    fn uuid_file_is_created_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/uuid");
        let first = load_or_create_uuid(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), first.to_string());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_or_create_uuid(&path).unwrap(), first);
    }

    #[test]
    fn uuid_file_accepts_marbleruns_forms_and_refuses_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("uuid");
        std::fs::write(&path, "{6BA7B810-9DAD-11D1-80B4-00C04FD430C8}").unwrap();
        assert_eq!(
            load_or_create_uuid(&path).unwrap().to_string(),
            "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
        );
        std::fs::write(&path, "6ba7b810-9dad-11d1-80b4-00c04fd430c8\n").unwrap();
        let err = load_or_create_uuid(&path).unwrap_err();
        assert!(err.to_string().contains("not a uuid"), "{err}");
    }
}
