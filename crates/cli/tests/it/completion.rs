//! `quarry completion SHELL` into a pipe whose reader is gone, as `| head -1` leaves it.

use std::process::{Command, Stdio};

#[test]
fn completion_into_a_closed_pipe_exits_0_without_a_panic() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        // The reader is closed before the process starts, so every write fails with EPIPE,
        // whatever the pipe's capacity.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let output = Command::new(assert_cmd::cargo::cargo_bin("quarry"))
            .env_clear()
            .args(["completion", shell])
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{shell}: {stderr}");
        assert!(stderr.is_empty(), "{shell}: {stderr}");
    }
}

#[test]
fn completion_script_names_the_commands() {
    let output = Command::new(assert_cmd::cargo::cargo_bin("quarry"))
        .env_clear()
        .args(["completion", "bash"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let script = String::from_utf8(output.stdout).unwrap();
    assert!(script.contains("quarry"), "{script}");
    assert!(script.contains("manifest"), "{script}");
}
