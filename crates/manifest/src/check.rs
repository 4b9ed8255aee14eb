//! Validation: every check MarbleRun's Coordinator applies to a manifest before accepting it
//! (C1–C24 of the reference, numbered there), plus the PEM checks MarbleRun makes later in the
//! same request (users' certificates, recovery keys).
//!
//! Quarry adds rules of its own (`Q1` to `Q3`): names must not contain control characters, since
//! they end up in logs, file names and error messages, a package's `ProductID` and
//! `SecurityVersion` must fit the 16-bit fields of an SGX report, and a threshold sharing
//! (Shamir, one-byte share coordinates) has at most 255 recovery keys. Users' certificates are
//! compared as DER (C13), not as PEM text.
//!
//! Where MarbleRun stops at the first problem (found in map iteration order, so not
//! deterministically), [`check`] reports every problem, in key order, each with the path of the
//! offending value. The `AzureHSMSealing` rule depends on the Coordinator's environment, which
//! the caller passes in; the module reads no environment itself.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::fmt;

use quarry_common::DocPath;

use crate::decode::{Warning, WarningKind};
use crate::model::{Action, FeatureGate, Manifest, Package, ResourceType, SealMode};

/// One problem that makes a manifest invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Violation {
    /// The offending value.
    pub path: DocPath,
    /// What is wrong.
    pub error: CheckError,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} [{}]", self.path, self.error, self.error.rule())
    }
}

/// What a [`Violation`] is; the rule numbers are those of the reference (`C1`..`C24`), `P1` and
/// `P2` are the PEM checks, `Q1` to `Q3` Quarry's own rules, `U1`..`U5` the package-update
/// rules, `S1`..`S6` the secret-upload rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// C1.
    #[error("no packages defined")]
    NoPackages,
    /// C2.
    #[error("no marbles defined")]
    NoMarbles,
    /// C3.
    #[error("package {0:?} is not defined in Packages")]
    UnknownPackage(String),
    /// C4.
    #[error("a package with UniqueID must not also set {}", .0.join(", "))]
    UniqueIdWithOtherIdentity(Vec<&'static str>),
    /// C5.
    #[error("a package without UniqueID must set {}", .0.join(", "))]
    IncompleteIdentity(Vec<&'static str>),
    /// C6.
    #[error("tls tag {0:?} is not defined in TLS")]
    UnknownTlsTag(String),
    /// C7, C10.
    #[error("port is empty")]
    EmptyPort,
    /// C10.
    #[error("address is empty")]
    EmptyAddr,
    /// C8.
    #[error("secret {0:?} is not defined in Secrets")]
    UnknownCertSecret(String),
    /// C8.
    #[error("an incoming entry with Cert must set DisableClientAuth")]
    CertNeedsDisableClientAuth,
    /// C9.
    #[error("an incoming entry without Cert must not set DisableClientAuth")]
    DisableClientAuthWithoutCert,
    /// C11.
    #[error("certificate is empty")]
    EmptyUserCertificate,
    /// C12.
    #[error("role {0:?} is not defined in Roles")]
    UnknownRole(String),
    /// C13: the same certificate (DER) as an earlier user's, whatever its PEM text.
    #[error("certificate is the same as the one of user {0:?}")]
    DuplicateUserCertificate(String),
    /// C14.
    #[error("package {0:?} is not defined in Packages")]
    UnknownPackageResource(String),
    /// C14, C15, C16.
    #[error("action {action:?} is not allowed for resource type {resource_type}")]
    InvalidAction {
        /// The action as written.
        action: String,
        /// The role's resource type.
        resource_type: &'static str,
    },
    /// C15.
    #[error("secret {0:?} is not defined in Secrets")]
    UnknownSecretResource(String),
    /// C15.
    #[error("secret {0:?} is not user-defined, so it cannot be written")]
    WriteGeneratedSecret(String),
    /// C15.
    #[error(
        "secret {0:?} is unique per marble (neither shared nor user-defined), so it cannot be read"
    )]
    ReadUniqueSecret(String),
    /// C16.
    #[error("a Manifest role must not list resource names")]
    ManifestRoleWithNames,
    /// C17.
    #[error("unknown resource type {0:?} (expected Packages, Secrets or Manifest)")]
    InvalidResourceType(String),
    /// C18.
    #[error(
        "unknown secret type {0:?} (expected symmetric-key, cert-rsa, cert-ecdsa, cert-ed25519 or plain)"
    )]
    InvalidSecretType(String),
    /// C19.
    #[error("ValidFor and Cert.NotAfter are both set")]
    AmbiguousValidity,
    /// C20.
    #[error(
        "update threshold {threshold} is more than the {updaters} users who may update the manifest"
    )]
    UpdateThresholdTooHigh {
        /// The configured threshold.
        threshold: u64,
        /// Users holding `UpdateManifest`.
        updaters: u64,
    },
    /// C21.
    #[error("unknown seal mode {0:?} (expected ProductKey, UniqueKey or Disabled)")]
    InvalidSealMode(String),
    /// C22.
    #[error(
        "unknown feature gate {0:?} (expected SignQuoteEndpoint, MonotonicCounter or AzureHSMSealing)"
    )]
    UnknownFeatureGate(String),
    /// C22.
    #[error("AzureHSMSealing needs these environment variables of the coordinator: {}", .0.join(", "))]
    MissingHsmEnvironment(Vec<String>),
    /// C23.
    #[error("recovery threshold {threshold} is more than the {keys} recovery keys")]
    RecoveryThresholdTooHigh {
        /// The configured threshold.
        threshold: u64,
        /// Number of recovery keys.
        keys: u64,
    },
    /// C24.
    #[error("recovery threshold 1 is not allowed (use 0 or at least 2)")]
    RecoveryThresholdOne,
    /// Q3.
    #[error(
        "recovery threshold {threshold} shares the key among {keys} recovery keys, but a \
         threshold sharing has at most {max} (use at most {max} keys, or threshold 0 so that \
         every holder is needed)"
    )]
    TooManyThresholdRecoveryKeys {
        /// The configured threshold.
        threshold: u64,
        /// Number of recovery keys.
        keys: u64,
        /// [`MAX_THRESHOLD_RECOVERY_KEYS`].
        max: u64,
    },
    /// P1.
    #[error("invalid user certificate: {0}")]
    InvalidUserCertificate(String),
    /// P2.
    #[error("invalid recovery key: {0}")]
    InvalidRecoveryKey(String),
    /// Q1.
    #[error(
        "{kind} name {name:?} contains the control character U+{:04X}",
        u32::from(*.character)
    )]
    ControlCharacterInName {
        /// What the name names: `user`, `role`, `marble`, `package`, `secret`, `recovery key`.
        kind: &'static str,
        /// The name as written.
        name: String,
        /// The first offending character.
        character: char,
    },
    /// Q2.
    #[error("{field} {value} is more than {max}, the largest {report_field} of an SGX enclave")]
    IdentityValueTooLarge {
        /// `ProductID` or `SecurityVersion`.
        field: &'static str,
        /// The value as written.
        value: u64,
        /// The largest value the report field holds.
        max: u64,
        /// The field of the SGX report: `ISVPRODID` or `ISVSVN`.
        report_field: &'static str,
    },
    /// U1.
    #[error("a package update must list at least one package")]
    NoPackagesToUpdate,
    /// U2.
    #[error("package {0:?} is not part of the current manifest")]
    UpdateUnknownPackage(String),
    /// U3.
    #[error("a package update may only change SecurityVersion")]
    UnupdatableValue,
    /// U4.
    #[error("a package update must set SecurityVersion")]
    MissingSecurityVersion,
    /// U5.
    #[error("security version {new} is lower than the current {current}")]
    SecurityVersionDowngrade {
        /// The uploaded value.
        new: u64,
        /// The current value.
        current: u64,
    },
    /// S1.
    #[error("secret {0:?} is not defined in the manifest")]
    UploadUnknownSecret(String),
    /// S2.
    #[error("secret {0:?} is not user-defined")]
    UploadNotUserDefined(String),
    /// S3.
    #[error("{0}")]
    UploadMissingValue(&'static str),
    /// S4.
    #[error("{0}")]
    UploadUnexpectedValue(&'static str),
    /// S5.
    #[error("key is {got} bits, the secret is defined with {size}")]
    UploadWrongKeySize {
        /// Bits uploaded.
        got: u64,
        /// The secret's `Size`.
        size: u64,
    },
    /// S6.
    #[error("secret size {0} is not a positive multiple of 8")]
    UploadInvalidSize(u64),
    /// S3 (certificate types).
    #[error("invalid certificate: {0}")]
    UploadInvalidCertificate(String),
}

impl CheckError {
    /// The number of the rule, as in the reference and `docs/manifest.md`.
    pub fn rule(&self) -> &'static str {
        match self {
            Self::NoPackages => "C1",
            Self::NoMarbles => "C2",
            Self::UnknownPackage(_) => "C3",
            Self::UniqueIdWithOtherIdentity(_) => "C4",
            Self::IncompleteIdentity(_) => "C5",
            Self::UnknownTlsTag(_) => "C6",
            Self::EmptyPort | Self::EmptyAddr => "C7/C10",
            Self::UnknownCertSecret(_) | Self::CertNeedsDisableClientAuth => "C8",
            Self::DisableClientAuthWithoutCert => "C9",
            Self::EmptyUserCertificate => "C11",
            Self::UnknownRole(_) => "C12",
            Self::DuplicateUserCertificate(_) => "C13",
            Self::UnknownPackageResource(_) => "C14",
            Self::InvalidAction { .. } => "C14-C16",
            Self::UnknownSecretResource(_)
            | Self::WriteGeneratedSecret(_)
            | Self::ReadUniqueSecret(_) => "C15",
            Self::ManifestRoleWithNames => "C16",
            Self::InvalidResourceType(_) => "C17",
            Self::InvalidSecretType(_) => "C18",
            Self::AmbiguousValidity => "C19",
            Self::UpdateThresholdTooHigh { .. } => "C20",
            Self::InvalidSealMode(_) => "C21",
            Self::UnknownFeatureGate(_) | Self::MissingHsmEnvironment(_) => "C22",
            Self::RecoveryThresholdTooHigh { .. } => "C23",
            Self::RecoveryThresholdOne => "C24",
            Self::InvalidUserCertificate(_) => "P1",
            Self::InvalidRecoveryKey(_) => "P2",
            Self::ControlCharacterInName { .. } => "Q1",
            Self::IdentityValueTooLarge { .. } => "Q2",
            Self::TooManyThresholdRecoveryKeys { .. } => "Q3",
            Self::NoPackagesToUpdate => "U1",
            Self::UpdateUnknownPackage(_) => "U2",
            Self::UnupdatableValue => "U3",
            Self::MissingSecurityVersion => "U4",
            Self::SecurityVersionDowngrade { .. } => "U5",
            Self::UploadUnknownSecret(_) => "S1",
            Self::UploadNotUserDefined(_) => "S2",
            Self::UploadMissingValue(_) | Self::UploadInvalidCertificate(_) => "S3",
            Self::UploadUnexpectedValue(_) => "S4",
            Self::UploadWrongKeySize { .. } => "S5",
            Self::UploadInvalidSize(_) => "S6",
        }
    }
}

/// The result of [`check`]: the problems (empty when the manifest is valid) and the warnings
/// MarbleRun would log (identity rules relaxed for `Debug` packages).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// Problems that make the manifest invalid.
    pub violations: Vec<Violation>,
    /// Accepted, but worth telling the operator.
    pub warnings: Vec<Warning>,
}

impl Report {
    /// Whether the manifest passed every check.
    pub fn is_valid(&self) -> bool {
        self.violations.is_empty()
    }

    fn fail(&mut self, path: DocPath, error: CheckError) {
        self.violations.push(Violation { path, error });
    }
}

/// The Coordinator's environment, as the `AzureHSMSealing` rule reads it.
pub trait Environment {
    /// The value of `name`, if set.
    fn var(&self, name: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> Environment for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

impl Environment for quarry_common::EnvFile {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_owned)
    }
}

impl Environment for std::collections::BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// An environment with no variables.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmptyEnvironment;

impl Environment for EmptyEnvironment {
    fn var(&self, _name: &str) -> Option<String> {
        None
    }
}

/// The variables `AzureHSMSealing` requires (each non-empty), besides the credential.
pub const HSM_REQUIRED_VARIABLES: [&str; 5] = [
    "EDG_MAA_URL",
    "EDG_AZURE_HSM_VAULT_URL",
    "EDG_AZURE_HSM_KEY_NAME",
    "EDG_AZURE_CLIENT_ID",
    "EDG_AZURE_TENANT_ID",
];

/// The `AzureHSMSealing` environment rule (part of C22): the names of the variables that are
/// missing or empty. Besides [`HSM_REQUIRED_VARIABLES`], a credential is needed: either
/// `EDG_AZURE_CLIENT_SECRET`, or both `EDG_AZURE_AUTHORITY_HOST` and
/// `EDG_AZURE_FEDERATED_TOKEN_FILE`; when neither is complete, the client secret is named
/// together with whichever part of the federated pair is missing.
pub fn missing_hsm_variables(env: &dyn Environment) -> Vec<String> {
    let set = |name: &str| env.var(name).is_some_and(|v| !v.is_empty());
    let mut missing: Vec<String> = HSM_REQUIRED_VARIABLES
        .iter()
        .filter(|name| !set(name))
        .map(|name| (*name).to_owned())
        .collect();
    let federated = ["EDG_AZURE_AUTHORITY_HOST", "EDG_AZURE_FEDERATED_TOKEN_FILE"];
    let federated_complete = federated.iter().all(|name| set(name));
    if !set("EDG_AZURE_CLIENT_SECRET") && !federated_complete {
        let federated_missing: Vec<&str> = federated
            .iter()
            .copied()
            .filter(|name| !set(name))
            .collect();
        missing.push(format!(
            "EDG_AZURE_CLIENT_SECRET (or {})",
            federated_missing.join(" and ")
        ));
    }
    missing
}

/// The largest `SecurityVersion` (Q2): an SGX enclave's ISVSVN is a 16-bit number.
pub const MAX_SECURITY_VERSION: u64 = 65535;

/// The largest `ProductID` (Q2): an SGX enclave's ISVPRODID is a 16-bit number.
pub const MAX_PRODUCT_ID: u64 = 65535;

/// The most recovery keys a threshold below their number (Shamir sharing) can serve (Q3): each
/// share's x-coordinate is one non-zero byte.
pub const MAX_THRESHOLD_RECOVERY_KEYS: u64 = 255;

/// Applies every check to `manifest`; `env` is the Coordinator's environment (only read when
/// `AzureHSMSealing` is enabled).
pub fn check(manifest: &Manifest, env: &dyn Environment) -> Report {
    let mut report = Report::default();
    let root = DocPath::root();

    if manifest.packages.is_empty() {
        report.fail(root.field("Packages"), CheckError::NoPackages);
    }
    if manifest.marbles.is_empty() {
        report.fail(root.field("Marbles"), CheckError::NoMarbles);
    }
    check_names("Users", "user", manifest.users.keys(), &mut report);
    check_names("Roles", "role", manifest.roles.keys(), &mut report);
    check_names("Marbles", "marble", manifest.marbles.keys(), &mut report);
    check_names("Packages", "package", manifest.packages.keys(), &mut report);
    check_names("Secrets", "secret", manifest.secrets.keys(), &mut report);
    check_names(
        "RecoveryKeys",
        "recovery key",
        manifest.recovery_keys.keys(),
        &mut report,
    );
    check_marbles(manifest, &mut report);
    check_package_values(manifest, &mut report);
    check_tls(manifest, &mut report);
    check_users(manifest, &mut report);
    check_roles(manifest, &mut report);
    check_secrets(manifest, &mut report);
    check_config(manifest, env, &mut report);
    crate::pem::check_recovery_keys(manifest, &mut report.violations);
    report
}

/// Whether `c` must not appear in a name: a control character (`char::is_control`: C0 including
/// `\n`, `\r` and `\t`, DEL, C1 including NEL) or one of the Unicode line and paragraph
/// separators U+2028 and U+2029, which log viewers and JavaScript treat as line breaks.
pub fn is_forbidden_in_name(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// Q1: the names of one section (`Users`, ...) contain no character [`is_forbidden_in_name`].
/// Names end up in logs, in keys of the sealed state and in error messages, where a line break
/// would let a manifest forge lines.
fn check_names<'a>(
    section: &str,
    kind: &'static str,
    names: impl IntoIterator<Item = &'a String>,
    report: &mut Report,
) {
    for name in names {
        if let Some(character) = name.chars().find(|c| is_forbidden_in_name(*c)) {
            report.fail(
                DocPath::root().field(section).key(name),
                CheckError::ControlCharacterInName {
                    kind,
                    name: name.clone(),
                    character,
                },
            );
        }
    }
}

fn check_marbles(manifest: &Manifest, report: &mut Report) {
    let mut referenced = BTreeSet::new();
    for (name, marble) in &manifest.marbles {
        let path = DocPath::root().field("Marbles").key(name);
        if manifest.packages.contains_key(&marble.package) {
            referenced.insert(marble.package.as_str());
        } else {
            report.fail(
                path.field("Package"),
                CheckError::UnknownPackage(marble.package.clone()),
            );
        }
        for (i, tag) in marble.tls.iter().enumerate() {
            if !manifest.tls.contains_key(tag) {
                report.fail(
                    path.field("TLS").index(i),
                    CheckError::UnknownTlsTag(tag.clone()),
                );
            }
        }
    }
    // Only packages that a Marble uses are checked, as in MarbleRun.
    for name in referenced {
        let path = DocPath::root().field("Packages").key(name);
        check_package_identity(&manifest.packages[name], path, report);
    }
}

/// C4 and C5: a package names its enclave either by UniqueID alone or by SignerID, ProductID and
/// SecurityVersion together; a `Debug` package may deviate, with a warning.
fn check_package_identity(package: &Package, path: DocPath, report: &mut Report) {
    let error = if package.unique_id.is_empty() {
        let missing: Vec<&'static str> = [
            ("SignerID", !package.signer_id.is_empty()),
            ("ProductID", package.product_id.is_some()),
            ("SecurityVersion", package.security_version.is_some()),
        ]
        .into_iter()
        .filter(|(_, present)| !present)
        .map(|(name, _)| name)
        .collect();
        if missing.is_empty() {
            return;
        }
        CheckError::IncompleteIdentity(missing)
    } else {
        let extra: Vec<&'static str> = [
            ("SignerID", !package.signer_id.is_empty()),
            ("ProductID", package.product_id.is_some()),
            ("SecurityVersion", package.security_version.is_some()),
        ]
        .into_iter()
        .filter(|(_, present)| *present)
        .map(|(name, _)| name)
        .collect();
        if extra.is_empty() {
            return;
        }
        CheckError::UniqueIdWithOtherIdentity(extra)
    };
    if package.debug {
        report.warnings.push(Warning {
            path,
            kind: WarningKind::DebugPackage(format!("{error} (accepted for a Debug package)")),
        });
    } else {
        report.fail(path, error);
    }
}

/// Q2: `ProductID` and `SecurityVersion` fit the 16-bit ISVPRODID and ISVSVN of an SGX report.
/// A larger value matches no enclave, and a `SecurityVersion` cannot be lowered by a package
/// update. Every package is checked, whether a Marble uses it or not.
fn check_package_values(manifest: &Manifest, report: &mut Report) {
    for (name, package) in &manifest.packages {
        let path = DocPath::root().field("Packages").key(name);
        let values = [
            ("ProductID", package.product_id, MAX_PRODUCT_ID, "ISVPRODID"),
            (
                "SecurityVersion",
                package.security_version,
                MAX_SECURITY_VERSION,
                "ISVSVN",
            ),
        ];
        for (field, value, max, report_field) in values {
            if let Some(value) = value.filter(|v| *v > max) {
                report.fail(
                    path.field(field),
                    CheckError::IdentityValueTooLarge {
                        field,
                        value,
                        max,
                        report_field,
                    },
                );
            }
        }
    }
}

/// C7 to C10, over every tag whether a Marble uses it or not.
fn check_tls(manifest: &Manifest, report: &mut Report) {
    for (name, tag) in &manifest.tls {
        let path = DocPath::root().field("TLS").key(name);
        for (i, entry) in tag.incoming.iter().enumerate() {
            let at = path.field("Incoming").index(i);
            if entry.port.is_empty() {
                report.fail(at.field("Port"), CheckError::EmptyPort);
            }
            if entry.cert.is_empty() {
                if entry.disable_client_auth {
                    report.fail(
                        at.field("DisableClientAuth"),
                        CheckError::DisableClientAuthWithoutCert,
                    );
                }
                continue;
            }
            if !manifest.secrets.contains_key(&entry.cert) {
                report.fail(
                    at.field("Cert"),
                    CheckError::UnknownCertSecret(entry.cert.clone()),
                );
            }
            if !entry.disable_client_auth {
                report.fail(
                    at.field("DisableClientAuth"),
                    CheckError::CertNeedsDisableClientAuth,
                );
            }
        }
        for (i, entry) in tag.outgoing.iter().enumerate() {
            let at = path.field("Outgoing").index(i);
            if entry.addr.is_empty() {
                report.fail(at.field("Addr"), CheckError::EmptyAddr);
            }
            if entry.port.is_empty() {
                report.fail(at.field("Port"), CheckError::EmptyPort);
            }
        }
    }
}

/// The users whose certificate is the same as an earlier user's (in name order), as pairs
/// (earlier user, later user), each later user once.
///
/// Certificates are compared as the DER of their first PEM block, so line endings, line
/// wrapping and text around the block do not make two copies of one certificate differ: the
/// Client API matches the DER a client proves in the handshake, and one key holder must not be
/// two users. A certificate that does not parse (P1) is compared as text, as MarbleRun compares
/// every certificate; an empty one (C11) is not compared.
pub fn duplicate_user_certificates(manifest: &Manifest) -> Vec<(&str, &str)> {
    #[derive(PartialEq, Eq, Hash)]
    enum Identity<'a> {
        Der(Vec<u8>),
        Text(&'a str),
    }

    let mut first_with: HashMap<Identity<'_>, &str> = HashMap::new();
    let mut duplicates = Vec::new();
    for (name, user) in &manifest.users {
        if user.certificate.is_empty() {
            continue;
        }
        let identity = match crate::pem::parse_user_certificate(&user.certificate) {
            Ok(der) => Identity::Der(der),
            Err(_) => Identity::Text(&user.certificate),
        };
        match first_with.entry(identity) {
            Entry::Occupied(first) => duplicates.push((*first.get(), name.as_str())),
            Entry::Vacant(slot) => {
                slot.insert(name);
            }
        }
    }
    duplicates
}

/// C11 to C13 and the PEM check of users' certificates.
fn check_users(manifest: &Manifest, report: &mut Report) {
    // Later user → the first user (in key order) with the same certificate.
    let first_with: HashMap<&str, &str> = duplicate_user_certificates(manifest)
        .into_iter()
        .map(|(first, later)| (later, first))
        .collect();
    for (name, user) in &manifest.users {
        let path = DocPath::root().field("Users").key(name);
        if user.certificate.is_empty() {
            report.fail(path.field("Certificate"), CheckError::EmptyUserCertificate);
        } else {
            if let Some(first) = first_with.get(name.as_str()) {
                report.fail(
                    path.field("Certificate"),
                    CheckError::DuplicateUserCertificate((*first).to_owned()),
                );
            }
            if let Err(reason) = crate::pem::parse_user_certificate(&user.certificate) {
                report.fail(
                    path.field("Certificate"),
                    CheckError::InvalidUserCertificate(reason),
                );
            }
        }
        for (i, role) in user.roles.iter().enumerate() {
            if !manifest.roles.contains_key(role) {
                report.fail(
                    path.field("Roles").index(i),
                    CheckError::UnknownRole(role.clone()),
                );
            }
        }
    }
}

/// C14 to C17.
fn check_roles(manifest: &Manifest, report: &mut Report) {
    for (name, role) in &manifest.roles {
        let path = DocPath::root().field("Roles").key(name);
        let Some(resource) = role.resource() else {
            report.fail(
                path.field("ResourceType"),
                CheckError::InvalidResourceType(role.resource_type.clone()),
            );
            continue;
        };
        let allowed: &[Action] = match resource {
            ResourceType::Packages => &[Action::UpdateSecurityVersion],
            ResourceType::Secrets => &[Action::ReadSecret, Action::WriteSecret],
            ResourceType::Manifest => &[Action::UpdateManifest],
        };
        for (i, action) in role.actions.iter().enumerate() {
            if !allowed
                .iter()
                .any(|a| crate::decode::go_fold_eq(action, a.as_str()))
            {
                report.fail(
                    path.field("Actions").index(i),
                    CheckError::InvalidAction {
                        action: action.clone(),
                        resource_type: resource_name(resource),
                    },
                );
            }
        }
        match resource {
            ResourceType::Packages => {
                for (i, package) in role.resource_names.iter().enumerate() {
                    if !manifest.packages.contains_key(package) {
                        report.fail(
                            path.field("ResourceNames").index(i),
                            CheckError::UnknownPackageResource(package.clone()),
                        );
                    }
                }
            }
            ResourceType::Secrets => check_secret_role(manifest, role, &path, report),
            ResourceType::Manifest => {
                if !role.resource_names.is_empty() {
                    report.fail(
                        path.field("ResourceNames"),
                        CheckError::ManifestRoleWithNames,
                    );
                }
            }
        }
    }
}

fn check_secret_role(
    manifest: &Manifest,
    role: &crate::model::Role,
    path: &DocPath,
    report: &mut Report,
) {
    let writes = role.has_action(Action::WriteSecret);
    let reads = role.has_action(Action::ReadSecret);
    for (i, secret_name) in role.resource_names.iter().enumerate() {
        let at = path.field("ResourceNames").index(i);
        let Some(secret) = manifest.secrets.get(secret_name) else {
            report.fail(at, CheckError::UnknownSecretResource(secret_name.clone()));
            continue;
        };
        if writes && !secret.user_defined {
            report.fail(
                at.clone(),
                CheckError::WriteGeneratedSecret(secret_name.clone()),
            );
        }
        if reads && secret.is_unique() {
            report.fail(at, CheckError::ReadUniqueSecret(secret_name.clone()));
        }
    }
}

fn resource_name(resource: ResourceType) -> &'static str {
    match resource {
        ResourceType::Packages => "Packages",
        ResourceType::Secrets => "Secrets",
        ResourceType::Manifest => "Manifest",
    }
}

/// C18 and C19.
fn check_secrets(manifest: &Manifest, report: &mut Report) {
    for (name, secret) in &manifest.secrets {
        let path = DocPath::root().field("Secrets").key(name);
        if !secret.kind.is_known() {
            report.fail(
                path.field("Type"),
                CheckError::InvalidSecretType(secret.kind.as_str().to_owned()),
            );
        }
        if secret.kind.is_certificate()
            && secret.valid_for != 0
            && secret.cert.not_after().is_some()
        {
            report.fail(path.field("ValidFor"), CheckError::AmbiguousValidity);
        }
    }
}

/// The number of users who may update the manifest in the sense of C20: users with at least one
/// (defined) role of type `Manifest` whose first action is `UpdateManifest`.
pub fn manifest_updaters(manifest: &Manifest) -> u64 {
    let count = manifest
        .users
        .values()
        .filter(|user| {
            user.roles.iter().any(|role| {
                manifest.roles.get(role).is_some_and(|r| {
                    r.resource() == Some(ResourceType::Manifest)
                        && r.actions.first().is_some_and(|a| {
                            crate::decode::go_fold_eq(a, Action::UpdateManifest.as_str())
                        })
                })
            })
        })
        .count();
    // A map never holds more than u64::MAX entries.
    u64::try_from(count).unwrap_or(u64::MAX)
}

/// C20 to C24 and Q3.
fn check_config(manifest: &Manifest, env: &dyn Environment, report: &mut Report) {
    let config = &manifest.config;
    let path = DocPath::root().field("Config");

    let updaters = manifest_updaters(manifest);
    if config.update_threshold > updaters {
        report.fail(
            path.field("UpdateThreshold"),
            CheckError::UpdateThresholdTooHigh {
                threshold: config.update_threshold,
                updaters,
            },
        );
    }
    if SealMode::parse(&config.seal_mode).is_none() {
        report.fail(
            path.field("SealMode"),
            CheckError::InvalidSealMode(config.seal_mode.clone()),
        );
    }
    for (i, gate) in config.feature_gates.iter().enumerate() {
        let at = path.field("FeatureGates").index(i);
        match FeatureGate::parse(gate) {
            None => report.fail(at, CheckError::UnknownFeatureGate(gate.clone())),
            Some(FeatureGate::AzureHsmSealing) => {
                let missing = missing_hsm_variables(env);
                if !missing.is_empty() {
                    report.fail(at, CheckError::MissingHsmEnvironment(missing));
                }
            }
            Some(_) => {}
        }
    }
    let keys = u64::try_from(manifest.recovery_keys.len()).unwrap_or(u64::MAX);
    if config.recovery_threshold > keys {
        report.fail(
            path.field("RecoveryThreshold"),
            CheckError::RecoveryThresholdTooHigh {
                threshold: config.recovery_threshold,
                keys,
            },
        );
    }
    if config.recovery_threshold == 1 {
        report.fail(
            path.field("RecoveryThreshold"),
            CheckError::RecoveryThresholdOne,
        );
    }
    if config.recovery_threshold >= 2
        && config.recovery_threshold < keys
        && keys > MAX_THRESHOLD_RECOVERY_KEYS
    {
        report.fail(
            path.field("RecoveryThreshold"),
            CheckError::TooManyThresholdRecoveryKeys {
                threshold: config.recovery_threshold,
                keys,
                max: MAX_THRESHOLD_RECOVERY_KEYS,
            },
        );
    }
}
