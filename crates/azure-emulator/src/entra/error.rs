//! Entra ID's OAuth error responses.
//!
//! Entra answers a failed token request with a JSON body of `error` (the OAuth error class),
//! `error_description` (`AADSTS<code>: <text>` followed by trace id, correlation id and
//! timestamp lines), `error_codes`, `timestamp`, `trace_id`, `correlation_id` and
//! `error_uri`. Clients (MSAL, azure-identity) read `error` and `error_description`; the
//! correlation id echoes the client's `client-request-id` header when it sent one.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use serde_json::json;

/// One Entra ID error: status, OAuth error class, AADSTS code and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntraError {
    /// HTTP status.
    pub status: StatusCode,
    /// OAuth `error` (`invalid_request`, `invalid_client`, ...).
    pub error: &'static str,
    /// The AADSTS number.
    pub code: u32,
    /// The text after `AADSTS<code>: `.
    pub message: String,
}

impl EntraError {
    fn new(status: StatusCode, error: &'static str, code: u32, message: String) -> Self {
        Self {
            status,
            error,
            code,
            message,
        }
    }

    /// A required form parameter is missing.
    pub fn missing_parameter(name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            format!("The request body must contain the following parameter: '{name}'."),
        )
    }

    /// The body is not a form.
    pub fn not_a_form() -> Self {
        Self::missing_parameter("grant_type")
    }

    /// A method other than POST on the token endpoint.
    pub fn post_only(method: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900561,
            format!(
                "The endpoint only accepts POST, OPTIONS requests. Received a {method} request."
            ),
        )
    }

    /// The tenant in the path is not this emulator's.
    pub fn tenant_not_found(tenant: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_tenant",
            90002,
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID \
                 and are signing into the correct cloud."
            ),
        )
    }

    /// A grant other than `client_credentials`.
    pub fn unsupported_grant_type(grant: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{grant}'."),
        )
    }

    /// `client_id` is not a GUID.
    pub fn invalid_client_id(client_id: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700038,
            format!("{client_id} is not a valid application identifier."),
        )
    }

    /// No application with this id.
    pub fn application_not_found(client_id: &str, tenant: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory \
                 '{tenant}'. This can happen if the application has not been installed by the \
                 administrator of the tenant or consented to by any user in the tenant. You may \
                 have sent your authentication request to the wrong tenant."
            ),
        )
    }

    /// Neither a secret nor an assertion.
    pub fn no_credential() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or \
             'client_secret'."
                .into(),
        )
    }

    /// Both a secret and an assertion.
    pub fn two_credentials() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90014,
            "The request body must contain only one of 'client_assertion' or 'client_secret'."
                .into(),
        )
    }

    /// The secret matches none of the application's.
    pub fn invalid_secret(app_id: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is \
                 the client secret value, not the client secret ID, for a secret added to app \
                 '{app_id}'."
            ),
        )
    }

    /// `client_assertion_type` is missing or not the JWT bearer type.
    pub fn invalid_assertion_type(value: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            700022,
            format!(
                "The provided value for the input parameter 'client_assertion_type' is not \
                 valid: '{value}'. Expected 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'."
            ),
        )
    }

    /// The assertion is not a JWT.
    pub fn malformed_assertion() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            50027,
            "JWT token is invalid or malformed.".into(),
        )
    }

    /// The assertion is expired or not yet valid.
    pub fn assertion_time(now: i64, nbf: Option<i64>, exp: Option<i64>) -> Self {
        let show = |t: Option<i64>| t.map_or_else(|| "(none)".to_owned(), format_timestamp);
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700024,
            format!(
                "Client assertion is not within its valid time range. Current time: {}, \
                 assertion valid from {}, expiry time of assertion {}.",
                format_timestamp(now),
                show(nbf),
                show(exp)
            ),
        )
    }

    /// No federated credential matches issuer, subject and audience.
    pub fn no_federated_record(issuer: &str, subject: &str, audience: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            70021,
            format!(
                "No matching federated identity record found for presented assertion. Assertion \
                 Issuer: '{issuer}'. Assertion Subject: '{subject}'. Assertion Audience: \
                 '{audience}'."
            ),
        )
    }

    /// The issuer's keys are unknown to the emulator.
    pub fn issuer_keys_unavailable(issuer: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            50166,
            format!(
                "Request to External OIDC endpoint failed: no signing keys known for issuer '{issuer}'."
            ),
        )
    }

    /// The assertion's signature does not verify.
    pub fn assertion_signature() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700027,
            "Client assertion failed signature validation.".into(),
        )
    }

    /// `scope` is not one `<resource>/.default`.
    pub fn invalid_scope(scope: &str) -> Self {
        if scope.split_whitespace().count() > 1 {
            return Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                70011,
                format!(
                    "The provided value for the input parameter 'scope' is not valid. The scope \
                     {scope} is not valid."
                ),
            );
        }
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            format!(
                "The provided value for scope {scope} is not valid. Client credential flows must \
                 have a scope value with /.default suffixed to the resource identifier \
                 (application ID URI)."
            ),
        )
    }

    /// The resource of the scope is unknown.
    pub fn resource_not_found(resource: &str, tenant: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            500011,
            format!(
                "The resource principal named {resource} was not found in the tenant named \
                 {tenant}. This can happen if the application has not been installed by the \
                 administrator of the tenant or consented to by any user in the tenant. You \
                 might have sent your authentication request to the wrong tenant."
            ),
        )
    }

    /// The request body is too large.
    pub fn body_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            90020,
            format!("The request body exceeds the limit of {limit} bytes."),
        )
    }

    /// A failure inside the emulator.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "temporarily_unavailable",
            90033,
            "A transient error has occurred. Please try again.".into(),
        )
    }

    /// The response, with `correlation_id` from the client's `client-request-id` if it sent
    /// one.
    pub fn into_response_with(self, correlation_id: Option<&str>) -> Response {
        let trace_id = uuid::Uuid::new_v4().to_string();
        let correlation_id = correlation_id
            .filter(|c| uuid::Uuid::parse_str(c).is_ok())
            .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
        let timestamp = format_timestamp(time::OffsetDateTime::now_utc().unix_timestamp());
        let description = format!(
            "AADSTS{}: {}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\nTimestamp: {timestamp}",
            self.code, self.message
        );
        let body = json!({
            "error": self.error,
            "error_description": description,
            "error_codes": [self.code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": format!("https://login.microsoftonline.com/error?code={}", self.code),
        });
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        headers.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store, no-cache"),
        );
        response
    }
}

impl IntoResponse for EntraError {
    fn into_response(self) -> Response {
        self.into_response_with(None)
    }
}

/// `2025-01-01 00:00:00Z`, Entra's timestamp format.
pub(crate) fn format_timestamp(unix: i64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| unix.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_look_like_entra_ones() {
        assert_eq!(format_timestamp(0), "1970-01-01 00:00:00Z");
    }

    #[test]
    fn scope_errors_distinguish_lists_from_bad_single_scopes() {
        assert_eq!(EntraError::invalid_scope("a b").code, 70011);
        assert_eq!(EntraError::invalid_scope("openid").code, 1002012);
    }
}
