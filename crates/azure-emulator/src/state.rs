//! The emulator's shared application state: configuration, the state directory, the CA, the
//! emulated services and the active faults. Every HTTP handler gets it as
//! `State<Arc<Emulator>>`.

use std::path::PathBuf;
use std::sync::Arc;

use quarry_enclave::collateral::Collateral;
use quarry_enclave::verify::{Clock, FixedClock, SystemClock, Verifier};

use crate::ca::{Ca, CaError};
use crate::entra::{Entra, EntraStoreError};
use crate::faults::{Fault, Faults};
use crate::hsm::Hsm;
use crate::maa::{Maa, MaaStoreError};
use crate::persist::{PersistError, StateDir};

/// The host name the Managed HSM serves as: one HSM per listener, on `localhost`.
pub const HSM_HOST: &str = "localhost";

/// Settings of a running emulator.
#[derive(Debug, Clone)]
pub struct Config {
    /// The state directory.
    pub state_dir: PathBuf,
    /// The emulator's own base URL, `https://localhost:PORT`.
    pub base_url: String,
    /// Lifetime of Entra ID access tokens, seconds.
    pub access_token_lifetime_secs: u64,
    /// Lifetime of MAA tokens, seconds.
    pub maa_token_lifetime_secs: u64,
    /// Collateral (dcap-qvl JSON) to verify quotes' DCAP signatures with; none: no verification.
    pub dcap_collateral: Option<PathBuf>,
    /// A fixed time (Unix seconds) for DCAP verification instead of the clock, for collateral
    /// that has expired (test fixtures).
    pub dcap_fixed_time: Option<i64>,
}

/// A failure opening the emulator's state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The state directory cannot be used.
    #[error(transparent)]
    Persist(#[from] PersistError),
    /// The CA cannot be loaded or created.
    #[error(transparent)]
    Ca(#[from] CaError),
    /// The Entra ID tenant cannot be loaded or created.
    #[error(transparent)]
    Entra(#[from] EntraStoreError),
    /// The MAA instance cannot be loaded or created.
    #[error(transparent)]
    Maa(#[from] MaaStoreError),
    /// The DCAP collateral cannot be read.
    #[error("dcap collateral {path}: {detail}")]
    Collateral {
        /// The file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// The Managed HSM cannot be opened.
    #[error("managed hsm: {0}")]
    Hsm(String),
}

/// The emulator: everything the HTTP handlers share.
#[derive(Debug)]
pub struct Emulator {
    /// Settings.
    pub config: Config,
    /// The state directory.
    pub state: StateDir,
    /// The private CA (issues the HSM's signing certificate).
    pub ca: Ca,
    /// The emulated Entra ID tenant.
    pub entra: Entra,
    /// The emulated MAA instance.
    pub maa: Maa,
    /// Active fault injections.
    pub faults: Faults,
    /// The emulated Managed HSM.
    pub hsm: Hsm,
    /// Keys released since the server started (read-only on `GET /_emulator/releases`).
    pub releases: std::sync::atomic::AtomicU64,
}

impl Emulator {
    /// Opens (creating on first use) everything in `config.state_dir`.
    pub fn open(config: Config, faults: Vec<Fault>) -> Result<Self, OpenError> {
        let state = StateDir::open(&config.state_dir)?;
        let ca = Ca::open(&state)?;
        let entra =
            Entra::open(&state)?.with_access_token_lifetime(config.access_token_lifetime_secs);
        let mut maa = Maa::open(&state, &config.base_url)?
            .with_token_lifetime(config.maa_token_lifetime_secs);
        if let Some(path) = &config.dcap_collateral {
            let collateral = Collateral::from_file(path).map_err(|e| OpenError::Collateral {
                path: path.clone(),
                detail: format!("{e:#}"),
            })?;
            let clock: Arc<dyn Clock> = match config.dcap_fixed_time {
                Some(t) => Arc::new(FixedClock(t)),
                None => Arc::new(SystemClock),
            };
            // MAA's default policy admits debug enclaves and reports them in the token.
            maa = maa.with_dcap(Verifier::new(clock).allow_debug(true), collateral);
        }
        let hsm = Hsm::open(&config.state_dir, HSM_HOST, &ca)
            .map_err(|e| OpenError::Hsm(e.to_string()))?;
        Ok(Self {
            config,
            state,
            ca,
            entra,
            maa,
            faults: Faults::new(faults),
            hsm,
            releases: std::sync::atomic::AtomicU64::new(0),
        })
    }
}
