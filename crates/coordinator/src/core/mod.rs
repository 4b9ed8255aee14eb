//! The Coordinator core: the state machine, the core mutex that serialises mutating operations,
//! the sealed store, the CA, the cached quote, and the recovery session.
//!
//! States, numbered as MarbleRun numbers them in `/api/v2/status`:
//!
//! | state | code | meaning |
//! |---|---|---|
//! | [`CoordinatorState::WaitingForKeyRelease`] | 0 | the sealed key needs an HSM key that is not released yet |
//! | [`CoordinatorState::Recovery`] | 1 | sealed state exists but cannot be unsealed |
//! | [`CoordinatorState::AcceptingManifest`] | 2 | fresh start, waiting for the first manifest |
//! | [`CoordinatorState::AcceptingMarbles`] | 3 | manifest set |
//!
//! Transitions: start → 2 (no sealed state), 3 (unsealed), 1 (needs recovery) or 0 (waiting);
//! 2 → 3 (manifest set); 1 → 3 (recovered, or a new manifest, which moves the old files
//! aside). There is no way back to 2.
//!
//! Invariants: every operation that changes the state holds the core mutex ([`Core::lock`])
//! from its state check to its commit; the in-memory state changes only after the store
//! committed; nothing is written in states 0 and 1 except by the recovery and manifest
//! operations that leave them. Before the first manifest the CA and root secret live only in
//! memory (as in MarbleRun), so a restart then creates a new CA.
//!
//! Extension points: the HSM step replaces [`Core::open`]'s unseal with a key release that
//! supplies wrap layers (the store names the keys with `required_wrap_keys()`); updates and
//! secrets use [`Core::lock`], [`Core::store`], [`keys`] and [`Core::set_ca`]; the Marble API
//! reads [`Core::snapshot`], [`Core::ca`] and [`Core::marble_cert`].

pub mod counter;
mod error;
pub mod keys;
mod manifest;
mod recovery;
mod secrets;
pub mod sign_quote;
// Users' operations: secrets, manifest updates, the update log.
pub mod update;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use quarry_enclave::Enclave;
use quarry_pki::{CaNames, CoordinatorCa, SystemRandom};
use quarry_store::{State, Status, Store, StoreError};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;
use zeroize::Zeroizing;

pub(crate) use error::commit_issuing;
pub use error::{CoreError, IN_DOUBT, IssuedSecrets};
pub use manifest::ManifestInfo;
pub use recovery::RecoverOutcome;
pub(crate) use secrets::cert_template;

use crate::config::Config;
use crate::tls::SwappableCert;
use recovery::RecoverySession;

/// Status message of state 1, as MarbleRun words it.
pub const RECOVERY_MESSAGE: &str = "Coordinator is in recovery mode. Either upload a key to unseal \
     the saved state, or set a new manifest. For more information on how to proceed, consult \
     the documentation.";
/// Status message of state 2.
pub const ACCEPTING_MANIFEST_MESSAGE: &str = "Coordinator is ready to accept a manifest.";
/// Status message of state 3.
pub const ACCEPTING_MARBLES_MESSAGE: &str =
    "Coordinator is running correctly and ready to accept marbles.";

/// Where the Coordinator is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CoordinatorState {
    /// The sealed key is wrapped with an HSM key that has not been released yet.
    WaitingForKeyRelease {
        /// The step it is on.
        step: String,
        /// The last error, if any.
        last_error: Option<String>,
    },
    /// Sealed state exists but cannot be unsealed; recover it or set a new manifest.
    Recovery,
    /// No manifest yet.
    AcceptingManifest,
    /// A manifest is set.
    AcceptingMarbles,
}

impl CoordinatorState {
    /// The state number of `/api/v2/status`.
    pub fn code(&self) -> u8 {
        match self {
            Self::WaitingForKeyRelease { .. } => 0,
            Self::Recovery => 1,
            Self::AcceptingManifest => 2,
            Self::AcceptingMarbles => 3,
        }
    }

    /// The status message.
    pub fn message(&self) -> String {
        match self {
            Self::WaitingForKeyRelease { step, last_error } => match last_error {
                Some(error) => {
                    format!("Coordinator is waiting for the key release: {step}: {error}")
                }
                None => format!("Coordinator is waiting for the key release: {step}"),
            },
            Self::Recovery => RECOVERY_MESSAGE.to_owned(),
            Self::AcceptingManifest => ACCEPTING_MANIFEST_MESSAGE.to_owned(),
            Self::AcceptingMarbles => ACCEPTING_MARBLES_MESSAGE.to_owned(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::WaitingForKeyRelease { .. } => "waiting for the key release (0)".into(),
            Self::Recovery => "in recovery mode (1)".into(),
            Self::AcceptingManifest => "accepting a manifest (2)".into(),
            Self::AcceptingMarbles => "accepting Marbles (3)".into(),
        }
    }
}

/// What changes together under the core's read-write lock.
struct Inner {
    state: CoordinatorState,
    ca: Arc<CoordinatorCa>,
    /// The root secret generated at a fresh start, stored with the first manifest.
    pending_root_secret: Option<Zeroizing<[u8; quarry_pki::secrets::ROOT_SECRET_SIZE]>>,
    /// The quote over the root certificate; `None` when none could be made (dev mode).
    quote: Option<Vec<u8>>,
}

/// The Coordinator core. See the module documentation.
pub struct Core {
    config: Config,
    enclave: Arc<dyn Enclave>,
    store: Store,
    env: BTreeMap<String, String>,
    mutex: Mutex<()>,
    inner: RwLock<Inner>,
    recovery: Mutex<RecoverySession>,
    client_cert: Arc<SwappableCert>,
    marble_cert: Arc<SwappableCert>,
    hsm: crate::hsm::Sealing,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("state", &self.state())
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Core {
    /// Opens the seal directory, unseals the state (or enters recovery mode, or starts fresh),
    /// restores or creates the CA, and makes the quote over the root certificate.
    ///
    /// `env` is the Coordinator's environment as the manifest checks read it (the `EDG_*`
    /// variables).
    pub fn open(
        config: Config,
        enclave: Arc<dyn Enclave>,
        env: BTreeMap<String, String>,
    ) -> Result<Self, CoreError> {
        let store = Store::open(&config.seal_dir, Arc::clone(&enclave))?;
        let names = CaNames::parse(&config.dns_names.join(","));
        let now = OffsetDateTime::now_utc();

        // A sealed key wrapped by an HSM key leaves the core waiting; `crate::hsm::startup`
        // releases the key and unseals.
        let (state, ca, pending_root_secret) = match store.status() {
            Status::Sealed => match store.unseal(&[]) {
                Ok(()) => restore(&store, &names, now)?,
                Err(StoreError::NeedsRecovery { reason }) => {
                    tracing::warn!(%reason, "sealed state needs recovery");
                    recovery_start(&names, now)?
                }
                Err(error @ StoreError::Corrupted { .. }) => {
                    tracing::warn!(error = %error_chain(&error), "sealed state needs recovery");
                    recovery_start(&names, now)?
                }
                Err(StoreError::WrapKeyRequired { key }) => {
                    let ca = CoordinatorCa::generate(&names, now, &SystemRandom)?;
                    let state = CoordinatorState::WaitingForKeyRelease {
                        step: format!("releasing HSM key {key}"),
                        last_error: None,
                    };
                    (state, ca, None)
                }
                Err(other) => return Err(other.into()),
            },
            Status::Ready => restore(&store, &names, now)?,
            Status::Recovery | Status::InDoubt => recovery_start(&names, now)?,
        };
        let recovery = RecoverySession::new(&store.recovery_data());
        let hsm = crate::hsm::Sealing::from_env(&env, Arc::clone(&enclave));

        let core = Self {
            config,
            enclave,
            store,
            env,
            mutex: Mutex::new(()),
            inner: RwLock::new(Inner {
                state,
                ca: Arc::new(ca),
                pending_root_secret,
                quote: None,
            }),
            recovery: Mutex::new(recovery),
            client_cert: Arc::new(SwappableCert::default()),
            marble_cert: Arc::new(SwappableCert::default()),
            hsm,
        };
        core.install_ca(core.ca())?;
        tracing::info!(state = core.state().code(), "coordinator core ready");
        Ok(core)
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The enclave backend.
    pub fn enclave(&self) -> &Arc<dyn Enclave> {
        &self.enclave
    }

    /// The sealed store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The environment the manifest checks read.
    pub fn env(&self) -> &BTreeMap<String, String> {
        &self.env
    }

    /// The committed state (empty before the first manifest and in states 0 and 1).
    pub fn snapshot(&self) -> Arc<State> {
        self.store.snapshot()
    }

    /// Takes the core mutex: every operation that changes the state holds it from its state
    /// check to its commit.
    pub fn lock(&self) -> MutexGuard<'_, ()> {
        // The guarded value is `()`: a panic while it was held cannot leave it inconsistent.
        self.mutex.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current state.
    pub fn state(&self) -> CoordinatorState {
        self.read().state.clone()
    }

    /// The current CA.
    pub fn ca(&self) -> Arc<CoordinatorCa> {
        Arc::clone(&self.read().ca)
    }

    /// The certificate of the Client API's TLS server (the root certificate).
    pub fn client_cert(&self) -> &Arc<SwappableCert> {
        &self.client_cert
    }

    /// The certificate of the Marble API's TLS server (the Marble root certificate).
    pub fn marble_cert(&self) -> &Arc<SwappableCert> {
        &self.marble_cert
    }

    /// Replaces the CA (after recovery, or a rotation by an update): the TLS certificates and
    /// the cached quote follow. Call with the core mutex held, after the commit.
    pub fn set_ca(&self, ca: CoordinatorCa) -> Result<(), CoreError> {
        self.install_ca(Arc::new(ca))
    }

    /// Whether an operation may change the state now, or the error saying why not.
    pub fn require_state(
        &self,
        operation: &'static str,
        allowed: &[u8],
        expected: &'static str,
    ) -> Result<CoordinatorState, CoreError> {
        let state = self.state();
        if let CoordinatorState::WaitingForKeyRelease { .. } = state
            && !allowed.contains(&0)
        {
            return Err(CoreError::Unavailable {
                message: state.message(),
            });
        }
        if !allowed.contains(&state.code()) {
            return Err(CoreError::WrongState {
                operation,
                expected,
                actual: state.describe(),
            });
        }
        Ok(state)
    }

    /// The quote for `/api/v2/quote`: the Open Enclave header and the SGX quote over
    /// SHA-256(root certificate DER || nonce) followed by 32 zero bytes. Without a nonce, the
    /// cached quote. `None` when no quote can be made (dev mode after a quote failure).
    ///
    /// Returns the CA whose root the quote covers with the quote, read together, so that an
    /// answer never pairs one CA's certificates with a quote over another's root while a
    /// recovery or an update replaces the CA.
    pub fn quote(
        &self,
        nonce: Option<&[u8]>,
    ) -> Result<(Arc<CoordinatorCa>, Option<Vec<u8>>), CoreError> {
        self.require_state("the quote", &[1, 2, 3], "state 1, 2 or 3")?;
        let (ca, cached) = {
            let inner = self.read();
            (Arc::clone(&inner.ca), inner.quote.clone())
        };
        let Some(nonce) = nonce else {
            return Ok((ca, cached));
        };
        let quote = self.make_quote(ca.root_certificate_der(), nonce)?;
        Ok((ca, Some(quote)))
    }

    fn make_quote(&self, root_der: &[u8], nonce: &[u8]) -> Result<Vec<u8>, CoreError> {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(root_der);
        ctx.update(nonce);
        let mut report_data = [0u8; 64];
        report_data[..32].copy_from_slice(ctx.finish().as_ref());
        let quote = self.enclave.quote(&report_data)?;
        Ok(quarry_enclave::quote::with_open_enclave_header(&quote))
    }

    /// Makes `ca` the current CA: quotes its root first, then installs the CA with its quote in
    /// one step and serves its certificates.
    fn install_ca(&self, ca: Arc<CoordinatorCa>) -> Result<(), CoreError> {
        let quote = match self.make_quote(ca.root_certificate_der(), &[]) {
            Ok(quote) => Some(quote),
            Err(error) if self.config.dev_mode => {
                tracing::warn!(error = %error_chain(&error), "no quote (tolerated in dev mode)");
                None
            }
            Err(error) => return Err(error),
        };
        let tls = |what: &str, e: rustls::Error| CoreError::Internal(format!("{what}: {e}"));
        let root_key = ca.root_key().to_pkcs8_der()?;
        self.client_cert
            .set(
                vec![CertificateDer::from(ca.root_certificate_der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(root_key.to_vec())),
            )
            .map_err(|e| tls("client api certificate", e))?;
        let intermediate_key = ca.intermediate_key().to_pkcs8_der()?;
        self.marble_cert
            .set(
                // The Marble root, then the intermediate (same key and name), so that a Marble
                // pinning the root can verify the server; see `crate::marble`.
                vec![
                    CertificateDer::from(ca.marble_root_certificate_der().to_vec()),
                    CertificateDer::from(ca.intermediate_certificate_der().to_vec()),
                ],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(intermediate_key.to_vec())),
            )
            .map_err(|e| tls("marble api certificate", e))?;
        let mut inner = self.write();
        inner.ca = ca;
        inner.quote = quote;
        Ok(())
    }

    // --- HSM sealing hooks (used by `crate::hsm`) ---

    /// HSM sealing: the key-release client and what the status reports about it.
    pub fn hsm(&self) -> &crate::hsm::Sealing {
        &self.hsm
    }

    /// Updates the step and last error of state 0; does nothing in another state.
    pub(crate) fn set_waiting(&self, step: String, last_error: Option<String>) {
        let mut inner = self.write();
        if let CoordinatorState::WaitingForKeyRelease { .. } = inner.state {
            inner.state = CoordinatorState::WaitingForKeyRelease { step, last_error };
        }
    }

    /// After the store was unsealed with released HSM keys (core mutex held): restores the
    /// state, the CA and the quote, leaving state 0.
    pub(crate) fn finish_unseal(&self) -> Result<(), CoreError> {
        let names = CaNames::parse(&self.config.dns_names.join(","));
        let (state, ca, pending_root_secret) =
            restore(&self.store, &names, OffsetDateTime::now_utc())?;
        {
            let mut inner = self.write();
            inner.state = state;
            inner.pending_root_secret = pending_root_secret;
        }
        self.set_ca(ca)
    }

    /// A definite key-release failure in state 0: recovery mode, with a temporary CA as at a
    /// start in recovery mode.
    pub(crate) fn enter_recovery(&self) -> Result<(), CoreError> {
        let _guard = self.lock();
        let names = CaNames::parse(&self.config.dns_names.join(","));
        let (state, ca, pending_root_secret) = recovery_start(&names, OffsetDateTime::now_utc())?;
        {
            let mut inner = self.write();
            inner.state = state;
            inner.pending_root_secret = pending_root_secret;
        }
        self.set_ca(ca)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // Inner's fields are replaced whole, so a panic while it was held cannot leave it torn.
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn recovery_session(&self) -> MutexGuard<'_, RecoverySession> {
        // The session is reset whole on every completed or failed round.
        self.recovery.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

type Started = (
    CoordinatorState,
    CoordinatorCa,
    Option<Zeroizing<[u8; quarry_pki::secrets::ROOT_SECRET_SIZE]>>,
);

/// The state after the store opened: restored, or fresh when no manifest was ever stored.
fn restore(store: &Store, names: &CaNames, now: OffsetDateTime) -> Result<Started, CoreError> {
    let snapshot = store.snapshot();
    if keys::manifest(&snapshot).is_none() {
        let ca = CoordinatorCa::generate(names, now, &SystemRandom)?;
        let root_secret = quarry_pki::secrets::generate_root_secret(&SystemRandom)?;
        return Ok((CoordinatorState::AcceptingManifest, ca, Some(root_secret)));
    }
    let ca = keys::ca(&snapshot)?;
    let state = match keys::state_code(&snapshot)? {
        Some(3) | None => CoordinatorState::AcceptingMarbles,
        Some(other) => {
            return Err(CoreError::Internal(format!(
                "sealed state records state {other}, expected 3"
            )));
        }
    };
    Ok((state, ca, None))
}

/// Recovery mode: a temporary CA, which becomes permanent if a new manifest is set.
fn recovery_start(names: &CaNames, now: OffsetDateTime) -> Result<Started, CoreError> {
    let ca = CoordinatorCa::generate(names, now, &SystemRandom)?;
    let root_secret = quarry_pki::secrets::generate_root_secret(&SystemRandom)?;
    Ok((CoordinatorState::Recovery, ca, Some(root_secret)))
}

/// The store's seal mode for the manifest's `Config.SealMode`.
pub(crate) fn store_seal_mode(mode: Option<quarry_manifest::SealMode>) -> quarry_store::SealMode {
    match mode {
        Some(quarry_manifest::SealMode::UniqueKey) => quarry_store::SealMode::UniqueKey,
        Some(quarry_manifest::SealMode::Disabled) => quarry_store::SealMode::Disabled,
        _ => quarry_store::SealMode::ProductKey,
    }
}

/// An error and its sources, joined with `: `.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `der` (a PKIX public key) as PEM, for tests that write recovery keys into manifests.
#[cfg(test)]
pub(crate) fn public_key_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use quarry_enclave::quote::Quote;
    use quarry_enclave::simulation::{Simulation, SimulationSettings};

    use super::*;

    #[test]
    fn a_quote_always_covers_the_root_of_the_ca_answered_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let seal_dir = dir.path().join("seal");
        let enclave = Arc::new(Simulation::new(SimulationSettings::new(dir.path())).unwrap());
        let lookup = |name: &str| {
            (name == "EDG_COORDINATOR_SEAL_DIR").then(|| seal_dir.display().to_string())
        };
        let config = Config::from_lookup(lookup, dir.path().to_owned()).unwrap();
        let core = Core::open(config, enclave, BTreeMap::new()).unwrap();
        let names = CaNames::parse("localhost");

        // One thread replaces the CA (as recovery and full updates do) while another reads
        // quotes; every answer must pair a quote with the root it covers.
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for _ in 0..20 {
                    let now = OffsetDateTime::now_utc();
                    let ca = CoordinatorCa::generate(&names, now, &SystemRandom).unwrap();
                    core.set_ca(ca).unwrap();
                }
                done.store(true, std::sync::atomic::Ordering::Release);
            });
            let nonces = [None, Some(&b"nonce"[..])].into_iter().cycle();
            for nonce in nonces {
                if done.load(std::sync::atomic::Ordering::Acquire) {
                    break;
                }
                let (ca, quote) = core.quote(nonce).unwrap();
                let quote = Quote::parse(&quote.unwrap()).unwrap();
                let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
                ctx.update(ca.root_certificate_der());
                ctx.update(nonce.unwrap_or_default());
                let expected = ctx.finish();
                assert_eq!(
                    &quote.report_body.report_data[..32],
                    expected.as_ref(),
                    "quote and root certificate differ"
                );
            }
        });
    }
}
