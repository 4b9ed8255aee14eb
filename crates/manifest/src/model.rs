//! The manifest's data model, field for field as MarbleRun defines it.
//!
//! Field names are MarbleRun's JSON keys in snake case (`UniqueID` → `unique_id`). Values are
//! kept as written where MarbleRun's checks need the original (a secret type or seal mode that
//! is not one of the known ones is kept, so that validation can name it); typed views
//! ([`SecretType`], [`SealMode`], [`FeatureGate`]) sit beside them. Maps are ordered by key so
//! that every report lists problems in the same order.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use time::OffsetDateTime;
use zeroize::Zeroize;

/// A whole manifest.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Manifest {
    /// `Packages`: the enclave identities Marbles may have.
    pub packages: BTreeMap<String, Package>,
    /// `Infrastructures`: platforms; kept, but without effect on attestation (as in MarbleRun).
    pub infrastructures: BTreeMap<String, Infrastructure>,
    /// `Marbles`: the Marble types, keyed by the type name Marbles send.
    pub marbles: BTreeMap<String, Marble>,
    /// `Users`: operators authenticated by client certificate.
    pub users: BTreeMap<String, User>,
    /// `Secrets`: generated or user-defined secrets.
    pub secrets: BTreeMap<String, Secret>,
    /// `RecoveryKeys`: PEM RSA public keys of the recovery parties.
    pub recovery_keys: BTreeMap<String, String>,
    /// `Roles`: what users may do.
    pub roles: BTreeMap<String, Role>,
    /// `TLS`: Transparent-TLS tags.
    pub tls: BTreeMap<String, TlsTag>,
    /// `Config`: Coordinator options.
    pub config: Config,
}

/// `Packages.<name>`: an allowed enclave identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Package {
    /// `Debug`: must equal the enclave's debug attribute.
    pub debug: bool,
    /// `UniqueID`: hex MRENCLAVE, or empty.
    pub unique_id: String,
    /// `SignerID`: hex MRSIGNER, or empty.
    pub signer_id: String,
    /// `ProductID`: ISVPRODID, if required.
    pub product_id: Option<u64>,
    /// `SecurityVersion`: minimum ISVSVN, if required.
    pub security_version: Option<u64>,
    /// `AcceptedTCBStatuses`: TCB statuses accepted besides `UpToDate`.
    pub accepted_tcb_statuses: Vec<String>,
    /// `AcceptedAdvisories`: advisory IDs accepted for `SWHardeningNeeded`.
    pub accepted_advisories: Vec<String>,
}

/// `Infrastructures.<name>` (undocumented in MarbleRun and unused by its quote validator).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Infrastructure {
    /// `CPUSVN`.
    pub cpusvn: Vec<u8>,
    /// `QESVN`.
    pub qesvn: Option<u16>,
    /// `PCESVN`.
    pub pcesvn: Option<u16>,
    /// `RootCA`.
    pub root_ca: Vec<u8>,
}

/// `Marbles.<type>`.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Marble {
    /// `Package`: name of an entry of `Packages`.
    pub package: String,
    /// `MaxActivations`: 0 means unlimited.
    pub max_activations: u64,
    /// `Parameters`: files, environment and arguments handed to the Marble.
    pub parameters: Parameters,
    /// `TLS`: names of entries of the top-level `TLS` map.
    pub tls: Vec<String>,
    /// `DisableSecretBinding`: leave the Marble type out of unique-key derivation.
    pub disable_secret_binding: bool,
}

/// `Marbles.<type>.Parameters`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Parameters {
    /// `Files`: path → content.
    pub files: BTreeMap<String, FileValue>,
    /// `Env`: variable name → value.
    pub env: BTreeMap<String, FileValue>,
    /// `Argv`: the command line, never templated.
    pub argv: Vec<String>,
}

/// A value of `Files` or `Env`: either a plain string or `{Data, Encoding, NoTemplates}`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileValue {
    /// The content after decoding `Encoding` (templates apply to these bytes).
    pub data: Vec<u8>,
    /// `Encoding` as written, or `string` when it was empty or absent.
    pub encoding: String,
    /// `NoTemplates`: pass `data` through verbatim.
    pub no_templates: bool,
}

impl FileValue {
    /// A plain string value, as the string form of the JSON produces.
    pub fn plain(data: impl Into<Vec<u8>>) -> Self {
        Self {
            data: data.into(),
            encoding: "string".to_owned(),
            no_templates: false,
        }
    }
}

/// `Secrets.<name>`.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Secret {
    /// `Type`.
    pub kind: SecretType,
    /// `Size` in bits (meaning per type; checked when the secret is generated or uploaded).
    pub size: u64,
    /// `Shared`: one value for all Marbles instead of one per Marble.
    pub shared: bool,
    /// `UserDefined`: uploaded by a user, never generated.
    pub user_defined: bool,
    /// `Cert`: the certificate template, or a certificate given as base64 DER.
    pub cert: SecretCert,
    /// `ValidFor` in days; 0 means the default (365) for generated certificates.
    pub valid_for: u64,
    /// `Private`: a value given in the manifest (used as the initial value of a user-defined
    /// secret).
    pub private: Option<SecretBytes>,
    /// `Public`: as `private`.
    pub public: Option<SecretBytes>,
}

impl Secret {
    /// Whether `self` and `other` have the same definition in the sense of a full update: equal
    /// `Type`, `Size`, `Shared`, `UserDefined` and `ValidFor` (the `Cert` template is not
    /// compared, as in MarbleRun). A changed definition makes the update treat the secret as new.
    pub fn same_definition(&self, other: &Secret) -> bool {
        self.kind == other.kind
            && self.size == other.size
            && self.shared == other.shared
            && self.user_defined == other.user_defined
            && self.valid_for == other.valid_for
    }

    /// Whether the secret is unique per Marble: generated (not user-defined) and not shared.
    /// Users can never read such a secret.
    pub fn is_unique(&self) -> bool {
        !self.shared && !self.user_defined
    }
}

/// The `Type` of a secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SecretType {
    /// `symmetric-key`: `Size` bits of key material.
    SymmetricKey,
    /// `cert-rsa`: an RSA key of `Size` bits and a certificate.
    CertRsa,
    /// `cert-ecdsa`: an ECDSA key on the curve named by `Size` and a certificate.
    CertEcdsa,
    /// `cert-ed25519`: an Ed25519 key and a certificate.
    CertEd25519,
    /// `plain`: arbitrary bytes uploaded by a user.
    Plain,
    /// Any other value, kept as written (including the empty string of a missing `Type`);
    /// refused by check C18.
    Unknown(String),
    /// No `Type` was given.
    #[default]
    Missing,
}

impl SecretType {
    /// Reads a `Type` value; matching is exact (case-sensitive), as in MarbleRun.
    pub fn parse(value: &str) -> Self {
        match value {
            "symmetric-key" => Self::SymmetricKey,
            "cert-rsa" => Self::CertRsa,
            "cert-ecdsa" => Self::CertEcdsa,
            "cert-ed25519" => Self::CertEd25519,
            "plain" => Self::Plain,
            "" => Self::Missing,
            other => Self::Unknown(other.to_owned()),
        }
    }

    /// The `Type` string as written in a manifest.
    pub fn as_str(&self) -> &str {
        match self {
            Self::SymmetricKey => "symmetric-key",
            Self::CertRsa => "cert-rsa",
            Self::CertEcdsa => "cert-ecdsa",
            Self::CertEd25519 => "cert-ed25519",
            Self::Plain => "plain",
            Self::Unknown(other) => other,
            Self::Missing => "",
        }
    }

    /// Whether the type carries a certificate (`cert-*`).
    pub fn is_certificate(&self) -> bool {
        matches!(self, Self::CertRsa | Self::CertEcdsa | Self::CertEd25519)
    }

    /// Whether the type is one of the five MarbleRun knows.
    pub fn is_known(&self) -> bool {
        !matches!(self, Self::Unknown(_) | Self::Missing)
    }
}

impl fmt::Display for SecretType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Bytes of secret material: zeroed on drop and never shown by `Debug`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Wraps `bytes`.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBytes(..)")
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// `Secrets.<name>.Cert`: Go's `x509.Certificate` in its JSON form, or a base64 DER string.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SecretCert {
    /// The object form: fields of a certificate template.
    Template(Box<CertTemplate>),
    /// The string form: a complete certificate (DER), as a user-defined secret's initial value
    /// or as a template.
    Der {
        /// The certificate's DER bytes.
        der: Vec<u8>,
        /// Its `notAfter`.
        not_after: OffsetDateTime,
    },
}

impl Default for SecretCert {
    fn default() -> Self {
        Self::Template(Box::default())
    }
}

impl SecretCert {
    /// The `NotAfter` the certificate sets, if any (Go's zero time counts as unset).
    pub fn not_after(&self) -> Option<OffsetDateTime> {
        match self {
            Self::Template(t) => t.not_after,
            Self::Der { not_after, .. } => Some(*not_after),
        }
    }

    /// The template fields, when the object form was used.
    pub fn template(&self) -> Option<&CertTemplate> {
        match self {
            Self::Template(t) => Some(t),
            Self::Der { .. } => None,
        }
    }
}

/// The fields of Go's `x509.Certificate` that Go's `CreateCertificate` takes from a template.
///
/// Go fields that certificate generation ignores or overrides (`SerialNumber`, `NotBefore`,
/// `Issuer`, `PublicKey`, `Raw*`, `Signature`, `Extensions`, ...) are not kept; the decoder
/// reports them as ignored. Go fields that generation honours but this model does not type
/// (`Policies`, `PolicyMappings`, `InhibitAnyPolicy`, ...) are kept in [`CertTemplate::other`],
/// so that certificate generation can refuse what it cannot honour.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct CertTemplate {
    /// `Subject`.
    pub subject: DistinguishedName,
    /// `RawSubject`: a DER Name that replaces `Subject` when set.
    pub raw_subject: Vec<u8>,
    /// `NotAfter`; `None` when absent or Go's zero time.
    pub not_after: Option<OffsetDateTime>,
    /// `KeyUsage`: Go's bit mask (DigitalSignature 1, ..., DecipherOnly 256).
    pub key_usage: i64,
    /// `ExtKeyUsage`: Go's enum values (ServerAuth 1, ClientAuth 2, ...).
    pub ext_key_usage: Vec<i64>,
    /// `UnknownExtKeyUsage`: extended key usages as OIDs.
    pub unknown_ext_key_usage: Vec<Vec<i64>>,
    /// `IsCA`.
    pub is_ca: bool,
    /// `MaxPathLen`.
    pub max_path_len: i64,
    /// `MaxPathLenZero`.
    pub max_path_len_zero: bool,
    /// `SubjectKeyId`.
    pub subject_key_id: Vec<u8>,
    /// `OCSPServer`.
    pub ocsp_server: Vec<String>,
    /// `IssuingCertificateURL`.
    pub issuing_certificate_url: Vec<String>,
    /// `DNSNames`; `None` when absent or null (generation then uses `localhost`), `Some` of an
    /// empty list when given as `[]`.
    pub dns_names: Option<Vec<String>>,
    /// `EmailAddresses`.
    pub email_addresses: Vec<String>,
    /// `IPAddresses`; `None` when absent or null (generation then uses 127.0.0.1 and ::1).
    pub ip_addresses: Option<Vec<IpAddr>>,
    /// `URIs`: Go `url.URL` objects.
    pub uris: Vec<GoUrl>,
    /// `CRLDistributionPoints`.
    pub crl_distribution_points: Vec<String>,
    /// `PermittedDNSDomainsCritical`.
    pub permitted_dns_domains_critical: bool,
    /// `PermittedDNSDomains`.
    pub permitted_dns_domains: Vec<String>,
    /// `ExcludedDNSDomains`.
    pub excluded_dns_domains: Vec<String>,
    /// `PermittedIPRanges`.
    pub permitted_ip_ranges: Vec<IpNet>,
    /// `ExcludedIPRanges`.
    pub excluded_ip_ranges: Vec<IpNet>,
    /// `PermittedEmailAddresses`.
    pub permitted_email_addresses: Vec<String>,
    /// `ExcludedEmailAddresses`.
    pub excluded_email_addresses: Vec<String>,
    /// `PermittedURIDomains`.
    pub permitted_uri_domains: Vec<String>,
    /// `ExcludedURIDomains`.
    pub excluded_uri_domains: Vec<String>,
    /// `PolicyIdentifiers`: OIDs.
    pub policy_identifiers: Vec<Vec<i64>>,
    /// `ExtraExtensions`.
    pub extra_extensions: Vec<Extension>,
    /// `SignatureAlgorithm`: Go's enum value (0 = default, ECDSAWithSHA256 10, ...).
    pub signature_algorithm: i64,
    /// Go fields that generation honours but this model keeps untyped, with their JSON values
    /// (canonical Go names as keys).
    pub other: BTreeMap<String, serde_json::Value>,
}

/// Go's `pkix.Name` in its JSON form.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct DistinguishedName {
    /// `Country`.
    pub country: Vec<String>,
    /// `Organization`.
    pub organization: Vec<String>,
    /// `OrganizationalUnit`.
    pub organizational_unit: Vec<String>,
    /// `Locality`.
    pub locality: Vec<String>,
    /// `Province`.
    pub province: Vec<String>,
    /// `StreetAddress`.
    pub street_address: Vec<String>,
    /// `PostalCode`.
    pub postal_code: Vec<String>,
    /// `SerialNumber`.
    pub serial_number: String,
    /// `CommonName`.
    pub common_name: String,
    /// `ExtraNames`: further attributes, appended by Go after the ones above.
    pub extra_names: Vec<AttributeValue>,
}

/// One `pkix.AttributeTypeAndValue` of `ExtraNames`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AttributeValue {
    /// `Type`: the attribute's OID.
    pub oid: Vec<i64>,
    /// `Value`: any JSON value (Go's `any`); Go encodes strings as UTF8String.
    pub value: serde_json::Value,
}

/// One `pkix.Extension` of `ExtraExtensions`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Extension {
    /// `Id`: the extension's OID.
    pub oid: Vec<i64>,
    /// `Critical`.
    pub critical: bool,
    /// `Value`: the DER contents.
    pub value: Vec<u8>,
}

/// Go's `net.IPNet` in its JSON form.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IpNet {
    /// `IP`.
    pub ip: Option<IpAddr>,
    /// `Mask`: the mask bytes.
    pub mask: Vec<u8>,
}

/// Go's `url.URL` in its JSON form (only the fields that make up the URL string).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GoUrl {
    /// `Scheme`.
    pub scheme: String,
    /// `Opaque`.
    pub opaque: String,
    /// `Host`.
    pub host: String,
    /// `Path`.
    pub path: String,
    /// `RawQuery`.
    pub raw_query: String,
    /// `Fragment`.
    pub fragment: String,
}

/// `Users.<name>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct User {
    /// `Certificate`: the user's PEM certificate (the first PEM block counts).
    pub certificate: String,
    /// `Roles`: names of entries of `Roles`.
    pub roles: Vec<String>,
}

/// `Roles.<name>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Role {
    /// `ResourceType` as written: `Packages`, `Secrets` or `Manifest` (case-sensitive).
    pub resource_type: String,
    /// `ResourceNames`.
    pub resource_names: Vec<String>,
    /// `Actions` as written (matched case-insensitively).
    pub actions: Vec<String>,
}

impl Role {
    /// The resource type, if it is one of the three known ones.
    pub fn resource(&self) -> Option<ResourceType> {
        match self.resource_type.as_str() {
            "Packages" => Some(ResourceType::Packages),
            "Secrets" => Some(ResourceType::Secrets),
            "Manifest" => Some(ResourceType::Manifest),
            _ => None,
        }
    }

    /// Whether the role lists `action` (case-insensitively).
    pub fn has_action(&self, action: Action) -> bool {
        self.actions
            .iter()
            .any(|a| crate::decode::go_fold_eq(a, action.as_str()))
    }
}

/// The `ResourceType` of a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResourceType {
    /// `Packages`.
    Packages,
    /// `Secrets`.
    Secrets,
    /// `Manifest`.
    Manifest,
}

/// A role action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Action {
    /// `UpdateSecurityVersion` (packages).
    UpdateSecurityVersion,
    /// `ReadSecret` (secrets).
    ReadSecret,
    /// `WriteSecret` (secrets).
    WriteSecret,
    /// `UpdateManifest` (manifest).
    UpdateManifest,
}

impl Action {
    /// The action's name as MarbleRun documents it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UpdateSecurityVersion => "UpdateSecurityVersion",
            Self::ReadSecret => "ReadSecret",
            Self::WriteSecret => "WriteSecret",
            Self::UpdateManifest => "UpdateManifest",
        }
    }
}

/// `TLS.<tag>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsTag {
    /// `Outgoing`: client-side entries.
    pub outgoing: Vec<TlsTagEntry>,
    /// `Incoming`: server-side entries.
    pub incoming: Vec<TlsTagEntry>,
}

/// One entry of a TLS tag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsTagEntry {
    /// `Port` (a string).
    pub port: String,
    /// `Addr`.
    pub addr: String,
    /// `Cert`: name of a secret whose certificate an incoming entry serves.
    pub cert: String,
    /// `DisableClientAuth`.
    pub disable_client_auth: bool,
}

/// `Config`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// `SealMode` as written; see [`Config::seal_mode`].
    pub seal_mode: String,
    /// `FeatureGates` as written; see [`Config::has_feature`].
    pub feature_gates: Vec<String>,
    /// `UpdateThreshold`: acknowledgements for a full update (0 = all updaters).
    pub update_threshold: u64,
    /// `RecoveryThreshold`: shares needed for recovery (0 = all keys).
    pub recovery_threshold: u64,
    /// `RotateRootSecret`: rotate the root secret when applied as a full update.
    pub rotate_root_secret: bool,
}

impl Config {
    /// The seal mode, or `None` if `SealMode` is not one of the known values (check C21).
    pub fn seal_mode(&self) -> Option<SealMode> {
        SealMode::parse(&self.seal_mode)
    }

    /// Whether `FeatureGates` enables `gate` (names match case-insensitively).
    pub fn has_feature(&self, gate: FeatureGate) -> bool {
        self.feature_gates
            .iter()
            .any(|g| FeatureGate::parse(g) == Some(gate))
    }
}

/// How the Coordinator seals its state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SealMode {
    /// `ProductKey` (also the empty string): the SGX product key.
    #[default]
    ProductKey,
    /// `UniqueKey`: the SGX unique (MRENCLAVE-bound) key.
    UniqueKey,
    /// `Disabled`: state kept in memory only.
    Disabled,
}

impl SealMode {
    /// Reads a `SealMode` value; matching is exact, as in MarbleRun.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "" | "ProductKey" => Some(Self::ProductKey),
            "UniqueKey" => Some(Self::UniqueKey),
            "Disabled" => Some(Self::Disabled),
            _ => None,
        }
    }
}

/// A feature gate of `Config.FeatureGates`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FeatureGate {
    /// `SignQuoteEndpoint`: enables `POST /api/v2/sign-quote`.
    SignQuoteEndpoint,
    /// `MonotonicCounter`: enables `POST /api/v2/monotonic-counter`.
    MonotonicCounter,
    /// `AzureHSMSealing`: wraps the sealed state key with a key released by Azure Managed HSM.
    AzureHsmSealing,
}

impl FeatureGate {
    /// Reads a feature-gate name, case-insensitively.
    pub fn parse(value: &str) -> Option<Self> {
        [
            Self::SignQuoteEndpoint,
            Self::MonotonicCounter,
            Self::AzureHsmSealing,
        ]
        .into_iter()
        .find(|g| crate::decode::go_fold_eq(value, g.as_str()))
    }

    /// The gate's name as MarbleRun documents it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SignQuoteEndpoint => "SignQuoteEndpoint",
            Self::MonotonicCounter => "MonotonicCounter",
            Self::AzureHsmSealing => "AzureHSMSealing",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_types_round_trip_and_are_case_sensitive() {
        for name in [
            "symmetric-key",
            "cert-rsa",
            "cert-ecdsa",
            "cert-ed25519",
            "plain",
        ] {
            let kind = SecretType::parse(name);
            assert!(kind.is_known());
            assert_eq!(kind.as_str(), name);
        }
        assert_eq!(
            SecretType::parse("Plain"),
            SecretType::Unknown("Plain".into())
        );
        assert_eq!(SecretType::parse(""), SecretType::Missing);
        assert!(!SecretType::Missing.is_known());
        assert!(SecretType::CertEd25519.is_certificate());
        assert!(!SecretType::SymmetricKey.is_certificate());
    }

    #[test]
    fn seal_modes_are_exact_and_feature_gates_fold_case() {
        assert_eq!(SealMode::parse(""), Some(SealMode::ProductKey));
        assert_eq!(SealMode::parse("UniqueKey"), Some(SealMode::UniqueKey));
        assert_eq!(SealMode::parse("uniquekey"), None);
        assert_eq!(
            FeatureGate::parse("azurehsmsealing"),
            Some(FeatureGate::AzureHsmSealing)
        );
        let config = Config {
            feature_gates: vec!["MONOTONICCOUNTER".into()],
            ..Config::default()
        };
        assert!(config.has_feature(FeatureGate::MonotonicCounter));
        assert!(!config.has_feature(FeatureGate::SignQuoteEndpoint));
    }

    #[test]
    fn secret_definitions_ignore_the_cert_template() {
        let a = Secret {
            kind: SecretType::CertEcdsa,
            size: 256,
            ..Secret::default()
        };
        let mut b = a.clone();
        b.cert = SecretCert::Der {
            der: vec![1],
            not_after: OffsetDateTime::UNIX_EPOCH,
        };
        assert!(a.same_definition(&b));
        b.valid_for = 1;
        assert!(!a.same_definition(&b));
        assert!(a.is_unique());
    }

    #[test]
    fn secret_bytes_hide_their_content() {
        let bytes = SecretBytes::new(b"hunter2".to_vec());
        assert_eq!(format!("{bytes:?}"), "SecretBytes(..)");
        assert_eq!(bytes.len(), 7);
    }
}
