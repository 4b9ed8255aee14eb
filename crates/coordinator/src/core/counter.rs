//! Monotonic counters of Marbles (`POST /api/v2/monotonic-counter`, feature gate
//! `MonotonicCounter`) and the Marble authentication they need.
//!
//! A Marble authenticates with the certificate it received at activation, as the TLS client
//! certificate. The leaf the handshake proved must verify against the *current* Marble root
//! certificate (signature, validity period, and the serverAuth extended key usage when the
//! certificate lists usages, as Go's default verification does); its subject common name must
//! be a UUID and its extension `1.3.9903.2.1` must hold the Marble type as raw bytes. Only the
//! leaf counts: certificates a client appends after it prove nothing.
//!
//! A counter is identified by (Marble type, UUID, name) and stored under
//! [`keys::monotonic_counter_key`]. Setting it to `value` replaces the stored value only if
//! `value` is greater; the answer is the value before the request. The read, the comparison
//! and the commit happen under the core mutex and in one store transaction, so concurrent
//! requests are serialised: each sees the value the previous one left, and none is lost.
//!
//! A counter's name has at most [`MAX_COUNTER_NAME_BYTES`] bytes (MarbleRun sets no limit): every
//! commit rewrites the whole sealed state, so a Marble storing names of megabytes could make
//! every later state change slow and, past the store's size limit, impossible.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use quarry_manifest::{FeatureGate, ManifestDocument};
use quarry_pki::CoordinatorCa;
use quarry_pki::marble::MARBLE_TYPE_EXTENSION_OID;
use rustls::pki_types::{CertificateDer, UnixTime};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::keys;
use super::{Core, CoreError};

/// The longest counter name, in bytes (UTF-8).
pub const MAX_COUNTER_NAME_BYTES: usize = 4096;

/// A Marble identified by its certificate.
#[derive(Clone, PartialEq, Eq)]
pub struct MarbleCaller {
    marble_type: String,
    uuid: uuid::Uuid,
}

impl MarbleCaller {
    /// The Marble type (extension `1.3.9903.2.1`).
    pub fn marble_type(&self) -> &str {
        &self.marble_type
    }

    /// The Marble's UUID (the certificate's common name).
    pub fn uuid(&self) -> uuid::Uuid {
        self.uuid
    }
}

impl fmt::Debug for MarbleCaller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MarbleCaller")
            .field("marble_type", &self.marble_type)
            .field("uuid", &self.uuid.to_string())
            .finish()
    }
}

/// A Marble authenticated against the CA current at the time, with its certificate.
pub struct MarbleSession {
    caller: MarbleCaller,
    ca: Arc<CoordinatorCa>,
    leaf: Vec<u8>,
}

impl MarbleSession {
    /// Who the Marble is.
    pub fn caller(&self) -> &MarbleCaller {
        &self.caller
    }
}

impl fmt::Debug for MarbleSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MarbleSession")
            .field("caller", &self.caller)
            .finish_non_exhaustive()
    }
}

/// Why a client is not a Marble of this Coordinator (`401`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MarbleAuthError {
    /// The client presented no certificate.
    #[error("{}", crate::users::NO_CERTIFICATE)]
    NoCertificate,
    /// The certificate does not verify against the current Marble root certificate.
    #[error("client certificate is not a valid marble certificate of this coordinator: {reason}")]
    Untrusted {
        /// Why, in words.
        reason: String,
    },
    /// The certificate's subject common name is missing or not a UUID.
    #[error("marble certificate: subject common name {common_name:?} is not a marble uuid")]
    CommonName {
        /// The common name (empty when there is none).
        common_name: String,
    },
    /// The certificate has no Marble type extension.
    #[error("marble certificate: no marble type extension 1.3.9903.2.1")]
    NoMarbleType,
    /// The Marble type extension is not text.
    #[error("marble certificate: the marble type extension 1.3.9903.2.1 is not utf-8")]
    MarbleTypeNotText,
}

/// A refused or failed counter request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CounterError {
    /// The client is not a Marble of this Coordinator (`401`).
    #[error(transparent)]
    Auth(#[from] MarbleAuthError),
    /// The operation failed.
    #[error(transparent)]
    Core(#[from] CoreError),
}

/// Authenticates the client whose handshake proved `leaf` as a Marble whose certificate the
/// Marble root `marble_root_der` issued, at time `now`.
pub fn authenticate_marble(
    marble_root_der: &[u8],
    leaf: Option<&[u8]>,
    now: OffsetDateTime,
) -> Result<MarbleCaller, MarbleAuthError> {
    let leaf = leaf.ok_or(MarbleAuthError::NoCertificate)?;
    verify_chain(marble_root_der, leaf, now)?;

    let untrusted = |reason: String| MarbleAuthError::Untrusted { reason };
    let (_, cert) = X509Certificate::from_der(leaf)
        .map_err(|e| untrusted(format!("certificate does not parse: {e}")))?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .map(|cn| cn.as_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    let uuid = parse_uuid(&common_name).ok_or(MarbleAuthError::CommonName { common_name })?;
    let oid = x509_parser::oid_registry::Oid::from(MARBLE_TYPE_EXTENSION_OID)
        .map_err(|_| untrusted("marble type extension oid".into()))?;
    let extension = cert
        .extensions()
        .iter()
        .find(|ext| ext.oid == oid)
        .ok_or(MarbleAuthError::NoMarbleType)?;
    let marble_type = std::str::from_utf8(extension.value)
        .map_err(|_| MarbleAuthError::MarbleTypeNotText)?
        .to_owned();
    Ok(MarbleCaller { marble_type, uuid })
}

/// Signature, validity and extended key usage of `leaf`, with the Marble root as the only
/// trust anchor.
fn verify_chain(
    marble_root_der: &[u8],
    leaf: &[u8],
    now: OffsetDateTime,
) -> Result<(), MarbleAuthError> {
    let untrusted = |reason: String| MarbleAuthError::Untrusted { reason };
    let root = CertificateDer::from(marble_root_der);
    let anchor = webpki::anchor_from_trusted_cert(&root)
        .map_err(|e| untrusted(format!("marble root certificate: {e:?}")))?;
    let leaf = CertificateDer::from(leaf);
    let cert = webpki::EndEntityCert::try_from(&leaf)
        .map_err(|e| untrusted(format!("certificate does not parse: {e:?}")))?;
    // Before 1970 nothing is valid; the clamp only keeps the conversion total.
    let seconds = u64::try_from(now.unix_timestamp()).unwrap_or(0);
    let time = UnixTime::since_unix_epoch(Duration::from_secs(seconds));
    cert.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &[anchor],
        &[],
        time,
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .map_err(|e| untrusted(describe_webpki(&e)))?;
    Ok(())
}

/// A lower-case description of a path-building failure.
fn describe_webpki(error: &webpki::Error) -> String {
    let at = |t: &UnixTime| quarry_enclave::collateral::format_time(t.as_secs() as i64);
    match error {
        webpki::Error::CertExpired { not_after, .. } => {
            format!("certificate expired at {}", at(not_after))
        }
        webpki::Error::CertNotValidYet { not_before, .. } => {
            format!("certificate is not valid before {}", at(not_before))
        }
        webpki::Error::UnknownIssuer => {
            "certificate is not issued by the current marble root certificate".into()
        }
        webpki::Error::InvalidSignatureForPublicKey => {
            "certificate signature does not verify with the current marble root key".into()
        }
        webpki::Error::RequiredEkuNotFoundContext(_) => {
            "certificate does not allow server authentication (extended key usage)".into()
        }
        webpki::Error::CaUsedAsEndEntity => "certificate is a ca certificate".into(),
        other => format!("certificate path: {other:?}"),
    }
}

/// The Marble's UUID as activation reads it; the nil UUID is no Marble's.
fn parse_uuid(text: &str) -> Option<uuid::Uuid> {
    crate::marble::activate::parse_go_uuid(text).filter(|u| !u.is_nil())
}

impl Core {
    /// Whether the current manifest enables `gate`; `false` when no manifest is set (or while
    /// the state is sealed).
    pub fn feature_enabled(&self, gate: FeatureGate) -> Result<bool, CoreError> {
        let snapshot = self.snapshot();
        let Some(raw) = keys::manifest(&snapshot) else {
            return Ok(false);
        };
        let document = ManifestDocument::from_json(raw.to_vec())
            .map_err(|e| CoreError::Internal(format!("stored manifest does not decode: {e}")))?;
        Ok(document.manifest().config.has_feature(gate))
    }

    /// Authenticates the client whose handshake proved `leaf` as a Marble of this
    /// Coordinator (state 3 only), for [`Core::set_monotonic_counter`].
    pub fn authenticate_marble(&self, leaf: Option<&[u8]>) -> Result<MarbleSession, CounterError> {
        self.require_state("authenticating a marble", &[3], "state 3")?;
        let leaf = leaf.ok_or(MarbleAuthError::NoCertificate)?;
        let ca = self.ca();
        let caller = authenticate_with(&ca, leaf)?;
        Ok(MarbleSession {
            caller,
            ca,
            leaf: leaf.to_vec(),
        })
    }

    /// `POST /api/v2/monotonic-counter`: sets `marble`'s counter `name` to `value` if that is
    /// greater than the stored value. Returns the value before the request (0 when the counter
    /// was unset).
    pub fn set_monotonic_counter(
        &self,
        marble: &MarbleSession,
        name: &str,
        value: u64,
    ) -> Result<u64, CounterError> {
        if name.len() > MAX_COUNTER_NAME_BYTES {
            return Err(CoreError::invalid(format!(
                "name: {} bytes, more than the limit of {MAX_COUNTER_NAME_BYTES}",
                name.len()
            ))
            .into());
        }
        let _guard = self.lock();
        self.require_state("setting a monotonic counter", &[3], "state 3")?;
        // The certificate was checked before the core mutex, so that clients without a Marble
        // certificate cannot hold it up; if an update replaced the CA since, check again.
        let current_ca = self.ca();
        let fresh;
        let caller = if Arc::ptr_eq(&marble.ca, &current_ca) {
            &marble.caller
        } else {
            fresh = authenticate_with(&current_ca, &marble.leaf)?;
            &fresh
        };

        let key = keys::monotonic_counter_key(&caller.marble_type, caller.uuid.as_bytes(), name);
        let mut tx = self.store().begin();
        let previous = keys::monotonic_counter(&tx, &key).map_err(CoreError::from)?;
        if value <= previous {
            return Ok(previous);
        }
        keys::put_monotonic_counter(&mut tx, &key, value);
        tx.commit().map_err(CoreError::from)?;
        tracing::info!(
            marble_type = %caller.marble_type,
            uuid = %caller.uuid,
            counter = ?name,
            previous,
            value,
            "monotonic counter increased"
        );
        Ok(previous)
    }
}

fn authenticate_with(ca: &CoordinatorCa, leaf: &[u8]) -> Result<MarbleCaller, MarbleAuthError> {
    authenticate_marble(
        ca.marble_root_certificate_der(),
        Some(leaf),
        OffsetDateTime::now_utc(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use quarry_pki::{CaNames, SystemRandom};
    use rcgen::{
        CertificateParams, CustomExtension, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    use time::Duration as Span;

    const UUID: &str = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";

    fn ca() -> CoordinatorCa {
        let now = OffsetDateTime::now_utc();
        CoordinatorCa::generate(&CaNames::parse("localhost"), now, &SystemRandom).unwrap()
    }

    /// A certificate like a Marble's, issued by `ca`'s Marble root with its key, after `change`.
    fn leaf(ca: &CoordinatorCa, change: impl FnOnce(&mut CertificateParams)) -> Vec<u8> {
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, UUID);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.is_ca = IsCa::ExplicitNoCa;
        params.not_before = now - Span::days(1);
        params.not_after = now + Span::days(1);
        params.custom_extensions = vec![CustomExtension::from_oid_content(
            MARBLE_TYPE_EXTENSION_OID,
            b"web".to_vec(),
        )];
        change(&mut params);
        let root = CertificateDer::from(ca.marble_root_certificate_der());
        let issuer = Issuer::from_ca_cert_der(&root, ca.intermediate_key()).unwrap();
        let key = KeyPair::generate().unwrap();
        params.signed_by(&key, &issuer).unwrap().der().to_vec()
    }

    fn check(ca: &CoordinatorCa, leaf: &[u8]) -> Result<MarbleCaller, MarbleAuthError> {
        authenticate_marble(
            ca.marble_root_certificate_der(),
            Some(leaf),
            OffsetDateTime::now_utc(),
        )
    }

    fn untrusted(result: Result<MarbleCaller, MarbleAuthError>) -> String {
        match result {
            Err(MarbleAuthError::Untrusted { reason }) => reason,
            other => panic!("expected an untrusted certificate, got {other:?}"),
        }
    }

    #[test]
    fn accepts_the_certificate_a_marble_receives_at_activation() {
        let ca = ca();
        let key = KeyPair::generate().unwrap();
        let csr = CertificateParams::default()
            .serialize_request(&key)
            .unwrap()
            .der()
            .to_vec();
        let uuid = *uuid::Uuid::parse_str(UUID).unwrap().as_bytes();
        let now = OffsetDateTime::now_utc();
        let issued = ca
            .issue_marble_certificate(&csr, "backend", &uuid, now, &SystemRandom)
            .unwrap();
        let caller = check(&ca, issued.certificate_der()).unwrap();
        assert_eq!(caller.marble_type(), "backend");
        assert_eq!(caller.uuid().to_string(), UUID);

        // Another Coordinator's Marble root does not accept it.
        let reason = untrusted(check(&self::ca(), issued.certificate_der()));
        assert!(reason.starts_with("certificate "), "{reason}");
    }

    #[test]
    fn refuses_certificates_outside_their_validity() {
        let ca = ca();
        let now = OffsetDateTime::now_utc();
        let expired = leaf(&ca, |p| {
            p.not_before = now - Span::days(3);
            p.not_after = now - Span::days(2);
        });
        assert!(untrusted(check(&ca, &expired)).starts_with("certificate expired at "));
        let early = leaf(&ca, |p| {
            p.not_before = now + Span::days(2);
            p.not_after = now + Span::days(3);
        });
        assert!(untrusted(check(&ca, &early)).starts_with("certificate is not valid before "));
        // The same certificates at a time inside their validity.
        let at = now + Span::days(2) + Span::hours(1);
        authenticate_marble(ca.marble_root_certificate_der(), Some(&early), at).unwrap();
    }

    #[test]
    fn refuses_names_that_are_not_marble_uuids() {
        let ca = ca();
        for (common_name, expected) in [
            (Some("web"), "web"),
            (
                Some("00000000-0000-0000-0000-000000000000"),
                "00000000-0000-0000-0000-000000000000",
            ),
            (None, ""),
        ] {
            let cert = leaf(&ca, |p| {
                p.distinguished_name = rcgen::DistinguishedName::new();
                if let Some(cn) = common_name {
                    p.distinguished_name.push(DnType::CommonName, cn);
                }
            });
            assert_eq!(
                check(&ca, &cert).unwrap_err(),
                MarbleAuthError::CommonName {
                    common_name: expected.to_owned()
                }
            );
        }
        // Go's other UUID forms are accepted.
        let cert = leaf(&ca, |p| {
            p.distinguished_name = rcgen::DistinguishedName::new();
            p.distinguished_name.push(
                DnType::CommonName,
                format!("urn:uuid:{}", UUID.to_uppercase()),
            );
        });
        assert_eq!(check(&ca, &cert).unwrap().uuid().to_string(), UUID);
    }

    #[test]
    fn refuses_certificates_without_a_marble_type() {
        let ca = ca();
        let none = leaf(&ca, |p| p.custom_extensions.clear());
        assert_eq!(
            check(&ca, &none).unwrap_err(),
            MarbleAuthError::NoMarbleType
        );
        let binary = leaf(&ca, |p| {
            p.custom_extensions = vec![CustomExtension::from_oid_content(
                MARBLE_TYPE_EXTENSION_OID,
                vec![0xff, 0xfe],
            )];
        });
        assert_eq!(
            check(&ca, &binary).unwrap_err(),
            MarbleAuthError::MarbleTypeNotText
        );
    }

    #[test]
    fn refuses_wrong_usages_ca_certificates_and_garbage() {
        let ca = ca();
        let client_only = leaf(&ca, |p| {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        });
        assert!(untrusted(check(&ca, &client_only)).contains("extended key usage"));
        // Without the extension every usage is allowed, as in Go.
        let no_eku = leaf(&ca, |p| p.extended_key_usages.clear());
        check(&ca, &no_eku).unwrap();

        let root = ca.marble_root_certificate_der().to_vec();
        assert!(check(&ca, &root).is_err());
        assert!(untrusted(check(&ca, b"garbage")).starts_with("certificate does not parse"));
        assert_eq!(
            authenticate_marble(
                ca.marble_root_certificate_der(),
                None,
                OffsetDateTime::now_utc()
            )
            .unwrap_err(),
            MarbleAuthError::NoCertificate
        );
    }
}
