//! The Managed HSM's errors, in Key Vault's wire shape.
//!
//! Every refusal carries the HTTP status and the `error.code` that Managed HSM uses
//! (`BadParameter`, `KeyNotFound`, `AccessDenied`, `Forbidden`, `Unauthorized`), a message that
//! names the failing value and ends with `(Activity ID: …)` like the service's, and — for a
//! release refused by the policy — the policy evaluation in an extra member `explanation`, which
//! Azure's clients ignore and a person can act on.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{Map, Value, json};

/// A refused Managed HSM request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct HsmError {
    /// The HTTP status.
    pub status: StatusCode,
    /// Key Vault's `error.code`.
    pub code: &'static str,
    /// The message, without the activity id.
    pub message: String,
    /// The release policy's evaluation, for refusals by the policy.
    pub explanation: Option<String>,
}

impl HsmError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            explanation: None,
        }
    }

    /// 400 `BadParameter`: the request is invalid.
    pub fn bad_parameter(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadParameter", message)
    }

    /// 401 `Unauthorized`: the bearer token is invalid or expired.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", message)
    }

    /// 403 `AccessDenied`: local RBAC does not grant `action` at `scope`.
    pub fn access_denied(action: &str, scope: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            format!(
                "Not authorized to access Microsoft.KeyVault/managedHsm/{action} on {scope}; \
                 assign a role that grants it at this scope"
            ),
        )
    }

    /// 403 `Forbidden`: the operation is not allowed on this key or for this attestation.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message)
    }

    /// 404 `KeyNotFound`.
    pub fn key_not_found(name: &str, version: Option<&str>) -> Self {
        let id = match version {
            Some(v) => format!("{name}/{v}"),
            None => name.to_owned(),
        };
        Self::new(
            StatusCode::NOT_FOUND,
            "KeyNotFound",
            format!("A key with (name/id) {id} was not found in this key vault"),
        )
    }

    /// 404 for a path the Managed HSM does not serve.
    pub fn not_found(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("no such operation: {path}"),
        )
    }

    /// 405 for a known path with a method it does not serve.
    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("method {method} is not allowed on {path}"),
        )
    }

    /// 413: the body exceeds the limit.
    pub fn body_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestBodyTooLarge",
            format!("the request body exceeds {limit} bytes"),
        )
    }

    /// 500: something failed inside the emulator; the cause is logged, not sent.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "internal error in the emulated HSM",
        )
    }

    /// Attaches a policy explanation.
    pub fn with_explanation(mut self, explanation: String) -> Self {
        self.explanation = Some(explanation);
        self
    }

    /// The JSON body: `{"error":{"code","message"[,"explanation"]}}`.
    pub fn body(&self, activity_id: &str) -> Value {
        let mut error = Map::new();
        error.insert("code".into(), self.code.into());
        error.insert(
            "message".into(),
            format!("{} (Activity ID: {activity_id})", self.message).into(),
        );
        if let Some(explanation) = &self.explanation {
            error.insert("explanation".into(), explanation.clone().into());
        }
        json!({ "error": error })
    }
}

impl IntoResponse for HsmError {
    fn into_response(self) -> Response {
        let activity_id = uuid::Uuid::new_v4().to_string();
        let body = self.body(&activity_id);
        let mut response = (self.status, Json(body)).into_response();
        super::routes::add_common_headers(&mut response, &activity_id);
        response
    }
}
