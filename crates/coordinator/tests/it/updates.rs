//! Manifest updates: a package update applied at once and logged, downgrades and forbidden
//! changes refused without a state change, and a two-user full update pending after the first
//! user and applied after the second, with the update log and the v1 endpoints.

use serde_json::{Value, json};

use crate::tools::unb64;
use crate::users::{Deployment, manifest_body, users_manifest};

fn log(d: &Deployment) -> Vec<Value> {
    d.call(None, "GET", "/api/v2/update", None).data()["updateLog"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str(l.as_str().unwrap()).unwrap())
        .collect()
}

#[test]
fn package_update_raises_the_security_version_and_rotates_the_intermediate() {
    let d = Deployment::start(&[]);
    let quote_before = d.call(None, "GET", "/api/v2/quote", None).data()["cert"].clone();
    let update = json!({"Packages": {"backend": {"SecurityVersion": 5}}}).to_string();
    let answer = d.call(
        Some("carol"),
        "POST",
        "/api/v2/update",
        Some(manifest_body(update.as_bytes())),
    );
    assert_eq!(answer.data()["missingAcknowledgments"], 0);
    assert_eq!(answer.data()["missingUsers"], Value::Null);
    assert!(answer.data().get("recoverySecrets").is_none());
    let last = log(&d).pop().unwrap();
    assert_eq!(last["update"], "SecurityVersion increased");
    assert_eq!(last["user"], "carol");
    assert_eq!(last["package"], "backend");
    assert_eq!(last["new version"], 5);
    // The intermediate changed; the manifest did not.
    let quote_after = d.call(None, "GET", "/api/v2/quote", None).data()["cert"].clone();
    assert_ne!(quote_before, quote_after);
    let manifest = d.call(None, "GET", "/api/v2/manifest", None);
    assert_eq!(unb64(&manifest.data()["manifest"]), d.manifest);

    for (update, expected) in [
        (
            json!({"Packages": {"backend": {"SecurityVersion": 4}}}),
            "lower than the current 5",
        ),
        (
            json!({"Packages": {"backend": {"SecurityVersion": 6, "ProductID": 4}}}),
            "ProductID",
        ),
        (
            json!({"Packages": {"backend": {"SecurityVersion": 6, "Debug": true}}}),
            "Debug",
        ),
        (json!({"Packages": {"backend": {}}}), "SecurityVersion"),
        (
            json!({"Packages": {"other": {"SecurityVersion": 6}}}),
            "other",
        ),
    ] {
        let before = d.sealed();
        let answer = d.call(
            Some("carol"),
            "POST",
            "/api/v2/update",
            Some(manifest_body(update.to_string().as_bytes())),
        );
        assert_eq!(answer.status, 400, "{update}: {:?}", answer.body);
        assert_eq!(answer.body["status"], "fail");
        assert!(
            answer.message().contains(expected),
            "{update}: {}",
            answer.message()
        );
        assert_eq!(d.sealed(), before, "{update} changed the state");
    }
}

#[test]
fn two_user_full_update_is_pending_after_the_first_and_applied_after_the_second() {
    let d = Deployment::start(&[]);
    let listed: Vec<(&str, &crate::users::UserCert)> = d
        .users
        .iter()
        .filter(|(n, _)| *n != "eve")
        .map(|(n, c)| (*n, c))
        .collect();
    let full = users_manifest(&listed, true);
    let fingerprint = hex_sha256(&full);

    let first = d.call(
        Some("dave"),
        "POST",
        "/api/v2/update",
        Some(manifest_body(&full)),
    );
    assert_eq!(first.data()["missingAcknowledgments"], 1);
    assert_eq!(first.data()["missingUsers"], json!(["frank"]));
    // Still the old manifest.
    let manifest = d.call(None, "GET", "/api/v2/manifest", None);
    assert_eq!(unb64(&manifest.data()["manifest"]), d.manifest);
    let pending = d.call(None, "GET", "/api/v2/update-manifest", None);
    assert_eq!(unb64(&pending.data()["manifest"]), full);
    assert_eq!(
        pending.data()["message"],
        "1 user still needs to acknowledge the update manifest"
    );
    // A second update while one is pending is refused.
    let again = d.call(
        Some("frank"),
        "POST",
        "/api/v2/update",
        Some(manifest_body(&full)),
    );
    assert_eq!(again.status, 400);
    assert!(again.message().starts_with("update already in progress"));
    // Acknowledging different bytes is refused.
    let mut other = full.clone();
    other.push(b' ');
    let before = d.sealed();
    let wrong = d.call(
        Some("frank"),
        "POST",
        "/api/v2/update-manifest",
        Some(manifest_body(&other)),
    );
    assert_eq!(wrong.status, 400);
    assert_eq!(
        wrong.message(),
        "provided manifest does not match the pending manifest"
    );
    assert_eq!(d.sealed(), before);

    let second = d.call(
        Some("frank"),
        "POST",
        "/api/v2/update-manifest",
        Some(manifest_body(&full)),
    );
    assert_eq!(second.data()["missingAcknowledgments"], 0);
    assert_eq!(
        second.data()["message"],
        "All users have acknowledged the update manifest. Update successfully applied"
    );
    let manifest = d.call(None, "GET", "/api/v2/manifest", None);
    assert_eq!(unb64(&manifest.data()["manifest"]), full);
    assert_eq!(manifest.data()["manifestFingerprint"], fingerprint);
    assert_eq!(
        d.call(None, "GET", "/api/v2/update-manifest", None).status,
        404
    );

    let updates: Vec<String> = log(&d)
        .iter()
        .map(|l| l["update"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        updates,
        [
            "Initial manifest set",
            "Complete Manifest update initiated by user. Waiting for acknowledgments to apply the update",
            "Complete Manifest update acknowledged by user",
            "Complete Manifest updated",
        ]
    );
    // v1: the log as one string, one JSON object per line.
    let v1 = d.call(None, "GET", "/update", None);
    let text = v1.data().as_str().unwrap();
    assert!(text.ends_with('\n'));
    assert_eq!(text.lines().count(), 4);
    for line in text.lines() {
        serde_json::from_str::<Value>(line).unwrap();
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Submits `manifest` as a full update by dave and acknowledges it as frank.
fn full_update(d: &Deployment, manifest: &[u8]) -> Value {
    let first = d.call(
        Some("dave"),
        "POST",
        "/api/v2/update",
        Some(manifest_body(manifest)),
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
        Some(manifest_body(manifest)),
    );
    assert_eq!(
        second.data()["missingAcknowledgments"],
        0,
        "{:?}",
        second.body
    );
    second.data().clone()
}

fn listed(d: &Deployment) -> Vec<(&str, &crate::users::UserCert)> {
    d.users
        .iter()
        .filter(|(n, _)| *n != "eve")
        .map(|(n, c)| (*n, c))
        .collect()
}

#[test]
fn full_update_rotates_the_root_secret_and_issues_new_recovery_secrets() {
    let d = Deployment::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let (_key, public) = crate::tools::rsa_key(tmp.path(), "recovery");
    let mut value: Value = serde_json::from_slice(&users_manifest(&listed(&d), false)).unwrap();
    value["RecoveryKeys"] = json!({"ops": public});
    value["Config"] = json!({"RotateRootSecret": true});
    let update = serde_json::to_vec(&value).unwrap();
    let data = full_update(&d, &update);
    // The recovery keys changed: a recovery secret for the new key.
    assert!(data["recoverySecrets"]["ops"].is_string(), "{data:?}");
    // Shared symmetric keys are regenerated with the root secret; user-defined ones stay.
    let manifest = d.call(None, "GET", "/api/v2/manifest", None);
    assert_eq!(unb64(&manifest.data()["manifest"]), update);
    // The state survives a restart with the new manifest.
    let mut c = d;
    c.c.restart().unwrap();
    let manifest = c.call(None, "GET", "/api/v2/manifest", None);
    assert_eq!(unb64(&manifest.data()["manifest"]), update);
}

#[test]
fn full_updates_turn_hsm_sealing_on_and_off() {
    use quarry_store::frame::{Frame, parse_sealed_key};
    use quarry_testkit::emulator::{Emulator, SEED_POLICY};

    let emulator_dir = tempfile::tempdir().unwrap();
    let mut emulator = Emulator::start(emulator_dir.path()).unwrap();
    emulator.provision(SEED_POLICY).unwrap();
    let mut env = emulator.coordinator_env();
    env.push(("QUARRY_HSM_RETRY_MAX_DELAY".into(), "1s".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut d = Deployment::start(&env);
    let hsm_wrapped = |d: &Deployment| {
        let bytes = std::fs::read(d.c.seal_dir().join("sealed_key")).unwrap();
        matches!(parse_sealed_key(&bytes).unwrap(), Frame::Hsm(_))
    };
    assert!(!hsm_wrapped(&d));

    let mut gated: Value = serde_json::from_slice(&users_manifest(&listed(&d), false)).unwrap();
    gated["Config"] = json!({"FeatureGates": ["AzureHSMSealing"]});
    let gated = serde_json::to_vec(&gated).unwrap();
    let releases = emulator.releases().unwrap();
    full_update(&d, &gated);
    assert!(hsm_wrapped(&d), "the update did not add the HSM layer");
    assert!(emulator.releases().unwrap() > releases);
    restart_until_serving(&mut d);
    assert!(hsm_wrapped(&d));

    let plain = users_manifest(&listed(&d), true);
    full_update(&d, &plain);
    assert!(!hsm_wrapped(&d), "the update did not remove the HSM layer");
    restart_until_serving(&mut d);
    let manifest = d.call(None, "GET", "/api/v2/manifest", None);
    assert_eq!(unb64(&manifest.data()["manifest"]), plain);
}

/// Restarts and polls the status until state 3 (bounded; a hang fails, nothing is timed).
fn restart_until_serving(d: &mut Deployment) {
    d.c.restart().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let status = d.call(None, "GET", "/api/v2/status", None);
        if status.data()["code"] == 3 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not serving after restart: {:?}\n{}",
            status.body,
            d.c.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
