//! The emulated Microsoft Azure Attestation (MAA) instance for SGX enclaves.
//!
//! `attest/SgxEnclave` takes a real SGX DCAP quote (parsed with [`quarry_enclave::quote`]),
//! checks that SHA-256 of the runtime data equals the first 32 bytes of the quote's report data,
//! and issues an RS256 token with MAA's header (`alg`, `jku`, `kid`, `typ`) and claims, with the
//! names and JSON types of the real service (`x-ms-sgx-*` from [`quarry_enclave::claims`],
//! `x-ms-runtime` for JSON runtime data, `x-ms-sgx-ehd` and its deprecated twins for the runtime
//! bytes, `x-ms-policy` from the default SGX policy, `x-ms-sgx-collateral`, ...), in MAA's
//! alphabetical member order.
//!
//! The issuer (`iss`) is configurable: provisioning with a release policy sets it to the
//! policy's `authority` (for example `https://shareduks.uks.attest.azure.net`) so that the
//! seed's policy works unchanged against loopback. Until one is set, the issuer is the
//! emulator's own URL. Every issuer ever configured stays known to [`Maa::verification_key`],
//! the table the emulated Managed HSM uses instead of fetching keys over the network.
//!
//! Not emulated, and said so where it matters: the quote's DCAP signature is not checked
//! (the emulator stands in for MAA in development, where quotes are often simulated), so the
//! collateral hashes in `x-ms-sgx-collateral` are SHA-256 of empty collateral, except
//! `quotehash`, which is the real SHA-256 of the quote; `x-ms-sgx-tcbidentifier` is a
//! configured value. `draftPolicyForAttestation` is refused.
//!
//! State: `maa.json` (issuer configuration) and `maa-signing-key.pem`/`maa-signing-cert.pem`.

pub mod routes;

use std::fmt;

use aws_lc_rs::digest;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use quarry_enclave::claims;
use quarry_enclave::collateral::Collateral;
use quarry_enclave::quote::Quote;
use quarry_enclave::verify::Verifier;

pub use routes::routes;

use crate::ca::CaError;
use crate::jose::{self, Base64Error, JwkKey, JwtError, UnverifiedJwt};
use crate::persist::{PersistError, StateDir};
use crate::signer::TokenSigner;

const STATE_FILE: &str = "maa.json";

/// MAA's token lifetime: eight hours.
pub const DEFAULT_TOKEN_LIFETIME_SECS: u64 = 28_800;

/// The `x-ms-sgx-tcbidentifier` reported when none is configured (the value in the real token
/// in the test data).
pub const DEFAULT_TCB_IDENTIFIER: &str = "10";

/// The attestation policy the emulated instance applies: MAA's default SGX policy, which
/// permits every quote and issues the six claims of `x-ms-policy`.
pub const DEFAULT_SGX_POLICY: &str = "version= 1.0;\
authorizationrules{c:[type==\"$is-debuggable\"] => permit();};\
issuancerules{\
c:[type==\"$is-debuggable\"] => issue(type=\"is-debuggable\", value=c.value);\
c:[type==\"$sgx-mrsigner\"] => issue(type=\"sgx-mrsigner\", value=c.value);\
c:[type==\"$sgx-mrenclave\"] => issue(type=\"sgx-mrenclave\", value=c.value);\
c:[type==\"$product-id\"] => issue(type=\"product-id\", value=c.value);\
c:[type==\"$svn\"] => issue(type=\"svn\", value=c.value);\
c:[type==\"$tee\"] => issue(type=\"tee\", value=c.value);};";

/// Clock skew accepted by [`Maa::verify_token`].
pub const CLOCK_SKEW_SECS: i64 = 300;

/// A failure of the MAA store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MaaStoreError {
    /// Reading or writing the state failed.
    #[error(transparent)]
    Persist(#[from] PersistError),
    /// The signing identity could not be loaded or created.
    #[error(transparent)]
    Signer(#[from] CaError),
    /// An issuer URL is unusable.
    #[error("invalid maa issuer {issuer:?}: {detail}")]
    Issuer {
        /// The issuer given.
        issuer: String,
        /// Why it is refused.
        detail: String,
    },
}

/// Why an attestation request was refused; each maps to MAA's status and error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttestError {
    /// The body is not the JSON request document.
    #[error("the request body is not a valid attestation request: {0}")]
    Body(String),
    /// `quote` is missing or empty.
    #[error("the request has no quote")]
    MissingQuote,
    /// A base64url field does not decode.
    #[error("{field} is not valid base64url: {source}")]
    Base64 {
        /// The field (`quote`, `runtimeData.data`, ...).
        field: &'static str,
        /// The decoding error.
        source: Base64Error,
    },
    /// The quote does not parse as an SGX quote.
    #[error("the quote is invalid: {0}")]
    Quote(String),
    /// `dataType` is not `Binary` or `JSON`.
    #[error("{field}.dataType {value:?} is not \"Binary\" or \"JSON\"")]
    DataType {
        /// `runtimeData` or `initTimeData`.
        field: &'static str,
        /// The value given.
        value: String,
    },
    /// JSON runtime or init-time data is not a JSON object.
    #[error("{field}.data is declared JSON but is not a JSON object: {detail}")]
    DataJson {
        /// `runtimeData` or `initTimeData`.
        field: &'static str,
        /// Why.
        detail: String,
    },
    /// SHA-256 of the runtime data is not in the report data.
    #[error(
        "the runtime data does not match the quote: sha-256 of runtimeData.data is {actual}, \
         report data bytes 0..32 are {expected}"
    )]
    RuntimeDataMismatch {
        /// Hex SHA-256 of the runtime data.
        actual: String,
        /// Hex of report data bytes 0..32.
        expected: String,
    },
    /// Init-time data was sent for an enclave without KSS, or does not match CONFIGID.
    #[error("the init time data does not match the quote: {0}")]
    InitTimeData(String),
    /// The quote did not verify against the configured collateral.
    #[error("the specified quote was invalid due to an error in the quote collateral: {0}")]
    Collateral(String),
    /// `draftPolicyForAttestation` is not emulated.
    #[error("draftPolicyForAttestation is not supported by this attestation instance")]
    DraftPolicy,
    /// Signing failed inside the emulator.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AttestError {
    /// MAA's error code for this failure.
    pub fn code(&self) -> &'static str {
        match self {
            AttestError::Quote(_) | AttestError::Collateral(_) => "InvalidQuote",
            AttestError::RuntimeDataMismatch { .. } | AttestError::InitTimeData(_) => {
                "InvalidRuntimeData"
            }
            AttestError::Internal(_) => "InternalError",
            _ => "InvalidParameter",
        }
    }
}

/// Why an MAA token was refused by [`Maa::verify_token`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MaaTokenError {
    /// Not a well-formed JWT, or the signature does not verify.
    #[error("invalid attestation token: {0}")]
    Invalid(#[from] JwtError),
    /// The issuer is not one this emulator has served as, or the `kid` is not its key.
    #[error("no signing key known for issuer {issuer:?} and key id {kid:?}")]
    UnknownKey {
        /// The token's `iss`.
        issuer: String,
        /// The token's `kid`.
        kid: String,
    },
    /// The token has expired.
    #[error("attestation token expired at {exp}")]
    Expired {
        /// Its `exp`.
        exp: i64,
    },
    /// The token is not valid yet.
    #[error("attestation token not valid before {nbf}")]
    NotYetValid {
        /// Its `nbf`.
        nbf: i64,
    },
    /// Reading the issuer table failed.
    #[error("reading the maa issuer table failed: {0}")]
    Store(String),
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct MaaState {
    /// The configured issuer; the emulator's own URL if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    issuer: Option<String>,
    /// Issuers configured before, still accepted by `verification_key`.
    #[serde(rename = "previousIssuers", default)]
    previous_issuers: Vec<String>,
    /// `x-ms-sgx-tcbidentifier`.
    #[serde(
        rename = "tcbIdentifier",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    tcb_identifier: Option<String>,
}

/// An `attest/SgxEnclave` request body.
#[derive(Debug, Default, Deserialize)]
pub struct AttestSgxRequest {
    /// Base64url SGX quote.
    #[serde(default)]
    pub quote: Option<String>,
    /// Runtime data bound to the quote's report data.
    #[serde(rename = "runtimeData", default)]
    pub runtime_data: Option<DataInput>,
    /// Init-time data bound to CONFIGID (KSS enclaves).
    #[serde(rename = "initTimeData", default)]
    pub init_time_data: Option<DataInput>,
    /// A policy to try out (not emulated).
    #[serde(rename = "draftPolicyForAttestation", default)]
    pub draft_policy: Option<String>,
    /// Echoed as the `nonce` claim.
    #[serde(default)]
    pub nonce: Option<String>,
}

/// Runtime or init-time data: base64url bytes and how to interpret them.
#[derive(Debug, Default, Deserialize)]
pub struct DataInput {
    /// Base64url bytes.
    #[serde(default)]
    pub data: Option<String>,
    /// `Binary` or `JSON`; `Binary` if absent.
    #[serde(rename = "dataType", default)]
    pub data_type: Option<String>,
}

/// The emulated MAA instance.
pub struct Maa {
    state: StateDir,
    signer: TokenSigner,
    own_url: String,
    token_lifetime: u64,
    dcap: Option<(Verifier, Collateral)>,
}

impl fmt::Debug for Maa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Maa")
            .field("own_url", &self.own_url)
            .finish_non_exhaustive()
    }
}

/// Checks that an issuer is an `https` URL without a trailing slash, query or fragment.
fn check_issuer(issuer: &str) -> Result<(), MaaStoreError> {
    let bad = |detail: &str| MaaStoreError::Issuer {
        issuer: issuer.to_owned(),
        detail: detail.to_owned(),
    };
    let rest = issuer
        .strip_prefix("https://")
        .ok_or_else(|| bad("must start with https://"))?;
    if rest.is_empty() || rest.contains(['?', '#', ' ', '"']) {
        return Err(bad("must be a plain https url"));
    }
    if issuer.ends_with('/') {
        return Err(bad("must not end with '/', as real MAA issuers do not"));
    }
    Ok(())
}

impl Maa {
    /// Opens the instance in the state directory, creating its signing key on first use.
    /// `own_url` is the emulator's base URL, the issuer until another is configured.
    pub fn open(state: &StateDir, own_url: &str) -> Result<Self, MaaStoreError> {
        let _lock = state.lock()?;
        let signer = TokenSigner::load_or_create(
            state,
            "maa-signing-key.pem",
            "maa-signing-cert.pem",
            "https://attest.quarry-emulator.invalid",
        )?;
        Ok(Self {
            state: state.clone(),
            signer,
            own_url: own_url.to_owned(),
            token_lifetime: DEFAULT_TOKEN_LIFETIME_SECS,
            dcap: None,
        })
    }

    /// Sets the lifetime of issued tokens.
    pub fn with_token_lifetime(mut self, secs: u64) -> Self {
        self.token_lifetime = secs;
        self
    }

    fn load(&self) -> Result<MaaState, MaaStoreError> {
        Ok(self.state.read_json(STATE_FILE)?.unwrap_or_default())
    }

    /// The issuer of new tokens.
    pub fn issuer(&self) -> Result<String, MaaStoreError> {
        Ok(self.load()?.issuer.unwrap_or_else(|| self.own_url.clone()))
    }

    /// Sets the issuer of new tokens (an `https` URL without trailing slash, as a release
    /// policy's `authority` names it). The previous issuer stays known for verification.
    pub fn set_issuer(state: &StateDir, issuer: &str) -> Result<(), MaaStoreError> {
        check_issuer(issuer)?;
        state.update_json(STATE_FILE, |doc: &mut MaaState| {
            if let Some(old) = doc.issuer.replace(issuer.to_owned())
                && old != issuer
                && !doc.previous_issuers.contains(&old)
            {
                doc.previous_issuers.push(old);
            }
            Ok::<_, MaaStoreError>(())
        })
    }

    /// Sets the `x-ms-sgx-tcbidentifier` value.
    pub fn set_tcb_identifier(state: &StateDir, value: &str) -> Result<(), MaaStoreError> {
        state.update_json(STATE_FILE, |doc: &mut MaaState| {
            doc.tcb_identifier = Some(value.to_owned());
            Ok::<_, MaaStoreError>(())
        })
    }

    /// The issuer configuration as JSON (`issuer`, `previousIssuers`, `tcbIdentifier`).
    pub fn describe(&self) -> Result<Value, MaaStoreError> {
        let doc = self.load()?;
        Ok(json!({
            "issuer": doc.issuer.clone().unwrap_or_else(|| self.own_url.clone()),
            "configured": doc.issuer.is_some(),
            "previousIssuers": doc.previous_issuers,
            "tcbIdentifier": doc.tcb_identifier.as_deref().unwrap_or(DEFAULT_TCB_IDENTIFIER),
            "kid": self.kid(),
        }))
    }

    /// Every issuer this instance has served as.
    pub fn known_issuers(&self) -> Result<Vec<String>, MaaStoreError> {
        let doc = self.load()?;
        let mut issuers = vec![self.own_url.clone()];
        issuers.extend(doc.issuer);
        issuers.extend(doc.previous_issuers);
        Ok(issuers)
    }

    /// The signing key's id: standard base64 of SHA-256 over the signing certificate.
    pub fn kid(&self) -> String {
        self.signer.sha256_thumbprint()
    }

    /// The key that verifies tokens of `issuer` with key id `kid`, if this instance issued
    /// under that issuer with that key: the emulated Managed HSM's table of attestation
    /// authorities. Issuers compare exactly (as Managed HSM compares `authority` and `iss`).
    pub fn verification_key(
        &self,
        issuer: &str,
        kid: &str,
    ) -> Result<Option<JwkKey>, MaaStoreError> {
        if kid != self.kid() || !self.known_issuers()?.iter().any(|i| i == issuer) {
            return Ok(None);
        }
        Ok(Some(self.signer.key().verifier()))
    }

    /// Verifies a token of this instance: RS256 signature with the key for its `iss` and
    /// `kid`, `exp` and `nbf` with [`CLOCK_SKEW_SECS`]. Returns the claims.
    pub fn verify_token(&self, token: &str) -> Result<Map<String, Value>, MaaTokenError> {
        let jwt = UnverifiedJwt::parse(token)?;
        if jwt.alg() != Some("RS256") {
            return Err(JwtError::Algorithm(jwt.alg().unwrap_or_default().to_owned()).into());
        }
        let issuer = jwt.claim_str("iss").unwrap_or_default();
        let kid = jwt.kid().unwrap_or_default();
        let key = self
            .verification_key(issuer, kid)
            .map_err(|e| MaaTokenError::Store(e.to_string()))?
            .ok_or_else(|| MaaTokenError::UnknownKey {
                issuer: issuer.to_owned(),
                kid: kid.to_owned(),
            })?;
        jwt.verify(&key)?;
        let now = now();
        let exp = jwt.claim_i64("exp").unwrap_or(i64::MIN);
        if now > exp.saturating_add(CLOCK_SKEW_SECS) {
            return Err(MaaTokenError::Expired { exp });
        }
        if let Some(nbf) = jwt.claim_i64("nbf")
            && nbf > now + CLOCK_SKEW_SECS
        {
            return Err(MaaTokenError::NotYetValid { nbf });
        }
        Ok(jwt.claims)
    }

    /// The `/certs` document: `{"keys":[{"x5c":[...],"kid":...,"kty":"RSA"}]}`, the members
    /// MAA publishes (no `n`/`e`).
    pub fn certs(&self) -> Value {
        json!({"keys": [{
            "x5c": [jose::b64std(self.signer.cert_der())],
            "kid": self.kid(),
            "kty": "RSA",
        }]})
    }

    /// The OpenID metadata. `base_url` is where the client reached the emulator; `jwks_uri`
    /// points there so that the keys are reachable whatever the issuer is.
    pub fn openid_configuration(&self, base_url: &str) -> Result<Value, MaaStoreError> {
        let issuer = self.issuer()?;
        Ok(json!({
            "response_types_supported": ["token", "none"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "revocation_endpoint": format!("{base_url}/revoke"),
            "issuer": issuer,
            "jwks_uri": format!("{base_url}/certs"),
            "claims_supported": [
                "cnf", "nonce", "x-ms-ver", "x-ms-attestation-type", "x-ms-policy-hash",
                "x-ms-policy-signer", "x-ms-runtime", "x-ms-inittime",
                "x-ms-sgx-is-debuggable", "x-ms-sgx-mrenclave", "x-ms-sgx-mrsigner",
                "x-ms-sgx-product-id", "x-ms-sgx-svn", "x-ms-sgx-report-data", "x-ms-sgx-ehd",
                "x-ms-sgx-collateral", "x-ms-sgx-tcbidentifier", "x-ms-sgx-config-id",
                "x-ms-sgx-config-svn", "x-ms-sgx-isv-extended-product-id",
                "x-ms-sgx-isv-family-id", "is-debuggable", "sgx-mrenclave", "sgx-mrsigner",
                "product-id", "svn", "tee", "maa-ehd", "aas-ehd", "maa-attestationcollateral"
            ],
        }))
    }

    /// Uses `collateral` to verify quotes' DCAP signatures and TCB with `verifier`; tokens then
    /// carry the collateral's real hashes. Without it, quotes are parsed but not verified.
    pub fn with_dcap(mut self, verifier: Verifier, collateral: Collateral) -> Self {
        self.dcap = Some((verifier, collateral));
        self
    }

    /// Attests an SGX quote and returns the signed token.
    pub fn attest_sgx(
        &self,
        request: &AttestSgxRequest,
        lifetime_override: Option<u64>,
    ) -> Result<String, AttestError> {
        let validated = request.validate()?;
        let collateral = match &self.dcap {
            Some((verifier, collateral)) => {
                verifier
                    .verify(&validated.quote_bytes, collateral)
                    .map_err(|e| AttestError::Collateral(format!("{e:#}")))?;
                Some(collateral)
            }
            None => None,
        };

        let doc = self
            .load()
            .map_err(|e| AttestError::Internal(e.to_string()))?;
        let issuer = doc.issuer.clone().unwrap_or_else(|| self.own_url.clone());
        let tcb = doc
            .tcb_identifier
            .unwrap_or_else(|| DEFAULT_TCB_IDENTIFIER.to_owned());
        let lifetime = lifetime_override.unwrap_or(self.token_lifetime);
        let claims = sgx_claims(SgxClaimsInput {
            validated: &validated,
            collateral,
            issuer: &issuer,
            tcb_identifier: &tcb,
            now: now(),
            lifetime,
        });

        let mut header = Map::new();
        header.insert("alg".into(), "RS256".into());
        header.insert("jku".into(), format!("{issuer}/certs").into());
        header.insert("kid".into(), self.kid().into());
        header.insert("typ".into(), "JWT".into());
        jose::sign_jwt(&header, &claims, self.signer.key())
            .map_err(|e| AttestError::Internal(e.to_string()))
    }
}

impl AttestSgxRequest {
    /// Parses a request body.
    pub fn from_json(body: &[u8]) -> Result<Self, AttestError> {
        serde_json::from_slice(body).map_err(|e| AttestError::Body(e.to_string()))
    }

    /// Checks everything about the request that needs no key: the quote decodes and parses,
    /// the runtime data is bound to the report data, the init-time data to the config id.
    pub fn validate(&self) -> Result<ValidatedAttestation, AttestError> {
        if self.draft_policy.is_some() {
            return Err(AttestError::DraftPolicy);
        }
        let quote_b64 = self
            .quote
            .as_deref()
            .filter(|q| !q.is_empty())
            .ok_or(AttestError::MissingQuote)?;
        let quote_bytes = jose::b64url_decode(quote_b64).map_err(|source| AttestError::Base64 {
            field: "quote",
            source,
        })?;
        let quote = Quote::parse(&quote_bytes).map_err(|e| AttestError::Quote(e.to_string()))?;
        let body = &quote.report_body;

        let runtime = decode_data(self.runtime_data.as_ref(), "runtimeData")?;
        if let Some(runtime) = &runtime {
            let actual = digest::digest(&digest::SHA256, &runtime.bytes);
            if actual.as_ref() != &body.report_data[..32] {
                return Err(AttestError::RuntimeDataMismatch {
                    actual: hex::encode(actual.as_ref()),
                    expected: hex::encode(&body.report_data[..32]),
                });
            }
        }
        let init_time = decode_data(self.init_time_data.as_ref(), "initTimeData")?;
        if let Some(init_time) = &init_time {
            if !body.attributes.is_kss() {
                return Err(AttestError::InitTimeData(
                    "the enclave does not use key separation and sharing (kss), so it has no \
                     config id"
                        .into(),
                ));
            }
            let actual = digest::digest(&digest::SHA256, &init_time.bytes);
            if actual.as_ref() != &body.config_id[..32] {
                return Err(AttestError::InitTimeData(format!(
                    "sha-256 of initTimeData.data is {}, config id bytes 0..32 are {}",
                    hex::encode(actual.as_ref()),
                    hex::encode(&body.config_id[..32])
                )));
            }
        }

        Ok(ValidatedAttestation {
            quote,
            quote_bytes,
            runtime,
            init_time,
            nonce: self.nonce.clone(),
        })
    }
}

/// An attestation request that passed every check that needs no key.
#[derive(Debug)]
pub struct ValidatedAttestation {
    /// The parsed quote.
    pub quote: Quote,
    /// The decoded quote bytes as sent.
    pub quote_bytes: Vec<u8>,
    runtime: Option<Data>,
    init_time: Option<Data>,
    nonce: Option<String>,
}

/// Decoded runtime or init-time data.
#[derive(Debug)]
struct Data {
    bytes: Vec<u8>,
    /// The parsed object for `dataType` `JSON`.
    json: Option<Map<String, Value>>,
}

fn decode_data(
    input: Option<&DataInput>,
    field: &'static str,
) -> Result<Option<Data>, AttestError> {
    let Some(input) = input else {
        return Ok(None);
    };
    let data_field = if field == "runtimeData" {
        "runtimeData.data"
    } else {
        "initTimeData.data"
    };
    let bytes =
        jose::b64url_decode(input.data.as_deref().unwrap_or_default()).map_err(|source| {
            AttestError::Base64 {
                field: data_field,
                source,
            }
        })?;
    let json = match input.data_type.as_deref() {
        None => None,
        Some(t) if t.eq_ignore_ascii_case("binary") => None,
        Some(t) if t.eq_ignore_ascii_case("json") => match serde_json::from_slice(&bytes) {
            Ok(Value::Object(map)) => Some(map),
            Ok(other) => {
                return Err(AttestError::DataJson {
                    field,
                    detail: format!("found a json {}", json_type(&other)),
                });
            }
            Err(e) => {
                return Err(AttestError::DataJson {
                    field,
                    detail: e.to_string(),
                });
            }
        },
        Some(other) => {
            return Err(AttestError::DataType {
                field,
                value: other.to_owned(),
            });
        }
    };
    Ok(Some(Data { bytes, json }))
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

struct SgxClaimsInput<'a> {
    validated: &'a ValidatedAttestation,
    collateral: Option<&'a Collateral>,
    issuer: &'a str,
    tcb_identifier: &'a str,
    now: i64,
    lifetime: u64,
}

/// The claims of an SGX token, members in alphabetical order as MAA emits them.
fn sgx_claims(input: SgxClaimsInput<'_>) -> Map<String, Value> {
    let v = input.validated;
    let body = &v.quote.report_body;
    let mut claims: Vec<(String, Value)> = Vec::new();
    let mut put = |name: &str, value: Value| claims.push((name.to_owned(), value));

    put("exp", (input.now + input.lifetime as i64).into());
    put("iat", input.now.into());
    put("nbf", input.now.into());
    put("iss", input.issuer.into());
    put("jti", hex::encode(random_bytes::<32>()).into());
    put("x-ms-ver", "1.0".into());
    put("x-ms-attestation-type", "sgx".into());
    put("x-ms-policy-hash", policy_hash(DEFAULT_SGX_POLICY).into());
    put("x-ms-sgx-tcbidentifier", input.tcb_identifier.into());

    let collateral = collateral_claims(&v.quote_bytes, input.collateral);
    put("x-ms-sgx-collateral", collateral.clone());
    put("maa-attestationcollateral", collateral);

    for (name, value) in claims::report_claims(body) {
        put(&name, value);
    }
    let deprecated = claims::deprecated_claims(body);
    put("x-ms-policy", Value::Object(sorted(deprecated.clone())));
    for (name, value) in deprecated {
        put(&name, value);
    }

    if let Some(runtime) = &v.runtime {
        let ehd = jose::b64url(&runtime.bytes);
        put("x-ms-sgx-ehd", ehd.clone().into());
        put("maa-ehd", ehd.clone().into());
        put("aas-ehd", ehd.into());
        if let Some(json) = &runtime.json {
            put("x-ms-runtime", Value::Object(json.clone()));
        }
    }
    if let Some(json) = v.init_time.as_ref().and_then(|d| d.json.as_ref()) {
        put("x-ms-inittime", Value::Object(json.clone()));
    }
    if let Some(nonce) = &v.nonce {
        put("nonce", nonce.as_str().into());
    }

    claims.sort_by(|a, b| a.0.cmp(&b.0));
    claims.into_iter().collect()
}

fn sorted(map: Map<String, Value>) -> Map<String, Value> {
    let mut entries: Vec<_> = map.into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries.into_iter().collect()
}

/// `x-ms-sgx-collateral`: SHA-256 of the quote and of each part of the collateral it was
/// verified with; without collateral (no DCAP verification) the collateral hashes are of empty
/// input.
fn collateral_claims(quote: &[u8], collateral: Option<&Collateral>) -> Value {
    let hash = |bytes: &[u8]| hex::encode(digest::digest(&digest::SHA256, bytes).as_ref());
    let [qe_certs, crl, qe_identity, tcb_certs, tcb_info] =
        match collateral.map(Collateral::as_dcap) {
            Some(c) => [
                hash(c.qe_identity_issuer_chain.as_bytes()),
                hash(&c.root_ca_crl),
                hash(c.qe_identity.as_bytes()),
                hash(c.tcb_info_issuer_chain.as_bytes()),
                hash(c.tcb_info.as_bytes()),
            ],
            None => std::array::from_fn(|_| hash(b"")),
        };
    json!({
        "qeidcertshash": qe_certs,
        "qeidcrlhash": crl,
        "qeidhash": qe_identity,
        "quotehash": hash(quote),
        "tcbinfocertshash": tcb_certs,
        "tcbinfocrlhash": crl,
        "tcbinfohash": tcb_info,
    })
}

/// `x-ms-policy-hash`: base64url of SHA-256 over the base64url of the policy text.
fn policy_hash(policy: &str) -> String {
    let encoded = jose::b64url(policy.as_bytes());
    jose::b64url(digest::digest(&digest::SHA256, encoded.as_bytes()).as_ref())
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The system random generator does not fail on supported platforms; the value is an id.
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance() -> (tempfile::TempDir, Maa) {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let maa = Maa::open(&state, "https://localhost:1").unwrap();
        (dir, maa)
    }

    #[test]
    fn issuer_defaults_to_own_url_and_old_issuers_stay_known() {
        let (dir, maa) = instance();
        assert_eq!(maa.issuer().unwrap(), "https://localhost:1");
        let state = StateDir::open(dir.path()).unwrap();
        Maa::set_issuer(&state, "https://a.attest.azure.net").unwrap();
        Maa::set_issuer(&state, "https://b.attest.azure.net").unwrap();
        assert_eq!(maa.issuer().unwrap(), "https://b.attest.azure.net");
        let kid = maa.kid();
        for issuer in [
            "https://localhost:1",
            "https://a.attest.azure.net",
            "https://b.attest.azure.net",
        ] {
            assert!(
                maa.verification_key(issuer, &kid).unwrap().is_some(),
                "{issuer}"
            );
        }
        assert!(
            maa.verification_key("https://c.attest.azure.net", &kid)
                .unwrap()
                .is_none()
        );
        assert!(
            maa.verification_key("https://b.attest.azure.net", "other")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn refuses_issuers_that_cannot_match_an_authority() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        for bad in ["http://x", "https://", "https://x/", "https://x?y", "x"] {
            assert!(Maa::set_issuer(&state, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn kid_has_the_real_format() {
        let (_dir, maa) = instance();
        let kid = maa.kid();
        assert_eq!(kid.len(), 44);
        assert!(kid.ends_with('='));
    }

    #[test]
    fn policy_hash_is_32_bytes_base64url() {
        let hash = policy_hash(DEFAULT_SGX_POLICY);
        assert_eq!(hash.len(), 43);
        assert!(jose::b64url_decode(&hash).is_ok());
    }

    #[test]
    fn garbage_is_refused_with_precise_errors() {
        let (_dir, maa) = instance();
        let request = |quote: &str| AttestSgxRequest {
            quote: Some(quote.into()),
            ..Default::default()
        };
        assert_eq!(
            maa.attest_sgx(&AttestSgxRequest::default(), None),
            Err(AttestError::MissingQuote)
        );
        assert!(matches!(
            maa.attest_sgx(&request("ab+/"), None),
            Err(AttestError::Base64 { field: "quote", .. })
        ));
        assert!(matches!(
            maa.attest_sgx(&request("AAAA"), None),
            Err(AttestError::Quote(_))
        ));
        let draft = AttestSgxRequest {
            draft_policy: Some("version=1.0;".into()),
            ..request("AAAA")
        };
        assert_eq!(maa.attest_sgx(&draft, None), Err(AttestError::DraftPolicy));
    }
}
