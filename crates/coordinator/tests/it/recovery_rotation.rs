//! A full update that changes the recovery keys or the threshold encrypts the state under a new
//! data key: after a loss, only the recovery secrets of the update recover the real binary (the
//! holders decrypt and sign with openssl, as the recovery docs tell them); the secrets handed out
//! before the update are refused, also those of a holder who stays. A commit that fails while
//! applying such an update keeps the old data key, so the old secrets still recover. With HSM
//! sealing, the HSM layer wraps the new key: restarts release it and recovery works the same.

use std::path::{Path, PathBuf};

use quarry_testkit::coordinator::Coordinator;
use serde_json::{Map, Value, json};

use crate::tools::{Answer, Trust, curl, file, rsa_key, sealed_files, unb64};
use crate::users::{UserCert, manifest_body, user_cert, users_manifest};
use crate::workflow::{prepare_upload, set_manifest, status};

/// A running Coordinator with the users manifest (updaters `dave` and `frank`) and recovery keys.
struct Setup {
    c: Coordinator,
    dir: PathBuf,
    dave: UserCert,
    frank: UserCert,
    /// Whether manifests carry the `AzureHSMSealing` gate.
    gate: bool,
    /// Holder name, private key file and public PEM.
    keys: Vec<(String, PathBuf, String)>,
    _tmp: tempfile::TempDir,
}

impl Setup {
    fn key(&mut self, name: &str) -> (PathBuf, String) {
        if let Some((_, k, p)) = self.keys.iter().find(|(n, _, _)| n == name) {
            return (k.clone(), p.clone());
        }
        let (key, public) = rsa_key(&self.dir, name);
        self.keys
            .push((name.to_owned(), key.clone(), public.clone()));
        (key, public)
    }

    /// The users manifest with `holders` (names; a holder's key is made once and reused) and
    /// `threshold`.
    fn manifest(&mut self, holders: &[&str], threshold: u64) -> Vec<u8> {
        let listed = [("dave", &self.dave.clone()), ("frank", &self.frank.clone())];
        let mut m: Value = serde_json::from_slice(&users_manifest(
            &listed.iter().map(|(n, c)| (*n, *c)).collect::<Vec<_>>(),
            false,
        ))
        .unwrap();
        let mut keys = Map::new();
        for h in holders {
            keys.insert((*h).to_owned(), Value::String(self.key(h).1));
        }
        m["RecoveryKeys"] = Value::Object(keys);
        m["Config"] = json!({ "RecoveryThreshold": threshold });
        if self.gate {
            m["Config"]["FeatureGates"] = json!(["AzureHSMSealing"]);
        }
        serde_json::to_vec(&m).unwrap()
    }

    fn call(&self, user: &UserCert, path: &str, body: &Value) -> Answer {
        let body = file(&self.dir, "body.json", body.to_string());
        curl(
            &Trust::Insecure,
            "POST",
            &self.c.url(path),
            Some(&body),
            &[
                "--cert",
                user.cert.to_str().unwrap(),
                "--key",
                user.key.to_str().unwrap(),
            ],
        )
    }

    /// Submits `update` as dave and acknowledges it as frank; returns frank's answer.
    fn update(&self, update: &[u8]) -> Answer {
        let first = self.call(&self.dave, "/api/v2/update", &manifest_body(update));
        assert_eq!(
            first.data()["missingAcknowledgments"],
            1,
            "{:?}",
            first.body
        );
        self.call(
            &self.frank,
            "/api/v2/update-manifest",
            &manifest_body(update),
        )
    }

    /// Loses `sealed_key` and restarts into recovery mode.
    fn lose(&mut self) {
        std::fs::remove_file(self.c.seal_dir().join("sealed_key")).unwrap();
        self.c.restart().unwrap();
        assert_eq!(status(&self.c, &Trust::Insecure), 1);
    }

    /// Uploads `holder`'s recovery secret from `secrets`, decrypted and signed with openssl.
    fn upload(&self, tag: &str, holder: &str, secrets: &Map<String, Value>) -> Answer {
        let (_, key, _) = self.keys.iter().find(|(n, _, _)| n == holder).unwrap();
        let path = prepare_upload(
            &self.dir,
            &format!("{tag}-{holder}"),
            &unb64(&secrets[holder]),
            key,
        );
        curl(
            &Trust::Insecure,
            "POST",
            &self.c.url("/api/v2/recover"),
            Some(&path),
            &[],
        )
    }
}

fn start(holders: &[&str], threshold: u64) -> (Setup, Vec<u8>, Map<String, Value>) {
    let tmp = tempfile::tempdir().unwrap();
    let c = Coordinator::start(tmp.path()).unwrap();
    setup(tmp, c, false, holders, threshold)
}

/// Sets the first manifest (with the `AzureHSMSealing` gate when `gate`) on `c`, which runs in
/// `tmp`; returns the setup, the manifest and its recovery secrets.
fn setup(
    tmp: tempfile::TempDir,
    c: Coordinator,
    gate: bool,
    holders: &[&str],
    threshold: u64,
) -> (Setup, Vec<u8>, Map<String, Value>) {
    let dir = tmp.path().to_path_buf();
    let dave = user_cert(&dir, "dave", false);
    let frank = user_cert(&dir, "frank", false);
    let mut s = Setup {
        c,
        dir,
        dave,
        frank,
        gate,
        keys: Vec::new(),
        _tmp: tmp,
    };
    let manifest = s.manifest(holders, threshold);
    let secrets = set_manifest(&s.c, &Trust::Insecure, &s.dir, &manifest);
    (s, manifest, secrets)
}

fn manifest_now(c: &Coordinator) -> Vec<u8> {
    let answer = curl(
        &Trust::Insecure,
        "GET",
        &c.url("/api/v2/manifest"),
        None,
        &[],
    );
    unb64(&answer.data()["manifest"])
}

fn assert_refused(answer: &Answer) {
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    assert_eq!(answer.body["status"], "fail", "{:?}", answer.body);
}

#[test]
fn shamir_holders_who_stay_recover_only_with_their_new_secrets() {
    let (mut s, _, old) = start(&["keep", "gone1", "gone2"], 2);
    let update = s.manifest(&["keep", "new1", "new2"], 2);
    let answer = s.update(&update);
    let new = answer.data()["recoverySecrets"]
        .as_object()
        .unwrap()
        .clone();
    assert_eq!(new.len(), 3, "{new:?}");
    assert_ne!(new["keep"], old["keep"]);
    // A plain restart unseals the new data key from sealed_key.
    s.c.restart().unwrap();
    assert_eq!(status(&s.c, &Trust::Insecure), 3);
    assert_eq!(manifest_now(&s.c), update);
    s.lose();

    // Two shares of the old data key, one of them from a holder who is still one.
    let before = sealed_files(&s.c.seal_dir());
    for holder in ["keep", "gone1"] {
        assert_refused(&s.upload("old", holder, &old));
        assert_eq!(sealed_files(&s.c.seal_dir()), before);
        assert_eq!(status(&s.c, &Trust::Insecure), 1);
    }

    for (n, holder) in ["new2", "keep"].into_iter().enumerate() {
        let answer = s.upload("new", holder, &new);
        assert_eq!(answer.data()["remaining"], 1 - n, "{:?}", answer.body);
    }
    assert_eq!(status(&s.c, &Trust::Insecure), 3);
    assert_eq!(manifest_now(&s.c), update);
}

#[test]
fn a_threshold_change_alone_gives_the_same_holders_a_new_key() {
    // The same three key pairs; 2 of 3 (Shamir) becomes 3 of 3 (XOR).
    let holders = ["x", "y", "z"];
    let (mut s, _, old) = start(&holders, 2);
    let update = s.manifest(&holders, 3);
    let answer = s.update(&update);
    let new = answer.data()["recoverySecrets"]
        .as_object()
        .unwrap()
        .clone();
    s.lose();

    let before = sealed_files(&s.c.seal_dir());
    for holder in holders {
        assert_refused(&s.upload("old", holder, &old));
        assert_eq!(sealed_files(&s.c.seal_dir()), before);
        assert_eq!(status(&s.c, &Trust::Insecure), 1);
    }

    for (n, holder) in holders.into_iter().enumerate() {
        let answer = s.upload("new", holder, &new);
        assert_eq!(answer.data()["remaining"], 2 - n, "{:?}", answer.body);
    }
    assert_eq!(status(&s.c, &Trust::Insecure), 3);
    assert_eq!(manifest_now(&s.c), update);
}

/// Makes the next commit fail before it writes anything: `sealed_data.tmp` is a directory.
fn block_commits(seal_dir: &Path) -> PathBuf {
    let blocker = seal_dir.join("sealed_data.tmp");
    std::fs::create_dir(&blocker).unwrap();
    blocker
}

#[test]
fn a_failed_commit_of_a_rotating_update_keeps_the_old_data_key() {
    let (mut s, manifest, old) = start(&["a", "b"], 0);
    let update = s.manifest(&["a", "c"], 0);
    let first = s.call(&s.dave, "/api/v2/update", &manifest_body(&update));
    assert_eq!(first.data()["missingAcknowledgments"], 1);

    let blocker = block_commits(&s.c.seal_dir());
    let failed = s.call(&s.frank, "/api/v2/update-manifest", &manifest_body(&update));
    assert_ne!(failed.status, 200, "{:?}", failed.body);
    std::fs::remove_dir(&blocker).unwrap();
    assert_eq!(manifest_now(&s.c), manifest);

    // The next commit (cancelling the update) must still be under the old data key, whose
    // recovery secrets are the only ones handed out.
    let cancel = s.call(&s.dave, "/api/v2/update-cancel", &json!({}));
    cancel.data();
    s.lose();
    for (n, holder) in ["b", "a"].into_iter().enumerate() {
        let answer = s.upload("old", holder, &old);
        assert_eq!(answer.data()["remaining"], 1 - n, "{:?}", answer.body);
    }
    assert_eq!(status(&s.c, &Trust::Insecure), 3);
    assert_eq!(manifest_now(&s.c), manifest);
}

#[test]
fn a_copy_of_the_old_state_does_not_open_with_the_new_secrets() {
    // The converse: the new secrets are for the new state only. An attacker who kept the old
    // sealed_data cannot combine it with a new holder's secret either.
    let (mut s, _, old) = start(&["a"], 0);
    let old_data = std::fs::read(s.c.seal_dir().join("sealed_data")).unwrap();
    let update = s.manifest(&["b"], 0);
    let answer = s.update(&update);
    let new = answer.data()["recoverySecrets"]
        .as_object()
        .unwrap()
        .clone();
    s.c.stop();
    std::fs::write(s.c.seal_dir().join("sealed_data"), &old_data).unwrap();
    std::fs::remove_file(s.c.seal_dir().join("sealed_key")).unwrap();
    s.c.restart().unwrap();
    assert_eq!(status(&s.c, &Trust::Insecure), 1);
    // The old file lists holder "a" only; "b"'s secret is refused.
    let before = sealed_files(&s.c.seal_dir());
    assert_refused(&s.upload("cross", "b", &new));
    assert_eq!(sealed_files(&s.c.seal_dir()), before);
    // The old holder's secret opens the old copy (it was theirs), as expected.
    let answer = s.upload("old", "a", &old);
    assert_eq!(answer.data()["remaining"], 0, "{:?}", answer.body);
}

#[test]
fn with_hsm_sealing_the_new_data_key_is_wrapped_by_the_hsm_and_recovers() {
    use crate::hsm::{coordinator, hsm_key, wait_for};
    use quarry_testkit::emulator::{Emulator, SEED_POLICY};

    let tmp = tempfile::tempdir().unwrap();
    let emulator = Emulator::start_provisioned(tmp.path(), SEED_POLICY).unwrap();
    let c = coordinator(tmp.path(), &emulator, &[]);
    let (mut s, _, old) = setup(tmp, c, true, &["a", "b", "c"], 2);
    let sealed = hsm_key(&s.c);
    let update = s.manifest(&["a", "d", "e"], 2);
    let answer = s.update(&update);
    let new = answer.data()["recoverySecrets"]
        .as_object()
        .unwrap()
        .clone();
    assert_eq!(hsm_key(&s.c), sealed);

    // The HSM releases its key and the enclave layer opens the new data key.
    s.c.restart().unwrap();
    wait_for(&s.c, "state 3 after the update and a restart", |code, _| {
        code == 3
    });
    assert_eq!(manifest_now(&s.c), update);

    s.lose();
    let before = sealed_files(&s.c.seal_dir());
    for holder in ["a", "b"] {
        assert_refused(&s.upload("old", holder, &old));
        assert_eq!(sealed_files(&s.c.seal_dir()), before);
    }
    for (n, holder) in ["e", "a"].into_iter().enumerate() {
        let answer = s.upload("new", holder, &new);
        assert_eq!(answer.data()["remaining"], 1 - n, "{:?}", answer.body);
    }
    assert_eq!(status(&s.c, &Trust::Insecure), 3);
    assert_eq!(hsm_key(&s.c).key_name, sealed.key_name);
    s.c.restart().unwrap();
    wait_for(&s.c, "state 3 after recovery and a restart", |code, _| {
        code == 3
    });
    assert_eq!(manifest_now(&s.c), update);
}

/// Makes the next commit fail after it replaced `sealed_data`, so its outcome is in doubt:
/// `sealed_key` is a directory, which the new `sealed_key.tmp` cannot be renamed over.
fn make_next_commit_in_doubt(seal_dir: &Path) -> PathBuf {
    let key = seal_dir.join("sealed_key");
    if key.exists() {
        std::fs::remove_file(&key).unwrap();
    }
    std::fs::create_dir(&key).unwrap();
    key
}

/// Checks the answer to a commit in doubt: 500, the restart hint, and (when `holders` is not
/// empty) the recovery secrets of the new state in `data`, which it returns.
fn in_doubt(answer: &Answer, holders: &[&str]) -> Map<String, Value> {
    assert_eq!(answer.status, 500, "{:?}", answer.body);
    assert_eq!(answer.body["status"], "error", "{:?}", answer.body);
    assert!(
        answer.message().contains("restart the Coordinator"),
        "{:?}",
        answer.body
    );
    if holders.is_empty() {
        assert_eq!(answer.body["data"], Value::Null, "{:?}", answer.body);
        return Map::new();
    }
    let secrets = answer.body["data"]["RecoverySecrets"]
        .as_object()
        .unwrap_or_else(|| panic!("no recovery secrets: {:?}", answer.body))
        .clone();
    let mut names: Vec<&str> = secrets.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, holders);
    secrets
}

/// After a commit in doubt: stops, clears the blocker, restarts (the new state loads from
/// `sealed_data` and `sealed_key.tmp`), loses the key and recovers with `secrets`.
fn restart_lose_and_recover(s: &mut Setup, blocker: &Path, secrets: &Map<String, Value>) {
    s.c.stop();
    std::fs::remove_dir(blocker).unwrap();
    s.c.restart().unwrap();
    assert_eq!(status(&s.c, &Trust::Insecure), 3);
    let expected = manifest_now(&s.c);
    s.c.stop();
    std::fs::remove_file(s.c.seal_dir().join("sealed_key.tmp")).unwrap();
    s.c.restart().unwrap();
    assert_eq!(status(&s.c, &Trust::Insecure), 1);
    let holders: Vec<String> = secrets.keys().cloned().collect();
    for (n, holder) in holders.iter().enumerate() {
        let answer = s.upload("in-doubt", holder, secrets);
        assert_eq!(
            answer.data()["remaining"],
            holders.len() - n - 1,
            "{:?}",
            answer.body
        );
    }
    assert_eq!(status(&s.c, &Trust::Insecure), 3);
    assert_eq!(manifest_now(&s.c), expected);
}

#[test]
fn a_first_manifest_whose_commit_is_in_doubt_still_hands_out_its_recovery_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Coordinator::start(tmp.path()).unwrap();
    let dir = tmp.path().to_path_buf();
    let mut s = Setup {
        c,
        dave: user_cert(&dir, "dave", false),
        frank: user_cert(&dir, "frank", false),
        dir,
        gate: false,
        keys: Vec::new(),
        _tmp: tmp,
    };
    let manifest = s.manifest(&["a", "b"], 0);
    let blocker = make_next_commit_in_doubt(&s.c.seal_dir());
    let body = file(
        &s.dir,
        "set.json",
        json!({ "manifest": crate::tools::b64(&manifest) }).to_string(),
    );
    let answer = curl(
        &Trust::Insecure,
        "POST",
        &s.c.url("/api/v2/manifest"),
        Some(&body),
        &[],
    );
    let secrets = in_doubt(&answer, &["a", "b"]);
    // Until the restart every further write is refused with the same hint, and no secrets.
    let again = curl(
        &Trust::Insecure,
        "POST",
        &s.c.url("/api/v2/manifest"),
        Some(&body),
        &[],
    );
    in_doubt(&again, &[]);
    restart_lose_and_recover(&mut s, &blocker, &secrets);
    assert_eq!(manifest_now(&s.c), manifest);
}

#[test]
fn a_rotating_update_whose_commit_is_in_doubt_still_hands_out_its_recovery_secrets() {
    let (mut s, _, _) = start(&["a", "b"], 0);
    let update = s.manifest(&["a", "c"], 0);
    let first = s.call(&s.dave, "/api/v2/update", &manifest_body(&update));
    assert_eq!(first.data()["missingAcknowledgments"], 1);
    let blocker = make_next_commit_in_doubt(&s.c.seal_dir());
    let last = s.call(&s.frank, "/api/v2/update-manifest", &manifest_body(&update));
    let secrets = in_doubt(&last, &["a", "c"]);
    restart_lose_and_recover(&mut s, &blocker, &secrets);
    assert_eq!(manifest_now(&s.c), update);
}
