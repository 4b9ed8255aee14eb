//! The release pipeline: wrapping key, access token, quote, attestation, release, verification,
//! unwrap.
//!
//! The RSA wrapping key is generated on a blocking thread while the token request is in flight,
//! and the token request overlaps the quote and the attestation too ([`Pipeline::Overlapped`]);
//! [`Pipeline::Sequential`] exists to measure what that saves. Each network step retries
//! transient failures within the [`RetryPolicy`]; the first 401 of Key Vault's challenge
//! protocol makes the client fetch a fresh token and try once more, and is not an error.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use quarry_enclave::Enclave;
use reqwest::{StatusCode, Url};
use rustls_pki_types::UnixTime;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::config::{SkrConfig, is_key_version};
use crate::credential::TokenProvider;
use crate::error::{ErrorKind, SkrError, Step};
use crate::http::{build_client, json_body, shown, status_error, transport_error};
use crate::maa::{MaaToken, attest};
use crate::retry::{Clock, RetryPolicy};
use crate::trust::{TrustError, TrustStore};
use crate::verify::{Expected, verify_release};
use crate::wrapping::{WrapAlgorithm, WrappingKey, WrappingKeySize};

/// The Key Vault api-version of the release call.
pub const KEY_VAULT_API_VERSION: &str = "7.4";
/// The mechanism Quarry asks Managed HSM to wrap the key with.
pub const RELEASE_ENC: WrapAlgorithm = WrapAlgorithm::RsaAesKeyWrap384;
/// The size of the key Quarry seals with: an AES-256 (`oct`, 256-bit) key.
pub const RELEASED_KEY_LEN: usize = 32;

/// Whether the key generation overlaps the network calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pipeline {
    /// Token request in parallel with key generation, quote and attestation.
    #[default]
    Overlapped,
    /// One step after the other (for measurements).
    Sequential,
}

/// Tunables of the client.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Retries of transient failures within one release.
    pub retry: RetryPolicy,
    /// The clock for token expiry and certificate validity.
    pub clock: Clock,
    /// The wrapping key's size.
    pub wrapping_key_size: WrappingKeySize,
    /// Timeout of each HTTP request.
    pub timeout: Duration,
    /// How the steps are scheduled.
    pub pipeline: Pipeline,
    /// The trusted roots; `None` means the built-in roots plus the configured CA file.
    pub trust: Option<TrustStore>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            clock: Clock::system(),
            wrapping_key_size: WrappingKeySize::default(),
            timeout: Duration::from_secs(30),
            pipeline: Pipeline::default(),
            trust: None,
        }
    }
}

/// A released AES-256 key and which key version it is. Zeroed on drop; `Debug` prints the type
/// name only.
pub struct ReleasedKey {
    key: Zeroizing<[u8; RELEASED_KEY_LEN]>,
    key_id: String,
    version: String,
}

impl ReleasedKey {
    /// The key bytes.
    pub fn key(&self) -> &[u8; RELEASED_KEY_LEN] {
        &self.key
    }

    /// The key's full id, `https://{host}/keys/{name}/{version}`.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The key version that was released (record it to ask for the same one later).
    pub fn version(&self) -> &str {
        &self.version
    }
}

impl fmt::Debug for ReleasedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReleasedKey(..)")
    }
}

/// The Secure Key Release client for one configured key.
pub struct SkrClient {
    config: SkrConfig,
    http: reqwest::Client,
    tokens: TokenProvider,
    trust: TrustStore,
    enclave: Arc<dyn Enclave>,
    options: ClientOptions,
}

impl fmt::Debug for SkrClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SkrClient")
            .field("vault", &self.config.vault_url.as_str())
            .field("key", &self.config.key_name)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct ReleaseBody<'a> {
    target: &'a str,
    enc: &'a str,
    nonce: &'a str,
}

#[derive(Deserialize)]
struct ReleaseAnswer {
    value: String,
}

impl SkrClient {
    /// A client with default options.
    pub fn new(config: SkrConfig, enclave: Arc<dyn Enclave>) -> Result<Self, TrustError> {
        Self::with_options(config, enclave, ClientOptions::default())
    }

    /// A client with `options`.
    pub fn with_options(
        config: SkrConfig,
        enclave: Arc<dyn Enclave>,
        options: ClientOptions,
    ) -> Result<Self, TrustError> {
        let trust = match &options.trust {
            Some(trust) => trust.clone(),
            None => TrustStore::system_with(config.ca_file.as_deref())?,
        };
        let http = build_client(&trust, options.timeout)?;
        let tokens = TokenProvider::new(
            http.clone(),
            config.credential.clone(),
            config.authority_host.clone(),
            config.scope(),
            options.clock.clone(),
            options.retry,
        );
        Ok(Self {
            config,
            http,
            tokens,
            trust,
            enclave,
            options,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SkrConfig {
        &self.config
    }

    /// The token provider (shared cache).
    pub fn tokens(&self) -> &TokenProvider {
        &self.tokens
    }

    /// Releases the key: `version` if given, else the configured version, else the latest.
    pub async fn release(&self, version: Option<&str>) -> Result<ReleasedKey, SkrError> {
        let version = version.or(self.config.key_version.as_deref());
        if let Some(v) = version
            && !is_key_version(v)
        {
            return Err(SkrError::new(
                Step::Release,
                ErrorKind::Malformed {
                    what: "key version",
                    detail: format!("{v:?} is not 32 hexadecimal characters"),
                },
            ));
        }

        let (wrapping, maa_token) = match self.options.pipeline {
            Pipeline::Overlapped => {
                let (_, attested) = tokio::try_join!(self.tokens.token(), self.attested_key())?;
                attested
            }
            Pipeline::Sequential => {
                let key = self.generate_key().await?;
                self.tokens.token().await?;
                let token = self.attest_key(&key).await?;
                (key, token)
            }
        };

        let nonce = new_nonce().map_err(|kind| SkrError::new(Step::Release, kind))?;
        let jws = self.request_release(version, &maa_token, &nonce).await?;
        drop(maa_token);

        let expected = Expected {
            host: self.config.vault_host(),
            key_name: &self.config.key_name,
            key_version: version,
            nonce: Some(&nonce),
            enc: RELEASE_ENC,
            wrapping_kid: Some(wrapping.kid()),
        };
        let now = unix_time(&self.options.clock);
        let verified = verify_release(&jws, &expected, &self.trust, now)
            .map_err(|kind| SkrError::new(Step::Verification, kind))?;
        let unwrap_err = |kind| SkrError::new(Step::Unwrap, kind);
        let key = wrapping
            .unwrap(RELEASE_ENC, &verified.ciphertext)
            .map_err(unwrap_err)?;
        drop(wrapping);

        if !matches!(verified.kty.as_str(), "oct" | "oct-HSM") {
            return Err(unwrap_err(ErrorKind::WrongKeyType { kty: verified.kty }));
        }
        let key: [u8; RELEASED_KEY_LEN] = key.as_slice().try_into().map_err(|_| {
            unwrap_err(ErrorKind::WrongKeySize {
                len: key.len(),
                expected: RELEASED_KEY_LEN,
            })
        })?;
        tracing::debug!(key_id = %verified.key_id, "key released");
        Ok(ReleasedKey {
            key: Zeroizing::new(key),
            key_id: verified.key_id,
            version: verified.version,
        })
    }

    /// Generates the wrapping key on a blocking thread.
    pub async fn generate_key(&self) -> Result<WrappingKey, SkrError> {
        let size = self.options.wrapping_key_size;
        tokio::task::spawn_blocking(move || WrappingKey::generate(size))
            .await
            .map_err(|_| SkrError::new(Step::KeyGeneration, ErrorKind::Task("key generation")))?
            .map_err(|kind| SkrError::new(Step::KeyGeneration, kind))
    }

    async fn attested_key(&self) -> Result<(WrappingKey, MaaToken), SkrError> {
        let key = self.generate_key().await?;
        let token = self.attest_key(&key).await?;
        Ok((key, token))
    }

    /// Quotes the key's report data and attests the quote with MAA.
    pub async fn attest_key(&self, key: &WrappingKey) -> Result<MaaToken, SkrError> {
        let report_data = key.report_data();
        let quote = self
            .options
            .retry
            .run("quote", || {
                let enclave = Arc::clone(&self.enclave);
                async move {
                    tokio::task::spawn_blocking(move || enclave.quote(&report_data))
                        .await
                        .map_err(|_| SkrError::new(Step::Quote, ErrorKind::Task("quote")))?
                        .map_err(|e| SkrError::new(Step::Quote, ErrorKind::Enclave(e)))
                }
            })
            .await?;
        self.options
            .retry
            .run("attestation", || async {
                attest(&self.http, &self.config.maa_url, &quote, key.jwk_set_json())
                    .await
                    .map_err(|kind| SkrError::new(Step::Attestation, kind))
            })
            .await
    }

    /// Sends the release request, with retries and the challenge protocol; returns the JWS.
    pub async fn request_release(
        &self,
        version: Option<&str>,
        target: &MaaToken,
        nonce: &str,
    ) -> Result<String, SkrError> {
        let err = |kind| SkrError::new(Step::Release, kind);
        let path = match version {
            Some(v) => format!("keys/{}/{v}/release", self.config.key_name),
            None => format!("keys/{}/release", self.config.key_name),
        };
        let mut url = self.config.vault_url.join(&path).map_err(|e| {
            err(ErrorKind::Malformed {
                what: "release url",
                detail: e.to_string(),
            })
        })?;
        url.query_pairs_mut()
            .append_pair("api-version", KEY_VAULT_API_VERSION);
        let body = ReleaseBody {
            target: target.expose(),
            enc: RELEASE_ENC.as_str(),
            nonce,
        };

        self.options
            .retry
            .run("release", || self.release_once(&url, &body))
            .await
    }

    async fn release_once(&self, url: &Url, body: &ReleaseBody<'_>) -> Result<String, SkrError> {
        let err = |kind| SkrError::new(Step::Release, kind);
        let mut renewed = false;
        loop {
            let token = self.tokens.token().await?;
            tracing::debug!(url = %shown(url), "requesting key release");
            let response = self
                .http
                .post(url.clone())
                .bearer_auth(token.expose())
                .json(body)
                .send()
                .await
                .map_err(|e| err(transport_error(url, e)))?;
            drop(token);

            if response.status() == StatusCode::UNAUTHORIZED {
                let challenge = response
                    .headers()
                    .get(reqwest::header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                if !renewed {
                    // Key Vault's challenge protocol: the token was not accepted (expired,
                    // revoked, or the vault wants to announce itself). Renew once.
                    tracing::debug!(url = %shown(url), "vault sent a challenge; renewing token");
                    self.tokens.invalidate().await;
                    renewed = true;
                    continue;
                }
                return Err(err(ErrorKind::Unauthorized {
                    url: shown(url),
                    challenge,
                }));
            }
            if !response.status().is_success() {
                return Err(err(status_error(url, response).await));
            }
            let answer: ReleaseAnswer = json_body(url, response, "release response")
                .await
                .map_err(err)?;
            return Ok(answer.value);
        }
    }
}

/// A fresh 128-bit nonce, base64url.
fn new_nonce() -> Result<String, ErrorKind> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| ErrorKind::Crypto("nonce generation"))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

fn unix_time(clock: &Clock) -> UnixTime {
    let since = clock
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    UnixTime::since_unix_epoch(since)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_fresh() {
        let a = new_nonce().unwrap();
        assert_eq!(a.len(), 22);
        assert_ne!(a, new_nonce().unwrap());
    }

    #[test]
    fn released_key_debug_hides_everything() {
        let key = ReleasedKey {
            key: Zeroizing::new([0x5a; 32]),
            key_id: "https://h/keys/k/v".into(),
            version: "v".into(),
        };
        assert_eq!(format!("{key:?}"), "ReleasedKey(..)");
    }
}
