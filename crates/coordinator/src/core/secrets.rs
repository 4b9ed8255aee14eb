//! The secrets of a manifest at manifest set: shared secrets are generated now, user-defined
//! ones are stored with the initial value the manifest gives (if any), and unique (per-Marble)
//! ones are only checked, because they are derived or issued at each activation.
//!
//! Also the conversion of a manifest `Cert` template (Go's `x509.Certificate` fields as the
//! manifest crate decodes them) into the template of `quarry-pki`, refusing what cannot be
//! honoured with the path of the field.

use std::net::IpAddr;

use quarry_common::DocPath;
use quarry_manifest::model::{self, SecretCert};
use quarry_manifest::{Manifest, SecretType};
use quarry_pki::secrets::{CertKeyType, MAX_DERIVED_KEY_BITS, generate_symmetric_key};
use quarry_pki::template::{self as pki_template, Name, TemplateExtension};
use quarry_pki::{CoordinatorCa, SystemRandom};
use time::OffsetDateTime;

use super::CoreError;
use super::keys::StoredSecret;

/// Generates the shared secrets of `manifest` and checks the others; returns what to store.
pub(crate) fn generate_secrets(
    manifest: &Manifest,
    ca: &CoordinatorCa,
    now: OffsetDateTime,
) -> Result<Vec<(String, StoredSecret)>, CoreError> {
    let mut out = Vec::new();
    for (name, secret) in &manifest.secrets {
        let path = DocPath::root().field("Secrets").key(name);
        let fail = |e: &dyn std::fmt::Display| CoreError::invalid(format!("{path}: {e}"));
        let mut stored = StoredSecret {
            kind: secret.kind.as_str().to_owned(),
            size: secret.size,
            shared: secret.shared,
            user_defined: secret.user_defined,
            cert: None,
            valid_for: secret.valid_for,
            private: None,
            public: None,
        };
        if secret.user_defined {
            if let SecretCert::Der { der, .. } = &secret.cert {
                stored.cert = Some(der.clone());
            }
            stored.private = secret.private.as_ref().map(|b| b.expose().to_vec());
            stored.public = secret.public.as_ref().map(|b| b.expose().to_vec());
            out.push((name.clone(), stored));
            continue;
        }
        let size = u32::try_from(secret.size).map_err(|_| fail(&"Size is too large"))?;
        match &secret.kind {
            SecretType::SymmetricKey if secret.shared => {
                let key = generate_symmetric_key(size, &SystemRandom).map_err(|e| fail(&e))?;
                stored.private = Some(key.to_vec());
                stored.public = Some(key.to_vec());
                out.push((name.clone(), stored));
            }
            SecretType::SymmetricKey => {
                if size == 0 || size % 8 != 0 || size > MAX_DERIVED_KEY_BITS {
                    return Err(fail(&format!(
                        "Size {size} is invalid: a unique symmetric key needs a positive \
                         multiple of 8 up to {MAX_DERIVED_KEY_BITS} bits"
                    )));
                }
            }
            kind if kind.is_certificate() => {
                let key_type =
                    CertKeyType::from_secret(kind.as_str(), size).map_err(|e| fail(&e))?;
                let template = cert_template(&secret.cert, &path.field("Cert"))?;
                let valid_for =
                    u32::try_from(secret.valid_for).map_err(|_| fail(&"ValidFor is too large"))?;
                if !secret.shared {
                    for warning in pki_template::check_template(&template).map_err(|e| fail(&e))? {
                        tracing::warn!(secret = ?name, %warning, "certificate template");
                    }
                    continue;
                }
                let issued = ca
                    .issue_secret_certificate(key_type, &template, valid_for, now, &SystemRandom)
                    .map_err(|e| fail(&e))?;
                for warning in &issued.warnings {
                    tracing::warn!(secret = ?name, %warning, "certificate template");
                }
                stored.cert = Some(issued.certificate.clone());
                stored.private = Some(issued.private_key.to_vec());
                stored.public = Some(issued.public_key.clone());
                out.push((name.clone(), stored));
            }
            _ => {
                // `plain` secrets are only user-defined; check C18 refuses unknown types.
                return Err(fail(&format!(
                    "a {} secret must be UserDefined",
                    secret.kind.as_str()
                )));
            }
        }
    }
    Ok(out)
}

/// Checks, without generating anything, what [`generate_secrets`] would refuse in `manifest`'s
/// generated secrets: certificate types and sizes, `Cert` templates that cannot be honoured, and
/// `ValidFor`. A full update runs this at submission, so that a manifest that can never be
/// applied is refused before users acknowledge it.
pub(crate) fn check_secret_definitions(manifest: &Manifest) -> Result<(), CoreError> {
    for (name, secret) in &manifest.secrets {
        if secret.user_defined || !secret.kind.is_certificate() {
            continue;
        }
        let path = DocPath::root().field("Secrets").key(name);
        let fail = |e: &dyn std::fmt::Display| CoreError::invalid(format!("{path}: {e}"));
        let size = u32::try_from(secret.size).map_err(|_| fail(&"Size is too large"))?;
        CertKeyType::from_secret(secret.kind.as_str(), size).map_err(|e| fail(&e))?;
        let template = cert_template(&secret.cert, &path.field("Cert"))?;
        u32::try_from(secret.valid_for).map_err(|_| fail(&"ValidFor is too large"))?;
        pki_template::check_template(&template).map_err(|e| fail(&e))?;
    }
    Ok(())
}

/// The `quarry-pki` template of a manifest `Cert`.
pub(crate) fn cert_template(
    cert: &SecretCert,
    path: &DocPath,
) -> Result<pki_template::CertTemplate, CoreError> {
    let t = match cert {
        SecretCert::Der { der, .. } => {
            return pki_template::CertTemplate::from_certificate_der(der)
                .map_err(|e| CoreError::invalid(format!("{path}: {e}")));
        }
        SecretCert::Template(t) => t,
        _ => return Err(CoreError::invalid(format!("{path}: unsupported form"))),
    };
    let field_err =
        |field: &str, reason: &str| CoreError::invalid(format!("{}: {reason}", path.field(field)));
    if let Some((field, _)) = t.other.iter().find(|(_, v)| is_set(v)) {
        return Err(field_err(field, "this field cannot be honoured"));
    }
    let oid = |field: &str, oid: &[i64]| -> Result<Vec<u64>, CoreError> {
        oid.iter()
            .map(|&n| u64::try_from(n).map_err(|_| field_err(field, "negative OID component")))
            .collect()
    };
    let mut extra_names = Vec::new();
    for attr in &t.subject.extra_names {
        let serde_json::Value::String(value) = &attr.value else {
            return Err(field_err(
                "Subject.ExtraNames",
                "only string values are supported",
            ));
        };
        extra_names.push((oid("Subject.ExtraNames", &attr.oid)?, value.clone()));
    }
    let s = &t.subject;
    let subject = Name {
        country: s.country.clone(),
        organization: s.organization.clone(),
        organizational_unit: s.organizational_unit.clone(),
        locality: s.locality.clone(),
        province: s.province.clone(),
        street_address: s.street_address.clone(),
        postal_code: s.postal_code.clone(),
        serial_number: s.serial_number.clone(),
        common_name: s.common_name.clone(),
        extra_names,
    };
    let ranges = |field: &str, nets: &[model::IpNet]| -> Result<Vec<(IpAddr, u8)>, CoreError> {
        nets.iter()
            .map(|n| {
                let ip = n.ip.ok_or_else(|| field_err(field, "IP is missing"))?;
                Ok((
                    ip,
                    prefix_len(&n.mask).ok_or_else(|| field_err(field, "mask is not a prefix"))?,
                ))
            })
            .collect()
    };
    Ok(pki_template::CertTemplate {
        subject,
        raw_subject: (!t.raw_subject.is_empty()).then(|| t.raw_subject.clone()),
        not_after: t.not_after,
        key_usage: u32::try_from(t.key_usage)
            .map_err(|_| field_err("KeyUsage", "must be a non-negative bit mask"))?,
        ext_key_usage: (!t.ext_key_usage.is_empty()).then(|| t.ext_key_usage.clone()),
        unknown_ext_key_usage: t
            .unknown_ext_key_usage
            .iter()
            .map(|o| oid("UnknownExtKeyUsage", o))
            .collect::<Result<_, _>>()?,
        is_ca: t.is_ca,
        max_path_len: t.max_path_len,
        max_path_len_zero: t.max_path_len_zero,
        subject_key_id: t.subject_key_id.clone(),
        dns_names: t.dns_names.clone(),
        ip_addresses: t.ip_addresses.clone(),
        email_addresses: t.email_addresses.clone(),
        uris: t.uris.iter().map(url_string).collect(),
        ocsp_server: t.ocsp_server.clone(),
        issuing_certificate_url: t.issuing_certificate_url.clone(),
        crl_distribution_points: t.crl_distribution_points.clone(),
        permitted_dns_domains_critical: t.permitted_dns_domains_critical,
        permitted_dns_domains: t.permitted_dns_domains.clone(),
        excluded_dns_domains: t.excluded_dns_domains.clone(),
        permitted_ip_ranges: ranges("PermittedIPRanges", &t.permitted_ip_ranges)?,
        excluded_ip_ranges: ranges("ExcludedIPRanges", &t.excluded_ip_ranges)?,
        permitted_email_addresses: t.permitted_email_addresses.clone(),
        excluded_email_addresses: t.excluded_email_addresses.clone(),
        permitted_uri_domains: t.permitted_uri_domains.clone(),
        excluded_uri_domains: t.excluded_uri_domains.clone(),
        policy_identifiers: t
            .policy_identifiers
            .iter()
            .map(|o| oid("PolicyIdentifiers", o))
            .collect::<Result<_, _>>()?,
        extra_extensions: t
            .extra_extensions
            .iter()
            .map(|e| {
                Ok(TemplateExtension {
                    oid: oid("ExtraExtensions", &e.oid)?,
                    critical: e.critical,
                    value: e.value.clone(),
                })
            })
            .collect::<Result<_, CoreError>>()?,
        signature_algorithm: t.signature_algorithm,
    })
}

/// Whether an untyped Go field has a value other than its zero value.
fn is_set(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Null => false,
        serde_json::Value::Bool(b) => *b,
        serde_json::Value::Number(n) => n.as_f64() != Some(0.0),
        serde_json::Value::String(s) => !s.is_empty(),
        serde_json::Value::Array(a) => !a.is_empty(),
        serde_json::Value::Object(o) => !o.is_empty(),
    }
}

/// The prefix length of a network mask, if it is a prefix (ones, then zeros).
fn prefix_len(mask: &[u8]) -> Option<u8> {
    let mut ones = 0u32;
    let mut seen_zero = false;
    for byte in mask {
        for bit in (0..8).rev() {
            if byte & (1 << bit) != 0 {
                if seen_zero {
                    return None;
                }
                ones += 1;
            } else {
                seen_zero = true;
            }
        }
    }
    u8::try_from(ones).ok()
}

/// The string form of a Go `url.URL`.
fn url_string(url: &model::GoUrl) -> String {
    let mut out = String::new();
    if !url.scheme.is_empty() {
        out.push_str(&url.scheme);
        out.push(':');
    }
    if !url.opaque.is_empty() {
        out.push_str(&url.opaque);
    } else {
        if !url.host.is_empty() || !url.scheme.is_empty() {
            out.push_str("//");
            out.push_str(&url.host);
        }
        out.push_str(&url.path);
    }
    if !url.raw_query.is_empty() {
        out.push('?');
        out.push_str(&url.raw_query);
    }
    if !url.fragment.is_empty() {
        out.push('#');
        out.push_str(&url.fragment);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_lengths() {
        assert_eq!(prefix_len(&[255, 255, 255, 0]), Some(24));
        assert_eq!(prefix_len(&[255, 0, 255, 0]), None);
        assert_eq!(prefix_len(&[]), Some(0));
    }

    #[test]
    fn urls_as_go_prints_them() {
        let mut url = model::GoUrl::default();
        url.scheme = "https".into();
        url.host = "example.com".into();
        url.path = "/a".into();
        url.raw_query = "x=1".into();
        assert_eq!(url_string(&url), "https://example.com/a?x=1");
    }

    #[test]
    fn generates_shared_secrets_and_refuses_bad_sizes() {
        let doc = quarry_manifest::ManifestDocument::from_json(
            br#"{"Packages":{"p":{"UniqueID":"00"}},"Marbles":{"m":{"Package":"p"}},
            "Secrets":{"k":{"Type":"symmetric-key","Size":128,"Shared":true},
            "c":{"Type":"cert-ecdsa","Size":256,"Shared":true},
            "u":{"Type":"symmetric-key","Size":256},
            "p":{"Type":"plain","UserDefined":true}}}"#
                .to_vec(),
        )
        .unwrap();
        let now = OffsetDateTime::now_utc();
        let ca =
            CoordinatorCa::generate(&quarry_pki::CaNames::parse("localhost"), now, &SystemRandom)
                .unwrap();
        let secrets = generate_secrets(doc.manifest(), &ca, now).unwrap();
        let names: Vec<&str> = secrets.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["c", "k", "p"]);
        assert_eq!(secrets[1].1.private.as_ref().unwrap().len(), 16);
        assert!(secrets[0].1.cert.is_some());

        let doc = quarry_manifest::ManifestDocument::from_json(
            br#"{"Secrets":{"c":{"Type":"cert-ecdsa","Size":224,"Shared":true}}}"#.to_vec(),
        )
        .unwrap();
        let err = generate_secrets(doc.manifest(), &ca, now).unwrap_err();
        assert!(err.to_string().starts_with("Secrets[\"c\"]: "), "{err}");
    }
}
