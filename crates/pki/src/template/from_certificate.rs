//! A template from a previously generated certificate, for regenerating certificate secrets.

use x509_parser::prelude::FromDer;

use super::{CertTemplate, unsupported};
use crate::Error;

impl CertTemplate {
    /// The template Go would see for a previously generated certificate (MarbleRun regenerates
    /// shared certificates on updates with the stored certificate as template).
    ///
    /// As in Go, the parsed subject becomes `RawSubject`, empty SAN lists become "unset" (so
    /// the defaults apply again), and extensions outside the template fields are not copied.
    pub fn from_certificate_der(der: &[u8]) -> Result<Self, Error> {
        use x509_parser::certificate::X509Certificate;
        use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};

        let invalid = |reason: String| Error::InvalidCertificate {
            what: "template".into(),
            reason,
        };
        let (rest, cert) = X509Certificate::from_der(der).map_err(|e| invalid(e.to_string()))?;
        if !rest.is_empty() {
            return Err(invalid(format!("{} trailing bytes", rest.len())));
        }
        let mut template = CertTemplate {
            raw_subject: Some(cert.subject().as_raw().to_vec()),
            not_after: Some(cert.validity().not_after.to_datetime()),
            max_path_len: -1,
            ..Default::default()
        };
        let mut dns_names = Vec::new();
        let mut ips = Vec::new();
        for extension in cert.extensions() {
            match extension.parsed_extension() {
                ParsedExtension::KeyUsage(ku) => template.key_usage = u32::from(ku.flags),
                ParsedExtension::ExtendedKeyUsage(eku) => {
                    let (known, unknown) = ext_key_usage_values(eku);
                    template.ext_key_usage = Some(known);
                    template.unknown_ext_key_usage = unknown;
                }
                ParsedExtension::BasicConstraints(bc) => {
                    template.is_ca = bc.ca;
                    if let Some(n) = bc.path_len_constraint {
                        template.max_path_len = i64::from(n);
                        template.max_path_len_zero = n == 0;
                    }
                }
                ParsedExtension::SubjectKeyIdentifier(id) => {
                    template.subject_key_id = id.0.to_vec()
                }
                ParsedExtension::SubjectAlternativeName(san) => {
                    for name in &san.general_names {
                        match name {
                            GeneralName::DNSName(d) => dns_names.push((*d).to_owned()),
                            GeneralName::IPAddress(b) => ips.extend(crate::ca::ip_from_bytes(b)),
                            GeneralName::RFC822Name(e) => {
                                template.email_addresses.push((*e).to_owned())
                            }
                            GeneralName::URI(u) => template.uris.push((*u).to_owned()),
                            _ => {}
                        }
                    }
                }
                ParsedExtension::AuthorityInfoAccess(aia) => {
                    for access in &aia.accessdescs {
                        let GeneralName::URI(url) = access.access_location else {
                            continue;
                        };
                        match access.access_method.to_id_string().as_str() {
                            "1.3.6.1.5.5.7.48.1" => template.ocsp_server.push(url.to_owned()),
                            "1.3.6.1.5.5.7.48.2" => {
                                template.issuing_certificate_url.push(url.to_owned())
                            }
                            _ => {}
                        }
                    }
                }
                ParsedExtension::CRLDistributionPoints(points) => {
                    for point in &points.points {
                        let Some(DistributionPointName::FullName(names)) =
                            &point.distribution_point
                        else {
                            continue;
                        };
                        for name in names {
                            if let GeneralName::URI(u) = name {
                                template.crl_distribution_points.push((*u).to_owned());
                            }
                        }
                    }
                }
                ParsedExtension::CertificatePolicies(policies) => {
                    for policy in policies {
                        template
                            .policy_identifiers
                            .extend(policy.policy_id.iter().map(Iterator::collect));
                    }
                }
                ParsedExtension::NameConstraints(nc) => {
                    template.permitted_dns_domains_critical = extension.critical;
                    for (subtrees, permitted) in [
                        (&nc.permitted_subtrees, true),
                        (&nc.excluded_subtrees, false),
                    ] {
                        for subtree in subtrees.iter().flatten() {
                            add_constraint(&mut template, &subtree.base, permitted)?;
                        }
                    }
                }
                _ => {}
            }
        }
        template.dns_names = (!dns_names.is_empty()).then_some(dns_names);
        template.ip_addresses = (!ips.is_empty()).then_some(ips);
        Ok(template)
    }
}

fn ext_key_usage_values(
    eku: &x509_parser::extensions::ExtendedKeyUsage<'_>,
) -> (Vec<i64>, Vec<Vec<u64>>) {
    let mut known = Vec::new();
    for (set, value) in [
        (eku.any, 0),
        (eku.server_auth, 1),
        (eku.client_auth, 2),
        (eku.code_signing, 3),
        (eku.email_protection, 4),
        (eku.time_stamping, 8),
        (eku.ocsp_signing, 9),
    ] {
        if set {
            known.push(value);
        }
    }
    let mut unknown = Vec::new();
    for oid in &eku.other {
        let value = match oid.to_id_string().as_str() {
            "1.3.6.1.5.5.7.3.5" => 5,
            "1.3.6.1.5.5.7.3.6" => 6,
            "1.3.6.1.5.5.7.3.7" => 7,
            "1.3.6.1.4.1.311.10.3.3" => 10,
            "2.16.840.1.113730.4.1" => 11,
            "1.3.6.1.4.1.311.2.1.22" => 12,
            "1.3.6.1.4.1.311.61.1.1" => 13,
            _ => {
                unknown.extend(oid.iter().map(Iterator::collect));
                continue;
            }
        };
        known.push(value);
    }
    (known, unknown)
}

fn add_constraint(
    template: &mut CertTemplate,
    base: &x509_parser::extensions::GeneralName<'_>,
    permitted: bool,
) -> Result<(), Error> {
    use x509_parser::extensions::GeneralName;
    match (base, permitted) {
        (GeneralName::DNSName(d), true) => template.permitted_dns_domains.push((*d).to_owned()),
        (GeneralName::DNSName(d), false) => template.excluded_dns_domains.push((*d).to_owned()),
        (GeneralName::RFC822Name(e), true) => {
            template.permitted_email_addresses.push((*e).to_owned())
        }
        (GeneralName::RFC822Name(e), false) => {
            template.excluded_email_addresses.push((*e).to_owned())
        }
        (GeneralName::URI(u), true) => template.permitted_uri_domains.push((*u).to_owned()),
        (GeneralName::URI(u), false) => template.excluded_uri_domains.push((*u).to_owned()),
        (GeneralName::IPAddress(bytes), _) => {
            let half = bytes.len() / 2;
            let (Some(ip), mask) = (crate::ca::ip_from_bytes(&bytes[..half]), &bytes[half..])
            else {
                return Err(unsupported("PermittedIPRanges", "malformed IP range"));
            };
            let prefix = mask.iter().map(|b| b.count_ones()).sum::<u32>() as u8;
            if permitted {
                template.permitted_ip_ranges.push((ip, prefix));
            } else {
                template.excluded_ip_ranges.push((ip, prefix));
            }
        }
        _ => {
            return Err(unsupported(
                "PermittedDNSDomains",
                "name constraints other than DNS, IP, e-mail and URI",
            ));
        }
    }
    Ok(())
}
