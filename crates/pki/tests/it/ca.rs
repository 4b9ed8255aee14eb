//! The Coordinator's CA chain, its serialisation and the manifest signature.

use quarry_pki::{
    CaMaterial, CaNames, CoordinatorCa, Error, SystemRandom, verify_manifest_signature,
};
use time::Duration;

use crate::support::*;

#[test]
fn ca_certificates_follow_marblerun_profile() {
    let names = CaNames::parse("localhost, coordinator.example ,10.0.0.5,,::1");
    let ca = CoordinatorCa::generate(&names, NOW, &SystemRandom).unwrap();
    let root = parse(ca.root_certificate_der());
    let intermediate = parse(ca.intermediate_certificate_der());
    let marble_root = parse(ca.marble_root_certificate_der());

    assert_eq!(common_name(root.subject()), "MarbleRun Coordinator");
    assert_eq!(common_name(root.issuer()), "MarbleRun Coordinator");
    assert_eq!(
        common_name(intermediate.subject()),
        "MarbleRun Coordinator - Intermediate CA"
    );
    assert_eq!(common_name(intermediate.issuer()), "MarbleRun Coordinator");
    assert_eq!(
        common_name(marble_root.subject()),
        "MarbleRun Coordinator - Intermediate CA"
    );
    assert_eq!(
        common_name(marble_root.issuer()),
        "MarbleRun Coordinator - Intermediate CA"
    );

    let expected_not_before = NOW - Duration::nanoseconds(i64::from(NOW.nanosecond()));
    let expected_not_after = NOW + Duration::nanoseconds(i64::MAX);
    for cert in [&root, &intermediate, &marble_root] {
        assert_eq!(cert.version().0, 2, "X.509 v3");
        assert_eq!(cert.subject().iter().count(), 1, "subject is CN only");
        assert!(cert.raw_serial().len() <= 17, "serial below 2^128");
        assert_eq!(
            cert.validity().not_before.to_datetime(),
            expected_not_before
        );
        let not_after = cert.validity().not_after.to_datetime();
        assert!(
            (expected_not_after - not_after).whole_seconds().abs() <= 1,
            "{not_after}"
        );
        assert_eq!(not_after.year(), 2318);

        let bc = cert
            .basic_constraints()
            .unwrap()
            .expect("basic constraints");
        assert!(bc.critical && bc.value.ca && bc.value.path_len_constraint.is_none());
        let ku = cert.key_usage().unwrap().expect("key usage").value;
        assert!(ku.digital_signature() && ku.key_cert_sign());
        assert_eq!(ku.flags, 0b10_0001, "only digitalSignature and keyCertSign");
        let eku = cert
            .extended_key_usage()
            .unwrap()
            .expect("extended key usage")
            .value;
        assert!(eku.server_auth && eku.client_auth && eku.other.is_empty() && !eku.any);

        let (dns, ips) = sans(cert);
        assert_eq!(dns, ["localhost", "coordinator.example"]);
        assert_eq!(ips, ["127.0.0.1", "::1", "10.0.0.5"]);

        assert_eq!(
            cert.signature_algorithm.algorithm.to_id_string(),
            oids::ECDSA_SHA384
        );
        let curve = cert
            .public_key()
            .algorithm
            .parameters
            .as_ref()
            .unwrap()
            .as_oid()
            .unwrap();
        assert_eq!(curve.to_id_string(), oids::SECP384R1);
        assert!(subject_key_id(cert).is_some());
    }

    // The intermediate and the Marble root are twins with one key.
    assert_eq!(intermediate.public_key().raw, marble_root.public_key().raw);
    assert_eq!(subject_key_id(&intermediate), subject_key_id(&marble_root));
    assert_ne!(root.public_key().raw, intermediate.public_key().raw);
    assert_ne!(intermediate.raw_serial(), marble_root.raw_serial());
    // Only a certificate issued by another CA names that CA's key.
    assert_eq!(authority_key_id(&intermediate), subject_key_id(&root));
    assert_eq!(authority_key_id(&root), None);
    assert_eq!(authority_key_id(&marble_root), None);
}

#[test]
fn serial_with_top_bit_set_stays_positive() {
    let ca = CoordinatorCa::generate(&CaNames::default(), NOW, &OnesRng).unwrap();
    let root = parse(ca.root_certificate_der());
    assert_eq!(root.raw_serial(), [&[0u8][..], &[0xff; 16]].concat());
}

#[test]
fn chains_verify_with_openssl() {
    let ca = new_ca();
    let dir = Dir::new();
    write_ca(&dir, &ca);
    let root = dir.path("root.pem");
    let root = root.to_str().unwrap();
    let intermediate = dir.path("intermediate.pem");
    let marble_root = dir.path("marble-root.pem");
    openssl(&["verify", "-CAfile", root, root]);
    openssl(&["verify", "-CAfile", root, intermediate.to_str().unwrap()]);
    let marble_root = marble_root.to_str().unwrap();
    openssl(&["verify", "-CAfile", marble_root, marble_root]);
    // The Marble root is not signed by the root.
    openssl_fails(&["verify", "-CAfile", root, marble_root]);

    let chain = dir.write("chain.pem", ca.quote_certificate_chain_pem());
    let pem_blocks = pem::parse_many(std::fs::read(&chain).unwrap()).unwrap();
    assert_eq!(pem_blocks.len(), 2);
    assert_eq!(pem_blocks[0].contents(), ca.intermediate_certificate_der());
    assert_eq!(pem_blocks[1].contents(), ca.root_certificate_der());
    assert!(
        !ca.quote_certificate_chain_pem().contains('\r'),
        "PEM uses LF"
    );
}

#[test]
fn rotation_keeps_root_and_rekeys_intermediate() {
    let mut ca =
        CoordinatorCa::generate(&CaNames::parse("localhost,10.9.9.9"), NOW, &SystemRandom).unwrap();
    let root_before = ca.root_certificate_der().to_vec();
    let intermediate_before = ca.intermediate_certificate_der().to_vec();
    let marble_root_before = ca.marble_root_certificate_der().to_vec();
    let key_before = ca.intermediate_key().public_key_point().to_vec();

    ca.rotate_intermediate(NOW + Duration::days(1), &SystemRandom)
        .unwrap();

    assert_eq!(ca.root_certificate_der(), root_before);
    assert_ne!(ca.intermediate_certificate_der(), intermediate_before);
    assert_ne!(ca.marble_root_certificate_der(), marble_root_before);
    assert_ne!(ca.intermediate_key().public_key_point(), key_before);
    let intermediate = parse(ca.intermediate_certificate_der());
    let marble_root = parse(ca.marble_root_certificate_der());
    assert_eq!(
        intermediate.public_key().subject_public_key.data.as_ref(),
        ca.intermediate_key().public_key_point()
    );
    assert_eq!(marble_root.public_key().raw, intermediate.public_key().raw);
    // IP SANs survive the rotation (MarbleRun drops them on a package update).
    assert_eq!(sans(&marble_root).1, ["127.0.0.1", "::1", "10.9.9.9"]);

    let dir = Dir::new();
    write_ca(&dir, &ca);
    openssl(&[
        "verify",
        "-CAfile",
        dir.path("root.pem").to_str().unwrap(),
        dir.path("intermediate.pem").to_str().unwrap(),
    ]);
}

#[test]
fn material_round_trip_restores_a_working_ca() {
    let ca = new_ca();
    let bytes = ca.to_material().unwrap().to_bytes();
    let restored = CoordinatorCa::from_material(&CaMaterial::from_bytes(&bytes).unwrap()).unwrap();

    assert_eq!(restored.root_certificate_der(), ca.root_certificate_der());
    assert_eq!(
        restored.intermediate_certificate_der(),
        ca.intermediate_certificate_der()
    );
    assert_eq!(
        restored.marble_root_certificate_der(),
        ca.marble_root_certificate_der()
    );
    assert_eq!(
        restored.root_key().public_key_point(),
        ca.root_key().public_key_point()
    );
    assert_eq!(restored.names(), ca.names());

    let signature = restored.sign_manifest(b"{}").unwrap();
    verify_manifest_signature(ca.root_certificate_der(), b"{}", &signature).unwrap();

    // Certificates issued after the restore chain to the original Marble root.
    let secret = restored
        .issue_secret_certificate(
            quarry_pki::secrets::CertKeyType::Ed25519,
            &Default::default(),
            0,
            NOW,
            &SystemRandom,
        )
        .unwrap();
    let dir = Dir::new();
    write_ca(&dir, &ca);
    let leaf = dir.write(
        "leaf.pem",
        quarry_pki::ca::certificate_pem(&secret.certificate),
    );
    verify_under_both_anchors(&dir, &leaf);
}

#[test]
fn material_keys_are_sec1_der() {
    let ca = new_ca();
    let material = ca.to_material().unwrap();
    let dir = Dir::new();
    let key = dir.write("root.key", &*material.root_private_key);
    let text = openssl(&["ec", "-inform", "DER", "-in", &key, "-noout", "-text"]);
    assert!(String::from_utf8_lossy(&text).contains("NIST CURVE: P-384"));
}

#[test]
fn material_rejects_keys_that_do_not_match() {
    let ca = new_ca();
    let other = new_ca();
    let mut material = ca.to_material().unwrap();
    material.intermediate_private_key = other.to_material().unwrap().intermediate_private_key;
    let err = CoordinatorCa::from_material(&material).unwrap_err();
    assert!(
        err.to_string()
            .contains("intermediate certificate does not belong"),
        "{err}"
    );

    let mut material = ca.to_material().unwrap();
    material.intermediate_certificate = other.intermediate_certificate_der().to_vec();
    material.intermediate_private_key = other.to_material().unwrap().intermediate_private_key;
    material.marble_root_certificate = other.marble_root_certificate_der().to_vec();
    let err = CoordinatorCa::from_material(&material).unwrap_err();
    assert!(
        err.to_string()
            .contains("intermediate certificate's signature"),
        "{err}"
    );

    let mut material = ca.to_material().unwrap();
    material.root_private_key = zeroize::Zeroizing::new(b"junk".to_vec());
    assert!(matches!(
        CoordinatorCa::from_material(&material),
        Err(Error::InvalidPrivateKey { what: "root CA" })
    ));
}

#[test]
fn material_framing_errors_are_precise() {
    let bytes = new_ca().to_material().unwrap().to_bytes();
    let cases: [(&[u8], &str); 4] = [
        (b"nope", "missing magic"),
        (
            &bytes[..bytes.len() - 1],
            "intermediate private key is truncated",
        ),
        (&bytes[..9], "missing version"),
        (&[&bytes[..], b"x"].concat(), "1 trailing bytes"),
    ];
    for (input, expected) in cases {
        let err = CaMaterial::from_bytes(input).unwrap_err().to_string();
        assert!(err.contains(expected), "{err} (expected {expected})");
    }
    let mut wrong_version = bytes.to_vec();
    wrong_version[9] = 7;
    let err = CaMaterial::from_bytes(&wrong_version)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unsupported version 7"), "{err}");
}

#[test]
fn debug_output_contains_no_key_material() {
    let ca = new_ca();
    let material = ca.to_material().unwrap();
    assert_eq!(format!("{material:?}"), "CaMaterial");
    let debug = format!("{ca:?}");
    let key_hex = hex::encode(&*material.root_private_key);
    assert!(!debug.contains(&key_hex[40..80]));
    assert!(debug.starts_with("CoordinatorCa"), "{debug}");
    assert_eq!(format!("{:?}", ca.root_key()), "CaKey");
}

#[test]
fn manifest_signature_verifies_with_openssl() {
    let ca = new_ca();
    let manifest = br#"{"Packages":{"backend":{"UniqueID":"00"}},"Marbles":{}}"#;
    let signature = ca.sign_manifest(manifest).unwrap();

    let dir = Dir::new();
    let root = dir.write("root.pem", ca.root_certificate_pem());
    let public = openssl(&["x509", "-in", &root, "-pubkey", "-noout"]);
    let public = dir.write("root.pub", public);
    let manifest_path = dir.write("manifest.json", manifest);
    let sig = dir.write("manifest.sig", &signature);
    let out = openssl(&[
        "dgst",
        "-sha256",
        "-verify",
        &public,
        "-signature",
        &sig,
        &manifest_path,
    ]);
    assert_eq!(String::from_utf8_lossy(&out).trim(), "Verified OK");

    let tampered = dir.write("tampered.json", &manifest[1..]);
    openssl_fails(&[
        "dgst",
        "-sha256",
        "-verify",
        &public,
        "-signature",
        &sig,
        &tampered,
    ]);

    // And the other way round: openssl's signature with the root key verifies here.
    let key = dir.write("root.key", &*ca.to_material().unwrap().root_private_key);
    let key_pem = openssl(&["ec", "-inform", "DER", "-in", &key]);
    let key_pem = dir.write("root-key.pem", key_pem);
    let openssl_sig = openssl(&["dgst", "-sha256", "-sign", &key_pem, &manifest_path]);
    verify_manifest_signature(ca.root_certificate_der(), manifest, &openssl_sig).unwrap();
    assert!(matches!(
        verify_manifest_signature(ca.root_certificate_der(), b"other", &openssl_sig),
        Err(Error::BadSignature { what: "manifest" })
    ));
}
