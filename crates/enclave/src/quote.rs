//! SGX DCAP quotes: parsing and encoding.
//!
//! A [`Quote`] is an Intel SGX ECDSA quote of version 3 or 4, optionally preceded by the 16-byte
//! Open Enclave header (`u32` version 1, `u32` type 2 = remote SGX report, `u64` length of what
//! follows; all little-endian) that MarbleRun's Marbles and `/api/v2/quote` put in front of it.
//!
//! Layout (little-endian): a 48-byte [`Header`], the 384-byte [`ReportBody`] of the quoted
//! enclave, a `u32` signature-data length, and the signature data. In version 3 the signature
//! data is the ECDSA signature, the attestation key, the Quoting Enclave's report and its
//! signature, the QE authentication data and the certification data. In version 4 the ECDSA
//! signature and attestation key are followed by certification data of type 6, which wraps the
//! QE report, its signature, the QE authentication data and the inner certification data.
//!
//! The parser never panics and never reads past its input: every length is checked before use,
//! the whole input must be consumed, and inputs above [`MAX_QUOTE_SIZE`] are refused before
//! anything is read. [`Quote::encode`] writes the exact bytes a parse read, so parsing and
//! encoding round-trip.

use std::fmt;

/// The largest quote accepted, Open Enclave header included. Gramine returns at most 8 KiB;
/// version-4 quotes with a full certificate chain stay well below this.
pub const MAX_QUOTE_SIZE: usize = 64 * 1024;

/// Size of the quote header.
pub const HEADER_SIZE: usize = 48;

/// Size of an SGX report body.
pub const REPORT_BODY_SIZE: usize = 384;

/// Size of the Open Enclave header.
pub const OE_HEADER_SIZE: usize = 16;

/// Attestation key type 2: ECDSA over P-256.
pub const ATTESTATION_KEY_TYPE_ECDSA_P256: u16 = 2;

/// TEE type of an SGX quote.
pub const TEE_TYPE_SGX: u32 = 0;

/// TEE type of a TDX quote.
pub const TEE_TYPE_TDX: u32 = 0x81;

/// Intel's Quoting Enclave vendor ID.
pub const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];

/// Certification data type 5: the PCK certificate chain as concatenated PEM.
pub const CERT_TYPE_PCK_CHAIN: u16 = 5;

/// Certification data type 6: the QE report certification data of a version-4 quote.
pub const CERT_TYPE_QE_REPORT: u16 = 6;

/// Open Enclave header version.
const OE_HEADER_VERSION: u32 = 1;

/// Open Enclave report type for a remote SGX report (`OE_REPORT_TYPE_SGX_REMOTE`).
const OE_REPORT_TYPE_SGX_REMOTE: u32 = 2;

/// ATTRIBUTES.FLAGS bit: the enclave is initialised.
pub const FLAG_INITTED: u64 = 1 << 0;
/// ATTRIBUTES.FLAGS bit: the enclave runs in debug mode.
pub const FLAG_DEBUG: u64 = 1 << 1;
/// ATTRIBUTES.FLAGS bit: the enclave runs in 64-bit mode.
pub const FLAG_MODE64BIT: u64 = 1 << 2;
/// ATTRIBUTES.FLAGS bit: the enclave may get the provisioning key.
pub const FLAG_PROVISION_KEY: u64 = 1 << 4;
/// ATTRIBUTES.FLAGS bit: the enclave may get the EINITTOKEN key.
pub const FLAG_EINITTOKEN_KEY: u64 = 1 << 5;
/// ATTRIBUTES.FLAGS bit: Key Separation and Sharing is enabled (config id, family id, extended
/// product id are meaningful).
pub const FLAG_KSS: u64 = 1 << 7;

/// A quote that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuoteError {
    /// The input is empty.
    #[error("quote is empty")]
    Empty,
    /// The input is larger than [`MAX_QUOTE_SIZE`].
    #[error("quote of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The input's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The input ends inside a field.
    #[error(
        "quote truncated in {field} at offset {offset}: needs {needed} bytes, {available} left"
    )]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Where it starts.
        offset: usize,
        /// How many bytes it needs.
        needed: usize,
        /// How many bytes are left.
        available: usize,
    },
    /// The Open Enclave header is not one for a remote SGX report, or its length disagrees
    /// with the data that follows.
    #[error("invalid open enclave header: {0}")]
    OpenEnclaveHeader(String),
    /// The quote version is not 3 or 4.
    #[error("unsupported quote version {0} (expected 3 or 4)")]
    UnsupportedVersion(u16),
    /// The attestation key type is not ECDSA P-256.
    #[error("unsupported attestation key type {0} (expected 2, ECDSA P-256)")]
    UnsupportedAttestationKeyType(u16),
    /// The quote is not an SGX quote (TDX quotes have TEE type 0x81).
    #[error("unsupported tee type {0:#x} (expected 0, SGX)")]
    UnsupportedTeeType(u32),
    /// A length field disagrees with the data it describes.
    #[error("{field} declares {declared} bytes but its contents take {actual}")]
    LengthMismatch {
        /// The length field.
        field: &'static str,
        /// The declared length.
        declared: usize,
        /// The length actually used.
        actual: usize,
    },
    /// Bytes follow the end of the quote.
    #[error("{count} trailing bytes after the quote at offset {offset}")]
    TrailingBytes {
        /// How many.
        count: usize,
        /// Where the quote ended.
        offset: usize,
    },
    /// The certification data has a type this code cannot use for the asked purpose.
    #[error(
        "unsupported certification data type {0} (expected {CERT_TYPE_PCK_CHAIN}, pck certificate chain)"
    )]
    UnsupportedCertificationData(u16),
    /// The PCK certificate chain in the certification data is unusable.
    #[error("invalid pck certificate chain: {0}")]
    PckChain(String),
}

/// The 48-byte quote header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Header {
    /// Quote format version: 3 or 4.
    pub version: u16,
    /// Attestation key type: 2 (ECDSA P-256).
    pub attestation_key_type: u16,
    /// TEE type (reserved and zero in version 3): 0 for SGX.
    pub tee_type: u32,
    /// Security version of the Quoting Enclave.
    pub qe_svn: u16,
    /// Security version of the Provisioning Certification Enclave.
    pub pce_svn: u16,
    /// The Quoting Enclave vendor ([`INTEL_QE_VENDOR_ID`] for Intel's).
    pub qe_vendor_id: [u8; 16],
    /// Custom data of the quote generator (Intel's puts the QE identity hash prefix here).
    pub user_data: [u8; 20],
}

/// The enclave attributes: flags and the XSAVE feature request mask.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Attributes {
    /// ATTRIBUTES.FLAGS (`FLAG_*` bits).
    pub flags: u64,
    /// ATTRIBUTES.XFRM.
    pub xfrm: u64,
}

impl Attributes {
    /// Whether the DEBUG flag is set.
    pub fn is_debug(&self) -> bool {
        self.flags & FLAG_DEBUG != 0
    }

    /// Whether Key Separation and Sharing is enabled.
    pub fn is_kss(&self) -> bool {
        self.flags & FLAG_KSS != 0
    }
}

/// The 384-byte SGX report body (`sgx_report_body_t`), every field in order.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ReportBody {
    /// CPUSVN: the security version of the CPU (microcode and more).
    pub cpu_svn: [u8; 16],
    /// MISCSELECT: the extended features saved on an asynchronous exit.
    pub misc_select: u32,
    /// Reserved (zero on real hardware).
    pub reserved1: [u8; 12],
    /// ISVEXTPRODID: extended product id (KSS).
    pub isv_ext_prod_id: [u8; 16],
    /// ATTRIBUTES.
    pub attributes: Attributes,
    /// MRENCLAVE: the enclave measurement.
    pub mr_enclave: [u8; 32],
    /// Reserved.
    pub reserved2: [u8; 32],
    /// MRSIGNER: SHA-256 of the signer's public key modulus.
    pub mr_signer: [u8; 32],
    /// Reserved.
    pub reserved3: [u8; 32],
    /// CONFIGID: configuration id set at launch (KSS).
    pub config_id: [u8; 64],
    /// ISVPRODID: the product id.
    pub isv_prod_id: u16,
    /// ISVSVN: the enclave's security version.
    pub isv_svn: u16,
    /// CONFIGSVN: security version of the configuration (KSS).
    pub config_svn: u16,
    /// Reserved.
    pub reserved4: [u8; 42],
    /// ISVFAMILYID: product family id (KSS).
    pub isv_family_id: [u8; 16],
    /// REPORTDATA: the 64 bytes the enclave bound into the report.
    pub report_data: [u8; 64],
}

impl Default for ReportBody {
    fn default() -> Self {
        Self {
            cpu_svn: [0; 16],
            misc_select: 0,
            reserved1: [0; 12],
            isv_ext_prod_id: [0; 16],
            attributes: Attributes::default(),
            mr_enclave: [0; 32],
            reserved2: [0; 32],
            mr_signer: [0; 32],
            reserved3: [0; 32],
            config_id: [0; 64],
            isv_prod_id: 0,
            isv_svn: 0,
            config_svn: 0,
            reserved4: [0; 42],
            isv_family_id: [0; 16],
            report_data: [0; 64],
        }
    }
}

impl fmt::Debug for ReportBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReportBody")
            .field("cpu_svn", &hex::encode(self.cpu_svn))
            .field("misc_select", &format_args!("{:#010x}", self.misc_select))
            .field("attributes", &self.attributes)
            .field("mr_enclave", &hex::encode(self.mr_enclave))
            .field("mr_signer", &hex::encode(self.mr_signer))
            .field("isv_prod_id", &self.isv_prod_id)
            .field("isv_svn", &self.isv_svn)
            .field("config_svn", &self.config_svn)
            .field("config_id", &hex::encode(self.config_id))
            .field("isv_ext_prod_id", &hex::encode(self.isv_ext_prod_id))
            .field("isv_family_id", &hex::encode(self.isv_family_id))
            .field("report_data", &hex::encode(self.report_data))
            .finish_non_exhaustive()
    }
}

impl ReportBody {
    /// Reads a report body from exactly [`REPORT_BODY_SIZE`] bytes.
    pub fn from_bytes(bytes: &[u8; REPORT_BODY_SIZE]) -> Self {
        let mut r = Reader::new(bytes, 0);
        // Cannot fail: the reader is over exactly REPORT_BODY_SIZE bytes and the fields below
        // add up to that size; `read_body` is shared with the quote parser.
        read_body(&mut r, "report body").unwrap_or_default()
    }

    /// The 384 bytes of this report body.
    pub fn to_bytes(&self) -> [u8; REPORT_BODY_SIZE] {
        let mut out = Vec::with_capacity(REPORT_BODY_SIZE);
        write_body(&mut out, self);
        let mut bytes = [0u8; REPORT_BODY_SIZE];
        bytes.copy_from_slice(&out);
        bytes
    }

    /// The identity policies are written against.
    pub fn identity(&self) -> crate::Identity {
        crate::Identity {
            mrenclave: self.mr_enclave,
            mrsigner: self.mr_signer,
            isv_prod_id: self.isv_prod_id,
            isv_svn: self.isv_svn,
            debug: self.attributes.is_debug(),
        }
    }
}

/// Certification data: how a verifier finds the PCK certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertificationData {
    /// The type: 5 is a PEM PCK certificate chain; 2 and 3 an encrypted PPID; 4 a single PCK
    /// certificate.
    pub cert_type: u16,
    /// The data, uninterpreted.
    pub data: Vec<u8>,
}

/// The signature data of a quote, in the same form for versions 3 and 4.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Signature {
    /// ECDSA P-256 signature (`r‖s`) over header and report body by the attestation key.
    pub ecdsa_signature: [u8; 64],
    /// The attestation public key (`x‖y`).
    pub attestation_key: [u8; 64],
    /// The Quoting Enclave's report; its report data binds the attestation key.
    pub qe_report: ReportBody,
    /// ECDSA signature of the QE report by the PCK.
    pub qe_report_signature: [u8; 64],
    /// QE authentication data.
    pub qe_auth_data: Vec<u8>,
    /// The (inner, for version 4) certification data.
    pub certification_data: CertificationData,
}

/// A parsed SGX DCAP quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// Whether the input carried the Open Enclave header.
    pub open_enclave_header: bool,
    /// The header.
    pub header: Header,
    /// The quoted enclave's report body.
    pub report_body: ReportBody,
    /// The signature data.
    pub signature: Signature,
}

/// The PCK certificate authority that issued a PCK certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PckCa {
    /// "Intel SGX PCK Processor CA".
    Processor,
    /// "Intel SGX PCK Platform CA".
    Platform,
}

impl PckCa {
    /// The value of the PCCS `ca` query parameter: `processor` or `platform`.
    pub fn as_str(self) -> &'static str {
        match self {
            PckCa::Processor => "processor",
            PckCa::Platform => "platform",
        }
    }
}

impl fmt::Display for PckCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The PCK certificate chain carried in a quote: leaf first, root last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PckChain {
    pem: String,
    certs: Vec<Vec<u8>>,
}

impl PckChain {
    /// The chain as PEM text (trailing NUL bytes removed).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The certificates in DER, leaf first.
    pub fn certificates(&self) -> &[Vec<u8>] {
        &self.certs
    }

    /// The PCK leaf certificate in DER.
    pub fn leaf(&self) -> &[u8] {
        // Cannot be empty: `Quote::pck_chain` refuses a chain without certificates.
        self.certs.first().map(Vec::as_slice).unwrap_or_default()
    }

    /// The FMSPC (family, model, stepping, platform type, customised SKU) from the leaf's SGX
    /// extension (OID 1.2.840.113741.1.13.1.4).
    pub fn fmspc(&self) -> Result<[u8; 6], QuoteError> {
        dcap_qvl::intel::parse_pck_extension(self.leaf())
            .map(|ext| ext.fmspc)
            .map_err(|e| QuoteError::PckChain(format!("pck certificate sgx extension: {e:#}")))
    }

    /// The CA that issued the leaf, from the issuer's common name.
    pub fn ca(&self) -> Result<PckCa, QuoteError> {
        let (_, cert) = x509_parser::parse_x509_certificate(self.leaf())
            .map_err(|e| QuoteError::PckChain(format!("pck certificate: {e}")))?;
        let issuer_cn = cert
            .issuer()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default();
        match issuer_cn {
            "Intel SGX PCK Processor CA" => Ok(PckCa::Processor),
            "Intel SGX PCK Platform CA" => Ok(PckCa::Platform),
            other => Err(QuoteError::PckChain(format!(
                "pck certificate issuer {other:?} is neither the processor nor the platform ca"
            ))),
        }
    }
}

impl Quote {
    /// Parses a quote, with or without the Open Enclave header.
    pub fn parse(input: &[u8]) -> Result<Self, QuoteError> {
        if input.is_empty() {
            return Err(QuoteError::Empty);
        }
        if input.len() > MAX_QUOTE_SIZE {
            return Err(QuoteError::TooLarge {
                len: input.len(),
                max: MAX_QUOTE_SIZE,
            });
        }

        let (open_enclave_header, body, base) = strip_open_enclave_header(input)?;
        let mut r = Reader::new(body, base);
        let header = read_header(&mut r)?;
        let report_body = read_body(&mut r, "report body")?;
        let signature = read_signature(&mut r, header.version)?;
        if !r.rest().is_empty() {
            return Err(QuoteError::TrailingBytes {
                count: r.rest().len(),
                offset: r.offset(),
            });
        }

        Ok(Quote {
            open_enclave_header,
            header,
            report_body,
            signature,
        })
    }

    /// The DCAP quote bytes, without the Open Enclave header (what verifiers take).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1024 + self.signature.certification_data.data.len());
        write_header(&mut out, &self.header);
        write_body(&mut out, &self.report_body);
        let sig = encode_signature(&self.signature, self.header.version);
        put_u32(&mut out, sig.len());
        out.extend_from_slice(&sig);
        out
    }

    /// The PCK certificate chain of a quote with certification data type 5.
    pub fn pck_chain(&self) -> Result<PckChain, QuoteError> {
        let cert = &self.signature.certification_data;
        if cert.cert_type != CERT_TYPE_PCK_CHAIN {
            return Err(QuoteError::UnsupportedCertificationData(cert.cert_type));
        }
        let end = cert.data.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        let pem = std::str::from_utf8(&cert.data[..end])
            .map_err(|e| QuoteError::PckChain(format!("not utf-8 text: {e}")))?;
        let blocks = pem::parse_many(pem).map_err(|e| QuoteError::PckChain(format!("pem: {e}")))?;
        if blocks.is_empty() {
            return Err(QuoteError::PckChain("no certificate in the chain".into()));
        }
        if let Some(other) = blocks.iter().find(|b| b.tag() != "CERTIFICATE") {
            return Err(QuoteError::PckChain(format!(
                "unexpected pem block {:?}",
                other.tag()
            )));
        }
        let certs = blocks.into_iter().map(pem::Pem::into_contents).collect();
        Ok(PckChain {
            pem: pem.to_owned(),
            certs,
        })
    }
}

/// Prefixes an SGX quote with the 16-byte Open Enclave header, as MarbleRun's `/quote` endpoint
/// and its Marbles send quotes.
pub fn with_open_enclave_header(quote: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(OE_HEADER_SIZE + quote.len());
    out.extend_from_slice(&OE_HEADER_VERSION.to_le_bytes());
    out.extend_from_slice(&OE_REPORT_TYPE_SGX_REMOTE.to_le_bytes());
    out.extend_from_slice(&(quote.len() as u64).to_le_bytes());
    out.extend_from_slice(quote);
    out
}

/// Splits off the Open Enclave header if there is one. A raw quote starts with its `u16`
/// version (3 or 4) and key type 2, so its first `u32` is never 1, the OE header version.
fn strip_open_enclave_header(input: &[u8]) -> Result<(bool, &[u8], usize), QuoteError> {
    let mut r = Reader::new(input, 0);
    if r.rest().len() < 4 || r.rest()[..4] != OE_HEADER_VERSION.to_le_bytes() {
        return Ok((false, input, 0));
    }
    r.u32("open enclave header version")?;
    let report_type = r.u32("open enclave header type")?;
    let length = r.u64("open enclave header length")?;
    if report_type != OE_REPORT_TYPE_SGX_REMOTE {
        return Err(QuoteError::OpenEnclaveHeader(format!(
            "report type {report_type} (expected {OE_REPORT_TYPE_SGX_REMOTE}, remote sgx)"
        )));
    }
    let rest = r.rest();
    if length != rest.len() as u64 {
        return Err(QuoteError::OpenEnclaveHeader(format!(
            "declares {length} bytes of quote but {} follow",
            rest.len()
        )));
    }
    Ok((true, rest, OE_HEADER_SIZE))
}

fn read_header(r: &mut Reader<'_>) -> Result<Header, QuoteError> {
    let version = r.u16("header version")?;
    if version != 3 && version != 4 {
        return Err(QuoteError::UnsupportedVersion(version));
    }
    let attestation_key_type = r.u16("header attestation key type")?;
    if attestation_key_type != ATTESTATION_KEY_TYPE_ECDSA_P256 {
        return Err(QuoteError::UnsupportedAttestationKeyType(
            attestation_key_type,
        ));
    }
    let tee_type = r.u32("header tee type")?;
    if tee_type != TEE_TYPE_SGX {
        return Err(QuoteError::UnsupportedTeeType(tee_type));
    }
    Ok(Header {
        version,
        attestation_key_type,
        tee_type,
        qe_svn: r.u16("header qe svn")?,
        pce_svn: r.u16("header pce svn")?,
        qe_vendor_id: r.array("header qe vendor id")?,
        user_data: r.array("header user data")?,
    })
}

fn read_body(r: &mut Reader<'_>, field: &'static str) -> Result<ReportBody, QuoteError> {
    // Check the whole body up front so a truncation names the body, not one of its fields.
    r.ensure(REPORT_BODY_SIZE, field)?;
    Ok(ReportBody {
        cpu_svn: r.array(field)?,
        misc_select: r.u32(field)?,
        reserved1: r.array(field)?,
        isv_ext_prod_id: r.array(field)?,
        attributes: Attributes {
            flags: r.u64(field)?,
            xfrm: r.u64(field)?,
        },
        mr_enclave: r.array(field)?,
        reserved2: r.array(field)?,
        mr_signer: r.array(field)?,
        reserved3: r.array(field)?,
        config_id: r.array(field)?,
        isv_prod_id: r.u16(field)?,
        isv_svn: r.u16(field)?,
        config_svn: r.u16(field)?,
        reserved4: r.array(field)?,
        isv_family_id: r.array(field)?,
        report_data: r.array(field)?,
    })
}

fn read_signature(r: &mut Reader<'_>, version: u16) -> Result<Signature, QuoteError> {
    let declared = r.u32("signature data length")? as usize;
    let start = r.offset();
    let data = r.take(declared, "signature data")?;
    let mut s = Reader::new(data, start);

    let ecdsa_signature = s.array("quote signature")?;
    let attestation_key = s.array("attestation key")?;
    let sig = if version == 3 {
        read_qe_part(&mut s, ecdsa_signature, attestation_key)?
    } else {
        let outer_type = s.u16("certification data type")?;
        if outer_type != CERT_TYPE_QE_REPORT {
            return Err(QuoteError::UnsupportedCertificationData(outer_type));
        }
        let outer_len = s.u32("certification data size")? as usize;
        let outer_start = s.offset();
        let outer = s.take(outer_len, "qe report certification data")?;
        let mut inner = Reader::new(outer, outer_start);
        let sig = read_qe_part(&mut inner, ecdsa_signature, attestation_key)?;
        if !inner.rest().is_empty() {
            return Err(QuoteError::LengthMismatch {
                field: "qe report certification data size",
                declared: outer_len,
                actual: outer_len - inner.rest().len(),
            });
        }
        sig
    };
    if !s.rest().is_empty() {
        return Err(QuoteError::LengthMismatch {
            field: "signature data length",
            declared,
            actual: declared - s.rest().len(),
        });
    }
    Ok(sig)
}

fn read_qe_part(
    r: &mut Reader<'_>,
    ecdsa_signature: [u8; 64],
    attestation_key: [u8; 64],
) -> Result<Signature, QuoteError> {
    let qe_report = read_body(r, "qe report")?;
    let qe_report_signature = r.array("qe report signature")?;
    let auth_len = r.u16("qe authentication data length")? as usize;
    let qe_auth_data = r.take(auth_len, "qe authentication data")?.to_vec();
    let cert_type = r.u16("certification data type")?;
    let cert_len = r.u32("certification data size")? as usize;
    let data = r.take(cert_len, "certification data")?.to_vec();
    Ok(Signature {
        ecdsa_signature,
        attestation_key,
        qe_report,
        qe_report_signature,
        qe_auth_data,
        certification_data: CertificationData { cert_type, data },
    })
}

fn write_header(out: &mut Vec<u8>, h: &Header) {
    out.extend_from_slice(&h.version.to_le_bytes());
    out.extend_from_slice(&h.attestation_key_type.to_le_bytes());
    out.extend_from_slice(&h.tee_type.to_le_bytes());
    out.extend_from_slice(&h.qe_svn.to_le_bytes());
    out.extend_from_slice(&h.pce_svn.to_le_bytes());
    out.extend_from_slice(&h.qe_vendor_id);
    out.extend_from_slice(&h.user_data);
}

fn write_body(out: &mut Vec<u8>, b: &ReportBody) {
    out.extend_from_slice(&b.cpu_svn);
    out.extend_from_slice(&b.misc_select.to_le_bytes());
    out.extend_from_slice(&b.reserved1);
    out.extend_from_slice(&b.isv_ext_prod_id);
    out.extend_from_slice(&b.attributes.flags.to_le_bytes());
    out.extend_from_slice(&b.attributes.xfrm.to_le_bytes());
    out.extend_from_slice(&b.mr_enclave);
    out.extend_from_slice(&b.reserved2);
    out.extend_from_slice(&b.mr_signer);
    out.extend_from_slice(&b.reserved3);
    out.extend_from_slice(&b.config_id);
    out.extend_from_slice(&b.isv_prod_id.to_le_bytes());
    out.extend_from_slice(&b.isv_svn.to_le_bytes());
    out.extend_from_slice(&b.config_svn.to_le_bytes());
    out.extend_from_slice(&b.reserved4);
    out.extend_from_slice(&b.isv_family_id);
    out.extend_from_slice(&b.report_data);
}

fn encode_signature(s: &Signature, version: u16) -> Vec<u8> {
    let mut qe = Vec::new();
    write_body(&mut qe, &s.qe_report);
    qe.extend_from_slice(&s.qe_report_signature);
    put_u16(&mut qe, s.qe_auth_data.len());
    qe.extend_from_slice(&s.qe_auth_data);
    put_u16(&mut qe, s.certification_data.cert_type as usize);
    put_u32(&mut qe, s.certification_data.data.len());
    qe.extend_from_slice(&s.certification_data.data);

    let mut out = Vec::with_capacity(128 + 6 + qe.len());
    out.extend_from_slice(&s.ecdsa_signature);
    out.extend_from_slice(&s.attestation_key);
    if version == 3 {
        out.extend_from_slice(&qe);
    } else {
        put_u16(&mut out, CERT_TYPE_QE_REPORT as usize);
        put_u32(&mut out, qe.len());
        out.extend_from_slice(&qe);
    }
    out
}

/// Writes a length as `u16`. Lengths come from parsed quotes or from values Quarry builds,
/// which are far below the limit; saturating keeps a misuse from wrapping silently.
fn put_u16(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u16::try_from(n).unwrap_or(u16::MAX).to_le_bytes());
}

/// Writes a length as `u32` (see [`put_u16`]).
fn put_u32(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

/// A bounds-checked little-endian reader that knows its absolute offset for error messages.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], base: usize) -> Self {
        Self { buf, pos: 0, base }
    }

    fn offset(&self) -> usize {
        self.base + self.pos
    }

    fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    fn ensure(&self, needed: usize, field: &'static str) -> Result<(), QuoteError> {
        let available = self.buf.len() - self.pos;
        if needed > available {
            return Err(QuoteError::Truncated {
                field,
                offset: self.offset(),
                needed,
                available,
            });
        }
        Ok(())
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], QuoteError> {
        self.ensure(n, field)?;
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], QuoteError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, QuoteError> {
        self.array(field).map(u16::from_le_bytes)
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, QuoteError> {
        self.array(field).map(u32::from_le_bytes)
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, QuoteError> {
        self.array(field).map(u64::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_v3() -> Quote {
        let mut report_data = [0; 64];
        report_data[..4].copy_from_slice(b"abcd");
        let body = ReportBody {
            mr_enclave: [0x11; 32],
            mr_signer: [0x22; 32],
            isv_prod_id: 7,
            isv_svn: 9,
            attributes: Attributes {
                flags: FLAG_INITTED | FLAG_MODE64BIT,
                xfrm: 3,
            },
            report_data,
            ..ReportBody::default()
        };
        Quote {
            open_enclave_header: false,
            header: Header {
                version: 3,
                attestation_key_type: 2,
                tee_type: 0,
                qe_svn: 8,
                pce_svn: 13,
                qe_vendor_id: INTEL_QE_VENDOR_ID,
                user_data: [0; 20],
            },
            report_body: body,
            signature: Signature {
                ecdsa_signature: [1; 64],
                attestation_key: [2; 64],
                qe_report: ReportBody::default(),
                qe_report_signature: [3; 64],
                qe_auth_data: vec![4; 32],
                certification_data: CertificationData {
                    cert_type: 5,
                    data: b"x".to_vec(),
                },
            },
        }
    }

    #[test]
    fn report_body_offsets_match_the_quote_layout() {
        let bytes = sample_v3().encode();
        assert_eq!(&bytes[112..144], &[0x11; 32]);
        assert_eq!(&bytes[176..208], &[0x22; 32]);
        assert_eq!(u16::from_le_bytes([bytes[304], bytes[305]]), 7);
        assert_eq!(u16::from_le_bytes([bytes[306], bytes[307]]), 9);
        assert_eq!(&bytes[368..372], b"abcd");
        assert_eq!(bytes[96], 0x05);
    }

    #[test]
    fn round_trips_v3_and_v4() {
        for version in [3, 4] {
            let mut q = sample_v3();
            q.header.version = version;
            let bytes = q.encode();
            assert_eq!(Quote::parse(&bytes).unwrap(), q);
        }
    }

    #[test]
    fn v4_nests_the_qe_report_in_type_6() {
        let mut q = sample_v3();
        q.header.version = 4;
        let bytes = q.encode();
        let at = HEADER_SIZE + REPORT_BODY_SIZE + 4 + 128;
        assert_eq!(
            u16::from_le_bytes([bytes[at], bytes[at + 1]]),
            CERT_TYPE_QE_REPORT
        );
    }

    #[test]
    fn accepts_the_open_enclave_header_and_rejects_a_wrong_length() {
        let raw = sample_v3().encode();
        let wrapped = with_open_enclave_header(&raw);
        let q = Quote::parse(&wrapped).unwrap();
        assert!(q.open_enclave_header);
        assert_eq!(q.encode(), raw);

        let mut bad = wrapped.clone();
        bad.push(0);
        assert!(matches!(
            Quote::parse(&bad),
            Err(QuoteError::OpenEnclaveHeader(_))
        ));
        let mut bad_type = wrapped;
        bad_type[4] = 1;
        assert!(matches!(
            Quote::parse(&bad_type),
            Err(QuoteError::OpenEnclaveHeader(_))
        ));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let raw = sample_v3().encode();
        for len in 1..raw.len() {
            let err = Quote::parse(&raw[..len]).unwrap_err();
            assert!(
                matches!(
                    err,
                    QuoteError::Truncated { .. } | QuoteError::LengthMismatch { .. }
                ),
                "{len}: {err}"
            );
        }
    }

    #[test]
    fn names_wrong_version_key_type_and_tee() {
        let raw = sample_v3().encode();
        let mut v = raw.clone();
        v[0] = 5;
        assert_eq!(Quote::parse(&v), Err(QuoteError::UnsupportedVersion(5)));
        let mut k = raw.clone();
        k[2] = 3;
        assert_eq!(
            Quote::parse(&k),
            Err(QuoteError::UnsupportedAttestationKeyType(3))
        );
        let mut t = raw.clone();
        t[4] = 0x81;
        assert_eq!(Quote::parse(&t), Err(QuoteError::UnsupportedTeeType(0x81)));
        let mut trailing = raw;
        trailing.push(0);
        assert!(matches!(
            Quote::parse(&trailing),
            Err(QuoteError::TrailingBytes { count: 1, .. })
        ));
    }

    #[test]
    fn refuses_empty_and_oversized_input() {
        assert_eq!(Quote::parse(&[]), Err(QuoteError::Empty));
        let big = vec![0u8; MAX_QUOTE_SIZE + 1];
        assert!(matches!(
            Quote::parse(&big),
            Err(QuoteError::TooLarge { .. })
        ));
    }

    #[test]
    fn declared_lengths_must_match() {
        let mut raw = sample_v3().encode();
        // Grow the signature data by one byte and declare it: the contents no longer fill it.
        raw.push(0);
        let at = HEADER_SIZE + REPORT_BODY_SIZE;
        let len = u32::from_le_bytes(raw[at..at + 4].try_into().unwrap()) + 1;
        raw[at..at + 4].copy_from_slice(&len.to_le_bytes());
        assert!(matches!(
            Quote::parse(&raw),
            Err(QuoteError::LengthMismatch { .. })
        ));
    }

    #[test]
    fn pck_chain_needs_type_5_and_pem() {
        let mut q = sample_v3();
        assert!(matches!(q.pck_chain(), Err(QuoteError::PckChain(_))));
        q.signature.certification_data.cert_type = 3;
        assert_eq!(
            q.pck_chain(),
            Err(QuoteError::UnsupportedCertificationData(3))
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_garbage(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
            let _ = Quote::parse(&bytes);
        }

        #[test]
        fn parsed_quotes_re_encode_to_their_bytes(cut in 0usize..64, flip in 0usize..1100) {
            let mut raw = sample_v3().encode();
            let at = flip % raw.len();
            raw[at] ^= 0x5a;
            let raw = &raw[..raw.len() - cut.min(raw.len() - 1)];
            if let Ok(q) = Quote::parse(raw) {
                proptest::prop_assert_eq!(q.encode(), raw.to_vec());
            }
        }
    }
}
