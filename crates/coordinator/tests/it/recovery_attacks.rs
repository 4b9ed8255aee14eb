//! Recovery under attack and operator error: shares of another deployment, a duplicated
//! Shamir share, secrets of the other sharing mode, uploads encrypted to an ephemeral key of an
//! earlier process, and a discarded state brought back by hand. Every refused upload leaves the
//! sealed files byte-identical and the round usable.

use std::path::{Path, PathBuf};

use quarry_testkit::coordinator::Coordinator;
use serde_json::{Value, json};

use crate::tools::{
    Answer, Trust, b64, curl, file, manifest, openssl, rsa_key, sealed_files, unb64,
};
use crate::workflow::{prepare_upload, save_root, set_manifest, status};

/// A Coordinator in recovery mode for a manifest with `keys` holders and `threshold`, with
/// each holder's key file and recovery secret, and the root certificate before the loss.
struct Lost {
    c: Coordinator,
    holders: Vec<(String, PathBuf, Vec<u8>)>,
    root: String,
}

fn lose(dir: &Path, keys: usize, threshold: u64) -> Lost {
    let mut c = Coordinator::start(dir).unwrap();
    let holders: Vec<(String, PathBuf, String)> = (0..keys)
        .map(|i| {
            let name = format!("h{i}");
            let (key, public) = rsa_key(dir, &name);
            (name, key, public)
        })
        .collect();
    let recovery: Vec<(&str, &str)> = holders
        .iter()
        .map(|(n, _, p)| (n.as_str(), p.as_str()))
        .collect();
    let secrets = set_manifest(&c, &Trust::Insecure, dir, &manifest(&recovery, threshold));
    let (_, root) = save_root(&c, dir, "root.pem");
    std::fs::remove_file(c.seal_dir().join("sealed_key")).unwrap();
    c.restart().unwrap();
    assert_eq!(status(&c, &Trust::Insecure), 1);
    let holders = holders
        .into_iter()
        .map(|(name, key, _)| {
            let secret = unb64(&secrets[&name]);
            (name, key, secret)
        })
        .collect();
    Lost { c, holders, root }
}

fn upload(c: &Coordinator, dir: &Path, body: &Value) -> Answer {
    let body = file(dir, "upload.json", body.to_string());
    curl(
        &Trust::Insecure,
        "POST",
        &c.url("/api/v2/recover"),
        Some(&body),
        &[],
    )
}

/// The upload body of holder `i` (decrypted and signed with openssl).
fn body_of(dir: &Path, lost: &Lost, i: usize, tag: &str) -> Value {
    let (name, key, secret) = &lost.holders[i];
    let path = prepare_upload(dir, &format!("{tag}-{name}"), secret, key);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// `message` signed by `key` (RSA PKCS#1 v1.5, SHA-256), as holders sign their secret.
fn sign(dir: &Path, key: &Path, message: &[u8]) -> Vec<u8> {
    let input = file(dir, "to-sign", message);
    let sig = dir.join("to-sign.sig");
    openssl(&[
        "dgst",
        "-sha256",
        "-sign",
        key.to_str().unwrap(),
        "-out",
        sig.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    std::fs::read(sig).unwrap()
}

fn assert_refused(answer: &Answer, needle: &str) {
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    assert_eq!(answer.body["status"], "fail", "{:?}", answer.body);
    assert!(
        answer.message().contains(needle),
        "{:?} lacks {needle:?}",
        answer.message()
    );
}

#[test]
fn shamir_refuses_a_duplicated_share_and_secrets_of_the_xor_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let lost = lose(dir, 3, 2);
    let c = &lost.c;
    let before = sealed_files(&c.seal_dir());

    let first = body_of(dir, &lost, 1, "a");
    assert_eq!(upload(c, dir, &first).data()["remaining"], 1);
    // The same share again, signed by the same holder or by another recovery key holder.
    assert_refused(&upload(c, dir, &first), "already uploaded");
    let share = unb64(&first["recoverySecret"]);
    let mut resigned = first.clone();
    resigned["recoverySecretSignature"] = b64(&sign(dir, &lost.holders[2].1, &share)).into();
    assert_refused(&upload(c, dir, &resigned), "already uploaded");
    // A 32-byte secret (the XOR mode's length), properly signed, and a share cut to 32 bytes.
    for secret in [vec![7u8; 32], share[..32].to_vec()] {
        let body = json!({
            "recoverySecret": b64(&secret),
            "recoverySecretSignature": b64(&sign(dir, &lost.holders[0].1, &secret)),
        });
        assert_refused(&upload(c, dir, &body), "has 32 bytes");
    }
    assert_eq!(sealed_files(&c.seal_dir()), before);
    assert_eq!(status(c, &Trust::Insecure), 1);

    // The round is intact: a second distinct share completes it.
    let second = body_of(dir, &lost, 0, "b");
    assert_eq!(upload(c, dir, &second).data()["remaining"], 0);
    assert_eq!(status(c, &Trust::Insecure), 3);
    assert_eq!(save_root(c, dir, "after.pem").1, lost.root);
}

#[test]
fn xor_refuses_shamir_sized_secrets_and_shares_of_another_deployment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let lost = lose(dir, 2, 0);
    let c = &lost.c;
    let before = sealed_files(&c.seal_dir());

    // The same holders run a second deployment: its secrets are validly signed by the same
    // keys, but they are not shares of this state.
    let other_dir = dir.join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    let other = Coordinator::start(&other_dir).unwrap();
    let publics: Vec<String> = lost
        .holders
        .iter()
        .map(|(_, key, _)| {
            String::from_utf8(openssl(&["rsa", "-in", key.to_str().unwrap(), "-pubout"])).unwrap()
        })
        .collect();
    let other_secrets = set_manifest(
        &other,
        &Trust::Insecure,
        &other_dir,
        &manifest(&[("h0", &publics[0]), ("h1", &publics[1])], 0),
    );
    for (i, (name, key, _)) in lost.holders.iter().enumerate() {
        let path = prepare_upload(
            dir,
            &format!("other-{name}"),
            &unb64(&other_secrets[name]),
            key,
        );
        let body: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        assert_refused(&upload(c, dir, &body), "not one of the recovery secrets");
        // A 33-byte secret (the Shamir mode's length).
        let mut long = unb64(&body["recoverySecret"]);
        long.push(i as u8 + 1);
        let body = json!({
            "recoverySecret": b64(&long),
            "recoverySecretSignature": b64(&sign(dir, key, &long)),
        });
        assert_refused(&upload(c, dir, &body), "has 33 bytes");
    }
    assert_eq!(sealed_files(&c.seal_dir()), before);

    for i in [0, 1] {
        let answer = upload(c, dir, &body_of(dir, &lost, i, "mine"));
        assert_eq!(answer.data()["remaining"], 1 - i, "{:?}", answer.body);
    }
    assert_eq!(save_root(c, dir, "after.pem").1, lost.root);
}

#[test]
fn an_upload_encrypted_to_the_ephemeral_key_of_an_earlier_process_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut lost = lose(dir, 1, 0);
    let ephemeral = |c: &Coordinator, name: &str| {
        let answer = curl(
            &Trust::Insecure,
            "GET",
            &c.url("/api/v2/recover/public-key"),
            None,
            &[],
        );
        let der = file(
            dir,
            &format!("{name}.der"),
            unb64(&answer.data()["ephemeralPublicKey"]),
        );
        let pem = dir.join(format!("{name}.pem"));
        openssl(&[
            "pkey",
            "-pubin",
            "-inform",
            "DER",
            "-in",
            der.to_str().unwrap(),
            "-out",
            pem.to_str().unwrap(),
        ]);
        (unb64(&answer.data()["ephemeralPublicKey"]), pem)
    };
    let encrypt = |pem: &Path, plain: &[u8], name: &str| {
        let input = file(dir, &format!("{name}.plain"), plain);
        let out = dir.join(format!("{name}.enc"));
        openssl(&[
            "pkeyutl",
            "-encrypt",
            "-pubin",
            "-inkey",
            pem.to_str().unwrap(),
            "-in",
            input.to_str().unwrap(),
            "-out",
            out.to_str().unwrap(),
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            "rsa_oaep_md:sha256",
        ]);
        std::fs::read(out).unwrap()
    };

    let (first_der, first_pem) = ephemeral(&lost.c, "eph1");
    // Asking again in the same process gives the same key.
    assert_eq!(ephemeral(&lost.c, "eph1-again").0, first_der);
    let body = body_of(dir, &lost, 0, "x");
    let plain = unb64(&body["recoverySecret"]);
    let mut stale = body.clone();
    stale["recoverySecret"] = b64(&encrypt(&first_pem, &plain, "stale")).into();

    lost.c.restart().unwrap();
    let before = sealed_files(&lost.c.seal_dir());
    // No ephemeral key exists yet in the new process.
    assert_refused(&upload(&lost.c, dir, &stale), "none was requested");
    let (second_der, second_pem) = ephemeral(&lost.c, "eph2");
    assert_ne!(second_der, first_der);
    assert_refused(
        &upload(&lost.c, dir, &stale),
        "does not decrypt with the ephemeral key",
    );
    assert_eq!(sealed_files(&lost.c.seal_dir()), before);

    let mut fresh = body;
    fresh["recoverySecret"] = b64(&encrypt(&second_pem, &plain, "fresh")).into();
    assert_eq!(upload(&lost.c, dir, &fresh).data()["remaining"], 0);
    assert_eq!(save_root(&lost.c, dir, "after.pem").1, lost.root);
}

#[test]
fn a_discarded_state_can_be_brought_back_and_recovered() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut lost = lose(dir, 2, 0);
    let old_data = std::fs::read(lost.c.seal_dir().join("sealed_data")).unwrap();

    // Someone sets a new manifest in recovery mode: the old state is moved aside.
    let (_, public) = rsa_key(dir, "newcomer");
    let second = manifest(&[("newcomer", &public)], 0);
    set_manifest(&lost.c, &Trust::Insecure, dir, &second);
    assert_eq!(status(&lost.c, &Trust::Insecure), 3);
    let seal = lost.c.seal_dir();
    let aside: Vec<PathBuf> = std::fs::read_dir(&seal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".discarded-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(std::fs::read(&aside[0]).unwrap(), old_data);

    // The operator brings the old state back by hand, as docs/recovery.md says, and the old
    // holders recover it.
    lost.c.stop();
    let newer = dir.join("newer");
    std::fs::create_dir_all(&newer).unwrap();
    for name in ["sealed_data", "sealed_key"] {
        std::fs::rename(seal.join(name), newer.join(name)).unwrap();
    }
    std::fs::rename(&aside[0], seal.join("sealed_data")).unwrap();
    lost.c.restart().unwrap();
    assert_eq!(status(&lost.c, &Trust::Insecure), 1);
    for i in [1, 0] {
        let answer = upload(&lost.c, dir, &body_of(dir, &lost, i, "back"));
        assert_eq!(answer.status, 200, "{:?}", answer.body);
    }
    assert_eq!(status(&lost.c, &Trust::Insecure), 3);
    assert_eq!(save_root(&lost.c, dir, "back.pem").1, lost.root);
    let answer = curl(
        &Trust::Insecure,
        "GET",
        &lost.c.url("/api/v2/manifest"),
        None,
        &[],
    );
    assert_ne!(unb64(&answer.data()["manifest"]), second);
}

#[test]
fn a_refused_manifest_in_recovery_mode_leaves_the_old_state_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let lost = lose(dir, 2, 0);
    let c = &lost.c;
    let before = sealed_files(&c.seal_dir());
    let (_, public) = rsa_key(dir, "many");
    let names: Vec<String> = (0..256).map(|i| format!("k{i}")).collect();
    let keys: Vec<(&str, &str)> = names
        .iter()
        .map(|n| (n.as_str(), public.as_str()))
        .collect();
    let mut invalid_key = serde_json::from_slice::<Value>(&manifest(&[], 0)).unwrap();
    invalid_key["RecoveryKeys"] = json!({"k": "not a key"});
    // Refused by the checks, by the recovery key parser, and by the recovery threshold: each
    // before anything is moved aside.
    for (refused, needle) in [
        (manifest(&keys, 2), "Config.RecoveryThreshold"),
        (manifest(&keys[..1], 1), "Config.RecoveryThreshold"),
        (invalid_key.to_string().into_bytes(), "RecoveryKeys[\"k\"]"),
        (b"{".to_vec(), "invalid manifest"),
    ] {
        let body = file(
            dir,
            "refused.json",
            json!({ "manifest": b64(&refused) }).to_string(),
        );
        let answer = curl(
            &Trust::Insecure,
            "POST",
            &c.url("/api/v2/manifest"),
            Some(&body),
            &[],
        );
        assert_refused(&answer, needle);
        assert_eq!(status(c, &Trust::Insecure), 1);
        assert_eq!(sealed_files(&c.seal_dir()), before, "{needle}");
    }
    // The holders still recover the old state.
    assert_eq!(
        upload(c, dir, &body_of(dir, &lost, 0, "a")).data()["remaining"],
        1
    );
    assert_eq!(
        upload(c, dir, &body_of(dir, &lost, 1, "b")).data()["remaining"],
        0
    );
    assert_eq!(save_root(c, dir, "after.pem").1, lost.root);
}

#[test]
fn a_new_manifest_in_the_middle_of_a_round_ends_the_round() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let lost = lose(dir, 2, 0);
    let c = &lost.c;
    let first = body_of(dir, &lost, 0, "a");
    assert_eq!(upload(c, dir, &first).data()["remaining"], 1);

    let replacement = manifest(&[], 0);
    set_manifest(c, &Trust::Insecure, dir, &replacement);
    let after = sealed_files(&c.seal_dir());
    let answer = upload(c, dir, &body_of(dir, &lost, 1, "b"));
    assert_eq!(answer.status, 409, "{:?}", answer.body);
    assert_eq!(sealed_files(&c.seal_dir()), after);
    let answer = curl(
        &Trust::Insecure,
        "GET",
        &c.url("/api/v2/manifest"),
        None,
        &[],
    );
    assert_eq!(unb64(&answer.data()["manifest"]), replacement);
}

#[test]
fn recovery_after_a_full_update_uses_the_new_recovery_keys() {
    use crate::users::{Deployment, manifest_body, users_manifest};

    let mut d = Deployment::start(&[]);
    let dir = d.dir.clone();
    let holders: Vec<(String, PathBuf, String)> = (0..3)
        .map(|i| {
            let name = format!("new{i}");
            let (key, public) = rsa_key(&dir, &name);
            (name, key, public)
        })
        .collect();
    let listed: Vec<(&str, &crate::users::UserCert)> = d
        .users
        .iter()
        .filter(|(n, _)| *n != "eve")
        .map(|(n, c)| (*n, c))
        .collect();
    let mut update: Value = serde_json::from_slice(&users_manifest(&listed, false)).unwrap();
    update["RecoveryKeys"] = holders
        .iter()
        .map(|(n, _, p)| (n.clone(), Value::String(p.clone())))
        .collect::<serde_json::Map<_, _>>()
        .into();
    update["Config"] = json!({"RecoveryThreshold": 2});
    let update = serde_json::to_vec(&update).unwrap();
    let first = d.call(
        Some("dave"),
        "POST",
        "/api/v2/update",
        Some(manifest_body(&update)),
    );
    assert_eq!(
        first.data()["missingAcknowledgments"],
        1,
        "{:?}",
        first.body
    );
    let second = d.call(
        Some("frank"),
        "POST",
        "/api/v2/update-manifest",
        Some(manifest_body(&update)),
    );
    assert_eq!(
        second.data()["missingAcknowledgments"],
        0,
        "{:?}",
        second.body
    );
    let secrets = second.data()["recoverySecrets"].clone();
    assert_eq!(secrets.as_object().unwrap().len(), 3, "{secrets:?}");
    let (_, root) = save_root(&d.c, &dir, "root.pem");

    std::fs::remove_file(d.c.seal_dir().join("sealed_key")).unwrap();
    d.c.restart().unwrap();
    assert_eq!(status(&d.c, &Trust::Insecure), 1);
    for (n, i) in [2usize, 0].into_iter().enumerate() {
        let (name, key, _) = &holders[i];
        let path = prepare_upload(&dir, name, &unb64(&secrets[name]), key);
        let body: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let answer = upload(&d.c, &dir, &body);
        assert_eq!(answer.data()["remaining"], 1 - n, "{:?}", answer.body);
    }
    assert_eq!(status(&d.c, &Trust::Insecure), 3);
    assert_eq!(save_root(&d.c, &dir, "after.pem").1, root);
    let answer = curl(
        &Trust::Insecure,
        "GET",
        &d.c.url("/api/v2/manifest"),
        None,
        &[],
    );
    assert_eq!(unb64(&answer.data()["manifest"]), update);
}
