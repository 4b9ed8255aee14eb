//! Users as an attacker would try to be someone else: one certificate listed for two users in
//! different PEM text, certificates appended in either order, X.509 v1 certificates, and the
//! same requests over HTTP/1.1 and HTTP/2.

use serde_json::{Value, json};

use crate::review11_updates::{Custom, raw};
use crate::tools::{Trust, curl, file, openssl};
use crate::users::manifest_body;

/// `pem` with CRLF line ends: other PEM text, the same DER.
fn crlf(pem: &str) -> String {
    pem.replace('\n', "\r\n")
}

#[test]
fn one_certificate_listed_for_two_users_authenticates_neither() {
    // A manifest (accepted as MarbleRun accepts it: its check compares the PEM text) lists
    // Alice's certificate a second time, in other PEM text, for "zed", a manifest updater.
    let d = Custom::start(|m, _| {
        let alice = m["Users"]["alice"]["Certificate"].as_str().unwrap();
        m["Users"]["zed"] = json!({"Certificate": crlf(alice), "Roles": ["updater"]});
    });
    let before = d.sealed();
    let answer = d.call("alice", "GET", "/api/v2/secrets?s=user_key", None);
    assert_eq!(answer.status, 401, "{:?}", answer.body);
    assert_eq!(answer.body["status"], "fail");
    assert_eq!(
        answer.message(),
        "client certificate matches several users (alice, zed): the manifest must give each \
         user its own certificate"
    );
    // Nor can the key holder act as the updater.
    let cancel = d.call("alice", "POST", "/api/v2/update-cancel", None);
    assert_eq!(cancel.status, 401, "{:?}", cancel.body);
    assert_eq!(d.sealed(), before);
    // Users with certificates of their own are not affected.
    let ok = d.call(
        "bob",
        "POST",
        "/api/v2/secrets",
        Some(json!({"secrets": {"user_key": {"Key": "AAAAAAAAAAAAAAAAAAAAAA=="}}})),
    );
    assert_eq!(ok.data(), &Value::Null);
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
        assert_eq!(
            answer.message(),
            format!(
                "invalid manifest: Users[{second:?}].Certificate: certificate is the same as \
                 the one of user {first:?}"
            )
        );
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
fn user_names_cannot_forge_log_lines() {
    let forged = "2026-01-01T00:00:00.000000Z  INFO quarry_coordinator: forged";
    let name = format!("mallory\n{forged}");
    let mallory = std::cell::RefCell::new(None);
    let mut d = Custom::start(|m, dir| {
        let cert = crate::users::user_cert(dir, "mallory", false);
        m["Users"][&name] = json!({"Certificate": cert.pem, "Roles": ["reader", "updater"]});
        *mallory.borrow_mut() = Some(cert);
    });
    d.users.push(("mallory", mallory.into_inner().unwrap()));
    let read = d.call("mallory", "GET", "/api/v2/secrets?s=user_key", None);
    assert_eq!(read.status, 200, "{:?}", read.body);
    let mut update = d.manifest.clone();
    update["Secrets"]["extra"] = json!({"Type": "symmetric-key", "Size": 128, "Shared": true});
    let submitted = d.call(
        "mallory",
        "POST",
        "/api/v2/update",
        Some(manifest_body(&raw(&update))),
    );
    assert_eq!(submitted.status, 200, "{:?}", submitted.body);
    let cancelled = d.call("mallory", "POST", "/api/v2/update-cancel", None);
    assert_eq!(cancelled.status, 200, "{:?}", cancelled.body);
    let log = d.c.log();
    assert!(log.contains("mallory\\n2026-01-01"), "{log}");
    assert!(
        !log.lines().any(|line| line.starts_with(forged)),
        "a user name forged a log line:\n{log}"
    );
}
