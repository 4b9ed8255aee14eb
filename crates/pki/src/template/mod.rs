//! Certificates of `cert-rsa`, `cert-ecdsa` and `cert-ed25519` secrets, built from the
//! manifest's `Cert` template.
//!
//! [`CertTemplate`] holds the fields of Go's `x509.Certificate` that a manifest can set,
//! without any JSON: the Coordinator maps the manifest model onto it. Issuance follows
//! MarbleRun's profile:
//!
//! - defaults when a field is unset: DNS names `["localhost"]`, IP addresses `127.0.0.1` and
//!   `::1`, key usage digitalSignature + keyCertSign, extended key usage serverAuth +
//!   clientAuth, and a CN of the single DNS name if there is exactly one, otherwise
//!   `MarbleRun Generated Certificate`;
//! - always set: a random serial below 2^128, basic constraints, not-before = now, and
//!   not-after from the template or `ValidFor` days (365 when 0);
//! - issuer: the Marble root (CN `MarbleRun Coordinator - Intermediate CA`), signed with the
//!   intermediate key (ECDSA-SHA384).
//!
//! Fields that cannot be expressed follow one rule: a field with security effect (identity,
//! constraints, key usage) that cannot be honoured is an error; a cosmetic difference is a
//! [`TemplateWarning`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, CrlDistributionPoint, CustomExtension,
    DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, KeyIdMethod,
    KeyUsagePurpose, NameConstraints, SanType,
};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;
use zeroize::Zeroizing;

use crate::ca::{random_serial, whole_seconds};
use crate::der;
use crate::secrets::{CertKeyType, SecretKeyPair};
use crate::{CoordinatorCa, Error, RandomSource};

mod from_certificate;

/// CN of a generated certificate without exactly one DNS name.
pub const DEFAULT_COMMON_NAME: &str = "MarbleRun Generated Certificate";

/// Validity of a generated certificate when neither `NotAfter` nor `ValidFor` is set.
pub const DEFAULT_VALID_FOR_DAYS: u32 = 365;

/// Go's `pkix.Name` fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Name {
    /// `Country` (C).
    pub country: Vec<String>,
    /// `Organization` (O).
    pub organization: Vec<String>,
    /// `OrganizationalUnit` (OU).
    pub organizational_unit: Vec<String>,
    /// `Locality` (L).
    pub locality: Vec<String>,
    /// `Province` (ST).
    pub province: Vec<String>,
    /// `StreetAddress`.
    pub street_address: Vec<String>,
    /// `PostalCode`.
    pub postal_code: Vec<String>,
    /// `SerialNumber`.
    pub serial_number: String,
    /// `CommonName` (CN).
    pub common_name: String,
    /// `ExtraNames`: attribute type OID and string value.
    pub extra_names: Vec<(Vec<u64>, String)>,
}

/// An extension from `ExtraExtensions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateExtension {
    /// `Id`.
    pub oid: Vec<u64>,
    /// `Critical`.
    pub critical: bool,
    /// `Value`: the contents of `extnValue`.
    pub value: Vec<u8>,
}

/// The Go `x509.Certificate` fields of a secret's `Cert` that issuance uses.
///
/// `Option` marks fields whose absence (Go `nil`) selects a default, as opposed to an
/// explicitly empty list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertTemplate {
    /// `Subject`.
    pub subject: Name,
    /// `RawSubject`: a DER `Name` that replaces `Subject` when set.
    pub raw_subject: Option<Vec<u8>>,
    /// `NotAfter` (`None` for Go's zero time).
    pub not_after: Option<OffsetDateTime>,
    /// `KeyUsage` bit mask (Go values: DigitalSignature 1 … DecipherOnly 256); 0 = default.
    pub key_usage: u32,
    /// `ExtKeyUsage` (Go enum values); `None` = default.
    pub ext_key_usage: Option<Vec<i64>>,
    /// `UnknownExtKeyUsage` OIDs.
    pub unknown_ext_key_usage: Vec<Vec<u64>>,
    /// `IsCA`.
    pub is_ca: bool,
    /// `MaxPathLen` (−1 or 0 without `MaxPathLenZero`: unlimited).
    pub max_path_len: i64,
    /// `MaxPathLenZero`.
    pub max_path_len_zero: bool,
    /// `SubjectKeyId`; empty = derived from the key.
    pub subject_key_id: Vec<u8>,
    /// `DNSNames`; `None` = `["localhost"]`.
    pub dns_names: Option<Vec<String>>,
    /// `IPAddresses`; `None` = `127.0.0.1`, `::1`.
    pub ip_addresses: Option<Vec<IpAddr>>,
    /// `EmailAddresses`.
    pub email_addresses: Vec<String>,
    /// `URIs` (as strings).
    pub uris: Vec<String>,
    /// `OCSPServer`.
    pub ocsp_server: Vec<String>,
    /// `IssuingCertificateURL`.
    pub issuing_certificate_url: Vec<String>,
    /// `CRLDistributionPoints`.
    pub crl_distribution_points: Vec<String>,
    /// `PermittedDNSDomainsCritical`.
    pub permitted_dns_domains_critical: bool,
    /// `PermittedDNSDomains`.
    pub permitted_dns_domains: Vec<String>,
    /// `ExcludedDNSDomains`.
    pub excluded_dns_domains: Vec<String>,
    /// `PermittedIPRanges` as (address, prefix length).
    pub permitted_ip_ranges: Vec<(IpAddr, u8)>,
    /// `ExcludedIPRanges` as (address, prefix length).
    pub excluded_ip_ranges: Vec<(IpAddr, u8)>,
    /// `PermittedEmailAddresses`.
    pub permitted_email_addresses: Vec<String>,
    /// `ExcludedEmailAddresses`.
    pub excluded_email_addresses: Vec<String>,
    /// `PermittedURIDomains`.
    pub permitted_uri_domains: Vec<String>,
    /// `ExcludedURIDomains`.
    pub excluded_uri_domains: Vec<String>,
    /// `PolicyIdentifiers`.
    pub policy_identifiers: Vec<Vec<u64>>,
    /// `ExtraExtensions`.
    pub extra_extensions: Vec<TemplateExtension>,
    /// `SignatureAlgorithm` (Go enum; 0 = default).
    pub signature_algorithm: i64,
}

/// A template field that was not honoured exactly, without security effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateWarning {
    /// The Go field name.
    pub field: &'static str,
    /// What happens instead.
    pub message: String,
}

impl fmt::Display for TemplateWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "certificate template field {}: {}",
            self.field, self.message
        )
    }
}

/// A certificate secret: certificate and key pair.
pub struct SecretCertificate {
    /// The certificate, DER (a secret's `Cert`).
    pub certificate: Vec<u8>,
    /// The private key, PKCS#8 DER (a secret's `Private`).
    pub private_key: Zeroizing<Vec<u8>>,
    /// The public key, PKIX DER (a secret's `Public`).
    pub public_key: Vec<u8>,
    /// Template fields not honoured exactly.
    pub warnings: Vec<TemplateWarning>,
}

impl fmt::Debug for SecretCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretCertificate")
            .field("warnings", &self.warnings)
            .finish_non_exhaustive()
    }
}

/// The validity end of a secret certificate.
///
/// With no template `NotAfter`, `valid_for_days` (0 meaning 365) counts from `now`. With a
/// template `NotAfter` and `valid_for_days` 0 the template's value is used. With both (a
/// previously generated certificate as template), `valid_for_days` counts from `now`, as
/// MarbleRun does for unique secrets; pass 0 to keep the old expiry.
pub fn not_after(
    template: &CertTemplate,
    valid_for_days: u32,
    now: OffsetDateTime,
) -> OffsetDateTime {
    match (template.not_after, valid_for_days) {
        (Some(end), 0) => whole_seconds(end),
        (None, 0) => whole_seconds(now) + Duration::days(i64::from(DEFAULT_VALID_FOR_DAYS)),
        (_, days) => whole_seconds(now) + Duration::days(i64::from(days)),
    }
}

/// Checks a template without issuing anything (for manifest checks), returning its warnings.
pub fn check_template(template: &CertTemplate) -> Result<Vec<TemplateWarning>, Error> {
    let mut warnings = Vec::new();
    build_params(template, &mut warnings)?;
    Ok(warnings)
}

impl CoordinatorCa {
    /// Generates a key pair of `key_type` and issues its certificate from `template`.
    pub fn issue_secret_certificate(
        &self,
        key_type: CertKeyType,
        template: &CertTemplate,
        valid_for_days: u32,
        now: OffsetDateTime,
        rng: &dyn RandomSource,
    ) -> Result<SecretCertificate, Error> {
        let mut warnings = Vec::new();
        let mut params = build_params(template, &mut warnings)?;
        params.serial_number = Some(random_serial(rng)?);
        params.not_before = whole_seconds(now);
        params.not_after = not_after(template, valid_for_days, now);

        let pair = SecretKeyPair::generate(key_type)?;
        let public = rcgen::SubjectPublicKeyInfo::from_der(pair.public_key_spki_der()).map_err(
            |source| Error::CertificateBuild {
                what: "secret".into(),
                source,
            },
        )?;
        let cert = params
            .signed_by(&public, self.marble_issuer())
            .map_err(|source| Error::CertificateBuild {
                what: "secret".into(),
                source,
            })?;
        let (private_key, public_key) = pair.into_parts();
        Ok(SecretCertificate {
            certificate: cert.der().to_vec(),
            private_key,
            public_key,
            warnings,
        })
    }
}

fn unsupported(field: &'static str, reason: impl Into<String>) -> Error {
    Error::UnsupportedTemplateField {
        field,
        reason: reason.into(),
    }
}

fn ia5(field: &'static str, value: &str) -> Result<rcgen::string::Ia5String, Error> {
    value
        .to_owned()
        .try_into()
        .map_err(|_| unsupported(field, format!("{value:?} is not ASCII")))
}

/// Everything except serial, validity and key.
fn build_params(
    template: &CertTemplate,
    warnings: &mut Vec<TemplateWarning>,
) -> Result<CertificateParams, Error> {
    let mut params = CertificateParams::default();
    let dns_names = template
        .dns_names
        .clone()
        .unwrap_or_else(|| vec!["localhost".to_owned()]);
    params.distinguished_name = match &template.raw_subject {
        Some(raw) => raw_subject(raw)?,
        None => subject(&template.subject, &dns_names)?,
    };
    params.subject_alt_names = subject_alt_names(template, &dns_names)?;
    params.key_usages = key_usages(template.key_usage)?;
    params.extended_key_usages = extended_key_usages(template)?;
    params.is_ca = basic_constraints(template)?;
    if !template.subject_key_id.is_empty() {
        params.key_identifier_method = KeyIdMethod::PreSpecified(template.subject_key_id.clone());
    }
    params.use_authority_key_identifier_extension = true;
    params.name_constraints = name_constraints(template, warnings)?;
    if !template.crl_distribution_points.is_empty() {
        params.crl_distribution_points = vec![CrlDistributionPoint {
            uris: template.crl_distribution_points.clone(),
        }];
    }
    params.custom_extensions = custom_extensions(template)?;
    signature_algorithm(template.signature_algorithm, warnings)?;
    Ok(params)
}

/// A DN value as Go encodes it: PrintableString when possible, otherwise UTF8String.
fn dn_value(value: &str) -> DnValue {
    match value.to_owned().try_into() {
        Ok(printable) => DnValue::PrintableString(printable),
        Err(_) => DnValue::Utf8String(value.to_owned()),
    }
}

fn subject(name: &Name, dns_names: &[String]) -> Result<DistinguishedName, Error> {
    let mut dn = DistinguishedName::new();
    let mut push = |ty: DnType, values: &[String], field: &'static str| -> Result<(), Error> {
        match values {
            [] => Ok(()),
            [value] => {
                dn.push(ty, dn_value(value));
                Ok(())
            }
            _ => Err(unsupported(field, "more than one value per attribute type")),
        }
    };
    // Go's order of attributes in a Name
    push(DnType::CountryName, &name.country, "Subject.Country")?;
    push(
        DnType::StateOrProvinceName,
        &name.province,
        "Subject.Province",
    )?;
    push(DnType::LocalityName, &name.locality, "Subject.Locality")?;
    push(
        DnType::CustomDnType(vec![2, 5, 4, 9]),
        &name.street_address,
        "Subject.StreetAddress",
    )?;
    push(
        DnType::CustomDnType(vec![2, 5, 4, 17]),
        &name.postal_code,
        "Subject.PostalCode",
    )?;
    push(
        DnType::OrganizationName,
        &name.organization,
        "Subject.Organization",
    )?;
    push(
        DnType::OrganizationalUnitName,
        &name.organizational_unit,
        "Subject.OrganizationalUnit",
    )?;
    let common_name = match (name.common_name.as_str(), dns_names) {
        ("", [single]) => single.clone(),
        ("", _) => DEFAULT_COMMON_NAME.to_owned(),
        (cn, _) => cn.to_owned(),
    };
    push(DnType::CommonName, &[common_name], "Subject.CommonName")?;
    if !name.serial_number.is_empty() {
        push(
            DnType::CustomDnType(vec![2, 5, 4, 5]),
            std::slice::from_ref(&name.serial_number),
            "Subject.SerialNumber",
        )?;
    }
    for (oid, value) in &name.extra_names {
        if der::oid(oid).is_none() {
            return Err(unsupported(
                "Subject.ExtraNames",
                format!("invalid OID {oid:?}"),
            ));
        }
        let ty = DnType::from_oid(oid);
        if dn.get(&ty).is_some() {
            dn.remove(ty.clone());
        }
        dn.push(ty, dn_value(value));
    }
    Ok(dn)
}

fn raw_subject(raw: &[u8]) -> Result<DistinguishedName, Error> {
    let (rest, name) = X509Name::from_der(raw)
        .map_err(|e| unsupported("RawSubject", format!("not a DER Name: {e}")))?;
    if !rest.is_empty() {
        return Err(unsupported(
            "RawSubject",
            format!("{} trailing bytes", rest.len()),
        ));
    }
    let mut dn = DistinguishedName::new();
    for attribute in name.iter_attributes() {
        let arcs: Vec<u64> = attribute
            .attr_type()
            .iter()
            .ok_or_else(|| unsupported("RawSubject", "attribute type with an oversized arc"))?
            .collect();
        let value = attribute.as_str().map_err(|_| {
            unsupported(
                "RawSubject",
                format!("attribute {} is not a string", attribute.attr_type()),
            )
        })?;
        let ty = DnType::from_oid(&arcs);
        if dn.get(&ty).is_some() {
            return Err(unsupported(
                "RawSubject",
                format!("attribute {} appears more than once", attribute.attr_type()),
            ));
        }
        dn.push(ty, dn_value(value));
    }
    Ok(dn)
}

fn subject_alt_names(template: &CertTemplate, dns_names: &[String]) -> Result<Vec<SanType>, Error> {
    let mut sans = Vec::new();
    for name in dns_names {
        sans.push(SanType::DnsName(ia5("DNSNames", name)?));
    }
    for email in &template.email_addresses {
        sans.push(SanType::Rfc822Name(ia5("EmailAddresses", email)?));
    }
    let default_ips = [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ];
    let ips = template.ip_addresses.as_deref().unwrap_or(&default_ips);
    sans.extend(ips.iter().copied().map(SanType::IpAddress));
    for uri in &template.uris {
        sans.push(SanType::URI(ia5("URIs", uri)?));
    }
    Ok(sans)
}

fn key_usages(mask: u32) -> Result<Vec<KeyUsagePurpose>, Error> {
    const BITS: [KeyUsagePurpose; 9] = [
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::ContentCommitment,
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::DataEncipherment,
        KeyUsagePurpose::KeyAgreement,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::EncipherOnly,
        KeyUsagePurpose::DecipherOnly,
    ];
    if mask == 0 {
        return Ok(vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
        ]);
    }
    if mask >> BITS.len() != 0 {
        return Err(unsupported(
            "KeyUsage",
            format!("unknown bits in {mask:#x}"),
        ));
    }
    Ok(BITS
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, u)| *u)
        .collect())
}

fn extended_key_usages(template: &CertTemplate) -> Result<Vec<ExtendedKeyUsagePurpose>, Error> {
    use ExtendedKeyUsagePurpose as Eku;
    let mut out = match &template.ext_key_usage {
        None => vec![Eku::ServerAuth, Eku::ClientAuth],
        Some(values) => values
            .iter()
            .map(|&value| {
                Ok(match value {
                    0 => Eku::Any,
                    1 => Eku::ServerAuth,
                    2 => Eku::ClientAuth,
                    3 => Eku::CodeSigning,
                    4 => Eku::EmailProtection,
                    5 => Eku::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 5]),
                    6 => Eku::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 6]),
                    7 => Eku::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 7]),
                    8 => Eku::TimeStamping,
                    9 => Eku::OcspSigning,
                    10 => Eku::Other(vec![1, 3, 6, 1, 4, 1, 311, 10, 3, 3]),
                    11 => Eku::Other(vec![2, 16, 840, 1, 113_730, 4, 1]),
                    12 => Eku::Other(vec![1, 3, 6, 1, 4, 1, 311, 2, 1, 22]),
                    13 => Eku::Other(vec![1, 3, 6, 1, 4, 1, 311, 61, 1, 1]),
                    other => {
                        return Err(unsupported("ExtKeyUsage", format!("unknown value {other}")));
                    }
                })
            })
            .collect::<Result<_, _>>()?,
    };
    for oid in &template.unknown_ext_key_usage {
        if der::oid(oid).is_none() {
            return Err(unsupported(
                "UnknownExtKeyUsage",
                format!("invalid OID {oid:?}"),
            ));
        }
        out.push(Eku::Other(oid.clone()));
    }
    Ok(out)
}

fn basic_constraints(template: &CertTemplate) -> Result<IsCa, Error> {
    let path_len = match (template.max_path_len, template.max_path_len_zero) {
        (-1, _) | (0, false) => None,
        (n, _) if n < -1 => {
            return Err(unsupported(
                "MaxPathLen",
                format!("{n} is not a path length"),
            ));
        }
        (n, _) => Some(
            u8::try_from(n).map_err(|_| unsupported("MaxPathLen", format!("{n} is above 255")))?,
        ),
    };
    match (template.is_ca, path_len) {
        (true, None) => Ok(IsCa::Ca(BasicConstraints::Unconstrained)),
        (true, Some(n)) => Ok(IsCa::Ca(BasicConstraints::Constrained(n))),
        (false, None) => Ok(IsCa::ExplicitNoCa),
        (false, Some(_)) => Err(unsupported(
            "MaxPathLen",
            "only a CA (IsCA) can have a path length",
        )),
    }
}

fn name_constraints(
    template: &CertTemplate,
    warnings: &mut Vec<TemplateWarning>,
) -> Result<Option<NameConstraints>, Error> {
    if !template.permitted_uri_domains.is_empty() {
        return Err(unsupported(
            "PermittedURIDomains",
            "URI name constraints are not supported",
        ));
    }
    if !template.excluded_uri_domains.is_empty() {
        return Err(unsupported(
            "ExcludedURIDomains",
            "URI name constraints are not supported",
        ));
    }
    let subtrees =
        |dns: &[String], ips: &[(IpAddr, u8)], emails: &[String], field: &'static str| {
            let mut out: Vec<GeneralSubtree> = dns
                .iter()
                .map(|d| GeneralSubtree::DnsName(d.clone()))
                .collect();
            for &(ip, prefix) in ips {
                let max = if ip.is_ipv4() { 32 } else { 128 };
                if prefix > max {
                    return Err(unsupported(
                        field,
                        format!("prefix /{prefix} is too long for {ip}"),
                    ));
                }
                out.push(GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(
                    ip, prefix,
                )));
            }
            out.extend(emails.iter().map(|e| GeneralSubtree::Rfc822Name(e.clone())));
            Ok(out)
        };
    let permitted = subtrees(
        &template.permitted_dns_domains,
        &template.permitted_ip_ranges,
        &template.permitted_email_addresses,
        "PermittedIPRanges",
    )?;
    let excluded = subtrees(
        &template.excluded_dns_domains,
        &template.excluded_ip_ranges,
        &template.excluded_email_addresses,
        "ExcludedIPRanges",
    )?;
    if permitted.is_empty() && excluded.is_empty() {
        return Ok(None);
    }
    if !template.permitted_dns_domains_critical {
        warnings.push(TemplateWarning {
            field: "PermittedDNSDomainsCritical",
            message: "name constraints are always marked critical".into(),
        });
    }
    Ok(Some(NameConstraints {
        permitted_subtrees: permitted,
        excluded_subtrees: excluded,
    }))
}

/// Extensions Quarry builds itself; `ExtraExtensions` may not replace them.
const BUILT_EXTENSIONS: [&[u64]; 10] = [
    &[2, 5, 29, 14],
    &[2, 5, 29, 15],
    &[2, 5, 29, 17],
    &[2, 5, 29, 19],
    &[2, 5, 29, 30],
    &[2, 5, 29, 31],
    &[2, 5, 29, 32],
    &[2, 5, 29, 35],
    &[2, 5, 29, 37],
    &[1, 3, 6, 1, 5, 5, 7, 1, 1],
];

fn custom_extensions(template: &CertTemplate) -> Result<Vec<CustomExtension>, Error> {
    let mut out = Vec::new();
    let mut access = Vec::new();
    for (method, urls, field) in [
        (
            &[1u64, 3, 6, 1, 5, 5, 7, 48, 1][..],
            &template.ocsp_server,
            "OCSPServer",
        ),
        (
            &[1, 3, 6, 1, 5, 5, 7, 48, 2][..],
            &template.issuing_certificate_url,
            "IssuingCertificateURL",
        ),
    ] {
        for url in urls {
            ia5(field, url)?;
            // AccessDescription { accessMethod, accessLocation [6] IA5String }
            let method = der::oid(method).unwrap_or_default();
            access.push(der::sequence(&[method, der::tlv(0x86, url.as_bytes())]));
        }
    }
    if !access.is_empty() {
        out.push(CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 5, 5, 7, 1, 1],
            der::sequence(&access),
        ));
    }
    if !template.policy_identifiers.is_empty() {
        let mut policies = Vec::new();
        for oid in &template.policy_identifiers {
            let encoded = der::oid(oid)
                .ok_or_else(|| unsupported("PolicyIdentifiers", format!("invalid OID {oid:?}")))?;
            policies.push(der::sequence(&[encoded]));
        }
        out.push(CustomExtension::from_oid_content(
            &[2, 5, 29, 32],
            der::sequence(&policies),
        ));
    }
    for extension in &template.extra_extensions {
        if der::oid(&extension.oid).is_none() {
            return Err(unsupported(
                "ExtraExtensions",
                format!("invalid OID {:?}", extension.oid),
            ));
        }
        if BUILT_EXTENSIONS.contains(&extension.oid.as_slice())
            || out
                .iter()
                .any(|e| e.oid_components().eq(extension.oid.iter().copied()))
        {
            return Err(unsupported(
                "ExtraExtensions",
                format!(
                    "extension {:?} would replace one built from other fields",
                    extension.oid
                ),
            ));
        }
        let mut custom = CustomExtension::from_oid_content(&extension.oid, extension.value.clone());
        custom.set_criticality(extension.critical);
        out.push(custom);
    }
    Ok(out)
}

fn signature_algorithm(value: i64, warnings: &mut Vec<TemplateWarning>) -> Result<(), Error> {
    match value {
        0 | 11 => Ok(()),
        10 | 12 => {
            warnings.push(TemplateWarning {
                field: "SignatureAlgorithm",
                message: format!("{value} requested; the P-384 issuer signs with ECDSA-SHA384"),
            });
            Ok(())
        }
        other => Err(unsupported(
            "SignatureAlgorithm",
            format!("{other} does not match the issuer's ECDSA P-384 key"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_usage_bits_follow_go() {
        assert_eq!(
            key_usages(0).unwrap(),
            [
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyCertSign
            ]
        );
        assert_eq!(
            key_usages(1 | 4 | 256).unwrap(),
            [
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
                KeyUsagePurpose::DecipherOnly
            ]
        );
        assert!(key_usages(512).is_err());
    }

    #[test]
    fn common_name_defaults() {
        let name = Name::default();
        let one = subject(&name, &["db.local".into()]).unwrap();
        assert!(
            matches!(one.get(&DnType::CommonName), Some(DnValue::PrintableString(s)) if s.as_str() == "db.local")
        );
        let two = subject(&name, &["a".into(), "b".into()]).unwrap();
        assert!(
            matches!(two.get(&DnType::CommonName), Some(DnValue::PrintableString(s)) if s.as_str() == DEFAULT_COMMON_NAME)
        );
    }

    #[test]
    fn path_length_rules() {
        let mut t = CertTemplate {
            is_ca: true,
            max_path_len: 2,
            ..Default::default()
        };
        assert_eq!(
            basic_constraints(&t).unwrap(),
            IsCa::Ca(BasicConstraints::Constrained(2))
        );
        t.max_path_len = 0;
        assert_eq!(
            basic_constraints(&t).unwrap(),
            IsCa::Ca(BasicConstraints::Unconstrained)
        );
        t.max_path_len_zero = true;
        assert_eq!(
            basic_constraints(&t).unwrap(),
            IsCa::Ca(BasicConstraints::Constrained(0))
        );
        t.is_ca = false;
        assert!(basic_constraints(&t).is_err());
        t.max_path_len = 300;
        t.is_ca = true;
        assert!(basic_constraints(&t).is_err());
    }
}
