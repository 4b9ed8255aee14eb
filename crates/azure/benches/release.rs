//! One Secure Key Release against the emulator, broken into its steps (wrapping-key generation,
//! access token, quote and attestation, release request, verification and unwrap), and the
//! whole release with the key generation overlapping the network calls against the same
//! release done step by step. The overlap's saving is printed as a ratio, once on loopback and
//! once with 150 ms of injected latency on the token endpoint (closer to a real Entra ID).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use quarry_azure::{
    ClientOptions, Expected, Pipeline, RetryPolicy, SkrClient, SkrConfig, TrustStore,
    WrapAlgorithm, WrappingKey, WrappingKeySize, verify_release,
};
use quarry_common::EnvFile;
use quarry_enclave::Identity;
use quarry_enclave::simulation::{Simulation, SimulationSettings};
use quarry_testkit::process::{Service, binary};
use rustls_pki_types::UnixTime;

const POLICY: &str = r#"{"version":"1.0.0","anyOf":[{"authority":"https://sharedweu.weu.attest.azure.net",
  "allOf":[{"claim":"x-ms-sgx-mrsigner","equals":"2222222222222222222222222222222222222222222222222222222222222222"}]}]}"#;

struct Emulator {
    dir: tempfile::TempDir,
    base: String,
    config: SkrConfig,
    _service: Service,
}

fn start_emulator() -> Emulator {
    let dir = tempfile::tempdir().expect("temporary directory");
    let state = dir.path().join("state");
    let state = state.to_str().expect("utf-8 path");
    let service = Service::start(
        "quarry-azure-emulator",
        &["serve", "--listen", "127.0.0.1:0", "--state-dir", state],
        &[],
        dir.path(),
    )
    .expect("emulator starts");
    let base = format!("https://localhost:{}", service.addr("https").port());
    let policy = dir.path().join("policy.json");
    std::fs::write(&policy, POLICY).expect("policy written");
    let env_file = dir.path().join("coordinator.env");
    let status = std::process::Command::new(binary("quarry-azure-emulator").expect("binary"))
        .args([
            "--state-dir",
            state,
            "hsm",
            "--emulator-url",
            &base,
            "provision",
            "--policy",
        ])
        .arg(&policy)
        .arg("--env-file")
        .arg(&env_file)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("provision runs");
    assert!(status.success(), "provisioning failed");
    let env = EnvFile::parse_isolated(&std::fs::read_to_string(&env_file).expect("env file"))
        .expect("env file parses");
    let config = SkrConfig::from_lookup(|k| env.get(k).map(str::to_owned)).expect("config");
    Emulator {
        dir,
        base,
        config,
        _service: service,
    }
}

fn client(emu: &Emulator, pipeline: Pipeline) -> SkrClient {
    let identity = Identity {
        mrenclave: [1; 32],
        mrsigner: [0x22; 32],
        isv_prod_id: 1,
        isv_svn: 1,
        debug: false,
    };
    let seal_dir = emu.dir.path().join("seal");
    std::fs::create_dir_all(&seal_dir).expect("seal dir");
    let enclave = Simulation::new(SimulationSettings { identity, seal_dir }).expect("simulation");
    let options = ClientOptions {
        retry: RetryPolicy::immediate(1),
        wrapping_key_size: WrappingKeySize::Rsa4096,
        pipeline,
        ..ClientOptions::default()
    };
    SkrClient::with_options(emu.config.clone(), Arc::new(enclave), options).expect("client")
}

/// Median of `samples`.
fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Median times of `n` full releases with a fresh token each, sequential and overlapped, taken
/// alternately so that drifts of the machine affect both alike.
fn median_releases(
    rt: &tokio::runtime::Runtime,
    sequential: &SkrClient,
    overlapped: &SkrClient,
    n: usize,
) -> (Duration, Duration) {
    let mut times = [Vec::new(), Vec::new()];
    for _ in 0..n {
        for (samples, client) in times.iter_mut().zip([sequential, overlapped]) {
            rt.block_on(client.tokens().invalidate());
            let start = Instant::now();
            black_box(rt.block_on(client.release(None)).expect("release"));
            samples.push(start.elapsed());
        }
    }
    let [seq, ovl] = times;
    (median(seq), median(ovl))
}

/// Median time of `n` runs of `f`.
fn median_of(n: usize, mut f: impl FnMut()) -> Duration {
    median(
        (0..n)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed()
            })
            .collect(),
    )
}

async fn set_token_latency(emu: &Emulator, latency_ms: u64) {
    let ca = std::fs::read(emu.dir.path().join("state/ca.pem")).expect("ca");
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).expect("ca pem")])
        .build()
        .expect("client");
    let fault =
        serde_json::json!({"route": "/{tenant}/oauth2/v2.0/token", "latency_ms": latency_ms});
    let status = http
        .post(format!("{}/_emulator/faults", emu.base))
        .json(&fault)
        .send()
        .await
        .expect("fault set")
        .status();
    assert!(status.is_success());
}

fn release_steps(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let emu = start_emulator();
    let overlapped = client(&emu, Pipeline::Overlapped);
    let sequential = client(&emu, Pipeline::Sequential);
    let trust = TrustStore::system_with(emu.config.ca_file.as_deref()).expect("trust");

    let mut group = c.benchmark_group("release_steps");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    group.bench_function("key_generation_rsa4096", |b| {
        b.iter(|| WrappingKey::generate(WrappingKeySize::Rsa4096).expect("key"))
    });
    group.bench_function("token", |b| {
        b.iter(|| rt.block_on(overlapped.tokens().fetch()).expect("token"))
    });
    let key = WrappingKey::generate(WrappingKeySize::Rsa4096).expect("key");
    group.bench_function("quote_and_attestation", |b| {
        b.iter(|| {
            rt.block_on(overlapped.attest_key(&key))
                .expect("attestation")
        })
    });
    let maa = rt
        .block_on(overlapped.attest_key(&key))
        .expect("attestation");
    group.bench_function("release_request", |b| {
        b.iter(|| {
            rt.block_on(overlapped.request_release(None, &maa, "bench-nonce"))
                .expect("jws")
        })
    });
    let jws = rt
        .block_on(overlapped.request_release(None, &maa, "bench-nonce"))
        .expect("jws");
    let expected = Expected {
        host: emu.config.vault_host(),
        key_name: &emu.config.key_name,
        key_version: None,
        nonce: Some("bench-nonce"),
        enc: WrapAlgorithm::RsaAesKeyWrap384,
        wrapping_kid: Some(key.kid()),
    };
    group.bench_function("verify_and_unwrap", |b| {
        b.iter(|| {
            let verified =
                verify_release(&jws, &expected, &trust, UnixTime::now()).expect("verified");
            key.unwrap(WrapAlgorithm::RsaAesKeyWrap384, &verified.ciphertext)
                .expect("unwrap")
        })
    });
    group.finish();

    let mut group = c.benchmark_group("release");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(15));
    for (name, client) in [("overlapped", &overlapped), ("sequential", &sequential)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(client.tokens().invalidate());
                rt.block_on(client.release(None)).expect("release")
            })
        });
    }
    group.finish();

    // The saving, measured in the same run, on loopback and with a slower token endpoint: the
    // whole release both ways, and the step times from which the saving follows (the token
    // request hides behind key generation, quote and attestation).
    let keygen = median_of(15, || {
        black_box(WrappingKey::generate(WrappingKeySize::Rsa4096).expect("key"));
    });
    let attest = median_of(15, || {
        black_box(
            rt.block_on(overlapped.attest_key(&key))
                .expect("attestation"),
        );
    });
    let release = median_of(15, || {
        black_box(
            rt.block_on(overlapped.request_release(None, &maa, "n"))
                .expect("jws"),
        );
    });
    let unwrap = median_of(15, || {
        let verified = verify_release(&jws, &expected, &trust, UnixTime::now()).expect("verified");
        black_box(
            key.unwrap(WrapAlgorithm::RsaAesKeyWrap384, &verified.ciphertext)
                .expect("key"),
        );
    });
    for latency_ms in [0, 150] {
        if latency_ms > 0 {
            rt.block_on(set_token_latency(&emu, latency_ms));
        }
        let token = median_of(15, || {
            black_box(rt.block_on(overlapped.tokens().fetch()).expect("token"));
        });
        let rest = release + unwrap;
        let steps_seq = keygen + token + attest + rest;
        let steps_ovl = (keygen + attest).max(token) + rest;
        let (seq, ovl) = median_releases(&rt, &sequential, &overlapped, 25);
        eprintln!(
            "token latency +{latency_ms} ms: steps (median) keygen {keygen:?}, token {token:?}, \
             quote+attest {attest:?}, release request {release:?}, verify+unwrap {unwrap:?}; \
             expected sequential/overlapped = {:.3}; \
             measured whole releases (median of 25): sequential {seq:?}, overlapped {ovl:?}, \
             sequential/overlapped = {:.3}",
            steps_seq.as_secs_f64() / steps_ovl.as_secs_f64(),
            seq.as_secs_f64() / ovl.as_secs_f64()
        );
    }
}

criterion_group!(benches, release_steps);
criterion_main!(benches);
