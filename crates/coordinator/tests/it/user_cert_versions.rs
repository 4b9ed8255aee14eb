//! User certificates that webpki cannot parse: an X.509 v1 certificate (what `openssl x509
//! -req` makes without an extensions file) identifies its user over HTTP/1.1 and HTTP/2, like
//! any other certificate, for every key type a user may hold.

use std::path::Path;

use quarry_testkit::coordinator::Coordinator;

use crate::tools::{Trust, curl, openssl};
use crate::users::{UserCert, users_manifest};
use crate::workflow::set_manifest;

/// A self-signed X.509 v1 certificate for `name` with a key made by `genpkey` with `algorithm`.
fn v1_user_cert(dir: &Path, name: &str, algorithm: &[&str]) -> UserCert {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    let (c, k, r) = (
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        csr.to_str().unwrap(),
    );
    let mut genpkey = vec!["genpkey", "-out", k];
    genpkey.extend_from_slice(algorithm);
    openssl(&genpkey);
    openssl(&[
        "req",
        "-new",
        "-key",
        k,
        "-subj",
        &format!("/CN={name}"),
        "-out",
        r,
    ]);
    openssl(&[
        "x509", "-req", "-in", r, "-signkey", k, "-days", "2", "-out", c,
    ]);
    let text = String::from_utf8(openssl(&["x509", "-in", c, "-noout", "-text"])).unwrap();
    assert!(text.contains("Version: 1 (0x0)"), "{text}");
    let pem = std::fs::read_to_string(&cert).unwrap();
    UserCert { cert, key, pem }
}

#[test]
fn v1_user_certificates_authenticate_over_http1_and_http2() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // alice reads secrets (see `users_manifest`); each holds a key of another type.
    let users = [
        (
            "alice",
            v1_user_cert(
                dir,
                "alice",
                &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            ),
        ),
        (
            "dave",
            v1_user_cert(
                dir,
                "dave",
                &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            ),
        ),
        (
            "frank",
            v1_user_cert(dir, "frank", &["-algorithm", "ED25519"]),
        ),
        (
            "carol",
            v1_user_cert(
                dir,
                "carol",
                &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
            ),
        ),
    ];
    let eve = v1_user_cert(
        dir,
        "eve",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let listed: Vec<(&str, &UserCert)> = users.iter().map(|(n, c)| (*n, c)).collect();
    let c = Coordinator::start(dir).unwrap();
    set_manifest(&c, &Trust::Insecure, dir, &users_manifest(&listed, false));

    let call = |user: &UserCert, path: &str, http: &str| {
        curl(
            &Trust::Insecure,
            "GET",
            &c.url(path),
            None,
            &[
                http,
                "--cert",
                user.cert.to_str().unwrap(),
                "--key",
                user.key.to_str().unwrap(),
            ],
        )
    };
    for (http, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let answer = call(&users[0].1, "/api/v2/secrets?s=user_key", http);
        assert_eq!(answer.http_version, version);
        assert_eq!(
            answer.data()["secrets"]["user_key"]["Type"],
            "symmetric-key"
        );
        // The others are identified as themselves (the refusal names them), without the role
        // to read this secret.
        for (name, cert) in &users[1..] {
            let answer = call(cert, "/api/v2/secrets?s=user_key", http);
            assert_eq!(answer.http_version, version, "{name}");
            assert_eq!(
                answer.message(),
                format!("user \"{name}\" is not allowed to read secret user_key"),
                "{:?}",
                answer.body
            );
        }
        // A v1 certificate of someone who is no user is still refused.
        let answer = call(&eve, "/api/v2/secrets?s=user_key", http);
        assert_eq!(answer.status, 401, "{:?}", answer.body);
        assert_eq!(
            answer.message(),
            "unauthorized user: client certificate did not match any MarbleRun users"
        );
    }
}
