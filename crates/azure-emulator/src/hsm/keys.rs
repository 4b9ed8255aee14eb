//! Keys of the emulated Managed HSM: types, versions, generation and import, release policies,
//! and the `KeyBundle` JSON the service returns.
//!
//! A key is a name with one or more versions; the latest version is the last one created. Each
//! version holds its material (raw bytes for `oct-HSM`, PKCS#8 DER for `RSA-HSM` and `EC-HSM`),
//! its operations, attributes, tags and release policy. Invariants kept here: an exportable
//! version has a release policy; a stored policy parses with `quarry-skr-policy` and is kept in
//! the service's canonical form; key material never appears in `Debug` output and is zeroed on
//! drop.

use std::collections::BTreeMap;
use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeyPairComponents, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P256K1_SHA256_FIXED_SIGNING,
    ECDSA_P384_SHA384_FIXED_SIGNING, ECDSA_P521_SHA512_FIXED_SIGNING, EcdsaKeyPair,
    EcdsaSigningAlgorithm, KeyPair as _,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use quarry_skr_policy::ReleasePolicy;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::error::HsmError;
use crate::jose::{b64url, b64url_decode};

/// `contentType` of a release policy when the request gives none.
pub const POLICY_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// `recoverableDays` reported for every key (the real HSMs in the recordings report 7).
const RECOVERABLE_DAYS: u32 = 7;

/// `recoveryLevel` reported for every key.
const RECOVERY_LEVEL: &str = "CustomizedRecoverable+Purgeable";

/// The family of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyType {
    /// A symmetric AES key (`oct-HSM`).
    #[serde(rename = "oct-HSM")]
    Oct,
    /// An RSA key pair (`RSA-HSM`).
    #[serde(rename = "RSA-HSM")]
    Rsa,
    /// An elliptic-curve key pair (`EC-HSM`).
    #[serde(rename = "EC-HSM")]
    Ec,
}

impl KeyType {
    /// Reads a `kty`; the software names (`oct`, `RSA`, `EC`) map to the HSM ones, since a
    /// Managed HSM stores only HSM keys. Case-insensitive, as the Azure CLI's `--kty OCT-HSM`.
    pub fn parse(kty: &str) -> Result<Self, HsmError> {
        match kty.to_ascii_lowercase().as_str() {
            "oct-hsm" | "oct" => Ok(KeyType::Oct),
            "rsa-hsm" | "rsa" => Ok(KeyType::Rsa),
            "ec-hsm" | "ec" => Ok(KeyType::Ec),
            _ => Err(HsmError::bad_parameter(format!(
                "invalid kty {kty:?}: expected oct-HSM, RSA-HSM or EC-HSM"
            ))),
        }
    }

    /// The name in key bundles (`oct-HSM`).
    pub fn hsm_name(self) -> &'static str {
        match self {
            KeyType::Oct => "oct-HSM",
            KeyType::Rsa => "RSA-HSM",
            KeyType::Ec => "EC-HSM",
        }
    }

    /// The name in released keys (`oct`), as the real service writes it there.
    pub fn released_name(self) -> &'static str {
        match self {
            KeyType::Oct => "oct",
            KeyType::Rsa => "RSA",
            KeyType::Ec => "EC",
        }
    }

    fn default_ops(self) -> &'static [&'static str] {
        match self {
            KeyType::Oct => &["encrypt", "decrypt", "wrapKey", "unwrapKey"],
            KeyType::Rsa => &[
                "encrypt",
                "decrypt",
                "sign",
                "verify",
                "wrapKey",
                "unwrapKey",
            ],
            KeyType::Ec => &["sign", "verify"],
        }
    }
}

/// The key operations Key Vault knows.
const KNOWN_OPS: [&str; 8] = [
    "encrypt",
    "decrypt",
    "sign",
    "verify",
    "wrapKey",
    "unwrapKey",
    "import",
    "export",
];

fn check_ops(ops: &[String]) -> Result<(), HsmError> {
    match ops.iter().find(|op| !KNOWN_OPS.contains(&op.as_str())) {
        Some(op) => Err(HsmError::bad_parameter(format!(
            "invalid key operation {op:?}: expected one of {}",
            KNOWN_OPS.join(", ")
        ))),
        None => Ok(()),
    }
}

/// Checks a key name: 1 to 127 characters of `[0-9a-zA-Z-]`.
pub fn check_name(name: &str) -> Result<(), HsmError> {
    let valid = (1..=127).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(HsmError::bad_parameter(format!(
            "invalid key name {name:?}: use 1 to 127 characters of 0-9, a-z, A-Z and -"
        )))
    }
}

/// Key material: raw bytes or PKCS#8 DER. Zeroed on drop; never shown by `Debug`; stored as
/// standard base64 in the (mode 0600) key file.
#[derive(Clone, PartialEq, Eq)]
pub struct Material(Zeroizing<Vec<u8>>);

impl Material {
    /// Wraps key bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Material {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Material(..)")
    }
}

impl Serialize for Material {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&Zeroizing::new(STANDARD.encode(self.as_bytes())))
    }
}

impl<'de> Deserialize<'de> for Material {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Zeroizing::new(String::deserialize(d)?);
        STANDARD
            .decode(text.as_bytes())
            .map(Material::new)
            .map_err(serde::de::Error::custom)
    }
}

/// The mutable attributes of a key version, and its timestamps (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attributes {
    /// Whether the key may be used.
    pub enabled: bool,
    /// Not usable before this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Not usable after this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Whether the key may be released (Secure Key Release).
    pub exportable: bool,
    /// Creation time.
    pub created: i64,
    /// Last update.
    pub updated: i64,
}

/// A stored release policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPolicy {
    /// `contentType` as given (or the default).
    pub content_type: String,
    /// The policy JSON in the service's canonical form.
    pub canonical: String,
    /// Whether the policy can never change.
    pub immutable: bool,
}

impl StoredPolicy {
    /// Decodes and checks a `release_policy` member of a request.
    pub fn from_request(policy: &PolicyParams) -> Result<Self, HsmError> {
        let content_type = policy
            .content_type
            .clone()
            .unwrap_or_else(|| POLICY_CONTENT_TYPE.into());
        if !content_type
            .to_ascii_lowercase()
            .starts_with("application/json")
        {
            return Err(HsmError::bad_parameter(format!(
                "Key Release Policy: unsupported contentType {content_type:?}, expected {POLICY_CONTENT_TYPE:?}"
            )));
        }
        let Some(data) = &policy.data else {
            return Err(HsmError::bad_parameter(
                "Key Release Policy: missing 'data' property",
            ));
        };
        let bytes = b64url_decode(data).map_err(|e| {
            HsmError::bad_parameter(format!("Key Release Policy: 'data' is not base64url: {e}"))
        })?;
        let parsed = ReleasePolicy::from_json(&bytes)
            .map_err(|e| HsmError::bad_parameter(format!("Key Release Policy: {e}")))?;
        Ok(Self {
            content_type,
            canonical: parsed.to_canonical_json(),
            immutable: policy.immutable.unwrap_or(false),
        })
    }

    /// The parsed policy. A stored policy was checked when stored; if the state file was edited
    /// into something unparsable, the error says so.
    pub fn parse(&self) -> Result<ReleasePolicy, HsmError> {
        ReleasePolicy::from_json(self.canonical.as_bytes()).map_err(|e| {
            tracing::error!(error = %e, "stored release policy does not parse");
            HsmError::internal()
        })
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("contentType".into(), self.content_type.clone().into());
        m.insert("data".into(), b64url(self.canonical.as_bytes()).into());
        m.insert("immutable".into(), self.immutable.into());
        Value::Object(m)
    }
}

/// One version of a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyVersion {
    /// 32 lowercase hex characters.
    pub version: String,
    /// The key family.
    pub kty: KeyType,
    /// Size in bits (oct and RSA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_size: Option<u32>,
    /// Curve name (EC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// Permitted operations.
    pub key_ops: Vec<String>,
    /// The secret: raw bytes (oct) or PKCS#8 DER (RSA, EC).
    pub material: Material,
    /// Attributes and timestamps.
    pub attributes: Attributes,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The release policy, required when exportable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_policy: Option<StoredPolicy>,
}

/// The `release_policy` member of a request.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PolicyParams {
    /// `contentType`.
    #[serde(rename = "contentType", default)]
    pub content_type: Option<String>,
    /// Base64url of the policy JSON.
    #[serde(default)]
    pub data: Option<String>,
    /// Whether the policy is immutable.
    #[serde(default)]
    pub immutable: Option<bool>,
}

/// The `attributes` member of a request.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AttributeParams {
    /// `enabled`.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// `nbf`.
    #[serde(default)]
    pub nbf: Option<i64>,
    /// `exp`.
    #[serde(default)]
    pub exp: Option<i64>,
    /// `exportable`.
    #[serde(default)]
    pub exportable: Option<bool>,
}

/// Body of `POST /keys/{name}/create`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CreateParams {
    /// Key type.
    pub kty: Option<String>,
    /// Size in bits.
    #[serde(default)]
    pub key_size: Option<u32>,
    /// RSA public exponent (only 65537).
    #[serde(default)]
    pub public_exponent: Option<u64>,
    /// Operations.
    #[serde(default)]
    pub key_ops: Option<Vec<String>>,
    /// Attributes.
    #[serde(default)]
    pub attributes: Option<AttributeParams>,
    /// Tags.
    #[serde(default)]
    pub tags: Option<BTreeMap<String, String>>,
    /// EC curve.
    #[serde(default)]
    pub crv: Option<String>,
    /// Release policy.
    #[serde(default)]
    pub release_policy: Option<PolicyParams>,
}

/// Body of `PUT /keys/{name}` (import).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImportParams {
    /// The key as a JWK with its private members.
    pub key: Option<Map<String, Value>>,
    /// Whether to store in the HSM (always so in a Managed HSM).
    #[serde(default, alias = "hsm")]
    #[serde(rename = "Hsm")]
    pub hsm: Option<bool>,
    /// Attributes.
    #[serde(default)]
    pub attributes: Option<AttributeParams>,
    /// Tags.
    #[serde(default)]
    pub tags: Option<BTreeMap<String, String>>,
    /// Release policy.
    #[serde(default)]
    pub release_policy: Option<PolicyParams>,
}

/// Body of `PATCH /keys/{name}/{version}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UpdateParams {
    /// Operations.
    #[serde(default)]
    pub key_ops: Option<Vec<String>>,
    /// Attributes.
    #[serde(default)]
    pub attributes: Option<AttributeParams>,
    /// Tags.
    #[serde(default)]
    pub tags: Option<BTreeMap<String, String>>,
    /// Release policy.
    #[serde(default)]
    pub release_policy: Option<PolicyParams>,
}

/// A fresh version id: 32 lowercase hex characters.
pub fn new_version_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn curve(crv: &str) -> Result<(&'static str, &'static EcdsaSigningAlgorithm), HsmError> {
    match crv {
        "P-256" => Ok(("P-256", &ECDSA_P256_SHA256_FIXED_SIGNING)),
        "P-384" => Ok(("P-384", &ECDSA_P384_SHA384_FIXED_SIGNING)),
        "P-521" => Ok(("P-521", &ECDSA_P521_SHA512_FIXED_SIGNING)),
        "P-256K" => Ok(("P-256K", &ECDSA_P256K1_SHA256_FIXED_SIGNING)),
        _ => Err(HsmError::bad_parameter(format!(
            "invalid crv {crv:?}: expected P-256, P-384, P-521 or P-256K"
        ))),
    }
}

fn crypto_failure(what: &str) -> HsmError {
    tracing::error!(what, "key operation failed in the crypto provider");
    HsmError::internal()
}

fn attributes_from(params: Option<&AttributeParams>, now: i64) -> Attributes {
    let p = params.cloned().unwrap_or_default();
    Attributes {
        enabled: p.enabled.unwrap_or(true),
        nbf: p.nbf,
        exp: p.exp,
        exportable: p.exportable.unwrap_or(false),
        created: now,
        updated: now,
    }
}

/// The policy rules shared by create and import: an exportable key needs a policy.
fn policy_for(
    exportable: bool,
    policy: Option<&PolicyParams>,
) -> Result<Option<StoredPolicy>, HsmError> {
    match policy {
        Some(p) => StoredPolicy::from_request(p).map(Some),
        None if exportable => Err(HsmError::bad_parameter(
            "AKV.SKR.1004: Exportable keys must have release policy.",
        )),
        None => Ok(None),
    }
}

impl KeyVersion {
    /// Generates a new version from a create request.
    pub fn create(params: &CreateParams, now: i64) -> Result<Self, HsmError> {
        let Some(kty) = params.kty.as_deref() else {
            return Err(HsmError::bad_parameter("missing required property 'kty'"));
        };
        let kty = KeyType::parse(kty)?;
        let attributes = attributes_from(params.attributes.as_ref(), now);
        let release_policy = policy_for(attributes.exportable, params.release_policy.as_ref())?;
        let key_ops = params
            .key_ops
            .clone()
            .unwrap_or_else(|| kty.default_ops().iter().map(|s| (*s).to_owned()).collect());
        check_ops(&key_ops)?;

        let (key_size, crv, material) = match kty {
            KeyType::Oct => {
                let size = params.key_size.unwrap_or(256);
                if ![128, 192, 256].contains(&size) {
                    return Err(HsmError::bad_parameter(format!(
                        "invalid key_size {size} for oct-HSM: expected 128, 192 or 256"
                    )));
                }
                let mut bytes = vec![0u8; size as usize / 8];
                aws_lc_rs::rand::fill(&mut bytes).map_err(|_| crypto_failure("random"))?;
                (Some(size), None, Material::new(bytes))
            }
            KeyType::Rsa => {
                let size = params.key_size.unwrap_or(2048);
                let key_size = match size {
                    2048 => KeySize::Rsa2048,
                    3072 => KeySize::Rsa3072,
                    4096 => KeySize::Rsa4096,
                    _ => {
                        return Err(HsmError::bad_parameter(format!(
                            "invalid key_size {size} for RSA-HSM: expected 2048, 3072 or 4096"
                        )));
                    }
                };
                if let Some(e) = params.public_exponent.filter(|e| *e != 65537) {
                    return Err(HsmError::bad_parameter(format!(
                        "invalid public_exponent {e}: only 65537 is supported"
                    )));
                }
                let pair = RsaKeyPair::generate(key_size).map_err(|_| crypto_failure("rsa"))?;
                let der = pair.as_der().map_err(|_| crypto_failure("rsa pkcs8"))?;
                (Some(size), None, Material::new(der.as_ref().to_vec()))
            }
            KeyType::Ec => {
                let (name, alg) = curve(params.crv.as_deref().unwrap_or("P-256"))?;
                let pair = EcdsaKeyPair::generate(alg).map_err(|_| crypto_failure("ec"))?;
                let der = pair.to_pkcs8v1().map_err(|_| crypto_failure("ec pkcs8"))?;
                (
                    None,
                    Some(name.to_owned()),
                    Material::new(der.as_ref().to_vec()),
                )
            }
        };
        Ok(Self {
            version: new_version_id(),
            kty,
            key_size,
            crv,
            key_ops,
            material,
            attributes,
            tags: params.tags.clone().unwrap_or_default(),
            release_policy,
        })
    }

    /// Replaces the material of an `oct-HSM` version with fresh random bytes of the same
    /// length (the emulator's test hook; the real service never changes a version's material).
    pub fn replace_material(&mut self) -> Result<(), HsmError> {
        if self.kty != KeyType::Oct {
            return Err(HsmError::bad_parameter(format!(
                "key version {} is {}: only oct-HSM key material can be replaced",
                self.version,
                self.kty.hsm_name()
            )));
        }
        let mut bytes = vec![0u8; self.material.as_bytes().len()];
        loop {
            aws_lc_rs::rand::fill(&mut bytes).map_err(|_| crypto_failure("random"))?;
            // Equal 128-bit or longer random values do not happen; the check keeps the hook's
            // promise ("another key") unconditional.
            if bytes.as_slice() != self.material.as_bytes() {
                break;
            }
        }
        self.material = Material::new(bytes);
        Ok(())
    }

    /// Builds a new version from an import request.
    pub fn import(params: &ImportParams, now: i64) -> Result<Self, HsmError> {
        let Some(jwk) = &params.key else {
            return Err(HsmError::bad_parameter("missing required property 'key'"));
        };
        let Some(kty) = jwk.get("kty").and_then(Value::as_str) else {
            return Err(HsmError::bad_parameter(
                "key: missing required property 'kty'",
            ));
        };
        let kty = KeyType::parse(kty)?;
        let attributes = attributes_from(params.attributes.as_ref(), now);
        let release_policy = policy_for(attributes.exportable, params.release_policy.as_ref())?;
        let key_ops = match jwk.get("key_ops") {
            None | Some(Value::Null) => kty.default_ops().iter().map(|s| (*s).to_owned()).collect(),
            Some(ops) => serde_json::from_value::<Vec<String>>(ops.clone()).map_err(|_| {
                HsmError::bad_parameter("key.key_ops: expected an array of strings")
            })?,
        };
        check_ops(&key_ops)?;
        let member = |name: &str| -> Result<Zeroizing<Vec<u8>>, HsmError> {
            let text = jwk.get(name).and_then(Value::as_str).ok_or_else(|| {
                HsmError::bad_parameter(format!("key: missing required property '{name}'"))
            })?;
            b64url_decode(text)
                .map(Zeroizing::new)
                .map_err(|e| HsmError::bad_parameter(format!("key.{name}: not base64url: {e}")))
        };

        let (key_size, crv, material) = match kty {
            KeyType::Oct => {
                let k = member("k")?;
                if ![16, 24, 32].contains(&k.len()) {
                    return Err(HsmError::bad_parameter(format!(
                        "key.k: an oct-HSM key must be 128, 192 or 256 bits, not {} bits",
                        k.len() * 8
                    )));
                }
                (Some(k.len() as u32 * 8), None, Material::new(k.to_vec()))
            }
            KeyType::Rsa => {
                let (n, e, d) = (member("n")?, member("e")?, member("d")?);
                let (p, q) = (member("p")?, member("q")?);
                let (dp, dq, qi) = (member("dp")?, member("dq")?, member("qi")?);
                let components = KeyPairComponents {
                    public_key: PublicKeyComponents {
                        n: n.as_slice(),
                        e: e.as_slice(),
                    },
                    d: d.as_slice(),
                    p: p.as_slice(),
                    q: q.as_slice(),
                    dP: dp.as_slice(),
                    dQ: dq.as_slice(),
                    qInv: qi.as_slice(),
                };
                let pair = RsaKeyPair::from_components(&components).map_err(|e| {
                    HsmError::bad_parameter(format!("key: not a valid RSA private key: {e}"))
                })?;
                let bits = pair.public_modulus_len() as u32 * 8;
                if !(2048..=4096).contains(&bits) {
                    return Err(HsmError::bad_parameter(format!(
                        "key: RSA-HSM keys must be 2048 to 4096 bits, not {bits}"
                    )));
                }
                let der = pair.as_der().map_err(|_| crypto_failure("rsa pkcs8"))?;
                (Some(bits), None, Material::new(der.as_ref().to_vec()))
            }
            KeyType::Ec => {
                let crv = jwk.get("crv").and_then(Value::as_str).unwrap_or("");
                let (name, alg) = curve(crv)?;
                let (x, y, d) = (member("x")?, member("y")?, member("d")?);
                let mut point = Vec::with_capacity(1 + x.len() + y.len());
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                let pair = EcdsaKeyPair::from_private_key_and_public_key(alg, &d, &point).map_err(
                    |e| {
                        HsmError::bad_parameter(format!("key: not a valid {name} private key: {e}"))
                    },
                )?;
                let der = pair.to_pkcs8v1().map_err(|_| crypto_failure("ec pkcs8"))?;
                (
                    None,
                    Some(name.to_owned()),
                    Material::new(der.as_ref().to_vec()),
                )
            }
        };
        Ok(Self {
            version: new_version_id(),
            kty,
            key_size,
            crv,
            key_ops,
            material,
            attributes,
            tags: params.tags.clone().unwrap_or_default(),
            release_policy,
        })
    }

    /// Applies an update request.
    pub fn update(&mut self, params: &UpdateParams, now: i64) -> Result<(), HsmError> {
        if let Some(ops) = &params.key_ops {
            check_ops(ops)?;
        }
        if let Some(policy) = &params.release_policy {
            if self.release_policy.as_ref().is_some_and(|p| p.immutable) {
                return Err(HsmError::bad_parameter(
                    "Key Release Policy: the policy of this key is immutable and cannot be changed",
                ));
            }
            self.release_policy = Some(StoredPolicy::from_request(policy)?);
        }
        if let Some(ops) = &params.key_ops {
            self.key_ops = ops.clone();
        }
        if let Some(a) = &params.attributes {
            if let Some(exportable) = a.exportable
                && exportable != self.attributes.exportable
            {
                return Err(HsmError::bad_parameter(
                    "the exportable attribute cannot be changed after creation",
                ));
            }
            if let Some(enabled) = a.enabled {
                self.attributes.enabled = enabled;
            }
            if a.nbf.is_some() {
                self.attributes.nbf = a.nbf;
            }
            if a.exp.is_some() {
                self.attributes.exp = a.exp;
            }
        }
        if let Some(tags) = &params.tags {
            self.tags = tags.clone();
        }
        self.attributes.updated = now;
        Ok(())
    }

    /// Whether the key may be used at `now`: enabled and inside `nbf`..`exp`.
    pub fn usable_at(&self, now: i64) -> Result<(), HsmError> {
        let a = &self.attributes;
        if !a.enabled {
            return Err(HsmError::forbidden(format!(
                "Operation is not allowed on a disabled key (version {})",
                self.version
            )));
        }
        if a.nbf.is_some_and(|nbf| now < nbf) || a.exp.is_some_and(|exp| now >= exp) {
            return Err(HsmError::forbidden(format!(
                "Operation is not allowed on a key outside its validity period (version {})",
                self.version
            )));
        }
        Ok(())
    }

    /// The public members of the key's JWK (`n`/`e` or `crv`/`x`/`y`; nothing for oct).
    fn public_members(&self) -> Result<Map<String, Value>, HsmError> {
        let mut m = Map::new();
        match self.kty {
            KeyType::Oct => {}
            KeyType::Rsa => {
                let pair = RsaKeyPair::from_pkcs8(self.material.as_bytes())
                    .map_err(|_| crypto_failure("stored rsa key"))?;
                let public = pair.public_key();
                m.insert(
                    "e".into(),
                    b64url(public.exponent().big_endian_without_leading_zero()).into(),
                );
                m.insert(
                    "n".into(),
                    b64url(public.modulus().big_endian_without_leading_zero()).into(),
                );
            }
            KeyType::Ec => {
                let (name, alg) = curve(self.crv.as_deref().unwrap_or(""))?;
                let pair = EcdsaKeyPair::from_pkcs8(alg, self.material.as_bytes())
                    .map_err(|_| crypto_failure("stored ec key"))?;
                let point = pair.public_key().as_ref();
                let len = (point.len() - 1) / 2;
                m.insert("crv".into(), name.into());
                m.insert("x".into(), b64url(&point[1..1 + len]).into());
                m.insert("y".into(), b64url(&point[1 + len..]).into());
            }
        }
        Ok(m)
    }

    /// The `key` member of a bundle: public JWK members, `key_ops`, `kid`, `kty`, in
    /// alphabetical order like the service; `extra` (`key_hsm`) is merged in order too.
    pub fn jwk(
        &self,
        kid: &str,
        kty: &str,
        extra: Option<(&str, Value)>,
    ) -> Result<Value, HsmError> {
        let mut all = self.public_members()?;
        all.insert("key_ops".into(), self.key_ops.clone().into());
        all.insert("kid".into(), kid.into());
        all.insert("kty".into(), kty.into());
        if let Some((name, value)) = extra {
            all.insert(name.into(), value);
        }
        let mut sorted: Vec<(String, Value)> = all.into_iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Value::Object(sorted.into_iter().collect()))
    }

    /// The `attributes` member, alphabetical.
    pub fn attributes_json(&self) -> Value {
        let a = &self.attributes;
        let mut m = Map::new();
        m.insert("created".into(), a.created.into());
        m.insert("enabled".into(), a.enabled.into());
        if let Some(exp) = a.exp {
            m.insert("exp".into(), exp.into());
        }
        m.insert("exportable".into(), a.exportable.into());
        if let Some(nbf) = a.nbf {
            m.insert("nbf".into(), nbf.into());
        }
        m.insert("recoverableDays".into(), RECOVERABLE_DAYS.into());
        m.insert("recoveryLevel".into(), RECOVERY_LEVEL.into());
        m.insert("updated".into(), a.updated.into());
        Value::Object(m)
    }

    /// The `release_policy` member, if any.
    pub fn policy_json(&self) -> Option<Value> {
        self.release_policy.as_ref().map(StoredPolicy::to_json)
    }

    /// The KeyBundle of create, import, get and update: no secret material.
    pub fn bundle(&self, kid: &str) -> Result<Value, HsmError> {
        let mut m = Map::new();
        m.insert("attributes".into(), self.attributes_json());
        m.insert("key".into(), self.jwk(kid, self.kty.hsm_name(), None)?);
        if let Some(policy) = self.policy_json() {
            m.insert("release_policy".into(), policy);
        }
        if !self.tags.is_empty() {
            m.insert(
                "tags".into(),
                serde_json::to_value(&self.tags).unwrap_or_default(),
            );
        }
        Ok(Value::Object(m))
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::encoding::AsBigEndian;
    use serde_json::json;

    use super::*;

    const POLICY: &str = r#"{"version":"1.0","anyOf":[{"authority":"https://a","allOf":[{"claim":"x","equals":true}]}]}"#;

    fn policy_params() -> PolicyParams {
        PolicyParams {
            data: Some(b64url(POLICY.as_bytes())),
            ..Default::default()
        }
    }

    fn create(value: Value) -> Result<KeyVersion, HsmError> {
        let params: CreateParams = serde_json::from_value(value).unwrap();
        KeyVersion::create(&params, 1_700_000_000)
    }

    #[test]
    fn creates_each_key_type_with_public_members() {
        let oct = create(json!({"kty": "oct-HSM", "key_size": 256})).unwrap();
        assert_eq!(oct.material.as_bytes().len(), 32);
        let bundle = oct.bundle("https://h/keys/k/v").unwrap();
        assert_eq!(bundle["key"]["kty"], "oct-HSM");
        assert!(bundle["key"].get("k").is_none(), "no secret in a bundle");

        let rsa = create(json!({"kty": "RSA-HSM", "key_size": 2048})).unwrap();
        let bundle = rsa.bundle("kid").unwrap();
        assert_eq!(bundle["key"]["e"], "AQAB");
        assert_eq!(
            b64url_decode(bundle["key"]["n"].as_str().unwrap())
                .unwrap()
                .len(),
            256
        );
        let keys: Vec<&String> = bundle["key"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["e", "key_ops", "kid", "kty", "n"]);

        for (crv, len) in [("P-256", 32), ("P-384", 48), ("P-521", 66), ("P-256K", 32)] {
            let ec = create(json!({"kty": "EC", "crv": crv})).unwrap();
            assert_eq!(ec.kty, KeyType::Ec);
            let bundle = ec.bundle("kid").unwrap();
            assert_eq!(bundle["key"]["crv"], crv);
            assert_eq!(
                b64url_decode(bundle["key"]["x"].as_str().unwrap())
                    .unwrap()
                    .len(),
                len
            );
        }
    }

    #[test]
    fn exportable_keys_need_a_valid_policy() {
        let err =
            create(json!({"kty": "oct-HSM", "attributes": {"exportable": true}})).unwrap_err();
        assert_eq!((err.status.as_u16(), err.code), (400, "BadParameter"));
        assert!(err.message.contains("AKV.SKR.1004"), "{err}");

        let no_version =
            b64url(br#"{"anyOf":[{"authority":"a","allOf":[{"claim":"x","equals":1}]}]}"#);
        let err = create(json!({"kty": "oct-HSM", "attributes": {"exportable": true},
            "release_policy": {"data": no_version}}))
        .unwrap_err();
        assert!(err.message.contains("missing member \"version\""), "{err}");

        let bad_op = b64url(
            br#"{"version":"1.0.0","anyOf":[{"authority":"a","allOf":[{"claim":"x","equal":1}]}]}"#,
        );
        let err = create(json!({"kty": "oct-HSM", "attributes": {"exportable": true},
            "release_policy": {"data": bad_op}}))
        .unwrap_err();
        assert!(err.message.contains("unknown operator \"equal\""), "{err}");

        let key = create(json!({"kty": "oct-HSM", "attributes": {"exportable": true},
            "release_policy": {"data": b64url(POLICY.as_bytes())}}))
        .unwrap();
        let bundle = key.bundle("kid").unwrap();
        assert_eq!(bundle["release_policy"]["contentType"], POLICY_CONTENT_TYPE);
        let stored = b64url_decode(bundle["release_policy"]["data"].as_str().unwrap()).unwrap();
        assert_eq!(
            String::from_utf8(stored).unwrap(),
            r#"{"anyOf":[{"allOf":[{"claim":"x","equals":true}],"authority":"https://a"}],"version":"1.0.0"}"#
        );
    }

    #[test]
    fn refuses_bad_parameters() {
        for (body, needle) in [
            (json!({}), "'kty'"),
            (json!({"kty": "AES"}), "invalid kty"),
            (json!({"kty": "oct-HSM", "key_size": 100}), "key_size 100"),
            (json!({"kty": "RSA-HSM", "key_size": 1024}), "key_size 1024"),
            (
                json!({"kty": "RSA-HSM", "public_exponent": 3}),
                "public_exponent 3",
            ),
            (json!({"kty": "EC-HSM", "crv": "P-224"}), "crv"),
            (
                json!({"kty": "oct-HSM", "key_ops": ["fly"]}),
                "invalid key operation",
            ),
        ] {
            let err = create(body.clone()).unwrap_err();
            assert_eq!(err.status.as_u16(), 400, "{body}");
            assert!(err.message.contains(needle), "{body}: {err}");
        }
        assert!(check_name("marblerun-skr-key").is_ok());
        assert!(check_name("bad_name").is_err());
        assert!(check_name("").is_err());
    }

    #[test]
    fn imports_keys_and_round_trips_rsa_components() {
        let import = |key: Value| {
            let params = ImportParams {
                key: Some(key.as_object().unwrap().clone()),
                release_policy: Some(policy_params()),
                attributes: Some(AttributeParams {
                    exportable: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            };
            KeyVersion::import(&params, 1)
        };
        let oct = import(json!({"kty": "oct-HSM", "k": b64url(&[7u8; 32])})).unwrap();
        assert_eq!(oct.material.as_bytes(), &[7u8; 32]);
        assert!(import(json!({"kty": "oct-HSM", "k": b64url(&[7u8; 20])})).is_err());
        assert!(import(json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"})).is_err());

        // An EC key exported from one version imports into another with the same public key.
        let ec = create(json!({"kty": "EC-HSM", "crv": "P-256"})).unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, ec.material.as_bytes())
                .unwrap();
        let d = pair.private_key().as_be_bytes().unwrap();
        let public = ec.bundle("k").unwrap();
        let imported = import(
            json!({"kty": "EC-HSM", "crv": "P-256", "d": b64url(d.as_ref()),
            "x": public["key"]["x"], "y": public["key"]["y"]}),
        )
        .unwrap();
        assert_eq!(
            imported.bundle("k").unwrap()["key"]["x"],
            public["key"]["x"]
        );
        assert!(
            import(
                json!({"kty": "EC-HSM", "crv": "P-256", "d": b64url(&[1u8; 32]),
            "x": public["key"]["x"], "y": public["key"]["y"]})
            )
            .is_err()
        );
    }

    #[test]
    fn updates_respect_immutability_and_exportability() {
        let mut key = create(json!({"kty": "oct-HSM", "attributes": {"exportable": true},
            "release_policy": {"data": b64url(POLICY.as_bytes()), "immutable": true}}))
        .unwrap();
        let err = key
            .update(
                &UpdateParams {
                    release_policy: Some(policy_params()),
                    ..Default::default()
                },
                2,
            )
            .unwrap_err();
        assert!(err.message.contains("immutable"), "{err}");
        let err = key
            .update(
                &UpdateParams {
                    attributes: Some(AttributeParams {
                        exportable: Some(false),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                2,
            )
            .unwrap_err();
        assert!(err.message.contains("exportable"), "{err}");
        key.update(
            &UpdateParams {
                attributes: Some(AttributeParams {
                    enabled: Some(false),
                    ..Default::default()
                }),
                ..Default::default()
            },
            3,
        )
        .unwrap();
        assert_eq!(key.attributes.updated, 3);
        assert_eq!(key.usable_at(4).unwrap_err().status.as_u16(), 403);
    }

    #[test]
    fn debug_hides_material() {
        let key = create(json!({"kty": "oct-HSM"})).unwrap();
        let text = format!("{key:?}");
        assert!(text.contains("Material(..)"), "{text}");
        let stored = serde_json::to_string(&key).unwrap();
        let back: KeyVersion = serde_json::from_str(&stored).unwrap();
        assert_eq!(back, key);
    }
}
