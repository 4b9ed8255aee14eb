//! Update rules: how an uploaded manifest is classified (package update or full update), what a
//! package update may change (U1–U5), what users may do (role permissions), and the rules for
//! uploading values of user-defined secrets (S1–S6).
//!
//! The Coordinator owns the state and the transaction; this module only decides.

use std::collections::BTreeMap;

use quarry_common::DocPath;

use crate::check::{CheckError, Violation};
use crate::decode::{Decoder, Warning, decode_std_base64};
use crate::document::DecodeError;
use crate::model::{Action, Manifest, Package, ResourceType, Secret, SecretBytes, SecretType};
use crate::node::{self, Node};

/// How an uploaded manifest updates the current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpdateKind {
    /// Only `Packages` (and possibly `Config`, which is then ignored, as in MarbleRun): raises
    /// security versions, applied at once for a user holding `UpdateSecurityVersion`.
    Package,
    /// Anything else: replaces the manifest after enough acknowledgements.
    Full,
}

impl UpdateKind {
    /// Classifies `update`: a package update iff `Infrastructures`, `Marbles`, `Users`,
    /// `RecoveryKeys`, `Roles`, `Secrets` and `TLS` are all empty.
    pub fn of(update: &Manifest) -> Self {
        let package_only = update.infrastructures.is_empty()
            && update.marbles.is_empty()
            && update.users.is_empty()
            && update.recovery_keys.is_empty()
            && update.roles.is_empty()
            && update.secrets.is_empty()
            && update.tls.is_empty();
        if package_only {
            Self::Package
        } else {
            Self::Full
        }
    }
}

/// Checks a package update against the current packages (U1–U5).
pub fn check_package_update(
    current: &BTreeMap<String, Package>,
    update: &Manifest,
) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut fail = |path: DocPath, error| violations.push(Violation { path, error });
    let root = DocPath::root().field("Packages");
    if update.packages.is_empty() {
        fail(root.clone(), CheckError::NoPackagesToUpdate);
    }
    for (name, package) in &update.packages {
        let path = root.key(name);
        let Some(existing) = current.get(name) else {
            fail(path, CheckError::UpdateUnknownPackage(name.clone()));
            continue;
        };
        let unupdatable = [
            ("Debug", package.debug),
            ("UniqueID", !package.unique_id.is_empty()),
            ("SignerID", !package.signer_id.is_empty()),
            ("ProductID", package.product_id.is_some()),
        ];
        for (field, set) in unupdatable {
            if set {
                fail(path.field(field), CheckError::UnupdatableValue);
            }
        }
        match (package.security_version, existing.security_version) {
            (None, _) => fail(
                path.field("SecurityVersion"),
                CheckError::MissingSecurityVersion,
            ),
            (Some(new), Some(current)) if new < current => fail(
                path.field("SecurityVersion"),
                CheckError::SecurityVersionDowngrade { new, current },
            ),
            _ => {}
        }
    }
    violations
}

/// The packages after a package update that passed [`check_package_update`]: only the
/// `SecurityVersion` of the listed packages changes.
pub fn apply_package_update(
    current: &BTreeMap<String, Package>,
    update: &Manifest,
) -> BTreeMap<String, Package> {
    let mut packages = current.clone();
    for (name, package) in &update.packages {
        if let Some(existing) = packages.get_mut(name) {
            existing.security_version = package.security_version;
        }
    }
    packages
}

/// The permissions of one user: for each action, the resource names it may act on (the union
/// over the user's roles, as MarbleRun computes it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    granted: BTreeMap<Action, Vec<String>>,
}

impl Permissions {
    /// The permissions `manifest` grants to the user `user` (none for an unknown user).
    pub fn of(manifest: &Manifest, user: &str) -> Self {
        let mut granted: BTreeMap<Action, Vec<String>> = BTreeMap::new();
        let Some(user) = manifest.users.get(user) else {
            return Self { granted };
        };
        for role in user.roles.iter().filter_map(|r| manifest.roles.get(r)) {
            let Some(resource) = role.resource() else {
                continue;
            };
            let actions: &[Action] = match resource {
                ResourceType::Packages => &[Action::UpdateSecurityVersion],
                ResourceType::Secrets => &[Action::ReadSecret, Action::WriteSecret],
                ResourceType::Manifest => &[Action::UpdateManifest],
            };
            for action in actions.iter().filter(|a| role.has_action(**a)) {
                granted
                    .entry(*action)
                    .or_default()
                    .extend(role.resource_names.iter().cloned());
            }
        }
        Self { granted }
    }

    /// Whether the user may perform `action` on every one of `resources` (for
    /// `UpdateManifest`, pass no resources).
    pub fn allows<'a>(&self, action: Action, resources: impl IntoIterator<Item = &'a str>) -> bool {
        let Some(names) = self.granted.get(&action) else {
            return false;
        };
        resources.into_iter().all(|r| names.iter().any(|n| n == r))
    }
}

/// One secret of a secret upload (`POST /api/v2/secrets`), before validation.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct UploadedSecret {
    /// `Cert`: a certificate as base64 DER.
    pub cert: Option<Vec<u8>>,
    /// `Private`: the private key (PKCS#8 DER for certificates).
    pub private: Option<SecretBytes>,
    /// `Key`: the value of a symmetric key or plain secret.
    pub key: Option<SecretBytes>,
}

/// A validated value for a user-defined secret, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UserSecretValue {
    /// The certificate DER (certificate types only).
    pub cert: Option<Vec<u8>>,
    /// `Private`: the key bytes (symmetric and plain) or the private key as uploaded.
    pub private: SecretBytes,
    /// `Public`: the key bytes (symmetric and plain) or the certificate's SubjectPublicKeyInfo.
    pub public: SecretBytes,
}

/// Decodes the body of a v2 secret upload: `{"secrets": {"<name>": {"Cert", "Private",
/// "Key"}}}`.
pub fn parse_secret_upload(
    body: &[u8],
) -> Result<(BTreeMap<String, UploadedSecret>, Vec<Warning>), DecodeError> {
    let node = node::parse_json(body)?;
    let mut d = Decoder::default();
    let mut secrets = BTreeMap::new();
    d.fields(&node, &DocPath::root(), &["secrets"], |d, _, v, p| {
        secrets = decode_upload_map(d, v, p);
    });
    finish(d, secrets)
}

/// Decodes the body of a v1 secret upload: the map of secrets itself.
pub fn parse_secret_upload_v1(
    body: &[u8],
) -> Result<(BTreeMap<String, UploadedSecret>, Vec<Warning>), DecodeError> {
    let node = node::parse_json(body)?;
    let mut d = Decoder::default();
    let secrets = decode_upload_map(&mut d, &node, &DocPath::root());
    finish(d, secrets)
}

fn finish(
    d: Decoder,
    secrets: BTreeMap<String, UploadedSecret>,
) -> Result<(BTreeMap<String, UploadedSecret>, Vec<Warning>), DecodeError> {
    if d.errors.is_empty() {
        Ok((secrets, d.warnings))
    } else {
        Err(DecodeError::Invalid(d.errors))
    }
}

fn decode_upload_map(
    d: &mut Decoder,
    node: &Node,
    path: &DocPath,
) -> BTreeMap<String, UploadedSecret> {
    d.map(node, path, |d, v, p| {
        let mut s = UploadedSecret::default();
        d.fields(
            v,
            p,
            &["Cert", "Private", "Key"],
            |d, name, v, p| match name {
                "Cert" => s.cert = decode_upload_cert(d, v, p),
                "Private" => s.private = d.opt_bytes(v, p).map(SecretBytes::new),
                _ => s.key = d.opt_bytes(v, p).map(SecretBytes::new),
            },
        );
        s
    })
}

fn decode_upload_cert(d: &mut Decoder, node: &Node, path: &DocPath) -> Option<Vec<u8>> {
    match node {
        Node::Null => None,
        Node::String(text) => match decode_std_base64(text) {
            Ok(der) if der.is_empty() => None,
            Ok(der) => Some(der),
            Err(e) => {
                d.error(path, format!("invalid base64: {e}"));
                None
            }
        },
        other => {
            d.error(
                path,
                format!("expected a base64 DER certificate, found {}", other.kind()),
            );
            None
        }
    }
}

/// Validates an upload against the manifest's secrets (S1–S6) and returns the values to store.
/// The caller still checks the `WriteSecret` permission and runs the template dry run.
pub fn check_secret_upload(
    secrets: &BTreeMap<String, Secret>,
    upload: &BTreeMap<String, UploadedSecret>,
) -> Result<BTreeMap<String, UserSecretValue>, Vec<Violation>> {
    let mut values = BTreeMap::new();
    let mut violations = Vec::new();
    for (name, uploaded) in upload {
        let path = DocPath::root().field("secrets").key(name);
        match check_one_upload(name, secrets.get(name), uploaded, &path) {
            Ok(value) => {
                values.insert(name.clone(), value);
            }
            Err(v) => violations.push(v),
        }
    }
    if violations.is_empty() {
        Ok(values)
    } else {
        Err(violations)
    }
}

fn check_one_upload(
    name: &str,
    secret: Option<&Secret>,
    uploaded: &UploadedSecret,
    path: &DocPath,
) -> Result<UserSecretValue, Violation> {
    let fail = |path: DocPath, error| Violation { path, error };
    let Some(secret) = secret else {
        return Err(fail(
            path.clone(),
            CheckError::UploadUnknownSecret(name.to_owned()),
        ));
    };
    if !secret.user_defined {
        return Err(fail(
            path.clone(),
            CheckError::UploadNotUserDefined(name.to_owned()),
        ));
    }
    match &secret.kind {
        SecretType::SymmetricKey => {
            if secret.size == 0 || secret.size % 8 != 0 {
                return Err(fail(
                    path.clone(),
                    CheckError::UploadInvalidSize(secret.size),
                ));
            }
            refuse_present(
                uploaded.cert.is_some(),
                path,
                "Cert",
                "a symmetric key takes no Cert",
            )?;
            refuse_present(
                has(&uploaded.private),
                path,
                "Private",
                "a symmetric key takes no Private",
            )?;
            let key = uploaded.key.clone().unwrap_or_default();
            let bits = u64::try_from(key.len())
                .unwrap_or(u64::MAX)
                .saturating_mul(8);
            if bits != secret.size {
                return Err(fail(
                    path.field("Key"),
                    CheckError::UploadWrongKeySize {
                        got: bits,
                        size: secret.size,
                    },
                ));
            }
            Ok(UserSecretValue {
                cert: None,
                private: key.clone(),
                public: key,
            })
        }
        SecretType::CertRsa | SecretType::CertEcdsa | SecretType::CertEd25519 => {
            refuse_present(
                has(&uploaded.key),
                path,
                "Key",
                "a certificate secret takes no Key",
            )?;
            let Some(der) = &uploaded.cert else {
                return Err(fail(
                    path.field("Cert"),
                    CheckError::UploadMissingValue("a certificate secret needs Cert"),
                ));
            };
            let public = certificate_public_key(der)
                .map_err(|e| fail(path.field("Cert"), CheckError::UploadInvalidCertificate(e)))?;
            Ok(UserSecretValue {
                cert: Some(der.clone()),
                private: uploaded.private.clone().unwrap_or_default(),
                public: SecretBytes::new(public),
            })
        }
        SecretType::Plain => {
            refuse_present(
                uploaded.cert.is_some(),
                path,
                "Cert",
                "a plain secret takes no Cert",
            )?;
            refuse_present(
                has(&uploaded.private),
                path,
                "Private",
                "a plain secret takes no Private",
            )?;
            let key = uploaded.key.clone().unwrap_or_default();
            Ok(UserSecretValue {
                cert: None,
                private: key.clone(),
                public: key,
            })
        }
        other => Err(fail(
            path.clone(),
            CheckError::InvalidSecretType(other.as_str().to_owned()),
        )),
    }
}

fn has(value: &Option<SecretBytes>) -> bool {
    value.as_ref().is_some_and(|v| !v.is_empty())
}

fn refuse_present(
    present: bool,
    path: &DocPath,
    field: &str,
    message: &'static str,
) -> Result<(), Violation> {
    if present {
        return Err(Violation {
            path: path.field(field),
            error: CheckError::UploadUnexpectedValue(message),
        });
    }
    Ok(())
}

/// The SubjectPublicKeyInfo DER of a DER certificate.
fn certificate_public_key(der: &[u8]) -> Result<Vec<u8>, String> {
    crate::cert::parse_der_certificate(der)?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| format!("not a certificate: {e}"))?;
    Ok(cert.public_key().raw.to_vec())
}
