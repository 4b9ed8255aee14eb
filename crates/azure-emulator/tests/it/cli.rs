//! Operator subcommands without a server.

use serde_json::Value;

use crate::common::run_cli;

#[test]
fn sp_create_prints_what_az_prints() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_cli(
        dir.path(),
        &["sp", "create", "--name", "marblerun-coordinator-hsm-sp"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sp: Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys: Vec<_> = sp.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["appId", "displayName", "password", "tenant"]);
    assert_eq!(sp["displayName"], "marblerun-coordinator-hsm-sp");
    assert!(uuid::Uuid::parse_str(sp["appId"].as_str().unwrap()).is_ok());
    assert!(uuid::Uuid::parse_str(sp["tenant"].as_str().unwrap()).is_ok());

    let state = std::fs::read_to_string(dir.path().join("entra.json")).unwrap();
    assert!(!state.contains(sp["password"].as_str().unwrap()));
}

#[test]
fn usage_errors_exit_with_2_and_missing_state_dir_with_1() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_cli(dir.path(), &["sp", "create"]);
    assert_eq!(out.status.code(), Some(2));

    let out = std::process::Command::new(
        quarry_testkit::process::binary("quarry-azure-emulator").unwrap(),
    )
    .args(["tenant"])
    .env_remove("QUARRY_EMULATOR_STATE_DIR")
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--state-dir"));
}

#[test]
fn refuses_a_non_loopback_listener() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_cli(dir.path(), &["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a loopback address"));
}
