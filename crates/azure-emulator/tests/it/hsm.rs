//! The Managed HSM over HTTPS: the challenge, key create / import / get / update, local RBAC,
//! Secure Key Release through the three URL forms with every `enc`, the release policy's
//! refusals, and Azure's status and code for bad input.

use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::common::{b64url, jwt_parts};
use crate::hsm_support::{
    Kek, Provisioned, SEED_POLICY, decode_release, maa_token, seed_identity, verify_release,
};

const V: &str = "api-version=7.4";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Releases `path` with `body`; returns status and body.
async fn release(p: &Provisioned, path: &str, token: &str, body: Value) -> (u16, Value) {
    p.call(Method::POST, path, token, Some(&body)).await
}

#[tokio::test]
async fn answers_without_a_token_with_exactly_one_challenge() {
    let p = Provisioned::start();
    for (method, path) in [
        (Method::GET, format!("/keys/{}/?{V}", p.key_name())),
        (Method::POST, format!("/keys/{}//release?{V}", p.key_name())),
        (Method::PUT, format!("/keys/x?{V}")),
    ] {
        let (status, headers, body) = p.call_raw(method, &path, "", None).await;
        assert_eq!(status, 401, "{path}");
        assert_eq!(body, Value::Null, "empty body");
        let challenges: Vec<_> = headers.get_all("www-authenticate").iter().collect();
        assert_eq!(challenges.len(), 1, "{challenges:?}");
        assert_eq!(
            challenges[0].to_str().unwrap(),
            format!(
                "Bearer authorization=\"{}/{}\", resource=\"https://managedhsm.azure.net\"",
                p.emu.base, p.emu.tenant
            )
        );
        assert!(headers.contains_key("x-ms-request-id"));
    }

    let (status, headers, body) = p
        .call_raw(Method::GET, &format!("/keys/k?{V}"), "not-a-token", None)
        .await;
    assert_eq!(status, 401);
    assert_eq!(headers.get_all("www-authenticate").iter().count(), 1);
    assert_eq!(body["error"]["code"], "Unauthorized");
}

#[tokio::test]
async fn creates_reads_updates_and_imports_keys() {
    let p = Provisioned::start();
    let admin = p.token(&p.admin).await;
    let policy = b64url(SEED_POLICY.as_bytes());

    let (status, created) = p
        .call(
            Method::POST,
            &format!("/keys/k1/create?{V}"),
            &admin,
            Some(
                &json!({"kty": "oct-HSM", "key_size": 256, "attributes": {"exportable": true},
                "key_ops": ["wrapKey", "unwrapKey"], "release_policy": {"data": policy}}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let kid = created["key"]["kid"].as_str().unwrap().to_owned();
    let version = kid.rsplit('/').next().unwrap().to_owned();
    assert_eq!(kid, format!("{}/keys/k1/{version}", p.emu.base));
    assert_eq!(version.len(), 32);
    assert!(
        version
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(created["key"]["kty"], "oct-HSM");
    assert_eq!(created["attributes"]["exportable"], true);
    assert_eq!(
        created["attributes"]["recoveryLevel"],
        "CustomizedRecoverable+Purgeable"
    );
    assert_eq!(
        created["release_policy"]["contentType"],
        "application/json; charset=utf-8"
    );
    assert_eq!(created["release_policy"]["immutable"], false);
    let stored =
        crate::hsm_real::b64url_decode(created["release_policy"]["data"].as_str().unwrap());
    assert!(
        String::from_utf8(stored)
            .unwrap()
            .starts_with(r#"{"anyOf":[{"allOf":"#)
    );

    for path in [
        format!("/keys/k1?{V}"),
        format!("/keys/k1/?{V}"),
        format!("/keys/K1/{version}?{V}"),
    ] {
        let (status, got) = p.call(Method::GET, &path, &admin, None).await;
        assert_eq!(status, 200, "{path}: {got}");
        assert_eq!(got["key"]["kid"], kid.as_str(), "{path}");
    }
    let (status, missing) = p
        .call(Method::GET, &format!("/keys/nope?{V}"), &admin, None)
        .await;
    assert_eq!(
        (status, missing["error"]["code"].as_str()),
        (404, Some("KeyNotFound"))
    );

    let (status, updated) = p
        .call(
            Method::PATCH,
            &format!("/keys/k1/{version}?{V}"),
            &admin,
            Some(&json!({"tags": {"a": "b"}})),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["tags"]["a"], "b");

    let (status, second) = p
        .call(
            Method::POST,
            &format!("/keys/k1/create?{V}"),
            &admin,
            Some(&json!({"kty": "RSA-HSM"})),
        )
        .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["key"]["e"], "AQAB");
    let (_, latest) = p
        .call(Method::GET, &format!("/keys/k1/?{V}"), &admin, None)
        .await;
    assert_eq!(
        latest["key"]["kid"], second["key"]["kid"],
        "the latest version is the newest"
    );
    let (status, versions) = p
        .call(Method::GET, &format!("/keys/k1/versions?{V}"), &admin, None)
        .await;
    assert_eq!(status, 200, "{versions}");
    let kids: Vec<&str> = versions["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, [kid.as_str(), second["key"]["kid"].as_str().unwrap()]);

    let (status, ec) = p
        .call(
            Method::POST,
            &format!("/keys/e1/create?{V}"),
            &admin,
            Some(&json!({"kty": "EC-HSM", "crv": "P-384"})),
        )
        .await;
    assert_eq!((status, ec["key"]["crv"].as_str()), (200, Some("P-384")));

    let (status, imported) = p
        .call(
            Method::PUT,
            &format!("/keys/imp?{V}"),
            &admin,
            Some(&json!({"key": {"kty": "oct-HSM", "k": b64url(&[9u8; 32]), "key_ops": ["wrapKey"]},
                "hsm": true, "attributes": {"exportable": true},
                "release_policy": {"contentType": "application/json; charset=utf-8", "data": policy}})),
        )
        .await;
    assert_eq!(status, 200, "{imported}");
    assert!(
        imported["key"].get("k").is_none(),
        "no key material in responses"
    );

    let (status, list) = p
        .call(Method::GET, &format!("/keys?{V}"), &admin, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["value"].as_array().unwrap().len(), 4, "{list}");
}

#[tokio::test]
async fn refuses_bad_keys_and_policies_with_azures_codes() {
    let p = Provisioned::start();
    let admin = p.token(&p.admin).await;
    let create = |body: Value| {
        let admin = admin.clone();
        let p = &p;
        async move {
            p.call(
                Method::POST,
                &format!("/keys/bad/create?{V}"),
                &admin,
                Some(&body),
            )
            .await
        }
    };
    let no_version =
        b64url(br#"{"anyOf":[{"authority":"https://a","allOf":[{"claim":"x","equals":1}]}]}"#);
    let unknown_op = b64url(
        br#"{"version":"1.0.0","anyOf":[{"authority":"https://a","allOf":[{"claim":"x","equal":1}]}]}"#,
    );
    for (body, needle) in [
        (
            json!({"kty": "oct-HSM", "attributes": {"exportable": true}}),
            "AKV.SKR.1004",
        ),
        (
            json!({"kty": "oct-HSM", "attributes": {"exportable": true}, "release_policy": {"data": no_version}}),
            "missing member \\\"version\\\"",
        ),
        (
            json!({"kty": "oct-HSM", "attributes": {"exportable": true}, "release_policy": {"data": unknown_op}}),
            "unknown operator \\\"equal\\\"",
        ),
        (
            json!({"kty": "oct-HSM", "release_policy": {"data": "not base64!"}}),
            "base64url",
        ),
        (json!({"kty": "DES"}), "invalid kty"),
        (json!({"kty": 5}), "invalid request body"),
    ] {
        let (status, err) = create(body.clone()).await;
        assert_eq!(status, 400, "{body}: {err}");
        assert_eq!(err["error"]["code"], "BadParameter", "{body}");
        let message = err["error"]["message"].to_string();
        assert!(message.contains(needle), "{body}: {message}");
        assert!(message.contains("(Activity ID: "), "{message}");
    }

    let (status, err) = p.call(Method::GET, "/keys/bad", &admin, None).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("BadParameter")),
        "no api-version"
    );
    let (status, _) = p
        .call(Method::GET, "/keys/bad?api-version=7.2", &admin, None)
        .await;
    assert_eq!(status, 400, "unknown api-version");
    let big = "x".repeat(300 * 1024);
    let (status, _, err) = p
        .call_raw(
            Method::POST,
            &format!("/keys/bad/create?{V}"),
            &admin,
            Some(big),
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (413, Some("RequestBodyTooLarge"))
    );
    let (status, _, err) = p
        .call_raw(
            Method::POST,
            &format!("/keys/bad/create?{V}"),
            &admin,
            Some("{".into()),
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("BadParameter"))
    );
    let (status, _) = p
        .call(Method::DELETE, &format!("/keys/bad?{V}"), &admin, None)
        .await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn releases_through_every_url_form_and_enc() {
    let p = Provisioned::start();
    let token = p.token(&p.coordinator()).await;
    let kek = Kek::generate();
    let maa = maa_token(&p.emu, &seed_identity(), &kek.runtime_data).await;
    let ca = std::fs::read(p.emu.state_dir().join("ca.pem")).unwrap();
    let name = p.key_name().to_owned();
    let admin = p.token(&p.admin).await;
    let (_, bundle) = p
        .call(Method::GET, &format!("/keys/{name}?{V}"), &admin, None)
        .await;
    let versioned_kid = bundle["key"]["kid"].as_str().unwrap().to_owned();
    let version = versioned_kid.rsplit('/').next().unwrap().to_owned();

    let mut released_keys = Vec::new();
    for (path, kid, body, enc) in [
        (
            format!("/keys/{name}/release?{V}"),
            format!("{}/keys/{name}", p.emu.base),
            json!({"target": maa}),
            "CKM_RSA_AES_KEY_WRAP",
        ),
        (
            format!("/keys/{name}//release?api-version=2025-07-01"),
            format!("{}/keys/{name}", p.emu.base),
            json!({"target": maa, "enc": "RSA_AES_KEY_WRAP_256", "nonce": "n1"}),
            "RSA_AES_KEY_WRAP_256",
        ),
        (
            format!("/keys/{name}/{version}/release?api-version=7.3"),
            versioned_kid.clone(),
            json!({"enc": "RSA_AES_KEY_WRAP_384", "nonce": "n2", "target": maa}),
            "RSA_AES_KEY_WRAP_384",
        ),
    ] {
        let (status, result) = release(&p, &path, &token, body.clone()).await;
        assert_eq!(status, 200, "{path}: {result}");
        let jws = result["value"].as_str().unwrap();
        verify_release(jws, &ca, "localhost");
        let r = decode_release(jws);
        let request = &r.payload["request"];
        assert_eq!(request["enc"], enc, "{path}");
        assert_eq!(request["kid"], kid.as_str(), "{path}");
        assert_eq!(
            request["nonce"],
            body.get("nonce").cloned().unwrap_or(Value::Null)
        );
        assert!(request.get("target").is_none(), "the token is never echoed");
        assert_eq!(
            request["api-version"],
            path.split("api-version=").nth(1).unwrap()
        );
        assert_eq!(
            r.key_hsm["header"],
            json!({"alg": "dir", "enc": enc, "kid": "quarry-test-kek"})
        );
        assert_eq!(r.key_hsm["schema_version"], "1.0");
        assert_eq!(
            r.ciphertext.len(),
            296,
            "256-byte RSA part and 40-byte AES-KWP of 32 bytes"
        );
        let key = &r.payload["response"]["key"];
        assert_eq!(key["key"]["kty"], "oct");
        assert_eq!(key["key"]["kid"], versioned_kid.as_str());
        assert_eq!(key["attributes"]["exportable"], true);
        released_keys.push(kek.unwrap(enc, &r.ciphertext));
    }
    assert_eq!(released_keys[0].len(), 32);
    assert!(
        released_keys.iter().all(|k| *k == released_keys[0]),
        "every release opens to the same key"
    );
}

#[tokio::test]
async fn rbac_lets_the_release_user_release_but_not_read() {
    let p = Provisioned::start();
    let coordinator = p.token(&p.coordinator()).await;
    let name = p.key_name().to_owned();
    let (status, err) = p
        .call(
            Method::GET,
            &format!("/keys/{name}?{V}"),
            &coordinator,
            None,
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (403, Some("AccessDenied")),
        "{err}"
    );
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("keys/read/action")
    );

    let (status, err) = p
        .call(
            Method::POST,
            &format!("/keys/other/create?{V}"),
            &coordinator,
            Some(&json!({"kty": "oct-HSM"})),
        )
        .await;
    assert_eq!(status, 403, "{err}");

    let nobody = p.emu.create_sp("nobody");
    let nobody = p.token(&(nobody.0, nobody.1)).await;
    let (status, err) = release(
        &p,
        &format!("/keys/{name}/release?{V}"),
        &nobody,
        json!({"target": "x"}),
    )
    .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (403, Some("AccessDenied")),
        "{err}"
    );

    // RBAC comes before existence: a release user learns nothing about other keys.
    let (status, _) = release(
        &p,
        &format!("/keys/ghost/release?{V}"),
        &coordinator,
        json!({"target": "x"}),
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn the_policy_refusals_hold_through_the_hsm() {
    let p = Provisioned::start();
    let token = p.token(&p.coordinator()).await;
    let kek = Kek::generate();
    let path = format!("/keys/{}/release?{V}", p.key_name());
    let other_signer = "a595c6c5805da0c9c4cb920334d354aeaee2207e479dff679d5f360375f557dd";
    let cases = [
        ("x-ms-sgx-svn", {
            let mut i = seed_identity();
            i.isv_svn = 1;
            i
        }),
        ("x-ms-sgx-is-debuggable", {
            let mut i = seed_identity();
            i.debug = true;
            i
        }),
        ("x-ms-sgx-mrsigner", {
            let mut i = seed_identity();
            i.mrsigner
                .copy_from_slice(&hex::decode(other_signer).unwrap());
            i
        }),
    ];
    for (claim, identity) in cases {
        let maa = maa_token(&p.emu, &identity, &kek.runtime_data).await;
        let (status, err) = release(&p, &path, &token, json!({"target": maa})).await;
        assert_eq!(
            (status, err["error"]["code"].as_str()),
            (403, Some("Forbidden")),
            "{claim}: {err}"
        );
        let message = err["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("claim {claim} is")),
            "{claim}: {message}"
        );
        let explanation = err["error"]["explanation"].as_str().unwrap();
        assert!(
            explanation.contains("[not met]") && explanation.contains(claim),
            "{explanation}"
        );
        // Only the one claim fails.
        assert_eq!(explanation.matches("] claim").count(), 4, "{explanation}");
        assert_eq!(
            explanation.matches("[not met] claim").count(),
            1,
            "{explanation}"
        );
    }

    let maa = maa_token(&p.emu, &seed_identity(), &kek.runtime_data).await;
    let (status, ok) = release(&p, &path, &token, json!({"target": maa})).await;
    assert_eq!(status, 200, "{ok}");
}

/// Signs `claims` as RS256 with a PKCS#8 key, with header `kid`.
fn sign(pkcs8: &[u8], kid: &str, claims: &Map<String, Value>) -> String {
    let key = aws_lc_rs::rsa::KeyPair::from_pkcs8(pkcs8).unwrap();
    let header = json!({"alg": "RS256", "jku": "https://x/certs", "kid": kid, "typ": "JWT"});
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(Value::Object(claims.clone()).to_string().as_bytes())
    );
    let mut sig = vec![0u8; key.public_modulus_len()];
    key.sign(
        &aws_lc_rs::signature::RSA_PKCS1_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .unwrap();
    format!("{input}.{}", b64url(&sig))
}

#[tokio::test]
async fn refuses_forged_expired_and_foreign_tokens() {
    let p = Provisioned::start();
    let token = p.token(&p.coordinator()).await;
    let kek = Kek::generate();
    let good = maa_token(&p.emu, &seed_identity(), &kek.runtime_data).await;
    let (header, claims) = jwt_parts(&good);
    let kid = header["kid"].as_str().unwrap();
    let maa_key = pem::parse(std::fs::read(p.emu.state_dir().join("maa-signing-key.pem")).unwrap())
        .unwrap()
        .into_contents();
    let path = format!("/keys/{}/release?{V}", p.key_name());

    // Re-signed with the real MAA key, the claims are accepted: the forgeries below differ
    // only in what they test.
    let (status, body) = release(
        &p,
        &path,
        &token,
        json!({"target": sign(&maa_key, kid, &claims)}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let other = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let other = aws_lc_rs::encoding::AsDer::as_der(&other).unwrap();
    let mut expired = claims.clone();
    expired.insert("iat".into(), (now() - 7200).into());
    expired.insert("nbf".into(), (now() - 7200).into());
    expired.insert("exp".into(), (now() - 3600).into());
    let mut foreign = claims.clone();
    foreign.insert(
        "iss".into(),
        "https://sharedeus.eus.attest.azure.net".into(),
    );
    let mut no_runtime = claims.clone();
    no_runtime.remove("x-ms-runtime");

    for (what, target, status, code, needle) in [
        (
            "another key",
            sign(other.as_ref(), kid, &claims),
            403,
            "Forbidden",
            "signature does not verify",
        ),
        (
            "expired",
            sign(&maa_key, kid, &expired),
            403,
            "Forbidden",
            "expired",
        ),
        (
            "unknown issuer",
            sign(&maa_key, kid, &foreign),
            403,
            "Forbidden",
            "not a known attestation authority",
        ),
        (
            "unknown kid",
            sign(&maa_key, "nope", &claims),
            403,
            "Forbidden",
            "no key with kid",
        ),
        (
            "no wrapping key",
            sign(&maa_key, kid, &no_runtime),
            400,
            "BadParameter",
            "x-ms-runtime.keys",
        ),
        (
            "not a jwt",
            "garbage".to_owned(),
            400,
            "BadParameter",
            "not a valid JWT",
        ),
    ] {
        let (got, err) = release(&p, &path, &token, json!({"target": target})).await;
        assert_eq!(
            (got, err["error"]["code"].as_str()),
            (status, Some(code)),
            "{what}: {err}"
        );
        assert!(
            err["error"]["message"].as_str().unwrap().contains(needle),
            "{what}: {err}"
        );
    }
    for (what, body, needle) in [
        (
            "missing target",
            json!({"enc": "RSA_AES_KEY_WRAP_256"}),
            "'target'",
        ),
        (
            "unknown enc",
            json!({"target": good, "enc": "RSA1_5"}),
            "invalid enc",
        ),
    ] {
        let (got, err) = release(&p, &path, &token, body).await;
        assert_eq!(
            (got, err["error"]["code"].as_str()),
            (400, Some("BadParameter")),
            "{what}: {err}"
        );
        assert!(
            err["error"]["message"].as_str().unwrap().contains(needle),
            "{what}: {err}"
        );
    }
}

#[tokio::test]
async fn refuses_to_release_a_key_that_is_not_exportable() {
    let p = Provisioned::start();
    let admin = p.token(&p.admin).await;
    let (status, _) = p
        .call(
            Method::POST,
            &format!("/keys/plain/create?{V}"),
            &admin,
            Some(&json!({"kty": "oct-HSM"})),
        )
        .await;
    assert_eq!(status, 200);
    let kek = Kek::generate();
    let maa = maa_token(&p.emu, &seed_identity(), &kek.runtime_data).await;
    let (status, err) = release(
        &p,
        &format!("/keys/plain/release?{V}"),
        &admin,
        json!({"target": maa}),
    )
    .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("BadParameter")),
        "{err}"
    );
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not exportable"),
        "{err}"
    );
}

#[tokio::test]
async fn keys_and_roles_survive_a_restart_and_faults_apply_per_route() {
    let p = Provisioned::start();
    let kek = Kek::generate();
    let Provisioned {
        emu,
        env,
        admin,
        policy_file,
    } = p;
    let dir = emu.stop();
    let emu = crate::common::Emu::start_in(dir, &[]);
    let p = Provisioned {
        emu,
        env,
        admin,
        policy_file,
    };

    let token = p.token(&p.coordinator()).await;
    let maa = maa_token(&p.emu, &seed_identity(), &kek.runtime_data).await;
    let path = format!("/keys/{}//release?{V}", p.key_name());

    let fault = json!({"route": "/keys/{name}/{version}/release", "method": "POST", "status": 503, "times": 1});
    let added = p
        .emu
        .client
        .post(p.emu.url("/_emulator/faults"))
        .json(&fault)
        .send()
        .await
        .unwrap();
    assert!(added.status().is_success(), "{}", added.status());
    let (status, _) = release(&p, &path, &token, json!({"target": maa})).await;
    assert_eq!(status, 503, "the injected fault applies once");
    let (status, body) = release(&p, &path, &token, json!({"target": maa})).await;
    assert_eq!(status, 200, "{body}");
    let ca = std::fs::read(p.emu.state_dir().join("ca.pem")).unwrap();
    verify_release(body["value"].as_str().unwrap(), &ca, "localhost");
}

#[tokio::test]
async fn operator_commands_follow_the_guide_and_provision_writes_the_env_file() {
    let emu = crate::common::Emu::start(&[]);
    let policy = emu.dir.path().join("policy.json");
    std::fs::write(&policy, SEED_POLICY).unwrap();
    let policy = policy.to_str().unwrap();
    let (_, _, user_oid) = emu.create_sp("operator");

    // Steps 2, 4, 6, 7 and 8 of the guide, with its flags.
    let hsm = emu.hsm(&[
        "create",
        "--hsm-name",
        "MarbleRunHSM",
        "--administrators",
        &user_oid,
    ]);
    assert_eq!(hsm["properties"]["hsmUri"], format!("{}/", emu.base));
    emu.hsm(&[
        "role-assign",
        "--assignee",
        &user_oid,
        "--role",
        "Managed HSM Crypto User",
        "--hsm-name",
        "MarbleRunHSM",
        "--scope",
        "/",
    ]);
    let key = emu.hsm(&[
        "key-create",
        "--exportable",
        "true",
        "--hsm-name",
        "MarbleRunHSM",
        "--kty",
        "OCT-HSM",
        "--name",
        "marblerun-skr-key",
        "--policy",
        policy,
    ]);
    assert_eq!(key["key"]["kty"], "oct-HSM");
    assert_eq!(key["attributes"]["exportable"], true);
    let (_, _, sp_oid) = emu.create_sp("marblerun-coordinator-hsm-sp");
    let assignment = emu.hsm(&[
        "role-assign",
        "--assignee-object-id",
        &sp_oid,
        "--assignee-principal-type",
        "ServicePrincipal",
        "--role",
        "Managed HSM Crypto Service Release User",
        "--hsm-name",
        "MarbleRunHSM",
        "--scope",
        "/keys/marblerun-skr-key",
    ]);
    assert_eq!(assignment["scope"], "/keys/marblerun-skr-key");
    assert_eq!(emu.hsm(&["role-list"]).as_array().unwrap().len(), 2);
    let shown = emu.hsm(&["key-show", "--name", "marblerun-skr-key"]);
    assert_eq!(shown["key"]["kid"], key["key"]["kid"]);

    let hsm_args = |args: &[&str]| {
        let mut all = vec!["hsm", "--emulator-url", emu.base.as_str()];
        all.extend_from_slice(args);
        emu.cli_raw(&all)
    };
    let out = hsm_args(&["key-create", "--hsm-name", "OtherHSM", "--name", "k"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("OtherHSM"));
    let out = hsm_args(&["key-create", "--name", "k", "--exportable"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("AKV.SKR.1004"),
        "{out:?}"
    );
    let out = hsm_args(&[
        "key-create",
        "--name",
        "k",
        "--exportable",
        "--policy",
        r#"{"anyOf":[{"authority":"https://a","allOf":[{"claim":"x","equals":1}]}]}"#,
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("missing member \"version\""),
        "{out:?}"
    );
    let out = hsm_args(&["role-assign", "--assignee", "x", "--role", "Owner"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown role"),
        "{out:?}"
    );

    let env_file = emu.dir.path().join("coordinator.env");
    emu.hsm(&[
        "provision",
        "--policy",
        policy,
        "--env-file",
        env_file.to_str().unwrap(),
        "--key-name",
        "provisioned-key",
    ]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&env_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the env file holds a secret");
    }
    let env = quarry_common::EnvFile::parse_isolated(&std::fs::read_to_string(&env_file).unwrap())
        .unwrap();
    for name in [
        "EDG_AZURE_CLIENT_ID",
        "EDG_AZURE_CLIENT_SECRET",
        "EDG_AZURE_TENANT_ID",
        "EDG_AZURE_HSM_KEY_NAME",
        "EDG_AZURE_HSM_VAULT_URL",
        "EDG_MAA_URL",
        "EDG_AZURE_AUTHORITY_HOST",
        "QUARRY_AZURE_CA_FILE",
    ] {
        assert!(
            !env.get(name).unwrap_or_default().is_empty(),
            "{name} is set"
        );
    }
    assert_eq!(env.get("EDG_AZURE_HSM_KEY_VERSION"), Some(""));
    assert_eq!(env.get("EDG_AZURE_HSM_VAULT_URL"), Some(emu.base.as_str()));
    assert_eq!(env.get("EDG_MAA_URL"), Some(emu.base.as_str()));
    assert_eq!(env.get("EDG_AZURE_AUTHORITY_HOST"), Some(emu.base.as_str()));
    assert_eq!(env.get("EDG_AZURE_TENANT_ID"), Some(emu.tenant.as_str()));
    assert_eq!(env.get("EDG_AZURE_HSM_KEY_NAME"), Some("provisioned-key"));
    let ca = std::fs::read(env.get("QUARRY_AZURE_CA_FILE").unwrap()).unwrap();
    assert_eq!(ca, std::fs::read(emu.state_dir().join("ca.pem")).unwrap());

    // The provisioned principal releases the provisioned key to the seed identity.
    let p = Provisioned {
        emu,
        env,
        admin: (String::new(), String::new()),
        policy_file: policy.into(),
    };
    let token = p.token(&p.coordinator()).await;
    let kek = Kek::generate();
    let maa = maa_token(&p.emu, &seed_identity(), &kek.runtime_data).await;
    let (status, body) = release(
        &p,
        &format!("/keys/provisioned-key/release?{V}"),
        &token,
        json!({"target": maa}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// The integers of a DER `RSAPrivateKey` (version, n, e, d, p, q, dp, dq, qi), big-endian
/// without leading zeros.
fn pkcs1_integers(der: &[u8]) -> Vec<Vec<u8>> {
    fn header(der: &[u8], at: usize) -> (u8, usize, usize) {
        let tag = der[at];
        let first = der[at + 1] as usize;
        if first < 0x80 {
            return (tag, at + 2, first);
        }
        let n = first & 0x7f;
        let len = der[at + 2..at + 2 + n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (tag, at + 2 + n, len)
    }
    let (tag, mut at, len) = header(der, 0);
    assert_eq!(tag, 0x30);
    let end = at + len;
    let mut out = Vec::new();
    while at < end {
        let (tag, start, len) = header(der, at);
        assert_eq!(tag, 0x02);
        let bytes = &der[start..start + len];
        let skip = bytes
            .iter()
            .take_while(|b| **b == 0)
            .count()
            .min(bytes.len() - 1);
        out.push(bytes[skip..].to_vec());
        at = start + len;
    }
    out
}

#[tokio::test]
async fn imports_an_rsa_key_and_releases_it_as_pkcs8() {
    let p = Provisioned::start();
    let admin = p.token(&p.admin).await;
    let kat: Value = serde_json::from_str(
        &std::fs::read_to_string(crate::common::testdata(
            "azure/sidecar-rsa-aes-unwrap-kat.json",
        ))
        .unwrap(),
    )
    .unwrap();
    let pkcs1 = pem::parse(kat["wrapping_private_key_pem"].as_str().unwrap())
        .unwrap()
        .into_contents();
    let ints = pkcs1_integers(&pkcs1);
    assert_eq!(ints.len(), 9);
    let names = ["n", "e", "d", "p", "q", "dp", "dq", "qi"];
    let mut jwk = Map::new();
    jwk.insert("kty".into(), "RSA-HSM".into());
    for (name, value) in names.iter().zip(&ints[1..]) {
        jwk.insert((*name).into(), b64url(value).into());
    }
    let policy = b64url(SEED_POLICY.as_bytes());
    let (status, imported) = p
        .call(
            Method::PUT,
            &format!("/keys/imported-rsa?{V}"),
            &admin,
            Some(
                &json!({"key": jwk, "Hsm": true, "attributes": {"exportable": true},
                "release_policy": {"data": policy}}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{imported}");
    assert_eq!(imported["key"]["kty"], "RSA-HSM");
    assert_eq!(imported["key"]["n"], b64url(&ints[1]).as_str());
    assert!(
        imported["key"].get("d").is_none(),
        "no private member in the response"
    );

    let mut broken = jwk.clone();
    broken.insert("d".into(), b64url(&ints[4]).into());
    let (status, err) = p
        .call(
            Method::PUT,
            &format!("/keys/broken?{V}"),
            &admin,
            Some(&json!({"key": broken})),
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("BadParameter")),
        "{err}"
    );

    let kek = Kek::generate();
    let maa = maa_token(&p.emu, &seed_identity(), &kek.runtime_data).await;
    let (status, body) = release(
        &p,
        &format!("/keys/imported-rsa/release?{V}"),
        &admin,
        json!({"target": maa, "enc": "RSA_AES_KEY_WRAP_256"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let released = decode_release(body["value"].as_str().unwrap());
    assert_eq!(released.payload["response"]["key"]["key"]["kty"], "RSA");
    let pkcs8 = kek.unwrap("RSA_AES_KEY_WRAP_256", &released.ciphertext);
    let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(&pkcs8).unwrap();
    use aws_lc_rs::signature::KeyPair as _;
    assert_eq!(
        pair.public_key()
            .modulus()
            .big_endian_without_leading_zero(),
        ints[1].as_slice()
    );
}

#[tokio::test]
async fn replace_material_hook_yields_a_signed_release_of_another_key_under_the_same_kid() {
    let p = Provisioned::start();
    let token = p.token(&p.coordinator()).await;
    let kek = Kek::generate();
    let maa = maa_token(&p.emu, &seed_identity(), &kek.runtime_data).await;
    let ca = std::fs::read(p.emu.state_dir().join("ca.pem")).unwrap();
    let name = p.key_name().to_owned();
    let admin = p.token(&p.admin).await;
    let (_, bundle) = p
        .call(Method::GET, &format!("/keys/{name}?{V}"), &admin, None)
        .await;
    let kid = bundle["key"]["kid"].as_str().unwrap().to_owned();
    let version = kid.rsplit('/').next().unwrap().to_owned();
    let path = format!("/keys/{name}/{version}/release?{V}");
    let released = |result: &Value| {
        let jws = result["value"].as_str().unwrap();
        verify_release(jws, &ca, "localhost");
        let r = decode_release(jws);
        assert_eq!(r.payload["response"]["key"]["key"]["kid"], kid.as_str());
        kek.unwrap("CKM_RSA_AES_KEY_WRAP", &r.ciphertext)
    };

    let (status, result) = release(&p, &path, &token, json!({"target": maa})).await;
    assert_eq!(status, 200, "{result}");
    let before = released(&result);

    // The hook needs no token and answers with the changed version's key id.
    let hook = format!("/_emulator/keys/{name}/{version}/replace-material");
    let (status, answer) = p.call(Method::POST, &hook, "", None).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["kid"], kid.as_str());
    assert_eq!(answer["replaced"], true);

    let (status, result) = release(&p, &path, &token, json!({"target": maa})).await;
    assert_eq!(status, 200, "{result}");
    let after = released(&result);
    assert_eq!(after.len(), before.len());
    assert_ne!(after, before, "the same key id now releases other material");
    let (_, bundle) = p
        .call(Method::GET, &format!("/keys/{name}?{V}"), &admin, None)
        .await;
    assert_eq!(bundle["key"]["kid"], kid.as_str(), "no new version");

    // Unknown versions and keys are Key Vault's 404; an RSA key is refused with 400.
    let (status, answer) = p
        .call(
            Method::POST,
            &format!("/_emulator/keys/{name}/00000000000000000000000000000000/replace-material"),
            "",
            None,
        )
        .await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["error"]["code"], "KeyNotFound", "{answer}");
    let (status, created) = p
        .call(
            Method::POST,
            &format!("/keys/rsa-key/create?{V}"),
            &admin,
            Some(&json!({"kty": "RSA-HSM"})),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let rsa_version = created["key"]["kid"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let (status, answer) = p
        .call(
            Method::POST,
            &format!("/_emulator/keys/rsa-key/{rsa_version}/replace-material"),
            "",
            None,
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("only oct-HSM"),
        "{answer}"
    );
}
