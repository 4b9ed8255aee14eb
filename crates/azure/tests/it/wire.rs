//! The token / attest / release wire flow against a small HTTPS mock on 127.0.0.1: request
//! shapes, the challenge protocol, retries, error classes, token caching and the credential
//! kinds.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use quarry_azure::{
    Clock, CredentialConfig, ErrorClass, ErrorKind, Pipeline, SkrClient, SkrError, Step, TrustStore,
};
use quarry_enclave::{Enclave, EnclaveError, Identity, SealKey, SealPolicy};
use reqwest::Url;

use crate::support::{CLIENT_ID, KEY_NAME, Mock, SECRET, TENANT, TestEnclave, VERSION_2};

fn client(mock: &Mock) -> SkrClient {
    SkrClient::with_options(mock.config(), TestEnclave::new(), mock.options()).unwrap()
}

#[tokio::test]
async fn releases_the_latest_key_over_the_wire() {
    let mock = Mock::start().await;
    let key = client(&mock).release(None).await.unwrap();
    assert_eq!(key.key(), &[0x42; 32]);
    assert_eq!(key.version(), crate::support::VERSION_1);
    assert!(
        key.key_id()
            .ends_with(&format!("/keys/{KEY_NAME}/{}", key.version()))
    );

    let forms = mock.state.token_forms.lock().unwrap().clone();
    assert_eq!(forms.len(), 1);
    assert_eq!(forms[0]["grant_type"], "client_credentials");
    assert_eq!(forms[0]["scope"], "https://managedhsm.azure.net/.default");
    assert_eq!(forms[0]["client_id"], CLIENT_ID);
    assert_eq!(forms[0]["client_secret"], SECRET);

    let attest = mock.state.attest_bodies.lock().unwrap()[0].clone();
    assert_eq!(attest["runtimeData"]["dataType"], "JSON");
    let set: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(attest["runtimeData"]["data"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    let jwk = &set["keys"][0];
    assert_eq!(jwk["key_ops"], serde_json::json!(["encrypt"]));
    assert!(jwk["kid"].as_str().is_some_and(|k| !k.is_empty()));
    // The default wrapping key of these tests is RSA-2048.
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(jwk["n"].as_str().unwrap())
            .unwrap()
            .len(),
        256
    );

    let release = mock.state.release_bodies.lock().unwrap()[0].clone();
    assert_eq!(release["enc"], "RSA_AES_KEY_WRAP_384");
    assert!(release["nonce"].as_str().is_some_and(|n| n.len() >= 16));
    assert!(
        release["target"]
            .as_str()
            .is_some_and(|t| t.split('.').count() == 3)
    );
    assert_eq!(
        mock.state.release_paths.lock().unwrap()[0],
        format!("{KEY_NAME}/")
    );
}

#[tokio::test]
async fn releases_a_given_version_and_the_sequential_pipeline_agrees() {
    let mock = Mock::start().await;
    let mut options = mock.options();
    options.pipeline = Pipeline::Sequential;
    let client = SkrClient::with_options(mock.config(), TestEnclave::new(), options).unwrap();
    let key = client.release(Some(VERSION_2)).await.unwrap();
    assert_eq!(key.version(), VERSION_2);
    assert_eq!(
        mock.state.release_paths.lock().unwrap()[0],
        format!("{KEY_NAME}/{VERSION_2}")
    );

    let err = client.release(Some("latest")).await.unwrap_err();
    assert_eq!(err.step(), Step::Release);
    assert!(err.to_string().contains("\"latest\""), "{err}");
}

#[tokio::test]
async fn a_challenge_renews_the_token_once_and_is_not_an_error() {
    let mock = Mock::start().await;
    mock.state.challenge_times.store(1, Ordering::SeqCst);
    client(&mock).release(None).await.unwrap();
    assert_eq!(mock.state.token_forms.lock().unwrap().len(), 2);
    let auth = mock.state.auth_headers.lock().unwrap().clone();
    assert_eq!(auth.len(), 2);
    assert_ne!(auth[0], auth[1]);
}

#[tokio::test]
async fn a_vault_that_keeps_refusing_tokens_needs_an_operator() {
    let mock = Mock::start().await;
    mock.state.challenge_times.store(100, Ordering::SeqCst);
    let err = client(&mock).release(None).await.unwrap_err();
    assert_eq!(
        (err.step(), err.class()),
        (Step::Release, ErrorClass::NeedsOperator)
    );
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Unauthorized {
                challenge: Some(_),
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("resource=\"https://managedhsm.azure.net\""),
        "{err}"
    );
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_within_the_attempt() {
    let mock = Mock::start().await;
    mock.state.fail("token", 1, 503, "");
    mock.state.fail(
        "attest",
        1,
        500,
        r#"{"error":{"code":"InternalError","message":"x"}}"#,
    );
    mock.state.fail(
        "release",
        2,
        429,
        r#"{"error":{"code":"Throttled","message":"slow down"}}"#,
    );
    client(&mock).release(None).await.unwrap();
    assert_eq!(mock.state.hits("token"), 2);
    assert_eq!(mock.state.hits("attest"), 2);
    assert_eq!(mock.state.hits("release"), 3);
}

#[tokio::test]
async fn a_lasting_outage_is_transient_after_bounded_attempts() {
    let mock = Mock::start().await;
    mock.state.fail("attest", 100, 503, "Service Unavailable");
    let err = client(&mock).release(None).await.unwrap_err();
    assert_eq!(
        (err.step(), err.class()),
        (Step::Attestation, ErrorClass::Transient)
    );
    assert_eq!(mock.state.hits("attest"), 3);
    assert!(err.to_string().contains("503"), "{err}");
}

#[tokio::test]
async fn a_policy_denial_needs_an_operator_and_carries_azures_explanation() {
    let mock = Mock::start().await;
    let body = r#"{"error":{"code":"AccessDenied","message":"Target environment attestation statement cannot be verified: claim x-ms-sgx-mrsigner does not match"}}"#;
    mock.state.fail("release", 1, 403, body);
    let err = client(&mock).release(None).await.unwrap_err();
    assert_eq!(
        (err.step(), err.class()),
        (Step::Release, ErrorClass::NeedsOperator)
    );
    assert_eq!(err.azure_code(), Some("AccessDenied"));
    assert!(err.to_string().contains("403 AccessDenied"), "{err}");
    assert!(
        err.to_string().contains("x-ms-sgx-mrsigner does not match"),
        "{err}"
    );
    assert_eq!(mock.state.hits("release"), 1, "a denial is not retried");
}

#[tokio::test]
async fn a_missing_key_needs_an_operator() {
    let mock = Mock::start().await;
    let body = r#"{"error":{"code":"KeyNotFound","message":"A key with (name/id) quarry-key was not found"}}"#;
    mock.state.fail("release", 1, 404, body);
    let err = client(&mock).release(None).await.unwrap_err();
    assert_eq!(
        (err.class(), err.azure_code()),
        (ErrorClass::NeedsOperator, Some("KeyNotFound"))
    );
}

#[tokio::test]
async fn a_rejected_client_secret_needs_an_operator_and_is_not_repeated() {
    let mock = Mock::start().await;
    let body = r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.","error_codes":[7000215]}"#;
    mock.state.fail("token", 1, 401, body);
    let err = client(&mock).release(None).await.unwrap_err();
    assert_eq!(
        (err.step(), err.class()),
        (Step::Token, ErrorClass::NeedsOperator)
    );
    assert_eq!(err.azure_code(), Some("invalid_client"));
    assert!(err.to_string().contains("AADSTS7000215"), "{err}");
    assert!(!format!("{err} {err:?}").contains(SECRET));
}

#[tokio::test]
async fn an_unreachable_service_is_transient() {
    let mock = Mock::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut config = mock.config();
    config.maa_url = Url::parse(&format!("https://localhost:{port}/")).unwrap();
    let client = SkrClient::with_options(config, TestEnclave::new(), mock.options()).unwrap();
    let err = client.release(None).await.unwrap_err();
    assert_eq!(
        (err.step(), err.class()),
        (Step::Attestation, ErrorClass::Transient)
    );
    assert!(matches!(err.kind(), ErrorKind::Unreachable { .. }), "{err}");
}

#[tokio::test]
async fn an_untrusted_server_certificate_needs_an_operator() {
    let mock = Mock::start().await;
    let mut options = mock.options();
    options.trust = Some(TrustStore::system());
    options.pipeline = Pipeline::Sequential;
    let client = SkrClient::with_options(mock.config(), TestEnclave::new(), options).unwrap();
    let err = client.release(None).await.unwrap_err();
    assert_eq!(
        (err.step(), err.class()),
        (Step::Token, ErrorClass::NeedsOperator)
    );
    assert!(matches!(err.kind(), ErrorKind::Tls { .. }), "{err:?}");
    assert_eq!(mock.state.hits("token"), 0);
}

#[tokio::test]
async fn a_released_key_of_the_wrong_size_or_type_is_definite() {
    let mock = Mock::start().await;
    *mock.state.secret.lock().unwrap() = vec![1; 16];
    let err = client(&mock).release(None).await.unwrap_err();
    assert_eq!(
        (err.step(), err.class()),
        (Step::Unwrap, ErrorClass::Definite)
    );
    assert!(
        matches!(
            err.kind(),
            ErrorKind::WrongKeySize {
                len: 16,
                expected: 32
            }
        ),
        "{err}"
    );

    *mock.state.secret.lock().unwrap() = vec![1; 32];
    *mock.state.tamper.lock().unwrap() = Some(Box::new(|r| r.kty = "RSA".into()));
    let err = client(&mock).release(None).await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::WrongKeyType { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_tampered_response_on_the_wire_is_refused_before_unwrapping() {
    let mock = Mock::start().await;
    *mock.state.tamper.lock().unwrap() = Some(Box::new(|r| r.nonce = Some("old".into())));
    let err = client(&mock).release(None).await.unwrap_err();
    assert_eq!(
        (err.step(), err.class()),
        (Step::Verification, ErrorClass::NeedsOperator)
    );
    assert!(
        matches!(err.kind(), ErrorKind::NonceMismatch { .. }),
        "{err}"
    );
}

/// A clock that starts now and moves when told.
fn movable_clock() -> (Clock, Arc<AtomicU64>) {
    let offset = Arc::new(AtomicU64::new(0));
    let start = SystemTime::now();
    let read = Arc::clone(&offset);
    (
        Clock::from_fn(move || start + Duration::from_secs(read.load(Ordering::SeqCst))),
        offset,
    )
}

#[tokio::test]
async fn tokens_are_cached_and_renewed_before_expiry() {
    let mock = Mock::start().await;
    let (clock, offset) = movable_clock();
    let mut options = mock.options();
    options.clock = clock;
    let client = SkrClient::with_options(mock.config(), TestEnclave::new(), options).unwrap();

    client.release(None).await.unwrap();
    offset.store(3000, Ordering::SeqCst);
    client.release(None).await.unwrap();
    assert_eq!(
        mock.state.token_forms.lock().unwrap().len(),
        1,
        "still valid: cached"
    );

    // 3599 s lifetime: renewed five minutes before expiry.
    offset.store(3300, Ordering::SeqCst);
    client.release(None).await.unwrap();
    assert_eq!(mock.state.token_forms.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn the_federated_token_file_is_read_again_at_each_renewal() {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "assertion-one\n").unwrap();
    let mut config = mock.config();
    config.credential = CredentialConfig::FederatedTokenFile {
        tenant_id: TENANT.into(),
        client_id: CLIENT_ID.into(),
        path: file.clone(),
    };
    let (clock, offset) = movable_clock();
    let mut options = mock.options();
    options.clock = clock;
    let client = SkrClient::with_options(config, TestEnclave::new(), options).unwrap();

    client.release(None).await.unwrap();
    std::fs::write(&file, "assertion-two").unwrap();
    offset.store(4000, Ordering::SeqCst);
    client.release(None).await.unwrap();

    let forms = mock.state.token_forms.lock().unwrap().clone();
    let assertions: Vec<&str> = forms
        .iter()
        .map(|f| f["client_assertion"].as_str())
        .collect();
    assert_eq!(assertions, ["assertion-one", "assertion-two"]);
    assert_eq!(
        forms[0]["client_assertion_type"],
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    assert!(!forms[0].contains_key("client_secret"));

    std::fs::remove_file(&file).unwrap();
    offset.store(8000, Ordering::SeqCst);
    let err = client.release(None).await.unwrap_err();
    assert_eq!(
        (err.step(), err.class()),
        (Step::Token, ErrorClass::NeedsOperator)
    );
    assert!(
        matches!(err.kind(), ErrorKind::FederatedTokenFile { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn managed_identity_uses_only_the_configured_endpoint() {
    let mock = Mock::start().await;
    let mut config = mock.config();
    config.credential = CredentialConfig::ManagedIdentity {
        endpoint: mock.url.join("msi/token").unwrap(),
        client_id: Some("user-assigned".into()),
    };
    let client = SkrClient::with_options(config, TestEnclave::new(), mock.options()).unwrap();
    client.release(None).await.unwrap();
    let forms = mock.state.token_forms.lock().unwrap().clone();
    assert_eq!(forms.len(), 1);
    assert_eq!(forms[0]["resource"], "https://managedhsm.azure.net");
    assert_eq!(forms[0]["api-version"], "2018-02-01");
    assert_eq!(forms[0]["client_id"], "user-assigned");
    assert_eq!(forms[0]["metadata-header"], "true");
}

/// An enclave whose quotes carry other report data than asked for.
#[derive(Debug)]
struct LyingEnclave(Identity);

impl Enclave for LyingEnclave {
    fn quote(&self, _report_data: &[u8; 64]) -> Result<Vec<u8>, EnclaveError> {
        Ok([&crate::support::QUOTE_MARKER[..], &[0u8; 64][..]].concat())
    }
    fn seal_key(&self, _: SealPolicy) -> Result<SealKey, EnclaveError> {
        Err(EnclaveError::Refused("test".into()))
    }
    fn identity(&self) -> &Identity {
        &self.0
    }
    fn is_simulation(&self) -> bool {
        true
    }
}

#[tokio::test]
async fn a_quote_not_bound_to_the_jwk_set_is_refused_by_attestation() {
    let mock = Mock::start().await;
    let enclave = Arc::new(LyingEnclave(Identity {
        mrenclave: [0; 32],
        mrsigner: [0; 32],
        isv_prod_id: 0,
        isv_svn: 0,
        debug: false,
    }));
    let client = SkrClient::with_options(mock.config(), enclave, mock.options()).unwrap();
    let err: SkrError = client.release(None).await.unwrap_err();
    assert_eq!(
        (err.step(), err.class()),
        (Step::Attestation, ErrorClass::NeedsOperator)
    );
    assert!(
        err.to_string().contains("runtime data digest mismatch"),
        "{err}"
    );
    assert_eq!(mock.state.hits("release"), 0);
}

#[tokio::test]
async fn the_ca_file_adds_trusted_roots_for_tls_and_the_release_signature() {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &mock.ca.root_pem).unwrap();
    let mut config = mock.config();
    config.ca_file = Some(ca_file);
    let mut options = mock.options();
    options.trust = None;
    let client = SkrClient::with_options(config, TestEnclave::new(), options).unwrap();
    assert_eq!(client.release(None).await.unwrap().key(), &[0x42; 32]);
}

/// A redirect from the authority must not carry the client secret (or a release body) to the
/// redirect's target: redirects are not followed, and the 3xx is an error that needs an operator.
#[tokio::test]
async fn redirects_are_not_followed_so_the_secret_stays_with_the_authority() {
    use axum::response::IntoResponse as _;

    let mock = Mock::start().await;
    let target = format!("{}{TENANT}/oauth2/v2.0/token", mock.url);
    let redirector = axum::Router::new().route(
        "/{*rest}",
        axum::routing::post(move || {
            let target = target.clone();
            async move {
                (
                    axum::http::StatusCode::TEMPORARY_REDIRECT,
                    [("location", target)],
                )
                    .into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    crate::support::serve_tls(listener, redirector, &mock.ca);

    let mut config = mock.config();
    config.authority_host = Url::parse(&format!("https://localhost:{port}/")).unwrap();
    let client = SkrClient::with_options(config, TestEnclave::new(), mock.options()).unwrap();
    let err = client.release(None).await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Status { status: 307, .. }),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::NeedsOperator, "{err}");
    assert!(
        mock.state.token_forms.lock().unwrap().is_empty(),
        "the secret was posted to the redirect target"
    );
}
