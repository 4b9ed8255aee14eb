//! Marble certificates issued at activation.

use aws_lc_rs::signature::{ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use quarry_pki::marble::MARBLE_TYPE_EXTENSION_OID;
use quarry_pki::{Error, SystemRandom};
use rcgen::{CertificateParams, DnType, KeyPair as RcgenKeyPair};

use crate::support::*;

const UUID: [u8; 16] = [
    0x7b, 0x2f, 0x0a, 0x4c, 0x91, 0xd3, 0x4e, 0x5f, 0xa6, 0x01, 0x3c, 0x8e, 0xbf, 0x12, 0x00, 0xfe,
];
const UUID_TEXT: &str = "7b2f0a4c-91d3-4e5f-a601-3c8ebf1200fe";

/// A CSR as a Marble's premain sends it, with extra subject fields to see what is kept.
fn marble_csr() -> (Vec<u8>, Vec<u8>) {
    let key = RcgenKeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let mut params =
        CertificateParams::new(vec!["marble.local".to_owned(), "10.1.2.3".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "MarbleRun Marble");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Someone");
    params
        .distinguished_name
        .push(DnType::OrganizationalUnitName, "Unit 7");
    let csr = params.serialize_request(&key).unwrap();
    (csr.der().to_vec(), key.public_key_raw().to_vec())
}

#[test]
fn marble_certificate_follows_marblerun_profile() {
    let ca = new_ca();
    let (csr, csr_key) = marble_csr();
    let creds = ca
        .issue_marble_certificate(&csr, "backend", &UUID, NOW, &SystemRandom)
        .unwrap();
    let cert = parse(creds.certificate_der());

    assert_eq!(common_name(cert.subject()), UUID_TEXT);
    assert_eq!(
        cert.subject().iter_organization().count(),
        0,
        "O is removed"
    );
    let ou = cert
        .subject()
        .iter_organizational_unit()
        .next()
        .unwrap()
        .as_str()
        .unwrap();
    assert_eq!(ou, "Unit 7");
    assert_eq!(
        common_name(cert.issuer()),
        "MarbleRun Coordinator - Intermediate CA"
    );

    let (dns, ips) = sans(&cert);
    assert_eq!(dns, ["marble.local"]);
    assert_eq!(ips, ["10.1.2.3"]);

    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && ku.key_agreement() && !ku.key_cert_sign());
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    let bc = cert.basic_constraints().unwrap().unwrap().value;
    assert!(!bc.ca);
    assert_eq!(cert.validity().not_after.to_datetime().year(), 2318);
    assert!(cert.raw_serial().len() <= 17);

    let oid = MARBLE_TYPE_EXTENSION_OID
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".");
    let marble_type = extension(&cert, &oid).expect("marble type extension");
    assert!(!marble_type.critical);
    assert_eq!(marble_type.value, b"backend", "raw bytes, not DER-wrapped");

    let marble_root = parse(ca.marble_root_certificate_der());
    assert_eq!(authority_key_id(&cert), subject_key_id(&marble_root));

    // The Coordinator generates the key; the CSR's key is ignored.
    let issued_point = cert.public_key().subject_public_key.data.as_ref();
    assert_ne!(issued_point, csr_key.as_slice());
    let private = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P384_SHA384_ASN1_SIGNING,
        creds.private_key_pkcs8_der(),
    )
    .unwrap();
    assert_eq!(private.public_key().as_ref(), issued_point);
    assert!(
        creds
            .private_key_pem()
            .starts_with("-----BEGIN PRIVATE KEY-----\n")
    );
    assert_eq!(format!("{creds:?}"), "MarbleCredentials");
}

#[test]
fn marble_certificate_chains_with_openssl() {
    let ca = new_ca();
    let (csr, _) = marble_csr();
    let creds = ca
        .issue_marble_certificate(&csr, "frontend", &UUID, NOW, &SystemRandom)
        .unwrap();
    let dir = Dir::new();
    write_ca(&dir, &ca);
    let leaf = dir.write("marble.pem", creds.certificate_pem());
    verify_under_both_anchors(&dir, &leaf);
    let marble_root = dir.path("marble-root.pem");
    for purpose in ["sslserver", "sslclient"] {
        openssl(&[
            "verify",
            "-purpose",
            purpose,
            "-CAfile",
            marble_root.to_str().unwrap(),
            &leaf,
        ]);
    }

    // After a rotation, old Marble certificates no longer chain to the new Marble root.
    let mut rotated = ca;
    rotated.rotate_intermediate(NOW, &SystemRandom).unwrap();
    let new_root = dir.write("new-marble-root.pem", rotated.marble_root_certificate_pem());
    openssl_fails(&["verify", "-CAfile", &new_root, &leaf]);
}

#[test]
fn marble_certificate_without_sans_in_csr() {
    let ca = new_ca();
    let key = RcgenKeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key).unwrap();
    let creds = ca
        .issue_marble_certificate(csr.der(), "t", &UUID, NOW, &SystemRandom)
        .unwrap();
    let cert = parse(creds.certificate_der());
    assert_eq!(sans(&cert), (vec![], vec![]));
    assert_eq!(cert.subject().iter().count(), 1);
}

#[test]
fn rejects_bad_csrs_and_the_nil_uuid() {
    let ca = new_ca();
    let (mut csr, _) = marble_csr();
    let err = ca
        .issue_marble_certificate(&csr, "t", &[0; 16], NOW, &SystemRandom)
        .unwrap_err();
    assert!(err.to_string().contains("nil UUID"), "{err}");

    let err = ca
        .issue_marble_certificate(b"junk", "t", &UUID, NOW, &SystemRandom)
        .unwrap_err();
    assert!(matches!(err, Error::InvalidCsr { .. }), "{err}");

    // Flip a bit inside the signed subject: the self-signature no longer verifies.
    let pos = csr.windows(6).position(|w| w == b"Unit 7").unwrap();
    csr[pos] ^= 0x01;
    let err = ca
        .issue_marble_certificate(&csr, "t", &UUID, NOW, &SystemRandom)
        .unwrap_err();
    assert!(
        err.to_string().contains("self-signature does not verify"),
        "{err}"
    );

    let (mut csr, _) = marble_csr();
    csr.push(0);
    let err = ca
        .issue_marble_certificate(&csr, "t", &UUID, NOW, &SystemRandom)
        .unwrap_err();
    assert!(err.to_string().contains("trailing bytes"), "{err}");
}
