//! The pending full update: `GET /api/v2/update-manifest` (`{"manifest", "message",
//! "missingUsers"}`, `404 error` without one), `POST /api/v2/update-manifest` with
//! `{"manifest": "<base64>"}` (an acknowledgement with the byte-identical manifest) and
//! `POST /api/v2/update-cancel` (needs `UpdateManifest`).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::{get, post};
use quarry_common::limits::MAX_BODY_BYTES;
use serde_json::json;

use crate::api::users::{leaf, run};
use crate::api::v2::manifest::parse_set_manifest;
use crate::api::v2::update::outcome_json;
use crate::api::{b64, blocking, drain, read_body};
use crate::core::Core;
use crate::jsend::{ApiError, success};

/// Message of a cancelled update (MarbleRun's words).
pub const CANCELLED: &str = "Update successfully cancelled";

/// The routes of this group.
pub fn routes() -> Router<Arc<Core>> {
    Router::new()
        .route(
            "/api/v2/update-manifest",
            get(get_pending).post(acknowledge),
        )
        .route("/api/v2/update-cancel", post(cancel))
}

/// `"1 user still needs..."` or `"<n> users still need..."`.
pub(crate) fn waiting_message(missing: u64) -> String {
    if missing == 1 {
        "1 user still needs to acknowledge the update manifest".to_owned()
    } else {
        format!("{missing} users still need to acknowledge the update manifest")
    }
}

/// The message after an acknowledgement.
pub(crate) fn acknowledged_message(missing: u64, users: &[String]) -> String {
    if missing == 0 {
        "All users have acknowledged the update manifest. Update successfully applied".to_owned()
    } else {
        format!(
            "{}.\nThe following users have not yet accepted: {}",
            waiting_message(missing),
            users.join(", ")
        )
    }
}

pub(crate) async fn get_pending(State(core): State<Arc<Core>>) -> Result<Response, ApiError> {
    let info = blocking(move || core.pending_update()).await?;
    Ok(success(json!({
        "manifest": b64(&info.manifest),
        "message": waiting_message(info.missing_acknowledgments),
        "missingUsers": info.missing_users,
    })))
}

async fn acknowledge(
    State(core): State<Arc<Core>>,
    request: Request,
) -> Result<Response, ApiError> {
    let leaf = leaf(request.extensions());
    let body = read_body(request.into_body(), MAX_BODY_BYTES).await?;
    let raw = parse_set_manifest(&body)?;
    let outcome = run(move || core.acknowledge_update(leaf.as_deref(), &raw)).await?;
    crate::metrics::global().user_operation("update_acknowledged");
    let mut data = outcome_json(&outcome);
    let users = outcome.missing_users.clone().unwrap_or_default();
    data.insert(
        "message".into(),
        acknowledged_message(outcome.missing_acknowledgments, &users).into(),
    );
    Ok(success(data))
}

async fn cancel(State(core): State<Arc<Core>>, request: Request) -> Result<Response, ApiError> {
    let leaf = leaf(request.extensions());
    drain(request.into_body()).await;
    run(move || core.cancel_update(leaf.as_deref())).await?;
    crate::metrics::global().user_operation("update_cancelled");
    Ok(success(json!({ "message": CANCELLED })))
}
