//! The Coordinator's certificate authorities and the manifest signature.
//!
//! MarbleRun's Coordinator keeps three CA certificates, all ECDSA P-384, all with the same
//! profile (CN only, SANs from `EDG_COORDINATOR_DNS_NAMES` plus `127.0.0.1` and `::1`,
//! key usage digitalSignature + keyCertSign, extended key usage serverAuth + clientAuth,
//! `cA=TRUE` without a path length, a random serial below 2^128, valid from now for
//! 2^63−1 ns ≈ 292 years, signed with ECDSA-SHA384):
//!
//! | certificate | CN | key | signed by |
//! |---|---|---|---|
//! | root | `MarbleRun Coordinator` | root key | itself |
//! | intermediate | `MarbleRun Coordinator - Intermediate CA` | intermediate key | root |
//! | Marble root | `MarbleRun Coordinator - Intermediate CA` | **the intermediate key** | itself |
//!
//! The intermediate and the Marble root are twins: same subject, same key, same subject key
//! identifier. Everything issued "by the Marble root" (Marble and secret certificates) is
//! signed with the intermediate key, so it verifies with the Marble root as trust anchor or
//! through intermediate → root.
//!
//! A manifest update re-keys the intermediate and the Marble root
//! ([`CoordinatorCa::rotate_intermediate`]); the root stays. Quarry keeps the root's IP SANs
//! on every rotation (MarbleRun loses them on a package update).
//!
//! The manifest signature is ECDSA with the root key over SHA-256 of the raw manifest bytes,
//! ASN.1 DER, i.e. what `openssl dgst -sha256 -verify root.pub -signature sig manifest`
//! accepts.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aws_lc_rs::signature::{ECDSA_P384_SHA256_ASN1, UnparsedPublicKey};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;
use zeroize::Zeroizing;

use crate::{CaKey, Error, RandomSource};

/// CN of the Coordinator root certificate.
pub const ROOT_COMMON_NAME: &str = "MarbleRun Coordinator";

/// CN of the intermediate and of the Marble root certificate.
pub const INTERMEDIATE_COMMON_NAME: &str = "MarbleRun Coordinator - Intermediate CA";

/// The IP SANs every Coordinator certificate carries first.
const DEFAULT_IPS: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::LOCALHOST),
    IpAddr::V6(Ipv6Addr::LOCALHOST),
];

/// The DNS names and extra IP addresses put into the Coordinator's CA certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaNames {
    dns_names: Vec<String>,
    extra_ips: Vec<IpAddr>,
}

impl CaNames {
    /// Parses a comma-separated list as in `EDG_COORDINATOR_DNS_NAMES`: entries that parse as
    /// IP addresses become IP SANs, the others DNS SANs.
    ///
    /// Unlike MarbleRun, entries are trimmed and empty entries skipped, so `"a, b"` yields `b`
    /// rather than the unusable name `" b"`.
    pub fn parse(list: &str) -> Self {
        Self::from_entries(list.split(',').map(str::trim).filter(|e| !e.is_empty()))
    }

    /// Builds the names from individual entries (IP addresses are recognised).
    pub fn from_entries<I, S>(entries: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut names = Self {
            dns_names: Vec::new(),
            extra_ips: Vec::new(),
        };
        for entry in entries {
            let entry = entry.as_ref();
            match entry.parse::<IpAddr>() {
                Ok(ip) => names.push_ip(ip),
                Err(_) => names.dns_names.push(entry.to_owned()),
            }
        }
        names
    }

    fn push_ip(&mut self, ip: IpAddr) {
        if !DEFAULT_IPS.contains(&ip) && !self.extra_ips.contains(&ip) {
            self.extra_ips.push(ip);
        }
    }

    /// The DNS names.
    pub fn dns_names(&self) -> &[String] {
        &self.dns_names
    }

    /// All IP SANs: `127.0.0.1`, `::1`, then the configured ones.
    pub fn ip_addresses(&self) -> Vec<IpAddr> {
        DEFAULT_IPS.iter().chain(&self.extra_ips).copied().collect()
    }

    fn subject_alt_names(&self) -> Result<Vec<SanType>, Error> {
        let mut sans = Vec::with_capacity(self.dns_names.len() + 2 + self.extra_ips.len());
        for name in &self.dns_names {
            let ia5 = name
                .clone()
                .try_into()
                .map_err(|_| Error::InvalidCertificate {
                    what: "Coordinator CA".into(),
                    reason: format!("DNS name {name:?} is not ASCII"),
                })?;
            sans.push(SanType::DnsName(ia5));
        }
        sans.extend(self.ip_addresses().into_iter().map(SanType::IpAddress));
        Ok(sans)
    }

    fn from_certificate(cert: &X509Certificate<'_>) -> Self {
        let mut names = Self {
            dns_names: Vec::new(),
            extra_ips: Vec::new(),
        };
        let Ok(Some(san)) = cert.subject_alternative_name() else {
            return names;
        };
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => names.dns_names.push((*dns).to_owned()),
                GeneralName::IPAddress(bytes) => {
                    if let Some(ip) = ip_from_bytes(bytes) {
                        names.push_ip(ip);
                    }
                }
                _ => {}
            }
        }
        names
    }
}

impl Default for CaNames {
    /// MarbleRun's default: `localhost`.
    fn default() -> Self {
        Self::from_entries(["localhost"])
    }
}

pub(crate) fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// `now` without its fraction of a second (X.509 times have whole seconds).
pub(crate) fn whole_seconds(now: OffsetDateTime) -> OffsetDateTime {
    now - Duration::nanoseconds(i64::from(now.nanosecond()))
}

/// MarbleRun's validity for CA and Marble certificates: now + (2^63 − 1) ns, ≈ 292 years.
pub(crate) fn far_future(now: OffsetDateTime) -> OffsetDateTime {
    whole_seconds(now + Duration::nanoseconds(i64::MAX))
}

/// A serial number drawn uniformly from `0..2^128`.
pub(crate) fn random_serial(rng: &dyn RandomSource) -> Result<SerialNumber, Error> {
    let mut bytes = [0u8; 16];
    rng.fill(&mut bytes)?;
    Ok(SerialNumber::from_slice(&bytes))
}

/// The profile shared by all three CA certificates.
fn ca_params(
    common_name: &str,
    names: &CaNames,
    now: OffsetDateTime,
    rng: &dyn RandomSource,
    issued_by_other: bool,
) -> Result<CertificateParams, Error> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.not_before = whole_seconds(now);
    params.not_after = far_future(now);
    params.serial_number = Some(random_serial(rng)?);
    params.subject_alt_names = names.subject_alt_names()?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    // Like Go, only a certificate issued by another CA names that CA's key.
    params.use_authority_key_identifier_extension = issued_by_other;
    Ok(params)
}

fn build_error(what: &str) -> impl FnOnce(rcgen::Error) -> Error + '_ {
    move |source| Error::CertificateBuild {
        what: what.to_owned(),
        source,
    }
}

/// The Coordinator's root, intermediate and Marble root certificates with their keys.
pub struct CoordinatorCa {
    root: Issuer<'static, CaKey>,
    root_cert: Vec<u8>,
    /// Issues as the Marble root (its subject and key identifier) with the intermediate key.
    intermediate: Issuer<'static, CaKey>,
    intermediate_cert: Vec<u8>,
    marble_root_cert: Vec<u8>,
    names: CaNames,
}

struct IntermediatePair {
    issuer: Issuer<'static, CaKey>,
    intermediate_cert: Vec<u8>,
    marble_root_cert: Vec<u8>,
}

impl CoordinatorCa {
    /// Creates a new root, intermediate and Marble root (at a fresh start, and for the
    /// temporary CA of recovery mode).
    pub fn generate(
        names: &CaNames,
        now: OffsetDateTime,
        rng: &dyn RandomSource,
    ) -> Result<Self, Error> {
        let root_key = CaKey::generate()?;
        let root_params = ca_params(ROOT_COMMON_NAME, names, now, rng, false)?;
        let root_cert = root_params
            .self_signed(&root_key)
            .map_err(build_error("root CA"))?;
        let root = Issuer::new(root_params, root_key);
        let pair = new_intermediate(&root, names, now, rng)?;
        Ok(Self {
            root,
            root_cert: root_cert.der().to_vec(),
            intermediate: pair.issuer,
            intermediate_cert: pair.intermediate_cert,
            marble_root_cert: pair.marble_root_cert,
            names: names.clone(),
        })
    }

    /// Replaces the intermediate and the Marble root with a new key and new certificates
    /// (MarbleRun does this on every package and full manifest update). The root stays.
    pub fn rotate_intermediate(
        &mut self,
        now: OffsetDateTime,
        rng: &dyn RandomSource,
    ) -> Result<(), Error> {
        let pair = new_intermediate(&self.root, &self.names, now, rng)?;
        self.intermediate = pair.issuer;
        self.intermediate_cert = pair.intermediate_cert;
        self.marble_root_cert = pair.marble_root_cert;
        Ok(())
    }

    /// The names in the certificates.
    pub fn names(&self) -> &CaNames {
        &self.names
    }

    /// The root certificate (DER). The Client API presents it alone.
    pub fn root_certificate_der(&self) -> &[u8] {
        &self.root_cert
    }

    /// The intermediate certificate (DER), signed by the root.
    pub fn intermediate_certificate_der(&self) -> &[u8] {
        &self.intermediate_cert
    }

    /// The self-signed Marble root certificate (DER). The Marble API presents it alone.
    pub fn marble_root_certificate_der(&self) -> &[u8] {
        &self.marble_root_cert
    }

    /// The root certificate as PEM.
    pub fn root_certificate_pem(&self) -> String {
        certificate_pem(&self.root_cert)
    }

    /// The intermediate certificate as PEM.
    pub fn intermediate_certificate_pem(&self) -> String {
        certificate_pem(&self.intermediate_cert)
    }

    /// The Marble root certificate as PEM.
    pub fn marble_root_certificate_pem(&self) -> String {
        certificate_pem(&self.marble_root_cert)
    }

    /// The `cert` field of `/api/v2/quote`: the intermediate's PEM followed by the root's.
    pub fn quote_certificate_chain_pem(&self) -> String {
        self.intermediate_certificate_pem() + &self.root_certificate_pem()
    }

    /// The root key (TLS key of the Client API, manifest signatures).
    pub fn root_key(&self) -> &CaKey {
        self.root.key()
    }

    /// The intermediate key (TLS key of the Marble API; signs Marble and secret certificates).
    pub fn intermediate_key(&self) -> &CaKey {
        self.intermediate.key()
    }

    /// The issuer of Marble and secret certificates: the Marble root's name, the intermediate
    /// key.
    pub(crate) fn marble_issuer(&self) -> &Issuer<'static, CaKey> {
        &self.intermediate
    }

    /// Signs the raw manifest bytes with the root key (ECDSA P-384 over SHA-256, DER).
    pub fn sign_manifest(&self, manifest: &[u8]) -> Result<Vec<u8>, Error> {
        self.root_key().sign_sha256(manifest)
    }

    /// Exports the certificates and keys for the sealed state.
    pub fn to_material(&self) -> Result<CaMaterial, Error> {
        Ok(CaMaterial {
            root_certificate: self.root_cert.clone(),
            intermediate_certificate: self.intermediate_cert.clone(),
            marble_root_certificate: self.marble_root_cert.clone(),
            root_private_key: self.root_key().to_sec1_der()?,
            intermediate_private_key: self.intermediate_key().to_sec1_der()?,
        })
    }

    /// Restores the CA from sealed material, checking that every key belongs to its
    /// certificates and that the certificates are signed as they should be.
    pub fn from_material(material: &CaMaterial) -> Result<Self, Error> {
        let root_key = CaKey::from_der(&material.root_private_key, "root CA")?;
        let intermediate_key =
            CaKey::from_der(&material.intermediate_private_key, "intermediate CA")?;

        let root = parse_ca_cert(&material.root_certificate, "root")?;
        let intermediate = parse_ca_cert(&material.intermediate_certificate, "intermediate")?;
        let marble_root = parse_ca_cert(&material.marble_root_certificate, "Marble root")?;

        check_key(&root, &root_key, "root")?;
        check_key(&intermediate, &intermediate_key, "intermediate")?;
        check_key(&marble_root, &intermediate_key, "Marble root")?;
        check_signature(&root, None, "root")?;
        check_signature(&intermediate, Some(&root), "intermediate")?;
        check_signature(&marble_root, None, "Marble root")?;
        let names = CaNames::from_certificate(&root);

        let root_issuer = Issuer::from_ca_cert_der(&material.root_certificate[..].into(), root_key)
            .map_err(build_error("root CA"))?;
        let intermediate_issuer = Issuer::from_ca_cert_der(
            &material.marble_root_certificate[..].into(),
            intermediate_key,
        )
        .map_err(build_error("Marble root CA"))?;
        Ok(Self {
            root: root_issuer,
            root_cert: material.root_certificate.clone(),
            intermediate: intermediate_issuer,
            intermediate_cert: material.intermediate_certificate.clone(),
            marble_root_cert: material.marble_root_certificate.clone(),
            names,
        })
    }
}

impl fmt::Debug for CoordinatorCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoordinatorCa")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

fn new_intermediate(
    root: &Issuer<'static, CaKey>,
    names: &CaNames,
    now: OffsetDateTime,
    rng: &dyn RandomSource,
) -> Result<IntermediatePair, Error> {
    let key = CaKey::generate()?;
    let intermediate_params = ca_params(INTERMEDIATE_COMMON_NAME, names, now, rng, true)?;
    let intermediate_cert = intermediate_params
        .signed_by(&key, root)
        .map_err(build_error("intermediate CA"))?;
    let marble_root_params = ca_params(INTERMEDIATE_COMMON_NAME, names, now, rng, false)?;
    let marble_root_cert = marble_root_params
        .self_signed(&key)
        .map_err(build_error("Marble root CA"))?;
    Ok(IntermediatePair {
        issuer: Issuer::new(marble_root_params, key),
        intermediate_cert: intermediate_cert.der().to_vec(),
        marble_root_cert: marble_root_cert.der().to_vec(),
    })
}

/// PEM of a DER certificate, with LF line endings on every platform.
pub fn certificate_pem(der: &[u8]) -> String {
    pem_lf("CERTIFICATE", der)
}

/// PEM with LF line endings.
pub(crate) fn pem_lf(tag: &str, der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(tag, der.to_vec()), config)
}

fn parse_ca_cert<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>, Error> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| Error::InvalidCertificate {
        what: what.to_owned(),
        reason: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(Error::InvalidCertificate {
            what: what.to_owned(),
            reason: format!("{} trailing bytes", rest.len()),
        });
    }
    Ok(cert)
}

fn check_key(cert: &X509Certificate<'_>, key: &CaKey, what: &str) -> Result<(), Error> {
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_point() {
        return Err(Error::InvalidCaMaterial {
            reason: format!("the {what} certificate does not belong to its private key"),
        });
    }
    Ok(())
}

fn check_signature(
    cert: &X509Certificate<'_>,
    issuer: Option<&X509Certificate<'_>>,
    what: &str,
) -> Result<(), Error> {
    cert.verify_signature(issuer.map(|i| i.public_key()))
        .map_err(|e| Error::InvalidCaMaterial {
            reason: format!("the {what} certificate's signature does not verify: {e}"),
        })
}

/// Checks a manifest signature against the root certificate (ECDSA P-384 over SHA-256).
pub fn verify_manifest_signature(
    root_certificate_der: &[u8],
    manifest: &[u8],
    signature: &[u8],
) -> Result<(), Error> {
    let root = parse_ca_cert(root_certificate_der, "root")?;
    let point = root.public_key().subject_public_key.data.as_ref();
    UnparsedPublicKey::new(&ECDSA_P384_SHA256_ASN1, point)
        .verify(manifest, signature)
        .map_err(|_| Error::BadSignature { what: "manifest" })
}

/// The CA certificates and keys as they go into the sealed state.
///
/// The keys are SEC1 `ECPrivateKey` DER (as MarbleRun stores `privateKey:coordinatorRootKey`
/// and `privateKey:coordinatorIntermediateKey`) and are zeroed on drop. The Coordinator may
/// store the five fields under separate keys or as one value with [`CaMaterial::to_bytes`].
pub struct CaMaterial {
    /// Root certificate, DER.
    pub root_certificate: Vec<u8>,
    /// Intermediate certificate, DER.
    pub intermediate_certificate: Vec<u8>,
    /// Marble root certificate, DER.
    pub marble_root_certificate: Vec<u8>,
    /// Root private key, SEC1 DER.
    pub root_private_key: Zeroizing<Vec<u8>>,
    /// Intermediate (and Marble root) private key, SEC1 DER.
    pub intermediate_private_key: Zeroizing<Vec<u8>>,
}

const MATERIAL_MAGIC: &[u8; 8] = b"QRYPKICA";
const MATERIAL_VERSION: u16 = 1;
const MATERIAL_FIELDS: [&str; 5] = [
    "root certificate",
    "intermediate certificate",
    "Marble root certificate",
    "root private key",
    "intermediate private key",
];

impl CaMaterial {
    /// One byte string: magic `QRYPKICA`, version (u16 BE), then the five fields in
    /// declaration order, each as u32 BE length + bytes.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let fields = self.fields();
        let len = 10 + fields.iter().map(|f| 4 + f.len()).sum::<usize>();
        let mut out = Zeroizing::new(Vec::with_capacity(len));
        out.extend_from_slice(MATERIAL_MAGIC);
        out.extend_from_slice(&MATERIAL_VERSION.to_be_bytes());
        for field in fields {
            // The fields are certificates and keys of a few hundred bytes.
            out.extend_from_slice(&(field.len() as u32).to_be_bytes());
            out.extend_from_slice(field);
        }
        out
    }

    /// Reads what [`CaMaterial::to_bytes`] wrote. Only the framing is checked here;
    /// [`CoordinatorCa::from_material`] checks the contents.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let invalid = |reason: String| Error::InvalidCaMaterial { reason };
        let rest = bytes
            .strip_prefix(MATERIAL_MAGIC)
            .ok_or_else(|| invalid("missing magic value".into()))?;
        let (version, mut rest) = rest
            .split_first_chunk::<2>()
            .ok_or_else(|| invalid("missing version".into()))?;
        let version = u16::from_be_bytes(*version);
        if version != MATERIAL_VERSION {
            return Err(invalid(format!("unsupported version {version}")));
        }
        let mut fields: Vec<Vec<u8>> = Vec::with_capacity(MATERIAL_FIELDS.len());
        for name in MATERIAL_FIELDS {
            let (len, tail) = rest
                .split_first_chunk::<4>()
                .ok_or_else(|| invalid(format!("{name} length is truncated")))?;
            let len = u32::from_be_bytes(*len) as usize;
            if tail.len() < len {
                return Err(invalid(format!("{name} is truncated")));
            }
            let (field, tail) = tail.split_at(len);
            fields.push(field.to_vec());
            rest = tail;
        }
        if !rest.is_empty() {
            return Err(invalid(format!("{} trailing bytes", rest.len())));
        }
        let mut fields = fields.into_iter();
        let mut next = || fields.next().unwrap_or_default();
        Ok(Self {
            root_certificate: next(),
            intermediate_certificate: next(),
            marble_root_certificate: next(),
            root_private_key: Zeroizing::new(next()),
            intermediate_private_key: Zeroizing::new(next()),
        })
    }

    fn fields(&self) -> [&[u8]; 5] {
        [
            &self.root_certificate,
            &self.intermediate_certificate,
            &self.marble_root_certificate,
            &self.root_private_key,
            &self.intermediate_private_key,
        ]
    }
}

impl fmt::Debug for CaMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CaMaterial")
    }
}
