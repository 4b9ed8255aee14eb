//! Manifest updates as a malicious or careless user would drive them: new recovery secrets are
//! never lost on the v1 endpoints, and every refusal leaves the sealed files byte-identical.

use std::path::{Path, PathBuf};

use quarry_testkit::coordinator::Coordinator;
use serde_json::{Value, json};

use crate::tools::{Answer, Trust, curl, file, rsa_key, sealed_files, unb64};
use crate::users::{UserCert, manifest_body, user_cert, users_manifest};
use crate::workflow::{prepare_upload, set_manifest, status};

/// A Coordinator with the users manifest of [`crate::users`] changed by `change`.
pub(crate) struct Custom {
    pub(crate) c: Coordinator,
    pub(crate) dir: PathBuf,
    pub(crate) users: Vec<(&'static str, UserCert)>,
    pub(crate) manifest: Value,
    _tmp: tempfile::TempDir,
}

impl Custom {
    pub(crate) fn start(change: impl FnOnce(&mut Value, &Path)) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let users: Vec<(&'static str, UserCert)> = ["alice", "bob", "carol", "dave", "frank"]
            .into_iter()
            .map(|name| (name, user_cert(&dir, name, false)))
            .collect();
        let listed: Vec<(&str, &UserCert)> = users.iter().map(|(n, c)| (*n, c)).collect();
        let mut manifest: Value = serde_json::from_slice(&users_manifest(&listed, false)).unwrap();
        change(&mut manifest, &dir);
        let c = Coordinator::start(&dir).unwrap();
        set_manifest(&c, &Trust::Insecure, &dir, &raw(&manifest));
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

    /// A request as `user` with a raw body (v1 takes the manifest itself).
    pub(crate) fn call_raw(
        &self,
        user: &str,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Answer {
        let body = body.map(|b| file(&self.dir, "raw-body", b));
        let cert = self.cert(user);
        curl(
            &Trust::Insecure,
            method,
            &self.c.url(path),
            body.as_deref(),
            &[
                "--cert",
                cert.cert.to_str().unwrap(),
                "--key",
                cert.key.to_str().unwrap(),
            ],
        )
    }

    /// A request as `user` with a JSON body.
    pub(crate) fn call(&self, user: &str, method: &str, path: &str, body: Option<Value>) -> Answer {
        let body = body.map(|b| b.to_string().into_bytes());
        self.call_raw(user, method, path, body.as_deref())
    }

    pub(crate) fn sealed(&self) -> Vec<(String, Vec<u8>)> {
        sealed_files(&self.c.seal_dir())
    }
}

/// The bytes of a manifest value.
pub(crate) fn raw(manifest: &Value) -> Vec<u8> {
    serde_json::to_vec(manifest).unwrap()
}

/// Loses `sealed_key`, restarts in recovery mode and recovers with `uploads` (name, encrypted
/// secret, private key); asserts that the Coordinator is back in state 3.
fn recover_with(c: &mut Coordinator, dir: &Path, uploads: &[(&str, Vec<u8>, PathBuf)]) {
    std::fs::remove_file(c.seal_dir().join("sealed_key")).unwrap();
    c.restart().unwrap();
    assert_eq!(status(c, &Trust::Insecure), 1);
    for (name, encrypted, key) in uploads {
        let body = prepare_upload(dir, name, encrypted, key);
        let answer = curl(
            &Trust::Insecure,
            "POST",
            &c.url("/api/v2/recover"),
            Some(&body),
            &[],
        );
        assert_eq!(answer.status, 200, "{:?}", answer.body);
    }
    assert_eq!(status(c, &Trust::Insecure), 3);
}

#[test]
fn v1_updates_never_drop_new_recovery_secrets() {
    // One acknowledgement applies an update (UpdateThreshold 1).
    let mut d = Custom::start(|m, _| m["Config"] = json!({"UpdateThreshold": 1}));
    let (key1, public1) = rsa_key(&d.dir, "holder1");
    let (key2, public2) = rsa_key(&d.dir, "holder2");

    // v1 /update applies at once an update that adds a recovery key: the answer carries the
    // new recovery secret, as v1 /manifest does, and it recovers the state.
    let mut with_key = d.manifest.clone();
    with_key["RecoveryKeys"] = json!({ "holder1": public1 });
    let answer = d.call_raw("dave", "POST", "/update", Some(&raw(&with_key)));
    let secrets = answer.data()["RecoverySecrets"]
        .as_object()
        .unwrap()
        .clone();
    assert_eq!(
        secrets.keys().collect::<Vec<_>>(),
        ["holder1"],
        "{:?}",
        answer.body
    );
    let dir = d.dir.clone();
    recover_with(
        &mut d.c,
        &dir,
        &[("holder1", unb64(&secrets["holder1"]), key1.clone())],
    );

    // An update that changes nothing about recovery still answers null on v1.
    let mut threshold_two = with_key.clone();
    threshold_two["Config"] = json!({"UpdateThreshold": 2});
    let answer = d.call_raw("dave", "POST", "/update", Some(&raw(&threshold_two)));
    assert_eq!(answer.data(), &Value::Null);

    // Now two acknowledgements are needed. A pending update that changes the recovery keys
    // cannot be applied by a v1 acknowledgement, which could only answer with a message: it is
    // refused and nothing is written.
    let mut two_keys = threshold_two.clone();
    two_keys["RecoveryKeys"] = json!({ "holder1": public1, "holder2": public2 });
    let submitted = d.call(
        "dave",
        "POST",
        "/api/v2/update",
        Some(manifest_body(&raw(&two_keys))),
    );
    assert_eq!(submitted.data()["missingAcknowledgments"], 1);
    let before = d.sealed();
    let refused = d.call_raw("frank", "POST", "/update-manifest", Some(&raw(&two_keys)));
    assert_eq!(refused.status, 400, "{:?}", refused.body);
    assert_eq!(refused.body["status"], "error");
    assert!(
        refused.message().contains("/api/v2/update-manifest"),
        "{}",
        refused.message()
    );
    assert_eq!(d.sealed(), before);
    let pending = curl(
        &Trust::Insecure,
        "GET",
        &d.c.url("/api/v2/update-manifest"),
        None,
        &[],
    );
    assert_eq!(pending.data()["missingUsers"], json!(["frank"]));

    // The v2 acknowledgement applies it and returns both secrets, which recover the state.
    let applied = d.call(
        "frank",
        "POST",
        "/api/v2/update-manifest",
        Some(manifest_body(&raw(&two_keys))),
    );
    assert_eq!(applied.data()["missingAcknowledgments"], 0);
    let secrets = applied.data()["recoverySecrets"]
        .as_object()
        .unwrap()
        .clone();
    assert_eq!(secrets.len(), 2, "{:?}", applied.body);
    recover_with(
        &mut d.c,
        &dir,
        &[
            ("holder1", unb64(&secrets["holder1"]), key1),
            ("holder2", unb64(&secrets["holder2"]), key2),
        ],
    );

    // An update that removes every recovery key issues no secret, so v1 may apply it.
    let mut no_keys = threshold_two.clone();
    no_keys["RecoveryKeys"] = json!({});
    let submitted = d.call_raw("dave", "POST", "/update", Some(&raw(&no_keys)));
    assert_eq!(submitted.data(), &Value::Null);
    let acknowledged = d.call_raw("frank", "POST", "/update-manifest", Some(&raw(&no_keys)));
    assert_eq!(
        acknowledged.data(),
        "All users have acknowledged the update manifest. Update successfully applied"
    );
    let manifest = curl(
        &Trust::Insecure,
        "GET",
        &d.c.url("/api/v2/manifest"),
        None,
        &[],
    );
    assert_eq!(unb64(&manifest.data()["manifest"]), raw(&no_keys));
}

#[test]
fn package_updates_check_the_permission_first_and_refuse_versions_no_enclave_has() {
    let d = Custom::start(|_, _| {});
    let update =
        |packages: Value| manifest_body(json!({ "Packages": packages }).to_string().as_bytes());
    let before = d.sealed();
    // Alice may not update packages: whatever she sends, she learns only that.
    for packages in [
        json!({"backend": {"SecurityVersion": 0}}),
        json!({"nonexistent": {"SecurityVersion": 5}}),
        json!({"backend": {"SecurityVersion": 70000}}),
        json!({"backend": {"SecurityVersion": 3}}),
    ] {
        let answer = d.call(
            "alice",
            "POST",
            "/api/v2/update",
            Some(update(packages.clone())),
        );
        assert_eq!(answer.status, 401, "{packages}: {:?}", answer.body);
        assert!(
            answer
                .message()
                .starts_with("user \"alice\" is not allowed to update the security version"),
            "{}",
            answer.message()
        );
    }
    assert_eq!(d.sealed(), before);

    // Carol may, within the rules; 65536 and above no enclave can ever have.
    for (packages, fragment) in [
        (
            json!({"backend": {"SecurityVersion": 0}}),
            "SecurityVersion",
        ),
        (
            json!({"backend": {"SecurityVersion": 2, "UniqueID": "00"}}),
            "UniqueID",
        ),
        (
            json!({"backend": {"SecurityVersion": 2, "Debug": true}}),
            "Debug",
        ),
        (
            json!({"backend": {"SecurityVersion": 65536}}),
            "Packages[\"backend\"].SecurityVersion: 65536 is more than 65535, the highest \
             security version (ISVSVN) an enclave can have",
        ),
    ] {
        let answer = d.call(
            "carol",
            "POST",
            "/api/v2/update",
            Some(update(packages.clone())),
        );
        assert_eq!(answer.status, 400, "{packages}: {:?}", answer.body);
        assert!(answer.message().contains(fragment), "{}", answer.message());
        assert_eq!(d.sealed(), before, "{packages}");
    }
    for _ in 0..2 {
        let answer = d.call(
            "carol",
            "POST",
            "/api/v2/update",
            Some(update(json!({"backend": {"SecurityVersion": 65535}}))),
        );
        assert_eq!(answer.data()["missingAcknowledgments"], 0);
    }
}

#[test]
fn full_updates_toggle_sign_quote_and_monotonic_counter_both_ways() {
    use crate::counter_names::{marble, previous, set};
    let mut d = Custom::start(|m, _| {
        m["Packages"]["backend"] = json!({
            "SignerID": crate::activation::SIGNER, "ProductID": 3, "SecurityVersion": 2
        });
        m["Config"] = json!({"UpdateThreshold": 1});
    });
    let user_key = json!({"secrets": {"user_key": {"Key": "AAAAAAAAAAAAAAAAAAAAAA=="}}});
    assert_eq!(
        d.call("bob", "POST", "/api/v2/secrets", Some(user_key))
            .data(),
        &Value::Null
    );
    let dir = d.dir.clone();
    let sign_quote = |d: &Custom| {
        let body = file(&d.dir, "sign.json", "{}");
        curl(
            &Trust::Insecure,
            "POST",
            &d.c.url("/api/v2/sign-quote"),
            Some(&body),
            &[],
        )
    };
    let with_gates = |gates: Value| {
        let mut m = d.manifest.clone();
        m["Config"]["FeatureGates"] = gates;
        raw(&m)
    };
    let on = with_gates(json!(["SignQuoteEndpoint", "MonotonicCounter"]));
    let off = with_gates(json!([]));
    let apply = |d: &Custom, manifest: &[u8]| {
        let answer = d.call(
            "dave",
            "POST",
            "/api/v2/update",
            Some(manifest_body(manifest)),
        );
        assert_eq!(
            answer.data()["missingAcknowledgments"],
            0,
            "{:?}",
            answer.body
        );
    };

    // Off: 403 before anything else.
    assert_eq!(sign_quote(&d).status, 403);
    let early = marble(&mut d.c, &dir, "web");
    assert_eq!(set(&d.c, &dir, &early, "c", 1).status, 403);

    // On: the body is read (400 for an empty one), and counters work for Marbles activated
    // under the new manifest; a certificate from before the update is no longer a Marble's.
    apply(&d, &on);
    let answer = sign_quote(&d);
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    assert_eq!(answer.body["data"]["sgxQuote"], "failed to parse JSON data");
    let refused = set(&d.c, &dir, &early, "c", 1);
    assert_eq!(refused.status, 401, "{:?}", refused.body);
    let web = marble(&mut d.c, &dir, "web");
    assert_eq!(previous(&set(&d.c, &dir, &web, "c", 5)), 0);

    // Off again, and on again: the counter kept its value.
    apply(&d, &off);
    assert_eq!(sign_quote(&d).status, 403);
    assert_eq!(set(&d.c, &dir, &web, "c", 6).status, 403);
    apply(&d, &on);
    let web = marble(&mut d.c, &dir, "web");
    assert_eq!(previous(&set(&d.c, &dir, &web, "c", 6)), 5);
    assert_eq!(sign_quote(&d).status, 400);
}

#[test]
fn a_full_update_that_could_never_be_applied_is_refused_before_acknowledgements() {
    let d = Custom::start(|_, _| {});
    for (shared, cert, message) in [
        (
            true,
            json!({"InhibitAnyPolicy": 3}),
            "invalid manifest: Secrets[\"bad\"].Cert.InhibitAnyPolicy: this field cannot be \
             honoured",
        ),
        (
            false,
            json!({"PolicyIdentifiers": [[-1, 2]]}),
            "invalid manifest: Secrets[\"bad\"].Cert.PolicyIdentifiers: negative OID component",
        ),
    ] {
        let mut update = d.manifest.clone();
        update["Secrets"]["bad"] =
            json!({"Type": "cert-ecdsa", "Size": 256, "Shared": shared, "Cert": cert});
        let before = d.sealed();
        let answer = d.call(
            "dave",
            "POST",
            "/api/v2/update",
            Some(manifest_body(&raw(&update))),
        );
        assert_eq!(answer.status, 400, "{:?}", answer.body);
        assert_eq!(answer.message(), message);
        assert_eq!(d.sealed(), before);
        let pending = curl(
            &Trust::Insecure,
            "GET",
            &d.c.url("/api/v2/update-manifest"),
            None,
            &[],
        );
        assert_eq!(pending.status, 404);
    }
}

#[test]
fn concurrent_acknowledgements_apply_the_update_once() {
    // Three manifest updaters (dave, frank and zed), two acknowledgements needed.
    let zed = std::cell::RefCell::new(None);
    let mut d = Custom::start(|m, dir| {
        let cert = user_cert(dir, "zed", false);
        m["Users"]["zed"] = json!({"Certificate": cert.pem, "Roles": ["updater"]});
        m["Config"] = json!({"UpdateThreshold": 2});
        *zed.borrow_mut() = Some(cert);
    });
    d.users.push(("zed", zed.into_inner().unwrap()));
    for round in 0..3 {
        let mut update = d.manifest.clone();
        update["Secrets"][format!("round{round}")] =
            json!({"Type": "symmetric-key", "Size": 128, "Shared": true});
        let new = raw(&update);
        let submitted = d.call("dave", "POST", "/api/v2/update", Some(manifest_body(&new)));
        assert_eq!(submitted.data()["missingAcknowledgments"], 1);
        let answers: Vec<Answer> = std::thread::scope(|s| {
            let acks: Vec<_> = ["frank", "zed"]
                .into_iter()
                .map(|user| {
                    let d = &d;
                    let body = manifest_body(&new).to_string();
                    s.spawn(move || {
                        // Each thread writes its own body file.
                        let path = file(&d.dir, &format!("ack-{user}.json"), body);
                        let cert = d.cert(user);
                        curl(
                            &Trust::Insecure,
                            "POST",
                            &d.c.url("/api/v2/update-manifest"),
                            Some(&path),
                            &[
                                "--cert",
                                cert.cert.to_str().unwrap(),
                                "--key",
                                cert.key.to_str().unwrap(),
                            ],
                        )
                    })
                })
                .collect();
            acks.into_iter().map(|a| a.join().unwrap()).collect()
        });
        let mut statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 404], "round {round}: {answers:?}");
        let applied = answers.iter().find(|a| a.status == 200).unwrap();
        assert_eq!(applied.data()["missingAcknowledgments"], 0);
        let log = curl(
            &Trust::Insecure,
            "GET",
            &d.c.url("/api/v2/update"),
            None,
            &[],
        );
        let lines = log.data()["updateLog"].as_array().unwrap();
        let applied_lines = lines
            .iter()
            .filter(|l| {
                l.as_str()
                    .unwrap()
                    .contains("\"Complete Manifest updated\"")
            })
            .count();
        assert_eq!(applied_lines, round + 1, "round {round}");
        d.manifest = update;
    }
}
