//! The real `quarry-coordinator` on loopback for tests: simulation backend
//! (`QUARRY_INSECURE_SIMULATION=1`), both listeners on `127.0.0.1:0`, and a seal directory
//! inside the test's directory, so that a test can restart it on the same state, delete sealed
//! files, or look at them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::process::{Service, StartError};

/// A running Coordinator and how to start it again.
#[derive(Debug)]
pub struct Coordinator {
    service: Service,
    dir: PathBuf,
    envs: Vec<(String, String)>,
}

impl Coordinator {
    /// Starts a Coordinator whose seal directory is `dir/seal`.
    pub fn start(dir: &Path) -> Result<Self, StartError> {
        Self::start_with(dir, &[])
    }

    /// Starts a Coordinator with extra environment variables (they override the defaults).
    pub fn start_with(dir: &Path, extra: &[(&str, &str)]) -> Result<Self, StartError> {
        let seal = dir.join("seal");
        let mut envs: Vec<(String, String)> = vec![
            (
                "EDG_COORDINATOR_SEAL_DIR".into(),
                seal.display().to_string(),
            ),
            ("EDG_COORDINATOR_CLIENT_ADDR".into(), "127.0.0.1:0".into()),
            ("EDG_COORDINATOR_MESH_ADDR".into(), "127.0.0.1:0".into()),
            ("QUARRY_INSECURE_SIMULATION".into(), "1".into()),
        ];
        for (k, v) in extra {
            envs.retain(|(name, _)| name != k);
            envs.push(((*k).to_owned(), (*v).to_owned()));
        }
        let service = Self::spawn(dir, &envs)?;
        Ok(Self {
            service,
            dir: dir.to_path_buf(),
            envs,
        })
    }

    fn spawn(dir: &Path, envs: &[(String, String)]) -> Result<Service, StartError> {
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Service::start("quarry-coordinator", &[], &envs, dir)
    }

    /// Stops the process and starts it again with the same settings and seal directory.
    pub fn restart(&mut self) -> Result<(), StartError> {
        self.service.kill();
        self.service = Self::spawn(&self.dir, &self.envs)?;
        Ok(())
    }

    /// Stops the process and starts it again with `name` set to `value` (or unset when `None`).
    pub fn restart_with(&mut self, name: &str, value: Option<&str>) -> Result<(), StartError> {
        self.envs.retain(|(k, _)| k != name);
        if let Some(value) = value {
            self.envs.push((name.to_owned(), value.to_owned()));
        }
        self.restart()
    }

    /// Stops the process.
    pub fn stop(&mut self) {
        self.service.kill();
    }

    /// The Client API's address.
    pub fn client_addr(&self) -> SocketAddr {
        self.service.addr("client_api")
    }

    /// `https://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.client_addr())
    }

    /// The seal directory.
    pub fn seal_dir(&self) -> PathBuf {
        self.dir.join("seal")
    }

    /// The process's standard error so far.
    pub fn log(&self) -> String {
        self.service.stderr()
    }

    /// The running service.
    pub fn service(&mut self) -> &mut Service {
        &mut self.service
    }
}
