//! The real `quarry-azure-emulator` on loopback for tests: started with its own state directory,
//! provisioned like the Managed HSM guide (`hsm provision` with a release policy), and
//! restartable on the same port so that the vault's address stays the same.
//!
//! Operator steps that the emulator's command line offers (a new key version, a role
//! assignment) run through it; removing a role assignment or a key, which the emulator only
//! keeps in its state files, edits those files as an operator would in the real service's
//! portal. Fault injection, the release counter and the replacement of a key version's material
//! (a test hook without an operator equivalent) go through the emulator's `/_emulator/` routes
//! with `curl`, trusting the emulator's CA.

use std::path::{Path, PathBuf};
use std::process::Command;

use quarry_common::EnvFile;
use serde_json::Value;

use crate::process::{Service, StartError, binary};

/// The release policy of the Managed HSM guide, as written there.
pub const SEED_POLICY: &str = r#"{
    "version": "1.0.0",
    "anyOf": [
        {
            "authority": "https://shareduks.uks.attest.azure.net",
            "allOf": [
                {
                    "claim": "x-ms-sgx-mrsigner",
                    "equals": "43361affedeb75affee9baec7e054a5e14883213e5a121b67d74a0e12e9d2b7a"
                },
                {
                    "claim": "x-ms-sgx-svn",
                    "greaterOrEquals": 2
                },
                {
                    "claim": "x-ms-sgx-product-id",
                    "greaterOrEquals": 3
                },
                {
                    "claim": "x-ms-sgx-is-debuggable",
                    "equals": false
                }
            ]
        }
    ]
}"#;

/// A simulated enclave identity that satisfies [`SEED_POLICY`].
pub const SEED_IDENTITY: [(&str, &str); 4] = [
    (
        "QUARRY_INSECURE_SIM_MRSIGNER",
        "43361affedeb75affee9baec7e054a5e14883213e5a121b67d74a0e12e9d2b7a",
    ),
    ("QUARRY_INSECURE_SIM_ISVSVN", "2"),
    ("QUARRY_INSECURE_SIM_ISVPRODID", "3"),
    ("QUARRY_INSECURE_SIM_DEBUG", "0"),
];

/// The key and service principal names `hsm provision` uses by default.
pub const KEY_NAME: &str = "marblerun-skr-key";

/// A failure driving the emulator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmulatorError {
    /// The server did not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// An operator command or request failed.
    #[error("{what}: {detail}")]
    Command {
        /// What was run.
        what: String,
        /// Its error output.
        detail: String,
    },
}

fn command_error(what: impl Into<String>, detail: impl Into<String>) -> EmulatorError {
    EmulatorError::Command {
        what: what.into(),
        detail: detail.into(),
    }
}

/// A running (or stopped) emulator and its provisioning.
#[derive(Debug)]
pub struct Emulator {
    dir: PathBuf,
    port: u16,
    service: Option<Service>,
    env: Vec<(String, String)>,
}

impl Emulator {
    /// Starts an emulator whose state lives in `dir/emulator`, on a free loopback port.
    pub fn start(dir: &Path) -> Result<Self, EmulatorError> {
        let dir = dir.join("emulator");
        std::fs::create_dir_all(&dir).map_err(|e| command_error("creating dir", e.to_string()))?;
        let service = spawn(&dir, "127.0.0.1:0")?;
        let port = service.addr("https").port();
        Ok(Self {
            dir,
            port,
            service: Some(service),
            env: Vec::new(),
        })
    }

    /// Starts an emulator and provisions it with `policy` ([`Emulator::provision`]).
    pub fn start_provisioned(dir: &Path, policy: &str) -> Result<Self, EmulatorError> {
        let mut emulator = Self::start(dir)?;
        emulator.provision(policy)?;
        Ok(emulator)
    }

    /// Runs `hsm provision` with `policy` and keeps the env file's variables.
    pub fn provision(&mut self, policy: &str) -> Result<Value, EmulatorError> {
        let policy_file = self.dir.join("policy.json");
        std::fs::write(&policy_file, policy)
            .map_err(|e| command_error("writing policy", e.to_string()))?;
        let env_file = self.dir.join("coordinator.env");
        let out = self.hsm(&[
            "provision",
            "--policy",
            &policy_file.display().to_string(),
            "--env-file",
            &env_file.display().to_string(),
        ])?;
        let text = std::fs::read_to_string(&env_file)
            .map_err(|e| command_error("reading env file", e.to_string()))?;
        let parsed = EnvFile::parse_isolated(&text)
            .map_err(|e| command_error("parsing env file", e.to_string()))?;
        self.env = parsed
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Ok(out)
    }

    /// `https://localhost:PORT`: the vault URL, MAA URL and authority host.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    /// The emulator's CA certificate file.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("state").join("ca.pem")
    }

    /// The variables `hsm provision` wrote, followed by [`SEED_IDENTITY`]: everything a
    /// simulated Coordinator needs to release the key.
    pub fn coordinator_env(&self) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        env.extend(
            SEED_IDENTITY
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        env
    }

    /// Stops the server (its state stays).
    pub fn stop(&mut self) {
        if let Some(mut service) = self.service.take() {
            service.kill();
        }
    }

    /// The exit status of the server if it has stopped on its own (`None` while it runs or after
    /// [`Emulator::stop`]).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.service.as_mut().and_then(Service::try_wait)
    }

    /// The log file of the server (`quarry-azure-emulator.log` in the emulator's directory).
    pub fn log_file(&self) -> PathBuf {
        self.dir.join("quarry-azure-emulator.log")
    }

    /// Starts the server again on the same port and state.
    pub fn restart(&mut self) -> Result<(), EmulatorError> {
        self.stop();
        self.service = Some(spawn(&self.dir, &format!("127.0.0.1:{}", self.port))?);
        Ok(())
    }

    /// Runs `quarry-azure-emulator hsm ARGS` on the state directory; returns its JSON output.
    pub fn hsm(&self, args: &[&str]) -> Result<Value, EmulatorError> {
        let bin = binary("quarry-azure-emulator")?;
        let out = Command::new(bin)
            .arg("--state-dir")
            .arg(self.dir.join("state"))
            .args(["hsm", "--emulator-url", &self.url()])
            .args(args)
            .output()
            .map_err(|e| command_error(format!("hsm {args:?}"), e.to_string()))?;
        if !out.status.success() {
            return Err(command_error(
                format!("hsm {args:?}"),
                String::from_utf8_lossy(&out.stderr),
            ));
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| command_error(format!("hsm {args:?} output"), e.to_string()))
    }

    /// Creates a new version of the provisioned key with the same policy; returns the version.
    pub fn new_key_version(&self) -> Result<String, EmulatorError> {
        let policy = self.dir.join("policy.json").display().to_string();
        let out = self.hsm(&[
            "key-create",
            "--name",
            KEY_NAME,
            "--exportable",
            "--policy",
            &policy,
        ])?;
        let kid = out["key"]["kid"].as_str().unwrap_or_default();
        kid.rsplit('/')
            .next()
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| command_error("key-create", format!("no key id in {out}")))
    }

    /// Removes every role assignment (the guide's step 8 undone).
    pub fn remove_role_assignments(&self) -> Result<(), EmulatorError> {
        self.edit_state("hsm/roles.json", |doc| {
            doc["assignments"] = Value::Array(Vec::new());
        })
    }

    /// Deletes the provisioned key, every version.
    pub fn delete_key(&self) -> Result<(), EmulatorError> {
        self.edit_state("hsm/keys.json", |doc| {
            if let Some(keys) = doc["keys"].as_object_mut() {
                keys.remove(KEY_NAME);
            }
        })
    }

    fn edit_state(&self, name: &str, edit: impl FnOnce(&mut Value)) -> Result<(), EmulatorError> {
        let state = self.dir.join("state");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(state.join("state.lock"))
            .map_err(|e| command_error("opening state.lock", e.to_string()))?;
        lock.lock()
            .map_err(|e| command_error("locking state", e.to_string()))?;
        let path = state.join(name);
        let text =
            std::fs::read(&path).map_err(|e| command_error(name.to_owned(), e.to_string()))?;
        let mut doc: Value = serde_json::from_slice(&text)
            .map_err(|e| command_error(name.to_owned(), e.to_string()))?;
        edit(&mut doc);
        let tmp = state.join(format!("{name}.edit"));
        std::fs::write(&tmp, doc.to_string())
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| command_error(name.to_owned(), e.to_string()))
    }

    /// Gives version `version` of the provisioned key fresh material under the same version id
    /// (the emulator's `replace-material` test hook): its releases stay validly signed and carry
    /// the same key id, but hold a key that opens nothing sealed before. Returns the key id.
    pub fn replace_key_material(&self, version: &str) -> Result<String, EmulatorError> {
        let path = format!("/_emulator/keys/{KEY_NAME}/{version}/replace-material");
        let answer = self.admin("POST", &path, None)?;
        answer["kid"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| command_error("replace-material", answer.to_string()))
    }

    /// Replaces the active faults (`[]` clears them); see the emulator's fault injection.
    pub fn set_faults(&self, faults: &Value) -> Result<Value, EmulatorError> {
        self.admin("PUT", "/_emulator/faults", Some(&faults.to_string()))
    }

    /// Keys released since the server (re)started.
    pub fn releases(&self) -> Result<u64, EmulatorError> {
        let answer = self.admin("GET", "/_emulator/releases", None)?;
        answer["releases"]
            .as_u64()
            .ok_or_else(|| command_error("releases", answer.to_string()))
    }

    fn admin(&self, method: &str, path: &str, body: Option<&str>) -> Result<Value, EmulatorError> {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--fail-with-body", "-X", method, "--cacert"])
            .arg(self.ca_file());
        if let Some(body) = body {
            cmd.args([
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                body,
            ]);
        }
        cmd.arg(format!("https://127.0.0.1:{}{path}", self.port));
        let out = cmd
            .output()
            .map_err(|e| command_error(format!("curl {path}"), e.to_string()))?;
        if !out.status.success() {
            return Err(command_error(
                format!("{method} {path}"),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stderr),
                    String::from_utf8_lossy(&out.stdout)
                ),
            ));
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| command_error(format!("{method} {path}"), e.to_string()))
    }
}

fn spawn(dir: &Path, listen: &str) -> Result<Service, StartError> {
    let state = dir.join("state").display().to_string();
    Service::start(
        "quarry-azure-emulator",
        &["serve", "--listen", listen, "--state-dir", &state],
        &[],
        dir,
    )
}
