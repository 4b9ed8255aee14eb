//! `GET /api/v2/update` (the update log: `{"updateLog": ["<json line>", ...]}`) and
//! `POST /api/v2/update` with `{"manifest": "<base64>"}`: a package update (applied at once,
//! needs `UpdateSecurityVersion` on every package) or a full update (needs `UpdateManifest`;
//! pending until enough users acknowledged it). Answers `{"missingAcknowledgments": n,
//! "missingUsers": [...] | null, "recoverySecrets": {...}}` (`recoverySecrets` only when the
//! update changed the recovery keys).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::get;
use quarry_common::limits::MAX_BODY_BYTES;
use serde_json::json;

use crate::api::users::{leaf, run};
use crate::api::v2::manifest::{encode_secrets, parse_set_manifest};
use crate::api::{blocking, read_body};
use crate::core::Core;
use crate::core::update::UpdateOutcome;
use crate::jsend::{ApiError, success};

/// The routes of this group.
pub fn routes() -> Router<Arc<Core>> {
    Router::new().route("/api/v2/update", get(get_log).post(post_update))
}

/// The update log's lines, trimmed and split as MarbleRun splits them.
pub(crate) fn log_lines(log: &str) -> Vec<String> {
    let trimmed = log.trim();
    if trimmed.is_empty() {
        return Vec::new();
    }
    trimmed.split('\n').map(str::to_owned).collect()
}

async fn get_log(State(core): State<Arc<Core>>) -> Result<Response, ApiError> {
    let log = blocking(move || core.update_log()).await?;
    Ok(success(json!({ "updateLog": log_lines(&log) })))
}

/// The JSON answer of an update or acknowledgement.
pub(crate) fn outcome_json(outcome: &UpdateOutcome) -> serde_json::Map<String, serde_json::Value> {
    let mut data = serde_json::Map::new();
    data.insert(
        "missingAcknowledgments".into(),
        outcome.missing_acknowledgments.into(),
    );
    data.insert("missingUsers".into(), json!(outcome.missing_users));
    if let Some(secrets) = &outcome.recovery_secrets {
        data.insert("recoverySecrets".into(), encode_secrets(secrets));
    }
    data
}

async fn post_update(
    State(core): State<Arc<Core>>,
    request: Request,
) -> Result<Response, ApiError> {
    let leaf = leaf(request.extensions());
    let body = read_body(request.into_body(), MAX_BODY_BYTES).await?;
    let raw = parse_set_manifest(&body)?;
    let outcome = run(move || core.update_manifest(leaf.as_deref(), raw)).await?;
    crate::metrics::global().user_operation("manifest_update");
    Ok(success(outcome_json(&outcome)))
}
