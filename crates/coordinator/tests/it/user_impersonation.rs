//! Users as an attacker would try to be someone else: one certificate listed for two users in
//! different PEM text, certificates appended in either order, X.509 v1 certificates, and the
//! same requests over HTTP/1.1 and HTTP/2.

use serde_json::{Value, json};

use quarry_testkit::coordinator::Coordinator;

use crate::tools::{Answer, Trust, curl, file, openssl, sealed_files};
use crate::update_refusals::{Custom, raw};
use crate::users::{UserCert, manifest_body, user_cert, users_manifest};
use crate::workflow::status;

/// `pem` with CRLF line ends: other PEM text, the same DER.
fn crlf(pem: &str) -> String {
    pem.replace('\n', "\r\n")
}

/// Offers a first manifest, changed by `change`, to a fresh Coordinator; returns the answer and
/// the Coordinator, whose seal directory must still hold no state.
fn first_manifest(
    change: impl FnOnce(&mut Value, &std::path::Path),
) -> (Answer, Coordinator, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let users: Vec<(&str, UserCert)> = ["alice", "bob", "carol", "dave", "frank"]
        .into_iter()
        .map(|name| (name, user_cert(dir, name, false)))
        .collect();
    let listed: Vec<(&str, &UserCert)> = users.iter().map(|(n, c)| (*n, c)).collect();
    let mut manifest: Value = serde_json::from_slice(&users_manifest(&listed, false)).unwrap();
    change(&mut manifest, dir);
    let c = Coordinator::start(dir).unwrap();
    let body = file(
        dir,
        "first-manifest.json",
        manifest_body(&raw(&manifest)).to_string(),
    );
    let answer = curl(
        &Trust::Insecure,
        "POST",
        &c.url("/api/v2/manifest"),
        Some(&body),
        &[],
    );
    assert_eq!(status(&c, &Trust::Insecure), 2, "{:?}", answer.body);
    assert!(
        sealed_files(&c.seal_dir())
            .iter()
            .all(|(name, _)| !name.starts_with("sealed_")),
        "a refused manifest left sealed state"
    );
    (answer, c, tmp)
}

#[test]
fn a_first_manifest_cannot_list_one_certificate_for_two_users() {
    // Alice's certificate a second time, in other PEM text, for "zed", a manifest updater: the
    // key holder would be two users and could act as the updater.
    let (answer, _c, _tmp) = first_manifest(|m, _| {
        let alice = m["Users"]["alice"]["Certificate"].as_str().unwrap();
        m["Users"]["zed"] = json!({"Certificate": crlf(alice), "Roles": ["updater"]});
    });
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    assert_eq!(answer.body["status"], "fail");
    assert!(
        answer.message().contains(
            "Users[\"zed\"].Certificate: certificate is the same as the one of user \"alice\""
        ),
        "{:?}",
        answer.body
    );
}

#[test]
fn a_full_update_cannot_list_one_certificate_for_two_users() {
    let d = Custom::start(|_, _| {});
    // A manifest updater proposes a "shadow" user holding Frank's certificate in other PEM
    // text: once applied, Frank's key would be two users and Frank locked out.
    for shadow in ["aaa", "zzz"] {
        let mut update = d.manifest.clone();
        let frank = update["Users"]["frank"]["Certificate"]
            .as_str()
            .unwrap()
            .to_owned();
        update["Users"][shadow] = json!({"Certificate": crlf(&frank), "Roles": ["reader"]});
        let before = d.sealed();
        let answer = d.call(
            "dave",
            "POST",
            "/api/v2/update",
            Some(manifest_body(&raw(&update))),
        );
        assert_eq!(answer.status, 400, "{:?}", answer.body);
        let (first, second) = if shadow < "frank" {
            (shadow, "frank")
        } else {
            ("frank", shadow)
        };
        let expected = format!(
            "Users[{second:?}].Certificate: certificate is the same as the one of user {first:?}"
        );
        assert!(answer.message().contains(&expected), "{:?}", answer.body);
        assert_eq!(d.sealed(), before);
        // v1 refuses it alike.
        let v1 = d.call_raw("dave", "POST", "/update", Some(&raw(&update)));
        assert_eq!(v1.status, 400, "{:?}", v1.body);
        assert_eq!(d.sealed(), before);
    }
}

#[test]
fn appended_certificates_in_either_order_and_both_http_versions() {
    let d = Custom::start(|m, dir| {
        // An X.509 v1 certificate (no extensions), which Go accepts as a user certificate.
        let key = dir.join("v1.key");
        let csr = dir.join("v1.csr");
        let cert = dir.join("v1.crt");
        let (k, r, c) = (
            key.to_str().unwrap(),
            csr.to_str().unwrap(),
            cert.to_str().unwrap(),
        );
        openssl(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            k,
        ]);
        openssl(&["req", "-new", "-key", k, "-subj", "/CN=v1", "-out", r]);
        openssl(&[
            "x509", "-req", "-in", r, "-signkey", k, "-days", "2", "-out", c,
        ]);
        let text = openssl(&["x509", "-in", c, "-noout", "-text"]);
        assert!(String::from_utf8_lossy(&text).contains("Version: 1 (0x0)"));
        m["Users"]["old"] = json!({
            "Certificate": std::fs::read_to_string(&cert).unwrap(),
            "Roles": ["reader"]
        });
    });
    let eve_key = d.dir.join("eve.key");
    let eve_crt = d.dir.join("eve.crt");
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        eve_key.to_str().unwrap(),
        "-out",
        eve_crt.to_str().unwrap(),
        "-subj",
        "/CN=eve",
        "-days",
        "2",
    ]);
    let eve = std::fs::read_to_string(&eve_crt).unwrap();
    let alice = &d.cert("alice").pem;
    let url = d.c.url("/api/v2/secrets?s=user_key");
    for version in ["--http1.1", "--http2"] {
        // Eve's certificate, then Alice's, with Eve's key: Eve, who is no user.
        let chain = file(&d.dir, "eve-alice.pem", format!("{eve}{alice}"));
        let answer = curl(
            &Trust::Insecure,
            "GET",
            &url,
            None,
            &[
                version,
                "--cert",
                chain.to_str().unwrap(),
                "--key",
                eve_key.to_str().unwrap(),
            ],
        );
        assert_eq!(answer.status, 401, "{version}: {:?}", answer.body);
        // Alice's certificate first, with Eve's key: the handshake cannot prove Alice's key,
        // so curl fails or the server refuses; never Alice's secrets.
        let chain = file(&d.dir, "alice-eve.pem", format!("{alice}{eve}"));
        let out = std::process::Command::new("curl")
            .args(["-sk", version, "--cert"])
            .arg(&chain)
            .arg("--key")
            .arg(&eve_key)
            .arg(&url)
            .output()
            .unwrap();
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(!body.contains("\"success\""), "{version}: {body}");

        // The real users, including the v1 certificate, over this HTTP version.
        for user in ["alice", "old"] {
            let (cert, key) = if user == "old" {
                (d.dir.join("v1.crt"), d.dir.join("v1.key"))
            } else {
                (d.cert(user).cert.clone(), d.cert(user).key.clone())
            };
            let answer = curl(
                &Trust::Insecure,
                "GET",
                &url,
                None,
                &[
                    version,
                    "--cert",
                    cert.to_str().unwrap(),
                    "--key",
                    key.to_str().unwrap(),
                ],
            );
            assert_eq!(
                answer.data()["secrets"]["user_key"]["Type"],
                "symmetric-key",
                "{version} {user}"
            );
            let expected = if version == "--http2" { "2" } else { "1.1" };
            assert_eq!(answer.http_version, expected);
        }
    }
}

#[test]
fn requested_names_cannot_forge_log_lines() {
    let d = Custom::start(|_, _| {});
    let forged = "2026-01-01T00:00:00.000000Z  INFO quarry_coordinator: forged";
    let query = format!(
        "/api/v2/secrets?s=user_key&s=x%0A{}%0D%0A",
        forged.replace(' ', "%20").replace(':', "%3A")
    );
    for path in [query.clone(), query.replacen("/api/v2", "", 1)] {
        let answer = d.call("bob", "GET", &path, None);
        assert_eq!(answer.status, 401, "{path}: {:?}", answer.body);
        assert!(
            answer
                .message()
                .ends_with(&format!("secret user_key, x\\n{forged}\\r\\n")),
            "{}",
            answer.message()
        );
    }
    let log = d.c.log();
    assert!(log.contains("x\\n2026-01-01T00:00:00"), "{log}");
    assert!(
        !log.lines().any(|line| line.starts_with(forged)),
        "a requested name forged a log line:\n{log}"
    );
}

#[test]
fn a_user_in_several_roles_gets_each_action_only_on_its_own_resources() {
    let d = Custom::start(|m, _| {
        m["Roles"]["read_key"] = json!({"ResourceType": "Secrets", "ResourceNames": ["user_key"], "Actions": ["readsecret"]});
        m["Roles"]["write_text"] = json!({"ResourceType": "Secrets", "ResourceNames": ["user_text"], "Actions": ["WRITESECRET"]});
        m["Users"]["carol"]["Roles"] = json!(["read_key", "write_text", "pkg"]);
    });
    let key = json!({"secrets": {"user_key": {"Key": "AAAAAAAAAAAAAAAAAAAAAA=="}}});
    let text = json!({"secrets": {"user_text": {"Key": "dGV4dA=="}}});
    let both = json!({"secrets": {"user_key": {"Key": "AAAAAAAAAAAAAAAAAAAAAA=="}, "user_text": {"Key": "dGV4dA=="}}});
    let package = manifest_body(br#"{"Packages":{"backend":{"SecurityVersion":2}}}"#);
    let full = manifest_body(&raw(&d.manifest));
    for (method, path, body, allowed) in [
        ("GET", "/api/v2/secrets?s=user_key", None, true),
        ("GET", "/api/v2/secrets?s=user_text", None, false),
        ("GET", "/api/v2/secrets?s=user_key&s=user_text", None, false),
        ("GET", "/api/v2/secrets?s=user_key&s=user_key", None, true),
        ("POST", "/api/v2/secrets", Some(text), true),
        ("POST", "/api/v2/secrets", Some(key), false),
        ("POST", "/api/v2/secrets", Some(both), false),
        ("POST", "/api/v2/update", Some(package), true),
        ("POST", "/api/v2/update", Some(full), false),
        ("POST", "/api/v2/update-cancel", None, false),
    ] {
        let before = d.sealed();
        let answer = d.call("carol", method, path, body.clone());
        if allowed {
            assert_eq!(
                answer.status, 200,
                "{method} {path} {body:?}: {:?}",
                answer.body
            );
        } else {
            assert_eq!(
                answer.status, 401,
                "{method} {path} {body:?}: {:?}",
                answer.body
            );
            assert_eq!(d.sealed(), before, "{method} {path} {body:?}");
        }
    }
}

#[test]
fn user_names_with_line_breaks_are_refused_and_cannot_forge_log_lines() {
    let forged = "2026-01-01T00:00:00.000000Z  INFO quarry_coordinator: forged";
    let name = format!("mallory\n{forged}");
    let (answer, c, _tmp) = first_manifest(|m, dir| {
        let cert = crate::users::user_cert(dir, "mallory", false);
        m["Users"][&name] = json!({"Certificate": cert.pem, "Roles": ["reader", "updater"]});
    });
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    assert!(
        answer
            .message()
            .contains("contains the control character U+000A"),
        "{:?}",
        answer.body
    );
    let log = c.log();
    assert!(
        !log.lines().any(|line| line.starts_with(forged)),
        "a user name forged a log line:\n{log}"
    );
}
