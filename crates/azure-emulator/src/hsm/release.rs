//! Secure Key Release: validation of the attestation token, evaluation of the key's release
//! policy, choice of the wrapping key, and the signed response.
//!
//! The token (`target`) must be an RS256 JWT whose issuer the emulator knows: its signing keys
//! are looked up in the emulator's own table of attestation authorities, never fetched over the
//! network. It must be inside its `nbf`..`exp` window (with [`CLOCK_SKEW_SECS`] of tolerance).
//! Its claims must satisfy the policy — the authority is the token's `iss` — and its
//! `x-ms-runtime.keys` must hold an RSA key marked for encryption. The response is a compact
//! JWS shaped as the real service's: header `alg`, `kid`, `x5c`, `x5t#S256` (in that order,
//! `kid` = `x5t#S256` = base64url SHA-256 of the leaf), payload members in alphabetical order,
//! `request` echoing `api-version`, `enc`, `kid` and `nonce`, never the token.

use std::fmt;

use aws_lc_rs::digest;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::HsmError;
use super::keys::KeyVersion;
use super::wrap::{self, ReleaseEnc, WrappingKey};
use crate::jose::{JwkKey, RsaSigningKey, UnverifiedJwt, b64std, b64url, b64url_decode, sign_jwt};

/// Tolerance on the token's `exp` and `nbf`, in seconds.
pub const CLOCK_SKEW_SECS: i64 = 300;

/// The signing keys an attestation authority publishes, by `kid`; `None` for an issuer the
/// emulator does not know.
pub type IssuerKeys<'a> = &'a dyn Fn(&str) -> Option<Vec<(String, JwkKey)>>;

/// Body of `POST …/release`.
#[derive(Clone, Default, Deserialize)]
pub struct ReleaseParams {
    /// The attestation token.
    #[serde(default)]
    pub target: Option<String>,
    /// A value echoed in the response.
    #[serde(default)]
    pub nonce: Option<String>,
    /// The wrapping algorithm.
    #[serde(default)]
    pub enc: Option<String>,
}

impl fmt::Debug for ReleaseParams {
    // The token is a credential of sorts: never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReleaseParams")
            .field("nonce", &self.nonce)
            .field("enc", &self.enc)
            .finish_non_exhaustive()
    }
}

fn not_verified(reason: impl fmt::Display) -> HsmError {
    HsmError::forbidden(format!(
        "Target environment attestation statement cannot be verified: {reason}"
    ))
}

/// Checks the token's signature against its issuer's published keys and its time window;
/// returns its claims.
pub fn validate_token(
    token: &str,
    now: i64,
    issuer_keys: IssuerKeys<'_>,
) -> Result<Value, HsmError> {
    let jwt = UnverifiedJwt::parse(token).map_err(|e| {
        HsmError::bad_parameter(format!(
            "target: the attestation token is not a valid JWT: {e}"
        ))
    })?;
    if jwt.alg() != Some("RS256") {
        return Err(not_verified(format_args!(
            "token algorithm {:?} is not RS256",
            jwt.alg().unwrap_or("")
        )));
    }
    let Some(issuer) = jwt.claim_str("iss") else {
        return Err(not_verified("the token has no issuer (iss)"));
    };
    let Some(keys) = issuer_keys(issuer) else {
        return Err(not_verified(format_args!(
            "issuer {issuer:?} is not a known attestation authority"
        )));
    };
    let candidates: Vec<&JwkKey> = match jwt.kid() {
        Some(kid) => keys
            .iter()
            .filter(|(k, _)| k == kid)
            .map(|(_, key)| key)
            .collect(),
        None => keys.iter().map(|(_, key)| key).collect(),
    };
    if candidates.is_empty() {
        return Err(not_verified(format_args!(
            "issuer {issuer:?} publishes no key with kid {:?}",
            jwt.kid().unwrap_or("")
        )));
    }
    if !candidates.iter().any(|key| jwt.verify(key).is_ok()) {
        return Err(not_verified(format_args!(
            "the token signature does not verify with the keys of issuer {issuer:?}"
        )));
    }

    let Some(exp) = jwt.claim_i64("exp") else {
        return Err(not_verified("the token has no expiry (exp)"));
    };
    if now > exp + CLOCK_SKEW_SECS {
        return Err(not_verified(format_args!(
            "the token expired at {exp} (now {now})"
        )));
    }
    if let Some(nbf) = jwt.claim_i64("nbf")
        && now + CLOCK_SKEW_SECS < nbf
    {
        return Err(not_verified(format_args!(
            "the token is not valid before {nbf} (now {now})"
        )));
    }
    Ok(Value::Object(jwt.claims.clone()))
}

/// The first RSA key in the top-level `x-ms-runtime.keys` marked for encryption (`key_ops`
/// containing `encrypt`, or `use`/`key_use` `enc`), with its `kid`.
pub fn wrapping_key(claims: &Value) -> Result<(String, WrappingKey), HsmError> {
    let keys = claims
        .get("x-ms-runtime")
        .and_then(|r| r.get("keys"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let marked = |k: &&Value| {
        let use_enc = ["use", "key_use"]
            .iter()
            .any(|m| k.get(m).and_then(Value::as_str) == Some("enc"));
        let ops_encrypt = k
            .get("key_ops")
            .and_then(Value::as_array)
            .is_some_and(|ops| ops.iter().any(|op| op.as_str() == Some("encrypt")));
        k.get("kty").and_then(Value::as_str) == Some("RSA") && (use_enc || ops_encrypt)
    };
    let Some(jwk) = keys.iter().find(marked) else {
        return Err(HsmError::bad_parameter(
            "target: the attestation token has no wrapping key: x-ms-runtime.keys holds no RSA \
             key with key_ops containing \"encrypt\" or use \"enc\"",
        ));
    };
    let kid = jwk
        .get("kid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let member = |name: &str| -> Result<Vec<u8>, HsmError> {
        let text = jwk.get(name).and_then(Value::as_str).ok_or_else(|| {
            HsmError::bad_parameter(format!(
                "target: wrapping key {kid:?} has no member {name:?}"
            ))
        })?;
        b64url_decode(text).map_err(|e| {
            HsmError::bad_parameter(format!("target: wrapping key {kid:?} member {name:?}: {e}"))
        })
    };
    let key = WrappingKey::from_components(&member("n")?, &member("e")?).map_err(|e| {
        HsmError::bad_parameter(format!("target: wrapping key {kid:?} is unusable: {e}"))
    })?;
    Ok((kid, key))
}

/// The HSM's release-signing identity: an RSA key and its certificate chain (leaf for the HSM's
/// host name, issuing CA, root). `Debug` hides the key.
pub struct ReleaseSigner {
    key: RsaSigningKey,
    chain: Vec<Vec<u8>>,
    thumbprint: String,
}

impl fmt::Debug for ReleaseSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReleaseSigner")
            .field("x5t#S256", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

impl ReleaseSigner {
    /// A signer from a PKCS#8 RSA key and its chain, leaf first.
    pub fn new(key_pkcs8: &[u8], chain: Vec<Vec<u8>>) -> Result<Self, String> {
        let key = RsaSigningKey::from_pkcs8(key_pkcs8).map_err(|e| e.to_string())?;
        let Some(leaf) = chain.first() else {
            return Err("the release-signing chain is empty".into());
        };
        let thumbprint = b64url(digest::digest(&digest::SHA256, leaf).as_ref());
        Ok(Self {
            key,
            chain,
            thumbprint,
        })
    }

    /// The certificate chain, DER, leaf first.
    pub fn chain(&self) -> &[Vec<u8>] {
        &self.chain
    }

    /// Signs `payload` as the service does.
    pub fn sign(&self, payload: &Map<String, Value>) -> Result<String, HsmError> {
        let mut header = Map::new();
        header.insert("alg".into(), "RS256".into());
        header.insert("kid".into(), self.thumbprint.clone().into());
        header.insert(
            "x5c".into(),
            self.chain
                .iter()
                .map(|c| b64std(c))
                .collect::<Vec<_>>()
                .into(),
        );
        header.insert("x5t#S256".into(), self.thumbprint.clone().into());
        sign_jwt(&header, payload, &self.key).map_err(|e| {
            tracing::error!(error = %e, "signing the release response failed");
            HsmError::internal()
        })
    }
}

/// What the release echoes of the request.
#[derive(Debug, Clone)]
pub struct Echo<'a> {
    /// The request's api-version.
    pub api_version: &'a str,
    /// The effective `enc`.
    pub enc: ReleaseEnc,
    /// The key id as addressed (versionless if the request had no version).
    pub kid: &'a str,
    /// The request's nonce.
    pub nonce: Option<&'a str>,
}

/// Wraps `key` for `kek` and builds the release payload.
pub fn payload(
    echo: &Echo<'_>,
    key: &KeyVersion,
    key_kid: &str,
    kek_kid: &str,
    kek: &WrappingKey,
) -> Result<Map<String, Value>, HsmError> {
    let ciphertext = wrap::wrap(kek, echo.enc, key.material.as_bytes())?;
    let mut header = Map::new();
    header.insert("alg".into(), "dir".into());
    header.insert("enc".into(), echo.enc.as_str().into());
    header.insert("kid".into(), kek_kid.into());
    let mut blob = Map::new();
    blob.insert("ciphertext".into(), b64url(&ciphertext).into());
    blob.insert("header".into(), Value::Object(header));
    blob.insert("schema_version".into(), "1.0".into());
    let key_hsm = b64url(Value::Object(blob).to_string().as_bytes());

    let mut request = Map::new();
    request.insert("api-version".into(), echo.api_version.into());
    request.insert("enc".into(), echo.enc.as_str().into());
    request.insert("kid".into(), echo.kid.into());
    if let Some(nonce) = echo.nonce {
        request.insert("nonce".into(), nonce.into());
    }

    let mut bundle = Map::new();
    bundle.insert("attributes".into(), key.attributes_json());
    bundle.insert(
        "key".into(),
        key.jwk(
            key_kid,
            key.kty.released_name(),
            Some(("key_hsm", key_hsm.into())),
        )?,
    );
    if let Some(policy) = key.policy_json() {
        bundle.insert("release_policy".into(), policy);
    }
    let mut response = Map::new();
    response.insert("key".into(), Value::Object(bundle));

    let mut payload = Map::new();
    payload.insert("request".into(), Value::Object(request));
    payload.insert("response".into(), Value::Object(response));
    Ok(payload)
}
