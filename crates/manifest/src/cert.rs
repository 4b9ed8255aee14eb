//! Decoding of a secret's `Cert`: Go's `x509.Certificate` in its JSON form, or a certificate
//! as a base64 DER string.
//!
//! The string form follows MarbleRun: text that is not base64 is ignored (with a warning here),
//! decoded bytes that are not a certificate are an error. The object form takes the Go field
//! names case-insensitively; fields that Go's certificate generation overrides or ignores are
//! accepted with a warning, so a reader learns that they have no effect.

use std::net::IpAddr;

use quarry_common::DocPath;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::decode::{Decoder, WarningKind, decode_std_base64, to_json_value};
use crate::model::{
    AttributeValue, CertTemplate, DistinguishedName, Extension, GoUrl, IpNet, SecretCert,
};
use crate::node::Node;

/// Go fields that `CreateCertificate` (or MarbleRun before it) overrides or never reads.
const IGNORED_FIELDS: &[&str] = &[
    "Raw",
    "RawTBSCertificate",
    "RawSubjectPublicKeyInfo",
    "RawIssuer",
    "Signature",
    "PublicKeyAlgorithm",
    "PublicKey",
    "Version",
    "SerialNumber",
    "Issuer",
    "NotBefore",
    "Extensions",
    "UnhandledCriticalExtensions",
    "BasicConstraintsValid",
    "AuthorityKeyId",
];

/// Go fields that generation honours and that the model keeps untyped.
const UNTYPED_FIELDS: &[&str] = &[
    "Policies",
    "InhibitAnyPolicy",
    "InhibitAnyPolicyZero",
    "InhibitPolicyMapping",
    "InhibitPolicyMappingZero",
    "RequireExplicitPolicy",
    "RequireExplicitPolicyZero",
    "PolicyMappings",
];

const TYPED_FIELDS: &[&str] = &[
    "Subject",
    "RawSubject",
    "NotAfter",
    "KeyUsage",
    "ExtKeyUsage",
    "UnknownExtKeyUsage",
    "IsCA",
    "MaxPathLen",
    "MaxPathLenZero",
    "SubjectKeyId",
    "OCSPServer",
    "IssuingCertificateURL",
    "DNSNames",
    "EmailAddresses",
    "IPAddresses",
    "URIs",
    "CRLDistributionPoints",
    "PermittedDNSDomainsCritical",
    "PermittedDNSDomains",
    "ExcludedDNSDomains",
    "PermittedIPRanges",
    "ExcludedIPRanges",
    "PermittedEmailAddresses",
    "ExcludedEmailAddresses",
    "PermittedURIDomains",
    "ExcludedURIDomains",
    "PolicyIdentifiers",
    "ExtraExtensions",
    "SignatureAlgorithm",
];

/// Decodes the value of a `Cert` key.
pub(crate) fn decode_cert(d: &mut Decoder, node: &Node, path: &DocPath) -> SecretCert {
    match node {
        Node::Null => SecretCert::default(),
        Node::String(text) if text.is_empty() => SecretCert::default(),
        Node::String(text) => decode_der_string(d, text, path),
        Node::Object(_) => SecretCert::Template(Box::new(decode_template(d, node, path))),
        other => {
            d.error(
                path,
                format!(
                    "expected a certificate object or a base64 DER string, found {}",
                    other.kind()
                ),
            );
            SecretCert::default()
        }
    }
}

/// Decodes a base64 DER certificate string; `None` (with a warning) when the text is not base64.
pub(crate) fn decode_der_string(d: &mut Decoder, text: &str, path: &DocPath) -> SecretCert {
    let Ok(der) = decode_std_base64(text) else {
        d.warn(
            path,
            WarningKind::IgnoredField("not valid base64, so no certificate (as in MarbleRun)"),
        );
        return SecretCert::default();
    };
    match parse_der_certificate(&der) {
        Ok(not_after) => SecretCert::Der { der, not_after },
        Err(message) => {
            d.error(path, message);
            SecretCert::default()
        }
    }
}

/// Parses a DER certificate, refusing trailing bytes as Go does; returns its `notAfter`.
pub(crate) fn parse_der_certificate(der: &[u8]) -> Result<OffsetDateTime, String> {
    match x509_parser::parse_x509_certificate(der) {
        Ok((rest, _)) if !rest.is_empty() => Err(format!(
            "certificate is followed by {} bytes of trailing data",
            rest.len()
        )),
        Ok((_, cert)) => Ok(cert.validity().not_after.to_datetime()),
        Err(e) => Err(format!("not a valid x509 certificate: {e}")),
    }
}

fn decode_template(d: &mut Decoder, node: &Node, path: &DocPath) -> CertTemplate {
    let mut t = CertTemplate::default();
    let names: Vec<&'static str> = TYPED_FIELDS
        .iter()
        .chain(UNTYPED_FIELDS)
        .chain(IGNORED_FIELDS)
        .copied()
        .collect();
    d.fields(node, path, &names, |d, name, v, p| match name {
        "Subject" => t.subject = decode_name(d, v, p),
        "RawSubject" => t.raw_subject = d.bytes(v, p),
        "NotAfter" => t.not_after = decode_time(d, v, p),
        "KeyUsage" => t.key_usage = d.int(v, p),
        "ExtKeyUsage" => t.ext_key_usage = d.ints(v, p),
        "UnknownExtKeyUsage" => t.unknown_ext_key_usage = decode_oids(d, v, p),
        "IsCA" => t.is_ca = d.bool(v, p),
        "MaxPathLen" => t.max_path_len = d.int(v, p),
        "MaxPathLenZero" => t.max_path_len_zero = d.bool(v, p),
        "SubjectKeyId" => t.subject_key_id = d.bytes(v, p),
        "OCSPServer" => t.ocsp_server = d.strings(v, p),
        "IssuingCertificateURL" => t.issuing_certificate_url = d.strings(v, p),
        "DNSNames" => t.dns_names = (*v != Node::Null).then(|| d.strings(v, p)),
        "EmailAddresses" => t.email_addresses = d.strings(v, p),
        "IPAddresses" => {
            t.ip_addresses =
                (*v != Node::Null).then(|| d.list(v, p, decode_ip).into_iter().flatten().collect())
        }
        "URIs" => t.uris = d.list(v, p, decode_url),
        "CRLDistributionPoints" => t.crl_distribution_points = d.strings(v, p),
        "PermittedDNSDomainsCritical" => t.permitted_dns_domains_critical = d.bool(v, p),
        "PermittedDNSDomains" => t.permitted_dns_domains = d.strings(v, p),
        "ExcludedDNSDomains" => t.excluded_dns_domains = d.strings(v, p),
        "PermittedIPRanges" => t.permitted_ip_ranges = d.list(v, p, decode_ip_net),
        "ExcludedIPRanges" => t.excluded_ip_ranges = d.list(v, p, decode_ip_net),
        "PermittedEmailAddresses" => t.permitted_email_addresses = d.strings(v, p),
        "ExcludedEmailAddresses" => t.excluded_email_addresses = d.strings(v, p),
        "PermittedURIDomains" => t.permitted_uri_domains = d.strings(v, p),
        "ExcludedURIDomains" => t.excluded_uri_domains = d.strings(v, p),
        "PolicyIdentifiers" => t.policy_identifiers = decode_oids(d, v, p),
        "ExtraExtensions" => t.extra_extensions = d.list(v, p, decode_extension),
        "SignatureAlgorithm" => t.signature_algorithm = d.int(v, p),
        other if UNTYPED_FIELDS.contains(&other) => {
            if *v != Node::Null {
                t.other.insert(other.to_owned(), to_json_value(v));
            }
        }
        _ => d.ignored(v, p, "certificate generation sets or ignores this field"),
    });
    t
}

fn decode_name(d: &mut Decoder, node: &Node, path: &DocPath) -> DistinguishedName {
    let mut n = DistinguishedName::default();
    let names = [
        "Country",
        "Organization",
        "OrganizationalUnit",
        "Locality",
        "Province",
        "StreetAddress",
        "PostalCode",
        "SerialNumber",
        "CommonName",
        "Names",
        "ExtraNames",
    ];
    d.fields(node, path, &names, |d, name, v, p| match name {
        "Country" => n.country = d.strings(v, p),
        "Organization" => n.organization = d.strings(v, p),
        "OrganizationalUnit" => n.organizational_unit = d.strings(v, p),
        "Locality" => n.locality = d.strings(v, p),
        "Province" => n.province = d.strings(v, p),
        "StreetAddress" => n.street_address = d.strings(v, p),
        "PostalCode" => n.postal_code = d.strings(v, p),
        "SerialNumber" => n.serial_number = d.string(v, p),
        "CommonName" => n.common_name = d.string(v, p),
        "ExtraNames" => n.extra_names = d.list(v, p, decode_attribute),
        _ => d.ignored(
            v,
            p,
            "Go fills Names when parsing; generation uses ExtraNames",
        ),
    });
    n
}

fn decode_attribute(d: &mut Decoder, node: &Node, path: &DocPath) -> AttributeValue {
    let mut a = AttributeValue {
        oid: Vec::new(),
        value: serde_json::Value::Null,
    };
    d.fields(node, path, &["Type", "Value"], |d, name, v, p| match name {
        "Type" => a.oid = d.ints(v, p),
        _ => a.value = to_json_value(v),
    });
    a
}

fn decode_extension(d: &mut Decoder, node: &Node, path: &DocPath) -> Extension {
    let mut e = Extension {
        oid: Vec::new(),
        critical: false,
        value: Vec::new(),
    };
    d.fields(
        node,
        path,
        &["Id", "Critical", "Value"],
        |d, name, v, p| match name {
            "Id" => e.oid = d.ints(v, p),
            "Critical" => e.critical = d.bool(v, p),
            _ => e.value = d.bytes(v, p),
        },
    );
    e
}

fn decode_oids(d: &mut Decoder, node: &Node, path: &DocPath) -> Vec<Vec<i64>> {
    d.list(node, path, |d, v, p| d.ints(v, p))
}

fn decode_ip(d: &mut Decoder, node: &Node, path: &DocPath) -> Option<IpAddr> {
    let text = d.string(node, path);
    match text.parse() {
        Ok(ip) => Some(ip),
        Err(_) => {
            d.error(path, format!("{text:?} is not an IP address"));
            None
        }
    }
}

fn decode_ip_net(d: &mut Decoder, node: &Node, path: &DocPath) -> IpNet {
    let mut n = IpNet {
        ip: None,
        mask: Vec::new(),
    };
    d.fields(node, path, &["IP", "Mask"], |d, name, v, p| match name {
        "IP" => n.ip = (*v != Node::Null).then(|| decode_ip(d, v, p)).flatten(),
        _ => n.mask = d.bytes(v, p),
    });
    n
}

fn decode_url(d: &mut Decoder, node: &Node, path: &DocPath) -> GoUrl {
    let mut u = GoUrl::default();
    let names = [
        "Scheme",
        "Opaque",
        "User",
        "Host",
        "Path",
        "RawPath",
        "OmitHost",
        "ForceQuery",
        "RawQuery",
        "Fragment",
        "RawFragment",
    ];
    d.fields(node, path, &names, |d, name, v, p| match name {
        "Scheme" => u.scheme = d.string(v, p),
        "Opaque" => u.opaque = d.string(v, p),
        "Host" => u.host = d.string(v, p),
        "Path" => u.path = d.string(v, p),
        "RawQuery" => u.raw_query = d.string(v, p),
        "Fragment" => u.fragment = d.string(v, p),
        _ => d.ignored(v, p, "not part of the URI that is written"),
    });
    u
}

/// Go's `time.Time` JSON form (RFC 3339); Go's zero time counts as unset.
fn decode_time(d: &mut Decoder, node: &Node, path: &DocPath) -> Option<OffsetDateTime> {
    let text = match node {
        Node::Null => return None,
        Node::String(s) => s,
        other => {
            d.error(
                path,
                format!("expected an RFC 3339 time, found {}", other.kind()),
            );
            return None;
        }
    };
    match OffsetDateTime::parse(text, &Rfc3339) {
        Ok(t) if t == go_zero_time() => None,
        Ok(t) => Some(t),
        Err(e) => {
            d.error(path, format!("{text:?} is not an RFC 3339 time: {e}"));
            None
        }
    }
}

fn go_zero_time() -> OffsetDateTime {
    time::macros::datetime!(0001-01-01 00:00:00 UTC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::parse_json;

    fn decode(json: &str) -> (SecretCert, Decoder) {
        let mut d = Decoder::default();
        let node = parse_json(json.as_bytes()).unwrap();
        let cert = decode_cert(&mut d, &node, &DocPath::root().field("Cert"));
        (cert, d)
    }

    #[test]
    fn decodes_the_documented_fields() {
        let (cert, d) = decode(
            r#"{"Subject": {"CommonName": "web", "Organization": ["Acme"]},
                "dnsnames": ["a.example"], "IPAddresses": ["10.0.0.1", "::1"],
                "NotAfter": "2030-01-02T03:04:05Z", "KeyUsage": 1, "ExtKeyUsage": [1, 2],
                "IsCA": false, "SerialNumber": 5, "InhibitAnyPolicy": 1}"#,
        );
        assert!(d.errors.is_empty(), "{:?}", d.errors);
        let t = cert.template().unwrap();
        assert_eq!(t.subject.common_name, "web");
        assert_eq!(t.dns_names.as_deref(), Some(&["a.example".to_owned()][..]));
        assert_eq!(t.ip_addresses.as_ref().unwrap().len(), 2);
        assert_eq!(t.ext_key_usage, vec![1, 2]);
        assert!(t.not_after.is_some());
        assert!(t.other.contains_key("InhibitAnyPolicy"));
        assert_eq!(d.warnings.len(), 1);
        assert_eq!(d.warnings[0].path.to_string(), "Cert.SerialNumber");
    }

    #[test]
    fn go_zero_time_is_unset() {
        let (cert, _) = decode(r#"{"NotAfter": "0001-01-01T00:00:00Z"}"#);
        assert_eq!(cert.not_after(), None);
    }

    #[test]
    fn invalid_base64_is_ignored_with_a_warning_but_garbage_der_is_an_error() {
        let (cert, d) = decode(r#""%%%""#);
        assert_eq!(cert, SecretCert::default());
        assert_eq!(d.warnings.len(), 1);
        let (_, d) = decode(r#""AAEC""#);
        assert_eq!(d.errors.len(), 1);
        assert_eq!(d.errors[0].path.to_string(), "Cert");
    }

    #[test]
    fn wrong_types_are_errors_with_paths() {
        let (_, d) = decode(r#"{"IPAddresses": ["nope"], "IsCA": 1, "NotAfter": "tomorrow"}"#);
        let paths: Vec<String> = d.errors.iter().map(|e| e.path.to_string()).collect();
        assert_eq!(paths, ["Cert.IPAddresses[0]", "Cert.IsCA", "Cert.NotAfter"]);
    }
}
