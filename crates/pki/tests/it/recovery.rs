//! Recovery secrets, decrypted and signed with `openssl` as an operator would.

use std::sync::OnceLock;

use quarry_pki::recovery::{
    EphemeralRecoveryKey, RecoveryMode, RecoveryPublicKey, generate_recovery, match_signatures,
    share_hash, xor_combine,
};
use quarry_pki::{Error, SystemRandom, shamir};

use crate::support::*;

/// Operator key pairs made by openssl (RSA-3096 like MarbleRun's test keys, and 2048),
/// shared between tests because RSA generation is slow.
struct Operator {
    name: &'static str,
    private_pem: Vec<u8>,
    public_pem: String,
}

fn operators() -> &'static [Operator] {
    static KEYS: OnceLock<Vec<Operator>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = Dir::new();
        [("alice", "3096"), ("bob", "2048"), ("carol", "2048")]
            .into_iter()
            .map(|(name, bits)| {
                let key = dir.path(name);
                let key = key.to_str().unwrap();
                let bits = format!("rsa_keygen_bits:{bits}");
                openssl(&[
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    &bits,
                    "-out",
                    key,
                ]);
                let public = openssl(&["pkey", "-in", key, "-pubout"]);
                Operator {
                    name,
                    private_pem: std::fs::read(key).unwrap(),
                    public_pem: String::from_utf8(public).unwrap(),
                }
            })
            .collect()
    })
}

fn public_keys(count: usize) -> Vec<RecoveryPublicKey> {
    operators()[..count]
        .iter()
        .map(|op| RecoveryPublicKey::from_pem(op.name, &op.public_pem).unwrap())
        .collect()
}

/// `openssl pkeyutl -decrypt` with OAEP and SHA-256, as the docs tell operators.
fn operator_decrypts(dir: &Dir, op: &Operator, ciphertext: &[u8]) -> Vec<u8> {
    let key = dir.write(&format!("{}.key", op.name), &op.private_pem);
    let input = dir.write(&format!("{}.enc", op.name), ciphertext);
    openssl(&[
        "pkeyutl",
        "-decrypt",
        "-inkey",
        &key,
        "-in",
        &input,
        "-pkeyopt",
        "rsa_padding_mode:oaep",
        "-pkeyopt",
        "rsa_oaep_md:sha256",
    ])
}

/// `openssl dgst -sha256 -sign` (PKCS#1 v1.5), as the docs tell operators.
fn operator_signs(dir: &Dir, op: &Operator, secret: &[u8]) -> Vec<u8> {
    let key = dir.write(&format!("{}.key", op.name), &op.private_pem);
    let input = dir.write(&format!("{}.secret", op.name), secret);
    openssl(&["dgst", "-sha256", "-sign", &key, &input])
}

#[test]
fn single_key_receives_the_encryption_key() {
    let keys = public_keys(1);
    let material = generate_recovery(&keys, 0, &SystemRandom).unwrap();
    assert_eq!(material.mode, RecoveryMode::SingleParty);
    assert!(material.share_hashes.is_empty());
    let dir = Dir::new();
    let plain = operator_decrypts(&dir, &operators()[0], &material.recovery_secrets["alice"]);
    assert_eq!(plain, material.encryption_key.as_slice());

    let signature = operator_signs(&dir, &operators()[0], &plain);
    keys[0].verify_signature(&plain, &signature).unwrap();
    assert_eq!(format!("{material:?}").matches("alice").count(), 1);
    assert!(!format!("{material:?}").contains(&hex::encode(material.encryption_key.as_slice())));
}

#[test]
fn no_keys_still_yield_an_encryption_key() {
    let material = generate_recovery(&[], 0, &SystemRandom).unwrap();
    assert!(material.recovery_secrets.is_empty());
    assert_ne!(*material.encryption_key, [0u8; 32]);
}

#[test]
fn two_keys_share_the_key_by_xor() {
    let keys = public_keys(2);
    for threshold in [0, 2] {
        let material = generate_recovery(&keys, threshold, &SystemRandom).unwrap();
        assert_eq!(material.mode, RecoveryMode::Xor);
        let dir = Dir::new();
        let shares: Vec<Vec<u8>> = operators()[..2]
            .iter()
            .map(|op| operator_decrypts(&dir, op, &material.recovery_secrets[op.name]))
            .collect();
        assert!(shares.iter().all(|s| s.len() == 32));
        let hashes: Vec<[u8; 32]> = shares.iter().map(|s| share_hash(s)).collect();
        assert_eq!(hashes, material.share_hashes);
        let combined = xor_combine(&[&shares[0], &shares[1]]).unwrap();
        assert_eq!(combined.as_slice(), material.encryption_key.as_slice());
    }
}

#[test]
fn threshold_two_of_three_uses_shamir_shares() {
    let keys = public_keys(3);
    let material = generate_recovery(&keys, 2, &SystemRandom).unwrap();
    assert_eq!(material.mode, RecoveryMode::Shamir { threshold: 2 });
    let dir = Dir::new();
    let shares: Vec<Vec<u8>> = operators()
        .iter()
        .map(|op| operator_decrypts(&dir, op, &material.recovery_secrets[op.name]))
        .collect();
    assert!(shares.iter().all(|s| s.len() == 33));
    for (share, hash) in shares.iter().zip(&material.share_hashes) {
        assert_eq!(&share_hash(share), hash);
    }
    for (a, b) in [(0, 1), (1, 2), (2, 0)] {
        let key = shamir::combine(&[&shares[a], &shares[b]]).unwrap();
        assert_eq!(
            key.as_slice(),
            material.encryption_key.as_slice(),
            "shares {a} and {b}"
        );
    }

    // Two operators sign their shares; the signatures are matched to their keys.
    let sig_bob = operator_signs(&dir, &operators()[1], &shares[1]);
    let sig_carol = operator_signs(&dir, &operators()[2], &shares[2]);
    let names =
        match_signatures(&keys, &[(&shares[2], &sig_carol), (&shares[1], &sig_bob)]).unwrap();
    assert_eq!(names, ["carol", "bob"]);
    // The same operator twice does not count as two.
    let err =
        match_signatures(&keys, &[(&shares[1], &sig_bob), (&shares[1], &sig_bob)]).unwrap_err();
    assert!(matches!(err, Error::BadSignature { .. }));
}

#[test]
fn signature_checks_reject_wrong_key_and_tampering() {
    let keys = public_keys(2);
    let dir = Dir::new();
    let secret = [9u8; 32];
    let signature = operator_signs(&dir, &operators()[0], &secret);
    keys[0].verify_signature(&secret, &signature).unwrap();
    assert!(keys[1].verify_signature(&secret, &signature).is_err());
    assert!(keys[0].verify_signature(&[8u8; 32], &signature).is_err());
    let mut bad = signature.clone();
    bad[10] ^= 1;
    assert!(keys[0].verify_signature(&secret, &bad).is_err());
}

#[test]
fn invalid_thresholds_and_keys_are_refused() {
    let keys = public_keys(3);
    for threshold in [1, 4] {
        let err = generate_recovery(&keys, threshold, &SystemRandom).unwrap_err();
        assert!(
            matches!(err, Error::InvalidRecoveryThreshold { .. }),
            "{err}"
        );
    }
    let twice = vec![keys[0].clone(), keys[0].clone()];
    let err = generate_recovery(&twice, 0, &SystemRandom).unwrap_err();
    assert!(err.to_string().contains("\"alice\""), "{err}");

    let dir = Dir::new();
    let small = dir.path("small.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:1024",
        "-out",
        small.to_str().unwrap(),
    ]);
    let public = String::from_utf8(openssl(&[
        "pkey",
        "-in",
        small.to_str().unwrap(),
        "-pubout",
    ]))
    .unwrap();
    let err = RecoveryPublicKey::from_pem("weak", &public)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"weak\"") && err.contains("2048 to 8192 bits"),
        "{err}"
    );
}

#[test]
fn uploads_encrypted_to_the_ephemeral_key_decrypt() {
    let ephemeral = EphemeralRecoveryKey::generate().unwrap();
    let dir = Dir::new();
    let public = dir.write("eph.der", ephemeral.public_key_der().unwrap());
    let secret = dir.write("secret", [0x5a; 33]);
    let out = dir.path("secret.enc");
    openssl(&[
        "pkeyutl",
        "-encrypt",
        "-pubin",
        "-keyform",
        "DER",
        "-inkey",
        &public,
        "-in",
        &secret,
        "-out",
        out.to_str().unwrap(),
        "-pkeyopt",
        "rsa_padding_mode:oaep",
        "-pkeyopt",
        "rsa_oaep_md:sha256",
    ]);
    let plain = ephemeral.decrypt(&dir.read("secret.enc")).unwrap();
    assert_eq!(plain.as_slice(), [0x5a; 33]);
}
