//! Start-up as an operator gets it wrong: a start-up manifest in recovery mode is never applied
//! (it would discard the state, as it does in MarbleRun), an unreadable one stops the
//! Coordinator naming the file, and bad `EDG_COORDINATOR_*` values stop it naming the variable
//! and the part that is wrong, before anything is written.

use quarry_testkit::coordinator::Coordinator;

use crate::tools::{Trust, file, manifest, rsa_key, sealed_files};
use crate::workflow::{set_manifest, status};

#[test]
fn a_startup_manifest_is_never_applied_in_recovery_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut c = Coordinator::start(dir).unwrap();
    let (_, public) = rsa_key(dir, "k");
    set_manifest(&c, &Trust::Insecure, dir, &manifest(&[("k", &public)], 0));
    std::fs::remove_file(c.seal_dir().join("sealed_key")).unwrap();
    c.restart().unwrap();
    let before = sealed_files(&c.seal_dir());

    let other = file(dir, "other.json", manifest(&[], 0));
    c.restart_with("EDG_STARTUP_MANIFEST", Some(other.to_str().unwrap()))
        .unwrap();
    assert_eq!(status(&c, &Trust::Insecure), 1);
    assert_eq!(sealed_files(&c.seal_dir()), before);
    assert!(
        c.log()
            .contains("startup manifest not applied in this state"),
        "{}",
        c.log()
    );
}

#[test]
fn bad_settings_stop_the_coordinator_naming_what_is_wrong() {
    let cases: [(&str, &str, &str); 5] = [
        (
            "EDG_COORDINATOR_CLIENT_ADDR",
            "nowhere",
            "EDG_COORDINATOR_CLIENT_ADDR: invalid value",
        ),
        (
            "EDG_COORDINATOR_MESH_ADDR",
            "127.0.0.1:70000",
            "port: number too large",
        ),
        (
            "EDG_COORDINATOR_PROMETHEUS_ADDR",
            "metrics:9944",
            "host \"metrics\"",
        ),
        (
            "EDG_STARTUP_MANIFEST",
            "DIR/missing.json",
            "reading EDG_STARTUP_MANIFEST",
        ),
        (
            "EDG_STARTUP_MANIFEST",
            "DIR/broken.json",
            "invalid manifest",
        ),
    ];
    for (name, value, expected) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        file(dir, "broken.json", b"{\"Packages\": ");
        let value = value.replace("DIR", dir.to_str().unwrap());
        let err = Coordinator::start_with(dir, &[(name, &value)])
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{name}={value}: {err}");
        assert!(err.contains("exited"), "{name}={value}: {err}");
        assert!(sealed_files(&dir.join("seal")).is_empty(), "{name}={value}");
    }
}

#[test]
fn sigterm_stops_the_coordinator_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Coordinator::start(tmp.path()).unwrap();
    let pid = c.service().pid().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    // Waits for the exit (bounded so that a Coordinator ignoring the signal fails the test).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let status = loop {
        if let Some(status) = c.service().try_wait() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the coordinator ignored SIGTERM:\n{}",
            c.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}\n{}", c.log());
    assert!(
        c.log().contains("stopping signal=\"SIGTERM\""),
        "{}",
        c.log()
    );
}
