//! The operator workflow with the CLI alone, against the real Coordinator in simulation: verify
//! and set a manifest, verify it, read status and certificates over the pinned connection, set
//! and read a secret as a user, apply a package update, lose `sealed_key`, notice the changed
//! certificate, recover with the recovery key, and find the old state and certificate again.

use std::path::Path;

use base64::Engine;
use predicates::str::contains;
use quarry_testkit::coordinator::Coordinator;
use serde_json::{Value, json};

use crate::support::{file, quarry_in, rsa_key};

const SIGNER: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const ENCLAVE: &str = "3333333333333333333333333333333333333333333333333333333333333333";

fn start(dir: &Path) -> Coordinator {
    std::fs::create_dir_all(dir).unwrap();
    Coordinator::start_with(
        dir,
        &[
            ("QUARRY_INSECURE_SIM_MRSIGNER", SIGNER),
            ("QUARRY_INSECURE_SIM_MRENCLAVE", ENCLAVE),
            ("QUARRY_INSECURE_SIM_ISVPRODID", "5"),
            ("QUARRY_INSECURE_SIM_ISVSVN", "2"),
        ],
    )
    .unwrap()
}

/// `quarry ARGS ADDR` plus the verification flags for the simulated Coordinator.
fn run(dir: &Path, c: &Coordinator, args: &[&str]) -> assert_cmd::assert::Assert {
    run_with(dir, c, args, &[])
}

/// `quarry ARGS ADDR AFTER` plus the verification flags.
fn run_with(
    dir: &Path,
    c: &Coordinator,
    args: &[&str],
    after: &[&str],
) -> assert_cmd::assert::Assert {
    let addr = c.client_addr().to_string();
    let mut cmd = quarry_in(dir);
    cmd.args(args).arg(&addr).args(after);
    cmd.arg("--coordinator-cert")
        .arg(dir.join("pin/coordinator-cert.pem"));
    cmd.args([
        "--insecure-simulation",
        "--signer-id",
        SIGNER,
        "--product-id",
        "5",
        "--security-version",
        "2",
    ]);
    cmd.assert()
}

fn manifest(user_cert: &str, recovery_key: &str) -> Vec<u8> {
    let m = json!({
        "Packages": {"backend": {"SignerID": "1111111111111111111111111111111111111111111111111111111111111111", "ProductID": 3, "SecurityVersion": 1}},
        "Marbles": {"web": {"Package": "backend", "Parameters": {"Env": {"KEY": "{{ hex .Secrets.shared_key }}"}}}},
        "Secrets": {
            "shared_key": {"Type": "symmetric-key", "Size": 256, "Shared": true},
            "user_data": {"Type": "plain", "UserDefined": true}
        },
        "Users": {"alice": {"Certificate": user_cert, "Roles": ["updater", "reader", "writer"]}},
        "Roles": {
            "updater": {"ResourceType": "Packages", "ResourceNames": ["backend"], "Actions": ["UpdateSecurityVersion"]},
            "reader": {"ResourceType": "Secrets", "ResourceNames": ["user_data", "shared_key"], "Actions": ["ReadSecret"]},
            "writer": {"ResourceType": "Secrets", "ResourceNames": ["user_data"], "Actions": ["WriteSecret"]}
        },
        "RecoveryKeys": {"alice": recovery_key}
    });
    serde_json::to_vec(&m).unwrap()
}

#[test]
fn operator_workflow_with_the_cli_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut c = start(&dir.join("coordinator"));

    let user = rcgen::generate_simple_self_signed(vec!["alice".into()]).unwrap();
    let cert = file(dir, "alice.crt", user.cert.pem());
    let key = file(dir, "alice.key", user.signing_key.serialize_pem());
    let (recovery_key, recovery_public, _) = rsa_key(dir, "alice-recovery");
    let raw = manifest(&user.cert.pem(), &recovery_public);
    let manifest_path = file(dir, "manifest.json", &raw);
    let m = manifest_path.to_str().unwrap();
    let auth = [
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ];

    // A simulated Coordinator is refused without the explicit flag, and a wrong identity
    // is refused with what differs.
    quarry_in(dir)
        .args(["status", &c.client_addr().to_string(), "--coordinator-cert"])
        .arg(dir.join("other-pin.pem"))
        .assert()
        .code(5)
        .stderr(contains("simulated quote"));
    let mut wrong = quarry_in(dir);
    wrong
        .args(["manifest", "set", m, &c.client_addr().to_string()])
        .args(["--insecure-simulation", "--unique-id", &"44".repeat(32)])
        .arg("--coordinator-cert")
        .arg(dir.join("other-pin.pem"));
    wrong.assert().code(5).stderr(contains(format!(
        "UniqueID is {ENCLAVE}, expected {}",
        "44".repeat(32)
    )));

    // Set, then verify and read back.
    let recovery_data = dir.join("recovery.json");
    run(
        dir,
        &c,
        &["manifest", "set", m, "-r", recovery_data.to_str().unwrap()],
    )
    .code(0)
    .stdout(contains("manifest set, fingerprint"));
    run(dir, &c, &["manifest", "verify", m])
        .code(0)
        .stdout(contains("ok: the coordinator's manifest is"));
    let got = dir.join("got.json");
    run(dir, &c, &["manifest", "get", "-o", got.to_str().unwrap()]).code(0);
    assert_eq!(std::fs::read(&got).unwrap(), raw);
    run(dir, &c, &["status"])
        .code(0)
        .stdout(contains("3: Coordinator is running correctly"));
    let root = dir.join("root.pem");
    run(
        dir,
        &c,
        &["certificate", "root", "-o", root.to_str().unwrap()],
    )
    .code(0);
    let pinned = std::fs::read_to_string(dir.join("pin/coordinator-cert.pem")).unwrap();
    let root_pem = std::fs::read_to_string(&root).unwrap();
    assert!(
        pinned.ends_with(&root_pem),
        "the pin ends with the root certificate"
    );

    // A user sets and reads a secret, and raises a package's security version.
    let secrets = file(
        dir,
        "secrets.json",
        json!({"user_data": {"Key": base64::engine::general_purpose::STANDARD.encode("hello")}})
            .to_string(),
    );
    let mut set = vec!["secret", "set", secrets.to_str().unwrap()];
    set.extend(auth);
    run(dir, &c, &set)
        .code(0)
        .stdout(contains("set 1 secret: user_data"));
    let get = ["secret", "get", "user_data"];
    run_with(dir, &c, &get, &auth)
        .code(0)
        .stdout(contains("aGVsbG8="));
    let update = file(
        dir,
        "update.json",
        r#"{"Packages":{"backend":{"SecurityVersion":3}}}"#,
    );
    let mut apply = vec!["manifest", "update", "apply", update.to_str().unwrap()];
    apply.extend(auth);
    run(dir, &c, &apply)
        .code(0)
        .stdout(contains("update applied"));
    run(dir, &c, &["manifest", "log"])
        .code(0)
        .stdout(contains("SecurityVersion increased"));
    // A downgrade below the applied update is refused locally, from the replayed log.
    let downgrade = file(
        dir,
        "downgrade.json",
        r#"{"Packages":{"backend":{"SecurityVersion":2}}}"#,
    );
    let mut apply_down = vec!["manifest", "update", "apply", downgrade.to_str().unwrap()];
    apply_down.extend(auth);
    run(dir, &c, &apply_down)
        .code(1)
        .stderr(contains("nothing was sent"))
        .stderr(contains("security version 2 is lower than the current 3"));

    // Lose sealed_key: the Coordinator restarts in recovery mode with a temporary root, which
    // the pinned connection refuses, naming the change.
    c.stop();
    std::fs::remove_file(c.seal_dir().join("sealed_key")).unwrap();
    c.restart().unwrap();
    run(dir, &c, &["status"])
        .code(5)
        .stderr(contains("not the pinned root"));

    // Recover with the recovery key; the old root and state come back.
    let data: Value = serde_json::from_slice(&std::fs::read(&recovery_data).unwrap()).unwrap();
    let encrypted = base64::engine::general_purpose::STANDARD
        .decode(data["RecoverySecrets"]["alice"].as_str().unwrap())
        .unwrap();
    let secret = file(dir, "alice.secret", encrypted);
    run(
        dir,
        &c,
        &[
            "recover",
            secret.to_str().unwrap(),
            "-k",
            recovery_key.to_str().unwrap(),
        ],
    )
    .code(0)
    .stdout(contains("Recovery successful."));
    run(dir, &c, &["status"])
        .code(0)
        .stdout(contains("3: Coordinator is running correctly"));
    run_with(dir, &c, &get, &auth)
        .code(0)
        .stdout(contains("aGVsbG8="));
    run(dir, &c, &["manifest", "verify", m]).code(0);
}

/// Self-signed users `alice` and `bob`, written to `dir`: their PEM certificates and, for each,
/// the `--cert`/`--key` arguments that authenticate as them.
fn two_users(dir: &Path) -> (Vec<String>, Vec<[String; 4]>) {
    let mut auth = Vec::new();
    let mut pems = Vec::new();
    for name in ["alice", "bob"] {
        let user = rcgen::generate_simple_self_signed(vec![name.into()]).unwrap();
        let cert = file(dir, &format!("{name}.crt"), user.cert.pem());
        let key = file(
            dir,
            &format!("{name}.key"),
            user.signing_key.serialize_pem(),
        );
        pems.push(user.cert.pem());
        auth.push([
            "--cert".to_owned(),
            cert.display().to_string(),
            "--key".to_owned(),
            key.display().to_string(),
        ]);
    }
    (pems, auth)
}

fn multi_party_manifest(alice: &str, bob: &str, security_version: u64) -> Vec<u8> {
    let m = json!({
        "Packages": {"backend": {"SignerID": "1111111111111111111111111111111111111111111111111111111111111111", "ProductID": 3, "SecurityVersion": security_version}},
        "Marbles": {"web": {"Package": "backend"}},
        "Users": {
            "alice": {"Certificate": alice, "Roles": ["updater"]},
            "bob": {"Certificate": bob, "Roles": ["updater"]}
        },
        "Roles": {"updater": {"ResourceType": "Manifest", "Actions": ["UpdateManifest"]}}
    });
    serde_json::to_vec(&m).unwrap()
}

#[test]
fn multi_party_update_apply_acknowledge_get_and_cancel() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let c = start(&dir.join("coordinator"));
    let (pems, auth) = two_users(dir);
    let as_user = |i: usize| -> Vec<&str> { auth[i].iter().map(String::as_str).collect() };
    let v1 = file(dir, "v1.json", multi_party_manifest(&pems[0], &pems[1], 1));
    let v2 = file(dir, "v2.json", multi_party_manifest(&pems[0], &pems[1], 2));
    let v3 = file(dir, "v3.json", multi_party_manifest(&pems[0], &pems[1], 3));

    run(dir, &c, &["manifest", "set", v1.to_str().unwrap()]).code(0);
    run_with(
        dir,
        &c,
        &["manifest", "update", "apply", v2.to_str().unwrap()],
        &as_user(0),
    )
    .code(0)
    .stdout(contains("update pending: 1 acknowledgement missing"))
    .stdout(contains("bob"));
    run(dir, &c, &["manifest", "update", "get", "--missing"])
        .code(0)
        .stdout(contains("bob"));
    let pending = dir.join("pending.json");
    run(
        dir,
        &c,
        &["manifest", "update", "get", "-o", pending.to_str().unwrap()],
    )
    .code(0);
    assert_eq!(
        std::fs::read(&pending).unwrap(),
        std::fs::read(&v2).unwrap()
    );
    run_with(
        dir,
        &c,
        &["manifest", "update", "acknowledge", v2.to_str().unwrap()],
        &as_user(1),
    )
    .code(0)
    .stdout(contains("Update successfully applied"));
    run(dir, &c, &["manifest", "verify", v2.to_str().unwrap()]).code(0);

    run_with(
        dir,
        &c,
        &["manifest", "update", "apply", v3.to_str().unwrap()],
        &as_user(1),
    )
    .code(0);
    run_with(dir, &c, &["manifest", "update", "cancel"], &as_user(0))
        .code(0)
        .stdout(contains("cancelled"));
    run(dir, &c, &["manifest", "update", "get"])
        .code(1)
        .stderr(contains("no update in progress"));
    // Without a user certificate the Coordinator refuses the update.
    run(
        dir,
        &c,
        &["manifest", "update", "apply", v3.to_str().unwrap()],
    )
    .code(1)
    .stderr(contains("the coordinator refused POST /api/v2/update (401"));
}

/// `multi_party_manifest` with `RecoveryKeys` and an `UpdateThreshold`.
fn recovery_manifest(alice: &str, bob: &str, keys: &[(&str, &str)], threshold: u64) -> Vec<u8> {
    let mut m: Value = serde_json::from_slice(&multi_party_manifest(alice, bob, 1)).unwrap();
    m["RecoveryKeys"] = keys
        .iter()
        .map(|(n, k)| ((*n).to_owned(), json!(k)))
        .collect();
    m["Config"] = json!({ "UpdateThreshold": threshold });
    serde_json::to_vec(&m).unwrap()
}

/// The `RecoverySecrets` of the one JSON line of `stdout` that carries them.
fn printed_recovery_secrets(stdout: &[u8]) -> Value {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find_map(|v| v.get("RecoverySecrets").cloned())
        .expect("recovery secrets printed")
}

#[test]
fn recovery_secrets_issued_by_an_update_are_saved_or_printed_never_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let c = start(&dir.join("coordinator"));
    let (pems, auth) = two_users(dir);
    let as_user = |i: usize| -> Vec<&str> { auth[i].iter().map(String::as_str).collect() };
    let keys: Vec<String> = (0..4)
        .map(|i| rsa_key(dir, &format!("recovery-{i}")).1)
        .collect();
    let (a, b) = (pems[0].as_str(), pems[1].as_str());
    let v1 = file(
        dir,
        "v1.json",
        recovery_manifest(a, b, &[("k0", &keys[0])], 0),
    );
    // Each update changes the recovery keys, so each answers with new recovery secrets.
    let v2 = file(
        dir,
        "v2.json",
        recovery_manifest(a, b, &[("k1", &keys[1])], 1),
    );
    let v3 = file(
        dir,
        "v3.json",
        recovery_manifest(a, b, &[("k2", &keys[2])], 1),
    );
    let v4 = file(
        dir,
        "v4.json",
        recovery_manifest(a, b, &[("k3", &keys[3])], 1),
    );
    run(dir, &c, &["manifest", "set", v1.to_str().unwrap()]).code(0);

    // Applied by the acknowledgement that completes it, without -r: printed.
    run_with(
        dir,
        &c,
        &["manifest", "update", "apply", v2.to_str().unwrap()],
        &as_user(0),
    )
    .code(0)
    .stdout(contains("update pending"));
    let ack = run_with(
        dir,
        &c,
        &["manifest", "update", "acknowledge", v2.to_str().unwrap()],
        &as_user(1),
    )
    .code(0)
    .stderr(contains("new recovery secrets"));
    let printed = printed_recovery_secrets(&ack.get_output().stdout);
    assert!(printed["k1"].is_string(), "{printed}");

    // Applied at once by the submitter (threshold 1), without -r: printed.
    let apply = run_with(
        dir,
        &c,
        &["manifest", "update", "apply", v3.to_str().unwrap()],
        &as_user(1),
    )
    .code(0)
    .stdout(contains("update applied"));
    let printed = printed_recovery_secrets(&apply.get_output().stdout);
    assert!(printed["k2"].is_string(), "{printed}");

    // With -r: saved to the file, and the message says so.
    let saved = dir.join("recovery-v4.json");
    let mut args = as_user(0);
    args.extend(["-r", saved.to_str().unwrap()]);
    run_with(
        dir,
        &c,
        &["manifest", "update", "apply", v4.to_str().unwrap()],
        &args,
    )
    .code(0)
    .stdout(contains("1 new recovery secret saved to"));
    let file: Value = serde_json::from_slice(&std::fs::read(&saved).unwrap()).unwrap();
    assert!(file["RecoverySecrets"]["k3"].is_string(), "{file}");
}

/// A manifest whose one user `alice` may update both the manifest and `backend`'s security
/// version; `marbles` names the Marbles of `backend`.
fn single_updater_manifest(alice: &str, marbles: &[&str]) -> Vec<u8> {
    let m = json!({
        "Packages": {"backend": {"SignerID": "1111111111111111111111111111111111111111111111111111111111111111", "ProductID": 3, "SecurityVersion": 1}},
        "Marbles": marbles.iter().map(|n| ((*n).to_owned(), json!({"Package": "backend"}))).collect::<serde_json::Map<_, _>>(),
        "Users": {"alice": {"Certificate": alice, "Roles": ["updater", "versions"]}},
        "Roles": {
            "updater": {"ResourceType": "Manifest", "Actions": ["UpdateManifest"]},
            "versions": {"ResourceType": "Packages", "ResourceNames": ["backend"], "Actions": ["UpdateSecurityVersion"]}
        }
    });
    serde_json::to_vec(&m).unwrap()
}

fn run_update(dir: &Path, c: &Coordinator, args: &[String]) -> assert_cmd::assert::Assert {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(dir, c, &args)
}

#[test]
fn package_updates_before_a_full_update_are_not_replayed_onto_its_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let c = start(&dir.join("coordinator"));
    let user = rcgen::generate_simple_self_signed(vec!["alice".into()]).unwrap();
    let cert = file(dir, "alice.crt", user.cert.pem());
    let key = file(dir, "alice.key", user.signing_key.serialize_pem());
    let auth = [
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ];
    let v1 = file(
        dir,
        "v1.json",
        single_updater_manifest(&user.cert.pem(), &["web"]),
    );
    // A full update (applied at once: alice is the only updater) that states version 1 again.
    let v2 = file(
        dir,
        "v2.json",
        single_updater_manifest(&user.cert.pem(), &["web", "api"]),
    );
    let to = |n: u64| json!({"Packages": {"backend": {"SecurityVersion": n}}}).to_string();
    let (p5, p2, p3) = (
        file(dir, "p5.json", to(5)),
        file(dir, "p2.json", to(2)),
        file(dir, "p3.json", to(3)),
    );
    let update = |path: &Path| -> Vec<String> {
        let mut args: Vec<String> = ["manifest", "update", "apply"].map(String::from).to_vec();
        args.push(path.display().to_string());
        args.extend(auth.map(String::from));
        args
    };
    let shown_version = |c: &Coordinator| -> Value {
        let out = run(dir, c, &["manifest", "get", "-u", "--output", "json"]).code(0);
        let doc: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
        let m = doc.get("manifest").cloned().unwrap_or(doc);
        m["Packages"]["backend"]["SecurityVersion"].clone()
    };

    run(dir, &c, &["manifest", "set", v1.to_str().unwrap()]).code(0);
    run_update(dir, &c, &update(&p5)).code(0);
    assert_eq!(shown_version(&c), json!(5));
    run_update(dir, &c, &update(&v2))
        .code(0)
        .stdout(contains("update applied"));
    // The Coordinator now holds version 1, the full update's.
    assert_eq!(shown_version(&c), json!(1));
    run_update(dir, &c, &update(&p2)).code(0);
    assert_eq!(shown_version(&c), json!(2));
    // Package updates after the full update still count for the downgrade check.
    let p1 = file(dir, "p1.json", to(1));
    run_update(dir, &c, &update(&p1))
        .code(1)
        .stderr(contains("security version 1 is lower than the current 2"));
    run_update(dir, &c, &update(&p3)).code(0);
}

#[test]
fn identity_is_pinned_at_first_use_and_a_change_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut c = start(&dir.join("coordinator"));
    let pin = dir.join("tofu/coordinator-cert.pem");
    let cert = |c: &Coordinator, extra: &[&str]| {
        let mut cmd = quarry_in(dir);
        cmd.args([
            "certificate",
            "chain",
            &c.client_addr().to_string(),
            "-o",
            "-",
        ])
        .args(["--insecure-simulation", "--coordinator-cert"])
        .arg(&pin)
        .args(extra);
        cmd.assert()
    };
    cert(&c, &["--nonce", "fresh"])
        .code(0)
        .stdout(contains("-----BEGIN CERTIFICATE-----"))
        .stderr(contains("pinned the coordinator's identity (first use"))
        .stderr(contains(format!("SignerID {SIGNER}")));
    let identity: Value = serde_json::from_slice(
        &std::fs::read(dir.join("tofu/coordinator-cert.pem.identity.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(identity["SecurityVersion"], 2);

    // An older enclave version behind the same address is refused, naming the field.
    c.restart_with("QUARRY_INSECURE_SIM_ISVSVN", Some("1"))
        .unwrap();
    cert(&c, &[])
        .code(5)
        .stderr(contains("SecurityVersion is 1, expected at least 2"));

    // MarbleRun's era-config.json decides instead of the pin when given (keys in any case).
    let era = file(
        dir,
        "era-config.json",
        json!({"signerid": SIGNER, "productid": 5, "securityversion": 1, "debug": false})
            .to_string(),
    );
    cert(&c, &["--era-config", era.to_str().unwrap()])
        .code(5)
        .stderr(contains("root certificate changed"));
    cert(
        &c,
        &[
            "--era-config",
            era.to_str().unwrap(),
            "--trust-new-coordinator",
        ],
    )
    .code(0)
    .stderr(contains("pinned the new one"));
}

#[test]
fn yaml_manifest_is_uploaded_as_compact_sorted_json_and_json_output_parses() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let c = start(&dir.join("coordinator"));
    let yaml = "Marbles:\n  web:\n    Package: backend\nPackages:\n  backend:\n    SignerID: \
                \"1111111111111111111111111111111111111111111111111111111111111111\"\n    \
                SecurityVersion: 1\n    ProductID: 3\n";
    let path = file(dir, "m.yaml", yaml);
    let expected = quarry_manifest::ManifestDocument::from_yaml(yaml)
        .unwrap()
        .fingerprint();
    quarry_in(dir)
        .args(["manifest", "signature"])
        .arg(&path)
        .assert()
        .code(0)
        .stdout(format!("{expected}\n"));

    run(dir, &c, &["manifest", "set", path.to_str().unwrap()]).code(0);
    let out = run(dir, &c, &["status", "--output", "json"])
        .code(0)
        .get_output()
        .stdout
        .clone();
    let status: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(status["code"], 3);
    let out = run(dir, &c, &["manifest", "get", "--output", "json"])
        .code(0)
        .get_output()
        .stdout
        .clone();
    let got: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(got["manifestFingerprint"], expected);
    assert_eq!(got["manifest"]["Packages"]["backend"]["ProductID"], 3);
}

#[test]
fn status_names_recovery_mode_behind_a_changed_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut c = start(&dir.join("coordinator"));
    let user = rcgen::generate_simple_self_signed(vec!["alice".into()]).unwrap();
    let (_, recovery_public, _) = rsa_key(dir, "alice-recovery");
    let m = file(dir, "m.json", manifest(&user.cert.pem(), &recovery_public));
    run(dir, &c, &["manifest", "set", m.to_str().unwrap()]).code(0);

    c.stop();
    std::fs::remove_file(c.seal_dir().join("sealed_key")).unwrap();
    c.restart().unwrap();
    run(dir, &c, &["status"])
        .code(5)
        .stderr(contains("not the pinned root"))
        .stderr(contains("recovery mode (state 1)"))
        .stderr(contains("do not use --trust-new-coordinator"));
}

#[test]
fn status_of_the_marble_api_hints_at_the_client_api() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut c = start(&dir.join("coordinator"));
    let marble_api = c.service().addr("marble_api").to_string();
    let hint = format!("is {marble_api} the Marble API? the Client API is usually on port 4433");

    // Nothing pinned: the quote request fails when the server insists on a client certificate.
    quarry_in(dir)
        .args([
            "status",
            &marble_api,
            "--insecure-simulation",
            "--coordinator-cert",
        ])
        .arg(dir.join("fresh/coordinator-cert.pem"))
        .assert()
        .code(4)
        .stderr(contains(hint.as_str()));

    // Pinned: the Marble root is not the pinned root, and the status says where it came from.
    run(dir, &c, &["certificate", "root", "-o", "-"]).code(0);
    quarry_in(dir)
        .args(["status", &marble_api, "--coordinator-cert"])
        .arg(dir.join("pin/coordinator-cert.pem"))
        .assert()
        .code(5)
        .stderr(contains("not the pinned root"))
        .stderr(contains(hint.as_str()));
}

#[test]
fn status_names_the_wait_for_a_key_release_behind_a_changed_certificate() {
    use quarry_testkit::emulator::{Emulator, SEED_POLICY};

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut emulator = Emulator::start(dir).unwrap();
    emulator.provision(SEED_POLICY).unwrap();
    let env = emulator.coordinator_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut c = Coordinator::start_with(dir, &env).unwrap();
    let addr = c.client_addr().to_string();
    let pin = dir.join("pin/coordinator-cert.pem");
    let gated = json!({
        "Packages": {"backend": {"SignerID": SIGNER, "ProductID": 3, "SecurityVersion": 1}},
        "Marbles": {"web": {"Package": "backend"}},
        "Config": {"FeatureGates": ["AzureHSMSealing"]}
    });
    let m = file(dir, "gated.json", gated.to_string());
    quarry_in(dir)
        .args(["manifest", "set"])
        .arg(&m)
        .args([&addr, "--insecure-simulation", "--coordinator-cert"])
        .arg(&pin)
        .assert()
        .code(0);

    // The emulator is down: the restarted Coordinator waits for the key release (state 0) and
    // serves a temporary certificate meanwhile.
    emulator.stop();
    c.restart().unwrap();
    quarry_in(dir)
        .args(["status", &c.client_addr().to_string(), "--coordinator-cert"])
        .arg(&pin)
        .assert()
        .code(5)
        .stderr(contains("not the pinned root"))
        .stderr(contains("waits for an HSM key release (state 0)"))
        .stderr(contains("do not use --trust-new-coordinator"));
}

/// Makes the Coordinator's next commit fail after it replaced `sealed_data` (its outcome is in
/// doubt): `sealed_key` becomes a directory the new key cannot be renamed over.
fn make_next_commit_in_doubt(c: &Coordinator) {
    let key = c.seal_dir().join("sealed_key");
    if key.exists() {
        std::fs::remove_file(&key).unwrap();
    }
    std::fs::create_dir(&key).unwrap();
}

#[test]
fn recovery_secrets_of_a_write_in_doubt_are_saved_or_printed_never_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let keys: Vec<String> = (0..2)
        .map(|i| rsa_key(tmp.path(), &format!("recovery-{i}")).1)
        .collect();
    let (pems, users) = two_users(tmp.path());
    let (pem, bob) = (&pems[0], &pems[1]);
    let auth: Vec<&str> = users[0].iter().map(String::as_str).collect();

    // The first manifest, with -r: the secrets are saved and the error says where.
    let dir = &tmp.path().join("first");
    let c = start(&dir.join("coordinator"));
    let v1 = file(
        dir,
        "v1.json",
        recovery_manifest(pem, bob, &[("k0", &keys[0])], 1),
    );
    make_next_commit_in_doubt(&c);
    let saved = dir.join("recovery.json");
    run_with(
        dir,
        &c,
        &["manifest", "set", v1.to_str().unwrap()],
        &["-r", saved.to_str().unwrap()],
    )
    .code(1)
    .stderr(contains("restart the Coordinator"))
    .stderr(contains("the recovery secrets it issued were saved to"));
    let file_json: Value = serde_json::from_slice(&std::fs::read(&saved).unwrap()).unwrap();
    assert!(
        file_json["RecoverySecrets"]["k0"].is_string(),
        "{file_json}"
    );

    // An update applied at once, without -r: printed.
    let dir = &tmp.path().join("update");
    let c = start(&dir.join("coordinator"));
    run(dir, &c, &["manifest", "set", v1.to_str().unwrap()]).code(0);
    let v2 = file(
        dir,
        "v2.json",
        recovery_manifest(pem, bob, &[("k1", &keys[1])], 1),
    );
    make_next_commit_in_doubt(&c);
    let apply = run_with(
        dir,
        &c,
        &["manifest", "update", "apply", v2.to_str().unwrap()],
        &auth,
    )
    .code(1)
    .stderr(contains("restart the Coordinator"))
    .stderr(contains("store them safely"));
    let printed = printed_recovery_secrets(&apply.get_output().stdout);
    assert!(printed["k1"].is_string(), "{printed}");
}
