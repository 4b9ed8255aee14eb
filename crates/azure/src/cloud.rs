//! The Entra ID scope for a vault, derived from the vault URL's cloud — never from the
//! service's `WWW-Authenticate` challenge, so that a vault URL cannot make the client request
//! (and send) a token for another resource.

/// Managed HSM and Key Vault DNS suffixes and the scopes of their clouds.
const CLOUDS: &[(&str, &str)] = &[
    (
        ".managedhsm.azure.net",
        "https://managedhsm.azure.net/.default",
    ),
    (
        ".managedhsm.usgovcloudapi.net",
        "https://managedhsm.usgovcloudapi.net/.default",
    ),
    (
        ".managedhsm.azure.cn",
        "https://managedhsm.azure.cn/.default",
    ),
    (".vault.azure.net", "https://vault.azure.net/.default"),
    (
        ".vault.usgovcloudapi.net",
        "https://vault.usgovcloudapi.net/.default",
    ),
    (".vault.azure.cn", "https://vault.azure.cn/.default"),
];

/// The public cloud's Managed HSM scope, used for loopback vaults (the emulator).
pub const PUBLIC_MHSM_SCOPE: &str = "https://managedhsm.azure.net/.default";

/// The OAuth 2.0 scope for a vault host, or `None` for a host in no known cloud.
pub fn scope_for_vault_host(host: &str) -> Option<&'static str> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if is_loopback(&host) {
        return Some(PUBLIC_MHSM_SCOPE);
    }
    CLOUDS
        .iter()
        .find(|(suffix, _)| host.len() > suffix.len() && host.ends_with(suffix))
        .map(|(_, scope)| *scope)
}

/// The resource (scope without `/.default`) that managed-identity endpoints take.
pub fn resource_of_scope(scope: &str) -> &str {
    scope.strip_suffix("/.default").unwrap_or(scope)
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_follows_the_cloud() {
        let cases = [
            (
                "myhsm.managedhsm.azure.net",
                "https://managedhsm.azure.net/.default",
            ),
            (
                "MyHsm.ManagedHSM.Azure.Net.",
                "https://managedhsm.azure.net/.default",
            ),
            (
                "x.managedhsm.usgovcloudapi.net",
                "https://managedhsm.usgovcloudapi.net/.default",
            ),
            (
                "x.managedhsm.azure.cn",
                "https://managedhsm.azure.cn/.default",
            ),
            ("kv.vault.azure.net", "https://vault.azure.net/.default"),
            ("localhost", PUBLIC_MHSM_SCOPE),
            ("127.0.0.1", PUBLIC_MHSM_SCOPE),
            ("[::1]", PUBLIC_MHSM_SCOPE),
        ];
        for (host, scope) in cases {
            assert_eq!(scope_for_vault_host(host), Some(scope), "{host}");
        }
    }

    #[test]
    fn unknown_hosts_have_no_scope() {
        for host in [
            "managedhsm.azure.net",
            "evil.example",
            "managedhsm.azure.net.evil.example",
        ] {
            assert_eq!(scope_for_vault_host(host), None, "{host}");
        }
    }

    #[test]
    fn resource_drops_default_suffix() {
        assert_eq!(
            resource_of_scope(PUBLIC_MHSM_SCOPE),
            "https://managedhsm.azure.net"
        );
    }
}
