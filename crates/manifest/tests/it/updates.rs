//! Update rules: classification, package-update constraints (U1–U5), permissions, and
//! user-defined secret uploads (S1–S6).

use std::collections::BTreeMap;

use quarry_manifest::update::{
    Permissions, UpdateKind, UploadedSecret, apply_package_update, check_package_update,
    check_secret_upload, parse_secret_upload, parse_secret_upload_v1,
};
use quarry_manifest::{Action, CheckError, Manifest, ManifestDocument, SecretBytes};
use serde_json::json;

use crate::support::data;

fn manifest(value: serde_json::Value) -> Manifest {
    ManifestDocument::from_json(serde_json::to_vec(&value).unwrap())
        .unwrap()
        .into_manifest()
}

fn sample() -> Manifest {
    ManifestDocument::from_file_bytes(data("marblerun-style.json").as_bytes())
        .unwrap()
        .into_manifest()
}

fn rules(violations: &[quarry_manifest::Violation]) -> Vec<(String, &'static str)> {
    violations
        .iter()
        .map(|v| (v.path.to_string(), v.error.rule()))
        .collect()
}

#[test]
fn classifies_package_and_full_updates() {
    let package = manifest(json!({"Packages": {"backend": {"SecurityVersion": 5}}}));
    assert_eq!(UpdateKind::of(&package), UpdateKind::Package);
    // Config does not count, as in MarbleRun.
    let with_config = manifest(json!({"Packages": {"backend": {"SecurityVersion": 5}},
        "Config": {"SealMode": "UniqueKey"}}));
    assert_eq!(UpdateKind::of(&with_config), UpdateKind::Package);
    assert_eq!(UpdateKind::of(&manifest(json!({}))), UpdateKind::Package);
    for section in [
        "Infrastructures",
        "Marbles",
        "Users",
        "RecoveryKeys",
        "Roles",
        "Secrets",
        "TLS",
    ] {
        let value = if section == "RecoveryKeys" {
            json!({"k": "x"})
        } else {
            json!({"x": {}})
        };
        let full =
            manifest(json!({"Packages": {"backend": {"SecurityVersion": 5}}, section: value}));
        assert_eq!(UpdateKind::of(&full), UpdateKind::Full, "{section}");
    }
    assert_eq!(UpdateKind::of(&sample()), UpdateKind::Full);
}

#[test]
fn package_update_raises_security_version() {
    let current = sample().packages;
    let update = manifest(json!({"Packages": {"backend": {"SecurityVersion": 3}}}));
    assert!(check_package_update(&current, &update).is_empty());
    let updated = apply_package_update(&current, &update);
    assert_eq!(updated["backend"].security_version, Some(3));
    assert_eq!(updated["backend"].signer_id, current["backend"].signer_id);
    assert_eq!(updated["frontend"], current["frontend"]);
    // Equal is allowed; a UniqueID-only package accepts any value.
    let same = manifest(
        json!({"Packages": {"backend": {"SecurityVersion": 2}, "frontend": {"SecurityVersion": 0}}}),
    );
    assert!(check_package_update(&current, &same).is_empty());
    // TCB lists are ignored, not refused.
    let tcb = manifest(
        json!({"Packages": {"backend": {"SecurityVersion": 2, "AcceptedTCBStatuses": ["x"]}}}),
    );
    assert!(check_package_update(&current, &tcb).is_empty());
}

#[test]
fn package_update_refusals() {
    let current = sample().packages;
    let cases = [
        (json!({}), vec![("Packages", "U1")]),
        (
            json!({"Packages": {"nope": {"SecurityVersion": 3}}}),
            vec![(r#"Packages["nope"]"#, "U2")],
        ),
        (
            json!({"Packages": {"backend": {"SecurityVersion": 3, "Debug": true, "UniqueID": "a",
                "SignerID": "b", "ProductID": 1}}}),
            vec![
                (r#"Packages["backend"].Debug"#, "U3"),
                (r#"Packages["backend"].UniqueID"#, "U3"),
                (r#"Packages["backend"].SignerID"#, "U3"),
                (r#"Packages["backend"].ProductID"#, "U3"),
            ],
        ),
        (
            json!({"Packages": {"backend": {}}}),
            vec![(r#"Packages["backend"].SecurityVersion"#, "U4")],
        ),
        (
            json!({"Packages": {"backend": {"SecurityVersion": 1}}}),
            vec![(r#"Packages["backend"].SecurityVersion"#, "U5")],
        ),
    ];
    for (update, expected) in cases {
        let got = rules(&check_package_update(&current, &manifest(update.clone())));
        let want: Vec<(String, &str)> = expected
            .iter()
            .map(|(p, r)| ((*p).to_owned(), *r))
            .collect();
        assert_eq!(got, want, "{update}");
    }
}

#[test]
fn permissions_are_the_union_of_roles() {
    let m = sample();
    let alice = Permissions::of(&m, "alice");
    assert!(alice.allows(Action::UpdateManifest, []));
    assert!(alice.allows(Action::UpdateSecurityVersion, ["backend"]));
    assert!(!alice.allows(Action::UpdateSecurityVersion, ["backend", "frontend"]));
    assert!(alice.allows(Action::ReadSecret, ["apiKey", "password"]));
    assert!(!alice.allows(Action::WriteSecret, ["password"]));
    let bob = Permissions::of(&m, "bob");
    assert!(bob.allows(Action::WriteSecret, ["password", "uploadKey"]));
    assert!(bob.allows(Action::ReadSecret, ["uploadKey"]));
    assert!(!bob.allows(Action::UpdateSecurityVersion, []));
    assert!(!Permissions::of(&m, "mallory").allows(Action::UpdateManifest, []));
}

fn upload(body: serde_json::Value) -> BTreeMap<String, UploadedSecret> {
    parse_secret_upload(&serde_json::to_vec(&body).unwrap())
        .unwrap()
        .0
}

fn secrets() -> BTreeMap<String, quarry_manifest::Secret> {
    manifest(json!({"Secrets": {
        "key": {"Type": "symmetric-key", "Size": 128, "UserDefined": true},
        "odd": {"Type": "symmetric-key", "Size": 12, "UserDefined": true},
        "cert": {"Type": "cert-rsa", "Size": 2048, "UserDefined": true},
        "text": {"Type": "plain", "UserDefined": true},
        "generated": {"Type": "symmetric-key", "Size": 128, "Shared": true}
    }}))
    .secrets
}

#[test]
fn uploads_that_follow_the_rules() {
    let body = json!({"secrets": {
        "key": {"Key": "AAECAwQFBgcICQoLDA0ODw=="},
        "cert": {"Cert": data("server-cert.der.b64"), "Private": data("server-key.pkcs8.b64")},
        "text": {"Key": "aGVsbG8="}
    }});
    let values = check_secret_upload(&secrets(), &upload(body)).unwrap();
    assert_eq!(
        values["key"].private.expose(),
        (0u8..16).collect::<Vec<_>>()
    );
    assert_eq!(values["key"].public, values["key"].private);
    assert_eq!(values["text"].public.expose(), b"hello");
    let cert = &values["cert"];
    assert!(cert.cert.is_some());
    // Public is the certificate's SubjectPublicKeyInfo (DER SEQUENCE).
    assert_eq!(cert.public.expose()[0], 0x30);
    assert!(!cert.private.is_empty());
    // The v1 body is the inner map.
    let v1 = parse_secret_upload_v1(br#"{"text": {"Key": "aGk="}}"#)
        .unwrap()
        .0;
    assert_eq!(
        check_secret_upload(&secrets(), &v1).unwrap()["text"]
            .public
            .expose(),
        b"hi"
    );
    // Empty values count as absent.
    let blank = upload(
        json!({"secrets": {"key": {"Key": "AAECAwQFBgcICQoLDA0ODw==", "Cert": "", "Private": ""}}}),
    );
    assert!(check_secret_upload(&secrets(), &blank).is_ok());
    // A plain secret may be empty.
    let empty = upload(json!({"secrets": {"text": {}}}));
    assert!(
        check_secret_upload(&secrets(), &empty).unwrap()["text"]
            .public
            .is_empty()
    );
}

#[test]
fn uploads_that_break_the_rules() {
    let cases = [
        (json!({"nope": {"Key": "aGk="}}), r#"secrets["nope"]"#, "S1"),
        (
            json!({"generated": {"Key": "AAECAwQFBgcICQoLDA0ODw=="}}),
            r#"secrets["generated"]"#,
            "S2",
        ),
        (
            json!({"key": {"Key": "aGk="}}),
            r#"secrets["key"].Key"#,
            "S5",
        ),
        (json!({"key": {}}), r#"secrets["key"].Key"#, "S5"),
        (json!({"odd": {"Key": "aGk="}}), r#"secrets["odd"]"#, "S6"),
        (
            json!({"key": {"Key": "AAECAwQFBgcICQoLDA0ODw==", "Private": "aGk="}}),
            r#"secrets["key"].Private"#,
            "S4",
        ),
        (
            json!({"key": {"Key": "AAECAwQFBgcICQoLDA0ODw==", "Cert": data("server-cert.der.b64")}}),
            r#"secrets["key"].Cert"#,
            "S4",
        ),
        (
            json!({"cert": {"Private": "aGk="}}),
            r#"secrets["cert"].Cert"#,
            "S3",
        ),
        (
            json!({"cert": {"Cert": "AAEC"}}),
            r#"secrets["cert"].Cert"#,
            "S3",
        ),
        (
            json!({"cert": {"Cert": data("server-cert.der.b64"), "Key": "aGk="}}),
            r#"secrets["cert"].Key"#,
            "S4",
        ),
        (
            json!({"text": {"Private": "aGk="}}),
            r#"secrets["text"].Private"#,
            "S4",
        ),
        (
            json!({"text": {"Cert": data("server-cert.der.b64")}}),
            r#"secrets["text"].Cert"#,
            "S4",
        ),
    ];
    for (inner, path, rule) in cases {
        let violations =
            check_secret_upload(&secrets(), &upload(json!({"secrets": inner.clone()})))
                .expect_err(&inner.to_string());
        assert_eq!(rules(&violations), [(path.to_owned(), rule)], "{inner}");
    }
}

#[test]
fn upload_values_never_show_in_debug() {
    let uploaded = UploadedSecret::default();
    let value = SecretBytes::new(b"hunter2".to_vec());
    assert!(!format!("{value:?}").contains("hunter2"));
    assert!(!format!("{uploaded:?}").contains("hunter2"));
    assert!(matches!(
        CheckError::UploadWrongKeySize { got: 16, size: 128 }.rule(),
        "S5"
    ));
}
