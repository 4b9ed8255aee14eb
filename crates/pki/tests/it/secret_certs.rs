//! Certificates of certificate secrets, built from `Cert` templates.

use std::net::IpAddr;

use quarry_pki::ca::certificate_pem;
use quarry_pki::secrets::{CertKeyType, EcdsaCurve};
use quarry_pki::template::{CertTemplate, Name, TemplateExtension, check_template, not_after};
use quarry_pki::{Error, SystemRandom};
use time::Duration;
use time::macros::datetime;

use crate::support::*;

#[test]
fn every_key_type_gets_a_default_certificate() {
    let ca = new_ca();
    let dir = Dir::new();
    write_ca(&dir, &ca);
    let cases = [
        (
            CertKeyType::Rsa { bits: 2048 },
            "1.2.840.113549.1.1.1",
            "2048 bit",
        ),
        (
            CertKeyType::Ecdsa(EcdsaCurve::P256),
            "1.2.840.10045.2.1",
            "prime256v1",
        ),
        (
            CertKeyType::Ecdsa(EcdsaCurve::P384),
            "1.2.840.10045.2.1",
            "secp384r1",
        ),
        (
            CertKeyType::Ecdsa(EcdsaCurve::P521),
            "1.2.840.10045.2.1",
            "secp521r1",
        ),
        (CertKeyType::Ed25519, "1.3.101.112", "ED25519"),
    ];
    for (i, (key_type, algorithm, openssl_text)) in cases.into_iter().enumerate() {
        let secret = ca
            .issue_secret_certificate(key_type, &CertTemplate::default(), 0, NOW, &SystemRandom)
            .unwrap();
        assert!(secret.warnings.is_empty());
        let cert = parse(&secret.certificate);
        assert_eq!(
            cert.public_key().algorithm.algorithm.to_id_string(),
            algorithm
        );
        assert_eq!(cert.public_key().raw, secret.public_key.as_slice());
        assert_eq!(common_name(cert.subject()), "localhost");
        assert_eq!(
            common_name(cert.issuer()),
            "MarbleRun Coordinator - Intermediate CA"
        );
        assert_eq!(
            sans(&cert),
            (
                vec!["localhost".into()],
                vec!["127.0.0.1".into(), "::1".into()]
            )
        );
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert_eq!(ku.flags, 0b10_0001, "digitalSignature | keyCertSign");
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
        assert!(!cert.basic_constraints().unwrap().unwrap().value.ca);
        let validity = cert.validity();
        assert_eq!(
            validity.not_after.to_datetime() - validity.not_before.to_datetime(),
            Duration::days(365)
        );

        // The PKCS#8 private key belongs to the certificate.
        let key = dir.write(&format!("key{i}.der"), &*secret.private_key);
        let text = String::from_utf8(openssl(&[
            "pkey", "-inform", "DER", "-in", &key, "-noout", "-text",
        ]))
        .unwrap();
        assert!(text.contains(openssl_text), "{text}");
        let public = openssl(&[
            "pkey", "-inform", "DER", "-in", &key, "-pubout", "-outform", "DER",
        ]);
        assert_eq!(public, secret.public_key);

        let leaf = dir.write(
            &format!("leaf{i}.pem"),
            certificate_pem(&secret.certificate),
        );
        verify_under_both_anchors(&dir, &leaf);
    }
}

#[test]
fn template_fields_are_honoured() {
    let ca = new_ca();
    let template = CertTemplate {
        subject: Name {
            country: vec!["DE".into()],
            organization: vec!["Quarry Test".into()],
            organizational_unit: vec!["Ünit".into()],
            common_name: "db.example".into(),
            serial_number: "42".into(),
            ..Default::default()
        },
        not_after: Some(datetime!(2030-06-01 00:00:00 UTC)),
        key_usage: 1 | 4,
        ext_key_usage: Some(vec![1, 5]),
        unknown_ext_key_usage: vec![vec![1, 2, 3, 4]],
        is_ca: true,
        max_path_len: 1,
        subject_key_id: vec![1, 2, 3, 4],
        dns_names: Some(vec!["db.example".into(), "db2.example".into()]),
        ip_addresses: Some(vec![]),
        email_addresses: vec!["ops@example.com".into()],
        uris: vec!["spiffe://example/db".into()],
        ocsp_server: vec!["http://ocsp.example".into()],
        issuing_certificate_url: vec!["http://ca.example/ca.crt".into()],
        crl_distribution_points: vec!["http://ca.example/crl".into()],
        permitted_dns_domains_critical: true,
        permitted_dns_domains: vec!["example".into()],
        excluded_ip_ranges: vec![("10.0.0.0".parse().unwrap(), 8)],
        policy_identifiers: vec![vec![2, 23, 140, 1, 2, 1]],
        extra_extensions: vec![TemplateExtension {
            oid: vec![1, 2, 3, 99],
            critical: false,
            value: vec![0x05, 0x00],
        }],
        signature_algorithm: 11,
        ..Default::default()
    };
    let secret = ca
        .issue_secret_certificate(
            CertKeyType::Ecdsa(EcdsaCurve::P256),
            &template,
            0,
            NOW,
            &SystemRandom,
        )
        .unwrap();
    assert!(secret.warnings.is_empty(), "{:?}", secret.warnings);
    let cert = parse(&secret.certificate);

    let subject = cert.subject().to_string();
    assert_eq!(
        subject,
        "C=DE, O=Quarry Test, OU=Ünit, CN=db.example, serialNumber=42"
    );
    assert_eq!(
        cert.validity().not_after.to_datetime(),
        datetime!(2030-06-01 00:00:00 UTC)
    );
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && ku.key_encipherment() && !ku.key_cert_sign());
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && !eku.client_auth);
    let other: Vec<String> = eku.other.iter().map(|o| o.to_id_string()).collect();
    assert_eq!(other, ["1.3.6.1.5.5.7.3.5", "1.2.3.4"]);
    let bc = cert.basic_constraints().unwrap().unwrap().value;
    assert!(bc.ca && bc.path_len_constraint == Some(1));
    assert_eq!(subject_key_id(&cert), Some(vec![1, 2, 3, 4]));
    assert_eq!(
        sans(&cert),
        (vec!["db.example".into(), "db2.example".into()], vec![])
    );
    let san_text = format!(
        "{:?}",
        cert.subject_alternative_name().unwrap().unwrap().value
    );
    assert!(
        san_text.contains("ops@example.com") && san_text.contains("spiffe://example/db"),
        "{san_text}"
    );
    for oid in ["1.3.6.1.5.5.7.1.1", "2.5.29.31", "2.5.29.32", "2.5.29.30"] {
        assert!(extension(&cert, oid).is_some(), "extension {oid}");
    }
    let extra = extension(&cert, "1.2.3.99").unwrap();
    assert_eq!(extra.value, [0x05, 0x00]);
    assert!(!extra.critical);

    // openssl reads the extensions the same way.
    let dir = Dir::new();
    let leaf = dir.write("leaf.pem", certificate_pem(&secret.certificate));
    let text = String::from_utf8(openssl(&["x509", "-in", &leaf, "-noout", "-text"])).unwrap();
    for expected in [
        "OCSP - URI:http://ocsp.example",
        "CA Issuers - URI:http://ca.example/ca.crt",
        "URI:http://ca.example/crl",
        "Policy: 2.23.140.1.2.1",
        "Permitted:",
        "DNS:example",
        "IP:10.0.0.0/255.0.0.0",
        "CA:TRUE, pathlen:1",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
}

#[test]
fn raw_subject_replaces_subject() {
    let ca = new_ca();
    let root = parse(ca.root_certificate_der());
    let template = CertTemplate {
        raw_subject: Some(root.subject().as_raw().to_vec()),
        subject: Name {
            common_name: "ignored".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    let secret = ca
        .issue_secret_certificate(CertKeyType::Ed25519, &template, 0, NOW, &SystemRandom)
        .unwrap();
    assert_eq!(
        common_name(parse(&secret.certificate).subject()),
        "MarbleRun Coordinator"
    );
}

#[test]
fn common_name_and_sans_defaults() {
    let ca = new_ca();
    let issue = |template: CertTemplate| {
        let secret = ca
            .issue_secret_certificate(CertKeyType::Ed25519, &template, 7, NOW, &SystemRandom)
            .unwrap();
        secret.certificate
    };
    let two_names = issue(CertTemplate {
        dns_names: Some(vec!["a".into(), "b".into()]),
        ..Default::default()
    });
    assert_eq!(
        common_name(parse(&two_names).subject()),
        "MarbleRun Generated Certificate"
    );
    let no_names = issue(CertTemplate {
        dns_names: Some(vec![]),
        ip_addresses: Some(vec![IpAddr::from([192, 0, 2, 1])]),
        ..Default::default()
    });
    let cert = parse(&no_names);
    assert_eq!(
        common_name(cert.subject()),
        "MarbleRun Generated Certificate"
    );
    assert_eq!(sans(&cert), (vec![], vec!["192.0.2.1".into()]));
    let validity = cert.validity();
    assert_eq!(
        validity.not_after.to_datetime() - validity.not_before.to_datetime(),
        Duration::days(7)
    );
    let empty_eku = issue(CertTemplate {
        ext_key_usage: Some(vec![]),
        ..Default::default()
    });
    assert!(
        parse(&empty_eku).extended_key_usage().unwrap().is_none(),
        "explicitly empty ExtKeyUsage"
    );
}

#[test]
fn validity_rules() {
    let t = CertTemplate::default();
    assert_eq!(
        not_after(&t, 0, NOW) - not_after(&t, 1, NOW),
        Duration::days(364)
    );
    let fixed = datetime!(2031-01-01 00:00:00 UTC);
    let t = CertTemplate {
        not_after: Some(fixed),
        ..Default::default()
    };
    assert_eq!(not_after(&t, 0, NOW), fixed);
    assert_eq!(
        not_after(&t, 10, NOW),
        not_after(&CertTemplate::default(), 10, NOW)
    );
}

#[test]
fn fields_that_cannot_be_honoured_are_errors() {
    let cases: Vec<(CertTemplate, &str)> = vec![
        (
            CertTemplate {
                subject: Name {
                    organization: vec!["a".into(), "b".into()],
                    ..Default::default()
                },
                ..Default::default()
            },
            "Subject.Organization",
        ),
        (
            CertTemplate {
                permitted_uri_domains: vec!["example".into()],
                ..Default::default()
            },
            "PermittedURIDomains",
        ),
        (
            CertTemplate {
                max_path_len: 2,
                ..Default::default()
            },
            "MaxPathLen",
        ),
        (
            CertTemplate {
                key_usage: 1024,
                ..Default::default()
            },
            "KeyUsage",
        ),
        (
            CertTemplate {
                ext_key_usage: Some(vec![99]),
                ..Default::default()
            },
            "ExtKeyUsage",
        ),
        (
            CertTemplate {
                signature_algorithm: 4,
                ..Default::default()
            },
            "SignatureAlgorithm",
        ),
        (
            CertTemplate {
                dns_names: Some(vec!["bücher.example".into()]),
                ..Default::default()
            },
            "DNSNames",
        ),
        (
            CertTemplate {
                raw_subject: Some(vec![1, 2, 3]),
                ..Default::default()
            },
            "RawSubject",
        ),
        (
            CertTemplate {
                extra_extensions: vec![TemplateExtension {
                    oid: vec![2, 5, 29, 17],
                    critical: false,
                    value: vec![],
                }],
                ..Default::default()
            },
            "ExtraExtensions",
        ),
        (
            CertTemplate {
                excluded_ip_ranges: vec![("10.0.0.0".parse().unwrap(), 33)],
                ..Default::default()
            },
            "ExcludedIPRanges",
        ),
    ];
    let ca = new_ca();
    for (template, field) in cases {
        let err = check_template(&template).unwrap_err();
        assert!(
            matches!(&err, Error::UnsupportedTemplateField { field: f, .. } if *f == field),
            "{field}: {err}"
        );
        assert!(
            ca.issue_secret_certificate(CertKeyType::Ed25519, &template, 0, NOW, &SystemRandom)
                .is_err()
        );
    }
}

#[test]
fn cosmetic_differences_are_warnings() {
    let template = CertTemplate {
        signature_algorithm: 10,
        permitted_dns_domains: vec!["example".into()],
        ..Default::default()
    };
    let warnings = check_template(&template).unwrap();
    let fields: Vec<&str> = warnings.iter().map(|w| w.field).collect();
    assert_eq!(
        fields,
        ["PermittedDNSDomainsCritical", "SignatureAlgorithm"]
    );
    assert!(warnings[1].to_string().contains("ECDSA-SHA384"));
}

#[test]
fn p224_is_refused_with_a_clear_error() {
    let err = CertKeyType::from_secret("cert-ecdsa", 224)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "unsupported cert-ecdsa size 224: P-224 is not supported (MarbleRun accepts it; use 256, 384 or 521)"
    );
}

#[test]
fn a_previous_certificate_serves_as_template() {
    let ca = new_ca();
    let original = CertTemplate {
        subject: Name {
            organization: vec!["Quarry Test".into()],
            common_name: "svc".into(),
            ..Default::default()
        },
        key_usage: 1 | 16,
        ext_key_usage: Some(vec![2, 6]),
        unknown_ext_key_usage: vec![vec![1, 2, 3, 4]],
        is_ca: true,
        max_path_len: 0,
        max_path_len_zero: true,
        dns_names: Some(vec!["svc.example".into()]),
        ip_addresses: Some(vec![IpAddr::from([192, 0, 2, 7])]),
        email_addresses: vec!["ops@example.com".into()],
        ocsp_server: vec!["http://ocsp.example".into()],
        crl_distribution_points: vec!["http://ca.example/crl".into()],
        policy_identifiers: vec![vec![2, 23, 140, 1, 2, 1]],
        permitted_dns_domains: vec!["example".into()],
        permitted_dns_domains_critical: true,
        excluded_ip_ranges: vec![("10.0.0.0".parse().unwrap(), 8)],
        ..Default::default()
    };
    let first = ca
        .issue_secret_certificate(CertKeyType::Ed25519, &original, 30, NOW, &SystemRandom)
        .unwrap();
    let template = CertTemplate::from_certificate_der(&first.certificate).unwrap();
    assert_eq!(template.key_usage, 1 | 16);
    assert_eq!(template.ext_key_usage, Some(vec![2, 6]));
    assert_eq!(template.unknown_ext_key_usage, vec![vec![1, 2, 3, 4]]);
    assert_eq!(template.excluded_ip_ranges, original.excluded_ip_ranges);

    // Regenerated with the stored certificate as template: same profile, new key and serial.
    let later = NOW + Duration::days(3);
    let second = ca
        .issue_secret_certificate(CertKeyType::Ed25519, &template, 0, later, &SystemRandom)
        .unwrap();
    assert!(second.warnings.is_empty(), "{:?}", second.warnings);
    let (a, b) = (parse(&first.certificate), parse(&second.certificate));
    assert_eq!(a.subject().as_raw(), b.subject().as_raw());
    assert_eq!(
        a.validity().not_after,
        b.validity().not_after,
        "ValidFor 0 keeps the expiry"
    );
    assert_ne!(a.raw_serial(), b.raw_serial());
    assert_ne!(a.public_key().raw, b.public_key().raw);
    for oid in [
        "2.5.29.15",
        "2.5.29.37",
        "2.5.29.19",
        "2.5.29.17",
        "1.3.6.1.5.5.7.1.1",
        "2.5.29.31",
        "2.5.29.32",
        "2.5.29.30",
    ] {
        assert_eq!(
            extension(&a, oid).unwrap().value,
            extension(&b, oid).unwrap().value,
            "{oid}"
        );
    }
    assert!(CertTemplate::from_certificate_der(b"junk").is_err());
}
