//! `kill -9` of the Coordinator while it applies a full manifest update (the last
//! acknowledgement) or a package update. Wherever the kill lands, the restarted Coordinator has
//! the old state (the update still pending, or the old security version) or the new one, never
//! a mix, and it goes on from there.

use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use crate::tools::{Trust, curl, file, unb64};
use crate::update_refusals::{Custom, raw};
use crate::users::manifest_body;

/// How many kills each test tries; where each lands depends on scheduling, and every outcome
/// must pass the checks.
const ROUNDS: usize = 3;

/// Posts `body` to `path` as `user` without waiting for the answer.
fn post_in_background(d: &Custom, user: &str, path: &str, body: &Value) -> Child {
    let file = file(&d.dir, "background.json", body.to_string());
    let cert = d.cert(user);
    Command::new("curl")
        .args(["-sk", "-X", "POST", "--data-binary"])
        .arg(format!("@{}", file.display()))
        .arg("--cert")
        .arg(&cert.cert)
        .arg("--key")
        .arg(&cert.key)
        .arg(d.c.url(path))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// `kill -9` of the Coordinator this test started, then a restart on the same files.
fn kill_and_restart(d: &mut Custom, mut request: Child) {
    let pid = d.c.service().pid().to_string();
    assert!(
        Command::new("kill")
            .args(["-9", &pid])
            .status()
            .unwrap()
            .success()
    );
    let _ = request.wait();
    d.c.restart().unwrap();
}

fn get(d: &Custom, path: &str) -> crate::tools::Answer {
    curl(&Trust::Insecure, "GET", &d.c.url(path), None, &[])
}

fn log(d: &Custom) -> Vec<Value> {
    get(d, "/api/v2/update").data()["updateLog"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str(l.as_str().unwrap()).unwrap())
        .collect()
}

#[test]
fn a_kill_while_applying_a_full_update_leaves_it_pending_or_applied() {
    for round in 0..ROUNDS {
        let mut d = Custom::start(|_, _| {});
        let old = raw(&d.manifest);
        let mut update = d.manifest.clone();
        update["Secrets"]["extra"] = json!({"Type": "symmetric-key", "Size": 256, "Shared": true});
        update["Config"] = json!({"RotateRootSecret": true});
        let new = raw(&update);
        let submitted = d.call("dave", "POST", "/api/v2/update", Some(manifest_body(&new)));
        assert_eq!(submitted.data()["missingAcknowledgments"], 1);
        let log_before = log(&d);

        let ack = post_in_background(&d, "frank", "/api/v2/update-manifest", &manifest_body(&new));
        kill_and_restart(&mut d, ack);

        let manifest = unb64(&get(&d, "/api/v2/manifest").data()["manifest"]);
        let pending = get(&d, "/api/v2/update-manifest");
        if manifest == old {
            // Not applied: exactly the state before the acknowledgement.
            assert_eq!(
                pending.data()["missingUsers"],
                json!(["frank"]),
                "round {round}"
            );
            assert_eq!(unb64(&pending.data()["manifest"]), new);
            assert_eq!(log(&d), log_before, "round {round}");
            let again = d.call(
                "frank",
                "POST",
                "/api/v2/update-manifest",
                Some(manifest_body(&new)),
            );
            assert_eq!(again.data()["missingAcknowledgments"], 0, "round {round}");
        } else {
            assert_eq!(manifest, new, "round {round}");
            assert_eq!(pending.status, 404, "round {round}: {:?}", pending.body);
            let log = log(&d);
            assert_eq!(log.len(), log_before.len() + 2, "round {round}");
            assert_eq!(log[log.len() - 2]["user"], "frank");
            assert_eq!(log[log.len() - 1]["update"], "Complete Manifest updated");
        }
        // Either way the new manifest is now in force, users are served, and it survives a
        // restart.
        assert_eq!(unb64(&get(&d, "/api/v2/manifest").data()["manifest"]), new);
        let answer = d.call("alice", "GET", "/api/v2/secrets?s=user_key", None);
        assert_eq!(answer.status, 200, "round {round}");
        d.c.restart().unwrap();
        assert_eq!(unb64(&get(&d, "/api/v2/manifest").data()["manifest"]), new);
    }
}

#[test]
fn a_kill_while_applying_a_package_update_leaves_the_old_or_the_new_version() {
    for round in 0..ROUNDS {
        let mut d = Custom::start(|_, _| {});
        let root_before = get(&d, "/api/v2/quote").data()["cert"]
            .as_str()
            .unwrap()
            .to_owned();
        let log_before = log(&d);
        let update = json!({"Packages": {"backend": {"SecurityVersion": 7}}});
        let request = post_in_background(
            &d,
            "carol",
            "/api/v2/update",
            &manifest_body(update.to_string().as_bytes()),
        );
        kill_and_restart(&mut d, request);
        let log = log(&d);
        let chain = get(&d, "/api/v2/quote").data()["cert"]
            .as_str()
            .unwrap()
            .to_owned();
        if log == log_before {
            // Not applied: the same intermediate certificate is served.
            assert_eq!(chain, root_before, "round {round}");
        } else {
            assert_eq!(log.len(), log_before.len() + 1, "round {round}");
            let last = &log[log.len() - 1];
            assert_eq!(last["update"], "SecurityVersion increased");
            assert_eq!(last["new version"], 7);
            // The intermediate certificate was rotated with it.
            assert_ne!(chain, root_before, "round {round}");
        }
        // Either way the Coordinator goes on: the update applies (again), and a lower version
        // is refused.
        let again = d.call(
            "carol",
            "POST",
            "/api/v2/update",
            Some(manifest_body(update.to_string().as_bytes())),
        );
        assert_eq!(again.status, 200, "round {round}: {:?}", again.body);
        let lower = json!({"Packages": {"backend": {"SecurityVersion": 6}}});
        let refused = d.call(
            "carol",
            "POST",
            "/api/v2/update",
            Some(manifest_body(lower.to_string().as_bytes())),
        );
        assert_eq!(refused.status, 400, "round {round}");
    }
}

#[test]
fn a_pending_update_survives_a_restart_and_is_applied_after_it() {
    let mut d = Custom::start(|_, _| {});
    let mut update = d.manifest.clone();
    update["Secrets"]["extra"] = json!({"Type": "symmetric-key", "Size": 256, "Shared": true});
    let new = raw(&update);
    let submitted = d.call("frank", "POST", "/api/v2/update", Some(manifest_body(&new)));
    assert_eq!(submitted.data()["missingUsers"], json!(["dave"]));
    let log_before = log(&d);
    d.c.restart().unwrap();
    let pending = get(&d, "/api/v2/update-manifest");
    assert_eq!(unb64(&pending.data()["manifest"]), new);
    assert_eq!(pending.data()["missingUsers"], json!(["dave"]));
    assert_eq!(log(&d), log_before);
    // Frank's acknowledgement was kept: Dave's applies the update.
    let applied = d.call(
        "dave",
        "POST",
        "/api/v2/update-manifest",
        Some(manifest_body(&new)),
    );
    assert_eq!(applied.data()["missingAcknowledgments"], 0);
    assert_eq!(unb64(&get(&d, "/api/v2/manifest").data()["manifest"]), new);
}
