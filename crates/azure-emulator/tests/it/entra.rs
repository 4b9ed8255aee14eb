//! Entra ID: metadata, the client-secret and client-assertion flows, error bodies, restarts.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::common::{Emu, form_body, jwt_parts, pairs};

const HSM_SCOPE: &str = "https://managedhsm.azure.net/.default";

/// Verifies an access token with the key the tenant publishes, using an independent JWT
/// implementation.
async fn verify_with_published_keys(emu: &Emu, token: &str) -> Value {
    let meta = emu
        .get_json(&format!(
            "/{}/v2.0/.well-known/openid-configuration",
            emu.tenant
        ))
        .await;
    let jwks_path = meta["jwks_uri"]
        .as_str()
        .unwrap()
        .strip_prefix(&emu.base)
        .unwrap()
        .to_owned();
    let jwks = emu.get_json(&jwks_path).await;
    let (header, _) = jwt_parts(token);
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("the token's kid is published");
    let decoding =
        DecodingKey::from_rsa_components(key["n"].as_str().unwrap(), key["e"].as_str().unwrap())
            .unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&["https://managedhsm.azure.net"]);
    validation.set_issuer(&[format!("https://sts.windows.net/{}/", emu.tenant)]);
    jsonwebtoken::decode::<Value>(token, &decoding, &validation)
        .unwrap()
        .claims
}

fn assert_entra_error(status: u16, body: &Value, expected_status: u16, error: &str, code: u64) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["error_codes"], serde_json::json!([code]), "{body}");
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description.starts_with(&format!("AADSTS{code}: ")),
        "{description}"
    );
    assert!(description.contains("\r\nTrace ID: "), "{description}");
    for field in ["timestamp", "trace_id", "correlation_id"] {
        assert!(body[field].is_string(), "{field} missing: {body}");
    }
}

#[tokio::test]
async fn openid_metadata_points_back_at_the_emulator() {
    let emu = Emu::start(&[]);
    let meta = emu
        .get_json(&format!(
            "/{}/v2.0/.well-known/openid-configuration",
            emu.tenant
        ))
        .await;
    let t = &emu.tenant;
    assert_eq!(
        meta["token_endpoint"],
        format!("{}/{t}/oauth2/v2.0/token", emu.base)
    );
    assert_eq!(
        meta["authorization_endpoint"],
        format!("{}/{t}/oauth2/v2.0/authorize", emu.base)
    );
    assert_eq!(meta["issuer"], format!("{}/{t}/v2.0", emu.base));

    let r = emu
        .client
        .get(emu.url("/00000000-0000-0000-0000-000000000000/v2.0/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert_entra_error(
        status,
        &r.json().await.unwrap(),
        400,
        "invalid_tenant",
        90002,
    );
}

#[tokio::test]
async fn client_secret_flow_issues_a_verifiable_token() {
    let emu = Emu::start(&[]);
    let (app, password, oid) = emu.create_sp("coordinator");
    let (status, body) = emu
        .token_request(&[
            ("client_id", &app),
            ("client_secret", &password),
            ("grant_type", "client_credentials"),
            ("scope", HSM_SCOPE),
            ("client_info", "1"),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["ext_expires_in"], 3599);
    let claims = verify_with_published_keys(&emu, body["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["appid"], app.as_str());
    assert_eq!(claims["oid"], oid.as_str());
    assert_eq!(claims["tid"], emu.tenant.as_str());
    assert_eq!(claims["appidacr"], "1");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3599
    );
}

#[tokio::test]
async fn client_assertion_flow_accepts_a_federated_token() {
    let emu = Emu::start(&[]);
    let (app, _, oid) = emu.create_sp("workload");
    emu.cli(&[
        "sp",
        "add-federated-credential",
        "--app-id",
        &app,
        "--subject",
        "system:serviceaccount:quarry:coordinator",
    ]);
    let token = |subject: &str| {
        let out = emu.cli_raw(&["federation", "token", "--subject", subject]);
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let assertion = token("system:serviceaccount:quarry:coordinator");
    let form = |assertion: &str, kind: &str| {
        vec![
            ("client_id".to_owned(), app.clone()),
            ("client_assertion".to_owned(), assertion.to_owned()),
            ("client_assertion_type".to_owned(), kind.to_owned()),
            ("grant_type".to_owned(), "client_credentials".to_owned()),
            ("scope".to_owned(), HSM_SCOPE.to_owned()),
        ]
    };
    const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

    let (status, body) = emu
        .token_request(&pairs(&form(&assertion, JWT_BEARER)))
        .await;
    assert_eq!(status, 200, "{body}");
    let claims = verify_with_published_keys(&emu, body["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["oid"], oid.as_str());
    assert_eq!(claims["appidacr"], "2");

    let (status, body) = emu
        .token_request(&pairs(&form(
            &token("system:serviceaccount:other:sa"),
            JWT_BEARER,
        )))
        .await;
    assert_entra_error(status, &body, 400, "invalid_request", 70021);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("system:serviceaccount:other:sa")
    );

    let mut forged = assertion.clone();
    forged.truncate(forged.rfind('.').unwrap() + 1);
    forged.push_str(&"A".repeat(342));
    let (status, body) = emu.token_request(&pairs(&form(&forged, JWT_BEARER))).await;
    assert_entra_error(status, &body, 401, "invalid_client", 700027);

    let (status, body) = emu
        .token_request(&pairs(&form("not-a-jwt", JWT_BEARER)))
        .await;
    assert_entra_error(status, &body, 400, "invalid_request", 50027);

    let (status, body) = emu
        .token_request(&pairs(&form(&assertion, "urn:example:other")))
        .await;
    assert_entra_error(status, &body, 400, "invalid_request", 700022);
}

#[tokio::test]
async fn bad_token_requests_get_azures_errors() {
    let emu = Emu::start(&[]);
    let (app, password, _) = emu.create_sp("app");
    let base = |extra: &[(&'static str, &'static str)]| {
        let mut form = vec![
            ("client_id", app.clone()),
            ("grant_type", "client_credentials".to_owned()),
            ("scope", HSM_SCOPE.to_owned()),
        ];
        for (k, v) in extra {
            form.retain(|(key, _)| key != k);
            form.push((k, (*v).to_owned()));
        }
        form
    };
    let owned = |form: Vec<(&'static str, String)>| -> Vec<(String, String)> {
        form.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    };

    let (s, b) = emu
        .token_request(&pairs(&owned(base(&[("client_secret", "wrong")]))))
        .await;
    assert_entra_error(s, &b, 401, "invalid_client", 7000215);
    assert!(b["error_description"].as_str().unwrap().contains(&app));

    let (s, b) = emu.token_request(&pairs(&owned(base(&[])))).await;
    assert_entra_error(s, &b, 401, "invalid_client", 7000218);

    let (s, b) = emu
        .token_request(&pairs(&owned(base(&[("grant_type", "password")]))))
        .await;
    assert_entra_error(s, &b, 400, "unsupported_grant_type", 70003);

    let (s, b) = emu
        .token_request(&pairs(&owned(base(&[(
            "client_id",
            "11111111-2222-3333-4444-555555555555",
        )]))))
        .await;
    assert_entra_error(s, &b, 400, "unauthorized_client", 700016);

    let (s, b) = emu
        .token_request(&pairs(&owned(base(&[("client_id", "not-a-guid")]))))
        .await;
    assert_entra_error(s, &b, 400, "unauthorized_client", 700038);

    let (s, b) = emu
        .token_request(&pairs(&owned(base(&[(
            "scope",
            "https://managedhsm.azure.net/keys.read",
        )]))))
        .await;
    assert_entra_error(s, &b, 400, "invalid_scope", 1002012);

    let (s, b) = emu
        .token_request(&pairs(&owned(base(&[(
            "scope",
            "https://example.com/.default",
        )]))))
        .await;
    assert_entra_error(s, &b, 400, "invalid_resource", 500011);

    let (s, b) = emu
        .token_request(&pairs(&owned(vec![("client_secret", password.clone())])))
        .await;
    assert_entra_error(s, &b, 400, "invalid_request", 900144);

    // Not a form at all, a GET, a foreign tenant and an oversized body.
    let url = emu.url(&format!("/{}/oauth2/v2.0/token", emu.tenant));
    let r = emu
        .client
        .post(&url)
        .body("{\"grant_type\":1}")
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    assert_entra_error(s, &r.json().await.unwrap(), 400, "invalid_request", 900144);

    let r = emu.client.get(&url).send().await.unwrap();
    let s = r.status().as_u16();
    assert_entra_error(s, &r.json().await.unwrap(), 400, "invalid_request", 900561);

    let r = emu
        .client
        .post(emu.url("/contoso.onmicrosoft.com/oauth2/v2.0/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[("grant_type", "client_credentials")]))
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    assert_entra_error(s, &r.json().await.unwrap(), 400, "invalid_tenant", 90002);

    let r = emu
        .client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&pad={}",
            "x".repeat(300 * 1024)
        ))
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    assert_entra_error(s, &r.json().await.unwrap(), 413, "invalid_request", 90020);
}

#[tokio::test]
async fn correlation_id_echoes_client_request_id() {
    let emu = Emu::start(&[]);
    let id = "0b3f7c6a-8d8e-4e0f-9a55-3b1f0a2c6d7e";
    let r = emu
        .client
        .post(emu.url(&format!("/{}/oauth2/v2.0/token", emu.tenant)))
        .header("client-request-id", id)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[("grant_type", "client_credentials")]))
        .send()
        .await
        .unwrap();
    assert!(r.headers().contains_key("x-ms-request-id"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["correlation_id"], id);
}

#[tokio::test]
async fn principals_ca_and_keys_survive_a_restart() {
    let emu = Emu::start(&[]);
    let (app, password, _) = emu.create_sp("durable");
    let ca_before = std::fs::read(emu.state_dir().join("ca.pem")).unwrap();
    let tenant = emu.tenant.clone();
    let (_, first) = emu
        .token_request(&[
            ("client_id", &app),
            ("client_secret", &password),
            ("grant_type", "client_credentials"),
            ("scope", HSM_SCOPE),
        ])
        .await;
    let first_kid = jwt_parts(first["access_token"].as_str().unwrap()).0["kid"].clone();

    let dir = emu.stop();
    let emu = Emu::start_in(dir, &[]);
    assert_eq!(emu.tenant, tenant);
    assert_eq!(
        std::fs::read(emu.state_dir().join("ca.pem")).unwrap(),
        ca_before
    );
    let (status, body) = emu
        .token_request(&[
            ("client_id", &app),
            ("client_secret", &password),
            ("grant_type", "client_credentials"),
            ("scope", HSM_SCOPE),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(jwt_parts(token).0["kid"], first_kid);
    verify_with_published_keys(&emu, token).await;
}
