//! Client API v1 endpoints of users and updates: `/update` (GET: the log as one string; POST:
//! the raw manifest, data `null`), `/secrets` (GET: the secret map itself; POST: the raw map of
//! uploads), `/update-manifest` (GET as v2; POST: the raw manifest, data the message) and
//! `/update-cancel`. v1 never answers `fail`: refusals are JSend `error` with the same status
//! (`401` for users, `400` for bad input).
//!
//! New recovery secrets are never dropped (MarbleRun's v1 drops them, leaving a state nobody
//! can recover): an update that `/update` applies at once answers `{"RecoverySecrets": {...}}`
//! as v1 `/manifest` does, and an acknowledgement on `/update-manifest` that would apply an
//! update changing the recovery keys is refused with `400`, pointing to the v2 endpoint.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::{get, post};
use quarry_common::limits::MAX_BODY_BYTES;
use quarry_manifest::update::parse_secret_upload_v1;

use crate::api::users::{leaf, run};
use crate::api::v2::manifest::encode_secrets;
use crate::api::v2::secrets::parse_secret_query;
use crate::api::v2::update_manifest::{CANCELLED, acknowledged_message, get_pending};
use crate::api::{blocking, drain, read_body};
use crate::core::Core;
use crate::jsend::{ApiError, success, success_secret};

/// The routes of this group.
pub fn routes() -> Router<Arc<Core>> {
    Router::new()
        .route("/update", get(get_log).post(post_update))
        .route("/secrets", get(get_secrets).post(post_secrets))
        .route("/update-manifest", get(get_pending).post(acknowledge))
        .route("/update-cancel", post(cancel))
}

fn v1(error: ApiError) -> ApiError {
    match error {
        ApiError::Fail {
            status, message, ..
        } => ApiError::error(status, message),
        other => other,
    }
}

async fn get_log(State(core): State<Arc<Core>>) -> Result<Response, ApiError> {
    tracing::info!("deprecated v1 endpoint /update called");
    let log = blocking(move || core.update_log()).await.map_err(v1)?;
    let mut text = super::v2::update::log_lines(&log).join("\n");
    text.push('\n');
    Ok(success(text))
}

async fn post_update(
    State(core): State<Arc<Core>>,
    request: Request,
) -> Result<Response, ApiError> {
    tracing::info!("deprecated v1 endpoint /update called");
    let leaf = leaf(request.extensions());
    let raw = read_body(request.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(v1)?;
    let outcome = run(move || core.update_manifest(leaf.as_deref(), raw.to_vec()))
        .await
        .map_err(v1)?;
    crate::metrics::global().user_operation("manifest_update");
    // An update applied at once may issue new recovery secrets; they exist only in this answer,
    // so they are returned as v1 `/manifest` returns them instead of being dropped.
    match outcome.recovery_secrets {
        Some(secrets) if !secrets.is_empty() => Ok(success(
            serde_json::json!({ "RecoverySecrets": encode_secrets(&secrets) }),
        )),
        _ => Ok(success(serde_json::Value::Null)),
    }
}

async fn get_secrets(
    State(core): State<Arc<Core>>,
    request: Request,
) -> Result<Response, ApiError> {
    tracing::info!("deprecated v1 endpoint /secrets called");
    let leaf = leaf(request.extensions());
    let names = parse_secret_query(request.uri().query()).map_err(v1)?;
    let secrets = run(move || core.read_secrets(leaf.as_deref(), &names))
        .await
        .map_err(v1)?;
    Ok(success_secret(&secrets))
}

async fn post_secrets(
    State(core): State<Arc<Core>>,
    request: Request,
) -> Result<Response, ApiError> {
    tracing::info!("deprecated v1 endpoint /secrets called");
    let leaf = leaf(request.extensions());
    let body = read_body(request.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(v1)?;
    let (upload, _) = parse_secret_upload_v1(&body).map_err(|e| {
        ApiError::error(
            axum::http::StatusCode::BAD_REQUEST,
            format!("invalid secrets: {e}"),
        )
    })?;
    run(move || core.write_secrets(leaf.as_deref(), &upload))
        .await
        .map_err(v1)?;
    crate::metrics::global().user_operation("secrets_set");
    Ok(success(serde_json::Value::Null))
}

async fn acknowledge(
    State(core): State<Arc<Core>>,
    request: Request,
) -> Result<Response, ApiError> {
    let leaf = leaf(request.extensions());
    let raw = read_body(request.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(v1)?;
    let outcome = run(move || core.acknowledge_update_v1(leaf.as_deref(), &raw))
        .await
        .map_err(v1)?;
    crate::metrics::global().user_operation("update_acknowledged");
    let users = outcome.missing_users.clone().unwrap_or_default();
    Ok(success(acknowledged_message(
        outcome.missing_acknowledgments,
        &users,
    )))
}

async fn cancel(State(core): State<Arc<Core>>, request: Request) -> Result<Response, ApiError> {
    let leaf = leaf(request.extensions());
    drain(request.into_body()).await;
    run(move || core.cancel_update(leaf.as_deref()))
        .await
        .map_err(v1)?;
    crate::metrics::global().user_operation("update_cancelled");
    Ok(success(CANCELLED))
}
