//! Real binaries started on loopback for tests.
//!
//! [`Service::start`] runs one of Quarry's binaries with `--ready-file`, waits until the file
//! appears, and returns the bound addresses. The process is killed when the [`Service`] is
//! dropped, so a failing test leaves nothing behind. Its standard error goes to a log file in
//! the test's directory, printed when the process fails to come up.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use quarry_common::ready::Ready;

/// Why a service could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Building or locating the binary failed.
    #[error("binary {name}: {detail}")]
    Binary {
        /// The binary's name.
        name: String,
        /// What went wrong.
        detail: String,
    },
    /// Spawning or talking to the process failed.
    #[error("{name}: {source}")]
    Io {
        /// The binary's name.
        name: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The process exited or did not write its ready file in time.
    #[error("{name} did not become ready: {detail}\n--- its stderr ---\n{stderr}")]
    NotReady {
        /// The binary's name.
        name: String,
        /// What happened.
        detail: String,
        /// The process's standard error so far.
        stderr: String,
    },
}

/// How long [`Service::start`] waits for a ready file. Generous: this bounds a hang, it does not
/// measure anything.
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The package that builds each binary.
fn package_of(binary: &str) -> &'static str {
    match binary {
        "quarry-coordinator" => "quarry-coordinator",
        "quarry" => "quarry-cli",
        "quarry-premain" => "quarry-premain",
        "quarry-azure-emulator" => "quarry-azure-emulator",
        _ => "",
    }
}

/// The path of one of Quarry's binaries, built first when running under cargo so that a test
/// never runs a stale copy.
///
/// Order: `QUARRY_BIN_DIR` if set; otherwise, under cargo, `cargo build --bin NAME` in the
/// profile of the running test; otherwise the directory of the running executable (how
/// `quarry dev` finds its siblings).
pub fn binary(name: &str) -> Result<PathBuf, StartError> {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.get(name) {
        return Ok(path.clone());
    }
    let path = locate(name)?;
    built.insert(name.to_owned(), path.clone());
    Ok(path)
}

fn locate(name: &str) -> Result<PathBuf, StartError> {
    let fail = |detail: String| StartError::Binary {
        name: name.to_owned(),
        detail,
    };
    if let Some(dir) = std::env::var_os("QUARRY_BIN_DIR") {
        let path = PathBuf::from(&dir).join(name);
        if !path.is_file() {
            return Err(fail(format!(
                "not found in {} (the directory QUARRY_BIN_DIR names)",
                PathBuf::from(dir).display()
            )));
        }
        return Ok(path);
    }
    let exe = std::env::current_exe().map_err(|e| fail(e.to_string()))?;
    let mut dir = exe
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| fail("no exe dir".into()))?;
    if dir.ends_with("deps") {
        dir.pop();
    }
    if let (Some(cargo), Some(package)) = (
        std::env::var_os("CARGO"),
        Some(package_of(name)).filter(|p| !p.is_empty()),
    ) {
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", package, "--bin", name]);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd
            .status()
            .map_err(|e| fail(format!("running cargo: {e}")))?;
        if !status.success() {
            return Err(fail(format!("cargo build failed with {status}")));
        }
    }
    let path = dir.join(name);
    if !path.exists() {
        return Err(fail(format!("not found at {}", path.display())));
    }
    Ok(path)
}

/// A running binary, killed when dropped.
#[derive(Debug)]
pub struct Service {
    name: String,
    child: Child,
    ready: Ready,
    log: PathBuf,
}

impl Service {
    /// Starts `name` with `args` plus `--ready-file <dir>/<name>.ready`, with the given extra
    /// environment variables, and waits for it to report its addresses.
    pub fn start(
        name: &str,
        args: &[&str],
        envs: &[(&str, &str)],
        dir: &Path,
    ) -> Result<Self, StartError> {
        let mut cmd = Command::new(binary(name)?);
        cmd.args(args);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        Self::spawn(name, cmd, dir)
    }

    /// Starts a prepared command (its `--ready-file` is appended) and waits for readiness.
    pub fn spawn(name: &str, mut cmd: Command, dir: &Path) -> Result<Self, StartError> {
        let io = |source| StartError::Io {
            name: name.to_owned(),
            source,
        };
        let ready_path = dir.join(format!("{name}.ready"));
        let log = dir.join(format!("{name}.log"));
        let _ = std::fs::remove_file(&ready_path);
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(io)?;
        cmd.arg("--ready-file").arg(&ready_path);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        let child = cmd.spawn().map_err(io)?;
        let mut service = Self {
            name: name.to_owned(),
            child,
            ready: Ready::for_this_process([]),
            log,
        };
        service.ready = service.wait_ready(&ready_path)?;
        Ok(service)
    }

    fn wait_ready(&mut self, path: &Path) -> Result<Ready, StartError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(ready)) = Ready::read(path) {
                return Ok(ready);
            }
            let not_ready = |detail: String| StartError::NotReady {
                name: self.name.clone(),
                detail,
                stderr: std::fs::read_to_string(&self.log).unwrap_or_default(),
            };
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(not_ready(format!("exited with {status}")));
            }
            if Instant::now() > deadline {
                return Err(not_ready(format!("no ready file after {READY_TIMEOUT:?}")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The address the service reported for `listener`.
    ///
    /// # Panics
    /// If the service reported no such listener: a test bug.
    pub fn addr(&self, listener: &str) -> std::net::SocketAddr {
        self.ready.addr(listener).unwrap_or_else(|| {
            panic!(
                "{} reported no listener {listener:?}: {:?}",
                self.name, self.ready.addrs
            )
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The service's standard error so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process has exited, and with which status.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}
