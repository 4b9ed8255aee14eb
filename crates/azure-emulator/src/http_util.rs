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

/// Reads a request body of at most `limit` bytes.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            || e.to_string().contains("length limit");
        if too_large {
            BodyError::TooLarge { limit }
        } else {
            BodyError::Read(e.to_string())
        }
    })
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
