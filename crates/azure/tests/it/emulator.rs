//! Against the real `quarry-azure-emulator` binary, provisioned like the guide: a simulated
//! enclave whose identity satisfies the release policy gets the key; one that does not is
//! refused with the failing claim named; an outage is transient and retried until the emulator
//! answers again; an older key version stays releasable after a new one was created.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use quarry_azure::{
    ClientOptions, ErrorClass, RetryPolicy, SkrClient, SkrConfig, Step, WrappingKeySize,
};
use quarry_common::EnvFile;
use quarry_enclave::Identity;
use quarry_enclave::simulation::{Simulation, SimulationSettings};
use quarry_testkit::process::{Service, binary};
use serde_json::Value;

const MRSIGNER: &str = "43361affedeb75affee9baec7e054a5e14883213e5a121b67d74a0e12e9d2b7a";
const KEY: &str = "marblerun-skr-key";

const POLICY: &str = r#"{
  "version": "1.0.0",
  "anyOf": [{
    "authority": "https://sharedweu.weu.attest.azure.net",
    "allOf": [
      {"claim": "x-ms-sgx-mrsigner", "equals": "43361affedeb75affee9baec7e054a5e14883213e5a121b67d74a0e12e9d2b7a"},
      {"claim": "x-ms-sgx-product-id", "equals": 3},
      {"claim": "x-ms-sgx-is-debuggable", "equals": false}
    ]
  }]
}"#;

struct Emulator {
    dir: tempfile::TempDir,
    base: String,
    env: EnvFile,
    _service: Service,
}

impl Emulator {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let service = Service::start(
            "quarry-azure-emulator",
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--state-dir",
                state.to_str().unwrap(),
            ],
            &[],
            dir.path(),
        )
        .unwrap();
        let base = format!("https://localhost:{}", service.addr("https").port());
        let policy = dir.path().join("policy.json");
        std::fs::write(&policy, POLICY).unwrap();
        let env_file = dir.path().join("coordinator.env");
        let emulator = Self {
            dir,
            base,
            env: EnvFile::default(),
            _service: service,
        };
        emulator.hsm(&[
            "provision",
            "--policy",
            policy.to_str().unwrap(),
            "--env-file",
            env_file.to_str().unwrap(),
        ]);
        let env = EnvFile::parse_isolated(&std::fs::read_to_string(&env_file).unwrap()).unwrap();
        Self { env, ..emulator }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn hsm(&self, args: &[&str]) -> Value {
        let out = Command::new(binary("quarry-azure-emulator").unwrap())
            .arg("--state-dir")
            .arg(self.state())
            .args(["hsm", "--emulator-url", &self.base])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn config(&self) -> SkrConfig {
        SkrConfig::from_lookup(|k| self.env.get(k).map(str::to_owned)).unwrap()
    }

    fn client(&self, identity: Identity, retry: RetryPolicy) -> SkrClient {
        let seal_dir = self
            .dir
            .path()
            .join(format!("seal-{}", hex(&identity.mrsigner[..4])));
        std::fs::create_dir_all(&seal_dir).unwrap();
        let enclave = Simulation::new(SimulationSettings {
            identity,
            seal_dir: seal_dir.clone(),
        })
        .unwrap();
        let options = ClientOptions {
            retry,
            wrapping_key_size: WrappingKeySize::Rsa2048,
            ..ClientOptions::default()
        };
        SkrClient::with_options(self.config(), Arc::new(enclave), options).unwrap()
    }

    async fn faults(&self, method: reqwest::Method, body: Option<Value>) {
        let ca = std::fs::read(self.state().join("ca.pem")).unwrap();
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
            .build()
            .unwrap();
        let mut request = client.request(method, format!("{}/_emulator/faults", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let status = request.send().await.unwrap().status();
        assert!(status.is_success(), "{status}");
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn identity(mrsigner: &str, product: u16) -> Identity {
    let mut signer = [0u8; 32];
    for (i, byte) in signer.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&mrsigner[2 * i..2 * i + 2], 16).unwrap();
    }
    Identity {
        mrenclave: [0x11; 32],
        mrsigner: signer,
        isv_prod_id: product,
        isv_svn: 2,
        debug: false,
    }
}

#[tokio::test]
async fn releases_the_key_to_a_simulated_enclave_that_satisfies_the_policy() {
    let emu = Emulator::start();
    assert!(Path::new(emu.env.get("QUARRY_AZURE_CA_FILE").unwrap()).exists());
    let client = emu.client(identity(MRSIGNER, 3), RetryPolicy::immediate(1));
    let key = client.release(None).await.unwrap();
    let shown = emu.hsm(&["key-show", "--name", KEY]);
    assert_eq!(key.key_id(), shown["key"]["kid"].as_str().unwrap());
    assert_eq!(key.key().len(), 32);

    // The same key again, by its version.
    let again = client.release(Some(key.version())).await.unwrap();
    assert_eq!(again.key(), key.key());
}

#[tokio::test]
async fn a_policy_refusal_needs_an_operator_and_names_the_failing_claim() {
    let emu = Emulator::start();
    let other_signer = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let client = emu.client(identity(other_signer, 3), RetryPolicy::immediate(3));
    let err = client.release(None).await.unwrap_err();
    assert_eq!(
        (err.step(), err.class()),
        (Step::Release, ErrorClass::NeedsOperator),
        "{err}"
    );
    assert_eq!(err.azure_code(), Some("Forbidden"));
    assert!(err.to_string().contains("x-ms-sgx-mrsigner"), "{err}");
}

#[tokio::test]
async fn an_outage_is_transient_and_retried_until_the_emulator_answers() {
    let emu = Emulator::start();
    let client = emu.client(identity(MRSIGNER, 3), RetryPolicy::immediate(2));

    // A lasting outage of attestation: every attempt fails, transiently.
    let outage = serde_json::json!({"route": "/attest/SgxEnclave", "outage": true});
    emu.faults(reqwest::Method::POST, Some(outage)).await;
    for _ in 0..2 {
        let err = client.release(None).await.unwrap_err();
        assert_eq!(
            (err.step(), err.class()),
            (Step::Attestation, ErrorClass::Transient),
            "{err}"
        );
    }

    // The emulator returns after a few more failures; the caller retries transient errors only.
    emu.faults(reqwest::Method::DELETE, None).await;
    let failing = serde_json::json!({"route": "/keys/{*rest}", "status": 503, "times": 3});
    emu.faults(reqwest::Method::POST, Some(failing)).await;
    let mut transient = 0;
    let key = loop {
        match client.release(None).await {
            Ok(key) => break key,
            Err(err) => {
                assert_eq!(
                    (err.step(), err.class()),
                    (Step::Release, ErrorClass::Transient)
                );
                transient += 1;
                assert!(transient < 10, "still failing: {err}");
            }
        }
    };
    assert_eq!(
        transient, 1,
        "two attempts per release: 503, 503 | 503, 200"
    );
    assert_eq!(key.key().len(), 32);
}

#[tokio::test]
async fn an_older_key_version_stays_releasable_after_a_new_one() {
    let emu = Emulator::start();
    let client = emu.client(identity(MRSIGNER, 3), RetryPolicy::immediate(1));
    let first = client.release(None).await.unwrap();

    let policy = emu.dir.path().join("policy.json");
    let created = emu.hsm(&[
        "key-create",
        "--name",
        KEY,
        "--kty",
        "oct-HSM",
        "--size",
        "256",
        "--exportable",
        "--policy",
        policy.to_str().unwrap(),
    ]);
    let new_version = created["key"]["kid"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    assert_ne!(new_version, first.version());

    let latest = client.release(None).await.unwrap();
    assert_eq!(latest.version(), new_version);
    assert_ne!(latest.key(), first.key());

    let old = client.release(Some(first.version())).await.unwrap();
    assert_eq!(old.version(), first.version());
    assert_eq!(old.key(), first.key());
}
