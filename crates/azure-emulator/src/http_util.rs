//! Small HTTP helpers shared by the emulated services: bounded body reading, the base URL a
//! client used to reach the emulator, and the JSON content type Azure answers with.

use axum::body::{Body, Bytes};
use http::{HeaderMap, HeaderValue, Uri};

/// `application/json; charset=utf-8`, the content type of every Azure JSON response.
pub const JSON_UTF8: HeaderValue = HeaderValue::from_static("application/json; charset=utf-8");

/// Why a body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The body is larger than the limit.
    #[error("request body exceeds {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The connection failed while reading.
    #[error("reading the request body failed: {0}")]
    Read(String),
}

/// How much of an oversized body is read and discarded before the 413 is answered, so that an
/// HTTP/1.1 client that sends the whole body before reading the answer (as Python's
/// `http.client` does) gets the 413 instead of a reset connection. Beyond this the connection
/// is closed as before.
pub const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

/// Reads a request body of at most `limit` bytes. An oversized body is read on and discarded
/// up to [`DRAIN_LIMIT`] bytes before [`BodyError::TooLarge`] is returned.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    use http_body_util::BodyExt as _;

    let mut body = body;
    let mut collected = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total = total.saturating_add(data.len());
        if total > limit {
            collected = Vec::new();
            if total > DRAIN_LIMIT {
                break;
            }
            continue;
        }
        collected.extend_from_slice(&data);
    }
    if total > limit {
        return Err(BodyError::TooLarge { limit });
    }
    Ok(Bytes::from(collected))
}

/// `https://<authority>` as the client addressed the emulator (HTTP/2 `:authority` or the
/// `Host` header), or `fallback` if neither is usable.
pub fn request_base_url(uri: &Uri, headers: &HeaderMap, fallback: &str) -> String {
    let authority = uri.authority().map(|a| a.as_str().to_owned()).or_else(|| {
        headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
    });
    match authority {
        Some(a)
            if !a.is_empty() && a.parse::<http::uri::Authority>().is_ok() && !a.contains('@') =>
        {
            format!("https://{a}")
        }
        _ => fallback.to_owned(),
    }
}

/// A fresh `x-ms-request-id` value.
pub fn request_id() -> HeaderValue {
    // A UUID is always a valid header value.
    HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).unwrap_or(HeaderValue::from_static(
        "00000000-0000-0000-0000-000000000000",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_from_host_or_fallback() {
        let mut headers = HeaderMap::new();
        let uri: Uri = "/x".parse().unwrap();
        assert_eq!(request_base_url(&uri, &headers, "https://f"), "https://f");
        headers.insert("host", HeaderValue::from_static("localhost:8443"));
        assert_eq!(
            request_base_url(&uri, &headers, "https://f"),
            "https://localhost:8443"
        );
        headers.insert("host", HeaderValue::from_static("a b"));
        assert_eq!(request_base_url(&uri, &headers, "https://f"), "https://f");
        let uri: Uri = "https://127.0.0.1:9/x".parse().unwrap();
        assert_eq!(
            request_base_url(&uri, &headers, "https://f"),
            "https://127.0.0.1:9"
        );
    }

    #[tokio::test]
    async fn body_limit_is_enforced() {
        assert_eq!(read_body(Body::from("abc"), 3).await.unwrap(), "abc");
        assert_eq!(
            read_body(Body::from("abcd"), 3).await,
            Err(BodyError::TooLarge { limit: 3 })
        );
    }
}
