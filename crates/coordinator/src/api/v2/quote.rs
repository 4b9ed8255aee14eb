//! `GET /api/v2/quote[?nonce=<base64url with padding>]`: the certificate chain (intermediate
//! then root, PEM) and the quote (Open Enclave header + SGX quote, base64) over SHA-256 of the
//! root certificate's DER followed by the nonce; `null` only when no quote can be made.

use std::sync::Arc;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use base64::Engine;
use serde_json::json;

use crate::api::{b64, blocking};
use crate::core::Core;
use crate::jsend::{ApiError, success};

/// The routes of this group.
pub fn routes() -> Router<Arc<Core>> {
    Router::new().route("/api/v2/quote", get(quote))
}

/// Reads the `nonce` query parameter.
pub fn nonce(query: Option<&str>) -> Result<Option<Vec<u8>>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?;
    let Some((_, value)) = pairs.iter().find(|(k, _)| k == "nonce") else {
        return Ok(None);
    };
    base64::engine::general_purpose::URL_SAFE
        .decode(value)
        .map(Some)
        .map_err(|e| ApiError::bad_request(format!("invalid query: bad nonce format: {e}")))
}

async fn quote(
    State(core): State<Arc<Core>>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let nonce = nonce(query.as_deref())?;
    let (ca, quote) = blocking(move || core.quote(nonce.as_deref())).await?;
    let chain = ca.quote_certificate_chain_pem();
    Ok(success(
        json!({ "cert": chain, "quote": quote.as_deref().map(b64) }),
    ))
}
