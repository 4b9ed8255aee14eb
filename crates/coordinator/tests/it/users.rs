//! Users authenticated by the leaf client certificate: the helpers the RBAC, secrets and
//! update tests share (user certificates made with openssl, a manifest with users, roles and
//! user-defined secrets, curl as a user), and the appended-certificate attack.

use std::path::{Path, PathBuf};

use quarry_testkit::coordinator::Coordinator;
use serde_json::{Value, json};

use crate::tools::{Answer, Trust, b64, curl, file, openssl, sealed_files};
use crate::workflow::set_manifest;

/// A user's certificate and key files.
#[derive(Debug, Clone)]
pub(crate) struct UserCert {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) pem: String,
}

/// A self-signed certificate for `name`, valid from now for two days, or (with `expired`)
/// valid only on 1 January 2020.
pub(crate) fn user_cert(dir: &Path, name: &str, expired: bool) -> UserCert {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    let (c, k) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let subject = format!("/CN={name}");
    if expired {
        // OpenSSL 3.0's `req` cannot backdate; `ca -selfsign` can.
        let ca = dir.join(format!("{name}-ca"));
        std::fs::create_dir_all(&ca).unwrap();
        std::fs::write(ca.join("index.txt"), "").unwrap();
        let config = file(
            &ca,
            "ca.cnf",
            format!(
                "[ca]\ndefault_ca = d\n[d]\ndatabase = {db}\nnew_certs_dir = {dir}\n\
                 serial = {dir}/serial\ndefault_md = sha256\npolicy = p\n\
                 x509_extensions = e\n[e]\nbasicConstraints = CA:FALSE\n[p]\n\
                 commonName = supplied\n",
                db = ca.join("index.txt").display(),
                dir = ca.display()
            ),
        );
        let csr = ca.join("csr.pem");
        openssl(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            k,
        ]);
        openssl(&[
            "req",
            "-new",
            "-key",
            k,
            "-subj",
            &subject,
            "-out",
            csr.to_str().unwrap(),
        ]);
        openssl(&[
            "ca",
            "-selfsign",
            "-keyfile",
            k,
            "-in",
            csr.to_str().unwrap(),
            "-out",
            c,
            "-startdate",
            "20200101000000Z",
            "-enddate",
            "20200102000000Z",
            "-batch",
            "-notext",
            "-rand_serial",
            "-config",
            config.to_str().unwrap(),
        ]);
    } else {
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            k,
            "-out",
            c,
            "-subj",
            &subject,
            "-days",
            "2",
        ]);
    }
    let pem = std::fs::read_to_string(&cert).unwrap();
    UserCert { cert, key, pem }
}

/// The manifest of these tests: users `alice` (reader), `bob` (writer), `carol` (package
/// updater), `dave` and `frank` (manifest updaters), and user-defined secrets.
pub(crate) fn users_manifest(users: &[(&str, &UserCert)], extra_secret: bool) -> Vec<u8> {
    let roles_of = |name: &str| -> Vec<&str> {
        match name {
            "alice" => vec!["reader"],
            "bob" => vec!["writer"],
            "carol" => vec!["pkg"],
            _ => vec!["updater"],
        }
    };
    let users: serde_json::Map<String, Value> = users
        .iter()
        .map(|(name, cert)| {
            (
                (*name).to_owned(),
                json!({"Certificate": cert.pem, "Roles": roles_of(name)}),
            )
        })
        .collect();
    let mut secrets = json!({
        "shared_key": {"Type": "symmetric-key", "Size": 256, "Shared": true},
        "web_cert": {"Type": "cert-ecdsa", "Size": 256, "Shared": true, "Cert": {"DNSNames": ["web"]}},
        "user_key": {"Type": "symmetric-key", "Size": 128, "UserDefined": true},
        "user_text": {"Type": "plain", "UserDefined": true},
        "user_cert": {"Type": "cert-ecdsa", "UserDefined": true}
    });
    if extra_secret {
        secrets["extra"] = json!({"Type": "symmetric-key", "Size": 256, "Shared": true});
    }
    let manifest = json!({
        "Packages": {"backend": {"SignerID": "1111111111111111111111111111111111111111111111111111111111111111", "ProductID": 3, "SecurityVersion": 1}},
        "Marbles": {"web": {
            "Package": "backend",
            "Parameters": {
                "Env": {"KEY": "{{ hex .Secrets.shared_key }}", "USER": "{{ hex .Secrets.user_key }}"},
                "Files": {"/cert.pem": "{{ pem .Secrets.web_cert.Cert }}"}
            }
        }},
        "Secrets": secrets,
        "Users": users,
        "Roles": {
            "reader": {"ResourceType": "Secrets", "ResourceNames": ["user_key", "user_text"], "Actions": ["ReadSecret"]},
            "writer": {"ResourceType": "Secrets", "ResourceNames": ["user_key"], "Actions": ["WriteSecret"]},
            "pkg": {"ResourceType": "Packages", "ResourceNames": ["backend"], "Actions": ["UpdateSecurityVersion"]},
            "updater": {"ResourceType": "Manifest", "Actions": ["UpdateManifest"]}
        }
    });
    serde_json::to_vec(&manifest).unwrap()
}

/// A Coordinator with the users manifest set, and the users' certificates (plus `eve`, who is
/// no user).
pub(crate) struct Deployment {
    pub(crate) c: Coordinator,
    pub(crate) dir: PathBuf,
    pub(crate) users: Vec<(&'static str, UserCert)>,
    pub(crate) manifest: Vec<u8>,
    _tmp: tempfile::TempDir,
}

impl Deployment {
    pub(crate) fn start(extra_env: &[(&str, &str)]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let users: Vec<(&'static str, UserCert)> =
            ["alice", "bob", "carol", "dave", "frank", "eve"]
                .into_iter()
                .map(|name| (name, user_cert(&dir, name, name == "bob")))
                .collect();
        let listed: Vec<(&str, &UserCert)> = users
            .iter()
            .filter(|(n, _)| *n != "eve")
            .map(|(n, c)| (*n, c))
            .collect();
        let manifest = users_manifest(&listed, false);
        let c = Coordinator::start_with(&dir, extra_env).unwrap();
        set_manifest(&c, &Trust::Insecure, &dir, &manifest);
        Self {
            c,
            dir,
            users,
            manifest,
            _tmp: tmp,
        }
    }

    pub(crate) fn cert(&self, name: &str) -> &UserCert {
        &self.users.iter().find(|(n, _)| *n == name).unwrap().1
    }

    /// A request as `user` (`None`: without a client certificate) with an optional JSON body.
    pub(crate) fn call(
        &self,
        user: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Answer {
        let body = body.map(|b| file(&self.dir, "body.json", b.to_string()));
        let mut extra: Vec<String> = Vec::new();
        if let Some(user) = user {
            let cert = self.cert(user);
            extra.extend([
                "--cert".into(),
                cert.cert.display().to_string(),
                "--key".into(),
                cert.key.display().to_string(),
            ]);
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        curl(
            &Trust::Insecure,
            method,
            &self.c.url(path),
            body.as_deref(),
            &extra,
        )
    }

    pub(crate) fn sealed(&self) -> Vec<(String, Vec<u8>)> {
        sealed_files(&self.c.seal_dir())
    }
}

/// Body of a manifest upload.
pub(crate) fn manifest_body(raw: &[u8]) -> Value {
    json!({ "manifest": b64(raw) })
}

#[test]
fn rejects_appended_user_certificate() {
    let d = Deployment::start(&[]);
    // Eve presents her own certificate followed by Alice's (a two-certificate chain; curl
    // sends every certificate of the file), proving only her own key.
    let eve = d.cert("eve");
    let chain = file(
        &d.dir,
        "eve-then-alice.pem",
        format!("{}{}", eve.pem, d.cert("alice").pem),
    );
    let before = d.sealed();
    let answer = curl(
        &Trust::Insecure,
        "GET",
        &d.c.url("/api/v2/secrets?s=user_key"),
        None,
        &[
            "--cert",
            chain.to_str().unwrap(),
            "--key",
            eve.key.to_str().unwrap(),
        ],
    );
    assert_eq!(answer.status, 401, "{:?}", answer.body);
    assert_eq!(answer.body["status"], "fail");
    assert_eq!(
        answer.message(),
        "unauthorized user: client certificate did not match any MarbleRun users"
    );
    // Alice herself is served, so the refusal is about the chain, not the request.
    let ok = d.call(Some("alice"), "GET", "/api/v2/secrets?s=user_key", None);
    assert_eq!(ok.data()["secrets"]["user_key"]["Type"], "symmetric-key");
    assert_eq!(d.sealed(), before);
}

#[test]
fn expired_self_signed_user_certificates_are_accepted() {
    let d = Deployment::start(&[]);
    // Bob's certificate expired in 2020; users are identified by exact DER, not by validity.
    let answer = d.call(
        Some("bob"),
        "POST",
        "/api/v2/secrets",
        Some(json!({"secrets": {"user_key": {"Key": b64(&[7u8; 16])}}})),
    );
    assert_eq!(answer.data(), &Value::Null);
    let read = d.call(Some("alice"), "GET", "/api/v2/secrets?s=user_key", None);
    assert_eq!(
        read.data()["secrets"]["user_key"]["Private"],
        b64(&[7u8; 16])
    );
    assert_eq!(read.data()["secrets"]["user_key"]["UserDefined"], true);
}

#[test]
fn no_certificate_and_unknown_users_get_401() {
    let d = Deployment::start(&[]);
    let none = d.call(None, "GET", "/api/v2/secrets?s=user_key", None);
    assert_eq!(none.status, 401);
    assert_eq!(none.message(), "no client certificate provided");
    let eve = d.call(Some("eve"), "GET", "/api/v2/secrets?s=user_key", None);
    assert_eq!(eve.status, 401);
    // v1 answers error, never fail.
    let v1 = d.call(Some("eve"), "GET", "/secrets?s=user_key", None);
    assert_eq!(v1.status, 401);
    assert_eq!(v1.body["status"], "error");
}
