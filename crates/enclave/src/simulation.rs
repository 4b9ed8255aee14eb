//! The `simulation` backend: no TEE, no protection, for development and CI.
//!
//! It produces structurally complete SGX DCAP version-3 quotes (Intel's QE vendor id, the
//! configured identity in the report body, the caller's report data; zeroed signature, QE
//! report, attestation key, and an empty type-5 certification data), so that every parser,
//! including Quarry's own and the Azure emulator's MAA, reads them. No verifier accepts their
//! signature.
//!
//! Seal keys are derived with HKDF-SHA256 from a 32-byte secret kept in a key file in the seal
//! directory (created with mode 0600 when missing, whole or not at all) and from the identity
//! the policy binds: MRSIGNER, ISVPRODID, ISVSVN and the debug flag for
//! [`SealPolicy::ProductKey`], MRENCLAVE and the debug flag for [`SealPolicy::UniqueKey`].
//! Anyone who can read that file can unseal.
//!
//! Constructing the backend logs a `warn` every time: simulation must never go unnoticed.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use aws_lc_rs::hkdf;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::quote::{
    Attributes, CERT_TYPE_PCK_CHAIN, CertificationData, FLAG_DEBUG, FLAG_INITTED, FLAG_MODE64BIT,
    Header, INTEL_QE_VENDOR_ID, Quote, ReportBody, Signature,
};
use crate::{Enclave, EnclaveError, Identity, SealKey, SealPolicy};

/// Name of the key file the simulation keeps in the seal directory.
pub const SEAL_KEY_FILE: &str = "simulation-seal.key";

/// Length of the key file's secret.
const SECRET_LEN: usize = 32;

/// Length of a derived seal key: 128 bits, like SGX's.
const SEAL_KEY_LEN: usize = 16;

/// XFRM of a typical enclave: x87 and SSE state.
const DEFAULT_XFRM: u64 = 0x3;

/// `QUARRY_INSECURE_SIMULATION`: `1` allows the simulation backend where no TEE exists.
pub const ENV_SIMULATION: &str = "QUARRY_INSECURE_SIMULATION";
/// `OE_SIMULATION`: honoured like [`ENV_SIMULATION`] for MarbleRun Helm compatibility.
pub const ENV_OE_SIMULATION: &str = "OE_SIMULATION";
/// `QUARRY_INSECURE_SIM_MRENCLAVE`: 64 hex characters (default all zero).
pub const ENV_SIM_MRENCLAVE: &str = "QUARRY_INSECURE_SIM_MRENCLAVE";
/// `QUARRY_INSECURE_SIM_MRSIGNER`: 64 hex characters (default all zero).
pub const ENV_SIM_MRSIGNER: &str = "QUARRY_INSECURE_SIM_MRSIGNER";
/// `QUARRY_INSECURE_SIM_ISVPRODID`: decimal 0–65535 (default 0).
pub const ENV_SIM_ISVPRODID: &str = "QUARRY_INSECURE_SIM_ISVPRODID";
/// `QUARRY_INSECURE_SIM_ISVSVN`: decimal 0–65535 (default 0).
pub const ENV_SIM_ISVSVN: &str = "QUARRY_INSECURE_SIM_ISVSVN";
/// `QUARRY_INSECURE_SIM_DEBUG`: `1`/`true` or `0`/`false` (default `0`).
pub const ENV_SIM_DEBUG: &str = "QUARRY_INSECURE_SIM_DEBUG";

/// What a simulated enclave is and where it keeps its key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulationSettings {
    /// The identity its quotes carry.
    pub identity: Identity,
    /// The seal directory holding [`SEAL_KEY_FILE`].
    pub seal_dir: PathBuf,
}

impl SimulationSettings {
    /// Settings with an all-zero, non-debug identity.
    pub fn new(seal_dir: impl Into<PathBuf>) -> Self {
        Self {
            identity: Identity {
                mrenclave: [0; 32],
                mrsigner: [0; 32],
                isv_prod_id: 0,
                isv_svn: 0,
                debug: false,
            },
            seal_dir: seal_dir.into(),
        }
    }

    /// Reads the identity from the `QUARRY_INSECURE_SIM_*` variables through `env` (a lookup
    /// such as `|k| std::env::var(k).ok()`); unset variables keep their defaults.
    pub fn from_env(
        seal_dir: impl Into<PathBuf>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, EnclaveError> {
        let mut settings = Self::new(seal_dir);
        let id = &mut settings.identity;
        if let Some(v) = env(ENV_SIM_MRENCLAVE) {
            id.mrenclave = parse_measurement(ENV_SIM_MRENCLAVE, &v)?;
        }
        if let Some(v) = env(ENV_SIM_MRSIGNER) {
            id.mrsigner = parse_measurement(ENV_SIM_MRSIGNER, &v)?;
        }
        if let Some(v) = env(ENV_SIM_ISVPRODID) {
            id.isv_prod_id = parse_u16(ENV_SIM_ISVPRODID, &v)?;
        }
        if let Some(v) = env(ENV_SIM_ISVSVN) {
            id.isv_svn = parse_u16(ENV_SIM_ISVSVN, &v)?;
        }
        if let Some(v) = env(ENV_SIM_DEBUG) {
            id.debug = parse_flag(ENV_SIM_DEBUG, &v)?;
        }
        Ok(settings)
    }
}

/// Whether `QUARRY_INSECURE_SIMULATION` or `OE_SIMULATION` asks for simulation: `1` yes, unset,
/// empty or `0` no, anything else is an error.
pub fn simulation_requested(env: &dyn Fn(&str) -> Option<String>) -> Result<bool, EnclaveError> {
    let mut requested = false;
    for name in [ENV_SIMULATION, ENV_OE_SIMULATION] {
        match env(name).as_deref().map(str::trim) {
            None | Some("") | Some("0") => {}
            Some("1") => requested = true,
            Some(other) => {
                return Err(EnclaveError::Invalid {
                    what: "environment variable",
                    detail: format!("{name}={other:?}: expected 1 or 0"),
                });
            }
        }
    }
    Ok(requested)
}

/// The simulation backend. See the module documentation.
pub struct Simulation {
    identity: Identity,
    secret: Zeroizing<[u8; SECRET_LEN]>,
    key_file: PathBuf,
}

impl std::fmt::Debug for Simulation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulation")
            .field("identity", &self.identity)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

impl Simulation {
    /// Starts the simulation backend with explicit settings, creating the key file if needed.
    /// Does not look at the environment or for a TEE: [`crate::select()`] does that.
    pub fn new(settings: SimulationSettings) -> Result<Self, EnclaveError> {
        let key_file = settings.seal_dir.join(SEAL_KEY_FILE);
        let secret = load_or_create_secret(&settings.seal_dir, &key_file)?;
        tracing::warn!(
            mrenclave = %hex::encode(settings.identity.mrenclave),
            mrsigner = %hex::encode(settings.identity.mrsigner),
            isv_prod_id = settings.identity.isv_prod_id,
            isv_svn = settings.identity.isv_svn,
            debug = settings.identity.debug,
            "insecure simulation mode: no TEE, quotes are unsigned and seal keys come from a file"
        );
        Ok(Self {
            identity: settings.identity,
            secret,
            key_file,
        })
    }

    /// The report body its quotes carry for `report_data`.
    pub fn report_body(&self, report_data: &[u8; 64]) -> ReportBody {
        let id = &self.identity;
        let mut flags = FLAG_INITTED | FLAG_MODE64BIT;
        if id.debug {
            flags |= FLAG_DEBUG;
        }
        ReportBody {
            attributes: Attributes {
                flags,
                xfrm: DEFAULT_XFRM,
            },
            mr_enclave: id.mrenclave,
            mr_signer: id.mrsigner,
            isv_prod_id: id.isv_prod_id,
            isv_svn: id.isv_svn,
            report_data: *report_data,
            ..ReportBody::default()
        }
    }
}

impl Enclave for Simulation {
    fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, EnclaveError> {
        let quote = Quote {
            open_enclave_header: false,
            header: Header {
                version: 3,
                attestation_key_type: crate::quote::ATTESTATION_KEY_TYPE_ECDSA_P256,
                tee_type: crate::quote::TEE_TYPE_SGX,
                qe_svn: 0,
                pce_svn: 0,
                qe_vendor_id: INTEL_QE_VENDOR_ID,
                user_data: [0; 20],
            },
            report_body: self.report_body(report_data),
            signature: Signature {
                ecdsa_signature: [0; 64],
                attestation_key: [0; 64],
                qe_report: ReportBody::default(),
                qe_report_signature: [0; 64],
                qe_auth_data: vec![0; 32],
                certification_data: CertificationData {
                    cert_type: CERT_TYPE_PCK_CHAIN,
                    data: Vec::new(),
                },
            },
        };
        Ok(quote.encode())
    }

    fn seal_key(&self, policy: SealPolicy) -> Result<SealKey, EnclaveError> {
        let id = &self.identity;
        let mut info = Vec::with_capacity(64);
        match policy {
            SealPolicy::ProductKey => {
                info.extend_from_slice(b"product-key");
                info.extend_from_slice(&id.mrsigner);
                info.extend_from_slice(&id.isv_prod_id.to_le_bytes());
                info.extend_from_slice(&id.isv_svn.to_le_bytes());
            }
            SealPolicy::UniqueKey => {
                info.extend_from_slice(b"unique-key");
                info.extend_from_slice(&id.mrenclave);
            }
        }
        info.push(u8::from(id.debug));
        derive(&self.secret[..], &info).map(SealKey::new)
    }

    fn identity(&self) -> &Identity {
        &self.identity
    }

    fn is_simulation(&self) -> bool {
        true
    }
}

/// HKDF-SHA256 with a fixed salt naming this use, over the key file's secret.
fn derive(secret: &[u8], info: &[u8]) -> Result<Vec<u8>, EnclaveError> {
    let failed = || EnclaveError::Invalid {
        what: "seal key derivation",
        detail: "hkdf failed".into(),
    };
    let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"quarry simulation seal key v1");
    let prk = salt.extract(secret);
    let infos = [info];
    let okm = prk.expand(&infos, SealKeyLen).map_err(|_| failed())?;
    let mut out = vec![0u8; SEAL_KEY_LEN];
    okm.fill(&mut out).map_err(|_| failed())?;
    Ok(out)
}

/// The output length type HKDF needs.
struct SealKeyLen;

impl hkdf::KeyType for SealKeyLen {
    fn len(&self) -> usize {
        SEAL_KEY_LEN
    }
}

fn load_or_create_secret(
    dir: &Path,
    path: &Path,
) -> Result<Zeroizing<[u8; SECRET_LEN]>, EnclaveError> {
    if let Some(secret) = read_secret(path)? {
        return Ok(secret);
    }
    fs::create_dir_all(dir).map_err(|e| EnclaveError::Io {
        op: "create directory",
        path: dir.to_owned(),
        source: e,
    })?;
    let mut secret = Zeroizing::new([0u8; SECRET_LEN]);
    SystemRandom::new()
        .fill(&mut secret[..])
        .map_err(|_| EnclaveError::Invalid {
            what: "random number generator",
            detail: "could not generate the simulation key".into(),
        })?;
    // The key file appears whole or not at all: the secret goes to a temporary file first,
    // which is then linked to the final name (refused if another start linked its own first).
    // A crash in between leaves only the temporary file (named by process and attempt), which
    // does no harm.
    static ATTEMPT: AtomicU64 = AtomicU64::new(0);
    let attempt = ATTEMPT.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(
        "{SEAL_KEY_FILE}.tmp-{}-{attempt}",
        std::process::id()
    ));
    let io = |op, path: &Path, source| EnclaveError::Io {
        op,
        path: path.to_owned(),
        source,
    };
    let written = write_private(&tmp, &secret[..]).map_err(|e| io("write", &tmp, e));
    let linked = written.and_then(|()| match fs::hard_link(&tmp, path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(io("link", path, e)),
    });
    // Best effort: the temporary file is ours and holds nothing the final file does not.
    let _ = fs::remove_file(&tmp);
    if !linked? {
        // Another start created the key file first: use its secret.
        return read_secret(path)?
            .ok_or_else(|| io("open", path, std::io::Error::from(ErrorKind::NotFound)));
    }
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("sync", dir, e))?;
    Ok(secret)
}

/// Reads the key file's secret; `None` if the file does not exist.
fn read_secret(path: &Path) -> Result<Option<Zeroizing<[u8; SECRET_LEN]>>, EnclaveError> {
    let io = |op, source| EnclaveError::Io {
        op,
        path: path.to_owned(),
        source,
    };
    let mut file = match fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("open", e)),
    };
    let mut buf = Zeroizing::new(Vec::with_capacity(SECRET_LEN));
    // One byte more than a key file holds is enough to tell that it is too long.
    (&mut file)
        .take(SECRET_LEN as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| io("read", e))?;
    if buf.len() != SECRET_LEN {
        return Err(EnclaveError::Invalid {
            what: "simulation key file",
            detail: format!(
                "{} holds {}{} bytes, expected {SECRET_LEN}",
                path.display(),
                if buf.len() > SECRET_LEN {
                    "more than "
                } else {
                    ""
                },
                buf.len().min(SECRET_LEN),
            ),
        });
    }
    let mut secret = Zeroizing::new([0u8; SECRET_LEN]);
    secret.copy_from_slice(&buf);
    Ok(Some(secret))
}

/// Writes `bytes` to a new private file at `path` (replacing a leftover one) and fsyncs it.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut file = create_private(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Creates a new file readable and writable by its owner only.
fn create_private(path: &Path) -> std::io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

fn parse_measurement(name: &str, value: &str) -> Result<[u8; 32], EnclaveError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(value.trim(), &mut out).map_err(|e| EnclaveError::Invalid {
        what: "environment variable",
        detail: format!("{name}={value:?}: expected 64 hex characters ({e})"),
    })?;
    Ok(out)
}

fn parse_u16(name: &str, value: &str) -> Result<u16, EnclaveError> {
    value.trim().parse().map_err(|e| EnclaveError::Invalid {
        what: "environment variable",
        detail: format!("{name}={value:?}: expected a number from 0 to 65535 ({e})"),
    })
}

fn parse_flag(name: &str, value: &str) -> Result<bool, EnclaveError> {
    match value.trim() {
        "1" | "true" => Ok(true),
        "" | "0" | "false" => Ok(false),
        _ => Err(EnclaveError::Invalid {
            what: "environment variable",
            detail: format!("{name}={value:?}: expected 1, 0, true or false"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn reads_identity_from_env() {
        let (enclave, signer) = ("ab".repeat(32), "CD".repeat(32));
        let e = env(&[
            (ENV_SIM_MRENCLAVE, &enclave),
            (ENV_SIM_MRSIGNER, &signer),
            (ENV_SIM_ISVPRODID, "1"),
            (ENV_SIM_ISVSVN, "3"),
            (ENV_SIM_DEBUG, "true"),
        ]);
        let s = SimulationSettings::from_env("/x", &e).unwrap();
        assert_eq!(s.identity.mrenclave, [0xab; 32]);
        assert_eq!(s.identity.mrsigner, [0xcd; 32]);
        assert_eq!(
            (s.identity.isv_prod_id, s.identity.isv_svn, s.identity.debug),
            (1, 3, true)
        );
    }

    #[test]
    fn bad_identity_values_name_the_variable() {
        for (k, v) in [
            (ENV_SIM_MRENCLAVE, "abc"),
            (ENV_SIM_ISVSVN, "70000"),
            (ENV_SIM_DEBUG, "yes"),
        ] {
            let err = SimulationSettings::from_env("/x", &env(&[(k, v)])).unwrap_err();
            assert!(err.to_string().contains(k), "{err}");
        }
    }

    #[test]
    fn simulation_switch_values() {
        assert!(!simulation_requested(&env(&[])).unwrap());
        assert!(simulation_requested(&env(&[(ENV_SIMULATION, "1")])).unwrap());
        assert!(simulation_requested(&env(&[(ENV_OE_SIMULATION, "1")])).unwrap());
        assert!(!simulation_requested(&env(&[(ENV_SIMULATION, "0")])).unwrap());
        assert!(simulation_requested(&env(&[(ENV_SIMULATION, "yes")])).is_err());
    }

    #[test]
    fn quotes_parse_back_with_identity_and_report_data() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = SimulationSettings::new(dir.path());
        settings.identity.mrenclave = [7; 32];
        settings.identity.isv_svn = 2;
        settings.identity.debug = true;
        let sim = Simulation::new(settings).unwrap();
        let raw = sim.quote(&[9; 64]).unwrap();
        let q = Quote::parse(&raw).unwrap();
        assert_eq!(q.header.version, 3);
        assert_eq!(q.report_body.report_data, [9; 64]);
        assert_eq!(q.report_body.identity(), *sim.identity());
        assert!(q.report_body.attributes.is_debug());
        assert!(sim.is_simulation());
    }

    #[test]
    fn seal_keys_are_stable_and_bound_to_identity_and_policy() {
        let dir = tempfile::tempdir().unwrap();
        let a = Simulation::new(SimulationSettings::new(dir.path())).unwrap();
        let product = a.seal_key(SealPolicy::ProductKey).unwrap();
        let unique = a.seal_key(SealPolicy::UniqueKey).unwrap();
        assert_eq!(product.as_bytes().len(), 16);
        assert_ne!(product, unique);

        let again = Simulation::new(SimulationSettings::new(dir.path())).unwrap();
        assert_eq!(again.seal_key(SealPolicy::ProductKey).unwrap(), product);

        let mut other = SimulationSettings::new(dir.path());
        other.identity.mrenclave = [1; 32];
        let b = Simulation::new(other).unwrap();
        assert_eq!(b.seal_key(SealPolicy::ProductKey).unwrap(), product);
        assert_ne!(b.seal_key(SealPolicy::UniqueKey).unwrap(), unique);

        let mut svn = SimulationSettings::new(dir.path());
        svn.identity.isv_svn = 1;
        let c = Simulation::new(svn).unwrap();
        assert_ne!(c.seal_key(SealPolicy::ProductKey).unwrap(), product);

        let fresh = tempfile::tempdir().unwrap();
        let d = Simulation::new(SimulationSettings::new(fresh.path())).unwrap();
        assert_ne!(d.seal_key(SealPolicy::ProductKey).unwrap(), product);
    }

    #[cfg(unix)]
    #[test]
    fn key_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        Simulation::new(SimulationSettings::new(dir.path())).unwrap();
        let mode = fs::metadata(dir.path().join(SEAL_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn refuses_a_key_file_of_the_wrong_size() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(SEAL_KEY_FILE), b"short").unwrap();
        let err = Simulation::new(SimulationSettings::new(dir.path())).unwrap_err();
        assert!(err.to_string().contains("5 bytes"), "{err}");
    }

    #[test]
    fn concurrent_first_starts_share_one_whole_key_file() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let barrier = std::sync::Barrier::new(4);
            let keys: Vec<SealKey> = std::thread::scope(|scope| {
                let starts: Vec<_> = (0..4)
                    .map(|_| {
                        scope.spawn(|| {
                            barrier.wait();
                            Simulation::new(SimulationSettings::new(dir.path()))
                                .unwrap()
                                .seal_key(SealPolicy::ProductKey)
                                .unwrap()
                        })
                    })
                    .collect();
                starts.into_iter().map(|s| s.join().unwrap()).collect()
            });
            assert!(keys.windows(2).all(|w| w[0] == w[1]));
            let names: Vec<_> = fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, [SEAL_KEY_FILE], "only the key file remains");
        }
    }

    #[test]
    fn key_file_creation_survives_a_leftover_temporary_file() {
        // What a start that crashed before linking its key file leaves behind.
        let dir = tempfile::tempdir().unwrap();
        let leftover = dir.path().join(format!("{SEAL_KEY_FILE}.tmp-1-0"));
        fs::write(&leftover, b"half").unwrap();
        let sim = Simulation::new(SimulationSettings::new(dir.path())).unwrap();
        assert_eq!(fs::read(dir.path().join(SEAL_KEY_FILE)).unwrap().len(), 32);
        let again = Simulation::new(SimulationSettings::new(dir.path())).unwrap();
        assert_eq!(
            again.seal_key(SealPolicy::UniqueKey).unwrap(),
            sim.seal_key(SealPolicy::UniqueKey).unwrap()
        );
    }

    #[test]
    fn refuses_an_oversized_key_file_without_reading_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(SEAL_KEY_FILE), vec![0u8; 1 << 20]).unwrap();
        let err = Simulation::new(SimulationSettings::new(dir.path())).unwrap_err();
        assert!(err.to_string().contains("more than 32 bytes"), "{err}");
    }
}
