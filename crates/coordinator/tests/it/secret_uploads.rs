//! Secret uploads a careless or malicious writer would try: a certificate of another key type
//! than the secret's, a private key of another certificate or in another format, and a request
//! where one secret is good and another bad. Each is `400` and leaves the sealed files
//! byte-identical; matching pairs of every type (RSA of any size) are accepted.

use std::path::Path;

use serde_json::{Value, json};

use crate::tools::{b64, openssl};
use crate::update_refusals::Custom;

/// A self-signed certificate and its PKCS#8 private key, both DER, for `newkey` (`openssl req
/// -newkey` argument) and optional `-pkeyopt`.
fn pair(dir: &Path, name: &str, newkey: &str, opt: Option<&str>) -> (Vec<u8>, Vec<u8>) {
    let key = dir.join(format!("{name}.key"));
    let cert = dir.join(format!("{name}.crt"));
    let mut args = vec!["req", "-x509", "-newkey", newkey];
    if let Some(opt) = opt {
        args.extend(["-pkeyopt", opt]);
    }
    let subject = format!("/CN={name}");
    args.extend([
        "-nodes",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
        "-subj",
        &subject,
        "-days",
        "2",
    ]);
    openssl(&args);
    let cert_der = openssl(&["x509", "-in", cert.to_str().unwrap(), "-outform", "DER"]);
    let key_der = openssl(&[
        "pkcs8",
        "-topk8",
        "-nocrypt",
        "-in",
        key.to_str().unwrap(),
        "-outform",
        "DER",
    ]);
    (cert_der, key_der)
}

fn upload(name: &str, cert: &[u8], private: Option<&[u8]>) -> Value {
    let mut secret = json!({ "Cert": b64(cert) });
    if let Some(private) = private {
        secret["Private"] = json!(b64(private));
    }
    json!({ name: secret })
}

fn body(secrets: &[Value]) -> Value {
    let mut all = serde_json::Map::new();
    for s in secrets {
        all.extend(s.as_object().unwrap().clone());
    }
    json!({ "secrets": all })
}

#[test]
fn certificates_of_another_type_and_foreign_private_keys_are_refused() {
    let d = Custom::start(|m, _| {
        m["Secrets"]["user_rsa"] = json!({"Type": "cert-rsa", "UserDefined": true});
        m["Secrets"]["user_ed"] = json!({"Type": "cert-ed25519", "UserDefined": true});
        m["Roles"]["writer"]["ResourceNames"] =
            json!(["user_key", "user_cert", "user_rsa", "user_ed"]);
    });
    let dir = d.dir.clone();
    let p256 = pair(&dir, "p256", "ec", Some("ec_paramgen_curve:P-256"));
    let p256b = pair(&dir, "p256b", "ec", Some("ec_paramgen_curve:P-256"));
    let p384 = pair(&dir, "p384", "ec", Some("ec_paramgen_curve:P-384"));
    let rsa = pair(&dir, "rsa", "rsa:1024", None);
    let rsa_b = pair(&dir, "rsab", "rsa:2048", None);
    let ed = pair(&dir, "ed", "ed25519", None);
    let ed_b = pair(&dir, "edb", "ed25519", None);
    let sec1 = openssl(&[
        "ec",
        "-in",
        dir.join("p256.key").to_str().unwrap(),
        "-outform",
        "DER",
    ]);
    let good_key = json!({ "user_key": {"Key": b64(&[5u8; 16])} });

    let refused: Vec<(Value, &str)> = vec![
        (
            upload("user_cert", &rsa.0, None),
            "secrets[\"user_cert\"].Cert: the secret is cert-ecdsa, but the certificate's key \
             is not an ecdsa key (algorithm 1.2.840.113549.1.1.1)",
        ),
        (
            upload("user_rsa", &p256.0, Some(&p256.1)),
            "secrets[\"user_rsa\"].Cert: the secret is cert-rsa, but the certificate's key is \
             not an rsa key (algorithm 1.2.840.10045.2.1)",
        ),
        (
            upload("user_ed", &rsa.0, None),
            "secrets[\"user_ed\"].Cert: the secret is cert-ed25519, but the certificate's key \
             is not an ed25519 key (algorithm 1.2.840.113549.1.1.1)",
        ),
        (
            upload("user_cert", &p256.0, Some(&p256b.1)),
            "secrets[\"user_cert\"].Private: the private key does not belong to the certificate",
        ),
        (
            upload("user_cert", &p384.0, Some(&p256.1)),
            "secrets[\"user_cert\"].Private: not a PKCS#8 private key of the certificate's type \
             (cert-ecdsa)",
        ),
        (
            upload("user_cert", &p256.0, Some(&sec1)),
            "secrets[\"user_cert\"].Private: not a PKCS#8 private key of the certificate's type \
             (cert-ecdsa)",
        ),
        (
            upload("user_rsa", &rsa.0, Some(&rsa_b.1)),
            "secrets[\"user_rsa\"].Private: the private key does not belong to the certificate",
        ),
        (
            upload("user_rsa", &rsa.0, Some(&p256.1)),
            "secrets[\"user_rsa\"].Private: not a PKCS#8 private key of the certificate's type \
             (cert-rsa)",
        ),
        (
            upload("user_ed", &ed.0, Some(&ed_b.1)),
            "secrets[\"user_ed\"].Private: the private key does not belong to the certificate",
        ),
    ];
    for (bad, message) in refused {
        let before = d.sealed();
        // Alone, and next to a good secret: nothing at all is written.
        for request in [
            body(std::slice::from_ref(&bad)),
            body(&[bad.clone(), good_key.clone()]),
        ] {
            let answer = d.call("bob", "POST", "/api/v2/secrets", Some(request));
            assert_eq!(answer.status, 400, "{message}: {:?}", answer.body);
            assert_eq!(answer.message(), message);
            assert_eq!(d.sealed(), before, "{message}");
        }
        // v1 alike.
        let v1 = d.call_raw("bob", "POST", "/secrets", Some(bad.to_string().as_bytes()));
        assert_eq!(v1.status, 400, "{message}: {:?}", v1.body);
        assert_eq!(d.sealed(), before, "{message}");
    }
    let unset = d.call("alice", "GET", "/api/v2/secrets?s=user_key", None);
    assert_eq!(unset.data()["secrets"]["user_key"]["Private"], Value::Null);

    // Matching pairs of every type, and certificates without a private key, are accepted.
    for accepted in [
        body(&[
            upload("user_cert", &p256.0, Some(&p256.1)),
            upload("user_rsa", &rsa.0, Some(&rsa.1)),
            upload("user_ed", &ed.0, Some(&ed.1)),
            good_key,
        ]),
        body(&[
            upload("user_cert", &p384.0, Some(&p384.1)),
            upload("user_rsa", &rsa_b.0, Some(&rsa_b.1)),
        ]),
        body(&[
            upload("user_cert", &p256b.0, None),
            upload("user_ed", &ed_b.0, None),
        ]),
    ] {
        let answer = d.call("bob", "POST", "/api/v2/secrets", Some(accepted));
        assert_eq!(answer.data(), &Value::Null, "{:?}", answer.body);
    }
}

#[test]
fn an_upload_that_fails_the_template_dry_run_writes_nothing() {
    let d = Custom::start(|m, _| {
        m["Marbles"]["web"]["Parameters"]["Env"]["TEXT"] = json!("{{ string .Secrets.user_text }}");
        m["Roles"]["writer"]["ResourceNames"] = json!(["user_key", "user_text"]);
    });
    let before = d.sealed();
    let text = |bytes: &[u8]| json!({ "user_text": {"Key": b64(bytes)} });
    let good_key = json!({ "user_key": {"Key": b64(&[5u8; 16])} });
    for request in [
        body(&[text(b"a\0b")]),
        body(&[text(b"a\0b"), good_key.clone()]),
    ] {
        let answer = d.call("bob", "POST", "/api/v2/secrets", Some(request));
        assert_eq!(answer.status, 400, "{:?}", answer.body);
        assert!(
            answer
                .message()
                .starts_with("secrets: template dry run failed: ")
                && answer.message().contains("NUL"),
            "{}",
            answer.message()
        );
        assert_eq!(d.sealed(), before);
    }
    let unset = d.call(
        "alice",
        "GET",
        "/api/v2/secrets?s=user_key&s=user_text",
        None,
    );
    assert_eq!(unset.data()["secrets"]["user_key"]["Private"], Value::Null);
    let answer = d.call(
        "bob",
        "POST",
        "/api/v2/secrets",
        Some(body(&[text(b"a b"), good_key])),
    );
    assert_eq!(answer.data(), &Value::Null);
}
