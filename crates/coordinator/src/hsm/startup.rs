//! The key-release loop of start-up, and the task that persists a recovered state once the HSM
//! answers.
//!
//! At start-up a sealed key wrapped with an HSM key leaves the Coordinator in state 0
//! ("waiting for key release"). [`spawn`] then releases exactly the key versions the sealed key
//! names (and, at the same time, the configured or latest version to re-seal under), unseals
//! under the core mutex, re-seals if the version changed, and only then makes the state
//! available (state 3). Until then nothing is written.
//!
//! Failures by class: transient ones are retried with a doubling backoff capped at
//! `QUARRY_HSM_RETRY_MAX_DELAY`, forever; "needs operator" ones are shown in the status and
//! logged at `error`, and retried at a slower pace (unless only a restart can change them: a
//! missing setting, another vault); a definite one (the released key does not open the sealed
//! key) enters recovery mode with the reason in the status. A recovery while waiting ends the
//! loop.

use std::sync::Arc;

use quarry_azure::ErrorClass;
use quarry_manifest::{FeatureGate, ManifestDocument};
use quarry_store::{HsmKeyRef, RecoveryReason, StoreError, WrapLayer};

use super::{HsmError, Purpose};
use crate::core::{CoordinatorState, Core, error_chain, keys};

/// Starts the background task of HSM sealing: the key-release loop if the Coordinator is
/// waiting for a key release, then persisting recovered states on request.
pub fn spawn(core: &Arc<Core>) -> tokio::task::JoinHandle<()> {
    core.hsm().attach(core);
    let core = Arc::clone(core);
    tokio::spawn(async move {
        if is_waiting(&core) {
            release_loop(&core).await;
        }
        loop {
            core.hsm().persist_requested().await;
            persist_loop(&core).await;
        }
    })
}

fn is_waiting(core: &Core) -> bool {
    matches!(core.state(), CoordinatorState::WaitingForKeyRelease { .. })
}

/// Retries [`attempt`] until the state is unsealed, recovery mode is entered, the operator
/// recovered the state, or only a restart can help.
async fn release_loop(core: &Arc<Core>) {
    let sealing = core.hsm();
    let mut transient = 0u32;
    loop {
        let step = match core.store().required_wrap_keys().first() {
            Some(key) => format!("releasing HSM key {key}"),
            None => "unsealing".to_owned(),
        };
        let error = match attempt(core).await {
            Ok(()) => return,
            Err(error) => error,
        };
        if !is_waiting(core) {
            return;
        }
        let message = error.describe();
        match error.class() {
            ErrorClass::Transient => {
                let delay = sealing.transient_delay(transient);
                transient = transient.saturating_add(1);
                tracing::warn!(error = %message, retry_in = ?delay, "key release failed, retrying");
                core.set_waiting(step, Some(message));
                tokio::time::sleep(delay).await;
            }
            ErrorClass::NeedsOperator => {
                transient = 0;
                core.set_waiting(step, Some(message.clone()));
                if error.is_final() {
                    tracing::error!(error = %message, "key release stopped: fix the environment and restart, or recover the state");
                    return;
                }
                let delay = sealing.operator_delay();
                tracing::error!(error = %message, retry_in = ?delay, "key release needs an operator");
                tokio::time::sleep(delay).await;
            }
            ErrorClass::Definite => {
                tracing::error!(error = %message, "sealed state cannot be unsealed, entering recovery mode");
                if let Err(e) = core.enter_recovery() {
                    tracing::error!(error = %error_chain(&e), "entering recovery mode failed");
                    core.set_waiting(step, Some(message));
                    return;
                }
                sealing.set_recovery_reason(format!("Reason: {message}"));
                return;
            }
        }
    }
}

/// One attempt: check and release the keys the sealed key names (and the re-seal target),
/// then unseal, re-seal and restore under the core mutex.
async fn attempt(core: &Arc<Core>) -> Result<(), HsmError> {
    let sealing = core.hsm();
    let required = core.store().required_wrap_keys();
    for key in &required {
        sealing.check_sealed_by(key)?;
    }
    let configured = sealing.configured_version();
    let needs_target = match &configured {
        Some(version) => !required
            .iter()
            .any(|k| k.key_version.eq_ignore_ascii_case(version)),
        None => !required.is_empty(),
    };

    let unseal = async {
        let mut layers: Vec<Arc<dyn WrapLayer>> = Vec::new();
        for key in &required {
            let layer = sealing
                .release(Purpose::Unseal, Some(&key.key_version))
                .await?;
            layers.push(layer);
        }
        Ok::<_, HsmError>(layers)
    };
    let target = async {
        if needs_target {
            Some(
                sealing
                    .release(Purpose::Reseal, configured.as_deref())
                    .await,
            )
        } else {
            None
        }
    };
    let (layers, target) = tokio::join!(unseal, target);
    let layers = layers?;
    let reseal = match target {
        Some(Ok(layer)) if !required.contains(layer.key_ref()) => Some(layer as Arc<dyn WrapLayer>),
        Some(Err(error)) => {
            tracing::warn!(error = %error.describe(), "cannot re-seal under the configured or latest key version now; the state stays sealed under its current version");
            None
        }
        _ => None,
    };

    let core = Arc::clone(core);
    tokio::task::spawn_blocking(move || unseal_and_restore(&core, &layers, reseal))
        .await
        .map_err(|_| HsmError::NoRuntime)?
}

fn unseal_and_restore(
    core: &Core,
    layers: &[Arc<dyn WrapLayer>],
    reseal: Option<Arc<dyn WrapLayer>>,
) -> Result<(), HsmError> {
    let _guard = core.lock();
    if !is_waiting(core) {
        return Ok(());
    }
    match core.store().unseal(layers) {
        Ok(()) => {}
        Err(StoreError::NeedsRecovery {
            reason: RecoveryReason::WrapKeyMismatch { key },
        }) => return Err(HsmError::WrongKey { key: Box::new(key) }),
        Err(error @ (StoreError::NeedsRecovery { .. } | StoreError::Corrupted { .. })) => {
            return Err(HsmError::Unseal(error));
        }
        Err(other) => return Err(HsmError::Store(other)),
    }
    if let Some(layer) = reseal {
        let key: HsmKeyRef = layer.key_ref().clone();
        let mut tx = core.store().begin();
        tx.set_wrap_layers(vec![layer]);
        match tx.commit() {
            Ok(()) => tracing::info!(%key, "state re-sealed under the HSM key version"),
            Err(error) => {
                tracing::warn!(%key, error = %error_chain(&error), "re-sealing under the new HSM key version failed; the state stays sealed under its current version");
            }
        }
    }
    core.finish_unseal().map_err(|e| {
        tracing::error!(error = %error_chain(&e), "restoring the unsealed state failed");
        HsmError::Restore {
            reason: error_chain(&e),
        }
    })?;
    tracing::info!("sealed state unsealed with the released HSM key");
    Ok(())
}

/// Persists a recovered state whose manifest has the gate, once a key is released: retries
/// like the start-up loop and never gives up while the state is not persisted.
async fn persist_loop(core: &Arc<Core>) {
    let sealing = core.hsm();
    let mut transient = 0u32;
    while sealing.pending().is_some() {
        let error = match sealing.release(Purpose::Persist, None).await {
            Ok(layer) => {
                let core = Arc::clone(core);
                let layer: Arc<dyn WrapLayer> = layer;
                match tokio::task::spawn_blocking(move || persist(&core, layer)).await {
                    Ok(Ok(())) => return,
                    Ok(Err(message)) => {
                        tracing::error!(error = %message, "persisting the recovered state failed");
                        return;
                    }
                    Err(_) => return,
                }
            }
            Err(error) => error,
        };
        let delay = match error.class() {
            ErrorClass::Transient => {
                transient = transient.saturating_add(1);
                sealing.transient_delay(transient - 1)
            }
            _ => sealing.operator_delay(),
        };
        tracing::warn!(error = %error.describe(), retry_in = ?delay, "recovered state not persisted yet");
        tokio::time::sleep(delay).await;
    }
}

/// Writes the state with the manifest's seal mode and the released layer.
fn persist(core: &Core, layer: Arc<dyn WrapLayer>) -> Result<(), String> {
    let _guard = core.lock();
    let snapshot = core.snapshot();
    let raw = keys::manifest(&snapshot).ok_or("the state has no manifest")?;
    let document = ManifestDocument::from_json(raw.to_vec()).map_err(|e| e.to_string())?;
    let config = &document.manifest().config;
    let mut tx = core.store().begin();
    tx.set_seal_mode(crate::core::store_seal_mode(config.seal_mode()));
    if config.has_feature(FeatureGate::AzureHsmSealing) {
        tx.set_wrap_layers(vec![layer]);
    }
    tx.commit().map_err(|e| error_chain(&e))?;
    core.hsm().set_note(None);
    tracing::info!("recovered state persisted with HSM sealing");
    Ok(())
}
