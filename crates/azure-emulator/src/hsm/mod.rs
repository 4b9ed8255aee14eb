//! The emulated Managed HSM: keys with release policies, local RBAC, key release with wrapping
//! for the requested algorithm, and release responses signed as the real service signs them.
//!
//! [`Hsm`] holds the logic and needs no server: its operations take the caller (from a verified
//! access token, or the operator), the base URL the client used (key ids are
//! `{base}/keys/{name}/{version}`), and the request, and return Key Vault's JSON or an
//! [`HsmError`] with Azure's status and code. [`routes()`] puts them behind the wire protocol;
//! [`ops`] has the operator subcommands.
//!
//! State lives in the emulator's state directory: `hsm/hsm.json` (name, administrators),
//! `hsm/keys.json` (keys with their material, mode 0600) and `hsm/roles.json` (role
//! assignments). Every change is a read-modify-write under the state directory's lock with an
//! atomic write, and every request reads the files afresh, so operator subcommands and a running
//! server see each other's changes.
//!
//! The release-signing certificate is issued by the emulator's CA for the HSM's host name when
//! the HSM is opened, so it chains to the CA that clients are told to trust.

pub mod error;
pub mod keys;
pub mod ops;
pub mod rbac;
pub mod release;
pub mod routes;
pub mod wrap;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::Zeroizing;

pub use error::HsmError;
pub use keys::{CreateParams, ImportParams, KeyType, KeyVersion, UpdateParams};
pub use rbac::{Action, Assignment, Role};
pub use release::{IssuerKeys, ReleaseParams, ReleaseSigner};
pub use routes::routes;
pub use wrap::ReleaseEnc;

use crate::ca::{Ca, LeafKeyType};
use crate::persist::{PersistError, StateDir};

const HSM_FILE: &str = "hsm/hsm.json";
const KEYS_FILE: &str = "hsm/keys.json";
const ROLES_FILE: &str = "hsm/roles.json";

/// The default name of the emulated HSM until `hsm create` names it.
pub const DEFAULT_HSM_NAME: &str = "emulated-hsm";

/// A failure opening the HSM or reading and writing its state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HsmStoreError {
    /// The state directory failed.
    #[error(transparent)]
    Persist(#[from] PersistError),
    /// A state file is not what it should be.
    #[error("hsm state file {file} is corrupt: {detail}")]
    Corrupt {
        /// The file.
        file: &'static str,
        /// Why.
        detail: String,
    },
    /// The release-signing certificate could not be issued.
    #[error("issuing the hsm's release-signing certificate for {host:?} failed: {detail}")]
    Signer {
        /// The HSM's host name.
        host: String,
        /// Why.
        detail: String,
    },
    /// An operator request was invalid.
    #[error("{0}")]
    Invalid(String),
}

impl From<HsmStoreError> for HsmError {
    fn from(e: HsmStoreError) -> Self {
        tracing::error!(error = %e, "hsm state failure");
        HsmError::internal()
    }
}

/// The HSM's identity: `hsm/hsm.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HsmInfo {
    /// The HSM's name (`MarbleRunHSM`).
    pub name: String,
    /// Object ids given as administrators at creation.
    #[serde(default)]
    pub administrators: Vec<String>,
    /// Creation time, Unix seconds.
    pub created: i64,
}

/// All keys: `hsm/keys.json`. Holds key material: read into zeroed buffers, written with mode
/// 0600.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyStore {
    /// Versions of each key by name, oldest first.
    pub keys: BTreeMap<String, Vec<KeyVersion>>,
}

impl KeyStore {
    /// The key `name` (case-insensitive, as Key Vault names are), latest or `version`.
    pub fn find(&self, name: &str, version: Option<&str>) -> Option<(&str, &KeyVersion)> {
        let (stored_name, versions) = self
            .keys
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))?;
        let found = match version {
            None => versions.last(),
            Some(v) => versions.iter().find(|k| k.version.eq_ignore_ascii_case(v)),
        };
        found.map(|k| (stored_name.as_str(), k))
    }

    fn find_mut(&mut self, name: &str, version: Option<&str>) -> Option<&mut KeyVersion> {
        let (_, versions) = self
            .keys
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))?;
        match version {
            None => versions.last_mut(),
            Some(v) => versions
                .iter_mut()
                .find(|k| k.version.eq_ignore_ascii_case(v)),
        }
    }

    fn add(&mut self, name: &str, key: KeyVersion) -> String {
        let existing = self
            .keys
            .keys()
            .find(|n| n.eq_ignore_ascii_case(name))
            .cloned();
        let name = existing.unwrap_or_else(|| name.to_owned());
        self.keys.entry(name.clone()).or_default().push(key);
        name
    }
}

/// Role assignments: `hsm/roles.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleStore {
    /// The assignments.
    pub assignments: Vec<Assignment>,
}

/// Who makes a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The operator on the command line: not subject to RBAC (like the HSM's administrator
    /// who assigned themselves Crypto User in the guide).
    Operator,
    /// A client with a verified access token.
    Principal {
        /// The token's `oid`.
        object_id: String,
        /// The token's `appid`.
        app_id: String,
    },
}

/// The emulated Managed HSM.
pub struct Hsm {
    state: StateDir,
    host: String,
    signer: ReleaseSigner,
}

impl fmt::Debug for Hsm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hsm")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// The current Unix time.
pub fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl Hsm {
    /// Opens the HSM whose state lives in `state_dir`, serving as `host` (the name its
    /// release-signing certificate is issued for by `ca`; for `localhost` the certificate also
    /// names `127.0.0.1` and `::1`).
    pub fn open(state_dir: &Path, host: &str, ca: &Ca) -> Result<Hsm, HsmStoreError> {
        let state = StateDir::open(state_dir)?;
        let mut names = vec![host.to_owned()];
        if host.eq_ignore_ascii_case("localhost") {
            names.extend(["127.0.0.1".to_owned(), "::1".to_owned()]);
        }
        let signer_error = |detail: String| HsmStoreError::Signer {
            host: host.to_owned(),
            detail,
        };
        let leaf = ca
            .issue_leaf(&names, LeafKeyType::Rsa2048)
            .map_err(|e| signer_error(e.to_string()))?;
        let chain = leaf.chain.iter().map(|c| c.to_vec()).collect();
        let signer = ReleaseSigner::new(&leaf.key_pkcs8, chain).map_err(signer_error)?;
        Ok(Self {
            state,
            host: host.to_owned(),
            signer,
        })
    }

    /// The host name the release-signing certificate is for.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The release-signing identity.
    pub fn signer(&self) -> &ReleaseSigner {
        &self.signer
    }

    /// The HSM's identity, or the default one if it was never created.
    pub fn info(&self) -> Result<HsmInfo, HsmStoreError> {
        Ok(self.state.read_json(HSM_FILE)?.unwrap_or_else(|| HsmInfo {
            name: DEFAULT_HSM_NAME.into(),
            administrators: Vec::new(),
            created: 0,
        }))
    }

    /// Names the HSM and records its administrators (`az keyvault create --hsm-name`).
    pub fn create(&self, name: &str, administrators: &[String]) -> Result<HsmInfo, HsmStoreError> {
        keys::check_name(name).map_err(|e| HsmStoreError::Invalid(e.message))?;
        let info = HsmInfo {
            name: name.to_owned(),
            administrators: administrators.to_vec(),
            created: unix_now(),
        };
        self.state
            .update_json(HSM_FILE, |doc: &mut Option<HsmInfo>| {
                *doc = Some(info.clone());
                Ok::<_, HsmStoreError>(())
            })?;
        Ok(info)
    }

    fn read_keys(&self) -> Result<KeyStore, HsmStoreError> {
        let Some(bytes) = self.state.read_secret(KEYS_FILE)? else {
            return Ok(KeyStore::default());
        };
        serde_json::from_slice(&bytes).map_err(|e| HsmStoreError::Corrupt {
            file: KEYS_FILE,
            detail: e.to_string(),
        })
    }

    /// Changes the key store under the state lock; written back only if `f` succeeds.
    fn update_keys<R>(
        &self,
        f: impl FnOnce(&mut KeyStore) -> Result<R, HsmError>,
    ) -> Result<R, HsmError> {
        let _lock = self.state.lock().map_err(HsmStoreError::from)?;
        let mut store = self.read_keys()?;
        let result = f(&mut store)?;
        let bytes =
            Zeroizing::new(
                serde_json::to_vec(&store).map_err(|e| HsmStoreError::Corrupt {
                    file: KEYS_FILE,
                    detail: e.to_string(),
                })?,
            );
        self.state
            .write_secret(KEYS_FILE, &bytes)
            .map_err(HsmStoreError::from)?;
        Ok(result)
    }

    /// The role assignments.
    pub fn assignments(&self) -> Result<Vec<Assignment>, HsmStoreError> {
        Ok(self
            .state
            .read_json::<RoleStore>(ROLES_FILE)?
            .unwrap_or_default()
            .assignments)
    }

    /// Assigns `role` to `principal_id` at `scope` (`/`, `/keys`, `/keys/NAME`); an identical
    /// assignment is returned instead of duplicated.
    pub fn assign_role(
        &self,
        principal_id: &str,
        role: Role,
        scope: &str,
    ) -> Result<Assignment, HsmStoreError> {
        let scope = rbac::normalise_scope(scope).map_err(HsmStoreError::Invalid)?;
        if principal_id.trim().is_empty() {
            return Err(HsmStoreError::Invalid(
                "the assignee must not be empty".into(),
            ));
        }
        self.state.update_json(ROLES_FILE, |doc: &mut RoleStore| {
            let same = |a: &&Assignment| {
                a.principal_id.eq_ignore_ascii_case(principal_id)
                    && a.role == role
                    && a.scope == scope
            };
            if let Some(existing) = doc.assignments.iter().find(same) {
                return Ok::<_, HsmStoreError>(existing.clone());
            }
            let assignment = Assignment {
                id: uuid::Uuid::new_v4().to_string(),
                principal_id: principal_id.to_owned(),
                role,
                scope,
            };
            doc.assignments.push(assignment.clone());
            Ok(assignment)
        })
    }

    fn authorize(&self, caller: &Caller, action: Action, name: &str) -> Result<(), HsmError> {
        match caller {
            Caller::Operator => Ok(()),
            Caller::Principal { object_id, app_id } => {
                let assignments = self.assignments()?;
                rbac::check(&assignments, &[object_id, app_id], action, name)
            }
        }
    }

    /// `POST /keys/{name}/create`: a new key, or a new version of an existing one.
    pub fn create_key(
        &self,
        caller: &Caller,
        base_url: &str,
        name: &str,
        params: &CreateParams,
    ) -> Result<Value, HsmError> {
        keys::check_name(name)?;
        self.authorize(caller, Action::Create, name)?;
        let key = KeyVersion::create(params, unix_now())?;
        self.store_new_version(base_url, name, key)
    }

    /// `PUT /keys/{name}`: imports a key as a new version.
    pub fn import_key(
        &self,
        caller: &Caller,
        base_url: &str,
        name: &str,
        params: &ImportParams,
    ) -> Result<Value, HsmError> {
        keys::check_name(name)?;
        self.authorize(caller, Action::Import, name)?;
        let key = KeyVersion::import(params, unix_now())?;
        self.store_new_version(base_url, name, key)
    }

    fn store_new_version(
        &self,
        base_url: &str,
        name: &str,
        key: KeyVersion,
    ) -> Result<Value, HsmError> {
        let version = key.version.clone();
        let bundle_key = key.clone();
        let stored_name = self.update_keys(|store| Ok(store.add(name, key)))?;
        bundle_key.bundle(&kid(base_url, &stored_name, Some(&version)))
    }

    /// `GET /keys/{name}[/{version}]`.
    pub fn get_key(
        &self,
        caller: &Caller,
        base_url: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<Value, HsmError> {
        self.authorize(caller, Action::Read, name)?;
        let store = self.read_keys()?;
        let (stored_name, key) = store
            .find(name, version)
            .ok_or_else(|| HsmError::key_not_found(name, version))?;
        key.bundle(&kid(base_url, stored_name, Some(&key.version)))
    }

    /// `PATCH /keys/{name}[/{version}]`.
    pub fn update_key(
        &self,
        caller: &Caller,
        base_url: &str,
        name: &str,
        version: Option<&str>,
        params: &UpdateParams,
    ) -> Result<Value, HsmError> {
        self.authorize(caller, Action::Write, name)?;
        let (stored_name, key) = self.update_keys(|store| {
            let stored_name = store
                .find(name, version)
                .map(|(n, _)| n.to_owned())
                .ok_or_else(|| HsmError::key_not_found(name, version))?;
            let key = store
                .find_mut(name, version)
                .ok_or_else(|| HsmError::key_not_found(name, version))?;
            key.update(params, unix_now())?;
            Ok((stored_name, key.clone()))
        })?;
        key.bundle(&kid(base_url, &stored_name, Some(&key.version)))
    }

    /// Test hook behind `POST /_emulator/keys/{name}/{version}/replace-material`: gives the
    /// `oct-HSM` key version `name`/`version` fresh random material of the same size, keeping
    /// its version id, attributes and release policy. A release of that version is then validly
    /// signed and carries the recorded key id, but holds another key: what a client sees when
    /// the key material it sealed with is gone. Returns the key id of the changed version.
    pub fn replace_material(
        &self,
        base_url: &str,
        name: &str,
        version: &str,
    ) -> Result<String, HsmError> {
        self.update_keys(|store| {
            let stored_name = store
                .find(name, Some(version))
                .map(|(n, _)| n.to_owned())
                .ok_or_else(|| HsmError::key_not_found(name, Some(version)))?;
            let key = store
                .find_mut(name, Some(version))
                .ok_or_else(|| HsmError::key_not_found(name, Some(version)))?;
            key.replace_material()?;
            Ok(kid(base_url, &stored_name, Some(&key.version)))
        })
    }

    /// `POST /keys/{name}[/{version}]/release`: returns the compact JWS of the response's
    /// `value`.
    pub fn release_key(
        &self,
        caller: &Caller,
        request: &ReleaseRequest<'_>,
        issuer_keys: IssuerKeys<'_>,
    ) -> Result<String, HsmError> {
        let ReleaseRequest {
            base_url,
            name,
            version,
            api_version,
            params,
            now,
        } = *request;
        self.authorize(caller, Action::Release, name)?;
        let store = self.read_keys()?;
        let (stored_name, key) = store
            .find(name, version)
            .ok_or_else(|| HsmError::key_not_found(name, version))?;
        let Some(target) = params.target.as_deref() else {
            return Err(HsmError::bad_parameter(
                "missing required property 'target'",
            ));
        };
        let enc = ReleaseEnc::parse(params.enc.as_deref())?;
        key.usable_at(now)?;
        let Some(policy) = key
            .release_policy
            .as_ref()
            .filter(|_| key.attributes.exportable)
        else {
            return Err(HsmError::bad_parameter(format!(
                "key {stored_name}/{} is not exportable; only exportable keys with a release \
                 policy can be released",
                key.version
            )));
        };

        let claims = release::validate_token(target, now, issuer_keys)?;
        let evaluation = policy.parse()?.evaluate(&claims);
        if !evaluation.is_released() {
            tracing::debug!(key = stored_name, reason = %evaluation.summary(), "release refused by the policy");
            return Err(HsmError::forbidden(format!(
                "Target environment attestation statement cannot be verified: the release policy \
                 is not satisfied ({})",
                evaluation.summary()
            ))
            .with_explanation(evaluation.explain()));
        }
        let (kek_kid, kek) = release::wrapping_key(&claims)?;

        let requested_kid = kid(base_url, stored_name, version);
        let echo = release::Echo {
            api_version,
            enc,
            kid: &requested_kid,
            nonce: params.nonce.as_deref(),
        };
        let key_kid = kid(base_url, stored_name, Some(&key.version));
        let payload = release::payload(&echo, key, &key_kid, &kek_kid, &kek)?;
        tracing::debug!(key = stored_name, version = %key.version, enc = enc.as_str(), "key released");
        self.signer.sign(&payload)
    }
}

/// A release request as the route received it.
#[derive(Debug, Clone, Copy)]
pub struct ReleaseRequest<'a> {
    /// The base URL the client used (for key ids).
    pub base_url: &'a str,
    /// The key's name.
    pub name: &'a str,
    /// The version addressed; the latest if `None`.
    pub version: Option<&'a str>,
    /// The request's api-version, echoed in the response.
    pub api_version: &'a str,
    /// The body.
    pub params: &'a ReleaseParams,
    /// The current Unix time, for the token's validity window and the key's.
    pub now: i64,
}

/// `{base}/keys/{name}[/{version}]`.
pub fn kid(base_url: &str, name: &str, version: Option<&str>) -> String {
    match version {
        Some(v) => format!("{}/keys/{name}/{v}", base_url.trim_end_matches('/')),
        None => format!("{}/keys/{name}", base_url.trim_end_matches('/')),
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    use aws_lc_rs::signature::KeyPair as _;
    use serde_json::{Map, json};

    use super::*;
    use crate::jose::{RsaSigningKey, b64url, sign_jwt};

    const ISSUER: &str = "https://attest.example";
    const BASE: &str = "https://localhost:8443";

    struct Fixture {
        dir: tempfile::TempDir,
        hsm: Hsm,
        maa: RsaSigningKey,
        kek: KeyPair,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::open(&StateDir::open(dir.path()).unwrap()).unwrap();
        let hsm = Hsm::open(dir.path(), "localhost", &ca).unwrap();
        let policy = json!({"version": "1.0.0", "anyOf": [{"authority": ISSUER,
            "allOf": [{"claim": "x-ms-sgx-svn", "greaterOrEquals": 2}]}]});
        let params = CreateParams {
            kty: Some("oct-HSM".into()),
            attributes: Some(keys::AttributeParams {
                exportable: Some(true),
                ..Default::default()
            }),
            release_policy: Some(keys::PolicyParams {
                data: Some(b64url(policy.to_string().as_bytes())),
                ..Default::default()
            }),
            ..Default::default()
        };
        hsm.create_key(&Caller::Operator, BASE, "k", &params)
            .unwrap();
        Fixture {
            dir,
            hsm,
            maa: RsaSigningKey::generate().unwrap(),
            kek: KeyPair::generate(KeySize::Rsa2048).unwrap(),
        }
    }

    impl Fixture {
        fn token(&self, svn: u64, exp: i64) -> String {
            let public = self.kek.public_key();
            let mut header = Map::new();
            header.insert("alg".into(), "RS256".into());
            header.insert("kid".into(), "maa-key".into());
            let claims = json!({"iss": ISSUER, "exp": exp, "x-ms-sgx-svn": svn,
                "x-ms-runtime": {"keys": [{"kid": "kek", "kty": "RSA", "use": "enc",
                    "e": b64url(public.exponent().big_endian_without_leading_zero()),
                    "n": b64url(public.modulus().big_endian_without_leading_zero())}]}});
            sign_jwt(&header, claims.as_object().unwrap(), &self.maa).unwrap()
        }

        fn release(&self, token: &str, now: i64) -> Result<String, HsmError> {
            let params = ReleaseParams {
                target: Some(token.into()),
                ..Default::default()
            };
            let request = ReleaseRequest {
                base_url: BASE,
                name: "k",
                version: None,
                api_version: "7.4",
                params: &params,
                now,
            };
            let verifier = self.maa.verifier();
            let keys = move |iss: &str| {
                (iss == ISSUER).then(|| vec![("maa-key".to_owned(), verifier.clone())])
            };
            self.hsm.release_key(&Caller::Operator, &request, &keys)
        }
    }

    #[test]
    fn releases_the_stored_key_wrapped_for_the_tokens_kek() {
        let f = fixture();
        let jws = f.release(&f.token(2, 2_000), 1_000).unwrap();
        let payload: serde_json::Value = serde_json::from_slice(
            &crate::jose::b64url_decode(jws.split('.').nth(1).unwrap()).unwrap(),
        )
        .unwrap();
        assert_eq!(payload["request"]["enc"], "CKM_RSA_AES_KEY_WRAP");
        assert_eq!(payload["request"]["kid"], "https://localhost:8443/keys/k");
        let key_hsm: serde_json::Value = serde_json::from_slice(
            &crate::jose::b64url_decode(
                payload["response"]["key"]["key"]["key_hsm"]
                    .as_str()
                    .unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(key_hsm["header"]["kid"], "kek");
        let ciphertext =
            crate::jose::b64url_decode(key_hsm["ciphertext"].as_str().unwrap()).unwrap();

        // Unwrap independently and compare with the stored material.
        let pkcs8 = f.kek.as_der().unwrap();
        let private = aws_lc_rs::rsa::PrivateDecryptingKey::from_pkcs8(pkcs8.as_ref()).unwrap();
        let oaep = aws_lc_rs::rsa::OaepPrivateDecryptingKey::new(private).unwrap();
        let mut aes = [0u8; 256];
        let aes = oaep
            .decrypt(
                &aws_lc_rs::rsa::OAEP_SHA1_MGF1SHA1,
                &ciphertext[..256],
                &mut aes,
                None,
            )
            .unwrap();
        let kek = aws_lc_rs::key_wrap::AesKek::new(&aws_lc_rs::key_wrap::AES_256, aes).unwrap();
        let mut out = [0u8; 64];
        let key = aws_lc_rs::key_wrap::KeyWrapPadded::unwrap_with_padding(
            kek,
            &ciphertext[256..],
            &mut out,
        )
        .unwrap();
        let (_, stored) = f
            .hsm
            .read_keys()
            .unwrap()
            .find("k", None)
            .map(|(n, k)| (n.to_owned(), k.clone()))
            .unwrap();
        assert_eq!(key, stored.material.as_bytes());
    }

    #[test]
    fn refuses_by_policy_time_and_issuer_with_reasons() {
        let f = fixture();
        let err = f.release(&f.token(1, 2_000), 1_000).unwrap_err();
        assert_eq!((err.status.as_u16(), err.code), (403, "Forbidden"));
        assert!(
            err.message
                .contains("claim x-ms-sgx-svn is 1, expected greaterOrEquals 2"),
            "{err}"
        );
        assert!(
            err.explanation
                .as_deref()
                .unwrap()
                .contains("anyOf[0].allOf[0] [not met]")
        );

        let err = f
            .release(&f.token(2, 1_000), 1_000 + release::CLOCK_SKEW_SECS + 1)
            .unwrap_err();
        assert!(err.message.contains("expired"), "{err}");
        assert!(
            f.release(&f.token(2, 1_000), 1_000 + release::CLOCK_SKEW_SECS)
                .is_ok(),
            "within the skew"
        );

        let other = Fixture {
            maa: RsaSigningKey::generate().unwrap(),
            ..fixture()
        };
        let forged = other.token(2, 2_000);
        let err = f.release(&forged, 1_000).unwrap_err();
        assert!(err.message.contains("signature does not verify"), "{err}");
    }

    #[test]
    fn replaced_material_keeps_the_version_and_policy_but_not_the_key() {
        let f = fixture();
        let stored = |f: &Fixture| {
            f.hsm
                .read_keys()
                .unwrap()
                .find("k", None)
                .map(|(_, k)| k.clone())
                .unwrap()
        };
        let before = stored(&f);
        let kid = f
            .hsm
            .replace_material(BASE, "K", &before.version.to_uppercase())
            .unwrap();
        assert_eq!(kid, format!("{BASE}/keys/k/{}", before.version));
        let after = stored(&f);
        assert_eq!(after.version, before.version);
        assert_eq!(after.release_policy, before.release_policy);
        assert_eq!(after.attributes, before.attributes);
        assert_eq!(
            after.material.as_bytes().len(),
            before.material.as_bytes().len()
        );
        assert_ne!(after.material, before.material);
        // Still releasable: the hook changes what is released, not whether.
        f.release(&f.token(2, 2_000), 1_000).unwrap();

        let err = f.hsm.replace_material(BASE, "k", "0000").unwrap_err();
        assert_eq!(err.status.as_u16(), 404, "{err}");
        let err = f
            .hsm
            .replace_material(BASE, "missing", &before.version)
            .unwrap_err();
        assert_eq!(err.status.as_u16(), 404, "{err}");

        let rsa = CreateParams {
            kty: Some("RSA-HSM".into()),
            ..Default::default()
        };
        let bundle = f
            .hsm
            .create_key(&Caller::Operator, BASE, "r", &rsa)
            .unwrap();
        let version = bundle["key"]["kid"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_owned();
        let err = f.hsm.replace_material(BASE, "r", &version).unwrap_err();
        assert_eq!(err.status.as_u16(), 400, "{err}");
        assert!(err.message.contains("only oct-HSM"), "{err}");
    }

    #[test]
    fn keys_and_roles_persist_in_the_state_directory() {
        let f = fixture();
        let assignment = f
            .hsm
            .assign_role("sp-oid", Role::CryptoServiceReleaseUser, "/keys/k/")
            .unwrap();
        assert_eq!(assignment.scope, "/keys/k");
        assert_eq!(
            f.hsm
                .assign_role("sp-oid", Role::CryptoServiceReleaseUser, "/keys/k")
                .unwrap(),
            assignment
        );

        let ca = Ca::open(&StateDir::open(f.dir.path()).unwrap()).unwrap();
        let reopened = Hsm::open(f.dir.path(), "localhost", &ca).unwrap();
        assert_eq!(reopened.assignments().unwrap(), vec![assignment]);
        let caller = Caller::Principal {
            object_id: "sp-oid".into(),
            app_id: "sp-app".into(),
        };
        let err = reopened.get_key(&caller, BASE, "k", None).unwrap_err();
        assert_eq!(err.code, "AccessDenied", "the release user cannot read");
        let bundle = reopened
            .get_key(&Caller::Operator, BASE, "K", None)
            .unwrap();
        assert!(
            bundle["key"]["kid"]
                .as_str()
                .unwrap()
                .starts_with("https://localhost:8443/keys/k/")
        );
    }
}
