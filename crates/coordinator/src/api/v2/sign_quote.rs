//! `POST /api/v2/sign-quote` with `{"sgxQuote": "<base64>"}`: verifies an SGX quote with DCAP
//! and answers `{"tcbStatus": "<status>", "verificationSignature": "<base64>"}`, the root key's
//! signature over SHA-256(base64 of the quote as sent `||` status) ([`crate::core::sign_quote`]).
//!
//! Only when the current manifest enables `SignQuoteEndpoint`: otherwise `403 error`, before the
//! body is read. No authentication and no state check, as in MarbleRun. A body that is not the
//! expected JSON is `400 fail` with data `{"sgxQuote": "failed to parse JSON data"}`; a quote that
//! does not verify is `400 fail` with message `quote verification failed` and data
//! `{"sgxQuote": "quote verification failed: <why>"}`. Without collateral configured the answer
//! is `500 error`: the Coordinator never signs a quote it did not verify.

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use axum::{Extension, Router};
use quarry_common::limits::MAX_BODY_BYTES;
use quarry_manifest::FeatureGate;
use serde_json::json;

use crate::api::{b64, base64_member, blocking, drain, json_object, read_body};
use crate::core::Core;
use crate::core::sign_quote::{QuoteSigner, SignQuoteError};
use crate::jsend::{ApiError, success};

/// Message when the feature gate is off (MarbleRun's words).
pub const NOT_ENABLED: &str = "SignQuoteEndpoint feature is not enabled in the manifest";

/// The signer, set up at the first request from the same variables the Marble API reads.
#[derive(Debug, Clone, Default)]
struct Signer(Arc<OnceLock<QuoteSigner>>);

impl Signer {
    fn get(&self, core: &Core) -> Result<&QuoteSigner, ApiError> {
        if let Some(signer) = self.0.get() {
            return Ok(signer);
        }
        let signer = QuoteSigner::from_env(&core.config().seal_dir, &|k| std::env::var(k).ok())
            .map_err(|e| {
                tracing::error!(error = %e, "sign-quote is not available");
                ApiError::internal(format!("sign-quote: {e}"))
            })?;
        Ok(self.0.get_or_init(|| signer))
    }
}

/// The routes of this group.
pub fn routes() -> Router<Arc<Core>> {
    Router::new()
        .route("/api/v2/sign-quote", post(sign_quote))
        .layer(Extension(Signer::default()))
}

/// Reads the body of `POST /api/v2/sign-quote`: the quote's bytes.
pub fn parse_sign_quote(body: &[u8]) -> Result<Vec<u8>, ApiError> {
    json_object(body)
        .and_then(|object| base64_member(&object, "sgxQuote"))
        .map_err(|error| {
            let message = match error {
                ApiError::Fail { message, .. } | ApiError::Error { message, .. } => message,
            };
            ApiError::Fail {
                status: StatusCode::BAD_REQUEST,
                message: format!("bad request: {message}"),
                data: Some(json!({ "sgxQuote": "failed to parse JSON data" })),
            }
        })
}

async fn sign_quote(
    State(core): State<Arc<Core>>,
    Extension(signer): Extension<Signer>,
    body: Body,
) -> Result<Response, ApiError> {
    let c = Arc::clone(&core);
    if !blocking(move || c.feature_enabled(FeatureGate::SignQuoteEndpoint)).await? {
        drain(body).await;
        return Err(ApiError::error(StatusCode::FORBIDDEN, NOT_ENABLED));
    }
    let body = read_body(body, MAX_BODY_BYTES).await?;
    let quote = parse_sign_quote(&body)?;

    let signer = signer.get(&core)?;
    match signer.sign(core.ca(), quote).await {
        Ok(signed) => {
            tracing::info!(tcb_status = signed.tcb_status, "quote verified and signed");
            Ok(success(json!({
                "tcbStatus": signed.tcb_status,
                "verificationSignature": b64(&signed.signature),
            })))
        }
        Err(error) if error.is_quote_failure() => {
            tracing::info!(reason = %error, "sign-quote: quote verification failed");
            Err(verification_failed(&error))
        }
        Err(error) => {
            tracing::error!(error = %crate::core::error_chain(&error), "sign-quote failed");
            Err(ApiError::internal(format!("sign-quote: {error}")))
        }
    }
}

/// `400 fail` in MarbleRun's shape for a quote that did not verify.
fn verification_failed(error: &SignQuoteError) -> ApiError {
    ApiError::Fail {
        status: StatusCode::BAD_REQUEST,
        message: "quote verification failed".into(),
        data: Some(json!({ "sgxQuote": format!("quote verification failed: {error}") })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail_parts(error: ApiError) -> (StatusCode, String, serde_json::Value) {
        match error {
            ApiError::Fail {
                status,
                message,
                data,
            } => (status, message, data.unwrap_or_default()),
            other => panic!("expected a fail, got {other:?}"),
        }
    }

    #[test]
    fn reads_the_quote_with_any_key_case() {
        assert_eq!(parse_sign_quote(br#"{"sgxQuote":"AQI="}"#).unwrap(), [1, 2]);
        assert_eq!(parse_sign_quote(br#"{"SGXQUOTE":"AQI="}"#).unwrap(), [1, 2]);
    }

    #[test]
    fn bad_bodies_get_the_references_data() {
        for (body, detail) in [
            (&b"not json"[..], "request body is not JSON"),
            (b"[1]", "expected a JSON object, found an array"),
            (
                br#"{"sgxQuote": 5}"#,
                "sgxQuote: expected a base64 string, found a number",
            ),
            (br#"{"sgxQuote": "!!"}"#, "sgxQuote: invalid base64"),
            (b"{}", "sgxQuote: missing"),
        ] {
            let (status, message, data) = fail_parts(parse_sign_quote(body).unwrap_err());
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(message.starts_with("bad request: "), "{message}");
            assert!(message.contains(detail), "{message}");
            assert_eq!(data, json!({"sgxQuote": "failed to parse JSON data"}));
        }
    }

    #[test]
    fn verification_failures_get_the_references_shape() {
        let (status, message, data) = fail_parts(verification_failed(&SignQuoteError::Simulated));
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(message, "quote verification failed");
        let text = data["sgxQuote"].as_str().unwrap();
        assert!(
            text.starts_with("quote verification failed: the quote has an all-zero"),
            "{text}"
        );
    }
}
