//! Marble activations per second against the cost of the cryptography one activation needs,
//! measured in the same run and reported as a ratio.
//!
//! A real Coordinator (simulation backend, its own seal directory) runs in this process and
//! serves the Marble API on `127.0.0.1:0`; 32 clients activate concurrently, each over a new
//! TLS connection with its own certificate and a quote bound to it, exactly as
//! `quarry-premain` does. The manifest gives the Marble a shared and a unique symmetric key
//! in its environment. The crypto baseline is what the Coordinator must compute for one
//! activation: issuing the Marble certificate from the CSR (a new P-384 key and an ECDSA
//! signature) and deriving the unique key (HKDF-SHA256).
//!
//! The summary line at the end gives activations per second, crypto operations per second, and
//! their ratio: the fraction of the crypto-only rate the whole activation path reaches.

#![allow(clippy::print_stdout)] // the summary line is what this benchmark reports

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use quarry_coordinator::Coordinator;
use quarry_coordinator::config::Config;
use quarry_enclave::Enclave;
use quarry_enclave::simulation::{Simulation, SimulationSettings};
use quarry_marble_api::ActivationReq;
use quarry_pki::SystemRandom;
use quarry_premain::client::{ServerTrust, activate_once, client_config};
use quarry_premain::identity::MarbleIdentity;

/// Concurrent activations per iteration.
const CONCURRENCY: usize = 32;

const MANIFEST: &str = r#"{
    "Packages": {"pkg": {"SignerID": "abababababababababababababababababababababababababababababababab", "ProductID": 1, "SecurityVersion": 1}},
    "Marbles": {"bench": {"Package": "pkg", "Parameters": {
        "Env": {"SHARED": "{{ hex .Secrets.shared }}", "UNIQUE": "{{ hex .Secrets.unique }}"}
    }}},
    "Secrets": {
        "shared": {"Type": "symmetric-key", "Size": 256, "Shared": true},
        "unique": {"Type": "symmetric-key", "Size": 256}
    }
}"#;

/// Total time and count of each measurement, for the summary.
static TOTALS: Mutex<BTreeMap<&'static str, (Duration, u64)>> = Mutex::new(BTreeMap::new());

fn record(name: &'static str, elapsed: Duration, count: u64) {
    let mut totals = TOTALS.lock().unwrap();
    let entry = totals.entry(name).or_insert((Duration::ZERO, 0));
    entry.0 += elapsed;
    entry.1 += count;
}

struct Client {
    tls: Arc<rustls::ClientConfig>,
    request: ActivationReq,
}

fn clients(sim: &Simulation) -> Vec<Client> {
    (0..CONCURRENCY)
        .map(|i| {
            let identity = MarbleIdentity::generate(&["localhost".into()], &[]).unwrap();
            let quote = sim.quote(&identity.report_data()).unwrap();
            Client {
                tls: Arc::new(client_config(&identity, &ServerTrust::Unverified).unwrap()),
                request: ActivationReq {
                    quote: quarry_enclave::quote::with_open_enclave_header(&quote),
                    csr: identity.csr_der().to_vec(),
                    marble_type: "bench".into(),
                    uuid: format!("6ba7b810-9dad-41d1-80b4-{i:012x}"),
                },
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let seal = dir.path().join("seal");
    std::fs::create_dir_all(&seal).unwrap();
    let env = BTreeMap::from([
        ("EDG_COORDINATOR_SEAL_DIR", seal.display().to_string()),
        ("EDG_COORDINATOR_CLIENT_ADDR", "127.0.0.1:0".to_owned()),
        ("EDG_COORDINATOR_MESH_ADDR", "127.0.0.1:0".to_owned()),
    ]);
    let config = Config::from_lookup(|k| env.get(k).cloned(), dir.path().to_path_buf()).unwrap();
    let coordinator_enclave: Arc<dyn Enclave> =
        Arc::new(Simulation::new(SimulationSettings::new(&seal)).unwrap());
    let coordinator = runtime
        .block_on(Coordinator::start(
            config,
            coordinator_enclave,
            BTreeMap::new(),
        ))
        .unwrap();
    let core = Arc::clone(coordinator.core());
    core.set_manifest(MANIFEST.as_bytes().to_vec()).unwrap();
    let addr = coordinator
        .addrs()
        .into_iter()
        .find(|(name, _)| name == "marble_api")
        .unwrap()
        .1
        .to_string();
    runtime.spawn(coordinator.serve());

    let marble_dir = tempfile::tempdir().unwrap();
    let mut settings = SimulationSettings::new(marble_dir.path());
    settings.identity.mrsigner = [0xab; 32];
    settings.identity.isv_prod_id = 1;
    settings.identity.isv_svn = 1;
    let marble_sim = Simulation::new(settings).unwrap();
    let clients = Arc::new(clients(&marble_sim));

    let mut group = c.benchmark_group("activation");
    group.sample_size(10);

    // The crypto one activation needs, on the Coordinator's own CA.
    let ca = core.ca();
    let csr = clients[0].request.csr.clone();
    let root_secret = [7u8; 32];
    let uuid = [1u8; 16];
    group.throughput(Throughput::Elements(1));
    group.bench_function("crypto_of_one_activation", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let creds = ca
                    .issue_marble_certificate(
                        &csr,
                        "bench",
                        &uuid,
                        time::OffsetDateTime::now_utc(),
                        &SystemRandom,
                    )
                    .unwrap();
                let key = quarry_pki::secrets::derive_marble_key(
                    &root_secret,
                    &uuid,
                    "unique",
                    "bench",
                    256,
                )
                .unwrap();
                std::hint::black_box((creds, key));
            }
            let elapsed = start.elapsed();
            record("crypto", elapsed, iters);
            elapsed
        })
    });

    group.throughput(Throughput::Elements(CONCURRENCY as u64));
    group.bench_function("activations_32_concurrent", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                runtime.block_on(async {
                    let tasks: Vec<_> = clients
                        .iter()
                        .map(|client| {
                            let addr = addr.clone();
                            let tls = Arc::clone(&client.tls);
                            let request = client.request.clone();
                            tokio::spawn(async move { activate_once(&addr, tls, request).await })
                        })
                        .collect();
                    for task in tasks {
                        let parameters = task.await.unwrap().unwrap();
                        assert!(parameters.env.contains_key("UNIQUE"));
                    }
                });
            }
            let elapsed = start.elapsed();
            record("activations", elapsed, iters * CONCURRENCY as u64);
            elapsed
        })
    });
    group.finish();
}

fn summary() {
    let totals = TOTALS.lock().unwrap();
    let rate = |name| {
        totals
            .get(name)
            .filter(|(d, n)| *n > 0 && !d.is_zero())
            .map(|(d, n)| *n as f64 / d.as_secs_f64())
    };
    if let (Some(activations), Some(crypto)) = (rate("activations"), rate("crypto")) {
        println!(
            "activation summary: {activations:.0} activations/s ({CONCURRENCY} concurrent, TLS + \
             gRPC + quote checks + secrets + templates) vs {crypto:.0} crypto operations/s \
             (marble certificate + unique key); ratio {:.3} (one activation costs {:.1}x its \
             cryptography)",
            activations / crypto,
            crypto / activations
        );
    }
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
    summary();
}
