//! `quarry manifest check`: output, paths and exit codes on real files.

use std::path::PathBuf;

use assert_cmd::Command;
use predicates::prelude::*;
use predicates::str::contains;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../manifest/tests/data")
        .join(name)
}

fn quarry() -> Command {
    let mut cmd = Command::cargo_bin("quarry").unwrap();
    cmd.env_clear();
    cmd
}

/// The standalone snippet of the HSM documentation, as written: it expands `${client_id}` and
/// the others from the environment the operator ran the `jq` and `az` commands in.
const SEED_STANDALONE: &str = r#"# Azure credentials
export EDG_AZURE_CLIENT_ID=${client_id}
export EDG_AZURE_CLIENT_SECRET=${client_secret}
export EDG_AZURE_TENANT_ID=${tenant_id}

# HSM key information
export EDG_AZURE_HSM_KEY_NAME="marblerun-skr-key"
export EDG_AZURE_HSM_KEY_VERSION="" # Optionally, set to use a specific key version
export EDG_AZURE_HSM_VAULT_URL=${vault_url}

# MAA URL. Make sure this matches the location of your deployment, and the value you set in the key policy
export EDG_MAA_URL="https://shareduks.uks.attest.azure.net"
"#;

#[test]
fn accepts_marblerun_style_manifests_and_their_yaml_twins() {
    for name in [
        "marblerun-style.json",
        "marblerun-style.yaml",
        "lowercase-keys.json",
        "lowercase-keys.yaml",
    ] {
        quarry()
            .args(["manifest", "check"])
            .arg(data(name))
            .assert()
            .code(0)
            .stdout(contains("is valid, fingerprint ").and(contains("warning").not()));
    }
}

#[test]
fn prints_the_fingerprint_of_the_bytes_that_would_be_uploaded() {
    let json = std::fs::read(data("marblerun-style.json")).unwrap();
    let yaml = std::fs::read_to_string(data("marblerun-style.yaml")).unwrap();
    let converted = quarry_manifest::ManifestDocument::from_yaml(&yaml).unwrap();
    for (name, expected) in [
        ("marblerun-style.json", quarry_manifest::fingerprint(&json)),
        (
            "marblerun-style.yaml",
            quarry_manifest::fingerprint(converted.raw()),
        ),
    ] {
        quarry()
            .args(["manifest", "check"])
            .arg(data(name))
            .assert()
            .code(0)
            .stdout(contains(format!("fingerprint {expected}\n")));
    }
}

#[test]
fn reports_every_problem_with_its_path_and_exits_1() {
    quarry()
        .args(["manifest", "check"])
        .arg(data("invalid.json"))
        .assert()
        .code(1)
        .stdout(
            contains(r#"error: Marbles["frontend"].Package: package "nope" is not defined in Packages [C3]"#)
                .and(contains(r#"error: Marbles["backendFirst"].TLS[1]: tls tag "missing""#))
                .and(contains(r#"error: Secrets["apiKey"].Type: unknown secret type "Symmetric-Key""#))
                .and(contains("error: Config.SealMode: unknown seal mode \"productkey\""))
                .and(contains("error: Config.RecoveryThreshold: recovery threshold 1"))
                .and(contains(r#"error: Roles["secretReader"].ResourceNames[2]"#))
                .and(contains("warning: Config.Unknown: unknown key, ignored")),
        )
        .stderr(contains("invalid manifest (6 problems)"));
}

fn write_env(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

#[test]
fn hsm_gate_is_valid_with_the_seed_env_file() {
    let env = write_env(SEED_STANDALONE);
    for name in ["hsm-sealing.json", "hsm-sealing.yaml"] {
        quarry()
            .env("client_id", "00000000-1111-2222-3333-444444444444")
            .env("client_secret", "s3cr3t~value")
            .env("tenant_id", "55555555-6666-7777-8888-999999999999")
            .env("vault_url", "https://marblerunhsm.managedhsm.azure.net/")
            .args(["manifest", "check"])
            .arg(data(name))
            .arg("--env-file")
            .arg(env.path())
            .assert()
            .code(0)
            .stdout(contains("is valid"));
    }
}

#[test]
fn hsm_gate_is_invalid_without_it_naming_the_missing_variables() {
    quarry()
        .args(["manifest", "check"])
        .arg(data("hsm-sealing.json"))
        .assert()
        .code(1)
        .stdout(contains(
            "error: Config.FeatureGates[0]: AzureHSMSealing needs these environment variables of \
             the coordinator: EDG_MAA_URL, EDG_AZURE_HSM_VAULT_URL, EDG_AZURE_HSM_KEY_NAME, \
             EDG_AZURE_CLIENT_ID, EDG_AZURE_TENANT_ID, EDG_AZURE_CLIENT_SECRET (or \
             EDG_AZURE_AUTHORITY_HOST and EDG_AZURE_FEDERATED_TOKEN_FILE) [C22]",
        ));
    let partial = write_env("EDG_MAA_URL=https://maa.example\nEDG_AZURE_CLIENT_SECRET=x\n");
    quarry()
        .args(["manifest", "check"])
        .arg(data("hsm-sealing.json"))
        .arg("--env-file")
        .arg(partial.path())
        .assert()
        .code(1)
        .stdout(
            contains("EDG_AZURE_HSM_VAULT_URL, EDG_AZURE_HSM_KEY_NAME, EDG_AZURE_CLIENT_ID, EDG_AZURE_TENANT_ID [C22]")
                .and(contains("EDG_MAA_URL,").not()),
        );
}

#[test]
fn unreadable_or_unparsable_input_exits_3() {
    quarry()
        .args(["manifest", "check", "/nonexistent/manifest.json"])
        .assert()
        .code(3)
        .stderr(contains("cannot read /nonexistent/manifest.json"));
    let broken = write_env("{\n  \"Packages\": {,}\n}\n");
    quarry()
        .args(["manifest", "check"])
        .arg(broken.path())
        .assert()
        .code(3)
        .stderr(contains("invalid json").and(contains("line 2")));
    let bad_env = write_env("A=b c\n");
    quarry()
        .args(["manifest", "check"])
        .arg(data("hsm-sealing.json"))
        .arg("--env-file")
        .arg(bad_env.path())
        .assert()
        .code(3)
        .stderr(contains("line 1"));
}

#[test]
fn wrong_types_exit_1_with_paths() {
    let file = write_env(r#"{"Packages": {"p": {"Debug": "yes"}}, "Marbles": []}"#);
    quarry()
        .args(["manifest", "check"])
        .arg(file.path())
        .assert()
        .code(1)
        .stdout(
            contains(r#"error: Packages["p"].Debug: expected true or false, found a string"#).and(
                contains("error: Marbles: expected an object, found an array"),
            ),
        );
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    quarry().args(["manifest", "check"]).assert().code(2);
    quarry().args(["manifest", "frobnicate"]).assert().code(2);
    quarry().assert().code(2);
    quarry()
        .args(["manifest", "check", "--help"])
        .assert()
        .code(0)
        .stdout(contains("--env-file"));
    quarry()
        .arg("--version")
        .assert()
        .code(0)
        .stdout(contains("quarry"));
}

#[test]
fn one_problem_is_counted_in_the_singular() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("one.json");
    std::fs::write(
        &path,
        r#"{"Packages":{"p":{"Debug":true}},"Marbles":{"m":{"Package":"absent"}}}"#,
    )
    .unwrap();
    quarry()
        .args(["manifest", "check"])
        .arg(&path)
        .assert()
        .code(1)
        .stderr(contains("invalid manifest (1 problem)"));
}

#[test]
fn json_output_is_one_object_with_violations_and_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.json");
    std::fs::write(
        &path,
        r#"{"Packages":{"p":{"Debug":true}},"Marbles":{"m":{"Package":"absent"}},"Extra":1}"#,
    )
    .unwrap();
    let output = quarry()
        .args(["--output", "json", "manifest", "check"])
        .arg(&path)
        .assert()
        .code(1)
        .get_output()
        .clone();
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["valid"], false, "{report}");
    let violations = report["violations"].as_array().unwrap();
    assert_eq!(violations.len(), 1, "{report}");
    assert_eq!(violations[0]["path"], r#"Marbles["m"].Package"#, "{report}");
    assert_eq!(violations[0]["code"], "C3", "{report}");
    assert!(
        violations[0]["message"]
            .as_str()
            .unwrap()
            .contains("absent")
    );
    let warnings = report["warnings"].as_array().unwrap();
    assert_eq!(warnings[0]["path"], "Extra", "{report}");
    assert_eq!(warnings[0]["code"], "unknown-key", "{report}");
    let error: serde_json::Value = serde_json::from_slice(&output.stderr).unwrap();
    assert_eq!(error["exitCode"], 1);

    // A valid manifest: valid, its fingerprint, no findings; the option may come last.
    let valid = data("marblerun-style.json");
    let output = quarry()
        .args(["manifest", "check"])
        .arg(&valid)
        .args(["--output", "json"])
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let report: serde_json::Value = serde_json::from_slice(&output).unwrap();
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(
        report["fingerprint"],
        quarry_manifest::fingerprint(&std::fs::read(&valid).unwrap()),
    );
    assert_eq!(report["violations"], serde_json::json!([]));

    // An unreadable file is an error object on standard error, exit 3.
    let output = quarry()
        .args(["--output", "json", "manifest", "check"])
        .arg(dir.path().join("absent.json"))
        .assert()
        .code(3)
        .get_output()
        .clone();
    assert!(output.stdout.is_empty());
    let error: serde_json::Value = serde_json::from_slice(&output.stderr).unwrap();
    assert_eq!(error["exitCode"], 3);
}
