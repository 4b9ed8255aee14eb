//! Setting the manifest (`POST /api/v2/manifest`, v1 `POST /manifest`, `EDG_STARTUP_MANIFEST`)
//! and reading it back.
//!
//! Setting it: decode, check (every rule, with paths), parse the recovery keys, run the
//! template dry run, generate the shared secrets and the recovery secrets of the store's data
//! key, sign the raw bytes with the root key, then write everything in one commit together with
//! the update log's first line. In recovery mode the new state gets a new data key and the old
//! sealed files are moved aside (never overwritten) once everything else is ready, just before
//! the commit. Nothing changes unless every step before the commit succeeded.

use std::collections::BTreeMap;

use quarry_common::DocPath;
use quarry_manifest::template::dry_run_manifest;
use quarry_manifest::{FeatureGate, Manifest, ManifestDocument, check};
use quarry_pki::SystemRandom;
use quarry_pki::recovery::{RecoveryMode, RecoveryPublicKey, share_recovery_key};
use time::OffsetDateTime;

use super::keys::{self, RecoveryData, StoredPackage};
use super::secrets::generate_secrets;
use super::{CoordinatorState, Core, CoreError};

/// The manifest as `GET /api/v2/manifest` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestInfo {
    /// The raw bytes as uploaded.
    pub raw: Vec<u8>,
    /// Lower-case hex SHA-256 of the bytes.
    pub fingerprint: String,
    /// DER ECDSA signature of the bytes by the root key.
    pub signature: Vec<u8>,
}

impl Core {
    /// Sets the first manifest (state 2), or a new one replacing an unrecoverable state
    /// (state 1). Returns the recovery secrets: recovery key name → RSA-OAEP ciphertext.
    pub fn set_manifest(&self, raw: Vec<u8>) -> Result<BTreeMap<String, Vec<u8>>, CoreError> {
        let _guard = self.lock();
        let state = self.require_state("setting the manifest", &[1, 2], "state 1 or 2")?;

        let document = ManifestDocument::from_json(raw)
            .map_err(|e| CoreError::invalid(format!("invalid manifest: {e}")))?;
        for warning in document.warnings() {
            tracing::warn!(%warning, "manifest");
        }
        let manifest = document.manifest();
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
        let mode = RecoveryMode::for_keys(recovery_keys.len(), threshold)
            .map_err(|e| CoreError::invalid(format!("Config.RecoveryThreshold: {e}")))?;
        dry_run_manifest(manifest, &BTreeMap::new())
            .map_err(|e| CoreError::invalid(format!("invalid manifest: {e}")))?;
        // With the gate, the HSM key is released before anything changes (and before the
        // transaction): a failure leaves the sealed files and the state as they were.
        let gate = manifest.config.has_feature(FeatureGate::AzureHsmSealing);
        let wrap_layers = self
            .hsm()
            .layers_for(gate, crate::hsm::Purpose::Manifest)
            .map_err(hsm_error)?;
        let seal_mode = match manifest.config.seal_mode() {
            Some(quarry_manifest::SealMode::UniqueKey) => quarry_store::SealMode::UniqueKey,
            Some(quarry_manifest::SealMode::Disabled) => quarry_store::SealMode::Disabled,
            _ => quarry_store::SealMode::ProductKey,
        };

        let now = OffsetDateTime::now_utc();
        let ca = self.ca();
        let secrets = generate_secrets(manifest, &ca, now)?;
        let signature = ca.sign_manifest(document.raw())?;
        let root_secret = self
            .read()
            .pending_root_secret
            .clone()
            .ok_or_else(|| CoreError::Internal("no root secret before the manifest".into()))?;

        // In recovery mode the new state gets a new data key, and everything that depends on
        // it is made before the old files are moved aside, so that a failure leaves them.
        let recovering = state == CoordinatorState::Recovery;
        let data_key = if recovering {
            quarry_store::DataKey::generate()
                .map_err(|e| CoreError::Store(quarry_store::StoreError::Crypto(e)))?
        } else {
            self.store()
                .data_key()
                .ok_or_else(|| CoreError::Internal("store has no data key".into()))?
        };
        let material = share_recovery_key(
            &recovery_keys,
            threshold,
            data_key.as_bytes(),
            &SystemRandom,
        )?;
        let recovery_data =
            RecoveryData::new(mode, &material.share_hashes, manifest.recovery_keys.clone());

        if recovering {
            let moved = self.store().discard_with_key(now, data_key)?;
            let moved: Vec<String> = moved.iter().map(|p| p.display().to_string()).collect();
            tracing::warn!(
                ?moved,
                "new manifest in recovery mode: old sealed state moved aside"
            );
            self.write().state = CoordinatorState::AcceptingManifest;
            self.recovery_session().reset_all();
        }
        let mut tx = self.store().begin();
        keys::put_state_code(&mut tx, CoordinatorState::AcceptingMarbles.code());
        keys::put_ca(&mut tx, &ca)?;
        tx.put(keys::ROOT_SECRET, root_secret.to_vec());
        tx.put(keys::MANIFEST, document.raw().to_vec());
        tx.put(keys::MANIFEST_SIGNATURE, signature);
        for (name, package) in &manifest.packages {
            keys::put_package(&mut tx, name, &StoredPackage::from(package));
        }
        for (name, secret) in &secrets {
            keys::put_secret(&mut tx, name, secret, true);
        }
        keys::append_update_log(
            &mut tx,
            &keys::update_log_line(now, "Initial manifest set", &[]),
        );
        tx.set_recovery_data(recovery_data.to_bytes());
        tx.set_seal_mode(seal_mode);
        tx.set_wrap_layers(wrap_layers);
        let issued = &material.recovery_secrets;
        super::commit_issuing(tx, (!issued.is_empty()).then_some(issued))?;

        {
            let mut inner = self.write();
            inner.state = CoordinatorState::AcceptingMarbles;
            inner.pending_root_secret = None;
        }
        tracing::info!(fingerprint = %document.fingerprint(), "manifest set");
        Ok(material.recovery_secrets)
    }

    /// The manifest as last set, with its fingerprint and signature.
    pub fn manifest(&self) -> Result<ManifestInfo, CoreError> {
        self.require_state("reading the manifest", &[3], "state 3")?;
        let snapshot = self.snapshot();
        let raw = keys::manifest(&snapshot).ok_or_else(|| CoreError::NotFound {
            what: "no manifest has been set".into(),
        })?;
        let signature = keys::manifest_signature(&snapshot).unwrap_or_default();
        Ok(ManifestInfo {
            raw: raw.to_vec(),
            fingerprint: quarry_manifest::fingerprint(raw),
            signature: signature.to_vec(),
        })
    }

    /// Applies `EDG_STARTUP_MANIFEST` as DESIGN decides: set it in state 2 (a failure is fatal);
    /// in state 3 compare it with the stored manifest (`info` when equal, `warn` otherwise, the
    /// stored one stays); never in states 0 and 1.
    pub fn apply_startup_manifest(&self, raw: Vec<u8>) -> Result<(), CoreError> {
        match self.state() {
            CoordinatorState::AcceptingManifest => {
                let secrets = self.set_manifest(raw)?;
                if !secrets.is_empty() {
                    tracing::warn!(
                        keys = ?secrets.keys().collect::<Vec<_>>(),
                        "startup manifest set: its recovery secrets are not shown; use \
                         POST /api/v2/manifest to receive them"
                    );
                }
                Ok(())
            }
            CoordinatorState::AcceptingMarbles => {
                let stored = self.manifest()?;
                if stored.raw == raw {
                    tracing::info!(fingerprint = %stored.fingerprint, "startup manifest is the stored manifest");
                } else {
                    tracing::warn!(
                        stored = %stored.fingerprint,
                        startup = %quarry_manifest::fingerprint(&raw),
                        "startup manifest differs from the stored manifest, which stays; use a \
                         manifest update"
                    );
                }
                Ok(())
            }
            other => {
                tracing::warn!(
                    state = other.code(),
                    "startup manifest not applied in this state"
                );
                Ok(())
            }
        }
    }
}

/// A key release that failed while setting a manifest: a missing or invalid setting is the
/// request's problem together with the environment (`400`); anything else is a service the
/// Coordinator cannot reach or use now (`503`, with the reason).
fn hsm_error(error: crate::hsm::HsmError) -> CoreError {
    let message = format!("Config.FeatureGates: AzureHSMSealing: {}", error.describe());
    match error {
        crate::hsm::HsmError::NotConfigured { .. } => CoreError::invalid(message),
        _ => CoreError::Unavailable { message },
    }
}

/// The manifest's recovery keys, in key order.
pub(super) fn parse_recovery_keys(
    manifest: &Manifest,
) -> Result<Vec<RecoveryPublicKey>, CoreError> {
    manifest
        .recovery_keys
        .iter()
        .map(|(name, pem)| {
            RecoveryPublicKey::from_pem(name, pem).map_err(|e| {
                let path = DocPath::root().field("RecoveryKeys").key(name);
                CoreError::invalid(format!("{path}: {e}"))
            })
        })
        .collect()
}
