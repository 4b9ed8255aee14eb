//! What users do after the manifest is set: read and write secrets, package updates, full
//! manifest updates with acknowledgements, cancelling them, and reading the update log.
//!
//! An uploaded certificate secret must carry a key of the secret's type, and its `Private`, if
//! given, must be the certificate's own key in PKCS#8 (MarbleRun stores either as it comes).
//!
//! Every operation authenticates the user against the manifest it reads, under the core mutex
//! for the ones that change the state, so a full update that replaces the users cannot race a
//! request by a user it removes. Every state change is one store commit and one `info` log
//! line naming the user; a refused request writes nothing.
//!
//! A pending full update is kept in the sealed state under [`PENDING_UPDATE`] (so it survives
//! a restart, as in MarbleRun). Applying it rotates the intermediate and the Marble root,
//! regenerates secrets as MarbleRun does, rotates the root secret on `RotateRootSecret`
//! (keeping the old one as `previousRootSecret`, `.Previous` in templates), re-shares the data
//! key when the recovery keys or threshold changed, and re-seals with or without the HSM layer
//! when the `AzureHSMSealing` gate changed. If applying fails the pending update stays, so it
//! can be acknowledged again once the cause (say, an unreachable HSM) is gone, or cancelled.

use std::collections::BTreeMap;

use quarry_manifest::template::{self, dry_run_manifest};
use quarry_manifest::update::{
    UpdateKind, UploadedSecret, apply_package_update, check_package_update, check_secret_upload,
};
use quarry_manifest::{Action, FeatureGate, Manifest, ManifestDocument, SecretType, check};
use quarry_pki::SystemRandom;
use quarry_pki::recovery::{RecoveryMode, share_recovery_key};
use quarry_store::Transaction;
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;

use super::keys::{self, RecoveryData, StoredPackage, StoredSecret};
use super::manifest::parse_recovery_keys;
use super::secrets::{check_secret_definitions, generate_secrets};
use super::{Core, CoreError, store_seal_mode};
use crate::users::{self, AuthError, User};

/// `pendingUpdate`: the full update waiting for acknowledgements (JSON: the manifest, the
/// required users, who acknowledged, how many acknowledgements are missing).
pub const PENDING_UPDATE: &[u8] = b"pendingUpdate";

/// Message when an update is submitted while another is pending (MarbleRun's words).
pub const UPDATE_IN_PROGRESS: &str = "update already in progress. Acknowledge the update to apply \
     it, or cancel it to start a new one";
/// Message when there is no pending update.
pub const NO_UPDATE: &str = "no update in progress";
/// Message when a v1 acknowledgement would apply an update whose new recovery secrets v1
/// cannot return.
pub const V1_RECOVERY_SECRETS: &str = "this acknowledgement applies an update that changes the \
     recovery keys, and /update-manifest cannot return the new recovery secrets: acknowledge \
     with POST /api/v2/update-manifest instead";

/// The highest security version an SGX enclave can have (ISVSVN is a 16-bit number).
pub use quarry_manifest::check::MAX_SECURITY_VERSION;

/// Who receives the recovery secrets an applied update issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecoverySecretsTo {
    /// The caller's answer carries them.
    Caller,
    /// The answer cannot carry them: refuse to apply such an update.
    Nobody,
}

/// A refused or failed user operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserOpError {
    /// Authentication or authorisation failed (`401`).
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The operation failed.
    #[error(transparent)]
    Core(#[from] CoreError),
}

type Result<T> = std::result::Result<T, UserOpError>;

/// The full update waiting for acknowledgements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PendingUpdate {
    /// The new manifest's bytes, base64.
    manifest: String,
    /// Users who may acknowledge (the current holders of `UpdateManifest`).
    required_users: Vec<String>,
    /// Users who acknowledged.
    acknowledged: Vec<String>,
    /// Acknowledgements still needed.
    missing_acknowledgments: u64,
}

impl PendingUpdate {
    fn raw(&self) -> std::result::Result<Vec<u8>, CoreError> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(&self.manifest)
            .map_err(|e| CoreError::Internal(format!("pending update: {e}")))
    }

    fn missing_users(&self) -> Vec<String> {
        self.required_users
            .iter()
            .filter(|u| !self.acknowledged.contains(u))
            .cloned()
            .collect()
    }
}

/// The answer to a manifest update or an acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateOutcome {
    /// Acknowledgements still needed (0 once applied).
    pub missing_acknowledgments: u64,
    /// Users who may still acknowledge; `None` for a package update.
    pub missing_users: Option<Vec<String>>,
    /// New recovery secrets, when the update changed the recovery keys or threshold.
    pub recovery_secrets: Option<BTreeMap<String, Vec<u8>>>,
}

/// The pending update as `GET /api/v2/update-manifest` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingInfo {
    /// The pending manifest's bytes.
    pub manifest: Vec<u8>,
    /// Acknowledgements still needed.
    pub missing_acknowledgments: u64,
    /// Users who have not acknowledged.
    pub missing_users: Vec<String>,
}

impl Core {
    /// The stored manifest, decoded (state 3 only).
    fn current_manifest(
        &self,
        state: &quarry_store::State,
    ) -> std::result::Result<ManifestDocument, CoreError> {
        let raw = keys::manifest(state).ok_or_else(|| CoreError::NotFound {
            what: "no manifest has been set".into(),
        })?;
        ManifestDocument::from_json(raw.to_vec())
            .map_err(|e| CoreError::Internal(format!("stored manifest does not decode: {e}")))
    }

    /// Authenticates the client whose handshake proved `leaf` against the stored manifest.
    pub fn authenticate(&self, leaf: Option<&[u8]>) -> Result<User> {
        self.require_state("authenticating a user", &[3], "state 3")?;
        let snapshot = self.snapshot();
        let document = self.current_manifest(&snapshot)?;
        Ok(users::authenticate(document.manifest(), leaf)?)
    }

    /// `GET /api/v2/secrets`: the named secrets, for a user allowed to read all of them.
    pub fn read_secrets(
        &self,
        leaf: Option<&[u8]>,
        names: &[String],
    ) -> Result<BTreeMap<String, StoredSecret>> {
        self.require_state("reading secrets", &[3], "state 3")?;
        let snapshot = self.snapshot();
        let document = self.current_manifest(&snapshot)?;
        let user = users::authenticate(document.manifest(), leaf)?;
        user.require(Action::ReadSecret, names.iter().map(String::as_str))?;
        let mut out = BTreeMap::new();
        for name in names {
            let secret = keys::secret(&snapshot, name)
                .map_err(CoreError::from)?
                .ok_or_else(|| CoreError::NotFound {
                    what: format!("secret {name:?} does not exist"),
                })?;
            out.insert(name.clone(), secret);
        }
        tracing::info!(user = ?user.name(), secrets = ?names, "secrets read");
        Ok(out)
    }

    /// `POST /api/v2/secrets`: sets values of user-defined secrets, for a user allowed to write
    /// all of them, after the size and type rules and the template dry run.
    pub fn write_secrets(
        &self,
        leaf: Option<&[u8]>,
        upload: &BTreeMap<String, UploadedSecret>,
    ) -> Result<()> {
        let _guard = self.lock();
        self.require_state("setting secrets", &[3], "state 3")?;
        let snapshot = self.snapshot();
        let document = self.current_manifest(&snapshot)?;
        let manifest = document.manifest();
        let user = users::authenticate(manifest, leaf)?;
        if upload.is_empty() {
            return Err(CoreError::invalid("secrets: no secrets to set").into());
        }
        user.require(Action::WriteSecret, upload.keys().map(String::as_str))?;
        let values = check_secret_upload(&manifest.secrets, upload).map_err(|violations| {
            let list: Vec<String> = violations.iter().map(ToString::to_string).collect();
            CoreError::invalid(list.join("; "))
        })?;
        // MarbleRun stores a certificate of another key type, or a private key of another
        // certificate, as it comes; a Marble then gets a key pair that cannot work.
        let mismatches: Vec<String> = values
            .iter()
            .filter_map(|(name, value)| {
                let cert = value.cert.as_deref()?;
                let kind = &manifest.secrets[name].kind;
                check_key_pair(kind, cert, value.private.expose())
                    .err()
                    .map(|reason| format!("secrets[{name:?}].{reason}"))
            })
            .collect();
        if !mismatches.is_empty() {
            return Err(CoreError::invalid(mismatches.join("; ")).into());
        }

        let mut known = BTreeMap::new();
        for (name, value) in &values {
            let kind = &manifest.secrets[name].kind;
            let bytes = |b: &[u8]| template::SecretBytes::from_slice(b);
            let secret = match kind {
                SecretType::SymmetricKey => {
                    template::Secret::symmetric_key(bytes(value.private.expose()))
                }
                SecretType::Plain => template::Secret::plain(bytes(value.private.expose())),
                other => template::SecretType::from_model(other)
                    .and_then(|t| {
                        template::Secret::certificate(
                            t,
                            bytes(value.cert.as_deref().unwrap_or_default()),
                            bytes(value.public.expose()),
                            bytes(value.private.expose()),
                        )
                    })
                    .ok_or_else(|| {
                        CoreError::invalid(format!("secrets[{name:?}]: unsupported Type"))
                    })?,
            };
            known.insert(name.clone(), secret);
        }
        dry_run_manifest(manifest, &known)
            .map_err(|e| CoreError::invalid(format!("secrets: template dry run failed: {e}")))?;

        let now = OffsetDateTime::now_utc();
        let mut tx = self.store().begin();
        for (name, value) in &values {
            let definition = &manifest.secrets[name];
            let stored = StoredSecret {
                kind: definition.kind.as_str().to_owned(),
                size: definition.size,
                shared: definition.shared,
                user_defined: true,
                cert: value.cert.clone(),
                valid_for: definition.valid_for,
                private: Some(value.private.expose().to_vec()),
                public: Some(value.public.expose().to_vec()),
            };
            keys::put_secret(&mut tx, name, &stored, false);
            keys::append_update_log(
                &mut tx,
                &keys::update_log_line(
                    now,
                    "Secret set",
                    &[
                        ("user", user.name().into()),
                        ("secret", name.as_str().into()),
                        ("type", definition.kind.as_str().into()),
                    ],
                ),
            );
        }
        tx.commit().map_err(CoreError::from)?;
        tracing::info!(
            user = ?user.name(),
            secrets = ?values.keys().collect::<Vec<_>>(),
            "user-defined secrets set"
        );
        Ok(())
    }

    /// The update log, one JSON object per line.
    pub fn update_log(&self) -> std::result::Result<String, CoreError> {
        self.require_state("reading the update log", &[3], "state 3")?;
        let snapshot = self.snapshot();
        Ok(String::from_utf8_lossy(keys::update_log(&snapshot)).into_owned())
    }

    /// `POST /api/v2/update`: a package update (applied at once) or a full update (pending
    /// until enough users acknowledged it; applied at once when none more are needed).
    pub fn update_manifest(&self, leaf: Option<&[u8]>, raw: Vec<u8>) -> Result<UpdateOutcome> {
        let _guard = self.lock();
        self.require_state("updating the manifest", &[3], "state 3")?;
        let snapshot = self.snapshot();
        let current = self.current_manifest(&snapshot)?;
        let user = users::authenticate(current.manifest(), leaf)?;
        if snapshot.get(PENDING_UPDATE).is_some() {
            return Err(CoreError::invalid(UPDATE_IN_PROGRESS).into());
        }
        let update = ManifestDocument::from_json(raw)
            .map_err(|e| CoreError::invalid(format!("invalid manifest: {e}")))?;
        match UpdateKind::of(update.manifest()) {
            UpdateKind::Package => self.package_update(&snapshot, &current, &user, &update),
            _ => self.submit_full_update(&current, &user, update),
        }
    }

    fn package_update(
        &self,
        snapshot: &quarry_store::State,
        current: &ManifestDocument,
        user: &User,
        update: &ManifestDocument,
    ) -> Result<UpdateOutcome> {
        let manifest = current.manifest();
        let mut packages = manifest.packages.clone();
        for (name, package) in &mut packages {
            if let Some(stored) = keys::package(snapshot, name).map_err(CoreError::from)? {
                package.security_version = stored.security_version;
            }
        }
        // The permission first, on every named package that exists (and, when none does, on
        // none: the user must hold UpdateSecurityVersion at all), so that a user without it
        // learns nothing more; unknown packages are then named by the check.
        user.require(
            Action::UpdateSecurityVersion,
            update
                .manifest()
                .packages
                .keys()
                .filter(|name| packages.contains_key(*name))
                .map(String::as_str),
        )?;
        let mut violations: Vec<String> = check_package_update(&packages, update.manifest())
            .iter()
            .map(ToString::to_string)
            .collect();
        // An enclave's ISVSVN is 16 bits: a higher version would refuse every enclave of the
        // package until a full update lowers it again (package updates cannot).
        for (name, package) in &update.manifest().packages {
            if let Some(version) = package
                .security_version
                .filter(|v| *v > MAX_SECURITY_VERSION)
            {
                violations.push(format!(
                    "Packages[{name:?}].SecurityVersion: {version} is more than \
                     {MAX_SECURITY_VERSION}, the highest security version (ISVSVN) an enclave \
                     can have"
                ));
            }
        }
        if !violations.is_empty() {
            return Err(CoreError::invalid(format!(
                "invalid package update: {}",
                violations.join("; ")
            ))
            .into());
        }
        let updated = apply_package_update(&packages, update.manifest());

        let now = OffsetDateTime::now_utc();
        let mut ca = keys::ca(snapshot).map_err(CoreError::from)?;
        ca.rotate_intermediate(now, &SystemRandom)
            .map_err(CoreError::from)?;
        let secrets = generate_secrets(manifest, &ca, now)?;

        let mut tx = self.store().begin();
        keys::put_ca(&mut tx, &ca).map_err(CoreError::from)?;
        for (name, secret) in &secrets {
            // Shared certificates are re-issued under the new Marble root; symmetric keys and
            // user-defined values stay.
            if secret.user_defined || !is_certificate(&secret.kind) {
                continue;
            }
            keys::put_secret(&mut tx, name, secret, false);
        }
        for name in update.manifest().packages.keys() {
            let package = &updated[name];
            keys::put_package(&mut tx, name, &StoredPackage::from(package));
            keys::append_update_log(
                &mut tx,
                &keys::update_log_line(
                    now,
                    "SecurityVersion increased",
                    &[
                        ("user", user.name().into()),
                        ("package", name.as_str().into()),
                        ("new version", json!(package.security_version)),
                    ],
                ),
            );
            tracing::info!(
                user = ?user.name(),
                package = ?name,
                security_version = package.security_version.unwrap_or_default(),
                "package update applied"
            );
        }
        tx.commit().map_err(CoreError::from)?;
        self.set_ca(ca)?;
        Ok(UpdateOutcome {
            missing_acknowledgments: 0,
            missing_users: None,
            recovery_secrets: None,
        })
    }

    fn submit_full_update(
        &self,
        current: &ManifestDocument,
        user: &User,
        update: ManifestDocument,
    ) -> Result<UpdateOutcome> {
        user.require(Action::UpdateManifest, [])?;
        self.validate_new_manifest(update.manifest())?;
        let required = users::manifest_updaters(current.manifest());
        let threshold = match current.manifest().config.update_threshold {
            0 => u64::try_from(required.len()).unwrap_or(u64::MAX),
            n => n,
        };
        let pending = PendingUpdate {
            manifest: base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                update.raw(),
            ),
            required_users: required,
            acknowledged: vec![user.name().to_owned()],
            missing_acknowledgments: threshold.saturating_sub(1),
        };
        let fingerprint = update.fingerprint();
        let now = OffsetDateTime::now_utc();
        if pending.missing_acknowledgments == 0 {
            let layers = self.layers_for_update(current.manifest(), update.manifest())?;
            let mut tx = self.store().begin();
            keys::append_update_log(
                &mut tx,
                &keys::update_log_line(
                    now,
                    "Complete Manifest update initiated by user. No further acknowledgements \
                     required",
                    &[
                        ("user", user.name().into()),
                        ("manifestFingerprint", fingerprint.clone().into()),
                    ],
                ),
            );
            tracing::info!(user = ?user.name(), %fingerprint, "full manifest update submitted");
            let (ca, secrets) = self.apply_full_update(&mut tx, current, &update, layers, now)?;
            super::commit_issuing(tx, secrets.as_ref())?;
            self.set_ca(ca)?;
            tracing::info!(%fingerprint, "full manifest update applied");
            return Ok(UpdateOutcome {
                missing_acknowledgments: 0,
                missing_users: Some(pending.missing_users()),
                recovery_secrets: secrets,
            });
        }
        let missing_users = pending.missing_users();
        let mut tx = self.store().begin();
        put_pending(&mut tx, &pending);
        keys::append_update_log(
            &mut tx,
            &keys::update_log_line(
                now,
                "Complete Manifest update initiated by user. Waiting for acknowledgments to \
                 apply the update",
                &[
                    ("user", user.name().into()),
                    (
                        "missingAcknowledgments",
                        pending.missing_acknowledgments.into(),
                    ),
                    ("missingUsers", json!(missing_users)),
                    ("manifestFingerprint", fingerprint.clone().into()),
                ],
            ),
        );
        tx.commit().map_err(CoreError::from)?;
        tracing::info!(
            user = ?user.name(),
            %fingerprint,
            missing = pending.missing_acknowledgments,
            "full manifest update pending"
        );
        Ok(UpdateOutcome {
            missing_acknowledgments: pending.missing_acknowledgments,
            missing_users: Some(missing_users),
            recovery_secrets: None,
        })
    }

    /// `POST /api/v2/update-manifest`: acknowledges the pending update with its exact bytes;
    /// applies it when the last needed acknowledgement arrives.
    pub fn acknowledge_update(&self, leaf: Option<&[u8]>, raw: &[u8]) -> Result<UpdateOutcome> {
        self.acknowledge(leaf, raw, RecoverySecretsTo::Caller)
    }

    /// `POST /update-manifest` (v1): as [`Core::acknowledge_update`], but v1 answers with a
    /// message only, so an acknowledgement that would apply an update issuing new recovery
    /// secrets is refused (`400`, nothing written) instead of losing them: the user
    /// acknowledges through `POST /api/v2/update-manifest`, which returns them.
    pub fn acknowledge_update_v1(&self, leaf: Option<&[u8]>, raw: &[u8]) -> Result<UpdateOutcome> {
        self.acknowledge(leaf, raw, RecoverySecretsTo::Nobody)
    }

    fn acknowledge(
        &self,
        leaf: Option<&[u8]>,
        raw: &[u8],
        recovery_secrets_to: RecoverySecretsTo,
    ) -> Result<UpdateOutcome> {
        let _guard = self.lock();
        self.require_state("acknowledging a manifest update", &[3], "state 3")?;
        let snapshot = self.snapshot();
        let current = self.current_manifest(&snapshot)?;
        let user = users::authenticate(current.manifest(), leaf)?;
        let mut pending = pending(&snapshot)?;
        if !pending.required_users.iter().any(|u| u == user.name()) {
            return Err(AuthError::NotAllowed {
                user: user.name().to_owned(),
                action: "acknowledge manifest updates",
                resources: Vec::new(),
            }
            .into());
        }
        if pending.raw()? != raw {
            return Err(CoreError::invalid(
                "provided manifest does not match the pending manifest",
            )
            .into());
        }
        let update = ManifestDocument::from_json(raw.to_vec())
            .map_err(|e| CoreError::Internal(format!("pending manifest does not decode: {e}")))?;
        let fingerprint = update.fingerprint();
        if !pending.acknowledged.iter().any(|u| u == user.name()) {
            pending.acknowledged.push(user.name().to_owned());
            pending.missing_acknowledgments = pending.missing_acknowledgments.saturating_sub(1);
        }
        let missing_users = pending.missing_users();
        if pending.missing_acknowledgments == 0
            && recovery_secrets_to == RecoverySecretsTo::Nobody
            && issues_recovery_secrets(current.manifest(), update.manifest())
        {
            return Err(CoreError::invalid(V1_RECOVERY_SECRETS).into());
        }
        let now = OffsetDateTime::now_utc();
        let layers = if pending.missing_acknowledgments == 0 {
            Some(self.layers_for_update(current.manifest(), update.manifest())?)
        } else {
            None
        };
        let mut tx = self.store().begin();
        keys::append_update_log(
            &mut tx,
            &keys::update_log_line(
                now,
                "Complete Manifest update acknowledged by user",
                &[
                    ("user", user.name().into()),
                    (
                        "missingAcknowledgments",
                        pending.missing_acknowledgments.into(),
                    ),
                    ("missingUsers", json!(missing_users)),
                    ("manifestFingerprint", fingerprint.clone().into()),
                ],
            ),
        );
        tracing::info!(
            user = ?user.name(),
            %fingerprint,
            missing = pending.missing_acknowledgments,
            "full manifest update acknowledged"
        );
        let Some(layers) = layers else {
            put_pending(&mut tx, &pending);
            tx.commit().map_err(CoreError::from)?;
            return Ok(UpdateOutcome {
                missing_acknowledgments: pending.missing_acknowledgments,
                missing_users: Some(missing_users),
                recovery_secrets: None,
            });
        };
        let (ca, secrets) = self.apply_full_update(&mut tx, &current, &update, layers, now)?;
        super::commit_issuing(tx, secrets.as_ref())?;
        self.set_ca(ca)?;
        tracing::info!(%fingerprint, "full manifest update applied");
        Ok(UpdateOutcome {
            missing_acknowledgments: 0,
            missing_users: Some(missing_users),
            recovery_secrets: secrets,
        })
    }

    /// `POST /api/v2/update-cancel`: drops the pending update (needs `UpdateManifest`).
    pub fn cancel_update(&self, leaf: Option<&[u8]>) -> Result<()> {
        let _guard = self.lock();
        self.require_state("cancelling a manifest update", &[3], "state 3")?;
        let snapshot = self.snapshot();
        let current = self.current_manifest(&snapshot)?;
        let user = users::authenticate(current.manifest(), leaf)?;
        user.require(Action::UpdateManifest, [])?;
        let pending = pending(&snapshot)?;
        let fingerprint = quarry_manifest::fingerprint(&pending.raw()?);
        let mut tx = self.store().begin();
        tx.delete(PENDING_UPDATE);
        keys::append_update_log(
            &mut tx,
            &keys::update_log_line(
                OffsetDateTime::now_utc(),
                "Complete Manifest update cancelled by user",
                &[
                    ("user", user.name().into()),
                    ("manifestFingerprint", fingerprint.clone().into()),
                ],
            ),
        );
        tx.commit().map_err(CoreError::from)?;
        tracing::info!(user = ?user.name(), %fingerprint, "full manifest update cancelled");
        Ok(())
    }

    /// `GET /api/v2/update-manifest`: the pending update.
    pub fn pending_update(&self) -> std::result::Result<PendingInfo, CoreError> {
        self.require_state("reading the pending update", &[3], "state 3")?;
        let pending = pending(&self.snapshot())?;
        Ok(PendingInfo {
            manifest: pending.raw()?,
            missing_acknowledgments: pending.missing_acknowledgments,
            missing_users: pending.missing_users(),
        })
    }

    /// The checks a manifest passes before it is set, for a full update.
    fn validate_new_manifest(&self, manifest: &Manifest) -> std::result::Result<(), CoreError> {
        let report = check(manifest, self.env());
        if !report.is_valid() {
            let list: Vec<String> = report.violations.iter().map(ToString::to_string).collect();
            return Err(CoreError::invalid(format!(
                "invalid manifest: {}",
                list.join("; ")
            )));
        }
        let recovery_keys = parse_recovery_keys(manifest)?;
        let threshold = u32::try_from(manifest.config.recovery_threshold).unwrap_or(u32::MAX);
        RecoveryMode::for_keys(recovery_keys.len(), threshold)
            .map_err(|e| CoreError::invalid(format!("Config.RecoveryThreshold: {e}")))?;
        dry_run_manifest(manifest, &BTreeMap::new())
            .map_err(|e| CoreError::invalid(format!("invalid manifest: {e}")))?;
        check_secret_definitions(manifest)
            .map_err(|e| CoreError::invalid(format!("invalid manifest: {e}")))?;
        Ok(())
    }

    /// The wrap layers to set when the update turns `AzureHSMSealing` on (the HSM key, released
    /// now) or off (none); `None` when the gate does not change. Called before the transaction.
    fn layers_for_update(
        &self,
        current: &Manifest,
        update: &Manifest,
    ) -> std::result::Result<Option<Vec<std::sync::Arc<dyn quarry_store::WrapLayer>>>, CoreError>
    {
        let before = current.config.has_feature(FeatureGate::AzureHsmSealing);
        let after = update.config.has_feature(FeatureGate::AzureHsmSealing);
        if before == after {
            return Ok(None);
        }
        let layers = self
            .hsm()
            .layers_for(after, crate::hsm::Purpose::Manifest)
            .map_err(|error| {
                let message = format!("Config.FeatureGates: AzureHSMSealing: {}", error.describe());
                match error {
                    crate::hsm::HsmError::NotConfigured { .. } => CoreError::invalid(message),
                    _ => CoreError::Unavailable { message },
                }
            })?;
        tracing::info!(
            hsm_sealing = after,
            "full manifest update changes the HSM sealing"
        );
        Ok(Some(layers))
    }

    /// Writes a full update into `tx`; returns the new CA (install it after the commit) and the
    /// new recovery secrets, if the recovery keys or threshold changed.
    #[allow(clippy::type_complexity)]
    fn apply_full_update(
        &self,
        tx: &mut Transaction<'_>,
        current: &ManifestDocument,
        update: &ManifestDocument,
        layers: Option<Vec<std::sync::Arc<dyn quarry_store::WrapLayer>>>,
        now: OffsetDateTime,
    ) -> std::result::Result<
        (quarry_pki::CoordinatorCa, Option<BTreeMap<String, Vec<u8>>>),
        CoreError,
    > {
        let old = current.manifest();
        let new = update.manifest();

        // Packages: the new manifest's, replacing every stored one.
        let stale: Vec<Vec<u8>> = tx
            .iter_prefix(keys::PACKAGE_PREFIX.as_bytes())
            .map(|(k, _)| k.to_vec())
            .collect();
        for key in stale {
            tx.delete(&key);
        }
        for (name, package) in &new.packages {
            keys::put_package(tx, name, &StoredPackage::from(package));
        }

        // Root secret rotation: the old one becomes `.Previous`.
        let rotate = new.config.rotate_root_secret;
        if rotate {
            let old_root = keys::root_secret(tx)?;
            tx.put(keys::PREVIOUS_ROOT_SECRET, old_root.to_vec());
            let fresh = quarry_pki::secrets::generate_root_secret(&SystemRandom)?;
            tx.put(keys::ROOT_SECRET, fresh.to_vec());
        }

        let mut ca = keys::ca(tx)?;
        ca.rotate_intermediate(now, &SystemRandom)?;

        // Secrets, as MarbleRun updates them.
        let fresh: BTreeMap<String, StoredSecret> =
            generate_secrets(new, &ca, now)?.into_iter().collect();
        for name in old.secrets.keys().filter(|n| !new.secrets.contains_key(*n)) {
            tx.delete(&keys::secret_key(name));
            tx.delete(&keys::previous_secret_key(name));
        }
        for (name, definition) in &new.secrets {
            let before = old
                .secrets
                .get(name)
                .filter(|o| o.same_definition(definition));
            let Some(value) = fresh.get(name) else {
                // Unique secrets are derived or issued at activation; nothing is stored, and
                // what was stored under the name while the secret was shared goes with it.
                tx.delete(&keys::secret_key(name));
                tx.delete(&keys::previous_secret_key(name));
                continue;
            };
            match before {
                None => keys::put_secret(tx, name, value, true),
                Some(_) if definition.user_defined => {}
                Some(_) if matches!(definition.kind, SecretType::SymmetricKey) && !rotate => {}
                Some(_) => {
                    if let Some(old_value) = keys::secret(tx, name)? {
                        keys::put_secret(tx, name, &old_value, true);
                    }
                    keys::put_secret(tx, name, value, false);
                }
            }
        }

        keys::put_ca(tx, &ca)?;
        tx.put(keys::MANIFEST, update.raw().to_vec());
        tx.put(keys::MANIFEST_SIGNATURE, ca.sign_manifest(update.raw())?);
        tx.delete(PENDING_UPDATE);

        // Recovery: when the keys or threshold changed, a new data key with recovery secrets
        // for it, so that a holder who is no longer one cannot open this or any later
        // `sealed_data`; the seal mode follows the new manifest only then (as in MarbleRun).
        let mut recovery_secrets = None;
        if recovery_changes(old, new) {
            let recovery_keys = parse_recovery_keys(new)?;
            let threshold = u32::try_from(new.config.recovery_threshold).unwrap_or(u32::MAX);
            let mode = RecoveryMode::for_keys(recovery_keys.len(), threshold)
                .map_err(|e| CoreError::invalid(format!("Config.RecoveryThreshold: {e}")))?;
            let data_key = tx.rotate_data_key()?;
            let material = share_recovery_key(
                &recovery_keys,
                threshold,
                data_key.as_bytes(),
                &SystemRandom,
            )?;
            let data = RecoveryData::new(mode, &material.share_hashes, new.recovery_keys.clone());
            tx.set_recovery_data(data.to_bytes());
            tx.set_seal_mode(store_seal_mode(new.config.seal_mode()));
            self.recovery_session().reset_all();
            recovery_secrets = Some(material.recovery_secrets);
        }
        if let Some(layers) = layers {
            tx.set_wrap_layers(layers);
        }
        keys::append_update_log(
            tx,
            &keys::update_log_line(
                now,
                "Complete Manifest updated",
                &[("manifestFingerprint", update.fingerprint().into())],
            ),
        );
        Ok((ca, recovery_secrets))
    }
}

/// Whether applying `new` over `old` re-shares the data key (the recovery keys or the threshold
/// changed).
fn recovery_changes(old: &Manifest, new: &Manifest) -> bool {
    old.recovery_keys != new.recovery_keys
        || old.config.recovery_threshold != new.config.recovery_threshold
}

/// Whether applying `new` over `old` issues recovery secrets that only the caller receives.
fn issues_recovery_secrets(old: &Manifest, new: &Manifest) -> bool {
    recovery_changes(old, new) && !new.recovery_keys.is_empty()
}

/// Object identifiers of the public key algorithms (RFC 5480, RFC 8017, RFC 8410).
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
const OID_ED25519: &str = "1.3.101.112";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_P521: &str = "1.3.132.0.35";

/// Checks that the uploaded certificate `cert` has the key type of the secret's `kind`, and that
/// `private` (PKCS#8, optional: empty when not uploaded) is the private key of that certificate.
/// The error starts with the field it is about (`Cert: ...`, `Private: ...`).
fn check_key_pair(
    kind: &SecretType,
    cert: &[u8],
    private: &[u8],
) -> std::result::Result<(), String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, parsed) = X509Certificate::from_der(cert)
        .map_err(|e| format!("Cert: not an x509 certificate: {e}"))?;
    let spki = parsed.public_key();
    let algorithm = spki.algorithm.algorithm.to_id_string();
    let (expected, name) = match kind {
        SecretType::CertEcdsa => (OID_EC_PUBLIC_KEY, "an ecdsa"),
        SecretType::CertRsa => (OID_RSA_ENCRYPTION, "an rsa"),
        SecretType::CertEd25519 => (OID_ED25519, "an ed25519"),
        _ => return Ok(()),
    };
    if algorithm != expected {
        return Err(format!(
            "Cert: the secret is {}, but the certificate's key is not {name} key (algorithm \
             {algorithm})",
            kind.as_str()
        ));
    }
    if private.is_empty() {
        return Ok(());
    }
    let public = spki.subject_public_key.data.as_ref();
    let derived: Option<Vec<u8>> = match kind {
        SecretType::CertEcdsa => {
            use aws_lc_rs::signature::{
                ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING,
                ECDSA_P521_SHA512_ASN1_SIGNING, EcdsaKeyPair, KeyPair,
            };
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| oid.to_id_string());
            let signing = match curve.as_deref() {
                Some(OID_P256) => &ECDSA_P256_SHA256_ASN1_SIGNING,
                Some(OID_P384) => &ECDSA_P384_SHA384_ASN1_SIGNING,
                Some(OID_P521) => &ECDSA_P521_SHA512_ASN1_SIGNING,
                other => {
                    return Err(format!(
                        "Cert: unsupported ecdsa curve {}",
                        other.unwrap_or("(none)")
                    ));
                }
            };
            EcdsaKeyPair::from_pkcs8(signing, private)
                .ok()
                .map(|pair| pair.public_key().as_ref().to_vec())
        }
        SecretType::CertEd25519 => {
            use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(private)
                .ok()
                .map(|pair| pair.public_key().as_ref().to_vec())
        }
        _ => rsa_private_integers(private),
    };
    match derived {
        None => Err(format!(
            "Private: not a PKCS#8 private key of the certificate's type ({})",
            kind.as_str()
        )),
        Some(derived) if !same_public_key(kind, &derived, public) => {
            Err("Private: the private key does not belong to the certificate".to_owned())
        }
        Some(_) => Ok(()),
    }
}

/// Whether the public key `derived` from a private key is the certificate's `public` key
/// (for RSA, `derived` is what [`rsa_private_integers`] gives).
fn same_public_key(kind: &SecretType, derived: &[u8], public: &[u8]) -> bool {
    if !matches!(kind, SecretType::CertRsa) {
        return derived == public;
    }
    rsa_public_integers(public).is_some_and(|[n, e]| rsa_key_id(&n, &e) == derived)
}

/// An unsigned DER integer's bytes without leading zero bytes.
fn unsigned(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes[start..].to_vec()
}

/// The modulus and public exponent of a DER `RSAPublicKey`.
fn rsa_public_integers(der: &[u8]) -> Option<[Vec<u8>; 2]> {
    use x509_parser::der_parser::der::parse_der;
    let (_, key) = parse_der(der).ok()?;
    let fields = key.as_sequence().ok()?;
    Some([
        unsigned(fields.first()?.as_slice().ok()?),
        unsigned(fields.get(1)?.as_slice().ok()?),
    ])
}

/// The public key of a PKCS#8 RSA private key as [`rsa_key_id`] writes it (any key size; the
/// private parts are not read). `None` if it is not one.
fn rsa_private_integers(pkcs8: &[u8]) -> Option<Vec<u8>> {
    use x509_parser::der_parser::der::parse_der;
    let (rest, info) = parse_der(pkcs8).ok()?;
    if !rest.is_empty() {
        return None;
    }
    let items = info.as_sequence().ok()?;
    let algorithm = items.get(1)?.as_sequence().ok()?.first()?.as_oid().ok()?;
    if algorithm.to_id_string() != OID_RSA_ENCRYPTION {
        return None;
    }
    let (_, key) = parse_der(items.get(2)?.as_slice().ok()?).ok()?;
    // RSAPrivateKey { version, modulus, publicExponent, ... }
    let fields = key.as_sequence().ok()?;
    Some(rsa_key_id(
        &unsigned(fields.get(1)?.as_slice().ok()?),
        &unsigned(fields.get(2)?.as_slice().ok()?),
    ))
}

/// An RSA public key as comparable bytes: the modulus's length, the modulus, the exponent.
fn rsa_key_id(modulus: &[u8], exponent: &[u8]) -> Vec<u8> {
    let length = u32::try_from(modulus.len()).unwrap_or(u32::MAX);
    [&length.to_be_bytes()[..], modulus, exponent].concat()
}

fn is_certificate(kind: &str) -> bool {
    kind.starts_with("cert-")
}

fn pending(state: &quarry_store::State) -> std::result::Result<PendingUpdate, CoreError> {
    let bytes = state
        .get(PENDING_UPDATE)
        .ok_or_else(|| CoreError::NotFound {
            what: NO_UPDATE.into(),
        })?;
    serde_json::from_slice(bytes)
        .map_err(|e| CoreError::Internal(format!("pending update does not decode: {e}")))
}

fn put_pending(tx: &mut Transaction<'_>, pending: &PendingUpdate) {
    // Strings, lists and a number always serialise.
    tx.put(
        PENDING_UPDATE,
        serde_json::to_vec(pending).unwrap_or_default(),
    );
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use quarry_enclave::simulation::{Simulation, SimulationSettings};

    use super::*;
    use crate::config::Config;

    /// A Core in simulation on a fresh seal directory, with `manifest` set.
    fn core_with(dir: &std::path::Path, manifest: &serde_json::Value) -> Core {
        let seal_dir = dir.join("seal");
        let enclave = Arc::new(Simulation::new(SimulationSettings::new(dir)).unwrap());
        let lookup = |name: &str| {
            (name == "EDG_COORDINATOR_SEAL_DIR").then(|| seal_dir.display().to_string())
        };
        let config = Config::from_lookup(lookup, dir.to_owned()).unwrap();
        let core = Core::open(config, enclave, BTreeMap::new()).unwrap();
        core.set_manifest(serde_json::to_vec(manifest).unwrap())
            .unwrap();
        core
    }

    #[test]
    fn new_recovery_keys_get_a_new_data_key() {
        use quarry_pki::recovery::EphemeralRecoveryKey;

        let dir = tempfile::tempdir().unwrap();
        let user = rcgen::generate_simple_self_signed(vec!["updater".into()]).unwrap();
        let holder = |_| {
            let key = EphemeralRecoveryKey::generate().unwrap();
            let pem = crate::core::public_key_pem(&key.public_key_der().unwrap());
            (key, pem)
        };
        let (old_holder, old_pem) = holder(());
        let (new_holder, new_pem) = holder(());
        let mut manifest = json!({
            "Packages": {"p": {"UniqueID": "00"}},
            "Marbles": {"m": {"Package": "p"}},
            "RecoveryKeys": {"old": old_pem},
            "Users": {"u": {"Certificate": user.cert.pem(), "Roles": ["r"]}},
            "Roles": {"r": {"ResourceType": "Manifest", "Actions": ["UpdateManifest"]}}
        });
        let core = core_with(dir.path(), &manifest);
        let old_key = core.store().data_key().unwrap();

        // The old holder leaves: a copy of sealed_data from now on must not open with what the
        // old holder's recovery secret gives.
        manifest["RecoveryKeys"] = json!({"new": new_pem});
        let outcome = core
            .update_manifest(
                Some(user.cert.der()),
                serde_json::to_vec(&manifest).unwrap(),
            )
            .unwrap();
        let new_key = core.store().data_key().unwrap();
        assert_ne!(new_key.as_bytes(), old_key.as_bytes());
        let secrets = outcome.recovery_secrets.unwrap();
        let given = new_holder.decrypt(&secrets["new"]).unwrap();
        assert_eq!(given.as_slice(), new_key.as_bytes());
        assert!(old_holder.decrypt(&secrets["new"]).is_err());

        // An update that keeps the recovery keys keeps the data key.
        manifest["Marbles"]["m2"] = json!({"Package": "p"});
        let outcome = core
            .update_manifest(
                Some(user.cert.der()),
                serde_json::to_vec(&manifest).unwrap(),
            )
            .unwrap();
        assert!(outcome.recovery_secrets.is_none());
        assert_eq!(
            core.store().data_key().unwrap().as_bytes(),
            new_key.as_bytes()
        );
    }

    #[test]
    fn a_secret_that_becomes_unique_leaves_no_stored_value() {
        let dir = tempfile::tempdir().unwrap();
        let user = rcgen::generate_simple_self_signed(vec!["updater".into()]).unwrap();
        let mut manifest = json!({
            "Packages": {"p": {"UniqueID": "00"}},
            "Marbles": {"m": {"Package": "p"}},
            "Secrets": {
                "k": {"Type": "symmetric-key", "Size": 128, "Shared": true},
                "c": {"Type": "cert-ecdsa", "Size": 256, "Shared": true}
            },
            "Users": {"u": {"Certificate": user.cert.pem(), "Roles": ["r"]}},
            "Roles": {"r": {"ResourceType": "Manifest", "Actions": ["UpdateManifest"]}}
        });
        let core = core_with(dir.path(), &manifest);
        let stored = |name: &str| {
            let state = core.snapshot();
            (
                keys::secret(&state, name).unwrap().is_some(),
                keys::previous_secret(&state, name).unwrap().is_some(),
            )
        };
        assert_eq!(stored("k"), (true, true));
        assert_eq!(stored("c"), (true, true));

        // Both become unique (per Marble): the shared key and certificate must not stay in the
        // sealed state.
        manifest["Secrets"]["k"]["Shared"] = json!(false);
        manifest["Secrets"]["c"]["Shared"] = json!(false);
        let outcome = core
            .update_manifest(
                Some(user.cert.der()),
                serde_json::to_vec(&manifest).unwrap(),
            )
            .unwrap();
        assert_eq!(outcome.missing_acknowledgments, 0);
        assert_eq!(stored("k"), (false, false));
        assert_eq!(stored("c"), (false, false));

        // Shared again: generated anew.
        manifest["Secrets"]["k"]["Shared"] = json!(true);
        core.update_manifest(
            Some(user.cert.der()),
            serde_json::to_vec(&manifest).unwrap(),
        )
        .unwrap();
        assert_eq!(stored("k"), (true, true));
    }
}
