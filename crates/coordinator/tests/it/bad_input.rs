//! Bad input: every refusal is a JSend answer that says what was wrong, and nothing changes —
//! neither the state nor a byte of the sealed files.

use quarry_testkit::coordinator::Coordinator;
use serde_json::json;

use crate::tools::{
    Answer, Trust, b64, curl, file, manifest, openssl, rsa_key, sealed_files, unb64,
};
use crate::workflow::{prepare_upload, save_root, set_manifest, status};

fn post(c: &Coordinator, path: &str, body: &[u8]) -> Answer {
    let dir = tempfile::tempdir().unwrap();
    let body = file(dir.path(), "body", body);
    curl(&Trust::Insecure, "POST", &c.url(path), Some(&body), &[])
}

fn assert_fail(answer: &Answer, status: u16, needle: &str) {
    assert_eq!(answer.status, status, "{:?}", answer.body);
    assert_eq!(answer.body["status"], "fail", "{:?}", answer.body);
    assert_eq!(answer.content_type, "application/json");
    assert!(
        answer.message().contains(needle),
        "{:?} lacks {needle:?}",
        answer.message()
    );
}

#[test]
fn manifest_bodies_that_are_not_json_too_large_or_of_the_wrong_types() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Coordinator::start(tmp.path()).unwrap();

    assert_fail(
        &post(&c, "/api/v2/manifest", b"{not json"),
        400,
        "request body is not JSON",
    );
    assert_fail(
        &post(&c, "/api/v2/manifest", b"[1]"),
        400,
        "expected a JSON object, found an array",
    );
    assert_fail(
        &post(&c, "/api/v2/manifest", b"{}"),
        400,
        "manifest: missing",
    );
    assert_fail(
        &post(&c, "/api/v2/manifest", br#"{"manifest": 5}"#),
        400,
        "manifest: expected a base64 string, found a number",
    );
    assert_fail(
        &post(&c, "/api/v2/manifest", br#"{"manifest": "%%%"}"#),
        400,
        "manifest: invalid base64",
    );
    let huge = vec![b' '; quarry_common::limits::MAX_BODY_BYTES + 1];
    assert_fail(
        &post(&c, "/api/v2/manifest", &huge),
        413,
        "larger than the limit",
    );

    // Decodes, but a field has the wrong type; then valid JSON that fails the checks.
    let wrong_type = json!({"manifest": b64(br#"{"Packages": {"p": {"Debug": "yes"}}}"#)});
    assert_fail(
        &post(&c, "/api/v2/manifest", wrong_type.to_string().as_bytes()),
        400,
        r#"Packages["p"].Debug"#,
    );
    let invalid =
        json!({"Packages": {"p": {"UniqueID": "00"}}, "Marbles": {"web": {"Package": "nope"}}});
    let body = json!({"manifest": b64(invalid.to_string().as_bytes())});
    let answer = post(&c, "/api/v2/manifest", body.to_string().as_bytes());
    assert_fail(
        &answer,
        400,
        r#"Marbles["web"].Package: package "nope" is not defined in Packages"#,
    );
    let bad_template = json!({
        "Packages": {"p": {"UniqueID": "00"}},
        "Marbles": {"web": {"Package": "p", "Parameters": {"Env": {"X": "{{ .Secrets.missing }}"}}}}
    });
    let body = json!({"manifest": b64(bad_template.to_string().as_bytes())});
    assert_fail(
        &post(&c, "/api/v2/manifest", body.to_string().as_bytes()),
        400,
        r#"Marbles["web"].Parameters.Env["X"]"#,
    );
    let p224 = json!({
        "Packages": {"p": {"UniqueID": "00"}},
        "Marbles": {"web": {"Package": "p"}},
        "Secrets": {"c": {"Type": "cert-ecdsa", "Size": 224, "Shared": true}}
    });
    let body = json!({"manifest": b64(p224.to_string().as_bytes())});
    assert_fail(
        &post(&c, "/api/v2/manifest", body.to_string().as_bytes()),
        400,
        r#"Secrets["c"].Size: size 224"#,
    );

    assert_eq!(status(&c, &Trust::Insecure), 2);
    assert!(sealed_files(&c.seal_dir()).is_empty());
}

#[test]
fn manifest_in_the_wrong_state_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let c = Coordinator::start(dir).unwrap();
    let m = manifest(&[], 0);
    set_manifest(&c, &Trust::Insecure, dir, &m);
    let before = sealed_files(&c.seal_dir());
    assert_eq!(before.len(), 2);

    let body = json!({"manifest": b64(&m)});
    let answer = post(&c, "/api/v2/manifest", body.to_string().as_bytes());
    assert_eq!(answer.status, 409, "{:?}", answer.body);
    assert_eq!(answer.body["status"], "error");
    assert!(
        answer
            .message()
            .starts_with("server is not in expected state"),
        "{}",
        answer.message()
    );
    assert_eq!(sealed_files(&c.seal_dir()), before);
    assert_eq!(status(&c, &Trust::Insecure), 3);

    // Recovery outside recovery mode.
    let body = json!({"recoverySecret": b64(&[0; 32]), "recoverySecretSignature": b64(b"x")});
    let answer = post(&c, "/api/v2/recover", body.to_string().as_bytes());
    assert_eq!(answer.status, 409, "{:?}", answer.body);
    assert_eq!(sealed_files(&c.seal_dir()), before);
}

#[test]
fn recovery_secrets_that_are_wrong_duplicated_badly_signed_or_too_many() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut c = Coordinator::start(dir).unwrap();
    let (k0, p0) = rsa_key(dir, "k0");
    let (k1, p1) = rsa_key(dir, "k1");
    let (stranger, _) = rsa_key(dir, "stranger");
    let secrets = set_manifest(
        &c,
        &Trust::Insecure,
        dir,
        &manifest(&[("k0", &p0), ("k1", &p1)], 0),
    );
    let (_, root) = save_root(&c, dir, "root.pem");
    std::fs::remove_file(c.seal_dir().join("sealed_key")).unwrap();
    c.restart().unwrap();
    let before = sealed_files(&c.seal_dir());
    let unchanged = |c: &Coordinator| {
        assert_eq!(status(c, &Trust::Insecure), 1);
        assert_eq!(sealed_files(&c.seal_dir()), before);
    };

    // Bodies.
    assert_fail(&post(&c, "/api/v2/recover", b"nope"), 400, "not JSON");
    assert_fail(
        &post(&c, "/api/v2/recover", br#"{"recoverySecret": []}"#),
        400,
        "recoverySecret: expected a base64 string, found an array",
    );
    assert_fail(
        &post(&c, "/api/v2/recover", br#"{"recoverySecret": "AAAA"}"#),
        400,
        "recoverySecretSignature: missing",
    );
    let huge = vec![b' '; quarry_common::limits::MAX_RECOVERY_BODY_BYTES + 1];
    assert_fail(
        &post(&c, "/api/v2/recover", &huge),
        413,
        "larger than the limit",
    );
    unchanged(&c);

    // A wrong secret: right length, signed by a recovery key, but not a share of this state.
    let wrong = file(dir, "wrong.secret", [7u8; 32]);
    let sig = dir.join("wrong.sig");
    openssl(&[
        "dgst",
        "-sha256",
        "-sign",
        k0.to_str().unwrap(),
        "-out",
        sig.to_str().unwrap(),
        wrong.to_str().unwrap(),
    ]);
    let body = json!({"recoverySecret": b64(&[7u8; 32]), "recoverySecretSignature": b64(&std::fs::read(&sig).unwrap())});
    assert_fail(
        &post(&c, "/api/v2/recover", body.to_string().as_bytes()),
        400,
        "is not one of the recovery secrets",
    );
    let body = json!({"recoverySecret": b64(&[7u8; 20]), "recoverySecretSignature": b64(b"s")});
    assert_fail(
        &post(&c, "/api/v2/recover", body.to_string().as_bytes()),
        400,
        "has 20 bytes",
    );
    unchanged(&c);

    // Badly signed: the right share signed by a key that is not a recovery key.
    let signed_by_stranger = prepare_upload(dir, "k0-stranger", &unb64(&secrets["k0"]), &k0);
    let mut body: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&signed_by_stranger).unwrap()).unwrap();
    let plain = dir.join("k0-stranger.secret");
    let sig = dir.join("stranger.sig");
    openssl(&[
        "dgst",
        "-sha256",
        "-sign",
        stranger.to_str().unwrap(),
        "-out",
        sig.to_str().unwrap(),
        plain.to_str().unwrap(),
    ]);
    body["recoverySecretSignature"] = b64(&std::fs::read(&sig).unwrap()).into();
    assert_fail(
        &post(&c, "/api/v2/recover", body.to_string().as_bytes()),
        400,
        "recoverySecretSignature: does not verify",
    );
    unchanged(&c);

    // Duplicated: the first upload counts, the same one again is refused.
    let upload0 = prepare_upload(dir, "k0", &unb64(&secrets["k0"]), &k0);
    let answer = curl(
        &Trust::Insecure,
        "POST",
        &c.url("/api/v2/recover"),
        Some(&upload0),
        &[],
    );
    assert_eq!(answer.data()["remaining"], 1);
    let answer = curl(
        &Trust::Insecure,
        "POST",
        &c.url("/api/v2/recover"),
        Some(&upload0),
        &[],
    );
    assert_fail(&answer, 400, "already uploaded");
    // The second share signed with the first holder's key: that key is taken in this round.
    let mut crossed: serde_json::Value = serde_json::from_slice(
        &std::fs::read(prepare_upload(dir, "k1", &unb64(&secrets["k1"]), &k1)).unwrap(),
    )
    .unwrap();
    let sig = dir.join("k1-by-k0.sig");
    openssl(&[
        "dgst",
        "-sha256",
        "-sign",
        k0.to_str().unwrap(),
        "-out",
        sig.to_str().unwrap(),
        dir.join("k1.secret").to_str().unwrap(),
    ]);
    let upload1 = crossed.clone();
    crossed["recoverySecretSignature"] = b64(&std::fs::read(&sig).unwrap()).into();
    assert_fail(
        &post(&c, "/api/v2/recover", crossed.to_string().as_bytes()),
        400,
        "recoverySecretSignature",
    );
    unchanged(&c);

    // The right second share completes the round; a further upload is one too many.
    let answer = post(&c, "/api/v2/recover", upload1.to_string().as_bytes());
    assert_eq!(answer.data()["remaining"], 0);
    assert_eq!(status(&c, &Trust::Insecure), 3);
    let after = sealed_files(&c.seal_dir());
    let answer = post(&c, "/api/v2/recover", upload1.to_string().as_bytes());
    assert_eq!(answer.status, 409, "{:?}", answer.body);
    assert_eq!(sealed_files(&c.seal_dir()), after);
    assert_eq!(save_root(&c, dir, "again.pem").1, root);
}

#[test]
fn a_body_far_over_the_limit_is_answered_413_over_both_http_versions() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Coordinator::start(tmp.path()).unwrap();
    let before = sealed_files(&c.seal_dir());
    // Far over the 20 KiB of a recovery upload, with a declared length and chunked; a body over
    // the 8 MiB of a manifest, chunked. Answering before the rest of a body arrived made curl
    // fail on the reset stream (HTTP/2) or the closed connection (HTTP/1.1).
    let big = file(tmp.path(), "big", vec![b' '; 4 << 20]);
    let bigger = file(
        tmp.path(),
        "bigger",
        vec![b' '; quarry_common::limits::MAX_BODY_BYTES + (256 << 10)],
    );
    let chunked = ["-H", "Transfer-Encoding: chunked"];
    for (path, body, extra) in [
        ("/api/v2/recover", &big, &["--http2"][..]),
        ("/api/v2/recover", &big, &["--http1.1"][..]),
        (
            "/api/v2/recover",
            &big,
            &["--http1.1", chunked[0], chunked[1]][..],
        ),
        (
            "/api/v2/manifest",
            &bigger,
            &["--http1.1", chunked[0], chunked[1]][..],
        ),
    ] {
        for _ in 0..3 {
            let answer = curl(&Trust::Insecure, "POST", &c.url(path), Some(body), extra);
            assert_fail(&answer, 413, "larger than the limit");
        }
    }
    assert_eq!(status(&c, &Trust::Insecure), 2);
    assert_eq!(sealed_files(&c.seal_dir()), before);
}
