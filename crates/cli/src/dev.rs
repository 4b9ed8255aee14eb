//! `quarry dev`: a complete local deployment in one command.
//!
//! The steps, each reported as it runs:
//! 1. start `quarry-azure-emulator serve` on loopback with its state under `DIR/emulator`;
//! 2. provision it like the Managed HSM guide (`hsm provision`: HSM, service principal, role
//!    assignment, exportable `oct-HSM` key with the guide's `policy.json`), which writes the
//!    Coordinator's env file;
//! 3. start `quarry-coordinator` in simulation with an identity that satisfies that policy and
//!    the env file's variables;
//! 4. set a sample manifest with the `AzureHSMSealing` feature gate;
//! 5. activate a sample Marble through `quarry-premain`, running a small shell program that
//!    reports the secrets it received;
//! 6. restart the Coordinator and check that it unseals through a fresh key release;
//! 7. print where everything is and how to talk to the Coordinator.
//!
//! The sibling binaries are found next to this executable (`quarry_testkit::process::binary`,
//! overridable with `QUARRY_BIN_DIR`). Every service logs to `DIR/<binary>.log`; a failing step
//! names itself, says why, and shows the end of the relevant log.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Args;
use quarry_common::ExitCode;
use quarry_testkit::coordinator::Coordinator;
use quarry_testkit::emulator::{Emulator, SEED_POLICY};
use quarry_testkit::process::binary;
use serde_json::{Value, json};

/// The signer of the guide's release policy; the sample package and the simulated Coordinator
/// both use it.
pub const DEV_MRSIGNER: &str = "43361affedeb75affee9baec7e054a5e14883213e5a121b67d74a0e12e9d2b7a";

/// The simulated MRENCLAVE of the Coordinator and the sample Marble.
pub const DEV_MRENCLAVE: &str = "5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed";

/// How long a restarted Coordinator may take to unseal: bounds a hang, measures nothing.
const UNSEAL_WAIT: Duration = Duration::from_secs(120);

/// Lines of a service's log shown with a failure.
const LOG_TAIL: usize = 25;

/// Arguments of `quarry dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// Exit (0 on success) after the walk-through instead of running until Ctrl-C.
    #[arg(long)]
    pub once: bool,
    /// Directory for the state, logs and sample files; must be empty or absent. Without it,
    /// each run gets a fresh `quarry-dev/run-<time>-<pid>`, so the quick start can be repeated.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// A fresh directory below `quarry-dev` for a run without `--dir`.
fn default_dir() -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    PathBuf::from("quarry-dev").join(format!("run-{secs}-{}", std::process::id()))
}

/// A failed step: its number, what went wrong, and the log that explains it.
struct StepFailure {
    why: String,
    log: Option<String>,
}

impl StepFailure {
    fn new(why: impl Into<String>) -> Self {
        Self {
            why: why.into(),
            log: None,
        }
    }

    fn with_log(mut self, log: String) -> Self {
        self.log = Some(log);
        self
    }
}

/// The simulated SGX identity the sample uses: it satisfies the guide's release policy.
fn identity() -> [(&'static str, &'static str); 5] {
    [
        ("QUARRY_INSECURE_SIMULATION", "1"),
        ("QUARRY_INSECURE_SIM_MRSIGNER", DEV_MRSIGNER),
        ("QUARRY_INSECURE_SIM_ISVSVN", "2"),
        ("QUARRY_INSECURE_SIM_ISVPRODID", "3"),
        ("QUARRY_INSECURE_SIM_DEBUG", "0"),
    ]
}

/// The sample manifest: one package matching the simulated identity, a Marble `demo` with a
/// symmetric key and a certificate delivered as files and environment, and HSM sealing on.
pub fn sample_manifest() -> Value {
    json!({
        "Packages": {
            "demo-pkg": {"SignerID": DEV_MRSIGNER, "ProductID": 3, "SecurityVersion": 2, "Debug": false}
        },
        "Marbles": {
            "demo": {
                "Package": "demo-pkg",
                "Parameters": {
                    "Files": {
                        "secrets/demo-key.hex": "{{ hex .Secrets.demo_key }}",
                        "secrets/demo-cert.pem": "{{ pem .Secrets.demo_cert.Cert }}",
                        "secrets/demo-cert.key": "{{ pem .Secrets.demo_cert.Private }}",
                        "secrets/coordinator-root.pem": "{{ pem .MarbleRun.CoordinatorRoot.Cert }}"
                    },
                    "Env": {
                        "DEMO_KEY_HEX": "{{ hex .Secrets.demo_key }}",
                        "DEMO_CERT": "{{ pem .Secrets.demo_cert.Cert }}"
                    }
                }
            }
        },
        "Secrets": {
            "demo_key": {"Type": "symmetric-key", "Size": 256},
            "demo_cert": {"Type": "cert-ecdsa", "Size": 256, "Cert": {"Subject": {"CommonName": "demo"}}}
        },
        "Config": {"FeatureGates": ["AzureHSMSealing"]}
    })
}

/// The sample Marble's program: reports what it received without printing the key itself.
const MARBLE_SCRIPT: &str = r#"set -e
echo "  marble 'demo' started by quarry-premain; it received:"
echo "    env DEMO_KEY_HEX: ${#DEMO_KEY_HEX} hex characters"
if [ "$DEMO_KEY_HEX" = "$(cat secrets/demo-key.hex)" ]; then echo "    env DEMO_KEY_HEX equals secrets/demo-key.hex"; else echo "    env and file differ"; exit 1; fi
echo "    env DEMO_CERT: $(printf '%s\n' "$DEMO_CERT" | grep -c 'BEGIN CERTIFICATE') certificate"
echo "    env MARBLE_PREDEFINED_MARBLE_CERTIFICATE_CHAIN: $(printf '%s\n' "$MARBLE_PREDEFINED_MARBLE_CERTIFICATE_CHAIN" | grep -c 'BEGIN CERTIFICATE') certificates"
for f in secrets/*; do echo "    file $f: $(wc -c < "$f") bytes"; done
"#;

/// Runs `quarry dev`.
pub fn run(args: &DevArgs, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    let mut dev = Dev {
        out,
        step: 0,
        dir: PathBuf::new(),
    };
    match dev.walk(args) {
        Ok(()) => ExitCode::Ok,
        Err(failure) => {
            if dev.step == 0 {
                let _ = writeln!(err, "quarry dev: {}", failure.why);
            } else {
                let _ = writeln!(err, "quarry dev: step {} failed: {}", dev.step, failure.why);
            }
            if let Some(log) = failure.log {
                let _ = writeln!(err, "--- end of the log ---\n{}", tail(&log, LOG_TAIL));
            }
            if !dev.dir.as_os_str().is_empty() {
                let _ = writeln!(err, "files and logs: {}", dev.dir.display());
            }
            ExitCode::Invalid
        }
    }
}

/// The last `n` lines of `log`.
fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

struct Dev<'a> {
    out: &'a mut dyn Write,
    step: u32,
    dir: PathBuf,
}

impl Dev<'_> {
    fn begin(&mut self, what: &str) {
        self.step += 1;
        let _ = writeln!(self.out, "[{}/7] {what}", self.step);
        let _ = self.out.flush();
    }

    fn done(&mut self, what: &str) {
        let _ = writeln!(self.out, "      ok: {what}");
        let _ = self.out.flush();
    }

    fn walk(&mut self, args: &DevArgs) -> Result<(), StepFailure> {
        self.dir = prepare_dir(&args.dir.clone().unwrap_or_else(default_dir))?;
        let dir = self.dir.clone();

        self.begin("starting the Azure emulator (Entra ID, MAA, Managed HSM)");
        let mut emulator =
            Emulator::start(&dir).map_err(|e| StepFailure::new(format!("emulator: {e}")))?;
        let url = emulator.url();
        self.done(&format!("listening on {url}"));

        self.begin("provisioning the HSM: service principal, role, exportable oct-HSM key with the guide's policy.json");
        let provisioned = emulator.provision(SEED_POLICY).map_err(|e| {
            StepFailure::new(format!("hsm provision: {e}")).with_log(read_log(&emulator.log_file()))
        })?;
        let env_file = dir.join("emulator").join("coordinator.env");
        let policy_file = dir.join("emulator").join("policy.json");
        let sp = provisioned["servicePrincipal"]["id"]
            .as_str()
            .unwrap_or("(unknown)")
            .to_owned();
        self.done(&format!(
            "service principal {sp}; policy {}; env file {}",
            policy_file.display(),
            env_file.display()
        ));

        self.begin(
            "starting quarry-coordinator (simulated SGX, MRSIGNER of the policy, SVN 2, product 3)",
        );
        let mut env = emulator.coordinator_env();
        env.retain(|(k, _)| !k.starts_with("QUARRY_INSECURE_"));
        env.extend(identity().iter().map(|(k, v)| ((*k).into(), (*v).into())));
        env.push(("QUARRY_INSECURE_SIM_MRENCLAVE".into(), DEV_MRENCLAVE.into()));
        env.push(("QUARRY_HSM_RETRY_MAX_DELAY".into(), "1s".into()));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut coordinator = Coordinator::start_with(&dir, &env)
            .map_err(|e| StepFailure::new(format!("coordinator: {e}")))?;
        let client = coordinator.client_addr();
        let mesh = coordinator.service().addr("marble_api");
        self.done(&format!("Client API https://{client}, Marble API {mesh}"));

        self.begin("setting the sample manifest (AzureHSMSealing on)");
        let coordinator_log = |c: &Coordinator| c.log();
        let root = self
            .set_manifest(&dir, &coordinator)
            .map_err(|f| f.with_log(coordinator_log(&coordinator)))?;
        let sealed_with_hsm = coordinator.log().contains("hsm key release");
        if !sealed_with_hsm {
            return Err(StepFailure::new(
                "the Coordinator accepted the manifest but logged no HSM key release",
            )
            .with_log(coordinator.log()));
        }
        self.done(&format!(
            "manifest set; state sealed under the HSM key; root certificate {}",
            root.display()
        ));

        self.begin("activating Marble 'demo' through quarry-premain");
        self.activate(&dir, &mesh.to_string())?;
        self.done("the Marble received its key and certificate");

        self.begin("restarting the Coordinator: it must unseal through a fresh key release");
        let before = emulator
            .releases()
            .map_err(|e| StepFailure::new(format!("release counter: {e}")))?;
        coordinator
            .restart()
            .map_err(|e| StepFailure::new(format!("coordinator restart: {e}")))?;
        wait_unsealed(&coordinator, &root).map_err(|f| f.with_log(coordinator.log()))?;
        let after = emulator
            .releases()
            .map_err(|e| StepFailure::new(format!("release counter: {e}")))?;
        if after <= before {
            return Err(StepFailure::new(format!(
                "the Coordinator unsealed but the emulator counted no new key release ({before} before, {after} after)"
            ))
            .with_log(coordinator.log()));
        }
        let client = coordinator.client_addr();
        self.done(&format!(
            "status 3 (accepting Marbles) after {} by the emulator",
            crate::output::count(after - before, "key release", "key releases")
        ));

        self.begin("summary");
        let mesh = coordinator.service().addr("marble_api");
        let _ = write!(
            self.out,
            "\
Quarry is running locally with HSM sealing (simulated SGX; not for production).

  files:       {dir}
  policy:      {policy}
  env file:    {env}
  seal dir:    {seal}
  root cert:   {root}
  manifest:    {manifest}
  marble run:  {marble}
  logs:        {dir}/quarry-coordinator.log, {emulator_log}

  Client API:  https://{client}
  Marble API:  {mesh}
  emulator:    {url}

Talk to the Coordinator:
  curl --cacert {root} https://{client}/api/v2/status
  curl --cacert {root} https://{client}/api/v2/manifest
Releases the emulator has granted:
  curl --cacert {ca} {url}/_emulator/releases
",
            dir = dir.display(),
            policy = policy_file.display(),
            env = env_file.display(),
            seal = coordinator.seal_dir().display(),
            root = root.display(),
            manifest = dir.join("manifest.json").display(),
            marble = dir.join("marble").display(),
            ca = emulator.ca_file().display(),
            emulator_log = emulator.log_file().display(),
        );
        let _ = self.out.flush();
        if args.once {
            let _ = writeln!(
                self.out,
                "every step passed (--once: stopping the services)"
            );
            return Ok(());
        }
        let _ = writeln!(self.out, "every step passed; press Ctrl-C to stop");
        let _ = self.out.flush();
        match wait_for_interrupt(&mut coordinator, &mut emulator).map_err(StepFailure::new)? {
            Stopped::Interrupted => {
                let _ = writeln!(self.out, "stopping");
                Ok(())
            }
            Stopped::Coordinator(status) => Err(StepFailure::new(format!(
                "quarry-coordinator exited on its own ({status}) while the deployment was running; \
                 its log is {}",
                dir.join("quarry-coordinator.log").display()
            ))
            .with_log(coordinator.log())),
            Stopped::Emulator(status) => Err(StepFailure::new(format!(
                "quarry-azure-emulator exited on its own ({status}) while the deployment was \
                 running; its log is {}",
                emulator.log_file().display()
            ))
            .with_log(read_log(&emulator.log_file()))),
        }
    }

    /// Saves the root certificate from the quote answer and sets the sample manifest with it.
    fn set_manifest(&mut self, dir: &Path, c: &Coordinator) -> Result<PathBuf, StepFailure> {
        // Simulation has no quote to verify; the root is taken on first use, like `-k`.
        let answer = curl(&["-k"], "GET", &c.url("/api/v2/quote"), None)?;
        let chain = answer["data"]["cert"].as_str().ok_or_else(|| {
            StepFailure::new(format!("no certificate in the quote answer {answer}"))
        })?;
        let start = chain
            .rfind("-----BEGIN CERTIFICATE-----")
            .ok_or_else(|| StepFailure::new("no PEM certificate in the quote answer"))?;
        let root = dir.join("coordinator-root.pem");
        write(&root, &chain[start..])?;
        let manifest = serde_json::to_vec_pretty(&sample_manifest())
            .map_err(|e| StepFailure::new(format!("encoding the manifest: {e}")))?;
        let manifest_file = dir.join("manifest.json");
        write(&manifest_file, &manifest)?;
        // The Client API takes `{"manifest": base64}`.
        let body = json!({
            "manifest": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &manifest)
        });
        let body_file = dir.join("manifest-request.json");
        write(&body_file, body.to_string())?;
        let cacert = root.display().to_string();
        let answer = curl(
            &["--cacert", &cacert],
            "POST",
            &c.url("/api/v2/manifest"),
            Some(&body_file),
        )?;
        if answer["status"] != "success" {
            return Err(StepFailure::new(format!(
                "the Coordinator refused the manifest: {answer}"
            )));
        }
        let code = status(c, &root)?;
        if code != 3 {
            return Err(StepFailure::new(format!(
                "status {code} after setting the manifest, expected 3"
            )));
        }
        Ok(root)
    }

    /// Runs the sample Marble through `quarry-premain` and checks what it wrote.
    fn activate(&mut self, dir: &Path, mesh: &str) -> Result<(), StepFailure> {
        let premain = binary("quarry-premain").map_err(|e| StepFailure::new(e.to_string()))?;
        let cwd = dir.join("marble");
        std::fs::create_dir_all(&cwd)
            .map_err(|e| StepFailure::new(format!("creating {}: {e}", cwd.display())))?;
        let mut cmd = Command::new(premain);
        cmd.args(["/bin/sh", "-c", MARBLE_SCRIPT])
            .current_dir(&cwd)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("EDG_MARBLE_TYPE", "demo")
            .env("EDG_MARBLE_COORDINATOR_ADDR", mesh)
            .env("EDG_MARBLE_UUID_FILE", cwd.join("uuid"))
            .env("QUARRY_PREMAIN_RETRY_TIMEOUT", "0")
            .env("QUARRY_INSECURE_SIM_MRENCLAVE", DEV_MRENCLAVE);
        for (k, v) in identity() {
            cmd.env(k, v);
        }
        let output = cmd
            .output()
            .map_err(|e| StepFailure::new(format!("running quarry-premain: {e}")))?;
        let _ = self.out.write_all(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let log = cwd.join("quarry-premain.log");
        let _ = std::fs::write(&log, &stderr);
        if !output.status.success() {
            return Err(StepFailure::new(format!(
                "quarry-premain exited with {} (log {})",
                output.status,
                log.display()
            ))
            .with_log(stderr));
        }
        let key = std::fs::read_to_string(cwd.join("secrets/demo-key.hex")).unwrap_or_default();
        let cert = std::fs::read_to_string(cwd.join("secrets/demo-cert.pem")).unwrap_or_default();
        if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StepFailure::new(
                "secrets/demo-key.hex is not a 256-bit key in hex",
            ));
        }
        if !cert.starts_with("-----BEGIN CERTIFICATE-----") {
            return Err(StepFailure::new(
                "secrets/demo-cert.pem is not a certificate",
            ));
        }
        Ok(())
    }
}

/// Resolves `dir` to an absolute path, refusing one that already holds files.
fn prepare_dir(dir: &Path) -> Result<PathBuf, StepFailure> {
    let fail = |e: std::io::Error| StepFailure::new(format!("directory {}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(fail)?;
    if std::fs::read_dir(dir).map_err(fail)?.next().is_some() {
        return Err(StepFailure::new(format!(
            "directory {} is not empty (a previous run?); remove it or pass --dir with a new one",
            dir.display()
        )));
    }
    std::fs::canonicalize(dir).map_err(fail)
}

fn write(path: &Path, content: impl AsRef<[u8]>) -> Result<(), StepFailure> {
    std::fs::write(path, content)
        .map_err(|e| StepFailure::new(format!("writing {}: {e}", path.display())))
}

/// `curl` with `trust` arguments; returns the JSON answer (JSend) whatever the HTTP status.
fn curl(
    trust: &[&str],
    method: &str,
    url: &str,
    body: Option<&Path>,
) -> Result<Value, StepFailure> {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-X", method]).args(trust);
    if let Some(body) = body {
        cmd.arg("--data-binary")
            .arg(format!("@{}", body.display()))
            .args(["-H", "Content-Type: application/json"]);
    }
    cmd.arg(url);
    let output = cmd
        .output()
        .map_err(|e| StepFailure::new(format!("running curl (is it installed?): {e}")))?;
    if !output.status.success() {
        return Err(StepFailure::new(format!(
            "curl {method} {url}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| {
        StepFailure::new(format!(
            "{method} {url}: answer is not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        ))
    })
}

/// The Coordinator's status code, trusting `root`.
fn status(c: &Coordinator, root: &Path) -> Result<u64, StepFailure> {
    let cacert = root.display().to_string();
    let answer = curl(
        &["--cacert", &cacert],
        "GET",
        &c.url("/api/v2/status"),
        None,
    )?;
    answer["data"]["code"]
        .as_u64()
        .ok_or_else(|| StepFailure::new(format!("no status code in {answer}")))
}

/// Polls the status until 3, then checks it again trusting only `root`; fails with the last
/// status after [`UNSEAL_WAIT`].
fn wait_unsealed(c: &Coordinator, root: &Path) -> Result<(), StepFailure> {
    let deadline = Instant::now() + UNSEAL_WAIT;
    loop {
        // Until it has unsealed, the Coordinator serves a temporary certificate, not the root.
        let answer = curl(&["-k"], "GET", &c.url("/api/v2/status"), None)?;
        if answer["data"]["code"].as_u64() == Some(3) {
            // Unsealed: it serves the same root certificate as before the restart.
            return match status(c, root)? {
                3 => Ok(()),
                code => Err(StepFailure::new(format!("status {code} after unsealing"))),
            };
        }
        if Instant::now() > deadline {
            return Err(StepFailure::new(format!(
                "not unsealed after {UNSEAL_WAIT:?}; last status {answer}"
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Why the running deployment stopped.
enum Stopped {
    /// SIGINT (Ctrl-C) or SIGTERM.
    Interrupted,
    /// The Coordinator exited by itself, with this status.
    Coordinator(std::process::ExitStatus),
    /// The emulator exited by itself, with this status.
    Emulator(std::process::ExitStatus),
}

/// How often the running services are checked while waiting for Ctrl-C.
const LIVENESS_CHECK: Duration = Duration::from_millis(500);

/// Blocks until SIGINT (Ctrl-C) or SIGTERM, or until the Coordinator or the emulator exits.
fn wait_for_interrupt(
    coordinator: &mut Coordinator,
    emulator: &mut Emulator,
) -> Result<Stopped, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the signal handler: {e}"))?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| format!("installing the SIGTERM handler: {e}"))?;
        let mut check = tokio::time::interval(LIVENESS_CHECK);
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        loop {
            tokio::select! {
                r = &mut ctrl_c => {
                    return r
                        .map(|()| Stopped::Interrupted)
                        .map_err(|e| format!("waiting for Ctrl-C: {e}"));
                }
                _ = term.recv() => return Ok(Stopped::Interrupted),
                _ = check.tick() => {
                    if let Some(status) = coordinator.service().try_wait() {
                        return Ok(Stopped::Coordinator(status));
                    }
                    if let Some(status) = emulator.exited() {
                        return Ok(Stopped::Emulator(status));
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_manifest_passes_validation_with_the_gate() {
        let bytes = serde_json::to_vec(&sample_manifest()).unwrap();
        let manifest = quarry_manifest::ManifestDocument::from_json(bytes);
        assert!(manifest.is_ok(), "{manifest:?}");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
