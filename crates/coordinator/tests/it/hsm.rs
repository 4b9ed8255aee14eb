//! HSM sealing against the real emulator and the real Coordinator binary, on loopback: the
//! emulator is provisioned with the guide's release policy and the Coordinator runs in
//! simulation with an identity that satisfies it.
//!
//! Nothing here waits a fixed time: the status is polled with a generous bound, and failures
//! come from the emulator's fault injection, from stopping it, or from operator changes.

use std::path::Path;
use std::time::{Duration, Instant};

use quarry_store::HsmKeyRef;
use quarry_store::frame::{Frame, parse_sealed_key};
use quarry_testkit::coordinator::Coordinator;
use quarry_testkit::emulator::{Emulator, KEY_NAME, SEED_POLICY};
use serde_json::{Value, json};

use crate::tools::{Trust, b64, curl, file, manifest, rsa_key, sealed_files, unb64};
use crate::workflow::{prepare_upload, save_root, status};

/// How long a status may take to change: bounds a hang, measures nothing.
const WAIT: Duration = Duration::from_secs(120);

/// The manifest of the core's walk with the `AzureHSMSealing` gate.
pub(crate) fn gated_manifest(keys: &[(&str, &str)], threshold: u64) -> Vec<u8> {
    let mut value: Value = serde_json::from_slice(&manifest(keys, threshold)).unwrap();
    value["Config"]["FeatureGates"] = json!(["AzureHSMSealing"]);
    serde_json::to_vec(&value).unwrap()
}

/// A Coordinator with the emulator's variables, the seed identity and a short retry cap.
pub(crate) fn coordinator(dir: &Path, emulator: &Emulator, extra: &[(&str, &str)]) -> Coordinator {
    let mut env = emulator.coordinator_env();
    env.push(("QUARRY_HSM_RETRY_MAX_DELAY".into(), "1s".into()));
    for (k, v) in extra {
        env.retain(|(name, _)| name != k);
        env.push(((*k).to_owned(), (*v).to_owned()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Coordinator::start_with(dir, &env).unwrap()
}

/// The status (code, message).
pub(crate) fn current(c: &Coordinator) -> (u64, String) {
    let answer = curl(&Trust::Insecure, "GET", &c.url("/api/v2/status"), None, &[]);
    let data = answer.data();
    (
        data["code"].as_u64().unwrap(),
        data["message"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Polls the status until `done` holds; panics with the last status and log after [`WAIT`].
pub(crate) fn wait_for(
    c: &Coordinator,
    what: &str,
    done: impl Fn(u64, &str) -> bool,
) -> (u64, String) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (code, message) = current(c);
        if done(code, &message) {
            return (code, message);
        }
        assert!(
            Instant::now() < deadline,
            "no {what} after {WAIT:?}: last status {code} {message:?}\n{}",
            c.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The HSM key that wraps `sealed_key`; panics if it is not HSM-wrapped.
pub(crate) fn hsm_key(c: &Coordinator) -> HsmKeyRef {
    let bytes = std::fs::read(c.seal_dir().join("sealed_key")).unwrap();
    match parse_sealed_key(&bytes).unwrap() {
        Frame::Hsm(frame) => frame.key,
        Frame::Enclave(_) => panic!("sealed_key has no HSM layer"),
    }
}

/// Sets `manifest`; returns the answer.
pub(crate) fn post_manifest(c: &Coordinator, dir: &Path, manifest: &[u8]) -> crate::tools::Answer {
    let body = file(
        dir,
        "hsm-manifest.json",
        json!({ "manifest": b64(manifest) }).to_string(),
    );
    curl(
        &Trust::Insecure,
        "POST",
        &c.url("/api/v2/manifest"),
        Some(&body),
        &[],
    )
}

#[test]
fn gate_seals_through_the_hsm_and_every_start_releases_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut emulator = Emulator::start(dir).unwrap();
    let provisioned = emulator.provision(SEED_POLICY).unwrap();
    let sp = provisioned["servicePrincipal"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut c = coordinator(dir, &emulator, &[]);
    assert_eq!(current(&c).0, 2);

    // Manifest with the gate: the sealed key carries the HSM layer of the provisioned key.
    let answer = post_manifest(&c, dir, &gated_manifest(&[], 0));
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(current(&c).0, 3);
    let sealed = hsm_key(&c);
    let port = emulator.url().rsplit(':').next().unwrap().to_owned();
    assert_eq!(sealed.vault_host, format!("localhost:{port}"));
    assert_eq!(sealed.key_name, KEY_NAME);
    assert!(c.log().contains("hsm key release"), "{}", c.log());

    // A restart unseals through a fresh release.
    let before = emulator.releases().unwrap();
    c.restart().unwrap();
    wait_for(&c, "state 3 after restart", |code, _| code == 3);
    assert!(emulator.releases().unwrap() > before);

    // The emulator down at start-up: waiting, and why; nothing written; back: state 3.
    emulator.stop();
    let files = sealed_files(&c.seal_dir());
    c.restart().unwrap();
    let (_, message) = wait_for(&c, "a transient error", |code, m| {
        code == 0 && m.contains("transient")
    });
    assert!(message.contains("waiting for the key release"), "{message}");
    let answer = curl(
        &Trust::Insecure,
        "GET",
        &c.url("/api/v2/manifest"),
        None,
        &[],
    );
    assert_eq!(answer.status, 503, "{:?}", answer.body);
    assert_eq!(answer.body["status"], "error");
    let answer = post_manifest(&c, dir, &gated_manifest(&[], 0));
    assert_eq!(answer.status, 503, "{:?}", answer.body);
    assert_eq!(sealed_files(&c.seal_dir()), files);
    emulator.restart().unwrap();
    wait_for(&c, "state 3 once the emulator is back", |code, _| code == 3);

    // The role removed: waiting with "needs operator", never recovery mode; files unchanged.
    emulator.remove_role_assignments().unwrap();
    let files = sealed_files(&c.seal_dir());
    c.restart().unwrap();
    let (_, message) = wait_for(&c, "needs operator", |code, m| {
        assert_ne!(code, 1, "recovery mode entered: {m}");
        code == 0 && m.contains("needs operator")
    });
    assert!(message.contains("403"), "{message}");
    assert_eq!(sealed_files(&c.seal_dir()), files);
    // The operator assigns the role again: the next attempt succeeds without a restart.
    emulator
        .hsm(&[
            "role-assign",
            "--assignee",
            &sp,
            "--role",
            "Managed HSM Crypto Service Release User",
            "--scope",
            &format!("/keys/{KEY_NAME}"),
        ])
        .unwrap();
    wait_for(&c, "state 3 after the role is back", |code, _| code == 3);

    // A new key version: the restart still unseals, then re-seals under the new version.
    let old = hsm_key(&c).key_version;
    let new = emulator.new_key_version().unwrap();
    assert_ne!(old, new);
    c.restart().unwrap();
    wait_for(&c, "state 3 after a new key version", |code, _| code == 3);
    assert_eq!(hsm_key(&c).key_version, new);
    c.restart().unwrap();
    wait_for(&c, "state 3 under the new version", |code, _| code == 3);
}

#[test]
fn walk_with_the_gate_recovers_and_seals_through_the_hsm_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let emulator = Emulator::start_provisioned(dir, SEED_POLICY).unwrap();
    let mut c = coordinator(dir, &emulator, &[]);

    let (root_file, root_pem) = save_root(&c, dir, "root.pem");
    let trust = Trust::Root(root_file);
    assert_eq!(status(&c, &trust), 2);
    let (key, public) = rsa_key(dir, "holder");
    let manifest = gated_manifest(&[("holder", &public)], 0);
    let body = file(
        dir,
        "set.json",
        json!({ "manifest": b64(&manifest) }).to_string(),
    );
    let answer = curl(&trust, "POST", &c.url("/api/v2/manifest"), Some(&body), &[]);
    let secrets = answer.data()["RecoverySecrets"]
        .as_object()
        .unwrap()
        .clone();
    assert_eq!(status(&c, &trust), 3);
    let sealed = hsm_key(&c);

    c.restart().unwrap();
    wait_for(&c, "state 3 after restart", |code, _| code == 3);

    // Without sealed_key: recovery mode; the recovery secret restores the state without the
    // HSM, and the Coordinator seals through the HSM again.
    std::fs::remove_file(c.seal_dir().join("sealed_key")).unwrap();
    c.restart().unwrap();
    assert_eq!(current(&c).0, 1);
    let upload = prepare_upload(dir, "holder", &unb64(&secrets["holder"]), &key);
    let answer = curl(
        &Trust::Insecure,
        "POST",
        &c.url("/api/v2/recover"),
        Some(&upload),
        &[],
    );
    assert_eq!(answer.data()["message"], "Recovery successful.");
    assert_eq!(status(&c, &trust), 3);
    let (_, recovered_root) = save_root(&c, dir, "recovered.pem");
    assert_eq!(recovered_root, root_pem);
    let resealed = hsm_key(&c);
    assert_eq!(resealed.vault_host, sealed.vault_host);
    assert_eq!(resealed.key_name, sealed.key_name);

    c.restart().unwrap();
    wait_for(&c, "state 3 after recovery and restart", |code, _| {
        code == 3
    });
    let answer = curl(&trust, "GET", &c.url("/api/v2/manifest"), None, &[]);
    assert_eq!(unb64(&answer.data()["manifest"]), manifest);
}

#[test]
fn recovery_while_the_hsm_is_down_serves_but_does_not_persist_until_it_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut emulator = Emulator::start_provisioned(dir, SEED_POLICY).unwrap();
    let mut c = coordinator(dir, &emulator, &[]);
    let (key, public) = rsa_key(dir, "holder");
    let answer = post_manifest(&c, dir, &gated_manifest(&[("holder", &public)], 0));
    let secrets = answer.data()["RecoverySecrets"]
        .as_object()
        .unwrap()
        .clone();

    // The HSM is down and the sealed key is lost: waiting; a recovery is accepted meanwhile.
    emulator.stop();
    std::fs::remove_file(c.seal_dir().join("sealed_key")).unwrap();
    c.restart().unwrap();
    assert_eq!(current(&c).0, 1);
    let files = sealed_files(&c.seal_dir());
    let upload = prepare_upload(dir, "holder", &unb64(&secrets["holder"]), &key);
    let answer = curl(
        &Trust::Insecure,
        "POST",
        &c.url("/api/v2/recover"),
        Some(&upload),
        &[],
    );
    assert_eq!(answer.data()["remaining"], 0);
    let (code, message) = current(&c);
    assert_eq!(code, 3);
    assert!(message.contains("not persisted"), "{message}");
    assert_eq!(
        sealed_files(&c.seal_dir()),
        files,
        "written without the HSM"
    );

    emulator.restart().unwrap();
    wait_for(&c, "the state persisted", |code, m| {
        code == 3 && !m.contains("not persisted")
    });
    hsm_key(&c);
    c.restart().unwrap();
    wait_for(&c, "state 3 from the persisted state", |code, _| code == 3);
}

#[test]
fn bad_settings_and_refusals_keep_the_sealed_files_and_say_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let emulator = Emulator::start_provisioned(dir, SEED_POLICY).unwrap();

    // An identity the policy refuses: the manifest is refused, naming the claim.
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let c = coordinator(&other, &emulator, &[("QUARRY_INSECURE_SIM_ISVSVN", "1")]);
    let answer = post_manifest(&c, &other, &gated_manifest(&[], 0));
    assert_eq!(answer.status, 503, "{:?}", answer.body);
    assert!(
        answer.message().contains("needs operator"),
        "{}",
        answer.message()
    );
    assert!(
        answer.message().contains("x-ms-sgx-svn"),
        "{}",
        answer.message()
    );
    assert_eq!(current(&c).0, 2);
    assert!(sealed_files(&c.seal_dir()).is_empty());
    drop(c);

    // An unreachable HSM at manifest set: 503, transient.
    let c = coordinator(
        &other,
        &emulator,
        &[("EDG_AZURE_HSM_VAULT_URL", "https://localhost:1/")],
    );
    let answer = post_manifest(&c, &other, &gated_manifest(&[], 0));
    assert_eq!(answer.status, 503, "{:?}", answer.body);
    assert!(
        answer.message().contains("transient"),
        "{}",
        answer.message()
    );
    drop(c);

    // A sealed state, then a Coordinator pointed at another vault: stops with both named.
    let mut c = coordinator(dir, &emulator, &[]);
    let answer = post_manifest(&c, dir, &gated_manifest(&[], 0));
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let files = sealed_files(&c.seal_dir());
    let second_dir = tmp.path().join("second");
    let second = Emulator::start_provisioned(&second_dir, SEED_POLICY).unwrap();
    c.restart_with("EDG_AZURE_HSM_VAULT_URL", Some(&second.url()))
        .unwrap();
    let (_, message) = wait_for(&c, "the other vault named", |code, m| {
        code == 0 && m.contains("environment configures vault")
    });
    let first_host = emulator.url().replace("https://", "");
    let second_host = second.url().replace("https://", "");
    assert!(message.contains(&first_host), "{message}");
    assert!(message.contains(&second_host), "{message}");
    assert_eq!(sealed_files(&c.seal_dir()), files);

    // The key deleted in the HSM: waiting with "needs operator", no recovery mode.
    emulator.delete_key().unwrap();
    c.restart_with("EDG_AZURE_HSM_VAULT_URL", Some(&emulator.url()))
        .unwrap();
    let (_, message) = wait_for(&c, "the missing key reported", |code, m| {
        assert_ne!(code, 1, "recovery mode entered: {m}");
        code == 0 && m.contains("needs operator")
    });
    assert!(message.contains("404"), "{message}");
    assert_eq!(sealed_files(&c.seal_dir()), files);
}

#[test]
fn injected_outage_is_transient_and_retried_until_the_release_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let emulator = Emulator::start_provisioned(dir, SEED_POLICY).unwrap();
    let mut c = coordinator(dir, &emulator, &[]);
    let answer = post_manifest(&c, dir, &gated_manifest(&[], 0));
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let files = sealed_files(&c.seal_dir());

    emulator
        .set_faults(&json!([{"route": "/keys/{name}/{version}/release", "status": 503}]))
        .unwrap();
    c.restart().unwrap();
    let (_, message) = wait_for(&c, "the injected 503", |code, m| {
        code == 0 && m.contains("503")
    });
    assert!(message.contains("transient"), "{message}");
    assert_eq!(sealed_files(&c.seal_dir()), files);
    emulator.set_faults(&json!([])).unwrap();
    wait_for(&c, "state 3 after the fault is cleared", |code, _| {
        code == 3
    });
}

#[test]
fn recovery_is_accepted_while_waiting_for_the_key_release() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut emulator = Emulator::start_provisioned(dir, SEED_POLICY).unwrap();
    let mut c = coordinator(dir, &emulator, &[]);
    let (key, public) = rsa_key(dir, "holder");
    let answer = post_manifest(&c, dir, &gated_manifest(&[("holder", &public)], 0));
    let secrets = answer.data()["RecoverySecrets"]
        .as_object()
        .unwrap()
        .clone();

    emulator.stop();
    c.restart().unwrap();
    wait_for(&c, "waiting for the key release", |code, m| {
        code == 0 && m.contains("transient")
    });
    let files = sealed_files(&c.seal_dir());
    let answer = curl(
        &Trust::Insecure,
        "GET",
        &c.url("/api/v2/recover/public-key"),
        None,
        &[],
    );
    assert_eq!(answer.data()["algorithm"], "RSA");
    let upload = prepare_upload(dir, "holder", &unb64(&secrets["holder"]), &key);
    let answer = curl(
        &Trust::Insecure,
        "POST",
        &c.url("/api/v2/recover"),
        Some(&upload),
        &[],
    );
    assert_eq!(answer.data()["remaining"], 0, "{:?}", answer.body);
    let (code, message) = current(&c);
    assert_eq!(code, 3);
    assert!(message.contains("not persisted"), "{message}");
    assert_eq!(sealed_files(&c.seal_dir()), files);

    emulator.restart().unwrap();
    wait_for(&c, "the recovered state persisted", |code, m| {
        code == 3 && !m.contains("not persisted")
    });
    hsm_key(&c);
    c.restart().unwrap();
    wait_for(&c, "state 3 after restart", |code, _| code == 3);
}
