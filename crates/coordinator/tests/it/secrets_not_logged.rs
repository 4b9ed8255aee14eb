//! Secrets never reach the Coordinator's log, even at debug level: not the recovery secrets
//! (encrypted or plain, which in single-party mode is the key of the sealed state), not a
//! user-defined secret written and read through the API, in any encoding.

use quarry_testkit::coordinator::Coordinator;
use serde_json::{Value, json};

use crate::tools::{Trust, b64, curl, file, rsa_key, unb64};
use crate::users::{user_cert, users_manifest};
use crate::workflow::{prepare_upload, set_manifest, status};

/// Every spelling of `secret` a log line might carry.
fn spellings(secret: &[u8]) -> Vec<String> {
    let mut all = vec![
        hex::encode(secret),
        hex::encode_upper(secret),
        b64(secret),
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, secret),
        format!("{secret:?}"),
    ];
    // A prefix of the encodings is enough to leak: look for the first 16 characters too.
    all.extend(
        [hex::encode(secret), b64(secret)]
            .iter()
            .map(|s| s[..16].to_owned()),
    );
    all
}

fn assert_not_logged(log: &str, what: &str, secret: &[u8]) {
    for spelling in spellings(secret) {
        assert!(
            !log.contains(&spelling),
            "{what} appears in the log as {spelling:?}"
        );
    }
}

#[test]
fn secrets_never_reach_the_log_at_debug_level() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let alice = user_cert(dir, "alice", false);
    let bob = user_cert(dir, "bob", false);
    let (holder_key, holder_public) = rsa_key(dir, "holder");
    let mut m: Value =
        serde_json::from_slice(&users_manifest(&[("alice", &alice), ("bob", &bob)], false))
            .unwrap();
    m["RecoveryKeys"] = json!({ "holder": holder_public });
    let m = serde_json::to_vec(&m).unwrap();

    let mut c = Coordinator::start_with(dir, &[("EDG_DEBUG_LOGGING", "1")]).unwrap();
    let secrets = set_manifest(&c, &Trust::Insecure, dir, &m);
    let encrypted = unb64(&secrets["holder"]);

    // bob writes a user-defined secret, alice reads it back, over HTTP/1.1 and HTTP/2.
    let user_key = [
        0x5au8, 0x17, 0xc3, 0x99, 0x01, 0xfe, 0x42, 0x88, 0x7d, 0x2b, 0xe4, 0x60, 0x13, 0xaf, 0x3c,
        0xd5,
    ];
    let as_user = |user: &crate::users::UserCert| {
        vec![
            "--cert".to_owned(),
            user.cert.display().to_string(),
            "--key".to_owned(),
            user.key.display().to_string(),
        ]
    };
    let body = file(
        dir,
        "write.json",
        json!({"secrets": {"user_key": {"Key": b64(&user_key)}}}).to_string(),
    );
    let args = as_user(&bob);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let answer = curl(
        &Trust::Insecure,
        "POST",
        &c.url("/api/v2/secrets"),
        Some(&body),
        &args,
    );
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    for http in ["--http1.1", "--http2"] {
        let args = as_user(&alice);
        let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
        args.push(http);
        let answer = curl(
            &Trust::Insecure,
            "GET",
            &c.url("/api/v2/secrets?s=user_key"),
            None,
            &args,
        );
        assert_eq!(
            unb64(&answer.data()["secrets"]["user_key"]["Private"]),
            user_key
        );
    }

    // Lose the sealed key and recover with the holder's secret.
    std::fs::remove_file(c.seal_dir().join("sealed_key")).unwrap();
    c.restart().unwrap();
    let upload = prepare_upload(dir, "holder", &encrypted, &holder_key);
    let plain = std::fs::read(dir.join("holder.secret")).unwrap();
    let answer = curl(
        &Trust::Insecure,
        "POST",
        &c.url("/api/v2/recover"),
        Some(&upload),
        &[],
    );
    assert_eq!(answer.data()["remaining"], 0, "{:?}", answer.body);
    assert_eq!(status(&c, &Trust::Insecure), 3);

    let log = c.log();
    assert!(log.contains("DEBUG"), "debug logging is off: {log}");
    assert!(log.contains("sealed state recovered"), "{log}");
    assert_not_logged(&log, "the user-defined secret", &user_key);
    assert_not_logged(&log, "the plain recovery secret", &plain);
    assert_not_logged(&log, "the encrypted recovery secret", &encrypted);
}
