//! `POST /api/v2/recover` (`{"recoverySecret": b64, "recoverySecretSignature": b64}`, body at
//! most 20 KiB as in MarbleRun) and `GET /api/v2/recover/public-key` (the ephemeral RSA key
//! for encrypted uploads).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use quarry_common::limits::MAX_RECOVERY_BODY_BYTES;
use serde_json::json;

use crate::api::{b64, base64_member, blocking, json_object, read_body};
use crate::core::Core;
use crate::jsend::{ApiError, success};

/// The routes of this group.
pub fn routes() -> Router<Arc<Core>> {
    Router::new()
        .route("/api/v2/recover", post(recover))
        .route("/api/v2/recover/public-key", get(public_key))
}

/// Reads the body of `POST /api/v2/recover`: the secret and its signature.
pub fn parse_upload(body: &[u8]) -> Result<(Vec<u8>, Vec<u8>), ApiError> {
    let object = json_object(body)?;
    let secret = base64_member(&object, "recoverySecret")?;
    let signature = base64_member(&object, "recoverySecretSignature")?;
    Ok((secret, signature))
}

async fn recover(State(core): State<Arc<Core>>, body: Body) -> Result<Response, ApiError> {
    let body = read_body(body, MAX_RECOVERY_BODY_BYTES).await?;
    let (secret, signature) = parse_upload(&body)?;
    let outcome = blocking(move || core.recover(secret, signature)).await?;
    Ok(success(json!({
        "remaining": outcome.remaining,
        "message": outcome.message,
    })))
}

async fn public_key(State(core): State<Arc<Core>>) -> Result<Response, ApiError> {
    let der = blocking(move || core.recovery_public_key()).await?;
    Ok(success(
        json!({ "algorithm": "RSA", "ephemeralPublicKey": b64(&der) }),
    ))
}
