//! HTTPS calls to the Coordinator's Client API v2 and the JSend envelope.
//!
//! Every call goes through a [`Client`] built for one trust decision (see [`crate::tls`]). A
//! `success` answer yields its `data`; `fail` and `error` answers become exit 1 with the
//! Coordinator's message; a refused connection, a TLS failure or a server that does not speak
//! JSend is exit 4; a server that presents another certificate than the pinned one is exit 5.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde_json::Value;

use crate::failure::{Failure, Result};
use crate::tls::{self, AuthRequested, ClientIdentity, CoordinatorVerifier, Presented};

/// The Client API port MarbleRun's Coordinator uses when an address has none.
pub const DEFAULT_PORT: u16 = 4433;

/// Longest a request may take (recovery and manifest set include RSA key generation).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// A Coordinator address: `host:port`, `host` (port 4433), or `https://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    host: String,
    port: u16,
}

impl Address {
    /// `https://host:port`.
    pub fn base_url(&self) -> String {
        format!("https://{}:{}", self.host, self.port)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl FromStr for Address {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let rest = s
            .strip_prefix("https://")
            .unwrap_or(s)
            .trim_end_matches('/');
        if rest.is_empty() || rest.contains('/') || rest.contains("://") {
            return Err(format!("{s:?} is not host:port"));
        }
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (host, after) = inner
                .split_once(']')
                .ok_or_else(|| format!("{s:?}: unclosed [ in the address"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(format!("{s:?} is not host:port")),
            };
            (format!("[{host}]"), port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, _)) if h.contains(':') => {
                    return Err(format!("{s:?}: write an IPv6 address as [addr]:port"));
                }
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (rest.to_owned(), None),
            }
        };
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| format!("{s:?}: port {p:?} is not a number from 0 to 65535"))?,
            None => DEFAULT_PORT,
        };
        if host.is_empty() || host == "[]" {
            return Err(format!("{s:?} has no host"));
        }
        Ok(Self { host, port })
    }
}

/// A client for one Coordinator with one trust decision.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    address: Address,
    presented: Presented,
    pinned: Option<Vec<u8>>,
    requested: AuthRequested,
    has_identity: bool,
}

impl Client {
    /// A client that accepts only the pinned root certificate `root_der`.
    pub fn pinned(
        address: &Address,
        root_der: Vec<u8>,
        identity: Option<ClientIdentity>,
    ) -> Result<Self> {
        let presented = Presented::default();
        let verifier = CoordinatorVerifier::pinned(root_der.clone(), presented.clone());
        Self::build(address, verifier, identity, presented, Some(root_der))
    }

    /// A client for `GET /api/v2/status` alone: it accepts any certificate, so that the status
    /// of a Coordinator that presents another certificate than the pinned `root_der` (one in
    /// recovery mode, or waiting for a key release, serves a temporary one) can still be read.
    /// Whether the pin held is [`Client::pin_mismatch`]; when it did not, nothing the connection
    /// returned may be trusted, and nothing but the status (which carries no secret) may be
    /// sent over it.
    pub fn status_probe(address: &Address, root_der: Vec<u8>) -> Result<Self> {
        let presented = Presented::default();
        let verifier = CoordinatorVerifier::unverified(presented.clone());
        Self::build(address, verifier, None, presented, Some(root_der))
    }

    /// A client that accepts any certificate and records it (quote fetch, `--insecure`).
    pub fn unverified(address: &Address, identity: Option<ClientIdentity>) -> Result<Self> {
        let presented = Presented::default();
        let verifier = CoordinatorVerifier::unverified(presented.clone());
        Self::build(address, verifier, identity, presented, None)
    }

    fn build(
        address: &Address,
        verifier: CoordinatorVerifier,
        identity: Option<ClientIdentity>,
        presented: Presented,
        pinned: Option<Vec<u8>>,
    ) -> Result<Self> {
        let requested = AuthRequested::default();
        let has_identity = identity.is_some();
        let config = tls::client_config(verifier, identity, requested.clone())
            .map_err(|e| Failure::invalid(format!("tls client configuration: {e}")))?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(config)
            .timeout(REQUEST_TIMEOUT)
            // The Client API never redirects; following one would reach a server whose
            // certificate the caller did not see (the status probe compares only the last).
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| Failure::invalid(format!("http client: {}", chain(&e))))?;
        Ok(Self {
            http,
            address: address.clone(),
            presented,
            pinned,
            requested,
            has_identity,
        })
    }

    /// The address.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The certificate the server presented in the last handshake.
    pub fn presented_certificate(&self) -> Option<Vec<u8>> {
        self.presented.get()
    }

    /// `GET path` (with the query already in `path`); the `data` of a success.
    pub async fn get(&self, path: &str) -> Result<Value> {
        let url = format!("{}{path}", self.address.base_url());
        let response = self.http.get(&url).send().await;
        self.finish("GET", path, response).await
    }

    /// `POST path` with a JSON body (or none); the `data` of a success.
    pub async fn post(&self, path: &str, body: Option<&Value>) -> Result<Value> {
        let url = format!("{}{path}", self.address.base_url());
        let mut request = self.http.post(&url);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await;
        self.finish("POST", path, response).await
    }

    async fn finish(
        &self,
        method: &str,
        path: &str,
        response: reqwest::Result<reqwest::Response>,
    ) -> Result<Value> {
        let response = response.map_err(|e| self.transport_failure(&e))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport_failure(&e))?;
        let not_coordinator = || {
            // Only the Coordinator's APIs of these ask for a client certificate.
            let hint = if self.requested.get() {
                format!(" ({})", self.marble_api_hint())
            } else {
                String::new()
            };
            Failure::connection(format!(
                "{} is not a Quarry or MarbleRun Client API: {method} {path} answered {status} \
                 without a JSend body{hint}",
                self.address
            ))
        };
        let envelope: Value = serde_json::from_slice(&body).map_err(|_| not_coordinator())?;
        let Some(kind) = envelope.get("status").and_then(Value::as_str) else {
            return Err(not_coordinator());
        };
        if status.is_success() && kind == "success" {
            return Ok(envelope.get("data").cloned().unwrap_or(Value::Null));
        }
        let message = envelope
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("no message");
        let mut failure = Failure::invalid(format!(
            "the coordinator refused {method} {path} ({status}): {message}"
        ));
        failure.data = envelope.get("data").filter(|d| !d.is_null()).cloned();
        Err(failure)
    }

    /// The failure to report when a certificate other than the pinned root was presented:
    /// exit 5 with both fingerprints.
    pub fn pin_mismatch(&self) -> Option<Failure> {
        let (pinned, presented) = (self.pinned.as_ref()?, self.presented.get()?);
        if &presented == pinned {
            return None;
        }
        Some(Failure::identity(format!(
            "the coordinator at {} presented certificate sha256:{}, not the pinned root \
             sha256:{}",
            self.address,
            sha256_hex(&presented),
            sha256_hex(pinned)
        )))
    }

    /// Whether the server asked for a client certificate in a handshake.
    pub fn client_auth_requested(&self) -> bool {
        self.requested.get()
    }

    /// The hint for an address that looks like the Marble API rather than the Client API.
    pub fn marble_api_hint(&self) -> String {
        format!(
            "is {} the Marble API? the Client API is usually on port {DEFAULT_PORT}",
            self.address
        )
    }

    fn transport_failure(&self, e: &reqwest::Error) -> Failure {
        if let Some(mismatch) = self.pin_mismatch() {
            return Failure::identity(format!(
                "{}; it was reinstalled, recovered with a new manifest, or is not the same \
                 coordinator (verify it again, see --trust-new-coordinator)",
                mismatch.message
            ));
        }
        let what = if e.is_timeout() {
            "timed out"
        } else {
            "failed"
        };
        // The Client API asks for a client certificate but does without one; the Marble API
        // insists, so a failure after such a request, made without one, points there.
        let hint = if self.requested.get() && !self.has_identity {
            format!(" ({})", self.marble_api_hint())
        } else {
            String::new()
        };
        Failure::connection(format!(
            "connection to {} {what}: {}{hint}",
            self.address,
            chain(e)
        ))
    }
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes))
}

/// An error and its sources, joined with `: `, without repeats.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses() {
        let a: Address = "localhost:4433".parse().unwrap();
        assert_eq!(a.base_url(), "https://localhost:4433");
        let a: Address = "https://127.0.0.1:1234/".parse().unwrap();
        assert_eq!(a.to_string(), "127.0.0.1:1234");
        let a: Address = "[::1]:5".parse().unwrap();
        assert_eq!(a.base_url(), "https://[::1]:5");
        let a: Address = "coordinator".parse().unwrap();
        assert_eq!(a.to_string(), "coordinator:4433");
        assert!("host:99999".parse::<Address>().is_err());
        assert!("::1:5".parse::<Address>().is_err());
        assert!("http://x/y".parse::<Address>().is_err());
    }
}
