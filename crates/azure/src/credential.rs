//! Access tokens for Managed HSM: client secret, federated token file (workload identity) or
//! managed identity, cached and renewed before they expire.
//!
//! The scope comes from the vault URL's cloud ([`crate::cloud`]), the authority from the
//! configuration. The federated token file is read again at every renewal, so rotated projected
//! tokens are picked up. Tokens live in [`AccessToken`], which is zeroed on drop and never
//! printed.

use std::fmt;
use std::time::{Duration, SystemTime};

use reqwest::Url;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::cloud::resource_of_scope;
use crate::config::CredentialConfig;
use crate::error::{ErrorKind, SkrError, Step};
use crate::http::{json_body, status_error, transport_error};
use crate::retry::{Clock, RetryPolicy};

/// An OAuth 2.0 access token. Zeroed on drop; `Debug` prints the type name only.
#[derive(Clone)]
pub struct AccessToken(Zeroizing<String>);

impl AccessToken {
    /// Wraps a token.
    pub fn new(token: String) -> Self {
        Self(Zeroizing::new(token))
    }

    /// The token, for the `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(..)")
    }
}

/// Longest time before expiry at which a cached token is renewed.
const RENEW_MARGIN: Duration = Duration::from_secs(300);

struct Cached {
    token: AccessToken,
    renew_at: SystemTime,
}

/// Fetches and caches access tokens for one scope.
pub struct TokenProvider {
    http: reqwest::Client,
    credential: CredentialConfig,
    authority_host: Url,
    scope: &'static str,
    clock: Clock,
    retry: RetryPolicy,
    cache: tokio::sync::Mutex<Option<Cached>>,
}

impl fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenProvider")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl TokenProvider {
    /// A provider for `scope` with `credential`.
    pub fn new(
        http: reqwest::Client,
        credential: CredentialConfig,
        authority_host: Url,
        scope: &'static str,
        clock: Clock,
        retry: RetryPolicy,
    ) -> Self {
        Self {
            http,
            credential,
            authority_host,
            scope,
            clock,
            retry,
            cache: Default::default(),
        }
    }

    /// A valid token: the cached one unless it is due for renewal, else a new one.
    pub async fn token(&self) -> Result<AccessToken, SkrError> {
        let mut cache = self.cache.lock().await;
        if let Some(cached) = cache.as_ref()
            && self.clock.now() < cached.renew_at
        {
            return Ok(cached.token.clone());
        }
        let (token, lifetime) = self.retry.run("token", || self.fetch()).await?;
        let renew_in = lifetime.saturating_sub(RENEW_MARGIN.min(lifetime / 2));
        *cache = Some(Cached {
            token: token.clone(),
            renew_at: self.clock.now() + renew_in,
        });
        Ok(token)
    }

    /// Forgets the cached token (after the vault refused it).
    pub async fn invalidate(&self) {
        *self.cache.lock().await = None;
    }

    /// Requests a new token from the service, once; returns it and its lifetime.
    pub async fn fetch(&self) -> Result<(AccessToken, Duration), SkrError> {
        let err = |kind| SkrError::new(Step::Token, kind);
        let (url, request) = match &self.credential {
            CredentialConfig::ClientSecret {
                tenant_id,
                client_id,
                secret,
            } => {
                let url = self.token_url(tenant_id).map_err(err)?;
                let form = [
                    ("client_id", client_id.as_str()),
                    ("client_secret", secret.expose()),
                    ("grant_type", "client_credentials"),
                    ("scope", self.scope),
                ];
                let request = self.http.post(url.clone()).form(&form);
                (url, request)
            }
            CredentialConfig::FederatedTokenFile {
                tenant_id,
                client_id,
                path,
            } => {
                let url = self.token_url(tenant_id).map_err(err)?;
                let assertion = Zeroizing::new(
                    std::fs::read_to_string(path)
                        .map_err(|source| {
                            err(ErrorKind::FederatedTokenFile {
                                path: path.clone(),
                                source,
                            })
                        })?
                        .trim()
                        .to_owned(),
                );
                let form = [
                    ("client_assertion", assertion.as_str()),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_id", client_id.as_str()),
                    ("grant_type", "client_credentials"),
                    ("scope", self.scope),
                ];
                let request = self.http.post(url.clone()).form(&form);
                (url, request)
            }
            CredentialConfig::ManagedIdentity {
                endpoint,
                client_id,
            } => {
                let mut query = vec![
                    ("api-version", "2018-02-01"),
                    ("resource", resource_of_scope(self.scope)),
                ];
                if let Some(id) = client_id {
                    query.push(("client_id", id.as_str()));
                }
                let request = self
                    .http
                    .get(endpoint.clone())
                    .query(&query)
                    .header("Metadata", "true");
                (endpoint.clone(), request)
            }
        };

        tracing::debug!(url = %crate::http::shown(&url), scope = self.scope, "requesting access token");
        let response = request
            .send()
            .await
            .map_err(|e| err(transport_error(&url, e)))?;
        if !response.status().is_success() {
            return Err(err(status_error(&url, response).await));
        }
        let body: TokenResponse = json_body(&url, response, "token response")
            .await
            .map_err(err)?;
        body.into_token().map_err(err)
    }

    fn token_url(&self, tenant_id: &str) -> Result<Url, ErrorKind> {
        self.authority_host
            .join(&format!("{tenant_id}/oauth2/v2.0/token"))
            .map_err(|e| ErrorKind::Malformed {
                what: "token endpoint",
                detail: e.to_string(),
            })
    }
}

/// A token answer of Entra ID (numbers) or a managed-identity endpoint (strings).
#[derive(Deserialize)]
struct TokenResponse {
    access_token: Zeroizing<String>,
    token_type: Option<String>,
    expires_in: Option<NumberOrString>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrString {
    Number(u64),
    String(String),
}

impl TokenResponse {
    fn into_token(self) -> Result<(AccessToken, Duration), ErrorKind> {
        let malformed = |detail: &str| ErrorKind::Malformed {
            what: "token response",
            detail: detail.to_owned(),
        };
        if let Some(kind) = &self.token_type
            && !kind.eq_ignore_ascii_case("bearer")
        {
            return Err(malformed(&format!("token_type {kind:?}, expected Bearer")));
        }
        if self.access_token.is_empty() {
            return Err(malformed("empty access_token"));
        }
        let seconds = match &self.expires_in {
            Some(NumberOrString::Number(n)) => *n,
            Some(NumberOrString::String(s)) => s
                .parse()
                .map_err(|_| malformed(&format!("expires_in {s:?} is not a number")))?,
            None => return Err(malformed("missing expires_in")),
        };
        Ok((
            AccessToken(Zeroizing::new(self.access_token.to_string())),
            Duration::from_secs(seconds),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_response_accepts_numbers_and_strings() {
        let entra: TokenResponse = serde_json::from_str(
            r#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"t"}"#,
        )
        .unwrap();
        assert_eq!(entra.into_token().unwrap().1, Duration::from_secs(3599));
        let imds: TokenResponse = serde_json::from_str(
            r#"{"access_token":"t","expires_in":"86399","token_type":"Bearer","resource":"r"}"#,
        )
        .unwrap();
        assert_eq!(imds.into_token().unwrap().1, Duration::from_secs(86399));
    }

    #[test]
    fn token_response_refuses_other_types() {
        let mac: TokenResponse =
            serde_json::from_str(r#"{"token_type":"mac","expires_in":1,"access_token":"t"}"#)
                .unwrap();
        assert!(matches!(mac.into_token(), Err(ErrorKind::Malformed { .. })));
    }

    #[test]
    fn access_token_debug_hides_the_token() {
        let token = AccessToken::new("eyJ-secret-token".into());
        assert_eq!(format!("{token:?}"), "AccessToken(..)");
    }
}
