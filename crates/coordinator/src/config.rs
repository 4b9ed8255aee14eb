//! The Coordinator's configuration, read from MarbleRun's `EDG_COORDINATOR_*` variables (with
//! MarbleRun's defaults) and Quarry's own `QUARRY_*` variables.
//!
//! Like MarbleRun, an empty value counts as unset. Reading goes through a lookup function so that
//! tests and `quarry dev` can pass an env file instead of the process environment.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

/// Default listen address of the Client API (MarbleRun: `:4433`, all interfaces).
pub const DEFAULT_CLIENT_ADDR: &str = ":4433";
/// Default listen address of the Marble API (MarbleRun: `:2001`, all interfaces).
pub const DEFAULT_MESH_ADDR: &str = ":2001";
/// Default seal directory name below the working directory.
pub const DEFAULT_SEAL_DIR_NAME: &str = "marblerun-coordinator-data";

/// A configuration problem, naming the variable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A variable has a value that cannot be used.
    #[error("{name}: invalid value {value:?}: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The configuration asks for something Quarry does not support.
    #[error("{name}: {reason}")]
    Unsupported {
        /// The variable.
        name: &'static str,
        /// What is not supported.
        reason: &'static str,
    },
}

/// The Coordinator's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Listen address of the Client API (`EDG_COORDINATOR_CLIENT_ADDR`).
    pub client_addr: SocketAddr,
    /// Listen address of the Marble API (`EDG_COORDINATOR_MESH_ADDR`).
    pub mesh_addr: SocketAddr,
    /// Listen address of the plain-HTTP metrics server (`EDG_COORDINATOR_PROMETHEUS_ADDR`).
    pub prometheus_addr: Option<SocketAddr>,
    /// Subject alternative names of the Coordinator's certificates
    /// (`EDG_COORDINATOR_DNS_NAMES`, plus `127.0.0.1` and `::1`).
    pub dns_names: Vec<String>,
    /// Directory of the sealed state (`EDG_COORDINATOR_SEAL_DIR`).
    pub seal_dir: PathBuf,
    /// Development mode (`EDG_COORDINATOR_DEV_MODE=1`).
    pub dev_mode: bool,
    /// Debug logging (`EDG_DEBUG_LOGGING=1`).
    pub debug_logging: bool,
    /// A manifest to set at start (`EDG_STARTUP_MANIFEST`).
    pub startup_manifest: Option<PathBuf>,
}

impl Config {
    /// Reads the configuration through `lookup` (usually `std::env::var`). `cwd` is the process's
    /// working directory, used for the default seal directory unless `EDG_CWD` is set.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        cwd: PathBuf,
    ) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());

        if get("EDG_DISTRIBUTED_COORDINATOR").is_some_and(|v| v == "1")
            || get("EDG_ENTERPRISE_LICENSED_FEATURES")
                .is_some_and(|v| v.to_lowercase().contains("distributedcoordinator"))
        {
            return Err(ConfigError::Unsupported {
                name: "EDG_DISTRIBUTED_COORDINATOR",
                reason: "distributed mode is not supported; run a single Coordinator",
            });
        }

        let client_addr = listen_addr(
            "EDG_COORDINATOR_CLIENT_ADDR",
            &get("EDG_COORDINATOR_CLIENT_ADDR").unwrap_or_else(|| DEFAULT_CLIENT_ADDR.into()),
        )?;
        let mesh_addr = listen_addr(
            "EDG_COORDINATOR_MESH_ADDR",
            &get("EDG_COORDINATOR_MESH_ADDR").unwrap_or_else(|| DEFAULT_MESH_ADDR.into()),
        )?;
        let prometheus_addr = get("EDG_COORDINATOR_PROMETHEUS_ADDR")
            .map(|v| listen_addr("EDG_COORDINATOR_PROMETHEUS_ADDR", &v))
            .transpose()?;

        let mut dns_names: Vec<String> = get("EDG_COORDINATOR_DNS_NAMES")
            .unwrap_or_else(|| "localhost".into())
            .split(',')
            .map(str::to_owned)
            .filter(|s| !s.is_empty())
            .collect();
        for always in ["127.0.0.1", "::1"] {
            if !dns_names.iter().any(|n| n == always) {
                dns_names.push(always.to_owned());
            }
        }

        let base = get("EDG_CWD").map(PathBuf::from).unwrap_or(cwd);
        let seal_dir = get("EDG_COORDINATOR_SEAL_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| base.join(DEFAULT_SEAL_DIR_NAME));

        Ok(Self {
            client_addr,
            mesh_addr,
            prometheus_addr,
            dns_names,
            seal_dir,
            dev_mode: flag(&get, "EDG_COORDINATOR_DEV_MODE"),
            debug_logging: flag(&get, "EDG_DEBUG_LOGGING"),
            startup_manifest: get("EDG_STARTUP_MANIFEST").map(PathBuf::from),
        })
    }
}

fn flag(get: &impl Fn(&str) -> Option<String>, name: &str) -> bool {
    get(name).is_some_and(|v| v == "1")
}

/// Parses a Go-style listen address: `host:port`, `[v6]:port`, or `:port` for all interfaces.
pub fn listen_addr(name: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        name,
        value: value.to_owned(),
        reason,
    };
    if let Some(port) = value.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|e| invalid(format!("port: {e}")))?;
        return Ok(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port));
    }
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let Some((host, port)) = value.rsplit_once(':') else {
        return Err(invalid(
            "expected host:port with an IP address, localhost or :port".into(),
        ));
    };
    let port: u16 = port.parse().map_err(|e| invalid(format!("port: {e}")))?;
    if host == "localhost" {
        return Ok(SocketAddr::new(
            IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            port,
        ));
    }
    Err(invalid(format!(
        "host {host:?}: expected an IP address (IPv6 in brackets) or localhost"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| vars.get(k).cloned(), PathBuf::from("/srv"))
    }

    #[test]
    fn defaults_match_marblerun() {
        let c = config(&[]).unwrap();
        assert_eq!(c.client_addr, "[::]:4433".parse().unwrap());
        assert_eq!(c.mesh_addr, "[::]:2001".parse().unwrap());
        assert_eq!(c.prometheus_addr, None);
        assert_eq!(c.dns_names, ["localhost", "127.0.0.1", "::1"]);
        assert_eq!(c.seal_dir, PathBuf::from("/srv/marblerun-coordinator-data"));
        assert!(!c.dev_mode && !c.debug_logging && c.startup_manifest.is_none());
    }

    #[test]
    fn reads_every_variable() {
        let c = config(&[
            ("EDG_COORDINATOR_CLIENT_ADDR", "127.0.0.1:0"),
            ("EDG_COORDINATOR_MESH_ADDR", "localhost:2001"),
            ("EDG_COORDINATOR_PROMETHEUS_ADDR", "[::1]:9944"),
            ("EDG_COORDINATOR_DNS_NAMES", "coordinator,10.0.0.1,::1"),
            ("EDG_CWD", "/enclave"),
            ("EDG_COORDINATOR_DEV_MODE", "1"),
            ("EDG_DEBUG_LOGGING", "1"),
            ("EDG_STARTUP_MANIFEST", "/m.json"),
        ])
        .unwrap();
        assert_eq!(c.client_addr, "127.0.0.1:0".parse().unwrap());
        assert_eq!(c.mesh_addr, "127.0.0.1:2001".parse().unwrap());
        assert_eq!(c.prometheus_addr, Some("[::1]:9944".parse().unwrap()));
        assert_eq!(c.dns_names, ["coordinator", "10.0.0.1", "::1", "127.0.0.1"]);
        assert_eq!(
            c.seal_dir,
            PathBuf::from("/enclave/marblerun-coordinator-data")
        );
        assert!(c.dev_mode && c.debug_logging);
        assert_eq!(c.startup_manifest, Some(PathBuf::from("/m.json")));
    }

    #[test]
    fn empty_values_count_as_unset() {
        let c = config(&[
            ("EDG_COORDINATOR_CLIENT_ADDR", ""),
            ("EDG_STARTUP_MANIFEST", ""),
        ])
        .unwrap();
        assert_eq!(c.client_addr.port(), 4433);
        assert!(c.startup_manifest.is_none());
    }

    #[test]
    fn refuses_bad_addresses_naming_the_variable() {
        let err = config(&[("EDG_COORDINATOR_MESH_ADDR", "nowhere")]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("EDG_COORDINATOR_MESH_ADDR: invalid value"),
            "{err}"
        );
        let err = config(&[("EDG_COORDINATOR_CLIENT_ADDR", ":99999")]).unwrap_err();
        assert!(
            err.to_string().contains("EDG_COORDINATOR_CLIENT_ADDR"),
            "{err}"
        );
        // The message says which part is wrong.
        for (value, reason) in [
            ("127.0.0.1:99999", "port: number too large"),
            ("[::1]:http", "port: invalid digit"),
            (
                "coordinator:4433",
                "host \"coordinator\": expected an IP address",
            ),
        ] {
            let err = config(&[("EDG_COORDINATOR_PROMETHEUS_ADDR", value)]).unwrap_err();
            assert!(err.to_string().contains(reason), "{value}: {err}");
        }
    }

    #[test]
    fn refuses_distributed_mode() {
        assert!(config(&[("EDG_DISTRIBUTED_COORDINATOR", "1")]).is_err());
        assert!(config(&[("EDG_ENTERPRISE_LICENSED_FEATURES", "DistributedCoordinator")]).is_err());
    }
}
