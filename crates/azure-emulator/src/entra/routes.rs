//! Entra ID's HTTP endpoints: OpenID metadata (v2 and v1), the signing keys, and the v2 token
//! endpoint for the client-credentials grant with a client secret or a client assertion.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use http::{HeaderMap, HeaderValue, Method, Uri};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::{EntraError, KNOWN_RESOURCES};
use crate::Emulator;
use crate::faults::TokenLifetime;
use crate::http_util::{BodyError, JSON_UTF8, read_body, request_base_url};

/// Largest token request body (a form with a client assertion is a few KiB).
pub const MAX_TOKEN_REQUEST_BYTES: usize = 256 * 1024;

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Entra ID's routes.
pub fn routes() -> Router<Arc<Emulator>> {
    Router::new()
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(metadata_v2),
        )
        .route(
            "/{tenant}/.well-known/openid-configuration",
            get(metadata_v1),
        )
        .route("/{tenant}/discovery/v2.0/keys", get(keys))
        .route("/{tenant}/discovery/keys", get(keys))
        .route("/{tenant}/oauth2/v2.0/token", any(token))
}

fn json_response(value: Value) -> Response {
    let mut response = Json(value).into_response();
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, JSON_UTF8);
    response
}

fn client_request_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
}

fn check_tenant(emulator: &Emulator, tenant: &str) -> Result<(), EntraError> {
    if tenant.eq_ignore_ascii_case(emulator.entra.tenant_id()) {
        Ok(())
    } else {
        Err(EntraError::tenant_not_found(tenant))
    }
}

async fn metadata_v2(
    State(emulator): State<Arc<Emulator>>,
    Path(tenant): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = check_tenant(&emulator, &tenant) {
        return e.into_response_with(client_request_id(&headers));
    }
    let base = request_base_url(&uri, &headers, &emulator.config.base_url);
    let t = emulator.entra.tenant_id();
    json_response(json!({
        "token_endpoint": format!("{base}/{t}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported":
            ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{base}/{t}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": format!("{base}/{t}/v2.0"),
        "request_uri_parameter_supported": false,
        "authorization_endpoint": format!("{base}/{t}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{base}/{t}/oauth2/v2.0/devicecode"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{base}/{t}/oauth2/v2.0/logout"),
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "oid", "appid"],
        "tenant_region_scope": null,
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
    }))
}

async fn metadata_v1(
    State(emulator): State<Arc<Emulator>>,
    Path(tenant): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = check_tenant(&emulator, &tenant) {
        return e.into_response_with(client_request_id(&headers));
    }
    let base = request_base_url(&uri, &headers, &emulator.config.base_url);
    let t = emulator.entra.tenant_id();
    // Only what a validator of the access tokens needs: the v1 token endpoints are not
    // emulated, so they are not advertised.
    json_response(json!({
        "jwks_uri": format!("{base}/{t}/discovery/keys"),
        "issuer": emulator.entra.access_token_issuer(),
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "token id_token", "token"],
        "subject_types_supported": ["pairwise"],
    }))
}

async fn keys(
    State(emulator): State<Arc<Emulator>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = check_tenant(&emulator, &tenant) {
        return e.into_response_with(client_request_id(&headers));
    }
    json_response(emulator.entra.jwks(&emulator.entra.access_token_issuer()))
}

async fn token(
    State(emulator): State<Arc<Emulator>>,
    Path(tenant): Path<String>,
    request: Request<Body>,
) -> Response {
    let (parts, body) = request.into_parts();
    let correlation = client_request_id(&parts.headers).map(str::to_owned);
    let lifetime = parts.extensions.get::<TokenLifetime>().map(|l| l.0);
    match token_inner(&emulator, &tenant, &parts.method, body, lifetime).await {
        Ok(response) => response,
        Err(e) => {
            tracing::debug!(code = e.code, error = e.error, "token request refused");
            e.into_response_with(correlation.as_deref())
        }
    }
}

async fn token_inner(
    emulator: &Emulator,
    tenant: &str,
    method: &Method,
    body: Body,
    lifetime: Option<u64>,
) -> Result<Response, EntraError> {
    if method != Method::POST {
        return Err(EntraError::post_only(method.as_str()));
    }
    check_tenant(emulator, tenant)?;
    let bytes = read_body(body, MAX_TOKEN_REQUEST_BYTES)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge { limit } => EntraError::body_too_large(limit),
            BodyError::Read(_) => EntraError::not_a_form(),
        })?;
    let request = parse_token_form(&bytes)?;
    if !is_known_resource(&request.resource, &emulator.config.base_url) {
        return Err(EntraError::resource_not_found(
            &request.resource,
            emulator.entra.tenant_id(),
        ));
    }

    let sp = emulator
        .entra
        .service_principal(&request.client_id)
        .map_err(|e| {
            tracing::error!(error = %e, "reading service principals failed");
            EntraError::internal()
        })?
        .ok_or_else(|| {
            EntraError::application_not_found(&request.client_id, emulator.entra.tenant_id())
        })?;

    let appidacr = match request.credential.clone()? {
        ClientCredential::Secret(secret) => {
            if !sp.secret_matches(&secret) {
                return Err(EntraError::invalid_secret(&sp.app_id));
            }
            "1"
        }
        ClientCredential::Assertion(assertion) => {
            emulator.entra.check_assertion(&sp, &assertion)?;
            "2"
        }
    };
    let resource = request.resource.as_str();

    let (token, lifetime) = emulator
        .entra
        .issue_access_token(&sp, resource, appidacr, lifetime)
        .map_err(|e| {
            tracing::error!(error = %e, "issuing an access token failed");
            EntraError::internal()
        })?;
    tracing::debug!(app_id = %sp.app_id, resource, "issued an access token");
    let mut response = json_response(json!({
        "token_type": "Bearer",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": token.as_str(),
    }));
    let headers = response.headers_mut();
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    headers.insert(http::header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// How the client authenticates.
#[derive(Clone)]
pub enum ClientCredential {
    /// `client_secret`.
    Secret(Zeroizing<String>),
    /// `client_assertion` of type JWT bearer.
    Assertion(Zeroizing<String>),
}

/// A client-credentials token request, checked up to the principal lookup. `Debug` hides the
/// credential.
pub struct TokenRequest {
    /// `client_id`.
    pub client_id: String,
    /// The resource of the scope (`https://managedhsm.azure.net`).
    pub resource: String,
    /// The secret or assertion, or why neither is usable: Entra reports credential problems
    /// only after it has found the application, so the error waits here.
    pub credential: Result<ClientCredential, EntraError>,
}

impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRequest")
            .field("client_id", &self.client_id)
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

/// Parses a token request body (`application/x-www-form-urlencoded`) and checks what needs no
/// state: grant type, client id, scope, and that exactly one well-typed credential is present.
/// Unknown parameters (`client_info`, `claims`) are ignored, as Entra does.
pub fn parse_token_form(body: &[u8]) -> Result<TokenRequest, EntraError> {
    let form: Vec<(String, String)> =
        serde_urlencoded::from_bytes(body).map_err(|_| EntraError::not_a_form())?;
    let param = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };

    let grant = param("grant_type").ok_or_else(|| EntraError::missing_parameter("grant_type"))?;
    if grant != "client_credentials" {
        return Err(EntraError::unsupported_grant_type(grant));
    }
    let client_id = param("client_id").ok_or_else(|| EntraError::missing_parameter("client_id"))?;
    if uuid::Uuid::parse_str(client_id).is_err() {
        return Err(EntraError::invalid_client_id(client_id));
    }
    let scope = param("scope").ok_or_else(|| EntraError::missing_parameter("scope"))?;
    let resource = resource_of(scope)?.to_owned();
    let credential = match (param("client_secret"), param("client_assertion")) {
        (Some(_), Some(_)) => Err(EntraError::two_credentials()),
        (None, None) => Err(EntraError::no_credential()),
        (Some(secret), None) => Ok(ClientCredential::Secret(Zeroizing::new(secret.to_owned()))),
        (None, Some(assertion)) => {
            let kind = param("client_assertion_type").unwrap_or_default();
            if kind == JWT_BEARER {
                Ok(ClientCredential::Assertion(Zeroizing::new(
                    assertion.to_owned(),
                )))
            } else {
                Err(EntraError::invalid_assertion_type(kind))
            }
        }
    };
    Ok(TokenRequest {
        client_id: client_id.to_owned(),
        resource,
        credential,
    })
}

/// The resource of a client-credentials scope: exactly one `<resource>/.default`.
fn resource_of(scope: &str) -> Result<&str, EntraError> {
    let mut scopes = scope.split_whitespace();
    let (Some(only), None) = (scopes.next(), scopes.next()) else {
        return Err(EntraError::invalid_scope(scope));
    };
    match only.strip_suffix("/.default") {
        Some(resource) if !resource.is_empty() => Ok(resource),
        _ => Err(EntraError::invalid_scope(scope)),
    }
}

/// Whether tokens can be issued for `resource`: one of [`KNOWN_RESOURCES`] (a trailing `/`
/// ignored) or an `https` URL of the emulator's own loopback host.
fn is_known_resource(resource: &str, own_base_url: &str) -> bool {
    let trimmed = resource.trim_end_matches('/');
    if KNOWN_RESOURCES
        .iter()
        .any(|r| r.eq_ignore_ascii_case(trimmed))
    {
        return true;
    }
    trimmed.eq_ignore_ascii_case(own_base_url)
        || ["https://localhost", "https://127.0.0.1", "https://[::1]"]
            .iter()
            .any(|h| trimmed.eq_ignore_ascii_case(h) || trimmed.starts_with(&format!("{h}:")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_name_one_resource() {
        assert_eq!(
            resource_of("https://managedhsm.azure.net/.default").unwrap(),
            "https://managedhsm.azure.net"
        );
        assert_eq!(
            resource_of("a/.default b/.default").unwrap_err().code,
            70011
        );
        assert_eq!(resource_of("openid").unwrap_err().code, 1002012);
        assert_eq!(resource_of("/.default").unwrap_err().code, 1002012);
    }

    #[test]
    fn form_checks_need_no_state() {
        let ok = parse_token_form(
            b"grant_type=client_credentials&client_id=11111111-2222-3333-4444-555555555555\
              &scope=https%3A%2F%2Fmanagedhsm.azure.net%2F.default&client_secret=s&client_info=1",
        )
        .unwrap();
        assert_eq!(ok.resource, "https://managedhsm.azure.net");
        assert!(matches!(ok.credential, Ok(ClientCredential::Secret(ref s)) if s.as_str() == "s"));
        assert_eq!(parse_token_form(b"%%%").unwrap_err().code, 900144);
        assert_eq!(
            parse_token_form(b"grant_type=password").unwrap_err().code,
            70003
        );
    }

    #[test]
    fn resources() {
        assert!(is_known_resource(
            "https://managedhsm.azure.net/",
            "https://localhost:1"
        ));
        assert!(is_known_resource(
            "https://localhost:8443",
            "https://localhost:1"
        ));
        assert!(!is_known_resource(
            "https://example.com",
            "https://localhost:1"
        ));
        assert!(!is_known_resource(
            "https://localhost.example.com",
            "https://localhost:1"
        ));
    }
}
