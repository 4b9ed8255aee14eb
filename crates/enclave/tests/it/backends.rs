//! The gramine backend against a prepared attestation directory, and backend selection.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex};

use quarry_enclave::gramine::Gramine;
use quarry_enclave::quote::Quote;
use quarry_enclave::simulation::{Simulation, SimulationSettings};
use quarry_enclave::{Enclave, EnclaveError, Identity, SealPolicy, select};

use crate::fixtures::real_quote;

/// A quote as Gramine would return it, for `identity` and `report_data`.
fn quote_for(identity: &Identity, report_data: &[u8; 64]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = SimulationSettings::new(dir.path());
    settings.identity = identity.clone();
    Simulation::new(settings)
        .unwrap()
        .quote(report_data)
        .unwrap()
}

fn identity() -> Identity {
    Identity {
        mrenclave: [0xe1; 32],
        mrsigner: [0x51; 32],
        isv_prod_id: 3,
        isv_svn: 5,
        debug: false,
    }
}

/// Prepares a directory that looks like Gramine's /dev/attestation on SGX with DCAP.
fn prepare(root: &Path, first_quote: &[u8]) {
    fs::create_dir_all(root.join("keys")).unwrap();
    fs::write(root.join("attestation_type"), "dcap").unwrap();
    fs::write(root.join("user_report_data"), b"").unwrap();
    fs::write(root.join("quote"), first_quote).unwrap();
    fs::write(root.join("keys/_sgx_mrsigner"), [0x5a; 16]).unwrap();
    fs::write(root.join("keys/_sgx_mrenclave"), [0xe5; 16]).unwrap();
}

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

#[test]
fn gramine_reads_identity_from_its_first_quote() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("attestation");
    prepare(&root, &quote_for(&identity(), &[0; 64]));
    let g = Gramine::open(&root).unwrap();
    assert_eq!(*g.identity(), identity());
    assert!(!g.is_simulation());
    assert_eq!(fs::read(root.join("user_report_data")).unwrap(), [0u8; 64]);
}

#[test]
fn gramine_writes_exactly_the_report_data_and_returns_exactly_the_quote() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("attestation");
    prepare(&root, &quote_for(&identity(), &[0; 64]));
    let g = Gramine::open(&root).unwrap();

    // The real quote carries "Hello, world!" followed by zeros as report data.
    let mut report_data = [0u8; 64];
    report_data[..13].copy_from_slice(b"Hello, world!");
    fs::write(root.join("quote"), real_quote()).unwrap();
    let got = g.quote(&report_data).unwrap();
    assert_eq!(got, real_quote());
    assert_eq!(
        fs::read(root.join("user_report_data")).unwrap(),
        report_data
    );

    // A longer value in the file before is replaced, not overwritten in place.
    fs::write(root.join("user_report_data"), [0xff; 100]).unwrap();
    g.quote(&report_data).unwrap();
    assert_eq!(
        fs::read(root.join("user_report_data")).unwrap(),
        report_data
    );
}

#[test]
fn gramine_refuses_a_quote_over_other_report_data() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("attestation");
    prepare(&root, &quote_for(&identity(), &[0; 64]));
    let g = Gramine::open(&root).unwrap();
    let err = g.quote(&[7; 64]).unwrap_err();
    assert!(
        matches!(err, EnclaveError::Invalid { what: "quote", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("instead of the"), "{err}");
}

#[test]
fn gramine_refuses_garbage_and_empty_quotes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("attestation");
    prepare(&root, b"not a quote");
    let err = Gramine::open(&root).unwrap_err();
    assert!(
        err.to_string().contains("unsupported quote version"),
        "{err}"
    );
    fs::write(root.join("quote"), b"").unwrap();
    let err = Gramine::open(&root).unwrap_err();
    assert!(err.to_string().contains("returned 0 bytes"), "{err}");
}

#[test]
fn gramine_seal_keys_come_from_the_key_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("attestation");
    prepare(&root, &quote_for(&identity(), &[0; 64]));
    let g = Gramine::open(&root).unwrap();
    assert_eq!(
        g.seal_key(SealPolicy::ProductKey).unwrap().as_bytes(),
        [0x5a; 16]
    );
    assert_eq!(
        g.seal_key(SealPolicy::UniqueKey).unwrap().as_bytes(),
        [0xe5; 16]
    );
    fs::write(root.join("keys/_sgx_mrenclave"), [1; 15]).unwrap();
    let err = g.seal_key(SealPolicy::UniqueKey).unwrap_err();
    assert!(
        err.to_string().contains("returned 15 bytes, expected 16"),
        "{err}"
    );
}

#[test]
fn gramine_requires_dcap() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("attestation");
    prepare(&root, &quote_for(&identity(), &[0; 64]));
    fs::write(root.join("attestation_type"), "none").unwrap();
    let err = Gramine::open(&root).unwrap_err();
    assert!(matches!(err, EnclaveError::Refused(_)), "{err}");
    assert!(err.to_string().contains("\"none\""), "{err}");

    fs::remove_file(root.join("attestation_type")).unwrap();
    let err = Gramine::open(&root).unwrap_err();
    assert!(err.to_string().contains("gramine-direct"), "{err}");
}

#[test]
fn simulation_cannot_be_selected_where_attestation_exists() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("attestation");
    let seal = dir.path().join("seal");
    prepare(&root, &quote_for(&identity(), &[0; 64]));
    let all_sim = [
        ("QUARRY_INSECURE_SIMULATION", "1"),
        ("OE_SIMULATION", "1"),
        ("QUARRY_INSECURE_SIM_MRENCLAVE", "00"),
        ("QUARRY_INSECURE_SIM_DEBUG", "1"),
    ];
    for vars in [&all_sim[..1], &all_sim[1..2], &all_sim[..]] {
        let err = select(&root, &seal, &env(vars)).unwrap_err();
        assert!(matches!(err, EnclaveError::Refused(_)), "{err}");
        assert!(
            err.to_string().contains("simulation requested but"),
            "{err}"
        );
    }
    // Under gramine-direct the directory exists without attestation_type: still no simulation.
    let direct = dir.path().join("direct");
    fs::create_dir_all(direct.join("keys")).unwrap();
    assert!(select(&direct, &seal, &env(&all_sim)).is_err());
    assert!(select(&direct, &seal, &env(&[])).is_err());
    // An attestation root that is a file also counts as present.
    let file = dir.path().join("file");
    fs::write(&file, b"").unwrap();
    assert!(select(&file, &seal, &env(&all_sim)).is_err());
    assert!(!seal.exists(), "no simulation key file may be created");

    // Without simulation variables the gramine backend is chosen.
    let chosen = select(&root, &seal, &env(&[])).unwrap();
    assert!(!chosen.is_simulation());
    assert_eq!(*chosen.identity(), identity());
}

#[test]
fn simulation_needs_the_switch_where_no_tee_exists() {
    let dir = tempfile::tempdir().unwrap();
    let absent = dir.path().join("no-attestation");
    let seal = dir.path().join("seal");
    let err = select(&absent, &seal, &env(&[])).unwrap_err();
    assert!(
        err.to_string()
            .contains("QUARRY_INSECURE_SIMULATION=1 is not set"),
        "{err}"
    );

    let mrenclave = "ab".repeat(32);
    let chosen = select(
        &absent,
        &seal,
        &env(&[
            ("OE_SIMULATION", "1"),
            ("QUARRY_INSECURE_SIM_MRENCLAVE", &mrenclave),
        ]),
    )
    .unwrap();
    assert!(chosen.is_simulation());
    assert_eq!(chosen.identity().mrenclave, [0xab; 32]);
    let q = Quote::parse(&chosen.quote(&[1; 64]).unwrap()).unwrap();
    assert_eq!(q.report_body.mr_enclave, [0xab; 32]);
    assert!(
        seal.join(quarry_enclave::simulation::SEAL_KEY_FILE)
            .exists()
    );
}

/// Collects formatted log output.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every warning of this test binary in one buffer. A process-wide subscriber is used because a
/// thread-local one misses events whose callsites another test thread registered first (tracing
/// caches a callsite's interest globally).
fn capture() -> &'static Captured {
    static CAPTURE: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    CAPTURE.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in this test binary");
        captured
    })
}

#[test]
fn every_simulation_start_warns() {
    let captured = capture();
    let dir = tempfile::tempdir().unwrap();
    // An identity no other test uses marks this test's lines among those of parallel tests.
    let mut settings = SimulationSettings::new(dir.path());
    settings.identity.isv_prod_id = 4093;
    settings.identity.isv_svn = 3907;
    for _ in 0..2 {
        Simulation::new(settings.clone()).unwrap();
    }
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let ours: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("isv_prod_id=4093") && line.contains("isv_svn=3907"))
        .collect();
    assert_eq!(ours.len(), 2, "{text}");
    assert!(
        ours.iter()
            .all(|line| line.contains("WARN") && line.contains("insecure simulation mode")),
        "{text}"
    );
}
