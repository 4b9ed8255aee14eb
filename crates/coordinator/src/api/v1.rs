//! Client API v1 (legacy, still used by old clients): `/status`, `/manifest`, `/quote`, and
//! `/recover`, which answers 410 as MarbleRun does. v1 uses Go's capitalised field names and
//! never JSend `fail`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use quarry_common::limits::MAX_BODY_BYTES;
use serde_json::json;

use crate::api::{b64, blocking, read_body};
use crate::core::Core;
use crate::jsend::{ApiError, success};

/// The v1 routes.
pub fn routes() -> Router<Arc<Core>> {
    Router::new()
        .route("/status", get(status))
        .route("/manifest", get(get_manifest).post(post_manifest))
        .route("/quote", get(quote))
        .route("/recover", post(recover))
}

/// v1 errors are JSend `error`, with the same status as v2 except that `fail` becomes 400.
fn v1_error(error: ApiError) -> ApiError {
    match error {
        ApiError::Fail {
            status, message, ..
        } => ApiError::error(status, message),
        other => other,
    }
}

async fn status(State(core): State<Arc<Core>>) -> Response {
    tracing::info!("deprecated v1 endpoint /status called");
    let (code, message) = super::v2::status::current(&core);
    success(json!({ "StatusCode": code, "StatusMessage": message }))
}

async fn get_manifest(State(core): State<Arc<Core>>) -> Response {
    tracing::info!("deprecated v1 endpoint /manifest called");
    // As in MarbleRun, v1 answers success with empty fields when there is no manifest.
    match blocking(move || core.manifest()).await {
        Ok(info) => success(json!({
            "ManifestSignatureRootECDSA": b64(&info.signature),
            "ManifestSignature": info.fingerprint,
            "Manifest": b64(&info.raw),
        })),
        Err(_) => success(json!({
            "ManifestSignatureRootECDSA": null,
            "ManifestSignature": "",
            "Manifest": null,
        })),
    }
}

async fn post_manifest(State(core): State<Arc<Core>>, body: Body) -> Result<Response, ApiError> {
    tracing::info!("deprecated v1 endpoint /manifest called");
    let raw = read_body(body, MAX_BODY_BYTES).await.map_err(v1_error)?;
    let secrets = blocking(move || core.set_manifest(raw.to_vec()))
        .await
        .map_err(v1_error)?;
    if secrets.is_empty() {
        return Ok(success(serde_json::Value::Null));
    }
    let secrets = super::v2::manifest::encode_secrets(&secrets);
    Ok(success(json!({ "RecoverySecrets": secrets })))
}

async fn quote(State(core): State<Arc<Core>>) -> Result<Response, ApiError> {
    tracing::info!("deprecated v1 endpoint /quote called");
    let (ca, quote) = blocking(move || core.quote(None)).await.map_err(v1_error)?;
    let chain = ca.quote_certificate_chain_pem();
    Ok(success(
        json!({ "Cert": chain, "Quote": quote.as_deref().map(b64) }),
    ))
}

async fn recover(body: Body) -> ApiError {
    tracing::info!("deprecated v1 endpoint /recover called");
    crate::api::drain(body).await;
    ApiError::error(
        StatusCode::GONE,
        "Recovering the Coordinator using the /recover API endpoint has been disabled. Use the \
         /api/v2/recover endpoint instead.",
    )
}
