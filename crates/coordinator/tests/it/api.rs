//! The Client API's surface: 405 for unknown paths and wrong methods, HTTP/2, v1, quotes with
//! nonces, the ephemeral-key recovery flow, a new manifest in recovery mode, and
//! `EDG_STARTUP_MANIFEST`.

use quarry_testkit::coordinator::Coordinator;
use serde_json::json;

use crate::tools::{Trust, b64, curl, file, manifest, openssl, rsa_key, sealed_files, unb64};
use crate::workflow::{prepare_upload, save_root, set_manifest, status};

#[test]
fn unknown_paths_and_wrong_methods_get_405_in_jsend() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Coordinator::start(tmp.path()).unwrap();
    for (method, path) in [
        ("GET", "/api/v2/nothing"),
        ("POST", "/api/v2/status"),
        ("DELETE", "/api/v2/manifest"),
        ("GET", "/api/v2/recover"),
    ] {
        let answer = curl(&Trust::Insecure, method, &c.url(path), None, &[]);
        assert_eq!(answer.status, 405, "{method} {path}");
        assert_eq!(answer.body, json!({"status": "error", "data": null}));
        assert_eq!(answer.content_type, "text/plain; charset=utf-8");
    }
}

#[test]
fn serves_http2_and_http1() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Coordinator::start(tmp.path()).unwrap();
    let h2 = curl(
        &Trust::Insecure,
        "GET",
        &c.url("/api/v2/status"),
        None,
        &["--http2"],
    );
    assert_eq!(h2.http_version, "2");
    let h1 = curl(
        &Trust::Insecure,
        "GET",
        &c.url("/api/v2/status"),
        None,
        &["--http1.1"],
    );
    assert_eq!(h1.http_version, "1.1");
    assert_eq!(h1.data()["code"], 2);
    assert!(
        h1.data()["message"]
            .as_str()
            .unwrap()
            .contains("simulation")
    );
}

#[test]
fn v1_endpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let c = Coordinator::start(dir).unwrap();
    let answer = curl(&Trust::Insecure, "GET", &c.url("/status"), None, &[]);
    assert_eq!(answer.data()["StatusCode"], 2);
    let answer = curl(&Trust::Insecure, "GET", &c.url("/manifest"), None, &[]);
    assert_eq!(answer.data()["ManifestSignature"], "");
    let m = manifest(&[], 0);
    let body = file(dir, "m.json", &m);
    let answer = curl(
        &Trust::Insecure,
        "POST",
        &c.url("/manifest"),
        Some(&body),
        &[],
    );
    assert_eq!(answer.data(), &serde_json::Value::Null);
    let answer = curl(&Trust::Insecure, "GET", &c.url("/manifest"), None, &[]);
    assert_eq!(unb64(&answer.data()["Manifest"]), m);
    let answer = curl(&Trust::Insecure, "GET", &c.url("/quote"), None, &[]);
    assert!(
        answer.data()["Cert"]
            .as_str()
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    let answer = curl(
        &Trust::Insecure,
        "POST",
        &c.url("/recover"),
        Some(&body),
        &[],
    );
    assert_eq!(answer.status, 410);
    assert!(answer.message().contains("/api/v2/recover"));
    let answer = curl(
        &Trust::Insecure,
        "POST",
        &c.url("/manifest"),
        Some(&body),
        &[],
    );
    assert_eq!(answer.status, 409);
    assert_eq!(answer.body["status"], "error");
}

/// The report data of a quote: after the 16-byte OE header, the 48-byte quote header and 320
/// bytes into the report body.
fn report_data(quote: &[u8]) -> &[u8] {
    &quote[16 + 48 + 320..16 + 48 + 384]
}

#[test]
fn quotes_bind_the_root_certificate_and_the_nonce() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let c = Coordinator::start(dir).unwrap();
    let (root_file, _) = save_root(&c, dir, "root.pem");
    let der = openssl(&[
        "x509",
        "-in",
        root_file.to_str().unwrap(),
        "-outform",
        "DER",
    ]);

    let answer = curl(&Trust::Insecure, "GET", &c.url("/api/v2/quote"), None, &[]);
    let quote = unb64(&answer.data()["quote"]);
    assert_eq!(&quote[..8], &[1, 0, 0, 0, 2, 0, 0, 0]);
    let expected = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der);
    assert_eq!(&report_data(&quote)[..32], expected.as_ref());
    assert_eq!(&report_data(&quote)[32..], &[0u8; 32]);

    let nonce = b"operator nonce";
    let url = c.url(&format!(
        "/api/v2/quote?nonce={}",
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE, nonce)
    ));
    let answer = curl(&Trust::Insecure, "GET", &url, None, &[]);
    let quote = unb64(&answer.data()["quote"]);
    let mut bound = der.clone();
    bound.extend_from_slice(nonce);
    let expected = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bound);
    assert_eq!(&report_data(&quote)[..32], expected.as_ref());

    let answer = curl(
        &Trust::Insecure,
        "GET",
        &c.url("/api/v2/quote?nonce=***"),
        None,
        &[],
    );
    assert_eq!(answer.status, 400);
    assert!(answer.message().contains("bad nonce format"));
}

#[test]
fn recovery_with_secrets_encrypted_to_the_ephemeral_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut c = Coordinator::start(dir).unwrap();
    let (key, public) = rsa_key(dir, "holder");
    let secrets = set_manifest(
        &c,
        &Trust::Insecure,
        dir,
        &manifest(&[("holder", &public)], 0),
    );
    std::fs::remove_file(c.seal_dir().join("sealed_key")).unwrap();
    c.restart().unwrap();

    let answer = curl(
        &Trust::Insecure,
        "GET",
        &c.url("/api/v2/recover/public-key"),
        None,
        &[],
    );
    assert_eq!(answer.data()["algorithm"], "RSA");
    let der = file(dir, "eph.der", unb64(&answer.data()["ephemeralPublicKey"]));
    let eph = dir.join("eph.pem");
    openssl(&[
        "pkey",
        "-pubin",
        "-inform",
        "DER",
        "-in",
        der.to_str().unwrap(),
        "-out",
        eph.to_str().unwrap(),
    ]);

    let upload = prepare_upload(dir, "holder", &unb64(&secrets["holder"]), &key);
    let encrypted = dir.join("holder.secret.eph");
    openssl(&[
        "pkeyutl",
        "-encrypt",
        "-pubin",
        "-inkey",
        eph.to_str().unwrap(),
        "-in",
        dir.join("holder.secret").to_str().unwrap(),
        "-out",
        encrypted.to_str().unwrap(),
        "-pkeyopt",
        "rsa_padding_mode:oaep",
        "-pkeyopt",
        "rsa_oaep_md:sha256",
    ]);
    let mut body: serde_json::Value =
        serde_json::from_slice(&std::fs::read(upload).unwrap()).unwrap();
    body["recoverySecret"] = b64(&std::fs::read(&encrypted).unwrap()).into();
    let body = file(dir, "eph-upload.json", body.to_string());
    let answer = curl(
        &Trust::Insecure,
        "POST",
        &c.url("/api/v2/recover"),
        Some(&body),
        &[],
    );
    assert_eq!(answer.data()["remaining"], 0, "{:?}", answer.body);
    assert_eq!(status(&c, &Trust::Insecure), 3);
}

#[test]
fn new_manifest_in_recovery_mode_moves_the_old_state_aside() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut c = Coordinator::start(dir).unwrap();
    let first = manifest(&[], 0);
    set_manifest(&c, &Trust::Insecure, dir, &first);
    let old_data = std::fs::read(c.seal_dir().join("sealed_data")).unwrap();
    std::fs::remove_file(c.seal_dir().join("sealed_key")).unwrap();
    c.restart().unwrap();
    assert_eq!(status(&c, &Trust::Insecure), 1);
    let (_, temporary_root) = save_root(&c, dir, "temporary.pem");

    let (_, public) = rsa_key(dir, "k");
    let second = manifest(&[("k", &public)], 0);
    let secrets = set_manifest(&c, &Trust::Insecure, dir, &second);
    assert_eq!(secrets.len(), 1);
    assert_eq!(status(&c, &Trust::Insecure), 3);
    // The temporary CA became the CA.
    assert_eq!(save_root(&c, dir, "root.pem").1, temporary_root);

    let discarded: Vec<String> = std::fs::read_dir(c.seal_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".discarded-"))
        .collect();
    assert_eq!(discarded.len(), 1, "{discarded:?}");
    assert!(discarded[0].starts_with("sealed_data.discarded-"));
    assert_eq!(
        std::fs::read(c.seal_dir().join(&discarded[0])).unwrap(),
        old_data
    );
    assert!(c.log().contains("moved aside"));

    c.restart().unwrap();
    let answer = curl(
        &Trust::Insecure,
        "GET",
        &c.url("/api/v2/manifest"),
        None,
        &[],
    );
    assert_eq!(unb64(&answer.data()["manifest"]), second);
}

#[test]
fn startup_manifest_is_set_once_and_never_replaces_the_stored_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let first = file(dir, "first.json", manifest(&[], 0));
    let mut c =
        Coordinator::start_with(dir, &[("EDG_STARTUP_MANIFEST", first.to_str().unwrap())]).unwrap();
    assert_eq!(status(&c, &Trust::Insecure), 3);
    let before = sealed_files(&c.seal_dir());

    c.restart().unwrap();
    assert_eq!(status(&c, &Trust::Insecure), 3);
    assert!(
        c.log().contains("startup manifest is the stored manifest"),
        "{}",
        c.log()
    );

    let (_, public) = rsa_key(dir, "k");
    let second = file(dir, "second.json", manifest(&[("k", &public)], 0));
    c.restart_with("EDG_STARTUP_MANIFEST", Some(second.to_str().unwrap()))
        .unwrap();
    assert_eq!(status(&c, &Trust::Insecure), 3);
    assert!(
        c.log()
            .contains("startup manifest differs from the stored manifest"),
        "{}",
        c.log()
    );
    assert_eq!(sealed_files(&c.seal_dir()), before);
    let answer = curl(
        &Trust::Insecure,
        "GET",
        &c.url("/api/v2/manifest"),
        None,
        &[],
    );
    assert_eq!(
        unb64(&answer.data()["manifest"]),
        std::fs::read(&first).unwrap()
    );

    // An invalid startup manifest on a fresh Coordinator stops it.
    let tmp2 = tempfile::tempdir().unwrap();
    let bad = file(tmp2.path(), "bad.json", b"{}");
    let err = Coordinator::start_with(
        tmp2.path(),
        &[("EDG_STARTUP_MANIFEST", bad.to_str().unwrap())],
    )
    .unwrap_err();
    assert!(err.to_string().contains("no packages defined"), "{err}");
}

#[test]
fn refuses_to_start_without_a_tee_unless_simulation_is_asked_for() {
    let tmp = tempfile::tempdir().unwrap();
    let err = Coordinator::start_with(tmp.path(), &[("QUARRY_INSECURE_SIMULATION", "0")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("enclave backend"), "{err}");
    assert!(!tmp.path().join("seal").join("sealed_data").exists());
}

#[test]
fn refuses_distributed_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let err = Coordinator::start_with(tmp.path(), &[("EDG_DISTRIBUTED_COORDINATOR", "1")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("distributed mode is not supported"), "{err}");
}
