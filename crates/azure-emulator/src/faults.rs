//! Fault injection: latency, forced statuses, outages and short token lifetimes per route, so
//! that tests of retry and error handling are deterministic instead of timing-dependent.
//!
//! A [`Fault`] names a route by a path pattern (`/attest/SgxEnclave`,
//! `/{tenant}/oauth2/v2.0/token`, `/keys/{name}/{version}/release`, `/keys/{*rest}` or `*`) and
//! optionally a method. `{x}` matches one path segment (an empty one too, as in
//! `/keys/k//release`), `{*x}` or a final `*` matches the rest; literals compare ASCII
//! case-insensitively, as Azure's paths do. The first fault that matches a request applies;
//! with `times` it applies that many times and is then removed, so "fail twice, then succeed"
//! is one fault.
//!
//! Effects, in order: `latency_ms` delays the request; `outage` drops the connection without a
//! response (the client sees a reset, as during a real outage); `status` answers with that
//! status and `body` (or a generic JSON error); `token_lifetime_secs` lets the request through
//! but makes the token endpoints issue tokens with that lifetime (read by handlers through
//! [`TokenLifetime`]).
//!
//! Faults are set at start (`serve --fault JSON`) or at run time through `/_emulator/faults`
//! (`GET` lists, `PUT` replaces, `POST` adds one, `DELETE` clears). The admin routes themselves
//! are never subject to faults. Faults live in memory only.
//!
//! The same `/_emulator/` surface has two more test hooks: the release counter
//! (`GET /_emulator/releases`) and `POST /_emulator/keys/{name}/{version}/replace-material`,
//! which gives an `oct-HSM` key version other material under the same version id, so that a
//! release of it is validly signed but holds a key the client never sealed with.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, Method, StatusCode, Uri};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Emulator;
use crate::http_util::request_base_url;

/// One injected fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// Path pattern of the route (see the module docs).
    pub route: String,
    /// HTTP method to match; any method if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Delay before the request is handled, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Drop the connection without answering.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub outage: bool,
    /// Answer with this status instead of handling the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// JSON body for `status`; a generic error document if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// Lifetime in seconds of tokens issued by the matched request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_lifetime_secs: Option<u64>,
    /// How many matching requests the fault applies to; forever if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
}

/// A fault specification that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FaultError {
    /// Not a JSON fault object.
    #[error("invalid fault specification: {0}")]
    Json(String),
    /// The route pattern is empty or does not start with `/` (and is not `*`).
    #[error("invalid fault route {0:?}: must be \"*\" or start with \"/\"")]
    Route(String),
    /// `status` is not an HTTP status code.
    #[error("invalid fault status {0}")]
    Status(u16),
    /// `times` is zero.
    #[error("fault times must be at least 1")]
    Times,
}

impl Fault {
    /// Parses and checks one fault from JSON.
    pub fn from_json(text: &str) -> Result<Self, FaultError> {
        let fault: Fault =
            serde_json::from_str(text).map_err(|e| FaultError::Json(e.to_string()))?;
        fault.check()?;
        Ok(fault)
    }

    fn check(&self) -> Result<(), FaultError> {
        if self.route != "*" && !self.route.starts_with('/') {
            return Err(FaultError::Route(self.route.clone()));
        }
        if let Some(status) = self.status
            && StatusCode::from_u16(status).is_err()
        {
            return Err(FaultError::Status(status));
        }
        if self.times == Some(0) {
            return Err(FaultError::Times);
        }
        Ok(())
    }

    fn matches(&self, method: &Method, path: &str) -> bool {
        if let Some(m) = &self.method
            && !m.eq_ignore_ascii_case(method.as_str())
        {
            return false;
        }
        route_matches(&self.route, path)
    }
}

/// Whether `path` matches the route `pattern` (see the module docs).
pub fn route_matches(pattern: &str, path: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let mut pat = pattern.split('/');
    let mut segs = path.split('/');
    loop {
        match (pat.next(), segs.next()) {
            (None, None) => return true,
            (Some(p), _) if p == "*" || (p.starts_with("{*") && p.ends_with('}')) => return true,
            (Some(p), Some(s)) => {
                let wildcard = p.starts_with('{') && p.ends_with('}');
                if !wildcard && !p.eq_ignore_ascii_case(s) {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// What a matching fault does to one request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Applied {
    /// Delay before anything else.
    pub latency: Option<Duration>,
    /// Drop the connection.
    pub outage: bool,
    /// Answer with this status and body.
    pub status: Option<(StatusCode, Option<Value>)>,
    /// Token lifetime override for the handler.
    pub token_lifetime_secs: Option<u64>,
}

/// A request extension set when a fault shortens the lifetime of the tokens a handler issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenLifetime(pub u64);

/// The active faults.
#[derive(Debug, Default)]
pub struct Faults {
    active: Mutex<Vec<Fault>>,
}

impl Faults {
    /// Starts with `faults` active.
    pub fn new(faults: Vec<Fault>) -> Self {
        Self {
            active: Mutex::new(faults),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Fault>> {
        // A panic while holding this lock cannot leave the list inconsistent (every change is
        // a single Vec operation), so a poisoned lock is still usable.
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The active faults, with their remaining `times`.
    pub fn list(&self) -> Vec<Fault> {
        self.lock().clone()
    }

    /// Replaces all faults.
    pub fn set(&self, faults: Vec<Fault>) {
        *self.lock() = faults;
    }

    /// Adds a fault after the existing ones.
    pub fn add(&self, fault: Fault) {
        self.lock().push(fault);
    }

    /// Removes all faults.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The effect of the first fault matching the request, using up one of its `times`.
    /// Paths under `/_emulator/` are never affected.
    pub fn take(&self, method: &Method, path: &str) -> Option<Applied> {
        if path.starts_with("/_emulator/") {
            return None;
        }
        let mut active = self.lock();
        let index = active.iter().position(|f| f.matches(method, path))?;
        let fault = &mut active[index];
        let applied = Applied {
            latency: fault.latency_ms.map(Duration::from_millis),
            outage: fault.outage,
            status: fault
                .status
                .and_then(|s| StatusCode::from_u16(s).ok())
                .map(|s| (s, fault.body.clone())),
            token_lifetime_secs: fault.token_lifetime_secs,
        };
        match &mut fault.times {
            Some(1) => {
                active.remove(index);
            }
            Some(n) => *n -= 1,
            None => {}
        }
        Some(applied)
    }
}

/// The response for a forced status.
pub fn forced_response(status: StatusCode, body: Option<Value>) -> Response {
    let body = body.unwrap_or_else(|| {
        json!({"error": {
            "code": "EmulatedFault",
            "message": format!("fault injected by the emulator: status {}", status.as_u16()),
        }})
    });
    (status, Json(body)).into_response()
}

/// The admin routes: `/_emulator/faults`, the read-only release counter
/// `GET /_emulator/releases` (`{"releases": N}`, keys released since the server started), and
/// the test hook `POST /_emulator/keys/{name}/{version}/replace-material` (answers
/// `{"kid": …, "replaced": true}`, or the Managed HSM's error: 404 for an unknown key or
/// version, 400 for a key that is not `oct-HSM`).
pub fn routes() -> Router<Arc<Emulator>> {
    Router::new()
        .route(
            "/_emulator/faults",
            get(list).put(replace).post(add).delete(clear),
        )
        .route("/_emulator/releases", get(releases))
        .route(
            "/_emulator/keys/{name}/{version}/replace-material",
            post(replace_material),
        )
}

async fn replace_material(
    State(emulator): State<Arc<Emulator>>,
    Path((name, version)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let base_url = request_base_url(&uri, &headers, &emulator.config.base_url);
    match emulator.hsm.replace_material(&base_url, &name, &version) {
        Ok(kid) => {
            tracing::warn!(%kid, "test hook: key material replaced");
            Json(json!({ "kid": kid, "replaced": true })).into_response()
        }
        Err(error) => error.into_response(),
    }
}

async fn releases(State(emulator): State<Arc<Emulator>>) -> Response {
    let count = emulator.releases.load(std::sync::atomic::Ordering::Relaxed);
    Json(json!({ "releases": count })).into_response()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum FaultList {
    Wrapped { faults: Vec<Fault> },
    Bare(Vec<Fault>),
}

fn listing(emulator: &Emulator) -> Response {
    Json(json!({ "faults": emulator.faults.list() })).into_response()
}

fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": {"code": "BadParameter", "message": message}})),
    )
        .into_response()
}

async fn list(State(emulator): State<Arc<Emulator>>) -> Response {
    listing(&emulator)
}

async fn replace(State(emulator): State<Arc<Emulator>>, body: axum::body::Bytes) -> Response {
    let faults = match serde_json::from_slice::<FaultList>(&body) {
        Ok(FaultList::Wrapped { faults } | FaultList::Bare(faults)) => faults,
        Err(e) => return bad_request(format!("invalid fault list: {e}")),
    };
    if let Some(e) = faults.iter().find_map(|f| f.check().err()) {
        return bad_request(e.to_string());
    }
    emulator.faults.set(faults);
    listing(&emulator)
}

async fn add(State(emulator): State<Arc<Emulator>>, body: axum::body::Bytes) -> Response {
    let text = String::from_utf8_lossy(&body);
    match Fault::from_json(&text) {
        Ok(fault) => {
            emulator.faults.add(fault);
            listing(&emulator)
        }
        Err(e) => bad_request(e.to_string()),
    }
}

async fn clear(State(emulator): State<Arc<Emulator>>) -> Response {
    emulator.faults.clear();
    listing(&emulator)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_segments() {
        assert!(route_matches("*", "/anything"));
        assert!(route_matches("/attest/SgxEnclave", "/attest/sgxenclave"));
        assert!(!route_matches("/attest/SgxEnclave", "/attest/SgxEnclave/x"));
        assert!(route_matches(
            "/{tenant}/oauth2/v2.0/token",
            "/t1/oauth2/v2.0/token"
        ));
        assert!(!route_matches(
            "/{tenant}/oauth2/v2.0/token",
            "/oauth2/v2.0/token"
        ));
        assert!(route_matches(
            "/keys/{name}/{version}/release",
            "/keys/k//release"
        ));
        assert!(!route_matches(
            "/keys/{name}/{version}/release",
            "/keys/k/release"
        ));
        assert!(route_matches("/keys/{*rest}", "/keys/k/v/release"));
        assert!(route_matches("/keys/*", "/keys/k"));
    }

    #[test]
    fn times_counts_down_and_removes() {
        let faults = Faults::new(vec![
            Fault::from_json(r#"{"route":"/a","status":503,"times":2}"#).unwrap(),
        ]);
        let m = Method::GET;
        assert_eq!(faults.take(&m, "/a").unwrap().status.unwrap().0, 503);
        assert_eq!(faults.list()[0].times, Some(1));
        assert!(faults.take(&m, "/a").is_some());
        assert!(faults.take(&m, "/a").is_none());
        assert!(faults.list().is_empty());
    }

    #[test]
    fn method_and_admin_paths() {
        let faults = Faults::new(vec![
            Fault::from_json(r#"{"route":"*","method":"post","outage":true}"#).unwrap(),
        ]);
        assert!(faults.take(&Method::GET, "/x").is_none());
        assert!(faults.take(&Method::POST, "/x").unwrap().outage);
        assert!(faults.take(&Method::POST, "/_emulator/faults").is_none());
    }

    #[test]
    fn rejects_bad_specifications() {
        for bad in [
            "{",
            r#"{"route":"x"}"#,
            r#"{"route":"/x","status":42}"#,
            r#"{"route":"/x","times":0}"#,
            r#"{"route":"/x","unknown":1}"#,
        ] {
            assert!(Fault::from_json(bad).is_err(), "{bad}");
        }
    }
}
