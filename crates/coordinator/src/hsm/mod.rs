//! HSM sealing (the `AzureHSMSealing` feature gate): the Managed HSM adapter over the store's
//! wrap hook, and the key-release loop of start-up ([`startup`]).
//!
//! [`Sealing`] owns the Secure Key Release client built from the `EDG_AZURE_*`, `EDG_MAA_URL`
//! and `QUARRY_AZURE_*` variables. [`Sealing::release`] releases the configured key (or an
//! exact version) and turns it into a [`quarry_store::HsmWrapKey`]: an AES-256-GCM layer whose
//! frame records the vault, the key name and the key version. The key is always fetched
//! *before* the store transaction that needs it; the store only runs the synchronous cipher.
//!
//! Invariants:
//! - A released key never reaches logs or `Debug` output: the layer prints its key identity
//!   only, and the client's key type is zeroed on drop.
//! - The vault recorded in a sealed key is compared with the configured vault before anything
//!   is released ([`Sealing::check_sealed_by`]); another vault or key stops the release loop
//!   with an error naming both, so the state is never re-sealed elsewhere.
//! - Every release is logged at `info` with its purpose, the key, the outcome and the step
//!   timings, and counted in [`ReleaseStats`]; nothing secret is logged.
//!
//! Errors keep the three classes of the SKR client ([`ErrorClass`]): transient failures are
//! retried with capped backoff (`QUARRY_HSM_RETRY_MAX_DELAY`), "needs operator" failures are
//! shown in the status and retried at a slower pace, and only a definite answer (a released key
//! that cannot open the sealed key) sends the Coordinator to recovery mode.

pub mod startup;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use quarry_azure::{ErrorClass, SkrClient, SkrConfig, SkrError};
use quarry_enclave::Enclave;
use quarry_store::{HsmKeyRef, HsmWrapKey, WrapLayer};
use tokio::sync::Notify;

use crate::core::{CoordinatorState, Core, error_chain};

/// `QUARRY_HSM_RETRY_MAX_DELAY`: the longest wait between two key-release attempts after
/// transient failures (`30s`, `500ms`, `2m`, or whole seconds).
pub const RETRY_MAX_DELAY_VAR: &str = "QUARRY_HSM_RETRY_MAX_DELAY";
/// The default of [`RETRY_MAX_DELAY_VAR`].
pub const DEFAULT_RETRY_MAX_DELAY: Duration = Duration::from_secs(60);
/// The first wait after a transient failure; doubled for each further one, up to the cap.
pub const INITIAL_RETRY_DELAY: Duration = Duration::from_secs(1);
/// A failure that needs an operator is retried at this multiple of the cap.
pub const OPERATOR_PACE_FACTOR: u32 = 4;

/// Why a key could not be released or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HsmError {
    /// The Azure settings are missing or invalid, or the trusted roots cannot be read.
    #[error("HSM sealing is not configured: {reason}")]
    NotConfigured {
        /// What is wrong (names the variable).
        reason: String,
    },
    /// The key release failed.
    #[error("releasing HSM key {key}")]
    Release {
        /// The key asked for (`https://host/keys/name[/version]`).
        key: String,
        /// The client's error, with its step and class.
        #[source]
        source: SkrError,
    },
    /// The sealed key was wrapped by another vault or key than the configured one.
    #[error(
        "sealed_key is wrapped with HSM key {sealed}, but the environment configures vault \
         {configured_vault} and key {configured_key}; set EDG_AZURE_HSM_VAULT_URL and \
         EDG_AZURE_HSM_KEY_NAME back, or recover the state with the recovery keys"
    )]
    OtherVault {
        /// The key recorded in the sealed key.
        sealed: Box<HsmKeyRef>,
        /// The configured vault (host and port).
        configured_vault: String,
        /// The configured key name.
        configured_key: String,
    },
    /// The released key cannot be used as an AES-GCM key.
    #[error("released HSM key {key} is not an AES key")]
    Key {
        /// The key.
        key: String,
    },
    /// A validly signed release of the key and version recorded in the sealed key holds a key
    /// that does not open the sealed key's HSM layer: the key material behind that version is
    /// not the one the state was sealed with, or the HSM layer of `sealed_key` was modified
    /// (AES-GCM cannot tell the two apart).
    #[error(
        "the released HSM key {key} does not open the sealed key: the release is validly signed \
         for the recorded key and version, so either that version holds other key material \
         than the state was sealed with or sealed_key was modified; recover the state with the \
         recovery keys"
    )]
    WrongKey {
        /// The key and version that was released and tried.
        key: Box<HsmKeyRef>,
    },
    /// The sealed key cannot be unsealed for another reason than a wrong HSM key: the enclave's
    /// seal key does not open it (another enclave identity or machine), it belongs to another
    /// `sealed_data`, or a file is broken.
    #[error("sealed_key cannot be unsealed")]
    Unseal(#[source] quarry_store::StoreError),
    /// The store failed in a way that may pass (I/O, the enclave).
    #[error("unsealing with the released HSM key")]
    Store(#[source] quarry_store::StoreError),
    /// The state unsealed, but its content could not be loaded (a broken state, not an HSM
    /// problem): retrying cannot help.
    #[error("restoring the unsealed state: {reason}")]
    Restore {
        /// What could not be loaded.
        reason: String,
    },
    /// No async runtime is available to run the release on.
    #[error("no async runtime to release the HSM key on")]
    NoRuntime,
}

impl HsmError {
    /// What to do about it (DESIGN "Start-up with HSM sealing, and error classes").
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Release { source, .. } => source.class(),
            Self::Key { .. } | Self::WrongKey { .. } | Self::Unseal(_) => ErrorClass::Definite,
            Self::Store(_) => ErrorClass::Transient,
            Self::NotConfigured { .. }
            | Self::OtherVault { .. }
            | Self::Restore { .. }
            | Self::NoRuntime => ErrorClass::NeedsOperator,
        }
    }

    /// Whether retrying cannot help without a restart (the environment is wrong).
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Self::NotConfigured { .. }
                | Self::OtherVault { .. }
                | Self::Restore { .. }
                | Self::NoRuntime
        )
    }

    /// The message for status and logs: the class, then the error and its causes.
    pub fn describe(&self) -> String {
        format!("{}: {}", self.class(), error_chain(self))
    }
}

/// Why a key is released (logged with each release).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Unsealing at start-up, with the version recorded in the sealed key.
    Unseal,
    /// Re-sealing after start-up under the configured or latest version.
    Reseal,
    /// Sealing a new manifest's state.
    Manifest,
    /// Re-sealing a recovered state.
    Recovery,
    /// Persisting a recovered state once the HSM answers again.
    Persist,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Self::Unseal => "unseal",
            Self::Reseal => "reseal",
            Self::Manifest => "manifest",
            Self::Recovery => "recovery",
            Self::Persist => "persist",
        }
    }
}

/// Counters of key releases since start (for metrics; no secret values).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReleaseStats {
    /// Successful releases.
    pub released: u64,
    /// Failed releases by class: transient, needs operator, definite.
    pub failed: [u64; 3],
    /// Duration of the last release attempt.
    pub last_duration: Duration,
}

/// HSM sealing of one Coordinator: the configured key, the release client, and what the
/// status reports about HSM sealing.
pub struct Sealing {
    client: Result<SkrClient, String>,
    retry_max_delay: Duration,
    note: RwLock<Option<String>>,
    reason: RwLock<Option<String>>,
    core: OnceLock<Weak<Core>>,
    stats: Mutex<ReleaseStats>,
    persist: Notify,
}

impl fmt::Debug for Sealing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealing")
            .field("configured", &self.client.is_ok())
            .field("retry_max_delay", &self.retry_max_delay)
            .finish_non_exhaustive()
    }
}

impl Sealing {
    /// Reads the HSM settings from `env` (the `EDG_*` and `QUARRY_*` variables). Missing or
    /// invalid settings are kept as an error that [`Sealing::release`] reports when HSM sealing
    /// is actually needed.
    ///
    /// `QUARRY_AZURE_CA_FILE` weakens trust (DESIGN lists it with the `QUARRY_INSECURE_*`
    /// variables): when it is set, one `warn` line names the variable and the file, whether or
    /// not HSM sealing is used.
    pub fn from_env(env: &BTreeMap<String, String>, enclave: Arc<dyn Enclave>) -> Self {
        if let Some(file) = env
            .get(quarry_azure::config::CA_FILE)
            .filter(|v| !v.trim().is_empty())
        {
            tracing::warn!(
                variable = quarry_azure::config::CA_FILE,
                file = ?file,
                "insecure option set: certificates from this file are trusted for Entra ID, MAA \
                 and Managed HSM and for release signatures; leave it unset in production"
            );
        }
        let lookup = |name: &str| env.get(name).cloned();
        let client = SkrConfig::from_lookup(lookup)
            .map_err(|e| e.to_string())
            .and_then(|config| {
                SkrClient::new(config, enclave).map_err(|e| format!("trusted roots: {e}"))
            });
        let retry_max_delay = match env.get(RETRY_MAX_DELAY_VAR).filter(|v| !v.is_empty()) {
            None => DEFAULT_RETRY_MAX_DELAY,
            Some(value) => parse_duration(value).unwrap_or_else(|| {
                tracing::warn!(
                    variable = RETRY_MAX_DELAY_VAR,
                    value = %value,
                    default = ?DEFAULT_RETRY_MAX_DELAY,
                    "invalid duration, using the default"
                );
                DEFAULT_RETRY_MAX_DELAY
            }),
        };
        Self {
            client,
            retry_max_delay,
            note: RwLock::new(None),
            reason: RwLock::new(None),
            core: OnceLock::new(),
            stats: Mutex::new(ReleaseStats::default()),
            persist: Notify::new(),
        }
    }

    /// The cap of the backoff between release attempts after transient failures.
    pub fn retry_max_delay(&self) -> Duration {
        self.retry_max_delay
    }

    /// The release counters.
    pub fn stats(&self) -> ReleaseStats {
        self.stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// What the status should add about HSM sealing, if anything: why a failed key release
    /// sent the Coordinator to recovery mode (`Reason: …`, only while it is in recovery mode:
    /// a recovery or a new manifest replaces the state it was about), or that a recovered state
    /// is not persisted yet.
    pub fn note(&self) -> Option<String> {
        let reason = self
            .reason
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .filter(|_| self.in_recovery());
        let pending = self.pending();
        match (reason, pending) {
            (Some(reason), Some(pending)) => Some(format!("{reason} {pending}")),
            (reason, pending) => reason.or(pending),
        }
    }

    /// The note about a recovered state that is not persisted yet.
    pub(crate) fn pending(&self) -> Option<String> {
        self.note
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_note(&self, note: Option<String>) {
        *self.note.write().unwrap_or_else(PoisonError::into_inner) = note;
    }

    /// Records why a key release sent the Coordinator to recovery mode (shown by
    /// [`Sealing::note`] while it stays there).
    pub(crate) fn set_recovery_reason(&self, reason: String) {
        *self.reason.write().unwrap_or_else(PoisonError::into_inner) = Some(reason);
    }

    /// Lets [`Sealing::note`] see the Coordinator's state ([`startup::spawn`] calls it).
    pub(crate) fn attach(&self, core: &Arc<Core>) {
        // A second call (a second task on the same core) keeps the first, equal, reference.
        let _ = self.core.set(Arc::downgrade(core));
    }

    fn in_recovery(&self) -> bool {
        self.core
            .get()
            .and_then(Weak::upgrade)
            .is_some_and(|core| matches!(core.state(), CoordinatorState::Recovery))
    }

    /// Asks the background task to persist the state once the HSM answers
    /// ([`startup::spawn`]).
    pub(crate) fn request_persist(&self) {
        self.persist.notify_one();
    }

    pub(crate) async fn persist_requested(&self) {
        self.persist.notified().await;
    }

    fn client(&self) -> Result<&SkrClient, HsmError> {
        self.client
            .as_ref()
            .map_err(|reason| HsmError::NotConfigured {
                reason: reason.clone(),
            })
    }

    /// The configured vault as recorded in frames: the host, with the port when it is not 443.
    fn vault(&self) -> Result<String, HsmError> {
        let url = &self.client()?.config().vault_url;
        let host = url.host_str().unwrap_or_default();
        Ok(match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        })
    }

    /// The configured key version, if one is configured (`EDG_AZURE_HSM_KEY_VERSION`).
    pub fn configured_version(&self) -> Option<String> {
        self.client
            .as_ref()
            .ok()
            .and_then(|c| c.config().key_version.clone())
    }

    /// Refuses a sealed key that names another vault or key than the configured one.
    pub fn check_sealed_by(&self, sealed: &HsmKeyRef) -> Result<(), HsmError> {
        let vault = self.vault()?;
        let name = &self.client()?.config().key_name;
        if sealed.vault_host.eq_ignore_ascii_case(&vault)
            && sealed.key_name.eq_ignore_ascii_case(name)
        {
            return Ok(());
        }
        Err(HsmError::OtherVault {
            sealed: Box::new(sealed.clone()),
            configured_vault: vault,
            configured_key: name.clone(),
        })
    }

    /// Releases the key — `version`, else the configured version, else the latest — and
    /// returns it as a wrap layer. Logs the outcome with step timings.
    pub async fn release(
        &self,
        purpose: Purpose,
        version: Option<&str>,
    ) -> Result<Arc<HsmWrapKey>, HsmError> {
        let client = self.client()?;
        let vault = self.vault()?;
        let key_name = client.config().key_name.clone();
        let asked = version
            .map(str::to_owned)
            .or_else(|| client.config().key_version.clone());
        let shown = format!(
            "https://{vault}/keys/{key_name}{}",
            asked
                .as_deref()
                .map(|v| format!("/{v}"))
                .unwrap_or_default()
        );

        // The token request runs next to the release (which generates its wrapping key and
        // attests meanwhile); the release waits for the same cached token.
        let started = Instant::now();
        let token = async {
            let at = Instant::now();
            let ok = client.tokens().token().await.is_ok();
            (ok, at.elapsed())
        };
        let release = async {
            let at = Instant::now();
            (client.release(asked.as_deref()).await, at.elapsed())
        };
        let ((token_ok, token_time), (result, release_time)) = tokio::join!(token, release);
        let total = started.elapsed();

        let outcome = result
            .map_err(|source| HsmError::Release {
                key: shown.clone(),
                source,
            })
            .and_then(|released| {
                let key_ref = HsmKeyRef {
                    vault_host: vault.clone(),
                    key_name: key_name.clone(),
                    key_version: released.version().to_owned(),
                };
                HsmWrapKey::new(key_ref, released.key())
                    .map(Arc::new)
                    .map_err(|_| HsmError::Key { key: shown.clone() })
            });
        self.record(
            purpose,
            &shown,
            &outcome,
            token_ok,
            token_time,
            release_time,
            total,
        );
        outcome
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        purpose: Purpose,
        key: &str,
        outcome: &Result<Arc<HsmWrapKey>, HsmError>,
        token_ok: bool,
        token_time: Duration,
        release_time: Duration,
        total: Duration,
    ) {
        let mut stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        stats.last_duration = total;
        match outcome {
            Ok(layer) => {
                stats.released += 1;
                tracing::info!(
                    purpose = purpose.as_str(),
                    key,
                    version = %layer.key_ref().key_version,
                    outcome = "released",
                    token_ms = token_time.as_millis() as u64,
                    release_ms = release_time.as_millis() as u64,
                    total_ms = total.as_millis() as u64,
                    "hsm key release"
                );
            }
            Err(error) => {
                let class = error.class();
                let index = match class {
                    ErrorClass::Transient => 0,
                    ErrorClass::NeedsOperator => 1,
                    ErrorClass::Definite => 2,
                };
                stats.failed[index] += 1;
                let step = match error {
                    HsmError::Release { source, .. } => source.step().to_string(),
                    _ => "key check".to_owned(),
                };
                tracing::info!(
                    purpose = purpose.as_str(),
                    key,
                    outcome = %class,
                    failed_step = %step,
                    token_ok,
                    token_ms = token_time.as_millis() as u64,
                    release_ms = release_time.as_millis() as u64,
                    total_ms = total.as_millis() as u64,
                    "hsm key release"
                );
            }
        }
    }

    /// [`Sealing::release`] from synchronous code on a blocking thread of the runtime (the core
    /// operations run there).
    pub fn release_blocking(
        &self,
        purpose: Purpose,
        version: Option<&str>,
    ) -> Result<Arc<HsmWrapKey>, HsmError> {
        self.client()?;
        let handle = tokio::runtime::Handle::try_current().map_err(|_| HsmError::NoRuntime)?;
        if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread {
            // block_on on the only worker thread would deadlock the runtime.
            return Err(HsmError::NoRuntime);
        }
        tokio::task::block_in_place(|| handle.block_on(self.release(purpose, version)))
    }

    /// The wrap layers for a state whose manifest has (`gate`) or has not the
    /// `AzureHSMSealing` feature gate: none, or the configured key freshly released. For the
    /// manifest set, updates and recovery; call before beginning the transaction.
    pub fn layers_for(
        &self,
        gate: bool,
        purpose: Purpose,
    ) -> Result<Vec<Arc<dyn WrapLayer>>, HsmError> {
        if !gate {
            return Ok(Vec::new());
        }
        let layer: Arc<dyn WrapLayer> = self.release_blocking(purpose, None)?;
        Ok(vec![layer])
    }

    /// The backoff before attempt `failures + 1` after transient failures: 1 s doubling,
    /// capped at [`Sealing::retry_max_delay`].
    pub fn transient_delay(&self, failures: u32) -> Duration {
        let factor = 1u32.checked_shl(failures.min(20)).unwrap_or(u32::MAX);
        INITIAL_RETRY_DELAY
            .saturating_mul(factor)
            .min(self.retry_max_delay)
    }

    /// The wait before retrying a failure that needs an operator.
    pub fn operator_delay(&self) -> Duration {
        self.retry_max_delay.saturating_mul(OPERATOR_PACE_FACTOR)
    }
}

/// Parses `500ms`, `30s`, `2m`, `1h` or whole seconds.
pub fn parse_duration(value: &str) -> Option<Duration> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: u64 = number.parse().ok()?;
    let duration = match unit.trim() {
        "" | "s" => Duration::from_secs(number),
        "ms" => Duration::from_millis(number),
        "m" => Duration::from_secs(number.checked_mul(60)?),
        "h" => Duration::from_secs(number.checked_mul(3600)?),
        _ => return None,
    };
    (!duration.is_zero()).then_some(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_that_cannot_be_restored_is_not_called_unconfigured() {
        let error = HsmError::Restore {
            reason: "ca: bad certificate".into(),
        };
        assert!(error.is_final());
        assert_eq!(error.class(), ErrorClass::NeedsOperator);
        let text = error.describe();
        assert!(
            text.contains("restoring the unsealed state: ca: bad certificate"),
            "{text}"
        );
        assert!(!text.contains("not configured"), "{text}");
    }

    #[test]
    fn a_wrong_released_key_is_definite_and_named_with_its_version() {
        let key = HsmKeyRef {
            vault_host: "localhost:8443".into(),
            key_name: "marblerun-skr-key".into(),
            key_version: "0123456789abcdef0123456789abcdef".into(),
        };
        let error = HsmError::WrongKey { key: Box::new(key) };
        assert_eq!(error.class(), ErrorClass::Definite);
        assert!(!error.is_final());
        let text = error.describe();
        assert!(
            text.starts_with(
                "definite: the released HSM key \
                 https://localhost:8443/keys/marblerun-skr-key/0123456789abcdef0123456789abcdef \
                 does not open the sealed key"
            ),
            "{text}"
        );
    }

    #[test]
    fn without_a_core_no_recovery_reason_is_shown() {
        let (_dir, enclave) = enclave();
        let sealing = Sealing::from_env(&env(CONFIGURED), enclave);
        sealing.set_recovery_reason("Reason: definite: x".into());
        assert_eq!(sealing.note(), None);
        sealing.set_note(Some("not persisted".into()));
        assert_eq!(sealing.note().as_deref(), Some("not persisted"));
        assert_eq!(sealing.pending().as_deref(), Some("not persisted"));
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn enclave() -> (tempfile::TempDir, Arc<dyn Enclave>) {
        let dir = tempfile::tempdir().unwrap();
        let settings = quarry_enclave::simulation::SimulationSettings::new(dir.path());
        let sim = quarry_enclave::simulation::Simulation::new(settings).unwrap();
        (dir, Arc::new(sim))
    }

    const CONFIGURED: &[(&str, &str)] = &[
        ("EDG_AZURE_HSM_VAULT_URL", "https://localhost:8443/"),
        ("EDG_AZURE_HSM_KEY_NAME", "marblerun-skr-key"),
        ("EDG_MAA_URL", "https://localhost:8443"),
        (
            "EDG_AZURE_TENANT_ID",
            "00000000-0000-0000-0000-000000000001",
        ),
        ("EDG_AZURE_CLIENT_ID", "app"),
        ("EDG_AZURE_CLIENT_SECRET", "secret"),
    ];

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration("0"), None);
        assert_eq!(parse_duration("fast"), None);
        assert_eq!(parse_duration("5d"), None);
    }

    #[test]
    fn backoff_doubles_up_to_the_configured_cap() {
        let (_dir, enclave) = enclave();
        let mut vars = CONFIGURED.to_vec();
        vars.push((RETRY_MAX_DELAY_VAR, "5s"));
        let sealing = Sealing::from_env(&env(&vars), enclave);
        let delays: Vec<u64> = (0..5)
            .map(|n| sealing.transient_delay(n).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 5, 5]);
        assert_eq!(sealing.operator_delay(), Duration::from_secs(20));
    }

    #[test]
    fn another_vault_or_key_is_named_with_both() {
        let (_dir, enclave) = enclave();
        let sealing = Sealing::from_env(&env(CONFIGURED), enclave);
        let same = HsmKeyRef {
            vault_host: "LOCALHOST:8443".into(),
            key_name: "marblerun-skr-key".into(),
            key_version: "0123456789abcdef0123456789abcdef".into(),
        };
        sealing.check_sealed_by(&same).unwrap();
        let other = HsmKeyRef {
            vault_host: "localhost:9443".into(),
            ..same.clone()
        };
        let error = sealing.check_sealed_by(&other).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("https://localhost:9443/keys/marblerun-skr-key/"),
            "{text}"
        );
        assert!(text.contains("vault localhost:8443"), "{text}");
        assert!(error.is_final());
        assert_eq!(error.class(), ErrorClass::NeedsOperator);
    }

    #[test]
    fn missing_settings_are_reported_when_needed() {
        let (_dir, enclave) = enclave();
        let sealing = Sealing::from_env(&env(&[]), enclave);
        let error = sealing.layers_for(true, Purpose::Manifest).unwrap_err();
        assert!(
            error.to_string().contains("EDG_AZURE_HSM_VAULT_URL"),
            "{error}"
        );
        assert!(
            sealing
                .layers_for(false, Purpose::Manifest)
                .unwrap()
                .is_empty()
        );
    }
}
