//! The client's configuration, read from `EDG_*` and `QUARRY_*` variables through a lookup
//! function, so that the process environment, an env file (`quarry_common::EnvFile::get`) and
//! tests can all feed it.
//!
//! An empty value counts as unset (the seed document sets `EDG_AZURE_HSM_KEY_VERSION=""`).
//! Every refusal names the variable and, where there is one, the value that was wrong — except
//! for the client secret, whose value is never repeated.

use std::fmt;
use std::path::PathBuf;

use reqwest::Url;
use zeroize::Zeroizing;

use crate::cloud::{PUBLIC_MHSM_SCOPE, scope_for_vault_host};

/// `EDG_AZURE_CLIENT_ID`: the application (client) id of the service principal or identity.
pub const CLIENT_ID: &str = "EDG_AZURE_CLIENT_ID";
/// `EDG_AZURE_CLIENT_SECRET`: the service principal's client secret.
pub const CLIENT_SECRET: &str = "EDG_AZURE_CLIENT_SECRET";
/// `EDG_AZURE_TENANT_ID`: the Entra ID tenant.
pub const TENANT_ID: &str = "EDG_AZURE_TENANT_ID";
/// `EDG_AZURE_HSM_KEY_NAME`: the name of the key to release.
pub const KEY_NAME: &str = "EDG_AZURE_HSM_KEY_NAME";
/// `EDG_AZURE_HSM_KEY_VERSION`: the key version to release; empty or unset means the latest.
pub const KEY_VERSION: &str = "EDG_AZURE_HSM_KEY_VERSION";
/// `EDG_AZURE_HSM_VAULT_URL`: the Managed HSM's URL (`https://{name}.managedhsm.azure.net/`).
pub const VAULT_URL: &str = "EDG_AZURE_HSM_VAULT_URL";
/// `EDG_MAA_URL`: the Microsoft Azure Attestation instance (the release policy's authority).
pub const MAA_URL: &str = "EDG_MAA_URL";
/// `EDG_AZURE_AUTHORITY_HOST`: the Entra ID authority host.
pub const AUTHORITY_HOST: &str = "EDG_AZURE_AUTHORITY_HOST";
/// `EDG_AZURE_FEDERATED_TOKEN_FILE`: a workload-identity token file, re-read at every renewal.
pub const FEDERATED_TOKEN_FILE: &str = "EDG_AZURE_FEDERATED_TOKEN_FILE";
/// `QUARRY_AZURE_CA_FILE`: PEM certificates trusted for Azure endpoints and release signatures
/// in addition to the built-in roots (for example the emulator's CA).
pub const CA_FILE: &str = "QUARRY_AZURE_CA_FILE";
/// `QUARRY_AZURE_MANAGED_IDENTITY_ENDPOINT`: opt-in to managed identity, with the URL of the
/// token endpoint (on an Azure VM `http://169.254.169.254/metadata/identity/oauth2/token`).
/// There is no default: managed identity is used only when this is set.
pub const MANAGED_IDENTITY_ENDPOINT: &str = "QUARRY_AZURE_MANAGED_IDENTITY_ENDPOINT";

/// The authority host used when `EDG_AZURE_AUTHORITY_HOST` is unset.
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com/";

/// Why the configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required variable is unset or empty.
    #[error("{name} is not set")]
    Missing {
        /// The variable.
        name: &'static str,
    },
    /// A variable has a value that cannot be right.
    #[error("{name}={value:?} is invalid: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// The value as given.
        value: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// No credential is configured.
    #[error(
        "no azure credential: set {CLIENT_SECRET}, {FEDERATED_TOKEN_FILE} or \
         {MANAGED_IDENTITY_ENDPOINT}"
    )]
    NoCredential,
    /// More than one credential is configured.
    #[error("{first} and {second} are both set; configure one credential")]
    AmbiguousCredential {
        /// One variable.
        first: &'static str,
        /// The other.
        second: &'static str,
    },
}

/// A client secret. Zeroed on drop; `Debug` prints the type name only.
#[derive(Clone)]
pub struct ClientSecret(Zeroizing<String>);

impl ClientSecret {
    /// Wraps a secret.
    pub fn new(secret: String) -> Self {
        Self(Zeroizing::new(secret))
    }

    /// The secret, for the token request.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(..)")
    }
}

/// How the client obtains its access token.
#[derive(Debug, Clone)]
pub enum CredentialConfig {
    /// OAuth 2.0 client credentials with a client secret.
    ClientSecret {
        /// The tenant.
        tenant_id: String,
        /// The application id.
        client_id: String,
        /// The secret.
        secret: ClientSecret,
    },
    /// Client credentials with a federated assertion read from a file (workload identity).
    FederatedTokenFile {
        /// The tenant.
        tenant_id: String,
        /// The application id.
        client_id: String,
        /// The projected token file, read again at every renewal.
        path: PathBuf,
    },
    /// A managed identity through an IMDS-style endpoint.
    ManagedIdentity {
        /// The token endpoint.
        endpoint: Url,
        /// The client id of a user-assigned identity, if one is chosen.
        client_id: Option<String>,
    },
}

/// Everything the client needs to release one key.
#[derive(Debug, Clone)]
pub struct SkrConfig {
    /// The Managed HSM base URL (scheme and authority; no path, query or fragment).
    pub vault_url: Url,
    /// The key's name.
    pub key_name: String,
    /// The configured key version; `None` means the latest.
    pub key_version: Option<String>,
    /// The MAA instance's base URL.
    pub maa_url: Url,
    /// The Entra ID authority host (used by the client-credential flows).
    pub authority_host: Url,
    /// The credential.
    pub credential: CredentialConfig,
    /// Extra trusted roots (`QUARRY_AZURE_CA_FILE`).
    pub ca_file: Option<PathBuf>,
}

impl SkrConfig {
    /// Reads the configuration through `lookup` (for example `|k| std::env::var(k).ok()`).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &'static str| lookup(name).filter(|v| !v.is_empty());
        let require = |name: &'static str| get(name).ok_or(ConfigError::Missing { name });

        let vault_url = base_url(VAULT_URL, &require(VAULT_URL)?)?;
        if vault_url
            .host_str()
            .and_then(scope_for_vault_host)
            .is_none()
        {
            return Err(invalid(
                VAULT_URL,
                vault_url.as_str(),
                "not a Managed HSM or Key Vault host of a known cloud, nor loopback",
            ));
        }
        let key_name = require(KEY_NAME)?;
        if !is_key_name(&key_name) {
            return Err(invalid(
                KEY_NAME,
                &key_name,
                "expected 1 to 127 of [0-9a-zA-Z-]",
            ));
        }
        let key_version = get(KEY_VERSION);
        if let Some(version) = &key_version
            && !is_key_version(version)
        {
            return Err(invalid(
                KEY_VERSION,
                version,
                "expected 32 hexadecimal characters",
            ));
        }
        let maa_url = base_url(MAA_URL, &require(MAA_URL)?)?;
        let authority_host = match get(AUTHORITY_HOST) {
            Some(value) => base_url(AUTHORITY_HOST, &value)?,
            None => Url::parse(DEFAULT_AUTHORITY_HOST).map_err(|_| ConfigError::Missing {
                name: AUTHORITY_HOST,
            })?,
        };
        let credential = credential(&get)?;
        let ca_file = get(CA_FILE).map(PathBuf::from);

        Ok(Self {
            vault_url,
            key_name,
            key_version,
            maa_url,
            authority_host,
            credential,
            ca_file,
        })
    }

    /// The vault's host name, against which the release signature's certificate is checked.
    pub fn vault_host(&self) -> &str {
        // `base_url` refused URLs without a host.
        self.vault_url.host_str().unwrap_or_default()
    }

    /// The Entra ID scope of the vault's cloud.
    pub fn scope(&self) -> &'static str {
        // `from_lookup` refused hosts without a scope; a hand-built config falls back to the
        // public cloud.
        scope_for_vault_host(self.vault_host()).unwrap_or(PUBLIC_MHSM_SCOPE)
    }
}

fn credential(
    get: &impl Fn(&'static str) -> Option<String>,
) -> Result<CredentialConfig, ConfigError> {
    let secret = get(CLIENT_SECRET);
    let token_file = get(FEDERATED_TOKEN_FILE);
    let endpoint = get(MANAGED_IDENTITY_ENDPOINT);
    let set: Vec<&'static str> = [
        (CLIENT_SECRET, secret.is_some()),
        (FEDERATED_TOKEN_FILE, token_file.is_some()),
        (MANAGED_IDENTITY_ENDPOINT, endpoint.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, present)| present.then_some(name))
    .collect();
    if let [first, second, ..] = set[..] {
        return Err(ConfigError::AmbiguousCredential { first, second });
    }

    if let Some(endpoint) = endpoint {
        let endpoint = Url::parse(&endpoint)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| {
                invalid(
                    MANAGED_IDENTITY_ENDPOINT,
                    &endpoint,
                    "expected an http(s) URL",
                )
            })?;
        return Ok(CredentialConfig::ManagedIdentity {
            endpoint,
            client_id: get(CLIENT_ID),
        });
    }
    if secret.is_none() && token_file.is_none() {
        return Err(ConfigError::NoCredential);
    }
    let tenant_id = get(TENANT_ID).ok_or(ConfigError::Missing { name: TENANT_ID })?;
    if !is_tenant(&tenant_id) {
        return Err(invalid(
            TENANT_ID,
            &tenant_id,
            "expected a tenant id or domain name",
        ));
    }
    let client_id = get(CLIENT_ID).ok_or(ConfigError::Missing { name: CLIENT_ID })?;
    if client_id
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid(CLIENT_ID, &client_id, "contains whitespace"));
    }
    Ok(match (secret, token_file) {
        (Some(secret), _) => CredentialConfig::ClientSecret {
            tenant_id,
            client_id,
            secret: ClientSecret::new(secret),
        },
        (None, Some(path)) => CredentialConfig::FederatedTokenFile {
            tenant_id,
            client_id,
            path: path.into(),
        },
        (None, None) => return Err(ConfigError::NoCredential),
    })
}

/// Parses an `https` base URL: a host, no user info, query or fragment, and at most a `/` path.
fn base_url(name: &'static str, value: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(value).map_err(|_| invalid(name, value, "not a URL"))?;
    if url.scheme() != "https" {
        return Err(invalid(name, value, "expected an https URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid(name, value, "has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(name, value, "must not contain credentials"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(name, value, "must not have a query or fragment"));
    }
    if url.path() != "/" {
        return Err(invalid(name, value, "must not have a path"));
    }
    Ok(url)
}

fn invalid(name: &'static str, value: &str, reason: &'static str) -> ConfigError {
    ConfigError::Invalid {
        name,
        value: value.to_owned(),
        reason,
    }
}

/// Key Vault object names: 1 to 127 of `[0-9a-zA-Z-]`.
pub(crate) fn is_key_name(name: &str) -> bool {
    (1..=127).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Key versions: 32 hexadecimal characters.
pub(crate) fn is_key_version(version: &str) -> bool {
    version.len() == 32 && version.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_tenant(tenant: &str) -> bool {
    !tenant.is_empty()
        && tenant.len() <= 253
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn base() -> HashMap<&'static str, String> {
        HashMap::from([
            (CLIENT_ID, "app".to_owned()),
            (CLIENT_SECRET, "s3cr3t-value".to_owned()),
            (TENANT_ID, "00000000-0000-0000-0000-000000000001".to_owned()),
            (KEY_NAME, "marblerun-skr-key".to_owned()),
            (KEY_VERSION, String::new()),
            (VAULT_URL, "https://myhsm.managedhsm.azure.net/".to_owned()),
            (MAA_URL, "https://shareduks.uks.attest.azure.net".to_owned()),
        ])
    }

    fn parse(vars: &HashMap<&'static str, String>) -> Result<SkrConfig, ConfigError> {
        SkrConfig::from_lookup(|k| vars.get(k).cloned())
    }

    #[test]
    fn reads_the_seed_variables() {
        let config = parse(&base()).unwrap();
        assert_eq!(config.vault_host(), "myhsm.managedhsm.azure.net");
        assert_eq!(config.key_version, None);
        assert_eq!(config.authority_host.as_str(), DEFAULT_AUTHORITY_HOST);
        assert!(matches!(
            config.credential,
            CredentialConfig::ClientSecret { .. }
        ));
    }

    #[test]
    fn names_the_missing_variable() {
        for name in [VAULT_URL, KEY_NAME, MAA_URL, TENANT_ID, CLIENT_ID] {
            let mut vars = base();
            vars.remove(name);
            assert_eq!(
                parse(&vars).unwrap_err(),
                ConfigError::Missing { name },
                "{name}"
            );
        }
    }

    #[test]
    fn names_the_malformed_variable_and_value() {
        let cases = [
            (VAULT_URL, "http://myhsm.managedhsm.azure.net"),
            (VAULT_URL, "https://myhsm.managedhsm.azure.net/keys/x"),
            (VAULT_URL, "not a url"),
            (VAULT_URL, "https://evil.example/"),
            (MAA_URL, "https://maa.example/?x=1"),
            (AUTHORITY_HOST, "ftp://login.example"),
            (KEY_NAME, "bad_name"),
            (KEY_VERSION, "latest"),
            (TENANT_ID, "a tenant"),
        ];
        for (name, value) in cases {
            let mut vars = base();
            vars.insert(name, value.to_owned());
            match parse(&vars).unwrap_err() {
                ConfigError::Invalid {
                    name: n, value: v, ..
                } => {
                    assert_eq!((n, v.as_str()), (name, value));
                }
                other => panic!("{name}={value}: {other}"),
            }
        }
    }

    #[test]
    fn credential_choice_is_explicit() {
        let mut vars = base();
        vars.remove(CLIENT_SECRET);
        assert_eq!(parse(&vars).unwrap_err(), ConfigError::NoCredential);

        vars.insert(FEDERATED_TOKEN_FILE, "/var/run/token".into());
        assert!(matches!(
            parse(&vars).unwrap().credential,
            CredentialConfig::FederatedTokenFile { .. }
        ));

        vars.insert(CLIENT_SECRET, "x".into());
        assert!(matches!(
            parse(&vars).unwrap_err(),
            ConfigError::AmbiguousCredential { .. }
        ));

        let mut vars = base();
        vars.remove(CLIENT_SECRET);
        vars.remove(TENANT_ID);
        vars.insert(MANAGED_IDENTITY_ENDPOINT, "http://127.0.0.1:1/token".into());
        assert!(matches!(
            parse(&vars).unwrap().credential,
            CredentialConfig::ManagedIdentity { .. }
        ));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let config = parse(&base()).unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
        assert!(shown.contains("ClientSecret(..)"), "{shown}");
    }
}
