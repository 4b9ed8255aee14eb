//! The JSend envelope of the Client API, byte for byte as MarbleRun writes it, because the
//! official client and existing scripts parse it:
//!
//! - success: 200, `application/json`, `{"status":"success","data":...}` and a newline;
//! - fail (v2 only): 400 or 401, `application/json`, `{"status":"fail","data":...,"message":...}`;
//! - error: `text/plain; charset=utf-8` with `X-Content-Type-Options: nosniff` (Go's
//!   `http.Error`), `{"status":"error","data":null,"message":...}`, `message` omitted when empty.
//!
//! Quarry answers invalid input with `fail` and a message that names the field, where MarbleRun
//! often answers `500 error`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

/// A successful answer carrying `data`.
pub fn success<T: Serialize>(data: T) -> Response {
    let body = serde_json::json!({ "status": "success", "data": data });
    json_response(StatusCode::OK, &body)
}

/// [`success`] for data that holds secrets: serialised straight into one buffer of exactly the
/// needed size (no intermediate JSON values, no reallocation leaving copies behind), which is
/// zeroed when the response body is dropped.
pub fn success_secret<T: Serialize>(data: &T) -> Response {
    #[derive(Serialize)]
    struct Envelope<'a, T> {
        status: &'static str,
        data: &'a T,
    }
    let envelope = Envelope {
        status: "success",
        data,
    };
    let mut counter = ByteCounter(0);
    if let Err(error) = serde_json::to_writer(&mut counter, &envelope) {
        return ApiError::internal(format!("encoding the answer: {error}")).into_response();
    }
    let mut body = SecretBody(zeroize::Zeroizing::new(Vec::with_capacity(counter.0 + 1)));
    if let Err(error) = serde_json::to_writer(&mut *body.0, &envelope) {
        return ApiError::internal(format!("encoding the answer: {error}")).into_response();
    }
    body.0.push(b'\n');
    let mut response = (
        StatusCode::OK,
        axum::body::Body::from(axum::body::Bytes::from_owner(body)),
    )
        .into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Counts the bytes written to it.
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A response body that is zeroed when the last reference to it is dropped.
struct SecretBody(zeroize::Zeroizing<Vec<u8>>);

impl AsRef<[u8]> for SecretBody {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// An unsuccessful answer of the Client API.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// The request was wrong (400) or unauthenticated (401): JSend `fail`.
    Fail {
        /// 400 or 401.
        status: StatusCode,
        /// What was wrong, naming the field.
        message: String,
        /// Optional structured detail.
        data: Option<Value>,
    },
    /// The server could not do what was asked: JSend `error`.
    Error {
        /// The HTTP status.
        status: StatusCode,
        /// What failed; empty for none.
        message: String,
        /// Data the client must not lose even now (`null` otherwise, as MarbleRun writes it).
        data: Option<Value>,
    },
}

impl ApiError {
    /// 400 fail with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::Fail {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            data: None,
        }
    }

    /// 401 fail with `message`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::Fail {
            status: StatusCode::UNAUTHORIZED,
            message: message.into(),
            data: None,
        }
    }

    /// An `error` with `status` and `message`.
    pub fn error(status: StatusCode, message: impl Into<String>) -> Self {
        Self::Error {
            status,
            message: message.into(),
            data: None,
        }
    }

    /// 500 error with `message`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::error(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// 405 error with no message: the answer for unknown paths and wrong methods, which the
    /// official client uses to fall back from API v2 to v1.
    pub fn method_not_allowed() -> Self {
        Self::error(StatusCode::METHOD_NOT_ALLOWED, "")
    }

    /// 503 error: the Coordinator cannot serve this yet (for example while waiting for a key
    /// release).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::error(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// The HTTP status of this answer.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Fail { status, .. } | Self::Error { status, .. } => *status,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Fail {
                status,
                message,
                data,
            } => {
                let body =
                    serde_json::json!({ "status": "fail", "data": data, "message": message });
                json_response(status, &body)
            }
            Self::Error {
                status,
                message,
                data,
            } => {
                let mut body = serde_json::json!({ "status": "error", "data": data });
                if !message.is_empty() {
                    body["message"] = Value::String(message);
                }
                let mut text = body.to_string();
                text.push('\n');
                let mut response = (status, text).into_response();
                let headers = response.headers_mut();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                headers.insert(
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                );
                response
            }
        }
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut text = body.to_string();
    text.push('\n');
    let mut response = (status, text).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn parts(response: Response) -> (StatusCode, String, String) {
        let status = response.status();
        let ctype = response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, ctype, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn success_envelope() {
        let (status, ctype, body) = parts(success(serde_json::json!({"code": 2}))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ctype, "application/json");
        assert_eq!(body, "{\"status\":\"success\",\"data\":{\"code\":2}}\n");
        let (_, _, body) = parts(success(())).await;
        assert_eq!(body, "{\"status\":\"success\",\"data\":null}\n");
    }

    #[tokio::test]
    async fn secret_success_envelope_is_byte_identical() {
        let data = serde_json::json!({"secrets": {"k": {"Type": "plain", "Private": "AQI="}}});
        let plain = parts(success(data.clone())).await;
        let secret = parts(success_secret(&data)).await;
        assert_eq!(plain, secret);
    }

    #[tokio::test]
    async fn fail_envelope() {
        let (status, ctype, body) =
            parts(ApiError::bad_request("Marbles[\"web\"].Package: unknown").into_response()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(ctype, "application/json");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "fail");
        assert_eq!(v["data"], Value::Null);
        assert_eq!(v["message"], "Marbles[\"web\"].Package: unknown");
    }

    #[tokio::test]
    async fn error_envelope_is_plain_text_and_omits_empty_message() {
        let response = ApiError::method_not_allowed().into_response();
        assert_eq!(
            response.headers()[header::X_CONTENT_TYPE_OPTIONS],
            "nosniff"
        );
        let (status, ctype, body) = parts(response).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(ctype, "text/plain; charset=utf-8");
        assert_eq!(body, "{\"status\":\"error\",\"data\":null}\n");
        let (_, _, body) = parts(ApiError::internal("boom").into_response()).await;
        assert_eq!(
            body,
            "{\"status\":\"error\",\"data\":null,\"message\":\"boom\"}\n"
        );
    }
}
