//! Users and their permissions: a Client API request is made by the user whose certificate in
//! the current manifest is byte-for-byte the leaf certificate the client proved in the TLS
//! handshake ([`crate::server::PeerCertificate`]).
//!
//! Only the leaf counts. MarbleRun compares every certificate a client presents, so a client
//! could append another user's public certificate to its own and act as that user; Quarry
//! never sees the appended certificates (the server drops them) and matches the leaf alone.
//! As in MarbleRun, user certificates are usually self-signed and neither their issuer nor
//! their validity period is checked: possession of the key is what the handshake proved.
//!
//! Permissions are the union over the user's roles ([`quarry_manifest::update::Permissions`]):
//! `ReadSecret` and `WriteSecret` on the named secrets, `UpdateSecurityVersion` on the named
//! packages, `UpdateManifest` with no names.

use quarry_manifest::update::Permissions;
use quarry_manifest::{Action, Manifest};

/// Message when the client presented no certificate (MarbleRun's words).
pub const NO_CERTIFICATE: &str = "no client certificate provided";
/// Message when the certificate is no user's (MarbleRun's words).
pub const UNKNOWN_USER: &str =
    "unauthorized user: client certificate did not match any MarbleRun users";

/// A user the request was authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    name: String,
    permissions: Permissions,
}

/// Why a request was refused (`401`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The client presented no certificate.
    #[error("{NO_CERTIFICATE}")]
    NoCertificate,
    /// The certificate is no user's.
    #[error("{UNKNOWN_USER}")]
    UnknownUser,
    /// The certificate is the certificate of several users (the same DER in different PEM
    /// text), so it is no single user's.
    #[error(
        "client certificate matches several users ({}): the manifest must give each user its \
         own certificate",
        escaped(users)
    )]
    AmbiguousCertificate {
        /// The users, in name order.
        users: Vec<String>,
    },
    /// The user's roles do not grant the action on every named resource.
    #[error("user {user:?} is not allowed to {action}{}", describe(resources))]
    NotAllowed {
        /// The user.
        user: String,
        /// The action.
        action: &'static str,
        /// The resources not granted.
        resources: Vec<String>,
    },
}

/// The resources for the message (see [`escaped`]).
fn describe(resources: &[String]) -> String {
    if resources.is_empty() {
        String::new()
    } else {
        format!(" {}", escaped(resources))
    }
}

/// `names` joined with `, `, each with control and other non-printable characters escaped as
/// Rust escapes them: names come from requests (`s=` of a secret query) or manifests, and the
/// messages are logged, so a name must not be able to start a forged log line.
fn escaped(names: &[String]) -> String {
    let names: Vec<String> = names
        .iter()
        .map(|name| name.escape_debug().to_string())
        .collect();
    names.join(", ")
}

impl User {
    /// The user's name in the manifest.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The user's permissions.
    pub fn permissions(&self) -> &Permissions {
        &self.permissions
    }

    /// Whether the user may perform `action` on every one of `resources`; the error names the
    /// resources that are not granted.
    pub fn require<'a>(
        &self,
        action: Action,
        resources: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), AuthError> {
        let resources: Vec<&str> = resources.into_iter().collect();
        if self.permissions.allows(action, resources.iter().copied()) {
            return Ok(());
        }
        let denied: Vec<String> = resources
            .iter()
            .filter(|r| !self.permissions.allows(action, [**r]))
            .map(|r| (*r).to_owned())
            .collect();
        Err(AuthError::NotAllowed {
            user: self.name.clone(),
            action: action_phrase(action),
            resources: denied,
        })
    }
}

fn action_phrase(action: Action) -> &'static str {
    match action {
        Action::ReadSecret => "read secret",
        Action::WriteSecret => "write secret",
        Action::UpdateSecurityVersion => "update the security version of package",
        Action::UpdateManifest => "update the manifest",
        _ => "perform this action",
    }
}

/// The user of `manifest` whose certificate is exactly `leaf` (DER).
///
/// Two users whose certificates are the same DER in different PEM text (line breaks, headers)
/// are one key holder with two sets of permissions; such a certificate authenticates nobody,
/// instead of whichever user comes first (MarbleRun picks one at random).
pub fn authenticate(manifest: &Manifest, leaf: Option<&[u8]>) -> Result<User, AuthError> {
    let leaf = leaf.ok_or(AuthError::NoCertificate)?;
    let mut matching = manifest.users.iter().filter(|(_, user)| {
        // The manifest check made sure every user certificate parses; one that does not
        // (impossible for a stored manifest) simply matches nobody.
        quarry_manifest::pem::parse_user_certificate(&user.certificate).is_ok_and(|der| der == leaf)
    });
    let Some((name, _)) = matching.next() else {
        return Err(AuthError::UnknownUser);
    };
    let others: Vec<String> = matching.map(|(other, _)| other.clone()).collect();
    if !others.is_empty() {
        let mut users = vec![name.clone()];
        users.extend(others);
        return Err(AuthError::AmbiguousCertificate { users });
    }
    Ok(User {
        name: name.clone(),
        permissions: Permissions::of(manifest, name),
    })
}

/// The first pair of users of `manifest` whose certificates are the same DER (in any PEM
/// text), as (first, second) in name order: the manifest check's rule C13
/// ([`quarry_manifest::check::duplicate_user_certificates`]).
pub fn duplicate_certificate(manifest: &Manifest) -> Option<(String, String)> {
    quarry_manifest::check::duplicate_user_certificates(manifest)
        .first()
        .map(|(first, second)| ((*first).to_owned(), (*second).to_owned()))
}

/// The names of the users of `manifest` holding `UpdateManifest`, sorted.
pub fn manifest_updaters(manifest: &Manifest) -> Vec<String> {
    manifest
        .users
        .keys()
        .filter(|name| Permissions::of(manifest, name).allows(Action::UpdateManifest, []))
        .cloned()
        .collect()
}
