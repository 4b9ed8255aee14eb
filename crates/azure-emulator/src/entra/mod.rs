//! The emulated Microsoft Entra ID: one tenant, its service principals with client secrets and
//! federated credentials, and RS256 access tokens for Azure resources.
//!
//! State: `entra.json` (tenant id, service principals, external federated issuers) and the
//! signing identities `entra-signing-key.pem`/`entra-signing-cert.pem` (access tokens) and
//! `federation-signing-key.pem`/`federation-signing-cert.pem` (the built-in federated issuer).
//! Client secrets are stored only as salted SHA-256 digests; the secret itself is shown once,
//! by `sp create`.
//!
//! Access tokens look like the v1 tokens Entra issues for Azure resources such as Managed HSM:
//! `iss` `https://sts.windows.net/{tenant}/`, `aud` the resource (`https://managedhsm.azure.net`),
//! `tid`, `oid` (the service principal's object id, what role assignments name), `appid`,
//! `appidacr` (`1` for a secret, `2` for an assertion), `idtyp` `app`, `iat`/`nbf`/`exp`.
//!
//! Federated credentials (workload identity): a service principal accepts a client assertion
//! whose `iss`, `sub` and `aud` match one of its federated credentials and whose signature
//! verifies with a key the emulator holds for that issuer — either the built-in issuer
//! ([`BUILTIN_FEDERATION_ISSUER`], tokens from `federated-token`) or an external issuer
//! registered with its JWKS (for example a Kubernetes service-account issuer). The emulator
//! never fetches keys over the network.

mod error;
pub mod routes;

use std::fmt;

use aws_lc_rs::digest;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use zeroize::{Zeroize, Zeroizing};

pub use error::EntraError;
pub use routes::routes;

use crate::ca::CaError;
use crate::jose::{self, JwkKey, JwtError, UnverifiedJwt};
use crate::persist::{PersistError, StateDir};
use crate::signer::TokenSigner;

const STATE_FILE: &str = "entra.json";

/// The issuer of the built-in federated identity provider, whose tokens `federated-token`
/// mints. The `.invalid` name never resolves: the emulator holds the keys itself.
pub const BUILTIN_FEDERATION_ISSUER: &str = "https://federation.quarry-emulator.invalid";

/// The audience Entra expects in federated assertions unless configured otherwise.
pub const DEFAULT_FEDERATION_AUDIENCE: &str = "api://AzureADTokenExchange";

/// Default access-token lifetime: Entra's `expires_in` is typically just under an hour.
pub const DEFAULT_ACCESS_TOKEN_LIFETIME_SECS: u64 = 3599;

/// Clock skew accepted when checking `nbf` and `exp`.
pub const CLOCK_SKEW_SECS: i64 = 300;

/// Resources that tokens can be requested for (`<resource>/.default`), besides the emulator's
/// own loopback addresses.
pub const KNOWN_RESOURCES: &[&str] = &[
    "https://managedhsm.azure.net",
    "https://managedhsm.usgovcloudapi.net",
    "https://managedhsm.azure.cn",
    "https://vault.azure.net",
    "https://attest.azure.net",
    "https://management.azure.com",
    "https://management.core.windows.net",
];

/// A failure of the Entra ID store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EntraStoreError {
    /// Reading or writing the state failed.
    #[error(transparent)]
    Persist(#[from] PersistError),
    /// A signing identity could not be loaded or created.
    #[error(transparent)]
    Signer(#[from] CaError),
    /// No service principal has this app id.
    #[error("no service principal with app id {0}")]
    UnknownApp(String),
    /// An argument is unusable.
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// What was invalid.
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// Signing a token failed.
    #[error("signing a token failed: {0}")]
    Sign(String),
}

/// Why an access token was refused by [`Entra::verify_access_token`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccessTokenError {
    /// Not a well-formed JWT, or its signature does not verify with the tenant's key.
    #[error("invalid access token: {0}")]
    Invalid(#[from] JwtError),
    /// A claim is missing or has the wrong type.
    #[error("access token claim {0:?} is missing or not of the expected type")]
    Claim(&'static str),
    /// The token is for another tenant or issuer.
    #[error("access token issuer {0:?} is not this tenant's")]
    Issuer(String),
    /// The token is for another resource.
    #[error("access token audience {actual:?} is not {expected:?}")]
    Audience {
        /// The token's audience.
        actual: String,
        /// The audience required.
        expected: String,
    },
    /// The token has expired.
    #[error("access token expired at {exp}")]
    Expired {
        /// Its `exp`.
        exp: i64,
    },
    /// The token is not valid yet.
    #[error("access token not valid before {nbf}")]
    NotYetValid {
        /// Its `nbf`.
        nbf: i64,
    },
}

/// The claims of a verified access token that the Managed HSM needs for RBAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessTokenClaims {
    /// Object id of the service principal (what role assignments name).
    pub oid: String,
    /// Application (client) id.
    pub appid: String,
    /// Tenant id.
    pub tid: String,
    /// Audience (resource).
    pub aud: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
}

/// A stored client secret: only a salted digest.
#[derive(Clone, Serialize, Deserialize)]
struct StoredSecret {
    #[serde(rename = "keyId")]
    key_id: String,
    hint: String,
    salt: String,
    sha256: String,
}

/// A federated identity credential of a service principal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FederatedCredential {
    /// A name for the credential.
    pub name: String,
    /// The assertion issuer (`iss`).
    pub issuer: String,
    /// The assertion subject (`sub`).
    pub subject: String,
    /// Accepted assertion audiences (`aud`).
    pub audiences: Vec<String>,
}

/// A service principal (with its application), without secrets.
#[derive(Clone, Serialize, Deserialize)]
pub struct ServicePrincipal {
    /// Application (client) id.
    #[serde(rename = "appId")]
    pub app_id: String,
    /// Object id of the service principal.
    #[serde(rename = "id")]
    pub object_id: String,
    /// Display name.
    #[serde(rename = "displayName")]
    pub display_name: String,
    /// Federated identity credentials.
    #[serde(rename = "federatedCredentials", default)]
    pub federated_credentials: Vec<FederatedCredential>,
    #[serde(default)]
    secrets: Vec<StoredSecret>,
}

impl fmt::Debug for ServicePrincipal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServicePrincipal")
            .field("app_id", &self.app_id)
            .field("object_id", &self.object_id)
            .field("display_name", &self.display_name)
            .finish_non_exhaustive()
    }
}

impl ServicePrincipal {
    fn secret_matches(&self, secret: &str) -> bool {
        self.secrets.iter().any(|s| {
            let digest = secret_digest(&s.salt, secret);
            aws_lc_rs::constant_time::verify_slices_are_equal(
                digest.as_bytes(),
                s.sha256.as_bytes(),
            )
            .is_ok()
        })
    }

    /// The listing `az ad sp list` prints for a service principal.
    pub fn listing(&self, tenant: &str) -> Value {
        json!({
            "id": self.object_id,
            "appId": self.app_id,
            "displayName": self.display_name,
            "appDisplayName": self.display_name,
            "appOwnerOrganizationId": tenant,
            "servicePrincipalType": "Application",
            "accountEnabled": true,
            "servicePrincipalNames": [self.app_id],
        })
    }
}

/// An external issuer of federated assertions and its public keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FederatedIssuer {
    /// The issuer (`iss`).
    pub issuer: String,
    /// Its JWK set (`{"keys":[...]}`).
    pub jwks: Value,
}

#[derive(Default, Serialize, Deserialize)]
struct EntraState {
    #[serde(rename = "tenantId", default)]
    tenant_id: String,
    #[serde(rename = "servicePrincipals", default)]
    service_principals: Vec<ServicePrincipal>,
    #[serde(rename = "federatedIssuers", default)]
    federated_issuers: Vec<FederatedIssuer>,
}

/// A newly created service principal with its one-time password, printed like
/// `az ad sp create-for-rbac`. `Debug` hides the password; it is zeroed on drop.
#[derive(Serialize)]
pub struct NewServicePrincipal {
    /// Application (client) id.
    #[serde(rename = "appId")]
    pub app_id: String,
    /// Display name.
    #[serde(rename = "displayName")]
    pub display_name: String,
    /// The client secret.
    #[serde(serialize_with = "serialize_secret")]
    pub password: Zeroizing<String>,
    /// Tenant id.
    pub tenant: String,
    /// Object id of the service principal (not printed by `az`, needed for role assignments).
    #[serde(skip)]
    pub object_id: String,
}

fn serialize_secret<S: serde::Serializer>(
    secret: &Zeroizing<String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(secret)
}

impl fmt::Debug for NewServicePrincipal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewServicePrincipal")
            .field("app_id", &self.app_id)
            .field("display_name", &self.display_name)
            .finish_non_exhaustive()
    }
}

/// The emulated Entra ID tenant.
pub struct Entra {
    state: StateDir,
    tenant_id: String,
    signer: TokenSigner,
    federation: TokenSigner,
    access_token_lifetime: u64,
}

impl fmt::Debug for Entra {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entra")
            .field("tenant_id", &self.tenant_id)
            .finish_non_exhaustive()
    }
}

impl Entra {
    /// Opens the tenant in the state directory, creating it (with a random tenant id and
    /// signing keys) on first use.
    pub fn open(state: &StateDir) -> Result<Self, EntraStoreError> {
        let _lock = state.lock()?;
        let mut doc: EntraState = state.read_json(STATE_FILE)?.unwrap_or_default();
        if doc.tenant_id.is_empty() {
            doc.tenant_id = uuid::Uuid::new_v4().to_string();
            state.write_json(STATE_FILE, &doc)?;
        }
        let signer = TokenSigner::load_or_create(
            state,
            "entra-signing-key.pem",
            "entra-signing-cert.pem",
            "accounts.quarry-emulator.invalid",
        )?;
        let federation = TokenSigner::load_or_create(
            state,
            "federation-signing-key.pem",
            "federation-signing-cert.pem",
            BUILTIN_FEDERATION_ISSUER,
        )?;
        Ok(Self {
            state: state.clone(),
            tenant_id: doc.tenant_id,
            signer,
            federation,
            access_token_lifetime: DEFAULT_ACCESS_TOKEN_LIFETIME_SECS,
        })
    }

    /// Sets the lifetime of issued access tokens.
    pub fn with_access_token_lifetime(mut self, secs: u64) -> Self {
        self.access_token_lifetime = secs;
        self
    }

    /// The tenant id.
    pub fn tenant_id(&self) -> &str {
        &self.tenant_id
    }

    /// The issuer of access tokens: `https://sts.windows.net/{tenant}/`, as in Entra's v1
    /// tokens for Azure resources.
    pub fn access_token_issuer(&self) -> String {
        format!("https://sts.windows.net/{}/", self.tenant_id)
    }

    fn load(&self) -> Result<EntraState, EntraStoreError> {
        Ok(self.state.read_json(STATE_FILE)?.unwrap_or_default())
    }

    /// All service principals.
    pub fn service_principals(&self) -> Result<Vec<ServicePrincipal>, EntraStoreError> {
        Ok(self.load()?.service_principals)
    }

    /// The service principal with `app_id` (compared case-insensitively, like GUIDs).
    pub fn service_principal(
        &self,
        app_id: &str,
    ) -> Result<Option<ServicePrincipal>, EntraStoreError> {
        Ok(self
            .load()?
            .service_principals
            .into_iter()
            .find(|sp| sp.app_id.eq_ignore_ascii_case(app_id)))
    }

    /// Creates an application with a service principal and a client secret.
    pub fn create_service_principal(
        &self,
        display_name: &str,
    ) -> Result<NewServicePrincipal, EntraStoreError> {
        if display_name.trim().is_empty() {
            return Err(EntraStoreError::Invalid {
                what: "display name",
                detail: "must not be empty".into(),
            });
        }
        let password = generate_password();
        let salt = hex::encode(random_bytes::<16>());
        let secret = StoredSecret {
            key_id: uuid::Uuid::new_v4().to_string(),
            hint: password.chars().take(3).collect(),
            sha256: secret_digest(&salt, &password),
            salt,
        };
        let sp = ServicePrincipal {
            app_id: uuid::Uuid::new_v4().to_string(),
            object_id: uuid::Uuid::new_v4().to_string(),
            display_name: display_name.to_owned(),
            federated_credentials: Vec::new(),
            secrets: vec![secret],
        };
        let created = NewServicePrincipal {
            app_id: sp.app_id.clone(),
            display_name: sp.display_name.clone(),
            password,
            tenant: self.tenant_id.clone(),
            object_id: sp.object_id.clone(),
        };
        self.state.update_json(STATE_FILE, |doc: &mut EntraState| {
            doc.service_principals.push(sp);
            Ok::<_, EntraStoreError>(())
        })?;
        Ok(created)
    }

    /// Adds a federated credential to the service principal `app_id`.
    pub fn add_federated_credential(
        &self,
        app_id: &str,
        credential: FederatedCredential,
    ) -> Result<(), EntraStoreError> {
        if credential.issuer.is_empty() || credential.subject.is_empty() {
            return Err(EntraStoreError::Invalid {
                what: "federated credential",
                detail: "issuer and subject must not be empty".into(),
            });
        }
        self.state.update_json(STATE_FILE, |doc: &mut EntraState| {
            let sp = doc
                .service_principals
                .iter_mut()
                .find(|sp| sp.app_id.eq_ignore_ascii_case(app_id))
                .ok_or_else(|| EntraStoreError::UnknownApp(app_id.to_owned()))?;
            sp.federated_credentials
                .retain(|c| c.name != credential.name);
            sp.federated_credentials.push(credential);
            Ok(())
        })
    }

    /// Registers (or replaces) an external federated issuer with its JWK set.
    pub fn add_federated_issuer(&self, issuer: &str, jwks: Value) -> Result<(), EntraStoreError> {
        let keys =
            jwks.get("keys")
                .and_then(Value::as_array)
                .ok_or_else(|| EntraStoreError::Invalid {
                    what: "jwks",
                    detail: "expected an object with a \"keys\" array".into(),
                })?;
        for key in keys {
            JwkKey::from_jwk(key).map_err(|e| EntraStoreError::Invalid {
                what: "jwks",
                detail: e.to_string(),
            })?;
        }
        self.state.update_json(STATE_FILE, |doc: &mut EntraState| {
            doc.federated_issuers.retain(|i| i.issuer != issuer);
            doc.federated_issuers.push(FederatedIssuer {
                issuer: issuer.to_owned(),
                jwks,
            });
            Ok::<_, EntraStoreError>(())
        })
    }

    /// Mints an assertion from the built-in federated issuer for `subject` and `audience`,
    /// valid for `lifetime_secs` (what a workload's projected token file would hold).
    pub fn issue_federated_token(
        &self,
        subject: &str,
        audience: &str,
        lifetime_secs: u64,
    ) -> Result<Zeroizing<String>, EntraStoreError> {
        let now = now();
        let mut header = Map::new();
        header.insert("alg".into(), "RS256".into());
        header.insert("kid".into(), self.federation.sha1_thumbprint().into());
        header.insert("typ".into(), "JWT".into());
        let mut claims = Map::new();
        claims.insert("aud".into(), audience.into());
        claims.insert("exp".into(), (now + lifetime_secs as i64).into());
        claims.insert("iat".into(), now.into());
        claims.insert("iss".into(), BUILTIN_FEDERATION_ISSUER.into());
        claims.insert("jti".into(), uuid::Uuid::new_v4().to_string().into());
        claims.insert("nbf".into(), now.into());
        claims.insert("sub".into(), subject.into());
        jose::sign_jwt(&header, &claims, self.federation.key())
            .map(Zeroizing::new)
            .map_err(|e| EntraStoreError::Sign(e.to_string()))
    }

    /// The published signing keys (`{"keys":[...]}`), as Entra's discovery `keys` endpoint
    /// serves them.
    pub fn jwks(&self, issuer: &str) -> Value {
        let mut jwk = self.signer.key().verifier().to_jwk();
        let kid = self.signer.sha1_thumbprint();
        jwk.insert("use".into(), "sig".into());
        jwk.insert("kid".into(), kid.clone().into());
        jwk.insert("x5t".into(), kid.into());
        jwk.insert("x5c".into(), json!([jose::b64std(self.signer.cert_der())]));
        jwk.insert("issuer".into(), issuer.into());
        json!({ "keys": [jwk] })
    }

    /// Issues an access token for `sp` and `resource`.
    pub(crate) fn issue_access_token(
        &self,
        sp: &ServicePrincipal,
        resource: &str,
        appidacr: &str,
        lifetime_override: Option<u64>,
    ) -> Result<(Zeroizing<String>, u64), EntraStoreError> {
        let lifetime = lifetime_override.unwrap_or(self.access_token_lifetime);
        let now = now();
        let issuer = self.access_token_issuer();
        let kid = self.signer.sha1_thumbprint();
        let mut header = Map::new();
        header.insert("typ".into(), "JWT".into());
        header.insert("alg".into(), "RS256".into());
        header.insert("x5t".into(), kid.clone().into());
        header.insert("kid".into(), kid.into());
        let mut claims = Map::new();
        claims.insert("aud".into(), resource.into());
        claims.insert("iss".into(), issuer.clone().into());
        claims.insert("iat".into(), now.into());
        claims.insert("nbf".into(), now.into());
        claims.insert("exp".into(), (now + lifetime as i64).into());
        claims.insert("aio".into(), jose::b64url(&random_bytes::<24>()).into());
        claims.insert("appid".into(), sp.app_id.clone().into());
        claims.insert("appidacr".into(), appidacr.into());
        claims.insert("idp".into(), issuer.into());
        claims.insert("idtyp".into(), "app".into());
        claims.insert("oid".into(), sp.object_id.clone().into());
        claims.insert("sub".into(), sp.object_id.clone().into());
        claims.insert("tid".into(), self.tenant_id.clone().into());
        claims.insert("uti".into(), jose::b64url(&random_bytes::<16>()).into());
        claims.insert("ver".into(), "1.0".into());
        let token = jose::sign_jwt(&header, &claims, self.signer.key())
            .map_err(|e| EntraStoreError::Sign(e.to_string()))?;
        Ok((Zeroizing::new(token), lifetime))
    }

    /// Verifies an access token this tenant issued: RS256 signature with the tenant's key,
    /// issuer and tenant, `aud` equal to `expected_audience` (a trailing `/` on either side is
    /// ignored), and `nbf`/`exp` with [`CLOCK_SKEW_SECS`] of skew.
    pub fn verify_access_token(
        &self,
        token: &str,
        expected_audience: &str,
    ) -> Result<AccessTokenClaims, AccessTokenError> {
        let jwt = UnverifiedJwt::parse(token)?;
        if jwt.alg() != Some("RS256") {
            return Err(JwtError::Algorithm(jwt.alg().unwrap_or_default().to_owned()).into());
        }
        jwt.verify(&self.signer.key().verifier())?;

        let string = |name: &'static str| {
            jwt.claim_str(name)
                .map(str::to_owned)
                .ok_or(AccessTokenError::Claim(name))
        };
        let iss = string("iss")?;
        let tid = string("tid")?;
        if iss != self.access_token_issuer() || tid != self.tenant_id {
            return Err(AccessTokenError::Issuer(iss));
        }
        let aud = string("aud")?;
        if aud.trim_end_matches('/') != expected_audience.trim_end_matches('/') {
            return Err(AccessTokenError::Audience {
                actual: aud,
                expected: expected_audience.to_owned(),
            });
        }
        let exp = jwt.claim_i64("exp").ok_or(AccessTokenError::Claim("exp"))?;
        let now = now();
        if now > exp + CLOCK_SKEW_SECS {
            return Err(AccessTokenError::Expired { exp });
        }
        if let Some(nbf) = jwt.claim_i64("nbf")
            && nbf > now + CLOCK_SKEW_SECS
        {
            return Err(AccessTokenError::NotYetValid { nbf });
        }
        Ok(AccessTokenClaims {
            oid: string("oid")?,
            appid: string("appid")?,
            tid,
            aud,
            exp,
        })
    }

    /// Checks a client assertion for `sp` as the token endpoint does.
    pub(crate) fn check_assertion(
        &self,
        sp: &ServicePrincipal,
        assertion: &str,
    ) -> Result<(), EntraError> {
        let jwt = UnverifiedJwt::parse(assertion).map_err(|_| EntraError::malformed_assertion())?;
        let now = now();
        let (nbf, exp) = (jwt.claim_i64("nbf"), jwt.claim_i64("exp"));
        let expired = exp.is_none_or(|exp| now > exp + CLOCK_SKEW_SECS);
        let early = nbf.is_some_and(|nbf| nbf > now + CLOCK_SKEW_SECS);
        if expired || early {
            return Err(EntraError::assertion_time(now, nbf, exp));
        }

        let issuer = jwt.claim_str("iss").unwrap_or_default();
        let subject = jwt.claim_str("sub").unwrap_or_default();
        let audiences: Vec<&str> = match jwt.claims.get("aud") {
            Some(Value::String(a)) => vec![a.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let matched = sp.federated_credentials.iter().any(|c| {
            c.issuer == issuer
                && c.subject == subject
                && audiences
                    .iter()
                    .any(|a| c.audiences.iter().any(|ca| ca == a))
        });
        if !matched {
            return Err(EntraError::no_federated_record(
                issuer,
                subject,
                &audiences.join(","),
            ));
        }

        let keys = self
            .issuer_keys(issuer, jwt.kid())
            .map_err(|_| EntraError::internal())?;
        if keys.is_empty() {
            return Err(EntraError::issuer_keys_unavailable(issuer));
        }
        if keys.iter().any(|k| jwt.verify(k).is_ok()) {
            Ok(())
        } else {
            Err(EntraError::assertion_signature())
        }
    }

    /// The keys the emulator holds for a federated issuer, narrowed to `kid` when given.
    fn issuer_keys(&self, issuer: &str, kid: Option<&str>) -> Result<Vec<JwkKey>, EntraStoreError> {
        if issuer == BUILTIN_FEDERATION_ISSUER {
            return Ok(vec![self.federation.key().verifier()]);
        }
        let doc = self.load()?;
        let Some(found) = doc.federated_issuers.iter().find(|i| i.issuer == issuer) else {
            return Ok(Vec::new());
        };
        let keys = found
            .jwks
            .get("keys")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        Ok(keys
            .iter()
            .filter(|k| kid.is_none_or(|kid| k.get("kid").and_then(Value::as_str) == Some(kid)))
            .filter_map(|k| JwkKey::from_jwk(k).ok())
            .collect())
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The system random generator does not fail on supported platforms; if it ever did, the
    // all-zero value would still be well-formed (ids only, never keys).
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    bytes
}

/// A 40-character client secret in the alphabet Entra uses for generated secrets.
fn generate_password() -> Zeroizing<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789~._-";
    let mut bytes = random_bytes::<40>();
    let password: String = bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    bytes.zeroize();
    Zeroizing::new(password)
}

fn secret_digest(salt: &str, secret: &str) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(salt.as_bytes());
    ctx.update(b":");
    ctx.update(secret.as_bytes());
    hex::encode(ctx.finish().as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> (tempfile::TempDir, Entra) {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let entra = Entra::open(&state).unwrap();
        (dir, entra)
    }

    #[test]
    fn tenant_and_principals_survive_reopening() {
        let (dir, entra) = tenant();
        let sp = entra.create_service_principal("app").unwrap();
        assert_eq!(sp.password.len(), 40);
        let again = Entra::open(&StateDir::open(dir.path()).unwrap()).unwrap();
        assert_eq!(again.tenant_id(), entra.tenant_id());
        let stored = again.service_principal(&sp.app_id).unwrap().unwrap();
        assert!(stored.secret_matches(&sp.password));
        assert!(!stored.secret_matches("wrong"));
        let text = std::fs::read_to_string(dir.path().join(STATE_FILE)).unwrap();
        assert!(
            !text.contains(sp.password.as_str()),
            "the secret is stored in clear"
        );
    }

    #[test]
    fn access_tokens_verify_for_their_audience_only() {
        let (_dir, entra) = tenant();
        let created = entra.create_service_principal("app").unwrap();
        let sp = entra.service_principal(&created.app_id).unwrap().unwrap();
        let (token, _) = entra
            .issue_access_token(&sp, "https://managedhsm.azure.net", "1", None)
            .unwrap();
        let claims = entra
            .verify_access_token(&token, "https://managedhsm.azure.net/")
            .unwrap();
        assert_eq!(claims.oid, created.object_id);
        assert_eq!(claims.appid, created.app_id);
        assert_eq!(claims.tid, entra.tenant_id());
        assert!(matches!(
            entra.verify_access_token(&token, "https://vault.azure.net"),
            Err(AccessTokenError::Audience { .. })
        ));
        let (other_dir, other) = tenant();
        assert!(matches!(
            other.verify_access_token(&token, "https://managedhsm.azure.net"),
            Err(AccessTokenError::Invalid(JwtError::Signature))
        ));
        drop(other_dir);
    }

    #[test]
    fn expired_access_token_is_refused() {
        let (_dir, entra) = tenant();
        let created = entra.create_service_principal("app").unwrap();
        let sp = entra.service_principal(&created.app_id).unwrap().unwrap();
        let mut header = Map::new();
        header.insert("alg".into(), "RS256".into());
        let mut claims = Map::new();
        for (k, v) in [
            ("iss", json!(entra.access_token_issuer())),
            ("tid", json!(entra.tenant_id())),
            ("aud", json!("https://managedhsm.azure.net")),
            ("exp", json!(now() - CLOCK_SKEW_SECS - 10)),
            ("oid", json!(sp.object_id)),
            ("appid", json!(sp.app_id)),
        ] {
            claims.insert(k.into(), v);
        }
        let token = jose::sign_jwt(&header, &claims, entra.signer.key()).unwrap();
        assert!(matches!(
            entra.verify_access_token(&token, "https://managedhsm.azure.net"),
            Err(AccessTokenError::Expired { .. })
        ));
    }

    #[test]
    fn assertions_need_a_matching_federated_credential_and_signature() {
        let (_dir, entra) = tenant();
        let created = entra.create_service_principal("app").unwrap();
        entra
            .add_federated_credential(
                &created.app_id,
                FederatedCredential {
                    name: "k8s".into(),
                    issuer: BUILTIN_FEDERATION_ISSUER.into(),
                    subject: "system:serviceaccount:ns:sa".into(),
                    audiences: vec![DEFAULT_FEDERATION_AUDIENCE.into()],
                },
            )
            .unwrap();
        let sp = entra.service_principal(&created.app_id).unwrap().unwrap();
        let good = entra
            .issue_federated_token(
                "system:serviceaccount:ns:sa",
                DEFAULT_FEDERATION_AUDIENCE,
                600,
            )
            .unwrap();
        entra.check_assertion(&sp, &good).unwrap();

        let other_subject = entra
            .issue_federated_token(
                "system:serviceaccount:ns:other",
                DEFAULT_FEDERATION_AUDIENCE,
                600,
            )
            .unwrap();
        assert_eq!(
            entra.check_assertion(&sp, &other_subject).unwrap_err().code,
            70021
        );
        assert_eq!(
            entra.check_assertion(&sp, "garbage").unwrap_err().code,
            50027
        );

        let mut tampered = good.to_string();
        tampered.truncate(tampered.len() - 4);
        tampered.push_str("AAAA");
        assert_eq!(
            entra.check_assertion(&sp, &tampered).unwrap_err().code,
            700027
        );
    }

    #[test]
    fn external_es256_issuer_and_expired_assertions() {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};

        let (_dir, entra) = tenant();
        let created = entra.create_service_principal("k8s").unwrap();
        let issuer = "https://oidc.cluster.example";
        entra
            .add_federated_credential(
                &created.app_id,
                FederatedCredential {
                    name: "sa".into(),
                    issuer: issuer.into(),
                    subject: "system:serviceaccount:ns:sa".into(),
                    audiences: vec![DEFAULT_FEDERATION_AUDIENCE.into()],
                },
            )
            .unwrap();
        let sp = entra.service_principal(&created.app_id).unwrap().unwrap();

        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let point = pair.public_key().as_ref();
        let sign = |claims: Value| {
            let header = jose::b64url(br#"{"alg":"ES256","kid":"k1"}"#);
            let body = jose::b64url(claims.to_string().as_bytes());
            let input = format!("{header}.{body}");
            let sig = pair.sign(&rng, input.as_bytes()).unwrap();
            format!("{input}.{}", jose::b64url(sig.as_ref()))
        };
        let claims = |exp: i64| {
            json!({"iss": issuer, "sub": "system:serviceaccount:ns:sa",
                   "aud": [DEFAULT_FEDERATION_AUDIENCE], "exp": exp, "nbf": now() - 10})
        };

        // Issuer not registered yet: its keys are unknown.
        let good = sign(claims(now() + 600));
        assert_eq!(entra.check_assertion(&sp, &good).unwrap_err().code, 50166);

        let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1",
            "x": jose::b64url(&point[1..33]), "y": jose::b64url(&point[33..65])}]});
        entra.add_federated_issuer(issuer, jwks).unwrap();
        entra.check_assertion(&sp, &good).unwrap();

        let expired = sign(claims(now() - CLOCK_SKEW_SECS - 60));
        assert_eq!(
            entra.check_assertion(&sp, &expired).unwrap_err().code,
            700024
        );

        assert!(matches!(
            entra.add_federated_issuer(issuer, json!({"keys": [{"kty": "oct"}]})),
            Err(EntraStoreError::Invalid { .. })
        ));
    }
}
