//! The certificate and key a Marble receives at activation.
//!
//! MarbleRun's profile: the Coordinator generates a new P-384 key pair itself (the CSR's key
//! is ignored; its self-signature must still verify). The subject is the CSR's with the CN
//! replaced by the Marble's UUID and the organisation removed; the SANs are the CSR's DNS
//! names and IP addresses. Key usage digitalSignature + keyAgreement, extended key usage
//! serverAuth + clientAuth, `cA=FALSE`, a random serial below 2^128, valid for ≈ 292 years,
//! issued by the Marble root with the intermediate key. A non-critical extension
//! `1.3.9903.2.1` carries the raw bytes of the Marble type (not DER-wrapped) in its
//! `extnValue`; the Coordinator recognises Marbles by it and the UUID in the CN.

use std::fmt;

use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use zeroize::Zeroizing;

use crate::ca::{certificate_pem, far_future, ip_from_bytes, pem_lf, random_serial, whole_seconds};
use crate::secrets::canonical_uuid;
use crate::{CaKey, CoordinatorCa, Error, RandomSource};

/// OID of the extension that names the Marble type.
pub const MARBLE_TYPE_EXTENSION_OID: &[u64] = &[1, 3, 9903, 2, 1];

const OID_COMMON_NAME: &[u64] = &[2, 5, 4, 3];
const OID_ORGANIZATION: &[u64] = &[2, 5, 4, 10];

/// A Marble's certificate and private key.
pub struct MarbleCredentials {
    certificate: Vec<u8>,
    private_key: Zeroizing<Vec<u8>>,
}

impl MarbleCredentials {
    /// The certificate, DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate
    }

    /// The certificate, PEM.
    pub fn certificate_pem(&self) -> String {
        certificate_pem(&self.certificate)
    }

    /// The private key, PKCS#8 DER.
    pub fn private_key_pkcs8_der(&self) -> &[u8] {
        &self.private_key
    }

    /// The private key as PEM `PRIVATE KEY` (`MARBLE_PREDEFINED_PRIVATE_KEY`).
    pub fn private_key_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(pem_lf("PRIVATE KEY", &self.private_key))
    }
}

impl fmt::Debug for MarbleCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MarbleCredentials")
    }
}

impl CoordinatorCa {
    /// Issues a Marble's certificate and key from its CSR (DER PKCS#10).
    ///
    /// `uuid` is the Marble's UUID; the nil UUID is refused.
    pub fn issue_marble_certificate(
        &self,
        csr_der: &[u8],
        marble_type: &str,
        uuid: &[u8; 16],
        now: OffsetDateTime,
        rng: &dyn RandomSource,
    ) -> Result<MarbleCredentials, Error> {
        if uuid == &[0u8; 16] {
            return Err(Error::InvalidCsr {
                reason: "the nil UUID is not a Marble identity".into(),
            });
        }
        let request = CsrContents::parse(csr_der)?;

        let key = CaKey::generate()?;
        let mut params = CertificateParams::default();
        let mut subject = request.subject;
        subject.push(DnType::CommonName, canonical_uuid(uuid));
        params.distinguished_name = subject;
        params.subject_alt_names = request.sans;
        params.serial_number = Some(random_serial(rng)?);
        params.not_before = whole_seconds(now);
        params.not_after = far_future(now);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyAgreement,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.custom_extensions = vec![CustomExtension::from_oid_content(
            MARBLE_TYPE_EXTENSION_OID,
            marble_type.as_bytes().to_vec(),
        )];

        let cert = params
            .signed_by(&key, self.marble_issuer())
            .map_err(|source| Error::CertificateBuild {
                what: format!("Marble {marble_type:?}"),
                source,
            })?;
        Ok(MarbleCredentials {
            certificate: cert.der().to_vec(),
            private_key: key.to_pkcs8_der()?,
        })
    }
}

/// What MarbleRun takes from a Marble's CSR.
struct CsrContents {
    subject: DistinguishedName,
    sans: Vec<SanType>,
}

impl CsrContents {
    fn parse(der: &[u8]) -> Result<Self, Error> {
        let invalid = |reason: String| Error::InvalidCsr { reason };
        let (rest, csr) = X509CertificationRequest::from_der(der)
            .map_err(|e| invalid(format!("not a PKCS#10 request: {e}")))?;
        if !rest.is_empty() {
            return Err(invalid(format!("{} trailing bytes", rest.len())));
        }
        csr.verify_signature()
            .map_err(|e| invalid(format!("self-signature does not verify: {e}")))?;

        let mut subject = DistinguishedName::new();
        for attribute in csr.certification_request_info.subject.iter_attributes() {
            let arcs: Vec<u64> = attribute
                .attr_type()
                .iter()
                .ok_or_else(|| invalid("subject attribute type has an oversized arc".into()))?
                .collect();
            if arcs == OID_COMMON_NAME || arcs == OID_ORGANIZATION {
                continue;
            }
            let value = attribute.as_str().map_err(|_| {
                invalid(format!(
                    "subject attribute {} is not a string",
                    attribute.attr_type()
                ))
            })?;
            subject.push(DnType::from_oid(&arcs), value);
        }

        let mut sans = Vec::new();
        for extension in csr.requested_extensions().into_iter().flatten() {
            let ParsedExtension::SubjectAlternativeName(san) = extension else {
                continue;
            };
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(dns) => {
                        let ia5 = (*dns)
                            .to_owned()
                            .try_into()
                            .map_err(|_| invalid(format!("DNS name {dns:?} is not ASCII")))?;
                        sans.push(SanType::DnsName(ia5));
                    }
                    GeneralName::IPAddress(bytes) => {
                        let ip = ip_from_bytes(bytes).ok_or_else(|| {
                            invalid(format!("IP address SAN of {} bytes", bytes.len()))
                        })?;
                        sans.push(SanType::IpAddress(ip));
                    }
                    _ => {}
                }
            }
        }
        Ok(Self { subject, sans })
    }
}
