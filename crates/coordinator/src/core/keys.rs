//! The keys of the sealed state and the encoding of their values: the one place that knows
//! them, so that every module reads and writes the state the same way.
//!
//! The layout follows MarbleRun's (compound keys `<prefix>:<name>`, the same names), with
//! Quarry's own value encodings where MarbleRun's depend on Go:
//!
//! | key | value |
//! |---|---|
//! | `state` | the state number as ASCII decimal (`3`) |
//! | `ca` | root, intermediate and Marble root certificates and keys ([`CaMaterial::to_bytes`]) |
//! | `rootSecret`, `previousRootSecret` | 32 bytes, input of per-Marble symmetric keys |
//! | `manifest` | the manifest's bytes exactly as uploaded |
//! | `manifestSignature` | DER ECDSA signature of `manifest` by the root key |
//! | `package:<name>` | [`StoredPackage`] as JSON (package updates change it, not `manifest`) |
//! | `secret:<name>`, `previousSecret:<name>` | [`StoredSecret`] as JSON, MarbleRun's secret object |
//! | `updateLog` | JSON lines, each ending in `\n` ([`update_log_line`]) |
//! | `monotonicCounter:<b64 type>:<b64 uuid>:<b64 name>` | 8-byte little-endian `u64` ([`monotonic_counter_key`]) |
//!
//! Marbles, TLS tags, users and roles are read from the stored manifest: only a full update
//! replaces them, and it replaces the manifest too. Keys for activations and pending updates
//! are added by the modules that own them, with a prefix of their own.
//!
//! The recovery data in the clear at the start of `sealed_data` is [`RecoveryData`].

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use quarry_pki::{CaMaterial, CoordinatorCa};
use quarry_store::{State, Transaction};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::{Zeroize, Zeroizing};

/// `state`: the Coordinator's state number.
pub const STATE: &[u8] = b"state";
/// `ca`: the CA certificates and keys.
pub const CA: &[u8] = b"ca";
/// `rootSecret`: input key material of per-Marble symmetric keys.
pub const ROOT_SECRET: &[u8] = b"rootSecret";
/// `previousRootSecret`: the root secret before the last rotation.
pub const PREVIOUS_ROOT_SECRET: &[u8] = b"previousRootSecret";
/// `manifest`: the raw manifest.
pub const MANIFEST: &[u8] = b"manifest";
/// `manifestSignature`: the root key's signature of the raw manifest.
pub const MANIFEST_SIGNATURE: &[u8] = b"manifestSignature";
/// `updateLog`: the update log.
pub const UPDATE_LOG: &[u8] = b"updateLog";
/// Prefix of `package:<name>`.
pub const PACKAGE_PREFIX: &str = "package:";
/// Prefix of `secret:<name>`.
pub const SECRET_PREFIX: &str = "secret:";
/// Prefix of `previousSecret:<name>`.
pub const PREVIOUS_SECRET_PREFIX: &str = "previousSecret:";

/// Prefix of `monotonicCounter:<b64 type>:<b64 uuid>:<b64 name>`.
pub const MONOTONIC_COUNTER_PREFIX: &str = "monotonicCounter:";

/// A value in the state that cannot be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A required key is absent.
    #[error("sealed state has no {key:?}")]
    Missing {
        /// The key.
        key: String,
    },
    /// A value does not decode.
    #[error("sealed state value {key:?} is invalid: {reason}")]
    Invalid {
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
}

fn invalid(key: &[u8], reason: impl fmt::Display) -> KeyError {
    KeyError::Invalid {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: reason.to_string(),
    }
}

fn missing(key: &[u8]) -> KeyError {
    KeyError::Missing {
        key: String::from_utf8_lossy(key).into_owned(),
    }
}

/// `package:<name>`.
pub fn package_key(name: &str) -> Vec<u8> {
    format!("{PACKAGE_PREFIX}{name}").into_bytes()
}

/// `secret:<name>`.
pub fn secret_key(name: &str) -> Vec<u8> {
    format!("{SECRET_PREFIX}{name}").into_bytes()
}

/// `previousSecret:<name>`.
pub fn previous_secret_key(name: &str) -> Vec<u8> {
    format!("{PREVIOUS_SECRET_PREFIX}{name}").into_bytes()
}

/// The stored state number, if any.
pub fn state_code(state: &State) -> Result<Option<u8>, KeyError> {
    let Some(value) = state.get(STATE) else {
        return Ok(None);
    };
    let text = std::str::from_utf8(value).map_err(|e| invalid(STATE, e))?;
    text.parse().map(Some).map_err(|e| invalid(STATE, e))
}

/// Sets the state number.
pub fn put_state_code(tx: &mut Transaction<'_>, code: u8) {
    tx.put(STATE, code.to_string());
}

/// The CA restored from the state.
pub fn ca(state: &State) -> Result<CoordinatorCa, KeyError> {
    let bytes = state.get(CA).ok_or_else(|| missing(CA))?;
    let material = CaMaterial::from_bytes(bytes).map_err(|e| invalid(CA, e))?;
    CoordinatorCa::from_material(&material).map_err(|e| invalid(CA, e))
}

/// Stores the CA.
pub fn put_ca(tx: &mut Transaction<'_>, ca: &CoordinatorCa) -> Result<(), quarry_pki::Error> {
    let material = ca.to_material()?;
    tx.put(CA, material.to_bytes().to_vec());
    Ok(())
}

/// The root secret.
pub fn root_secret(state: &State) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    state
        .get(ROOT_SECRET)
        .map(|v| Zeroizing::new(v.to_vec()))
        .ok_or_else(|| missing(ROOT_SECRET))
}

/// The previous root secret, or the root secret when it was never rotated.
pub fn previous_root_secret(state: &State) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    match state.get(PREVIOUS_ROOT_SECRET) {
        Some(v) => Ok(Zeroizing::new(v.to_vec())),
        None => root_secret(state),
    }
}

/// The raw manifest, if one is set.
pub fn manifest(state: &State) -> Option<&[u8]> {
    state.get(MANIFEST)
}

/// The manifest's signature, if a manifest is set.
pub fn manifest_signature(state: &State) -> Option<&[u8]> {
    state.get(MANIFEST_SIGNATURE)
}

/// A package as stored (MarbleRun's `PackageProperties`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StoredPackage {
    /// `Debug`.
    pub debug: bool,
    /// `UniqueID`.
    #[serde(rename = "UniqueID")]
    pub unique_id: String,
    /// `SignerID`.
    #[serde(rename = "SignerID")]
    pub signer_id: String,
    /// `ProductID`.
    #[serde(rename = "ProductID")]
    pub product_id: Option<u64>,
    /// `SecurityVersion`.
    pub security_version: Option<u64>,
    /// `AcceptedTCBStatuses`.
    #[serde(rename = "AcceptedTCBStatuses")]
    pub accepted_tcb_statuses: Vec<String>,
    /// `AcceptedAdvisories`.
    pub accepted_advisories: Vec<String>,
}

impl From<&quarry_manifest::Package> for StoredPackage {
    fn from(p: &quarry_manifest::Package) -> Self {
        Self {
            debug: p.debug,
            unique_id: p.unique_id.clone(),
            signer_id: p.signer_id.clone(),
            product_id: p.product_id,
            security_version: p.security_version,
            accepted_tcb_statuses: p.accepted_tcb_statuses.clone(),
            accepted_advisories: p.accepted_advisories.clone(),
        }
    }
}

/// The package `name`, if stored.
pub fn package(state: &State, name: &str) -> Result<Option<StoredPackage>, KeyError> {
    let key = package_key(name);
    state
        .get(&key)
        .map(|v| serde_json::from_slice(v).map_err(|e| invalid(&key, e)))
        .transpose()
}

/// Stores the package `name`.
pub fn put_package(tx: &mut Transaction<'_>, name: &str, package: &StoredPackage) {
    // Serialising a struct of strings, numbers and lists cannot fail.
    let json = serde_json::to_vec(package).unwrap_or_default();
    tx.put(package_key(name), json);
}

/// A secret as stored and as `GET /api/v2/secrets` returns it: MarbleRun's secret object with
/// its capitalised keys, byte fields in standard base64 or `null`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StoredSecret {
    /// `Type`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// `Size`.
    pub size: u64,
    /// `Shared`.
    pub shared: bool,
    /// `UserDefined`.
    pub user_defined: bool,
    /// `Cert`: certificate DER.
    #[serde(with = "opt_base64")]
    pub cert: Option<Vec<u8>>,
    /// `ValidFor` in days.
    pub valid_for: u64,
    /// `Private`: PKCS#8 DER for certificates, the key or data otherwise.
    #[serde(with = "opt_base64")]
    pub private: Option<Vec<u8>>,
    /// `Public`: PKIX DER for certificates, the key or data otherwise.
    #[serde(with = "opt_base64")]
    pub public: Option<Vec<u8>>,
}

impl fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredSecret")
            .field("kind", &self.kind)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Drop for StoredSecret {
    fn drop(&mut self) {
        self.private.zeroize();
        self.public.zeroize();
    }
}

mod opt_base64 {
    use super::*;

    pub(super) fn serialize<S: serde::Serializer>(
        value: &Option<Vec<u8>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            // The base64 text carries the secret's bytes as much as they do.
            Some(bytes) => serializer.serialize_str(&Zeroizing::new(STANDARD.encode(bytes))),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        let text: Option<Zeroizing<String>> =
            Option::<String>::deserialize(deserializer)?.map(Zeroizing::new);
        text.map(|t| STANDARD.decode(t.as_bytes()))
            .transpose()
            .map_err(serde::de::Error::custom)
    }
}

/// The secret `name`, if stored.
pub fn secret(state: &State, name: &str) -> Result<Option<StoredSecret>, KeyError> {
    decode_secret(state, &secret_key(name))
}

/// The previous value of the secret `name`, if stored.
pub fn previous_secret(state: &State, name: &str) -> Result<Option<StoredSecret>, KeyError> {
    decode_secret(state, &previous_secret_key(name))
}

fn decode_secret(state: &State, key: &[u8]) -> Result<Option<StoredSecret>, KeyError> {
    state
        .get(key)
        .map(|v| serde_json::from_slice(v).map_err(|e| invalid(key, e)))
        .transpose()
}

/// Stores the secret `name` as its current and (when `previous` is true) previous value.
pub fn put_secret(tx: &mut Transaction<'_>, name: &str, secret: &StoredSecret, previous: bool) {
    // Serialising strings, numbers and byte lists cannot fail.
    let json = Zeroizing::new(serde_json::to_vec(secret).unwrap_or_default());
    if previous {
        tx.put(previous_secret_key(name), json.to_vec());
    }
    tx.put(secret_key(name), json.to_vec());
}

/// `monotonicCounter:<b64 type>:<b64 uuid>:<b64 name>`, as MarbleRun names a Marble's counter:
/// standard base64 with padding of the Marble type, the UUID's 16 bytes and the counter name,
/// so no part can contain the `:` separator and every (type, UUID, name) has its own key.
pub fn monotonic_counter_key(marble_type: &str, uuid: &[u8; 16], name: &str) -> Vec<u8> {
    format!(
        "{MONOTONIC_COUNTER_PREFIX}{}:{}:{}",
        STANDARD.encode(marble_type),
        STANDARD.encode(uuid),
        STANDARD.encode(name)
    )
    .into_bytes()
}

/// The monotonic counter under `key` (from [`monotonic_counter_key`]); 0 when unset.
pub fn monotonic_counter(state: &State, key: &[u8]) -> Result<u64, KeyError> {
    let Some(value) = state.get(key) else {
        return Ok(0);
    };
    let bytes: [u8; 8] = value
        .try_into()
        .map_err(|_| invalid(key, format!("{} bytes, expected 8", value.len())))?;
    Ok(u64::from_le_bytes(bytes))
}

/// Sets the monotonic counter under `key` (8 bytes, little-endian).
pub fn put_monotonic_counter(tx: &mut Transaction<'_>, key: &[u8], value: u64) {
    tx.put(key.to_vec(), value.to_le_bytes().to_vec());
}

/// The update log's text.
pub fn update_log(state: &State) -> &[u8] {
    state.get(UPDATE_LOG).unwrap_or_default()
}

/// Appends `line` (from [`update_log_line`]) to the update log.
pub fn append_update_log(tx: &mut Transaction<'_>, line: &str) {
    let mut log = update_log(tx).to_vec();
    log.extend_from_slice(line.as_bytes());
    tx.put(UPDATE_LOG, log);
}

/// One line of the update log, as MarbleRun writes it: a JSON object with `time` (UTC,
/// milliseconds, `Z`), `update` (the message), then `fields` in order; ends with `\n`.
pub fn update_log_line(
    at: OffsetDateTime,
    update: &str,
    fields: &[(&str, serde_json::Value)],
) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    let at = at.to_offset(time::UtcOffset::UTC);
    // The format has only numeric components of a valid date, so formatting cannot fail.
    let time = at.format(&format).unwrap_or_default();
    let mut line = serde_json::Map::new();
    line.insert("time".into(), time.into());
    line.insert("update".into(), update.into());
    for (key, value) in fields {
        line.insert((*key).to_owned(), value.clone());
    }
    let mut text = serde_json::Value::Object(line).to_string();
    text.push('\n');
    text
}

/// The recovery data kept in the clear at the start of `sealed_data`: how the data key was
/// shared, SHA-256 of each share, and the recovery public keys, so that uploads can be checked
/// before the state is decrypted. It is authenticated (additional data of the state's
/// encryption) only once a key decrypts the state; the final checks use the decrypted
/// manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryData {
    /// `single`, `xor` or `shamir`.
    pub mode: String,
    /// Shares needed (Shamir), or the number of shares (XOR), or 1.
    pub threshold: usize,
    /// Hex SHA-256 of each plain share (empty in single-party mode).
    pub shares: Vec<String>,
    /// Recovery key name → PEM public key.
    pub keys: BTreeMap<String, String>,
}

impl RecoveryData {
    /// The recovery data of a sharing in `mode` among `keys` (name → PEM public key), with the
    /// SHA-256 of each plain share.
    pub fn new(
        mode: quarry_pki::recovery::RecoveryMode,
        share_hashes: &[[u8; 32]],
        keys: BTreeMap<String, String>,
    ) -> Self {
        use quarry_pki::recovery::RecoveryMode;
        let (name, threshold) = match mode {
            RecoveryMode::SingleParty => ("single", 1),
            RecoveryMode::Xor => ("xor", keys.len()),
            RecoveryMode::Shamir { threshold } => ("shamir", threshold),
        };
        Self {
            mode: name.to_owned(),
            threshold,
            shares: share_hashes.iter().map(hex::encode).collect(),
            keys,
        }
    }

    /// The JSON bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising strings, numbers and maps cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads the bytes; `None` for empty bytes (no manifest was ever set).
    pub fn from_bytes(bytes: &[u8]) -> Result<Option<Self>, KeyError> {
        if bytes.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(bytes)
            .map(Some)
            .map_err(|e| invalid(b"recovery data", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_log_line_matches_marbleruns_form() {
        let at = time::macros::datetime!(2024-05-01 12:00:00.123 UTC);
        let line = update_log_line(
            at,
            "Secret set",
            &[("user", "alice".into()), ("secret", "UserData".into())],
        );
        assert_eq!(
            line,
            "{\"time\":\"2024-05-01T12:00:00.123Z\",\"update\":\"Secret set\",\"user\":\"alice\",\
             \"secret\":\"UserData\"}\n"
        );
    }

    #[test]
    fn secrets_use_marbleruns_keys_and_hide_values_in_debug() {
        let secret = StoredSecret {
            kind: "symmetric-key".into(),
            size: 128,
            shared: true,
            user_defined: false,
            cert: None,
            valid_for: 0,
            private: Some(vec![1, 2]),
            public: Some(vec![1, 2]),
        };
        let json = serde_json::to_string(&secret).unwrap();
        assert_eq!(
            json,
            "{\"Type\":\"symmetric-key\",\"Size\":128,\"Shared\":true,\"UserDefined\":false,\
             \"Cert\":null,\"ValidFor\":0,\"Private\":\"AQI=\",\"Public\":\"AQI=\"}"
        );
        let back: StoredSecret = serde_json::from_str(&json).unwrap();
        assert_eq!(back, secret);
        assert!(!format!("{secret:?}").contains("AQI"));
    }

    #[test]
    fn monotonic_counter_keys_are_marbleruns() {
        let uuid = [
            0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0, 0xc0, 0x4f, 0xd4, 0x30,
            0xc8,
        ];
        assert_eq!(
            monotonic_counter_key("web", &uuid, "ctr"),
            b"monotonicCounter:d2Vi:a6e4EJ2tEdGAtADAT9QwyA==:Y3Ry".to_vec()
        );
        // A separator inside a part cannot make two identities collide.
        assert_ne!(
            monotonic_counter_key("a:b", &uuid, "c"),
            monotonic_counter_key("a", &uuid, "b:c")
        );
    }

    #[test]
    fn recovery_data_round_trips_and_empty_means_none() {
        assert_eq!(RecoveryData::from_bytes(b"").unwrap(), None);
        let data = RecoveryData {
            mode: "xor".into(),
            threshold: 2,
            shares: vec!["00".into(), "11".into()],
            keys: BTreeMap::from([("a".into(), "pem".into())]),
        };
        assert_eq!(
            RecoveryData::from_bytes(&data.to_bytes()).unwrap(),
            Some(data)
        );
        assert!(RecoveryData::from_bytes(b"{").is_err());
    }
}
