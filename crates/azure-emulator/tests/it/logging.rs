//! The server's log as it lands in a file: plain text, no terminal escape codes.

use std::process::Command;

use quarry_testkit::process::{Service, binary};

#[tokio::test]
async fn log_written_to_a_file_has_no_ansi_escape_codes() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut cmd = Command::new(binary("quarry-azure-emulator").unwrap());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(&state)
        .env("QUARRY_LOG", "debug")
        .env_remove("NO_COLOR");
    // Standard error goes to `quarry-azure-emulator.log` in `dir`.
    let service = Service::spawn("quarry-azure-emulator", cmd, dir.path()).unwrap();
    let ca = std::fs::read(state.join("ca.pem")).unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
        .build()
        .unwrap();
    let port = service.addr("https").port();
    // The request is logged before its answer is sent, and "listening" before any request is
    // accepted, so both lines are in the file once the answer is here.
    let r = client
        .get(format!("https://localhost:{port}/certs"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());

    let log = service.stderr();
    assert!(log.contains("listening"), "{log}");
    assert!(log.contains("request"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "escape codes in the log file: {log:?}"
    );
}
