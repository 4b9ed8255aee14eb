//! Client API request members are matched to names as Go's JSON decoder matches them, beyond
//! ASCII case: a body that names a member twice through a letter Go folds into ASCII (long s,
//! Kelvin sign, dotless i) is refused, since MarbleRun would take the last one and a reader
//! matching ASCII case only the first.

use quarry_testkit::coordinator::Coordinator;
use serde_json::json;

use crate::tools::{Trust, b64, curl, file, manifest, rsa_key};
use crate::workflow::status;

#[test]
fn a_member_given_twice_through_a_go_folded_letter_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let c = Coordinator::start(dir).unwrap();
    let (_, public) = rsa_key(dir, "holder");
    let good = manifest(&[("holder", &public)], 0);
    let other = manifest(&[], 0);

    for twin in ["manife\u{017F}t", "man\u{0131}fest", "MAN\u{0130}FEST"] {
        let body = format!(
            "{{\"manifest\": {}, \"{twin}\": {}}}",
            json!(b64(&good)),
            json!(b64(&other))
        );
        let body = file(dir, "twice.json", body);
        let answer = curl(
            &Trust::Insecure,
            "POST",
            &c.url("/api/v2/manifest"),
            Some(&body),
            &[],
        );
        assert_eq!(answer.status, 400, "{twin}: {:?}", answer.body);
        assert!(
            answer.message().starts_with("manifest: given twice"),
            "{twin}: {:?}",
            answer.body
        );
        assert_eq!(status(&c, &Trust::Insecure), 2);
    }

    // Alone, such a key is the member, as in Go.
    let body = file(
        dir,
        "folded.json",
        format!("{{\"manife\u{017F}t\": {}}}", json!(b64(&good))),
    );
    let answer = curl(
        &Trust::Insecure,
        "POST",
        &c.url("/api/v2/manifest"),
        Some(&body),
        &[],
    );
    assert_eq!(
        answer.data()["RecoverySecrets"]
            .as_object()
            .map(|m| m.len()),
        Some(1),
        "{:?}",
        answer.body
    );
    assert_eq!(status(&c, &Trust::Insecure), 3);
}

#[test]
fn a_refused_name_with_a_bidirectional_override_is_shown_escaped() {
    use crate::users::{user_cert, users_manifest};

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let c = Coordinator::start(dir).unwrap();
    let dave = user_cert(dir, "dave", false);
    let frank = user_cert(dir, "frank", false);
    let mut m: serde_json::Value = serde_json::from_slice(&users_manifest(
        &[("dave", &dave), ("frank", &frank)],
        false,
    ))
    .unwrap();
    // A second user with dave's certificate (C13), named so that a terminal would show
    // "frank" reversed around the override.
    m["Users"]["x\u{202E}knarf"] = m["Users"]["dave"].clone();
    let body = file(
        dir,
        "bidi.json",
        json!({ "manifest": b64(&serde_json::to_vec(&m).unwrap()) }).to_string(),
    );
    let answer = curl(
        &Trust::Insecure,
        "POST",
        &c.url("/api/v2/manifest"),
        Some(&body),
        &[],
    );
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    let message = answer.message();
    assert!(message.contains("[C13]"), "{message}");
    assert!(message.contains(r#"Users["x\u202eknarf"]"#), "{message}");
    assert!(!message.contains('\u{202E}'), "{message}");
    assert_eq!(status(&c, &Trust::Insecure), 2);
}
