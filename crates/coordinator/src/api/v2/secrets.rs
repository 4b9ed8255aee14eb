//! `GET /api/v2/secrets?s=<name>&s=<name>...` (needs `ReadSecret` on every name) and
//! `POST /api/v2/secrets` with `{"secrets": {"<name>": {"Cert", "Private", "Key"}}}` (needs
//! `WriteSecret` on every name; only user-defined secrets, with the size and type rules and the
//! template dry run). Both answer `401 fail` for unknown users and names not granted.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::get;
use quarry_common::limits::MAX_BODY_BYTES;
use quarry_manifest::update::{UploadedSecret, parse_secret_upload};

use crate::api::read_body;
use crate::api::users::{leaf, run};
use crate::core::Core;
use crate::jsend::{ApiError, success, success_secret};

/// The routes of this group.
pub fn routes() -> Router<Arc<Core>> {
    Router::new().route("/api/v2/secrets", get(get_secrets).post(post_secrets))
}

/// The secret names of a `GET /api/v2/secrets` query (`s=a&s=b`).
pub fn parse_secret_query(query: Option<&str>) -> Result<Vec<String>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or_default())
        .map_err(|e| ApiError::bad_request(format!("malformed query string: {e}")))?;
    let mut names = Vec::new();
    for (key, value) in pairs {
        if key != "s" {
            continue;
        }
        if value.is_empty() {
            return Err(ApiError::bad_request(
                "malformed query string: empty query parameter",
            ));
        }
        names.push(value);
    }
    if names.is_empty() {
        return Err(ApiError::bad_request(
            "invalid query: endpoint requires at least one query parameter",
        ));
    }
    Ok(names)
}

/// Reads the body of `POST /api/v2/secrets`.
pub fn parse_upload(body: &[u8]) -> Result<BTreeMap<String, UploadedSecret>, ApiError> {
    let (upload, warnings) = parse_secret_upload(body)
        .map_err(|e| ApiError::bad_request(format!("invalid secrets: {e}")))?;
    for warning in warnings {
        tracing::warn!(%warning, "secret upload");
    }
    Ok(upload)
}

async fn get_secrets(
    State(core): State<Arc<Core>>,
    request: Request,
) -> Result<Response, ApiError> {
    let leaf = leaf(request.extensions());
    let names = parse_secret_query(request.uri().query())?;
    let secrets = run(move || core.read_secrets(leaf.as_deref(), &names)).await?;
    #[derive(serde::Serialize)]
    struct Answer<'a, T> {
        secrets: &'a T,
    }
    Ok(success_secret(&Answer { secrets: &secrets }))
}

async fn post_secrets(
    State(core): State<Arc<Core>>,
    request: Request,
) -> Result<Response, ApiError> {
    let leaf = leaf(request.extensions());
    let body = read_body(request.into_body(), MAX_BODY_BYTES).await?;
    let upload = parse_upload(&body)?;
    run(move || core.write_secrets(leaf.as_deref(), &upload)).await?;
    crate::metrics::global().user_operation("secrets_set");
    Ok(success(serde_json::Value::Null))
}
