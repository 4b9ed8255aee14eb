//! The operator workflow with `curl` and `openssl` alone, against the real binary: set a
//! manifest with recovery keys, verify its signature against the root certificate from
//! `/api/v2/quote`, restart, lose `sealed_key`, recover with the decrypted and signed recovery
//! secrets, and get the same root certificate back.

use std::path::{Path, PathBuf};

use quarry_testkit::coordinator::Coordinator;
use serde_json::json;

use crate::tools::{Trust, b64, curl, file, manifest, openssl, rsa_key, sealed_files, unb64};

/// Fetches the quote without trusting the server yet and saves the root certificate (the
/// second PEM block of `cert`). Returns its path and PEM.
pub(crate) fn save_root(c: &Coordinator, dir: &Path, name: &str) -> (PathBuf, String) {
    let answer = curl(&Trust::Insecure, "GET", &c.url("/api/v2/quote"), None, &[]);
    let chain = answer.data()["cert"].as_str().unwrap().to_owned();
    let start = chain.rfind("-----BEGIN CERTIFICATE-----").unwrap();
    let root = chain[start..].to_owned();
    (file(dir, name, &root), root)
}

/// The status code.
pub(crate) fn status(c: &Coordinator, trust: &Trust) -> u64 {
    let answer = curl(trust, "GET", &c.url("/api/v2/status"), None, &[]);
    answer.data()["code"].as_u64().unwrap()
}

/// Sets `manifest` with curl; returns the recovery secrets (name → ciphertext).
pub(crate) fn set_manifest(
    c: &Coordinator,
    trust: &Trust,
    dir: &Path,
    manifest: &[u8],
) -> serde_json::Map<String, serde_json::Value> {
    let body = file(
        dir,
        "set-manifest.json",
        json!({ "manifest": b64(manifest) }).to_string(),
    );
    let answer = curl(trust, "POST", &c.url("/api/v2/manifest"), Some(&body), &[]);
    answer.data()["RecoverySecrets"]
        .as_object()
        .unwrap()
        .clone()
}

/// Decrypts and signs the recovery secret of `key` as the documentation tells holders to, and
/// returns the upload body file.
pub(crate) fn prepare_upload(dir: &Path, name: &str, encrypted: &[u8], key: &Path) -> PathBuf {
    let enc = file(dir, &format!("{name}.enc"), encrypted);
    let plain = dir.join(format!("{name}.secret"));
    let sig = dir.join(format!("{name}.sig"));
    openssl(&[
        "pkeyutl",
        "-decrypt",
        "-inkey",
        key.to_str().unwrap(),
        "-in",
        enc.to_str().unwrap(),
        "-out",
        plain.to_str().unwrap(),
        "-pkeyopt",
        "rsa_padding_mode:oaep",
        "-pkeyopt",
        "rsa_oaep_md:sha256",
    ]);
    openssl(&[
        "dgst",
        "-sha256",
        "-sign",
        key.to_str().unwrap(),
        "-out",
        sig.to_str().unwrap(),
        plain.to_str().unwrap(),
    ]);
    let body = json!({
        "recoverySecret": b64(&std::fs::read(&plain).unwrap()),
        "recoverySecretSignature": b64(&std::fs::read(&sig).unwrap()),
    });
    file(dir, &format!("{name}.upload.json"), body.to_string())
}

fn walk(keys: usize, threshold: u64, uploads: &[usize]) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut c = Coordinator::start(dir).unwrap();

    // Trust on first use here; a real operator verifies the quote first.
    let (root_file, root_pem) = save_root(&c, dir, "root.pem");
    let trust = Trust::Root(root_file.clone());
    assert_eq!(status(&c, &trust), 2);

    let holders: Vec<(String, PathBuf, String)> = (0..keys)
        .map(|i| {
            let name = format!("holder{i}");
            let (key, public) = rsa_key(dir, &name);
            (name, key, public)
        })
        .collect();
    let recovery: Vec<(&str, &str)> = holders
        .iter()
        .map(|(n, _, p)| (n.as_str(), p.as_str()))
        .collect();
    let manifest = manifest(&recovery, threshold);
    let secrets = set_manifest(&c, &trust, dir, &manifest);
    assert_eq!(secrets.len(), keys);
    assert_eq!(status(&c, &trust), 3);

    // Verify the manifest signature with the root certificate from the quote.
    let answer = curl(&trust, "GET", &c.url("/api/v2/manifest"), None, &[]);
    let data = answer.data();
    assert_eq!(unb64(&data["manifest"]), manifest);
    let manifest_file = file(dir, "manifest.json", &manifest);
    let sig_file = file(
        dir,
        "manifest.sig",
        unb64(&data["manifestSignatureRootECDSA"]),
    );
    let pubkey = file(
        dir,
        "root.pub",
        openssl(&[
            "x509",
            "-in",
            root_file.to_str().unwrap(),
            "-pubkey",
            "-noout",
        ]),
    );
    let verified = openssl(&[
        "dgst",
        "-sha256",
        "-verify",
        pubkey.to_str().unwrap(),
        "-signature",
        sig_file.to_str().unwrap(),
        manifest_file.to_str().unwrap(),
    ]);
    assert_eq!(String::from_utf8_lossy(&verified).trim(), "Verified OK");
    let fingerprint = openssl(&["dgst", "-sha256", "-r", manifest_file.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&fingerprint)
            .starts_with(data["manifestFingerprint"].as_str().unwrap())
    );

    // A restart unseals the state.
    c.restart().unwrap();
    assert_eq!(status(&c, &trust), 3);

    // Without sealed_key the Coordinator starts in recovery mode, with a temporary CA.
    std::fs::remove_file(c.seal_dir().join("sealed_key")).unwrap();
    c.restart().unwrap();
    assert_eq!(status(&c, &Trust::Insecure), 1);
    let (_, temporary_root) = save_root(&c, dir, "temporary-root.pem");
    assert_ne!(temporary_root, root_pem);
    let before = sealed_files(&c.seal_dir());

    for (n, &i) in uploads.iter().enumerate() {
        let (name, key, _) = &holders[i];
        let body = prepare_upload(dir, name, &unb64(&secrets[name]), key);
        let answer = curl(
            &Trust::Insecure,
            "POST",
            &c.url("/api/v2/recover"),
            Some(&body),
            &[],
        );
        let remaining = uploads.len() - n - 1;
        assert_eq!(answer.data()["remaining"], remaining, "{:?}", answer.body);
        if remaining > 0 {
            // Nothing is written until the state is restored.
            assert_eq!(sealed_files(&c.seal_dir()), before);
            assert_eq!(status(&c, &Trust::Insecure), 1);
        } else {
            assert_eq!(answer.data()["message"], "Recovery successful.");
        }
    }

    // Back in state 3 with the original root certificate, trusted again by the old root.
    assert_eq!(status(&c, &trust), 3);
    let (_, recovered_root) = save_root(&c, dir, "recovered-root.pem");
    assert_eq!(recovered_root, root_pem);
    assert!(c.seal_dir().join("sealed_key").exists());

    // The re-sealed state survives another restart.
    c.restart().unwrap();
    assert_eq!(status(&c, &trust), 3);
    let answer = curl(&trust, "GET", &c.url("/api/v2/manifest"), None, &[]);
    assert_eq!(unb64(&answer.data()["manifest"]), manifest);
}

#[test]
fn operator_recovers_with_two_keys() {
    walk(2, 0, &[1, 0]);
}

#[test]
fn operator_recovers_with_two_of_three_keys() {
    walk(3, 2, &[2, 0]);
}

#[test]
fn operator_recovers_with_one_key() {
    walk(1, 0, &[0]);
}
