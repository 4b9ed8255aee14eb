//! Choosing the backend, so that simulation can never be chosen where a TEE exists.
//!
//! - The attestation root (`/dev/attestation`) exists, or cannot be checked: the `gramine`
//!   backend, which refuses to start unless `attestation_type` reads `dcap`. Asking for
//!   simulation there is refused outright, whatever the variables say.
//! - No attestation root and `QUARRY_INSECURE_SIMULATION=1` (or `OE_SIMULATION=1`): the
//!   `simulation` backend with the `QUARRY_INSECURE_SIM_*` identity.
//! - Otherwise: refused, with a message that says what is missing.

use std::path::Path;

use crate::gramine::{DEFAULT_ROOT, Gramine};
use crate::simulation::{ENV_SIMULATION, Simulation, SimulationSettings, simulation_requested};
use crate::{Enclave, EnclaveError};

/// Selects and starts a backend. `attestation_root` is normally [`DEFAULT_ROOT`]; `seal_dir`
/// holds the simulation's key file; `env` looks up environment variables.
pub fn select(
    attestation_root: &Path,
    seal_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Box<dyn Enclave>, EnclaveError> {
    let requested = simulation_requested(env)?;
    let tee_present = match std::fs::symlink_metadata(attestation_root) {
        Ok(_) => true,
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    };

    if tee_present {
        if requested {
            return Err(EnclaveError::Refused(format!(
                "simulation requested but {} exists: simulation is never used where a tee is \
                 present; unset {ENV_SIMULATION} and OE_SIMULATION",
                attestation_root.display()
            )));
        }
        return Ok(Box::new(Gramine::open(attestation_root)?));
    }
    if requested {
        let settings = SimulationSettings::from_env(seal_dir, env)?;
        return Ok(Box::new(Simulation::new(settings)?));
    }
    Err(EnclaveError::Refused(format!(
        "no tee found ({} is absent) and {ENV_SIMULATION}=1 is not set",
        attestation_root.display()
    )))
}

/// [`select`] with the real `/dev/attestation` and the process environment.
pub fn from_env(seal_dir: &Path) -> Result<Box<dyn Enclave>, EnclaveError> {
    select(Path::new(DEFAULT_ROOT), seal_dir, &|name| {
        std::env::var(name).ok()
    })
}
