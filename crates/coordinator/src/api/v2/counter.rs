//! `POST /api/v2/monotonic-counter` with `{"name": "<counter>", "value": <u64>}`: a Marble sets
//! its counter `name` to `value` if that is greater, and gets `{"value": <previous value>}`
//! ([`crate::core::counter`]).
//!
//! Only when the current manifest enables `MonotonicCounter`: otherwise `403 error`, checked
//! before authentication. Then the client must authenticate with its Marble certificate (`401
//! fail` naming what is wrong), the Coordinator must be in state 3, and the body must hold a
//! string `name` and a non-negative integer `value` (`400 fail` naming the field).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use quarry_common::limits::MAX_BODY_BYTES;
use quarry_manifest::FeatureGate;
use serde_json::{Value, json};

use crate::api::users::leaf;
use crate::api::{blocking, drain, json_object, kind, member, read_body};
use crate::core::Core;
use crate::core::counter::CounterError;
use crate::jsend::{ApiError, success};

/// Message when the feature gate is off.
pub const NOT_ENABLED: &str = "MonotonicCounter feature is not enabled in the manifest";

/// The routes of this group.
pub fn routes() -> Router<Arc<Core>> {
    Router::new().route("/api/v2/monotonic-counter", post(monotonic_counter))
}

/// Reads the body of `POST /api/v2/monotonic-counter`: the counter's name and the new value.
pub fn parse_counter_request(body: &[u8]) -> Result<(String, u64), ApiError> {
    let object = json_object(body)?;
    let name = match member(&object, "name")? {
        None | Some(Value::Null) => return Err(ApiError::bad_request("name: missing")),
        Some(Value::String(name)) => name.clone(),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "name: expected a string, found {}",
                kind(other)
            )));
        }
    };
    let value = match member(&object, "value")? {
        None | Some(Value::Null) => return Err(ApiError::bad_request("value: missing")),
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| {
            ApiError::bad_request(format!(
                "value: expected an unsigned 64-bit integer, found {n}"
            ))
        })?,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "value: expected an unsigned 64-bit integer, found {}",
                kind(other)
            )));
        }
    };
    Ok((name, value))
}

async fn monotonic_counter(
    State(core): State<Arc<Core>>,
    request: Request,
) -> Result<Response, ApiError> {
    let c = Arc::clone(&core);
    if !blocking(move || c.feature_enabled(FeatureGate::MonotonicCounter)).await? {
        drain(request.into_body()).await;
        return Err(ApiError::error(StatusCode::FORBIDDEN, NOT_ENABLED));
    }
    let leaf = leaf(request.extensions());
    // The body is read before any refusal, so that HTTP/2 clients still sending it do not see
    // their stream reset; it is parsed after authentication, as in MarbleRun.
    let body = read_body(request.into_body(), MAX_BODY_BYTES).await?;
    let c = Arc::clone(&core);
    let marble = run(move || c.authenticate_marble(leaf.as_deref())).await?;
    let (name, value) = parse_counter_request(&body)?;

    let previous = run(move || core.set_monotonic_counter(&marble, &name, value)).await?;
    Ok(success(json!({ "value": previous })))
}

impl From<CounterError> for ApiError {
    fn from(error: CounterError) -> Self {
        match error {
            CounterError::Auth(auth) => {
                tracing::info!(reason = %auth, "marble request refused");
                ApiError::unauthorized(auth.to_string())
            }
            CounterError::Core(core) => ApiError::from(core),
        }
    }
}

/// Runs a counter operation on the blocking pool (it verifies a signature and fsyncs).
async fn run<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, CounterError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(error) => {
            tracing::error!(%error, "monotonic counter operation panicked");
            Err(ApiError::internal("internal error"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_name_and_value_with_any_key_case() {
        assert_eq!(
            parse_counter_request(br#"{"Name":"c","VALUE":18446744073709551615}"#).unwrap(),
            ("c".to_owned(), u64::MAX)
        );
    }

    #[test]
    fn bad_bodies_name_the_field() {
        for (body, message) in [
            (&br#"{"value":1}"#[..], "name: missing"),
            (
                br#"{"name":1,"value":1}"#,
                "name: expected a string, found a number",
            ),
            (br#"{"name":"c"}"#, "value: missing"),
            (
                br#"{"name":"c","value":-1}"#,
                "value: expected an unsigned 64-bit integer, found -1",
            ),
            (
                br#"{"name":"c","value":1.5}"#,
                "value: expected an unsigned 64-bit integer, found 1.5",
            ),
            (
                br#"{"name":"c","value":"1"}"#,
                "value: expected an unsigned 64-bit integer, found a string",
            ),
        ] {
            match parse_counter_request(body).unwrap_err() {
                ApiError::Fail {
                    status, message: m, ..
                } => {
                    assert_eq!(status, StatusCode::BAD_REQUEST);
                    assert_eq!(m, message);
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
