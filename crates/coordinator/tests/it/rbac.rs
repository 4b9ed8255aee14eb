//! The whole role matrix: every user (and a stranger, and no certificate) tries every action;
//! exactly the ones their roles grant succeed, every other answers `401 fail` and leaves the
//! sealed files byte-identical.

use serde_json::{Value, json};

use crate::tools::b64;
use crate::users::{Deployment, manifest_body, users_manifest};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    ReadKey,
    ReadText,
    ReadBoth,
    WriteKey,
    WriteText,
    PackageUpdate,
    FullUpdate,
}

const ACTS: [Act; 7] = [
    Act::ReadKey,
    Act::ReadText,
    Act::ReadBoth,
    Act::WriteKey,
    Act::WriteText,
    Act::PackageUpdate,
    Act::FullUpdate,
];

fn allowed(user: Option<&str>, act: Act) -> bool {
    matches!(
        (user, act),
        (Some("alice"), Act::ReadKey | Act::ReadText | Act::ReadBoth)
            | (Some("bob"), Act::WriteKey)
            | (Some("carol"), Act::PackageUpdate)
            | (Some("dave" | "frank"), Act::FullUpdate)
    )
}

#[test]
fn every_role_allows_exactly_its_resources_and_actions() {
    let d = Deployment::start(&[]);
    let listed: Vec<(&str, &crate::users::UserCert)> = d
        .users
        .iter()
        .filter(|(n, _)| *n != "eve")
        .map(|(n, c)| (*n, c))
        .collect();
    let full = users_manifest(&listed, true);
    let mut version = 1u64;
    for user in [
        Some("alice"),
        Some("bob"),
        Some("carol"),
        Some("dave"),
        Some("frank"),
        Some("eve"),
        None,
    ] {
        for act in ACTS {
            let (method, path, body): (&str, &str, Option<Value>) = match act {
                Act::ReadKey => ("GET", "/api/v2/secrets?s=user_key", None),
                Act::ReadText => ("GET", "/api/v2/secrets?s=user_text", None),
                Act::ReadBoth => ("GET", "/api/v2/secrets?s=user_key&s=user_text", None),
                Act::WriteKey => (
                    "POST",
                    "/api/v2/secrets",
                    Some(json!({"secrets": {"user_key": {"Key": b64(&[1u8; 16])}}})),
                ),
                Act::WriteText => (
                    "POST",
                    "/api/v2/secrets",
                    Some(json!({"secrets": {"user_text": {"Key": b64(b"text")}}})),
                ),
                Act::PackageUpdate => {
                    let update = json!({"Packages": {"backend": {"SecurityVersion": version + 1}}});
                    (
                        "POST",
                        "/api/v2/update",
                        Some(manifest_body(update.to_string().as_bytes())),
                    )
                }
                Act::FullUpdate => ("POST", "/api/v2/update", Some(manifest_body(&full))),
            };
            let before = d.sealed();
            let answer = d.call(user, method, path, body);
            if allowed(user, act) {
                assert_eq!(answer.status, 200, "{user:?} {act:?}: {:?}", answer.body);
                match act {
                    Act::PackageUpdate => version += 1,
                    Act::FullUpdate => {
                        // Pending (two updaters); cancel it for the next row.
                        assert_eq!(answer.data()["missingAcknowledgments"], 1);
                        let cancel = d.call(user, "POST", "/api/v2/update-cancel", None);
                        assert_eq!(cancel.data()["message"], "Update successfully cancelled");
                    }
                    _ => {}
                }
            } else {
                assert_eq!(answer.status, 401, "{user:?} {act:?}: {:?}", answer.body);
                assert_eq!(answer.body["status"], "fail", "{user:?} {act:?}");
                assert_eq!(d.sealed(), before, "{user:?} {act:?} changed the state");
            }
        }
    }
    // The manifest is the original one: every full update was cancelled.
    let manifest = d.call(None, "GET", "/api/v2/manifest", None);
    assert_eq!(
        crate::tools::unb64(&manifest.data()["manifest"]),
        d.manifest
    );
}

#[test]
fn cancel_needs_update_manifest() {
    let d = Deployment::start(&[]);
    let listed: Vec<(&str, &crate::users::UserCert)> = d
        .users
        .iter()
        .filter(|(n, _)| *n != "eve")
        .map(|(n, c)| (*n, c))
        .collect();
    let full = users_manifest(&listed, true);
    let submit = d.call(
        Some("dave"),
        "POST",
        "/api/v2/update",
        Some(manifest_body(&full)),
    );
    assert_eq!(submit.data()["missingAcknowledgments"], 1);
    for user in ["alice", "bob", "carol", "eve"] {
        let before = d.sealed();
        let answer = d.call(Some(user), "POST", "/api/v2/update-cancel", None);
        assert_eq!(answer.status, 401, "{user}");
        assert_eq!(d.sealed(), before);
        // Only required users may acknowledge.
        let ack = d.call(
            Some(user),
            "POST",
            "/api/v2/update-manifest",
            Some(manifest_body(&full)),
        );
        assert_eq!(ack.status, 401, "{user}");
    }
    let cancel = d.call(Some("frank"), "POST", "/api/v2/update-cancel", None);
    assert_eq!(cancel.data()["message"], "Update successfully cancelled");
    let none = d.call(None, "GET", "/api/v2/update-manifest", None);
    assert_eq!(none.status, 404);
    assert_eq!(none.message(), "no update in progress");
}
