//! Microsoft Azure Attestation: `POST {maa}/attest/SgxEnclave?api-version=2022-08-01` with the
//! quote and the wrapping key's JWK set as JSON runtime data, so that MAA copies the set into
//! the token's `x-ms-runtime` claim where Managed HSM looks for the wrapping key.
//!
//! The client does not verify the MAA token: Managed HSM does that against the release policy's
//! authority, and the client's trust rests on the signed release response instead.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Url;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::ErrorKind;
use crate::http::{json_body, shown, status_error, transport_error};

/// The MAA api-version used.
pub const MAA_API_VERSION: &str = "2022-08-01";

/// An attestation token (a JWT). `Debug` prints the type name only; zeroed on drop.
#[derive(Clone)]
pub struct MaaToken(Zeroizing<String>);

impl MaaToken {
    /// Wraps a token.
    pub fn new(token: String) -> Self {
        Self(Zeroizing::new(token))
    }

    /// The compact JWT.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for MaaToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MaaToken(..)")
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AttestRequest<'a> {
    quote: String,
    runtime_data: RuntimeData<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RuntimeData<'a> {
    data: String,
    data_type: &'a str,
}

#[derive(Deserialize)]
struct AttestResponse {
    token: Zeroizing<String>,
}

/// The attestation URL of an MAA instance.
pub fn attest_url(maa_url: &Url) -> Result<Url, ErrorKind> {
    maa_url
        .join(&format!("attest/SgxEnclave?api-version={MAA_API_VERSION}"))
        .map_err(|e| ErrorKind::Malformed {
            what: "maa url",
            detail: e.to_string(),
        })
}

/// Attests `quote` with `runtime_json` (the exact bytes whose SHA-256 starts the quote's report
/// data) as JSON runtime data; returns the token.
pub async fn attest(
    http: &reqwest::Client,
    maa_url: &Url,
    quote: &[u8],
    runtime_json: &[u8],
) -> Result<MaaToken, ErrorKind> {
    let url = attest_url(maa_url)?;
    let body = AttestRequest {
        quote: URL_SAFE_NO_PAD.encode(quote),
        runtime_data: RuntimeData {
            data: URL_SAFE_NO_PAD.encode(runtime_json),
            data_type: "JSON",
        },
    };
    tracing::debug!(url = %shown(&url), quote_len = quote.len(), "attesting");
    let response = http
        .post(url.clone())
        .json(&body)
        .send()
        .await
        .map_err(|e| transport_error(&url, e))?;
    if !response.status().is_success() {
        return Err(status_error(&url, response).await);
    }
    let answer: AttestResponse = json_body(&url, response, "attestation response").await?;
    if answer.token.split('.').count() != 3 {
        return Err(ErrorKind::Malformed {
            what: "attestation response",
            detail: "token is not a compact JWT".into(),
        });
    }
    Ok(MaaToken(Zeroizing::new(answer.token.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attest_url_keeps_instance_and_sets_api_version() {
        let url =
            attest_url(&Url::parse("https://shareduks.uks.attest.azure.net").unwrap()).unwrap();
        assert_eq!(
            url.as_str(),
            "https://shareduks.uks.attest.azure.net/attest/SgxEnclave?api-version=2022-08-01"
        );
    }

    #[test]
    fn request_uses_json_runtime_data_in_base64url() {
        let body = AttestRequest {
            quote: URL_SAFE_NO_PAD.encode([0xfb, 0xff]),
            runtime_data: RuntimeData {
                data: URL_SAFE_NO_PAD.encode(b"{}"),
                data_type: "JSON",
            },
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"quote":"-_8","runtimeData":{"data":"e30","dataType":"JSON"}}"#
        );
    }

    #[test]
    fn token_debug_hides_the_token() {
        assert_eq!(
            format!("{:?}", MaaToken::new("eyJ.x.y".into())),
            "MaaToken(..)"
        );
    }
}
