//! `GET` and `POST /api/v2/manifest`.
//!
//! POST takes `{"manifest": "<base64 of the manifest's JSON bytes>"}` and answers
//! `{"RecoverySecrets": {"<key name>": "<base64 RSA-OAEP ciphertext>"}}` (`{}` without recovery
//! keys; the capital R is MarbleRun's). GET answers `manifestSignatureRootECDSA`,
//! `manifestFingerprint` and `manifest`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use quarry_common::limits::MAX_BODY_BYTES;
use serde_json::json;

use crate::api::{b64, base64_member, blocking, json_object, read_body};
use crate::core::Core;
use crate::jsend::{ApiError, success};

/// The routes of this group.
pub fn routes() -> Router<Arc<Core>> {
    Router::new().route("/api/v2/manifest", get(get_manifest).post(post_manifest))
}

async fn get_manifest(State(core): State<Arc<Core>>) -> Result<Response, ApiError> {
    let info = blocking(move || core.manifest()).await?;
    Ok(success(json!({
        "manifestSignatureRootECDSA": b64(&info.signature),
        "manifestFingerprint": info.fingerprint,
        "manifest": b64(&info.raw),
    })))
}

/// Reads the body of `POST /api/v2/manifest`: the manifest's raw bytes.
pub fn parse_set_manifest(body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let object = json_object(body)?;
    base64_member(&object, "manifest")
}

async fn post_manifest(State(core): State<Arc<Core>>, body: Body) -> Result<Response, ApiError> {
    let body = read_body(body, MAX_BODY_BYTES).await?;
    let raw = parse_set_manifest(&body)?;
    let secrets = blocking(move || core.set_manifest(raw)).await?;
    Ok(success(
        json!({ "RecoverySecrets": encode_secrets(&secrets) }),
    ))
}

/// Recovery secrets as a JSON object of base64 strings.
pub(crate) fn encode_secrets(secrets: &BTreeMap<String, Vec<u8>>) -> serde_json::Value {
    secrets
        .iter()
        .map(|(name, ct)| (name.clone(), serde_json::Value::String(b64(ct))))
        .collect::<serde_json::Map<_, _>>()
        .into()
}
