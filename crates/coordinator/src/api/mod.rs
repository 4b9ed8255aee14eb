//! The Client API (HTTPS): the router assembled from one module per endpoint group, the JSend
//! answer for unknown paths and wrong methods (405, which the official client uses to fall
//! back from v2 to v1), the body limits of `quarry_common::limits`, and the helpers every
//! handler uses to read bodies and map core errors to JSend.
//!
//! Add an endpoint group as a module with a `routes()` function and merge it in [`router`].

pub mod v1;
pub mod v2;
// Users, secrets and updates.
pub(crate) mod users;
pub mod v1_updates;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Map, Value};

use crate::core::{Core, CoreError, IN_DOUBT, error_chain};
use crate::jsend::ApiError;

/// The Client API's router over `core`.
///
/// With `EDG_COORDINATOR_PROMETHEUS_ADDR` set, every request is counted in MarbleRun's per-path
/// metrics ([`crate::metrics::http`]); unknown paths still get the 405.
pub fn router(core: Arc<Core>) -> Router {
    let metrics = core.config().prometheus_addr.is_some();
    let router = Router::new()
        .merge(v2::routes())
        .merge(v1::routes())
        .merge(v1_updates::routes())
        .fallback(method_not_allowed)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(core);
    if metrics {
        crate::metrics::http::instrument(router, crate::metrics::global().http())
    } else {
        router
    }
}

async fn method_not_allowed(body: Body) -> Response {
    drain(body).await;
    ApiError::method_not_allowed().into_response()
}

/// Reads and drops a request body (up to the usual limit) before answering without it, so that
/// HTTP/2 clients still sending it do not see their stream reset.
pub(crate) async fn drain(body: Body) {
    let _ = axum::body::to_bytes(body, quarry_common::limits::MAX_BODY_BYTES).await;
}

impl From<CoreError> for ApiError {
    fn from(error: CoreError) -> Self {
        use axum::http::StatusCode;
        match error {
            CoreError::InvalidInput { message } => ApiError::bad_request(message),
            e @ CoreError::WrongState { .. } => {
                ApiError::error(StatusCode::CONFLICT, e.to_string())
            }
            CoreError::Unavailable { message } => ApiError::unavailable(message),
            CoreError::NotFound { what } => ApiError::error(StatusCode::NOT_FOUND, what),
            CoreError::InDoubt {
                source,
                recovery_secrets,
            } => {
                tracing::error!(error = %error_chain(&source), "commit in doubt");
                match recovery_secrets {
                    None => ApiError::internal(IN_DOUBT),
                    Some(secrets) => ApiError::Error {
                        status: StatusCode::INTERNAL_SERVER_ERROR,
                        message: format!(
                            "{IN_DOUBT}; if it serves the new state, the recovery secrets in data \
                             are the only ones that recover it: keep them"
                        ),
                        data: Some(serde_json::json!({
                            "RecoverySecrets": v2::manifest::encode_secrets(&secrets.0)
                        })),
                    },
                }
            }
            internal => {
                // The cause may describe sealed state; it is logged here, once, and the client
                // learns only which part failed.
                tracing::error!(error = %error_chain(&internal), "request failed");
                ApiError::internal(format!("internal error: {internal}"))
            }
        }
    }
}

/// Reads a request body of at most `limit` bytes: a larger one is `413 fail`; one that does not
/// arrive (the client stopped sending, or the connection's body deadline passed) is `400 fail`.
/// A body whose declared length (`Content-Length`) is over the limit is over the limit however
/// it ends.
///
/// Before a `413` the rest of the body is read and dropped, up to [`DRAIN_LIMIT`] bytes in all:
/// answering with part of the body unsent makes the server reset the HTTP/2 stream, or close the
/// HTTP/1.1 connection, and clients such as curl then report that failure instead of the answer.
/// A body declared larger than that is read only up to `limit`.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt as _;

    let declared = http_body::Body::size_hint(&body).lower();
    let declared = usize::try_from(declared).unwrap_or(usize::MAX);
    let mut body = body;
    let mut collected: Vec<u8> = Vec::new();
    let mut read = 0usize;
    loop {
        let frame = match body.frame().await {
            None => break,
            Some(Ok(frame)) => frame,
            Some(Err(error)) => {
                return Err(if declared > limit || read > limit {
                    too_large(limit)
                } else {
                    body_error(&*error.into_inner(), limit)
                });
            }
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        read = read.saturating_add(data.len());
        if read <= limit {
            collected.extend_from_slice(&data);
            continue;
        }
        // Over the limit: drop what was read, and drain the rest if it is not too much.
        drop(std::mem::take(&mut collected));
        if declared > DRAIN_LIMIT {
            return Err(too_large(limit));
        }
        while read <= DRAIN_LIMIT {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        read = read.saturating_add(data.len());
                    }
                }
                None | Some(Err(_)) => break,
            }
        }
        return Err(too_large(limit));
    }
    if declared > limit {
        return Err(too_large(limit));
    }
    Ok(Bytes::from(collected))
}

/// How much of a body over its limit is read and dropped before the `413` ([`read_body`]):
/// twice the largest limit, so that a body somewhat over any limit is answered cleanly. Dropped
/// data takes no memory, and the body deadline bounds the time.
pub(crate) const DRAIN_LIMIT: usize = 2 * quarry_common::limits::MAX_BODY_BYTES;

fn too_large(limit: usize) -> ApiError {
    ApiError::Fail {
        status: axum::http::StatusCode::PAYLOAD_TOO_LARGE,
        message: format!("request body is larger than the limit of {limit} bytes"),
        data: None,
    }
}

fn body_error(error: &(dyn std::error::Error + 'static), limit: usize) -> ApiError {
    let mut source = Some(error);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return too_large(limit);
        }
        source = e.source();
    }
    ApiError::bad_request(format!("request body could not be read: {error}"))
}

/// Parses a request body that must be a JSON object.
pub(crate) fn json_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("request body is not JSON: {e}")))?;
    match value {
        Value::Object(map) => Ok(map),
        other => Err(ApiError::bad_request(format!(
            "request body: expected a JSON object, found {}",
            kind(&other)
        ))),
    }
}

/// The member `name` of `object`, matched case-insensitively as Go's decoder does
/// ([`quarry_common::go::json_key_eq`]: ASCII case, and the Kelvin sign, long s and the two
/// Turkish i letters, which Go folds into ASCII). Two members
/// that both match (`manifest` and `Manifest`) are refused: Go would silently take the last one,
/// so a proxy or log that reads the first would see another value than the Coordinator.
pub(crate) fn member<'a>(
    object: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a Value>, ApiError> {
    let mut matches = object
        .iter()
        .filter(|(k, _)| quarry_common::go::json_key_eq(k, name));
    let first = matches.next();
    if let Some((other, _)) = matches.next() {
        let (first, _) = first.unwrap_or((other, &Value::Null));
        return Err(ApiError::bad_request(format!(
            "{name}: given twice, as {first:?} and {other:?}"
        )));
    }
    Ok(first.map(|(_, v)| v))
}

/// The required standard-base64 string member `name`.
pub(crate) fn base64_member(object: &Map<String, Value>, name: &str) -> Result<Vec<u8>, ApiError> {
    match member(object, name)? {
        None | Some(Value::Null) => Err(ApiError::bad_request(format!("{name}: missing"))),
        Some(Value::String(text)) => quarry_common::go::decode_std_base64(text)
            .map_err(|e| ApiError::bad_request(format!("{name}: invalid base64: {e}"))),
        Some(other) => Err(ApiError::bad_request(format!(
            "{name}: expected a base64 string, found {}",
            kind(other)
        ))),
    }
}

/// The JSON type name of `value`.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Runs a core operation on the blocking pool (they fsync and generate keys).
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, CoreError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(error) => {
            tracing::error!(%error, "core operation panicked");
            Err(ApiError::internal("internal error"))
        }
    }
}

/// Standard base64 with padding, as Go encodes `[]byte`.
pub(crate) fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(json: &str) -> Map<String, Value> {
        json_object(json.as_bytes()).unwrap()
    }

    fn message(error: ApiError) -> String {
        match error {
            ApiError::Fail { message, .. } | ApiError::Error { message, .. } => message,
        }
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_413_and_one_that_breaks_off_is_400() {
        let large = read_body(Body::from(vec![b'x'; 11]), 10).await.unwrap_err();
        assert!(matches!(
            large,
            ApiError::Fail { status, .. } if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE
        ));
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from_static(b"{\"manifest\"")),
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "body deadline",
            )),
        ];
        let broken = Body::from_stream(futures_stream(chunks));
        let error = read_body(broken, 10_000).await.unwrap_err();
        assert!(
            matches!(&error, ApiError::Fail { status, message, .. }
                if *status == axum::http::StatusCode::BAD_REQUEST
                    && message.starts_with("request body could not be read")),
            "{error:?}"
        );
    }

    /// A body that declares `declared` bytes and then breaks off.
    struct Declared {
        declared: u64,
    }

    impl http_body::Body for Declared {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
            std::task::Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ))))
        }

        fn size_hint(&self) -> http_body::SizeHint {
            http_body::SizeHint::with_exact(self.declared)
        }
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_413_however_the_body_ends() {
        let error = read_body(Body::new(Declared { declared: 11 }), 10)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, ApiError::Fail { status, .. }
                if *status == axum::http::StatusCode::PAYLOAD_TOO_LARGE),
            "{error:?}"
        );
        // Within the limit, the broken-off body is what is reported.
        let error = read_body(Body::new(Declared { declared: 10 }), 10)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, ApiError::Fail { status, .. }
                if *status == axum::http::StatusCode::BAD_REQUEST),
            "{error:?}"
        );
    }

    fn futures_stream(
        items: Vec<Result<Bytes, std::io::Error>>,
    ) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
        futures::stream::iter(items)
    }

    #[test]
    fn members_match_case_insensitively_but_never_ambiguously() {
        let one = object(r#"{"MANIFEST": "AQ=="}"#);
        assert_eq!(base64_member(&one, "manifest").unwrap(), [1]);
        for body in [
            r#"{"manifest": "AQ==", "Manifest": "Ag=="}"#,
            r#"{"Manifest": "Ag==", "manifest": "AQ=="}"#,
            r#"{"mAnifest": "AQ==", "MaNifest": "AQ=="}"#,
        ] {
            let error = message(base64_member(&object(body), "manifest").unwrap_err());
            assert!(
                error.starts_with("manifest: given twice"),
                "{body}: {error}"
            );
        }
    }

    #[test]
    fn base64_members_accept_what_gos_json_decoder_accepts() {
        // `base64 manifest.json` wraps lines; Go skips the line breaks and ignores trailing bits.
        let wrapped = object("{\"manifest\": \"AAEC\\nAwQF\\r\\nBg==\\n\"}");
        assert_eq!(
            base64_member(&wrapped, "manifest").unwrap(),
            [0, 1, 2, 3, 4, 5, 6]
        );
        assert_eq!(
            base64_member(&object(r#"{"manifest": "AR=="}"#), "manifest").unwrap(),
            [1]
        );
        for bad in [
            r#"{"manifest": "AQ"}"#,
            r#"{"manifest": "A Q=="}"#,
            r#"{"manifest": "-_8="}"#,
        ] {
            let error = message(base64_member(&object(bad), "manifest").unwrap_err());
            assert!(
                error.starts_with("manifest: invalid base64"),
                "{bad}: {error}"
            );
        }
    }
}
