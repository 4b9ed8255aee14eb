//! Cost of reading a quote against the cost of verifying it: parsing the real 4,600-byte quote,
//! reading FMSPC and CA from its certificate chain, making a simulated quote, and full DCAP
//! verification with the real collateral at a pinned time. Compare the numbers as ratios.

use std::path::PathBuf;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use quarry_enclave::Enclave;
use quarry_enclave::collateral::Collateral;
use quarry_enclave::quote::Quote;
use quarry_enclave::simulation::{Simulation, SimulationSettings};
use quarry_enclave::verify::{FixedClock, Verifier};

fn sgx(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/sgx")
        .join(name)
}

fn bench(c: &mut Criterion) {
    let raw = std::fs::read(sgx("dcap-qvl-sample.quote")).expect("sample quote");
    let collateral =
        Collateral::from_file(&sgx("dcap-qvl-sample.collateral.json")).expect("sample collateral");
    let parsed = Quote::parse(&raw).expect("parse");
    let verifier = Verifier::new(Arc::new(FixedClock(1_750_340_000)));
    let dir = tempfile::tempdir().expect("temp dir");
    let sim = Simulation::new(SimulationSettings::new(dir.path())).expect("simulation");

    c.bench_function("parse", |b| {
        b.iter(|| Quote::parse(std::hint::black_box(&raw)))
    });
    c.bench_function("pck_chain_fmspc", |b| {
        b.iter(|| parsed.pck_chain().and_then(|chain| chain.fmspc()))
    });
    c.bench_function("simulated_quote", |b| b.iter(|| sim.quote(&[7; 64])));
    c.bench_function("verify", |b| b.iter(|| verifier.verify(&raw, &collateral)));
}

criterion_group!(benches, bench);
criterion_main!(benches);
