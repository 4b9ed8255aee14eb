//! Bad input to the Coordinator commands: one line naming the cause, and the exit code of
//! DESIGN ("Exit codes"), without a Coordinator where the failure is local.

use std::io::{Read, Write};
use std::net::TcpListener;

use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey};
use predicates::prelude::*;
use predicates::str::contains;

use crate::support::{closed_port, file, quarry_in, rsa_key};

fn one_line() -> impl Predicate<str> {
    predicate::function(|s: &str| s.lines().count() == 1 && s.starts_with("error: "))
}

#[test]
fn unreadable_manifest_is_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", closed_port());
    quarry_in(dir.path())
        .args(["manifest", "set", "missing.json", &addr])
        .assert()
        .code(3)
        .stderr(contains("cannot read manifest missing.json"))
        .stderr(one_line());
}

#[test]
fn invalid_manifest_is_refused_before_any_connection() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = file(
        dir.path(),
        "m.json",
        r#"{"Packages":{"p":{"SignerID":"11"}},"Marbles":{"web":{"Package":"nope"}}}"#,
    );
    // Nothing listens on the address: exit 1 (not 4) proves the check ran first.
    let addr = format!("127.0.0.1:{}", closed_port());
    quarry_in(dir.path())
        .args(["manifest", "set"])
        .arg(&manifest)
        .arg(&addr)
        .assert()
        .code(1)
        .stderr(contains("is invalid, nothing was sent"))
        .stderr(contains("Marbles[\"web\"].Package"))
        .stderr(one_line());
}

#[test]
fn coordinator_down_is_exit_4() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", closed_port());
    quarry_in(dir.path())
        .args(["status", &addr])
        .assert()
        .code(4)
        .stderr(contains(format!("connection to {addr} failed")))
        .stderr(one_line());
}

#[test]
fn address_of_something_else_is_exit_4() {
    // A server that answers plain HTTP where the Coordinator's TLS is expected.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 512];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let dir = tempfile::tempdir().unwrap();
    quarry_in(dir.path())
        .args(["status", &addr])
        .assert()
        .code(4)
        .stderr(contains(format!("connection to {addr} failed")))
        .stderr(one_line());
}

#[test]
fn malformed_address_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    quarry_in(dir.path())
        .args(["status", "host:notaport"])
        .assert()
        .code(2)
        .stderr(contains("port \"notaport\" is not a number"));
}

#[test]
fn recovery_key_that_does_not_match_is_exit_1_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, right) = rsa_key(dir.path(), "right");
    let (wrong_path, _, _) = rsa_key(dir.path(), "wrong");
    let encrypting = OaepPublicEncryptingKey::new(right.public_key()).unwrap();
    let mut ciphertext = vec![0u8; encrypting.ciphertext_size()];
    let len = encrypting
        .encrypt(&OAEP_SHA256_MGF1SHA256, &[7u8; 32], &mut ciphertext, None)
        .unwrap()
        .len();
    ciphertext.truncate(len);
    let secret = file(dir.path(), "secret.bin", &ciphertext);
    let addr = format!("127.0.0.1:{}", closed_port());
    quarry_in(dir.path())
        .arg("recover")
        .arg(&secret)
        .arg(&addr)
        .arg("-k")
        .arg(&wrong_path)
        .assert()
        .code(1)
        .stderr(contains("does not decrypt the recovery secret"))
        .stderr(one_line());
}

#[test]
fn unreadable_recovery_key_is_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let secret = file(dir.path(), "secret.bin", [1u8; 32]);
    let key = file(dir.path(), "key.pem", "not a key");
    let addr = format!("127.0.0.1:{}", closed_port());
    quarry_in(dir.path())
        .arg("recover")
        .arg(&secret)
        .arg(&addr)
        .arg("-k")
        .arg(&key)
        .assert()
        .code(3)
        .stderr(contains("private key"))
        .stderr(one_line());
}

#[test]
fn malformed_era_config_is_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let era = file(dir.path(), "era.json", r#"{"SignerID": 5}"#);
    // Read before connecting: exit 3 although nothing listens.
    let addr = format!("127.0.0.1:{}", closed_port());
    quarry_in(dir.path())
        .args(["status", &addr, "--era-config"])
        .arg(&era)
        .assert()
        .code(3)
        .stderr(contains("SignerID must be a hex string"))
        .stderr(one_line());
}

#[test]
fn user_key_that_does_not_match_the_certificate_is_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let a = rcgen::generate_simple_self_signed(vec!["alice".into()]).unwrap();
    let b = rcgen::generate_simple_self_signed(vec!["bob".into()]).unwrap();
    let cert = file(dir.path(), "alice.crt", a.cert.pem());
    let key = file(dir.path(), "bob.key", b.signing_key.serialize_pem());
    let addr = format!("127.0.0.1:{}", closed_port());
    quarry_in(dir.path())
        .args(["manifest", "update", "cancel", &addr, "--cert"])
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .assert()
        .code(1)
        .stderr(contains("does not match the certificate"))
        .stderr(one_line());
}
