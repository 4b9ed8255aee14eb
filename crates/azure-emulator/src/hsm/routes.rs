//! The Managed HSM's HTTP routes: Key Vault's key API under `/keys`, behind challenge-based
//! authentication.
//!
//! One handler serves every path under `/keys` and dispatches on the segments itself, because
//! clients address the latest version in three ways (`/keys/k`, `/keys/k/` and, for release,
//! `/keys/k//release`) and a router with one parameter per segment would lose the empty one.
//!
//! Order of checks, as the service does them: bearer token (401 with exactly one
//! `WWW-Authenticate` challenge if absent or invalid), `api-version` (400), path and method
//! (404/405), body (413, 400), then the operation (RBAC 403 before a 404 for the key).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::HsmError;
use super::{Caller, Hsm, ReleaseParams, unix_now};
use crate::Emulator;
use crate::http_util::{BodyError, read_body, request_base_url};

/// The resource (audience) of Managed HSM access tokens, announced in the challenge.
pub const HSM_RESOURCE: &str = "https://managedhsm.azure.net";

/// The api-versions accepted, from the first with Secure Key Release to the current default of
/// Azure's SDKs.
pub const API_VERSIONS: &[&str] = &[
    "7.3-preview",
    "7.3",
    "7.4-preview.1",
    "7.4",
    "7.5-preview.1",
    "7.5",
    "7.6-preview.1",
    "7.6-preview.2",
    "7.6",
    "2025-07-01",
];

/// Largest request body accepted (an import of an RSA-4096 key is a few KiB; a release body
/// carries one attestation token).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The routes, to be mounted at the root of the emulator's router.
pub fn routes() -> Router<Arc<Emulator>> {
    Router::new()
        .route("/keys", any(handle))
        .route("/keys/", any(handle))
        .route("/keys/{*rest}", any(handle))
}

/// Sets the headers every Managed HSM response with a JSON body carries.
pub(crate) fn add_common_headers(response: &mut Response, request_id: &str) {
    let headers = response.headers_mut();
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert("x-ms-request-id", id);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-ms-keyvault-region", HeaderValue::from_static("local"));
    headers.insert(CONTENT_TYPE, crate::http_util::JSON_UTF8);
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    add_common_headers(&mut response, &uuid::Uuid::new_v4().to_string());
    response
}

/// The 401 challenge: empty body, exactly one `WWW-Authenticate`.
fn challenge(base_url: &str, tenant: &str, error: Option<HsmError>) -> Response {
    let value =
        format!("Bearer authorization=\"{base_url}/{tenant}\", resource=\"{HSM_RESOURCE}\"");
    let mut response = match error {
        Some(e) => e.into_response(),
        None => {
            let mut r = StatusCode::UNAUTHORIZED.into_response();
            add_common_headers(&mut r, &uuid::Uuid::new_v4().to_string());
            r.headers_mut().remove(CONTENT_TYPE);
            r
        }
    };
    match HeaderValue::from_str(&value) {
        Ok(v) => {
            response.headers_mut().insert(WWW_AUTHENTICATE, v);
        }
        Err(_) => tracing::error!(base_url, "challenge header is not a valid header value"),
    }
    response
}

/// The operation a path and method name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Operation {
    List,
    Versions(String),
    Create(String),
    Import(String),
    Get(String, Option<String>),
    Update(String, Option<String>),
    Release(String, Option<String>),
}

/// Maps a path under `/keys` and a method to an operation.
fn operation(method: &Method, path: &str) -> Result<Operation, HsmError> {
    let rest = path.strip_prefix("/keys").unwrap_or(path);
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    let segments: Vec<&str> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split('/').collect()
    };
    let version = |v: &str| (!v.is_empty()).then(|| v.to_owned());
    let allowed = |ok: bool, op: Operation| {
        if ok {
            Ok(op)
        } else {
            Err(HsmError::method_not_allowed(method.as_str(), path))
        }
    };
    match segments.as_slice() {
        [] => allowed(method == Method::GET, Operation::List),
        [name] if !name.is_empty() => match *method {
            Method::GET => Ok(Operation::Get((*name).into(), None)),
            Method::PUT => Ok(Operation::Import((*name).into())),
            Method::PATCH => Ok(Operation::Update((*name).into(), None)),
            _ => Err(HsmError::method_not_allowed(method.as_str(), path)),
        },
        [name, "create"] if method == Method::POST => Ok(Operation::Create((*name).into())),
        [name, "release"] if method == Method::POST => Ok(Operation::Release((*name).into(), None)),
        [name, "versions"] if method == Method::GET => Ok(Operation::Versions((*name).into())),
        [name, v] if !name.is_empty() => match *method {
            Method::GET => Ok(Operation::Get((*name).into(), version(v))),
            Method::PATCH => Ok(Operation::Update((*name).into(), version(v))),
            _ => Err(HsmError::method_not_allowed(method.as_str(), path)),
        },
        [name, v, "release"] if !name.is_empty() => allowed(
            method == Method::POST,
            Operation::Release((*name).into(), version(v)),
        ),
        _ => Err(HsmError::not_found(path)),
    }
}

/// The `api-version` query parameter, checked against [`API_VERSIONS`].
fn api_version(uri: &Uri) -> Result<String, HsmError> {
    let query = uri.query().unwrap_or_default();
    let found = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case("api-version"))
        .map(|(_, v)| v.to_owned());
    let Some(version) = found else {
        return Err(HsmError::bad_parameter(
            "the 'api-version' query parameter is required",
        ));
    };
    if API_VERSIONS.contains(&version.as_str()) {
        Ok(version)
    } else {
        Err(HsmError::bad_parameter(format!(
            "the specified api-version {version:?} is not recognized; supported: {}",
            API_VERSIONS.join(", ")
        )))
    }
}

fn parse_body<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, HsmError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(HsmError::bad_parameter(
            "the request body is empty; a JSON object is required",
        ));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(_)) => {}
        Ok(_) => {
            return Err(HsmError::bad_parameter(
                "the request body must be a JSON object",
            ));
        }
        Err(e) => {
            return Err(HsmError::bad_parameter(format!(
                "the request body is not valid JSON: {e}"
            )));
        }
    }
    serde_json::from_slice(bytes)
        .map_err(|e| HsmError::bad_parameter(format!("invalid request body: {e}")))
}

async fn handle(
    State(emulator): State<Arc<Emulator>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let base_url = request_base_url(&uri, &headers, &emulator.config.base_url);
    let tenant = emulator.entra.tenant_id().to_owned();

    let token = headers
        .get(AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return challenge(&base_url, &tenant, None);
    };
    let claims = match emulator.entra.verify_access_token(token, HSM_RESOURCE) {
        Ok(claims) => claims,
        Err(e) => {
            let error = HsmError::unauthorized(format!("the access token is not valid: {e}"));
            return challenge(&base_url, &tenant, Some(error));
        }
    };
    let caller = Caller::Principal {
        object_id: claims.oid,
        app_id: claims.appid,
    };

    match serve(emulator, caller, method, uri, base_url, body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn serve(
    emulator: Arc<Emulator>,
    caller: Caller,
    method: Method,
    uri: Uri,
    base_url: String,
    body: Body,
) -> Result<Response, HsmError> {
    let api_version = api_version(&uri)?;
    let op = operation(&method, uri.path())?;
    let bytes = match op {
        Operation::List | Operation::Versions(_) | Operation::Get(..) => Default::default(),
        _ => read_body(body, MAX_BODY_BYTES).await.map_err(|e| match e {
            BodyError::TooLarge { limit } => HsmError::body_too_large(limit),
            BodyError::Read(detail) => {
                HsmError::bad_parameter(format!("reading the body failed: {detail}"))
            }
        })?,
    };

    // Key generation and file I/O block: run them off the async workers.
    let result = tokio::task::spawn_blocking(move || {
        let hsm: &Hsm = &emulator.hsm;
        match op {
            Operation::List => list(hsm, &caller, &base_url),
            Operation::Versions(name) => versions(hsm, &caller, &base_url, &name),
            Operation::Create(name) => {
                hsm.create_key(&caller, &base_url, &name, &parse_body(&bytes)?)
            }
            Operation::Import(name) => {
                hsm.import_key(&caller, &base_url, &name, &parse_body(&bytes)?)
            }
            Operation::Get(name, version) => {
                hsm.get_key(&caller, &base_url, &name, version.as_deref())
            }
            Operation::Update(name, version) => hsm.update_key(
                &caller,
                &base_url,
                &name,
                version.as_deref(),
                &parse_body(&bytes)?,
            ),
            Operation::Release(name, version) => {
                let params: ReleaseParams = parse_body(&bytes)?;
                let issuer_keys = |issuer: &str| {
                    let kid = emulator.maa.kid();
                    match emulator.maa.verification_key(issuer, &kid) {
                        Ok(found) => found.map(|key| vec![(kid, key)]),
                        Err(e) => {
                            tracing::error!(error = %e, "reading the maa issuers failed");
                            None
                        }
                    }
                };
                let request = super::ReleaseRequest {
                    base_url: &base_url,
                    name: &name,
                    version: version.as_deref(),
                    api_version: &api_version,
                    params: &params,
                    now: unix_now(),
                };
                let jws = hsm.release_key(&caller, &request, &issuer_keys)?;
                emulator
                    .releases
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(serde_json::json!({ "value": jws }))
            }
        }
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "hsm request task failed");
        HsmError::internal()
    })?;
    let body = result?;
    Ok(json_response(StatusCode::OK, &body))
}

/// `GET /keys/{name}/versions`: every version of a key.
fn versions(hsm: &Hsm, caller: &Caller, base_url: &str, name: &str) -> Result<Value, HsmError> {
    hsm.authorize(caller, super::Action::Read, name)?;
    let store = hsm.read_keys()?;
    let Some((stored_name, versions)) = store
        .keys
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
    else {
        return Err(HsmError::key_not_found(name, None));
    };
    let items: Vec<Value> = versions
        .iter()
        .map(|k| {
            let mut item = serde_json::Map::new();
            item.insert("attributes".into(), k.attributes_json());
            item.insert(
                "kid".into(),
                super::kid(base_url, stored_name, Some(&k.version)).into(),
            );
            Value::Object(item)
        })
        .collect();
    Ok(serde_json::json!({ "value": items, "nextLink": null }))
}

/// `GET /keys`: the latest version of every key the caller may read.
fn list(hsm: &Hsm, caller: &Caller, base_url: &str) -> Result<Value, HsmError> {
    let store = hsm.read_keys()?;
    let mut items = Vec::new();
    for (name, versions) in &store.keys {
        let Some(latest) = versions.last() else {
            continue;
        };
        if hsm.authorize(caller, super::Action::Read, name).is_err() {
            continue;
        }
        let mut item = serde_json::Map::new();
        item.insert("attributes".into(), latest.attributes_json());
        item.insert("kid".into(), super::kid(base_url, name, None).into());
        if !latest.tags.is_empty() {
            item.insert(
                "tags".into(),
                serde_json::to_value(&latest.tags).unwrap_or_default(),
            );
        }
        items.push(Value::Object(item));
    }
    Ok(serde_json::json!({ "value": items, "nextLink": null }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_the_three_release_forms_and_versionless_gets() {
        let post = Method::POST;
        assert_eq!(
            operation(&post, "/keys/k/release").unwrap(),
            Operation::Release("k".into(), None)
        );
        assert_eq!(
            operation(&post, "/keys/k//release").unwrap(),
            Operation::Release("k".into(), None)
        );
        assert_eq!(
            operation(&post, "/keys/k/abc/release").unwrap(),
            Operation::Release("k".into(), Some("abc".into()))
        );
        assert_eq!(
            operation(&post, "/keys/k/create").unwrap(),
            Operation::Create("k".into())
        );
        assert_eq!(
            operation(&Method::GET, "/keys/k").unwrap(),
            Operation::Get("k".into(), None)
        );
        assert_eq!(
            operation(&Method::GET, "/keys/k/").unwrap(),
            Operation::Get("k".into(), None)
        );
        assert_eq!(
            operation(&Method::GET, "/keys/k/v1").unwrap(),
            Operation::Get("k".into(), Some("v1".into()))
        );
        assert_eq!(
            operation(&Method::PUT, "/keys/k").unwrap(),
            Operation::Import("k".into())
        );
        assert_eq!(
            operation(&Method::PATCH, "/keys/k/").unwrap(),
            Operation::Update("k".into(), None)
        );
        assert_eq!(operation(&Method::GET, "/keys").unwrap(), Operation::List);
        assert_eq!(
            operation(&Method::GET, "/keys/k/versions").unwrap(),
            Operation::Versions("k".into())
        );
        assert_eq!(
            operation(&Method::DELETE, "/keys/k")
                .unwrap_err()
                .status
                .as_u16(),
            405
        );
        assert_eq!(
            operation(&Method::GET, "/keys/k/v/release")
                .unwrap_err()
                .status
                .as_u16(),
            405
        );
        assert_eq!(
            operation(&Method::GET, "/keys/k/v/x/y")
                .unwrap_err()
                .status
                .as_u16(),
            404
        );
    }

    #[test]
    fn requires_a_known_api_version() {
        let uri = |q: &str| -> Uri { format!("/keys/k?{q}").parse().unwrap() };
        assert_eq!(api_version(&uri("api-version=7.4")).unwrap(), "7.4");
        assert_eq!(
            api_version(&uri("x=1&api-version=2025-07-01")).unwrap(),
            "2025-07-01"
        );
        assert!(
            api_version(&uri("api-version=7.2"))
                .unwrap_err()
                .message
                .contains("7.2")
        );
        assert!(
            api_version(&"/keys/k".parse().unwrap())
                .unwrap_err()
                .message
                .contains("required")
        );
    }

    #[test]
    fn bodies_must_be_json_objects() {
        assert!(
            parse_body::<ReleaseParams>(b"")
                .unwrap_err()
                .message
                .contains("empty")
        );
        assert!(
            parse_body::<ReleaseParams>(b"[]")
                .unwrap_err()
                .message
                .contains("JSON object")
        );
        assert!(
            parse_body::<ReleaseParams>(b"{")
                .unwrap_err()
                .message
                .contains("not valid JSON")
        );
        assert!(
            parse_body::<ReleaseParams>(br#"{"target": 1}"#)
                .unwrap_err()
                .message
                .contains("invalid")
        );
        assert!(parse_body::<ReleaseParams>(br#"{"target": "t"}"#).is_ok());
    }
}
