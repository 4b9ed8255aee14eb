//! The premain's settings, read from MarbleRun's `EDG_MARBLE_*` variables with MarbleRun's
//! defaults, plus Quarry's own `QUARRY_*` additions.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `EDG_MARBLE_TYPE` | — (required) | the Marble's name in the manifest's `Marbles` |
//! | `EDG_MARBLE_COORDINATOR_ADDR` | `localhost:2001` | the Coordinator's Marble API |
//! | `EDG_MARBLE_UUID_FILE` | `uuid` in `EDG_CWD` or the working directory | the UUID's file |
//! | `EDG_MARBLE_DNS_NAMES` | `localhost` | comma-separated DNS names and IPs of the certificate |
//! | `QUARRY_COORDINATOR_ROOT_CA` | unset | PEM file: verify the Coordinator with it |
//! | `QUARRY_PREMAIN_RETRY_TIMEOUT` | `300` | seconds to keep retrying activation |
//!
//! As in MarbleRun, an empty value counts as unset.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `EDG_MARBLE_TYPE`.
pub const ENV_MARBLE_TYPE: &str = "EDG_MARBLE_TYPE";
/// `EDG_MARBLE_COORDINATOR_ADDR`.
pub const ENV_COORDINATOR_ADDR: &str = "EDG_MARBLE_COORDINATOR_ADDR";
/// `EDG_MARBLE_UUID_FILE`.
pub const ENV_UUID_FILE: &str = "EDG_MARBLE_UUID_FILE";
/// `EDG_MARBLE_DNS_NAMES`.
pub const ENV_DNS_NAMES: &str = "EDG_MARBLE_DNS_NAMES";
/// `EDG_CWD`: the directory relative to which the default UUID file lives.
pub const ENV_CWD: &str = "EDG_CWD";
/// `QUARRY_COORDINATOR_ROOT_CA`: PEM certificates the Coordinator's Marble API must chain to.
pub const ENV_COORDINATOR_ROOT_CA: &str = "QUARRY_COORDINATOR_ROOT_CA";
/// `QUARRY_PREMAIN_RETRY_TIMEOUT`: how long (seconds) activation is retried.
pub const ENV_RETRY_TIMEOUT: &str = "QUARRY_PREMAIN_RETRY_TIMEOUT";

/// Default of `EDG_MARBLE_COORDINATOR_ADDR`.
pub const DEFAULT_COORDINATOR_ADDR: &str = "localhost:2001";
/// Default of `EDG_MARBLE_DNS_NAMES`.
pub const DEFAULT_DNS_NAMES: &str = "localhost";
/// Default file name of the UUID file.
pub const DEFAULT_UUID_FILE: &str = "uuid";
/// Default of `QUARRY_PREMAIN_RETRY_TIMEOUT`.
pub const DEFAULT_RETRY_TIMEOUT: Duration = Duration::from_secs(300);

/// A configuration problem, naming the variable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required variable is not set.
    #[error("{0} is not set")]
    Missing(&'static str),
    /// A variable has a value that cannot be used.
    #[error("{name}: invalid value {value:?}: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// Why.
        reason: &'static str,
    },
}

/// The premain's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The Marble type.
    pub marble_type: String,
    /// `host:port` of the Coordinator's Marble API.
    pub coordinator_addr: String,
    /// The UUID file.
    pub uuid_file: PathBuf,
    /// DNS names of the certificate and CSR.
    pub dns_names: Vec<String>,
    /// IP addresses of the certificate and CSR, from `EDG_MARBLE_DNS_NAMES`.
    pub ip_addresses: Vec<IpAddr>,
    /// PEM file to verify the Coordinator with; `None` skips verification as MarbleRun does.
    pub coordinator_root_ca: Option<PathBuf>,
    /// How long activation is retried while the Coordinator is unreachable or not ready.
    pub retry_timeout: Duration,
}

impl Config {
    /// Reads the settings through `lookup`; `cwd` is the working directory.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        cwd: PathBuf,
    ) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());

        let marble_type = get(ENV_MARBLE_TYPE).ok_or(ConfigError::Missing(ENV_MARBLE_TYPE))?;
        let coordinator_addr =
            get(ENV_COORDINATOR_ADDR).unwrap_or_else(|| DEFAULT_COORDINATOR_ADDR.into());
        let uuid_file = match get(ENV_UUID_FILE) {
            Some(path) => PathBuf::from(path),
            None => get(ENV_CWD)
                .map(PathBuf::from)
                .unwrap_or(cwd)
                .join(DEFAULT_UUID_FILE),
        };

        // MarbleRun splits on commas without trimming; entries that parse as IPs become IP SANs.
        let names = get(ENV_DNS_NAMES).unwrap_or_else(|| DEFAULT_DNS_NAMES.into());
        let mut dns_names = Vec::new();
        let mut ip_addresses = Vec::new();
        for entry in names.split(',') {
            match entry.parse::<IpAddr>() {
                Ok(ip) => ip_addresses.push(ip),
                Err(_) if entry.is_empty() => {}
                Err(_) if !entry.is_ascii() => {
                    return Err(ConfigError::Invalid {
                        name: ENV_DNS_NAMES,
                        value: names.clone(),
                        reason: "dns names must be ascii",
                    });
                }
                Err(_) => dns_names.push(entry.to_owned()),
            }
        }

        let retry_timeout =
            match get(ENV_RETRY_TIMEOUT) {
                None => DEFAULT_RETRY_TIMEOUT,
                Some(value) => value.parse::<u64>().map(Duration::from_secs).map_err(|_| {
                    ConfigError::Invalid {
                        name: ENV_RETRY_TIMEOUT,
                        value,
                        reason: "expected whole seconds",
                    }
                })?,
            };

        Ok(Self {
            marble_type,
            coordinator_addr,
            uuid_file,
            dns_names,
            ip_addresses,
            coordinator_root_ca: get(ENV_COORDINATOR_ROOT_CA).map(PathBuf::from),
            retry_timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned(), PathBuf::from("/run/app"))
    }

    #[test]
    fn defaults_are_marbleruns() {
        let config = read(&[("EDG_MARBLE_TYPE", "web")]).unwrap();
        assert_eq!(config.coordinator_addr, "localhost:2001");
        assert_eq!(config.uuid_file, PathBuf::from("/run/app/uuid"));
        assert_eq!(config.dns_names, ["localhost"]);
        assert!(config.ip_addresses.is_empty());
        assert_eq!(config.coordinator_root_ca, None);
        assert_eq!(config.retry_timeout, DEFAULT_RETRY_TIMEOUT);
    }

    #[test]
    fn marble_type_is_required_and_empty_counts_as_unset() {
        assert!(matches!(
            read(&[]),
            Err(ConfigError::Missing("EDG_MARBLE_TYPE"))
        ));
        assert!(matches!(
            read(&[("EDG_MARBLE_TYPE", "")]),
            Err(ConfigError::Missing(_))
        ));
    }

    #[test]
    fn dns_names_split_into_names_and_ips() {
        let config = read(&[
            ("EDG_MARBLE_TYPE", "web"),
            ("EDG_MARBLE_DNS_NAMES", "web,10.0.0.1,web.ns,::2"),
            ("EDG_CWD", "/srv"),
        ])
        .unwrap();
        assert_eq!(config.dns_names, ["web", "web.ns"]);
        assert_eq!(
            config.ip_addresses,
            [
                "10.0.0.1".parse::<IpAddr>().unwrap(),
                "::2".parse().unwrap()
            ]
        );
        assert_eq!(config.uuid_file, PathBuf::from("/srv/uuid"));
    }

    #[test]
    fn bad_retry_timeout_names_the_variable() {
        let err = read(&[
            ("EDG_MARBLE_TYPE", "web"),
            ("QUARRY_PREMAIN_RETRY_TIMEOUT", "soon"),
        ])
        .unwrap_err();
        assert!(
            err.to_string().starts_with("QUARRY_PREMAIN_RETRY_TIMEOUT"),
            "{err}"
        );
    }
}
