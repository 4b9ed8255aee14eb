//! The HTTP plumbing the three services share: one reqwest client over rustls (aws-lc-rs) with
//! the [`TrustStore`]'s roots, bounded body reads, and the mapping of transport failures and
//! error answers to [`ErrorKind`] with Azure's `code` and `message`.

use std::time::Duration;

use reqwest::{Response, Url};
use serde::Deserialize;

use crate::error::ErrorKind;
use crate::trust::{TrustError, TrustStore};

/// Largest success body read (release responses are about 15 KiB).
const MAX_BODY: usize = 1 << 20;
/// Largest error body read; the rest is ignored.
const MAX_ERROR_BODY: usize = 64 << 10;
/// Longest Azure error message kept in an error.
const MAX_MESSAGE: usize = 2048;

/// Builds the client used for Entra ID, MAA and Managed HSM.
///
/// Redirects are not followed: none of the three services redirects these requests, and
/// following a 307/308 would re-send the body (the client secret, the attestation token) to
/// whichever host the answer names. A 3xx is an error status instead.
pub fn build_client(trust: &TrustStore, timeout: Duration) -> Result<reqwest::Client, TrustError> {
    let tls = trust.tls_config()?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .timeout(timeout)
        .user_agent(concat!("quarry-azure/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(TrustError::HttpClient)
}

/// The URL without query or fragment, for messages (queries may hold identifiers).
pub(crate) fn shown(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.to_string()
}

/// Classifies a transport failure: certificate and TLS problems need an operator, everything
/// else (refused, reset, timed out) is transient.
pub(crate) fn transport_error(url: &Url, source: reqwest::Error) -> ErrorKind {
    let url = shown(url);
    if is_tls_failure(&source) {
        ErrorKind::Tls { url, source }
    } else {
        ErrorKind::Unreachable { url, source }
    }
}

fn is_tls_failure(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if e.is::<rustls::Error>() {
            return true;
        }
        // `io::Error::source` skips the error it wraps, so descend into it explicitly.
        current = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    false
}

/// Reads a body of at most `limit` bytes.
async fn read_limited(
    url: &Url,
    mut response: Response,
    limit: usize,
) -> Result<(Vec<u8>, bool), ErrorKind> {
    let mut body = Vec::new();
    let mut truncated = false;
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport_error(url, e))?
    {
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            truncated = true;
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, truncated))
}

/// Reads a success body as JSON of type `T`.
pub(crate) async fn json_body<T: for<'de> Deserialize<'de>>(
    url: &Url,
    response: Response,
    what: &'static str,
) -> Result<T, ErrorKind> {
    let (body, truncated) = read_limited(url, response, MAX_BODY).await?;
    if truncated {
        return Err(ErrorKind::Malformed {
            what,
            detail: format!("body larger than {MAX_BODY} bytes"),
        });
    }
    serde_json::from_slice(&body).map_err(|e| ErrorKind::Malformed {
        what,
        detail: e.to_string(),
    })
}

/// Turns an error answer into [`ErrorKind::Status`], taking `code` and `message` from the
/// Key Vault / MAA shape `{"error":{"code","message"}}` or the Entra ID shape
/// `{"error","error_description"}`.
pub(crate) async fn status_error(url: &Url, response: Response) -> ErrorKind {
    let status = response.status().as_u16();
    let body = match read_limited(url, response, MAX_ERROR_BODY).await {
        Ok((body, _)) => body,
        Err(_) => Vec::new(),
    };
    let (code, message) = azure_error(&body);
    ErrorKind::Status {
        url: shown(url),
        status,
        code,
        message,
    }
}

/// `(code, message)` of an Azure error body.
pub(crate) fn azure_error(body: &[u8]) -> (Option<String>, Option<String>) {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Body {
        Nested {
            error: Nested,
        },
        Entra {
            error: String,
            error_description: Option<String>,
        },
    }
    #[derive(Deserialize)]
    struct Nested {
        code: Option<String>,
        message: Option<String>,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(Body::Nested { error }) => (error.code.map(clean), error.message.map(clean)),
        Ok(Body::Entra {
            error,
            error_description,
        }) => (Some(clean(error)), error_description.map(clean)),
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            (None, (!text.is_empty()).then(|| clean(text.to_owned())))
        }
    }
}

/// Keeps a service-provided text printable and bounded.
fn clean(text: String) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_MESSAGE)
        .collect();
    if text.chars().count() > MAX_MESSAGE {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_key_vault_and_entra_error_shapes() {
        let kv = br#"{"error":{"code":"AccessDenied","message":"policy not satisfied"}}"#;
        assert_eq!(
            azure_error(kv),
            (
                Some("AccessDenied".into()),
                Some("policy not satisfied".into())
            )
        );
        let entra = br#"{"error":"invalid_client","error_description":"AADSTS7000215: bad",
                          "error_codes":[7000215]}"#;
        assert_eq!(
            azure_error(entra),
            (
                Some("invalid_client".into()),
                Some("AADSTS7000215: bad".into())
            )
        );
        assert_eq!(azure_error(b""), (None, None));
        assert_eq!(
            azure_error(b"Service\nUnavailable"),
            (None, Some("Service Unavailable".into()))
        );
    }

    #[test]
    fn shown_url_drops_the_query() {
        let url = Url::parse("https://h.example/keys/k/release?api-version=7.4").unwrap();
        assert_eq!(shown(&url), "https://h.example/keys/k/release");
    }
}
