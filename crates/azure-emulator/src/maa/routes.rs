//! MAA's HTTP endpoints: `POST /attest/SgxEnclave`, `GET /certs`,
//! `GET /.well-known/openid-configuration`.
//!
//! Errors are MAA's `CloudError` documents, `{"error":{"code":...,"message":...}}`, with 400 for
//! bad input, 413 for oversized bodies and 405 for wrong methods.
//!
//! `api-version` given more than once: MAA does not document what it does. The emulator follows
//! the rule of Microsoft's API-versioning convention (documented for Azure App Configuration):
//! repeating one value is the same as giving it once, different values are refused with 400
//! `AmbiguousApiVersion` naming them.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode, Uri};
use serde_json::{Value, json};

use super::{AttestError, AttestSgxRequest};
use crate::Emulator;
use crate::faults::TokenLifetime;
use crate::http_util::{BodyError, JSON_UTF8, read_body, request_base_url};

/// Largest attestation request body. A DCAP quote with its certificate chain is under 16 KiB;
/// runtime data is usually a small JWK set.
pub const MAX_ATTEST_REQUEST_BYTES: usize = 1024 * 1024;

/// The api-versions `attest/SgxEnclave` accepts.
pub const API_VERSIONS: &[&str] = &["2022-08-01", "2020-10-01"];

/// MAA's routes.
pub fn routes() -> Router<Arc<Emulator>> {
    Router::new()
        .route(
            "/attest/SgxEnclave",
            post(attest_sgx).fallback(method_not_allowed),
        )
        .route("/certs", get(certs))
        .route(
            "/.well-known/openid-configuration",
            get(openid_configuration),
        )
}

/// A `CloudError` response.
pub fn cloud_error(status: StatusCode, code: &str, message: &str) -> Response {
    let mut response = (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response();
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, JSON_UTF8);
    response
}

fn json_response(value: Value) -> Response {
    let mut response = Json(value).into_response();
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, JSON_UTF8);
    response
}

async fn method_not_allowed() -> Response {
    cloud_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        "The requested method is not allowed on this resource.",
    )
}

/// Checks the `api-version` query parameter; on failure, MAA's error code and message.
fn check_api_version(query: Option<&str>) -> Result<(), (&'static str, String)> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or_default())
        .map_err(|e| {
            (
                "InvalidParameter",
                format!("The query string cannot be parsed: {e}."),
            )
        })?;
    let mut versions: Vec<&str> = Vec::new();
    for (_, value) in pairs.iter().filter(|(name, _)| name == "api-version") {
        if !versions.contains(&value.as_str()) {
            versions.push(value);
        }
    }
    match versions.as_slice() {
        [] | [""] => Err((
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.".into(),
        )),
        [v] if API_VERSIONS.contains(v) => Ok(()),
        [v] => Err((
            "InvalidApiVersionParameter",
            format!(
                "The api-version '{v}' is invalid. The supported versions are '{}'.",
                API_VERSIONS.join(",")
            ),
        )),
        many => Err((
            "AmbiguousApiVersion",
            format!(
                "The api-version query parameter is given {} different values ('{}'); give \
                 exactly one.",
                many.len(),
                many.join("', '")
            ),
        )),
    }
}

async fn attest_sgx(State(emulator): State<Arc<Emulator>>, request: Request<Body>) -> Response {
    let (parts, body) = request.into_parts();
    if let Err((code, message)) = check_api_version(parts.uri.query()) {
        return cloud_error(StatusCode::BAD_REQUEST, code, &message);
    }
    let lifetime = parts.extensions.get::<TokenLifetime>().map(|l| l.0);
    let bytes = match read_body(body, MAX_ATTEST_REQUEST_BYTES).await {
        Ok(bytes) => bytes,
        Err(BodyError::TooLarge { limit }) => {
            return cloud_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                &format!("The request body exceeds the limit of {limit} bytes."),
            );
        }
        Err(e @ BodyError::Read(_)) => {
            return cloud_error(StatusCode::BAD_REQUEST, "InvalidParameter", &e.to_string());
        }
    };
    let request: AttestSgxRequest = match serde_json::from_slice(&bytes) {
        Ok(request) => request,
        Err(e) => {
            let e = AttestError::Body(e.to_string());
            return cloud_error(StatusCode::BAD_REQUEST, e.code(), &e.to_string());
        }
    };

    match emulator.maa.attest_sgx(&request, lifetime) {
        Ok(token) => json_response(json!({ "token": token })),
        Err(e @ AttestError::Internal(_)) => {
            tracing::error!(error = %e, "attestation failed inside the emulator");
            cloud_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                e.code(),
                "internal error",
            )
        }
        Err(e) => {
            tracing::debug!(error = %e, "attestation refused");
            cloud_error(StatusCode::BAD_REQUEST, e.code(), &e.to_string())
        }
    }
}

async fn certs(State(emulator): State<Arc<Emulator>>) -> Response {
    json_response(emulator.maa.certs())
}

async fn openid_configuration(
    State(emulator): State<Arc<Emulator>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let base = request_base_url(&uri, &headers, &emulator.config.base_url);
    match emulator.maa.openid_configuration(&base) {
        Ok(doc) => json_response(doc),
        Err(e) => {
            tracing::error!(error = %e, "reading the maa configuration failed");
            cloud_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "internal error",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_version_is_required_and_checked() {
        assert!(check_api_version(None).is_err());
        assert!(check_api_version(Some("x=1")).is_err());
        assert!(check_api_version(Some("api-version=2019-01-01")).is_err());
        assert!(check_api_version(Some("api-version=2022-08-01")).is_ok());
        assert!(check_api_version(Some("api-version=2020-10-01&x=1")).is_ok());
    }

    #[test]
    fn a_repeated_api_version_is_one_and_different_values_are_named() {
        assert!(check_api_version(Some("api-version=2022-08-01&api-version=2022-08-01")).is_ok());
        let (code, message) =
            check_api_version(Some("api-version=2022-08-01&x=1&api-version=2020-10-01"))
                .unwrap_err();
        assert_eq!(code, "AmbiguousApiVersion");
        assert!(
            message.contains("2 different values ('2022-08-01', '2020-10-01')"),
            "{message}"
        );
        let (code, message) =
            check_api_version(Some("api-version=&api-version=2022-08-01")).unwrap_err();
        assert_eq!(code, "AmbiguousApiVersion", "{message}");
    }
}
