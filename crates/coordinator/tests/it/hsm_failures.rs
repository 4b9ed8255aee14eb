//! The failure paths of HSM sealing that end in recovery mode, and the start-up warning about
//! `QUARRY_AZURE_CA_FILE`, against the real emulator and the real Coordinator binary.
//!
//! - A definite failure: the emulator's `replace-material` test hook gives the recorded key
//!   version other material, so its release is validly signed for the recorded key id but holds
//!   another key. The Coordinator must enter recovery mode once (no retry loop), name the key
//!   and version, write nothing, and still recover with the recovery key.
//! - The double wrap: the right HSM key released to an enclave with another sealing identity
//!   (another ISVSVN, or another simulation key file, i.e. another machine) must not unseal.
//!
//! Nothing waits a fixed time: statuses are polled with a bound that only limits a hang.

use std::path::{Path, PathBuf};

use quarry_testkit::emulator::{Emulator, KEY_NAME, SEED_POLICY};
use serde_json::Map;

use crate::hsm::{coordinator, current, gated_manifest, hsm_key, post_manifest, wait_for};
use crate::tools::{Trust, curl, rsa_key, unb64};
use crate::workflow::{prepare_upload, save_root};

/// The simulation backend's key file in the seal directory.
const SIM_KEY_FILE: &str = "simulation-seal.key";

/// Every file of the seal directory with its bytes, sorted by name.
fn seal_dir_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// How many lines of `log` contain every one of `parts`.
fn lines_with(log: &str, parts: &[&str]) -> usize {
    log.lines()
        .filter(|line| parts.iter().all(|p| line.contains(p)))
        .count()
}

/// Sets a gated manifest with one recovery key; returns the key file and its recovery secret.
fn seal_with_recovery_key(
    c: &quarry_testkit::coordinator::Coordinator,
    dir: &Path,
) -> (PathBuf, Map<String, serde_json::Value>) {
    let (key, public) = rsa_key(dir, "holder");
    let answer = post_manifest(c, dir, &gated_manifest(&[("holder", &public)], 0));
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(current(c).0, 3);
    let secrets = answer.data()["RecoverySecrets"]
        .as_object()
        .unwrap()
        .clone();
    (key, secrets)
}

/// Recovers with the holder's secret; panics unless the Coordinator says it succeeded.
fn recover(
    c: &quarry_testkit::coordinator::Coordinator,
    dir: &Path,
    key: &Path,
    secrets: &Map<String, serde_json::Value>,
) {
    let upload = prepare_upload(dir, "holder", &unb64(&secrets["holder"]), key);
    let answer = curl(
        &Trust::Insecure,
        "POST",
        &c.url("/api/v2/recover"),
        Some(&upload),
        &[],
    );
    assert_eq!(
        answer.data()["message"],
        "Recovery successful.",
        "{:?}",
        answer.body
    );
}

#[test]
fn a_validly_signed_release_of_other_key_material_enters_recovery_once_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let emulator = Emulator::start_provisioned(dir, SEED_POLICY).unwrap();
    let mut c = coordinator(dir, &emulator, &[]);
    let (key, secrets) = seal_with_recovery_key(&c, dir);
    let (_, root_pem_sealed) = save_root(&c, dir, "root-sealed.pem");
    let sealed = hsm_key(&c);

    // The HSM now holds other material under the recorded key id and version.
    let kid = emulator.replace_key_material(&sealed.key_version).unwrap();
    assert!(
        kid.ends_with(&format!("/keys/{KEY_NAME}/{}", sealed.key_version)),
        "{kid}"
    );
    let files = seal_dir_files(&c.seal_dir());
    let releases = emulator.releases().unwrap();

    c.restart().unwrap();
    let (_, message) = wait_for(&c, "recovery mode", |code, m| {
        assert_ne!(code, 3, "unsealed with the wrong key: {m}");
        code == 1
    });
    // What failed, precisely: the class, the key with its version, and what it did not open.
    assert!(message.contains("Reason: definite:"), "{message}");
    assert!(
        message.contains(&format!(
            "the released HSM key {sealed} does not open the sealed key"
        )),
        "{message}"
    );
    // The released keys were the recorded version (unseal) and the latest (re-seal target),
    // both released successfully, once each: a definite answer is not retried.
    assert_eq!(emulator.releases().unwrap(), releases + 2);
    assert_eq!(
        seal_dir_files(&c.seal_dir()),
        files,
        "nothing written in recovery mode"
    );
    let log = c.log();
    assert_eq!(
        lines_with(
            &log,
            &["entering recovery mode", "does not open the sealed key"]
        ),
        1,
        "{log}"
    );
    assert_eq!(lines_with(&log, &["retrying"]), 0, "{log}");
    assert_eq!(lines_with(&log, &["needs an operator"]), 0, "{log}");

    // The recovery key restores the state from there; the Coordinator seals it through the
    // HSM again (the version's current material), and a restart unseals it.
    recover(&c, dir, &key, &secrets);
    let (code, message) = current(&c);
    assert_eq!(code, 3, "{message}");
    assert!(!message.contains("Reason"), "{message}");
    assert!(!message.contains("not persisted"), "{message}");
    let (_, recovered_root) = save_root(&c, dir, "recovered.pem");
    assert_eq!(recovered_root, root_pem_sealed);
    // Two releases at start, one for the recovery: still no retry of the failed unseal.
    assert_eq!(emulator.releases().unwrap(), releases + 3);
    assert_eq!(hsm_key(&c), sealed, "re-sealed under the same key version");
    assert_ne!(seal_dir_files(&c.seal_dir()), files);

    c.restart().unwrap();
    wait_for(&c, "state 3 with the recovered state", |code, m| {
        assert_ne!(code, 1, "recovery mode again: {m}");
        code == 3
    });
    let (_, root) = save_root(&c, dir, "restarted.pem");
    assert_eq!(root, root_pem_sealed);
}

#[test]
fn the_right_hsm_key_does_not_unseal_for_another_enclave_sealing_identity() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let emulator = Emulator::start_provisioned(dir, SEED_POLICY).unwrap();
    let mut c = coordinator(dir, &emulator, &[]);
    let (key, secrets) = seal_with_recovery_key(&c, dir);
    let sealed = hsm_key(&c);
    let files = seal_dir_files(&c.seal_dir());

    // Another ISVSVN still satisfies the release policy (svn >= 2), so the HSM releases the
    // right key, but the enclave's product seal key differs: recovery mode, never state 3.
    let releases = emulator.releases().unwrap();
    c.restart_with("QUARRY_INSECURE_SIM_ISVSVN", Some("3"))
        .unwrap();
    let (_, message) = wait_for(&c, "recovery mode for ISVSVN 3", |code, m| {
        assert_ne!(code, 3, "unsealed by another enclave identity: {m}");
        code == 1
    });
    assert!(emulator.releases().unwrap() > releases, "the HSM released");
    assert!(
        message.contains("does not open with this enclave's seal key"),
        "{message}"
    );
    assert!(
        !message.contains("does not open the sealed key"),
        "the HSM key is not to blame: {message}"
    );
    assert_eq!(seal_dir_files(&c.seal_dir()), files);

    // The same enclave again: unseals.
    c.restart_with("QUARRY_INSECURE_SIM_ISVSVN", Some("2"))
        .unwrap();
    wait_for(&c, "state 3 for the sealing enclave", |code, m| {
        assert_ne!(code, 1, "recovery mode for the sealing enclave: {m}");
        code == 3
    });
    assert_eq!(seal_dir_files(&c.seal_dir()), files);

    // Another machine: the same identity with another simulation key file.
    let key_file = c.seal_dir().join(SIM_KEY_FILE);
    let original = std::fs::read(&key_file).unwrap();
    let mut other = original.clone();
    for byte in &mut other {
        *byte ^= 0x5a;
    }
    c.stop();
    std::fs::write(&key_file, &other).unwrap();
    let files_other_machine = seal_dir_files(&c.seal_dir());
    c.restart().unwrap();
    let (_, message) = wait_for(&c, "recovery mode on another machine", |code, m| {
        assert_ne!(code, 3, "unsealed on another machine: {m}");
        code == 1
    });
    assert!(
        message.contains("does not open with this enclave's seal key"),
        "{message}"
    );
    assert_eq!(seal_dir_files(&c.seal_dir()), files_other_machine);

    // Back on the sealing machine: unseals, under the same HSM key.
    c.stop();
    std::fs::write(&key_file, &original).unwrap();
    c.restart().unwrap();
    wait_for(&c, "state 3 on the sealing machine", |code, _| code == 3);
    assert_eq!(hsm_key(&c), sealed);
    assert_eq!(seal_dir_files(&c.seal_dir()), files);

    // And on the other machine the recovery key restores the state, sealed for that enclave.
    c.stop();
    std::fs::write(&key_file, &other).unwrap();
    c.restart().unwrap();
    wait_for(&c, "recovery mode on another machine", |code, _| code == 1);
    recover(&c, dir, &key, &secrets);
    assert_eq!(current(&c).0, 3);
    c.restart().unwrap();
    wait_for(
        &c,
        "state 3 on the other machine after recovery",
        |code, _| code == 3,
    );
}

#[test]
fn the_azure_ca_file_is_warned_about_once_per_start_without_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let emulator = Emulator::start_provisioned(dir, SEED_POLICY).unwrap();
    let env = emulator.coordinator_env();
    let secret = env
        .iter()
        .find(|(k, _)| k == "EDG_AZURE_CLIENT_SECRET")
        .map(|(_, v)| v.clone())
        .unwrap();
    let ca = emulator.ca_file().display().to_string();
    assert!(
        env.iter()
            .any(|(k, v)| k == "QUARRY_AZURE_CA_FILE" && *v == ca)
    );

    let mut c = coordinator(dir, &emulator, &[]);
    let warned = |log: &str| lines_with(log, &["WARN", "QUARRY_AZURE_CA_FILE"]);
    let log = c.log();
    assert_eq!(warned(&log), 1, "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("WARN") && l.contains("QUARRY_AZURE_CA_FILE"))
        .unwrap();
    assert!(line.contains(&ca), "names the file: {line}");
    assert!(!line.contains(&secret), "{line}");
    assert!(!log.contains(&secret), "the client secret is logged");

    // Every start warns, also while waiting for a key release.
    let answer = post_manifest(&c, dir, &gated_manifest(&[], 0));
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    c.restart().unwrap();
    wait_for(&c, "state 3 after restart", |code, _| code == 3);
    assert_eq!(warned(&c.log()), 2, "{}", c.log());

    // Without the variable: no such line.
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let plain = coordinator(&other, &emulator, &[("QUARRY_AZURE_CA_FILE", "")]);
    assert_eq!(current(&plain).0, 2);
    assert_eq!(warned(&plain.log()), 0, "{}", plain.log());
}

#[test]
fn a_new_manifest_after_a_definite_failure_drops_the_reason_from_the_status() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let emulator = Emulator::start_provisioned(dir, SEED_POLICY).unwrap();
    let mut c = coordinator(dir, &emulator, &[]);
    seal_with_recovery_key(&c, dir);
    let sealed = hsm_key(&c);
    emulator.replace_key_material(&sealed.key_version).unwrap();
    c.restart().unwrap();
    let (_, message) = wait_for(&c, "recovery mode", |code, _| code == 1);
    assert!(message.contains("Reason: definite:"), "{message}");

    // Recovery mode allows a new manifest (the old files are moved aside): the state is new,
    // and the reason for the old one's recovery mode is no longer shown.
    let answer = post_manifest(&c, dir, &gated_manifest(&[], 0));
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let (code, message) = current(&c);
    assert_eq!(code, 3, "{message}");
    assert!(!message.contains("Reason"), "{message}");
    c.restart().unwrap();
    wait_for(&c, "state 3 with the new state", |code, _| code == 3);
}

#[test]
fn a_modified_hsm_layer_is_a_definite_failure_that_changes_no_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let emulator = Emulator::start_provisioned(dir, SEED_POLICY).unwrap();
    let mut c = coordinator(dir, &emulator, &[]);
    let (key, secrets) = seal_with_recovery_key(&c, dir);
    let sealed = hsm_key(&c);

    // The last byte of sealed_key is the HSM layer's AES-GCM tag.
    c.stop();
    let path = c.seal_dir().join("sealed_key");
    let mut bytes = std::fs::read(&path).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let files = seal_dir_files(&c.seal_dir());

    c.restart().unwrap();
    let (_, message) = wait_for(&c, "recovery mode", |code, m| {
        assert_ne!(code, 3, "unsealed a modified sealed_key: {m}");
        code == 1
    });
    assert!(
        message.contains(&format!(
            "the released HSM key {sealed} does not open the sealed key"
        )),
        "{message}"
    );
    assert!(message.contains("sealed_key was modified"), "{message}");
    assert_eq!(seal_dir_files(&c.seal_dir()), files);

    recover(&c, dir, &key, &secrets);
    c.restart().unwrap();
    wait_for(&c, "state 3 after recovery", |code, _| code == 3);
}
