//! `kill -9` of the Coordinator while it sets a manifest (fresh, and replacing a state in
//! recovery mode) and while it processes the last recovery upload. Whenever the kill lands, the
//! restarted Coordinator is in the old or the new state, never in a corrupt one, and no old
//! sealed file is lost.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use quarry_testkit::coordinator::Coordinator;
use serde_json::json;

use crate::tools::{Trust, b64, curl, file, manifest, rsa_key, sealed_files, unb64};
use crate::workflow::{prepare_upload, save_root, set_manifest, status};

/// How many kills each test tries; where each lands depends on scheduling, and every outcome
/// must pass the checks.
const ROUNDS: usize = 3;

/// Starts `curl` posting `body` to `path` without waiting for it.
fn post_in_background(c: &Coordinator, path: &str, body: &Path) -> Child {
    Command::new("curl")
        .args(["-sk", "-X", "POST", "--data-binary"])
        .arg(format!("@{}", body.display()))
        .arg(c.url(path))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// `kill -9` of the Coordinator process this test started, then a restart on the same files.
fn kill_and_restart(c: &mut Coordinator, mut request: Child) {
    let pid = c.service().pid().to_string();
    let status = Command::new("kill").args(["-9", &pid]).status().unwrap();
    assert!(status.success());
    let _ = request.wait();
    c.restart().unwrap();
}

fn manifest_of(c: &Coordinator) -> Vec<u8> {
    let answer = curl(
        &Trust::Insecure,
        "GET",
        &c.url("/api/v2/manifest"),
        None,
        &[],
    );
    unb64(&answer.data()["manifest"])
}

#[test]
fn a_kill_while_setting_the_first_manifest_leaves_no_manifest_or_the_whole_one() {
    for round in 0..ROUNDS {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mut c = Coordinator::start(dir).unwrap();
        let (_, public) = rsa_key(dir, "k");
        let m = manifest(&[("k", &public)], 0);
        let body = file(dir, "body.json", json!({"manifest": b64(&m)}).to_string());

        let request = post_in_background(&c, "/api/v2/manifest", &body);
        kill_and_restart(&mut c, request);
        match status(&c, &Trust::Insecure) {
            2 => assert!(sealed_files(&c.seal_dir()).is_empty(), "round {round}"),
            3 => assert_eq!(manifest_of(&c), m, "round {round}"),
            other => panic!("round {round}: state {other} after the kill"),
        }
        // Either way the Coordinator goes on: a manifest can be set, or is set.
        if status(&c, &Trust::Insecure) == 2 {
            set_manifest(&c, &Trust::Insecure, dir, &m);
        }
        c.restart().unwrap();
        assert_eq!(status(&c, &Trust::Insecure), 3, "round {round}");
        assert_eq!(manifest_of(&c), m);
    }
}

/// The seal directory's files (all of them, moved-aside ones included) with their bytes.
fn all_files(seal: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    std::fs::read_dir(seal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("sealed_")
        })
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

#[test]
fn a_kill_while_replacing_a_state_in_recovery_mode_keeps_the_old_files() {
    for round in 0..ROUNDS {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mut c = Coordinator::start(dir).unwrap();
        let (_, public) = rsa_key(dir, "k");
        set_manifest(&c, &Trust::Insecure, dir, &manifest(&[("k", &public)], 0));
        // A sealed key that no longer opens the state (say, from another machine).
        let key_path = c.seal_dir().join("sealed_key");
        let mut key = std::fs::read(&key_path).unwrap();
        let last = key.len() - 1;
        key[last] ^= 1;
        std::fs::write(&key_path, &key).unwrap();
        c.restart().unwrap();
        assert_eq!(status(&c, &Trust::Insecure), 1);
        let old = all_files(&c.seal_dir());

        let second = manifest(&[], 0);
        let body = file(
            dir,
            "body.json",
            json!({"manifest": b64(&second)}).to_string(),
        );
        let request = post_in_background(&c, "/api/v2/manifest", &body);
        kill_and_restart(&mut c, request);

        let now = all_files(&c.seal_dir());
        for (path, bytes) in &old {
            assert!(
                now.iter().any(|(_, b)| b == bytes),
                "round {round}: {} is gone: {:?}",
                path.display(),
                now.iter().map(|(p, _)| p).collect::<Vec<_>>()
            );
        }
        match status(&c, &Trust::Insecure) {
            1 | 2 => {}
            3 => assert_eq!(manifest_of(&c), second, "round {round}"),
            other => panic!("round {round}: state {other} after the kill"),
        }
    }
}

#[test]
fn a_kill_during_the_last_recovery_upload_leaves_recovery_mode_or_the_recovered_state() {
    for round in 0..ROUNDS {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mut c = Coordinator::start(dir).unwrap();
        let (key, public) = rsa_key(dir, "k");
        let m = manifest(&[("k", &public)], 0);
        let secrets = set_manifest(&c, &Trust::Insecure, dir, &m);
        let (_, root) = save_root(&c, dir, "root.pem");
        std::fs::remove_file(c.seal_dir().join("sealed_key")).unwrap();
        c.restart().unwrap();
        let upload = prepare_upload(dir, "k", &unb64(&secrets["k"]), &key);

        let request = post_in_background(&c, "/api/v2/recover", &upload);
        kill_and_restart(&mut c, request);
        if status(&c, &Trust::Insecure) == 1 {
            // The upload was lost with the process; it can be made again.
            let answer = curl(
                &Trust::Insecure,
                "POST",
                &c.url("/api/v2/recover"),
                Some(&upload),
                &[],
            );
            assert_eq!(answer.data()["remaining"], 0, "round {round}");
        }
        assert_eq!(status(&c, &Trust::Insecure), 3, "round {round}");
        assert_eq!(save_root(&c, dir, "after.pem").1, root, "round {round}");
        assert_eq!(manifest_of(&c), m);
        c.restart().unwrap();
        assert_eq!(status(&c, &Trust::Insecure), 3, "round {round}");
    }
}
