//! `quarry dev`: the whole walk-through against the real sibling binaries, and the failures a
//! new user can meet (a used directory, a missing binary), each naming where it stopped.

use std::path::{Path, PathBuf};

use predicates::prelude::*;
use quarry_testkit::process::binary;

use crate::support::quarry_in;

/// The directory of the sibling binaries, built first.
fn bin_dir() -> PathBuf {
    for name in [
        "quarry-azure-emulator",
        "quarry-coordinator",
        "quarry-premain",
    ] {
        binary(name).unwrap();
    }
    binary("quarry-coordinator")
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf()
}

fn dev_in(tmp: &Path, bins: &Path) -> assert_cmd::Command {
    let mut cmd = quarry_in(tmp);
    cmd.env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("QUARRY_BIN_DIR", bins);
    cmd
}

#[test]
fn once_runs_every_step_and_leaves_the_files_it_names() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("deployment");
    let out = dev_in(tmp.path(), &bin_dir())
        .args(["dev", "--once", "--dir"])
        .arg(&dir)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8(out).unwrap();
    for step in 1..=7 {
        assert!(
            out.contains(&format!("[{step}/7]")),
            "step {step} missing:\n{out}"
        );
    }
    assert!(
        out.contains("DEMO_KEY_HEX equals secrets/demo-key.hex"),
        "{out}"
    );
    assert!(out.contains("status 3"), "{out}");
    assert!(out.contains("every step passed"), "{out}");

    // The guide's policy, unchanged in meaning, and the env file with the seed's names.
    let policy: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("emulator/policy.json")).unwrap()).unwrap();
    let seed: serde_json::Value =
        serde_json::from_str(quarry_testkit::emulator::SEED_POLICY).unwrap();
    assert_eq!(policy, seed);
    let env = std::fs::read_to_string(dir.join("emulator/coordinator.env")).unwrap();
    for name in [
        "EDG_AZURE_HSM_VAULT_URL",
        "EDG_AZURE_HSM_KEY_NAME",
        "EDG_MAA_URL",
        "EDG_AZURE_CLIENT_ID",
        "EDG_AZURE_TENANT_ID",
        "EDG_AZURE_CLIENT_SECRET",
    ] {
        assert!(
            env.contains(name),
            "{name} missing from the env file:\n{env}"
        );
    }
    // What the sample Marble received, and the sealed state with its HSM layer.
    let key = std::fs::read_to_string(dir.join("marble/secrets/demo-key.hex")).unwrap();
    assert_eq!(key.len(), 64);
    assert!(dir.join("seal/sealed_key").is_file());
    assert!(dir.join("coordinator-root.pem").is_file());
    // The printed curl command points at the saved root certificate.
    assert!(out.contains(&format!(
        "curl --cacert {}",
        std::fs::canonicalize(&dir).unwrap().join("coordinator-root.pem").display()
    )));
    // Output to files and pipes is plain text: no terminal escape codes in any log.
    assert!(!out.contains('\u{1b}'), "escape codes on stdout: {out:?}");
    for log in [
        "quarry-coordinator.log",
        "emulator/quarry-azure-emulator.log",
        "marble/quarry-premain.log",
    ] {
        let text = std::fs::read_to_string(dir.join(log)).unwrap();
        assert!(!text.is_empty(), "{log} is empty");
        assert!(!text.contains('\u{1b}'), "escape codes in {log}: {text:?}");
    }
}

#[test]
fn a_used_directory_is_refused_before_anything_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("used");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("leftover"), "x").unwrap();
    dev_in(tmp.path(), tmp.path())
        .args(["dev", "--once", "--dir"])
        .arg(&dir)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("is not empty"));
}

#[test]
fn a_missing_binary_fails_step_one_and_says_which() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("no-binaries");
    std::fs::create_dir_all(&empty).unwrap();
    dev_in(tmp.path(), &empty)
        .args(["dev", "--once", "--dir"])
        .arg(tmp.path().join("run"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("step 1 failed"))
        .stderr(predicate::str::contains("quarry-azure-emulator"))
        .stderr(predicate::str::contains(format!(
            "not found in {}",
            empty.display()
        )));
}

#[test]
fn a_bin_dir_that_does_not_exist_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let absent = tmp.path().join("nonexistent");
    dev_in(tmp.path(), &absent)
        .args(["dev", "--once", "--dir"])
        .arg(tmp.path().join("run"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "quarry-azure-emulator: not found in {} (the directory QUARRY_BIN_DIR names)",
            absent.display()
        )));
}

#[test]
fn a_coordinator_that_dies_while_running_is_reported_with_its_log() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("deployment");
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("quarry"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("QUARRY_BIN_DIR", bin_dir())
        .env("XDG_CONFIG_HOME", tmp.path().join("config"))
        .current_dir(tmp.path())
        .args(["dev", "--dir"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            panic!("quarry dev stopped before the walk-through ended:\n{seen}");
        }
        seen.push_str(&line);
        if line.contains("every step passed; press Ctrl-C to stop") {
            break;
        }
    }
    // The log file named in the summary exists.
    let emulator_log = dir.join("emulator").join("quarry-azure-emulator.log");
    assert!(seen.contains(&emulator_log.display().to_string()), "{seen}");
    assert!(emulator_log.is_file());

    let ready: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("quarry-coordinator.ready")).unwrap())
            .unwrap();
    let pid = ready["pid"].as_u64().unwrap().to_string();
    let killed = Command::new("kill").args(["-KILL", &pid]).status().unwrap();
    assert!(killed.success());

    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("quarry-coordinator exited on its own"),
        "{stderr}"
    );
    assert!(stderr.contains("--- end of the log ---"), "{stderr}");
}

#[test]
fn the_quick_start_can_be_repeated_without_a_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let bins = bin_dir();
    for _ in 0..2 {
        dev_in(tmp.path(), &bins)
            .args(["dev", "--once"])
            .assert()
            .success();
    }
    let runs: Vec<_> = std::fs::read_dir(tmp.path().join("quarry-dev"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(runs.iter().all(|r| r.starts_with("run-")), "{runs:?}");
}
