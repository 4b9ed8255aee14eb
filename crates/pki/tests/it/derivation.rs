//! Per-Marble symmetric keys, checked against `openssl kdf HKDF`.

use quarry_pki::SystemRandom;
use quarry_pki::secrets::{canonical_uuid, derive_marble_key, generate_root_secret};

use crate::support::*;

fn openssl_hkdf(key: &[u8], salt: &[u8], info: &[u8], len: usize) -> Vec<u8> {
    let mut args = vec![
        "kdf".to_owned(),
        "-keylen".to_owned(),
        len.to_string(),
        "-kdfopt".to_owned(),
        "digest:SHA256".to_owned(),
        "-kdfopt".to_owned(),
        format!("hexkey:{}", hex::encode(key)),
        "-kdfopt".to_owned(),
        format!("hexsalt:{}", hex::encode(salt)),
    ];
    if !info.is_empty() {
        args.push("-kdfopt".to_owned());
        args.push(format!("hexinfo:{}", hex::encode(info)));
    }
    args.push("HKDF".to_owned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = String::from_utf8(openssl(&args)).unwrap();
    hex::decode(out.trim().replace(':', "")).unwrap()
}

#[test]
fn unique_key_matches_openssl_hkdf() {
    let root = generate_root_secret(&SystemRandom).unwrap();
    let uuid = [0xab; 16];
    for (bits, name, binding) in [
        (128, "ProtectedFilesKey", "backend"),
        (256, "symmetricKeyUnique", "frontend"),
        (1024, "k", "backend"),
        (256, "symmetricKeyUnique", ""),
    ] {
        let ours = derive_marble_key(root.as_ref(), &uuid, name, binding, bits).unwrap();
        let salt = format!("{}{name}", canonical_uuid(&uuid));
        let theirs = openssl_hkdf(
            root.as_ref(),
            salt.as_bytes(),
            binding.as_bytes(),
            bits as usize / 8,
        );
        assert_eq!(
            ours.as_slice(),
            theirs,
            "{bits} bits, {name}, binding {binding:?}"
        );
    }
}

#[test]
fn unique_keys_depend_on_uuid_name_and_binding() {
    let root = [7u8; 32];
    let a = derive_marble_key(&root, &[1; 16], "k", "backend", 256).unwrap();
    assert_eq!(
        a,
        derive_marble_key(&root, &[1; 16], "k", "backend", 256).unwrap()
    );
    assert_ne!(
        a,
        derive_marble_key(&root, &[2; 16], "k", "backend", 256).unwrap()
    );
    assert_ne!(
        a,
        derive_marble_key(&root, &[1; 16], "k2", "backend", 256).unwrap()
    );
    assert_ne!(
        a,
        derive_marble_key(&root, &[1; 16], "k", "frontend", 256).unwrap()
    );
    assert_ne!(a, derive_marble_key(&root, &[1; 16], "k", "", 256).unwrap());
    assert_ne!(
        a,
        derive_marble_key(&[8u8; 32], &[1; 16], "k", "backend", 256).unwrap()
    );
}

#[test]
fn hkdf_rfc5869_case_1() {
    // RFC 5869 A.1 through openssl, pinning the helper used above.
    let okm = openssl_hkdf(
        &[0x0b; 22],
        &hex::decode("000102030405060708090a0b0c").unwrap(),
        &hex::decode("f0f1f2f3f4f5f6f7f8f9").unwrap(),
        42,
    );
    assert_eq!(
        hex::encode(okm),
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    );
}
