//! Managed HSM local RBAC: role assignments of principals to built-in roles at a scope, and the
//! check of a data action against them.
//!
//! Scopes are `/` (the whole HSM), `/keys` (all keys) and `/keys/{name}` (one key); an
//! assignment at a scope grants its role's actions there and below. Role names and ids are the
//! built-in ones; two roles are emulated: "Managed HSM Crypto User" (every key operation,
//! release included) and "Managed HSM Crypto Service Release User" (release only — it cannot
//! even read the key).

use serde::{Deserialize, Serialize};

use super::error::HsmError;

/// A data action on keys, as Managed HSM names them under `Microsoft.KeyVault/managedHsm/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `keys/read/action`: get a key.
    Read,
    /// `keys/create`: create a key or a new version.
    Create,
    /// `keys/import/action`: import a key.
    Import,
    /// `keys/write/action`: update a key's attributes or policy.
    Write,
    /// `keys/release/action`: release a key.
    Release,
}

impl Action {
    /// The data action's name as error messages show it.
    pub fn name(self) -> &'static str {
        match self {
            Action::Read => "keys/read/action",
            Action::Create => "keys/create",
            Action::Import => "keys/import/action",
            Action::Write => "keys/write/action",
            Action::Release => "keys/release/action",
        }
    }
}

/// A built-in role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// "Managed HSM Crypto User".
    #[serde(rename = "Managed HSM Crypto User")]
    CryptoUser,
    /// "Managed HSM Crypto Service Release User".
    #[serde(rename = "Managed HSM Crypto Service Release User")]
    CryptoServiceReleaseUser,
}

impl Role {
    /// Every emulated role.
    pub const ALL: [Role; 2] = [Role::CryptoUser, Role::CryptoServiceReleaseUser];

    /// The role's display name.
    pub fn name(self) -> &'static str {
        match self {
            Role::CryptoUser => "Managed HSM Crypto User",
            Role::CryptoServiceReleaseUser => "Managed HSM Crypto Service Release User",
        }
    }

    /// The built-in role definition id.
    pub fn id(self) -> &'static str {
        match self {
            Role::CryptoUser => "21dbd100-6940-42c2-9190-5d6cb909625b",
            Role::CryptoServiceReleaseUser => "21dbd100-6940-42c2-9190-5d6cb909625c",
        }
    }

    /// Finds a role by display name (case-insensitive) or definition id.
    pub fn parse(text: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.name().eq_ignore_ascii_case(text) || r.id() == text)
            .ok_or_else(|| {
                format!(
                    "unknown role {text:?}: expected \"{}\" or \"{}\"",
                    Role::CryptoUser.name(),
                    Role::CryptoServiceReleaseUser.name()
                )
            })
    }

    /// Whether the role grants `action`.
    pub fn grants(self, action: Action) -> bool {
        match self {
            Role::CryptoUser => true,
            Role::CryptoServiceReleaseUser => action == Action::Release,
        }
    }
}

/// One role assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The assignment's id (a UUID).
    pub id: String,
    /// The principal: an object id, or an application (client) id.
    pub principal_id: String,
    /// The role.
    pub role: Role,
    /// `/`, `/keys` or `/keys/{name}`.
    pub scope: String,
}

/// Normalises a scope: `/`, `/keys` or `/keys/{name}` (a trailing slash is dropped).
pub fn normalise_scope(scope: &str) -> Result<String, String> {
    let trimmed = scope.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok("/".into());
    }
    if trimmed.eq_ignore_ascii_case("/keys") {
        return Ok("/keys".into());
    }
    match trimmed.strip_prefix("/keys/") {
        Some(name) if super::keys::check_name(name).is_ok() => Ok(format!("/keys/{name}")),
        _ => Err(format!(
            "invalid scope {scope:?}: expected /, /keys or /keys/NAME"
        )),
    }
}

fn covers(scope: &str, key_name: &str) -> bool {
    scope == "/"
        || scope == "/keys"
        || scope
            .strip_prefix("/keys/")
            .is_some_and(|n| n.eq_ignore_ascii_case(key_name))
}

/// Checks that one of `principals` (the caller's object id and application id) holds `action`
/// on the key `key_name`; 403 `AccessDenied` otherwise.
pub fn check(
    assignments: &[Assignment],
    principals: &[&str],
    action: Action,
    key_name: &str,
) -> Result<(), HsmError> {
    let granted = assignments.iter().any(|a| {
        principals
            .iter()
            .any(|p| !p.is_empty() && a.principal_id.eq_ignore_ascii_case(p))
            && a.role.grants(action)
            && covers(&a.scope, key_name)
    });
    if granted {
        Ok(())
    } else {
        Err(HsmError::access_denied(
            action.name(),
            &format!("/keys/{key_name}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assign(principal: &str, role: Role, scope: &str) -> Assignment {
        Assignment {
            id: "a".into(),
            principal_id: principal.into(),
            role,
            scope: normalise_scope(scope).unwrap(),
        }
    }

    #[test]
    fn release_user_can_only_release_its_key() {
        let a = [assign("sp", Role::CryptoServiceReleaseUser, "/keys/k1")];
        assert!(check(&a, &["sp"], Action::Release, "k1").is_ok());
        let err = check(&a, &["sp"], Action::Read, "k1").unwrap_err();
        assert_eq!((err.status.as_u16(), err.code), (403, "AccessDenied"));
        assert!(
            err.message.contains("keys/read/action on /keys/k1"),
            "{err}"
        );
        assert!(check(&a, &["sp"], Action::Release, "k2").is_err());
        assert!(check(&a, &["other"], Action::Release, "k1").is_err());
        assert!(check(&a, &[""], Action::Release, "k1").is_err());
    }

    #[test]
    fn crypto_user_at_root_can_do_everything() {
        let a = [assign("user", Role::CryptoUser, "/")];
        for action in [
            Action::Read,
            Action::Create,
            Action::Import,
            Action::Write,
            Action::Release,
        ] {
            assert!(check(&a, &["x", "user"], action, "any").is_ok());
        }
    }

    #[test]
    fn parses_roles_and_scopes() {
        assert_eq!(
            Role::parse("managed hsm crypto user").unwrap(),
            Role::CryptoUser
        );
        assert_eq!(
            Role::parse("21dbd100-6940-42c2-9190-5d6cb909625c").unwrap(),
            Role::CryptoServiceReleaseUser
        );
        assert!(Role::parse("Owner").is_err());
        assert_eq!(normalise_scope("/").unwrap(), "/");
        assert_eq!(normalise_scope("/keys/").unwrap(), "/keys");
        assert_eq!(
            normalise_scope("/keys/marblerun-skr-key").unwrap(),
            "/keys/marblerun-skr-key"
        );
        assert!(normalise_scope("/secrets/x").is_err());
        assert!(normalise_scope("/keys/a/b").is_err());
    }
}
