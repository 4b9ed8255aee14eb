//! The emulator's Managed HSM against real Managed HSM responses (`testdata/azure`): the same
//! code reads both, and both give the same structure — member names, member order and JSON
//! types at every level of the JWS header, the payload and the decoded `key_hsm`, and of the
//! create-key response.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{b64url, testdata};
use crate::hsm_support::{Kek, Provisioned, SEED_POLICY, maa_token, seed_identity, x5c};

/// Decodes base64url with or without padding.
pub(crate) fn b64url_decode(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).unwrap()
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every member path in document order with its JSON type; arrays by their element type.
fn shape(prefix: &str, value: &Value, out: &mut Vec<(String, &'static str)>) {
    out.push((prefix.to_owned(), json_type(value)));
    match value {
        Value::Object(m) => {
            for (k, v) in m {
                shape(&format!("{prefix}.{k}"), v, out);
            }
        }
        Value::Array(items) => {
            if let Some(first) = items.first() {
                shape(&format!("{prefix}[]"), first, out);
            }
        }
        _ => {}
    }
}

/// The structure of a release JWS: header, payload and the decoded `key_hsm`.
fn release_structure(jws: &str) -> Vec<(String, &'static str)> {
    let segments: Vec<&str> = jws.split('.').collect();
    assert_eq!(segments.len(), 3, "a compact JWS");
    assert!(
        segments.iter().all(|s| !s.contains('=')),
        "segments are unpadded"
    );
    let header: Value = serde_json::from_slice(&b64url_decode(segments[0])).unwrap();
    let payload: Value = serde_json::from_slice(&b64url_decode(segments[1])).unwrap();
    let key_hsm = payload["response"]["key"]["key"]["key_hsm"]
        .as_str()
        .unwrap();
    let key_hsm: Value = serde_json::from_slice(&b64url_decode(key_hsm)).unwrap();
    let mut out = Vec::new();
    shape("header", &header, &mut out);
    shape("payload", &payload, &mut out);
    shape("key_hsm", &key_hsm, &mut out);
    out
}

/// Facts both must show: header members and algorithm, thumbprint `kid`, the signature verifying
/// with `x5c[0]`, the released key's `kty` without `-HSM`, and an RSA part as long as the
/// wrapping key followed by an AES-KWP part.
fn check_release_facts(jws: &str) {
    let (header_b64, rest) = jws.split_once('.').unwrap();
    let header: serde_json::Map<String, Value> =
        serde_json::from_slice(&b64url_decode(header_b64)).unwrap();
    let names: Vec<&str> = header.keys().map(String::as_str).collect();
    assert_eq!(names, ["alg", "kid", "x5c", "x5t#S256"]);
    assert_eq!(header["alg"], "RS256");
    let chain = x5c(&header);
    assert_eq!(chain.len(), 3);
    let thumb = b64url(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &chain[0]).as_ref());
    assert_eq!(header["kid"], thumb.as_str());
    assert_eq!(header["x5t#S256"], thumb.as_str());
    let (signing_input, signature) = jws.rsplit_once('.').unwrap();
    let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
    aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
        leaf.public_key().subject_public_key.data.to_vec(),
    )
    .verify(signing_input.as_bytes(), &b64url_decode(signature))
    .unwrap();

    let payload: Value =
        serde_json::from_slice(&b64url_decode(rest.split_once('.').unwrap().0)).unwrap();
    let key = &payload["response"]["key"]["key"];
    assert_eq!(key["kty"], "RSA");
    let key_hsm: Value =
        serde_json::from_slice(&b64url_decode(key["key_hsm"].as_str().unwrap())).unwrap();
    assert_eq!(key_hsm["header"]["alg"], "dir");
    assert_eq!(key_hsm["header"]["enc"], payload["request"]["enc"]);
    assert_eq!(key_hsm["schema_version"], "1.0");
    let ciphertext = b64url_decode(key_hsm["ciphertext"].as_str().unwrap());
    assert!(
        ciphertext.len() > 256 && (ciphertext.len() - 256).is_multiple_of(8),
        "{}",
        ciphertext.len()
    );
}

fn real(name: &str) -> String {
    std::fs::read_to_string(testdata(&format!("azure/{name}"))).unwrap()
}

/// Drops the paths under `path` (members the real responses of some api-versions lack).
fn without(mut s: Vec<(String, &'static str)>, path: &str) -> Vec<(String, &'static str)> {
    s.retain(|(p, _)| p != path);
    s
}

#[tokio::test]
async fn real_and_emulated_releases_have_the_same_structure() {
    let p = Provisioned::start();
    let admin = p.token(&p.admin).await;
    let policy = b64url(SEED_POLICY.as_bytes());
    let (status, created) = p
        .call(
            Method::POST,
            "/keys/rsa-exportable/create?api-version=7.3",
            &admin,
            Some(
                &json!({"kty": "RSA-HSM", "key_size": 2048, "attributes": {"exportable": true},
                "release_policy": {"data": policy}}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    p.emu.hsm(&[
        "role-assign",
        "--assignee",
        p.coordinator().0.as_str(),
        "--role",
        "Managed HSM Crypto Service Release User",
        "--scope",
        "/keys/rsa-exportable",
    ]);

    let token = p.token(&p.coordinator()).await;
    let kek = Kek::generate();
    let maa = maa_token(&p.emu, &seed_identity(), &kek.runtime_data).await;
    let mut emulated = Vec::new();
    for body in [
        json!({"target": maa}),
        json!({"target": maa, "enc": "RSA_AES_KEY_WRAP_256", "nonce": "nonce"}),
    ] {
        let (status, result) = p
            .call(
                Method::POST,
                "/keys/rsa-exportable//release?api-version=7.3",
                &token,
                Some(&body),
            )
            .await;
        assert_eq!(status, 200, "{result}");
        emulated.push(result["value"].as_str().unwrap().to_owned());
    }

    for jws in emulated.iter().cloned().chain(
        [
            "mhsm-release-response.jws",
            "mhsm-release-response-default-enc.jws",
            "mhsm-release-response-7.3.jws",
        ]
        .map(real),
    ) {
        check_release_facts(&jws);
    }

    // api-version 7.3 (GA), no enc, no nonce: identical structure, member order included.
    assert_eq!(
        release_structure(&emulated[0]),
        release_structure(&real("mhsm-release-response-7.3.jws"))
    );
    // 7.3-preview lacked release_policy.immutable; otherwise the same.
    let immutable = "payload.response.key.release_policy.immutable";
    assert_eq!(
        without(release_structure(&emulated[0]), immutable),
        release_structure(&real("mhsm-release-response-default-enc.jws"))
    );
    assert_eq!(
        without(release_structure(&emulated[1]), immutable),
        release_structure(&real("mhsm-release-response.jws"))
    );
    let unwrapped = kek.unwrap(
        "CKM_RSA_AES_KEY_WRAP",
        &crate::hsm_support::decode_release(&emulated[0]).ciphertext,
    );
    assert!(
        aws_lc_rs::rsa::KeyPair::from_pkcs8(&unwrapped).is_ok(),
        "an RSA key is released as PKCS#8"
    );

    // The create-key response: same members and types as the real one (7.3-preview, which has
    // no release_policy.immutable).
    let real_create: Value = serde_json::from_str(&real("mhsm-create-key-response.json")).unwrap();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    shape("", &created, &mut a);
    shape("", &real_create, &mut b);
    assert_eq!(without(a, ".release_policy.immutable"), b);
}

/// The sidecar's known-answer vector (`CKM_RSA_AES_KEY_WRAP`, a ciphertext in `key_hsm` form):
/// the tests' own unwrap opens it, so the same unwrap opening the emulator's releases checks the
/// emulator's wrapping against a format the real service is known to produce.
fn sidecar_kat() -> (Kek, String, Vec<u8>, Vec<u8>) {
    let kat: Value = serde_json::from_str(&real("sidecar-rsa-aes-unwrap-kat.json")).unwrap();
    let pkcs1 = pem::parse(kat["wrapping_private_key_pem"].as_str().unwrap())
        .unwrap()
        .into_contents();
    let pair = aws_lc_rs::rsa::KeyPair::from_der(&pkcs1).unwrap();
    let pkcs8 = aws_lc_rs::encoding::AsDer::as_der(&pair).unwrap();
    let expected: Vec<u8> = kat["expected_plaintext"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_u64().unwrap() as u8)
        .collect();
    let ciphertext = b64url_decode(kat["ciphertext"].as_str().unwrap());
    (
        Kek::from_pkcs8(pkcs8.as_ref()),
        kat["enc"].as_str().unwrap().to_owned(),
        ciphertext,
        expected,
    )
}

#[test]
fn the_tests_unwrap_opens_the_sidecar_known_answer() {
    let (kek, enc, ciphertext, expected) = sidecar_kat();
    assert_eq!(enc, "CKM_RSA_AES_KEY_WRAP");
    assert_eq!(kek.unwrap(&enc, &ciphertext), expected);
}

#[tokio::test]
async fn releases_to_the_sidecar_key_open_with_the_known_answer_unwrap() {
    let p = Provisioned::start();
    let (kek, _, _, _) = sidecar_kat();
    let token = p.token(&p.coordinator()).await;
    let maa = maa_token(&p.emu, &seed_identity(), &kek.runtime_data).await;
    let (status, body) = p
        .call(
            Method::POST,
            &format!("/keys/{}/release?api-version=7.4", p.key_name()),
            &token,
            Some(&json!({"target": maa})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let released = crate::hsm_support::decode_release(body["value"].as_str().unwrap());
    assert_eq!(
        released.ciphertext.len(),
        296,
        "the KAT's length for a 256-bit key"
    );
    assert_eq!(
        kek.unwrap("CKM_RSA_AES_KEY_WRAP", &released.ciphertext)
            .len(),
        32
    );
}
