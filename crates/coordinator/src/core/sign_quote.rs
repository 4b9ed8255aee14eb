//! Verifying SGX quotes for others and signing the result (`POST /api/v2/sign-quote`, feature
//! gate `SignQuoteEndpoint`): a party that trusts the Coordinator's root certificate can learn
//! that a quote verified, and with which TCB status, without verifying it itself.
//!
//! Steps, as MarbleRun takes them:
//! 1. An input that looks like a raw SGX quote (at least 48 bytes; `u16` version 3; attestation
//!    key type at most 3; `u32` TEE type 0; QE SVN and PCE SVN above 0, all little-endian) gets
//!    the 16-byte Open Enclave header in front; any other input must already carry that header.
//! 2. Full DCAP verification with the Coordinator's collateral (`QUARRY_PCCS_URL` or
//!    `QUARRY_COLLATERAL_FILE`, the same source as the Marble API's): PCK chain to Intel's
//!    root, CRLs, TCB info, QE identity, QE report and quote signature, at the clock's time.
//!    The manifest's packages are not consulted, and debug enclaves are not refused (the
//!    verifying party sees the debug flag in the quote). A TCB level that is not up to date is
//!    accepted and reported in the status; a revoked platform fails verification.
//! 3. The answer is the TCB status and an ECDSA P-384 signature (DER) by the root key over
//!    SHA-256(base64 of the quote bytes as sent `||` the status string).
//!
//! Quarry differs in one place on purpose: a quote is never signed unverified. In simulation
//! mode the Coordinator still verifies every quote with DCAP (it skips the signature checks only
//! for its own Marbles), so a simulated quote — all-zero signature and attestation key — is
//! refused with an error that says so, and without collateral nothing is signed at all.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use quarry_enclave::pccs::CollateralSource;
use quarry_enclave::quote::{OE_HEADER_SIZE, Quote, QuoteError, with_open_enclave_header};
use quarry_enclave::verify::{TcbStatus, Verifier, VerifyError};
use quarry_pki::CoordinatorCa;

use super::error_chain;

/// The TCB status strings of the answer, exactly as MarbleRun's (EGo's) names them.
pub const TCB_STATUS_NAMES: [&str; 8] = [
    "UpToDate",
    "OutOfDate",
    "Revoked",
    "ConfigurationNeeded",
    "OutOfDateConfigurationNeeded",
    "SWHardeningNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "Unknown",
];

/// Why a quote was not signed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignQuoteError {
    /// The input is neither a raw SGX quote nor one with the Open Enclave header.
    #[error("not an sgx quote: it has no open enclave header, and as a raw quote {reason}")]
    NotAQuote {
        /// Which part of the raw-quote check failed.
        reason: String,
    },
    /// The quote does not parse.
    #[error("invalid quote: {0}")]
    Quote(#[from] QuoteError),
    /// The quote is a simulated one, which no verifier can accept.
    #[error(
        "the quote has an all-zero signature and attestation key (a simulated quote); \
         sign-quote verifies every quote with dcap, also in simulation mode"
    )]
    Simulated,
    /// The Coordinator has no collateral source.
    #[error(
        "no dcap collateral configured: set QUARRY_PCCS_URL or QUARRY_COLLATERAL_FILE on the \
         coordinator"
    )]
    NoCollateral,
    /// The collateral source is misconfigured.
    #[error("dcap collateral configuration: {0}")]
    Config(String),
    /// Collateral could not be fetched for the quote's platform.
    #[error("fetching dcap collateral: {0}")]
    Collateral(String),
    /// DCAP verification failed.
    #[error("{}", error_chain(.0))]
    Verify(#[from] VerifyError),
    /// Signing failed.
    #[error("signing the result")]
    Sign(#[source] quarry_pki::Error),
    /// The verification task failed.
    #[error("verification task: {0}")]
    Task(String),
}

impl SignQuoteError {
    /// Whether the error is about the quote (`400 fail`, "quote verification failed") rather
    /// than about the Coordinator (`500 error`).
    pub fn is_quote_failure(&self) -> bool {
        !matches!(
            self,
            Self::NoCollateral | Self::Config(_) | Self::Sign(_) | Self::Task(_)
        )
    }
}

/// A verified quote's TCB status and the root key's signature over it.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedQuote {
    /// One of [`TCB_STATUS_NAMES`].
    pub tcb_status: &'static str,
    /// ECDSA P-384 DER signature over SHA-256(base64(quote) || tcb_status).
    pub signature: Vec<u8>,
}

impl fmt::Debug for SignedQuote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedQuote")
            .field("tcb_status", &self.tcb_status)
            .finish_non_exhaustive()
    }
}

/// The verifier and collateral source of `sign-quote`.
#[derive(Debug, Clone)]
pub struct QuoteSigner {
    collateral: Option<CollateralSource>,
    verifier: Verifier,
}

impl QuoteSigner {
    /// A signer with an explicit collateral source and verifier (tests set the clock here).
    pub fn new(collateral: Option<CollateralSource>, verifier: Verifier) -> Self {
        Self {
            collateral,
            verifier: verifier.allow_debug(true),
        }
    }

    /// The signer with the collateral source `env` describes, as the Marble API reads it:
    /// `QUARRY_PCCS_URL` (with `QUARRY_PCCS_CA_FILE`, cached in `seal_dir/pccs-cache`), else
    /// `QUARRY_COLLATERAL_FILE`, else none.
    pub fn from_env(
        seal_dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, SignQuoteError> {
        let config = |e: &dyn std::error::Error| SignQuoteError::Config(error_chain(e));
        let collateral = CollateralSource::from_env(env, &seal_dir.join("pccs-cache"))
            .map_err(|e| config(&e))?;
        Ok(Self::new(collateral, Verifier::default()))
    }

    /// Verifies `quote` (the bytes as sent) and signs the result with `ca`'s root key.
    pub async fn sign(
        &self,
        ca: Arc<CoordinatorCa>,
        quote: Vec<u8>,
    ) -> Result<SignedQuote, SignQuoteError> {
        let headed = open_enclave_form(&quote)?;
        let parsed = Quote::parse(&headed)?;
        if !parsed.open_enclave_header {
            // Only reachable for inputs the raw-quote check refused and the parser read raw.
            return Err(SignQuoteError::NotAQuote {
                reason: raw_quote_mismatch(&quote).unwrap_or_default(),
            });
        }
        if parsed.signature.ecdsa_signature == [0; 64]
            && parsed.signature.attestation_key == [0; 64]
        {
            return Err(SignQuoteError::Simulated);
        }
        let source = self
            .collateral
            .as_ref()
            .ok_or(SignQuoteError::NoCollateral)?;
        let collateral = source
            .collateral_for(&parsed)
            .await
            .map_err(|e| SignQuoteError::Collateral(error_chain(&e)))?;

        let verifier = self.verifier.clone();
        tokio::task::spawn_blocking(move || {
            let verified = verifier.verify(&headed, &collateral)?;
            let tcb_status = tcb_status_name(verified.tcb_status);
            let signature = ca
                .root_key()
                .sign_sha256(&signed_message(&quote, tcb_status))
                .map_err(SignQuoteError::Sign)?;
            Ok(SignedQuote {
                tcb_status,
                signature,
            })
        })
        .await
        .map_err(|e| SignQuoteError::Task(e.to_string()))?
    }
}

/// The message the root key signs: base64 (standard, padded) of the quote bytes as sent,
/// followed by the TCB status string.
pub fn signed_message(quote: &[u8], tcb_status: &str) -> Vec<u8> {
    let mut message = base64::engine::general_purpose::STANDARD
        .encode(quote)
        .into_bytes();
    message.extend_from_slice(tcb_status.as_bytes());
    message
}

/// The answer's name of `status`; `Unknown` for a status this version does not know.
pub fn tcb_status_name(status: TcbStatus) -> &'static str {
    match status {
        TcbStatus::UpToDate => "UpToDate",
        TcbStatus::OutOfDate => "OutOfDate",
        TcbStatus::Revoked => "Revoked",
        TcbStatus::ConfigurationNeeded => "ConfigurationNeeded",
        TcbStatus::OutOfDateConfigurationNeeded => "OutOfDateConfigurationNeeded",
        TcbStatus::SWHardeningNeeded => "SWHardeningNeeded",
        TcbStatus::ConfigurationAndSWHardeningNeeded => "ConfigurationAndSWHardeningNeeded",
        _ => "Unknown",
    }
}

/// The input with the Open Enclave header: added when the input looks like a raw SGX quote,
/// otherwise the input as it is, which must then start with the header.
fn open_enclave_form(input: &[u8]) -> Result<Vec<u8>, SignQuoteError> {
    match raw_quote_mismatch(input) {
        None => Ok(with_open_enclave_header(input)),
        Some(reason) if !starts_with_open_enclave_header(input) => {
            Err(SignQuoteError::NotAQuote { reason })
        }
        Some(_) => Ok(input.to_vec()),
    }
}

/// MarbleRun's raw-SGX-quote check: `None` when `input` passes, else which part failed.
fn raw_quote_mismatch(input: &[u8]) -> Option<String> {
    if input.len() < 48 {
        return Some(format!("it is {} bytes long, less than 48", input.len()));
    }
    let u16_at = |at: usize| u16::from_le_bytes([input[at], input[at + 1]]);
    let version = u16_at(0);
    let key_type = u16_at(2);
    let tee_type = u32::from_le_bytes([input[4], input[5], input[6], input[7]]);
    let (qe_svn, pce_svn) = (u16_at(8), u16_at(10));
    if version != 3 {
        Some(format!("its version is {version}, not 3"))
    } else if key_type > 3 {
        Some(format!("its attestation key type is {key_type}, above 3"))
    } else if tee_type != 0 {
        Some(format!("its tee type is {tee_type:#x}, not 0 (sgx)"))
    } else if qe_svn == 0 {
        Some("its qe svn is 0".into())
    } else if pce_svn == 0 {
        Some("its pce svn is 0".into())
    } else {
        None
    }
}

/// Whether `input` starts like an Open Enclave header (`u32` version 1); the parser checks the
/// rest of it.
fn starts_with_open_enclave_header(input: &[u8]) -> bool {
    input.len() >= OE_HEADER_SIZE && input[..4] == 1u32.to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{ECDSA_P384_SHA256_ASN1, UnparsedPublicKey};
    use quarry_enclave::verify::FixedClock;
    use quarry_pki::{CaNames, SystemRandom};

    /// 2025-07-01T00:00:00Z, inside the test collateral's validity
    /// (2025-06-19T10:56:11Z..2025-07-19T10:01:18Z).
    const INSIDE_VALIDITY: i64 = 1_751_328_000;

    fn testdata(name: &str) -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/sgx")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn signer(now: i64) -> QuoteSigner {
        let collateral = quarry_enclave::collateral::Collateral::from_json(&testdata(
            "dcap-qvl-sample.collateral.json",
        ))
        .unwrap();
        QuoteSigner::new(
            Some(CollateralSource::Fixed(collateral)),
            Verifier::new(Arc::new(FixedClock(now))),
        )
    }

    fn ca() -> Arc<CoordinatorCa> {
        let names = CaNames::parse("localhost");
        let now = time::OffsetDateTime::now_utc();
        Arc::new(CoordinatorCa::generate(&names, now, &SystemRandom).unwrap())
    }

    fn verify(ca: &CoordinatorCa, message: &[u8], signature: &[u8]) -> bool {
        let point = ca.root_key().public_key_point().to_vec();
        UnparsedPublicKey::new(&ECDSA_P384_SHA256_ASN1, point)
            .verify(message, signature)
            .is_ok()
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[tokio::test]
    async fn signs_a_verified_raw_quote_over_the_references_message() {
        let ca = ca();
        let raw = testdata("dcap-qvl-sample.quote");
        let signed = signer(INSIDE_VALIDITY)
            .sign(Arc::clone(&ca), raw.clone())
            .await
            .unwrap();
        assert_eq!(signed.tcb_status, "ConfigurationAndSWHardeningNeeded");

        let message = format!("{}ConfigurationAndSWHardeningNeeded", b64(&raw));
        assert!(verify(&ca, message.as_bytes(), &signed.signature));
        // The signature binds the quote string and the status: anything else fails.
        let other_quote = format!("{}ConfigurationAndSWHardeningNeeded", b64(&raw[1..]));
        assert!(!verify(&ca, other_quote.as_bytes(), &signed.signature));
        let other_status = format!("{}UpToDate", b64(&raw));
        assert!(!verify(&ca, other_status.as_bytes(), &signed.signature));
        // And only the root key made it.
        assert!(!verify(&self::ca(), message.as_bytes(), &signed.signature));

        // The check the Client API documentation gives, with openssl.
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).display().to_string();
        std::fs::write(path("sig"), &signed.signature).unwrap();
        std::fs::write(path("message"), &message).unwrap();
        std::fs::write(path("root.pem"), ca.root_certificate_pem()).unwrap();
        let openssl = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        };
        let public = openssl(&["x509", "-in", &path("root.pem"), "-pubkey", "-noout"]);
        std::fs::write(path("root.pub"), public).unwrap();
        let verify_args = [
            "dgst",
            "-sha256",
            "-verify",
            &path("root.pub"),
            "-signature",
        ];
        openssl(&[&verify_args[..], &[&path("sig"), &path("message")]].concat());
    }

    #[tokio::test]
    async fn signs_an_open_enclave_quote_over_the_bytes_as_sent() {
        let ca = ca();
        let headed = with_open_enclave_header(&testdata("dcap-qvl-sample.quote"));
        let signed = signer(INSIDE_VALIDITY)
            .sign(Arc::clone(&ca), headed.clone())
            .await
            .unwrap();
        assert_eq!(signed.tcb_status, "ConfigurationAndSWHardeningNeeded");
        let message = signed_message(&headed, signed.tcb_status);
        assert_eq!(
            message,
            format!("{}{}", b64(&headed), signed.tcb_status).into_bytes()
        );
        assert!(verify(&ca, &message, &signed.signature));
    }

    #[tokio::test]
    async fn expired_collateral_names_the_part() {
        let err = signer(INSIDE_VALIDITY + 365 * 24 * 3600)
            .sign(ca(), testdata("dcap-qvl-sample.quote"))
            .await
            .unwrap_err();
        assert!(err.is_quote_failure());
        assert!(err.to_string().contains("collateral expired at"), "{err}");
    }

    #[tokio::test]
    async fn a_tampered_quote_fails_verification() {
        let mut raw = testdata("dcap-qvl-sample.quote");
        // A byte of the report data, covered by the quote signature.
        raw[48 + 320] ^= 1;
        let err = signer(INSIDE_VALIDITY).sign(ca(), raw).await.unwrap_err();
        assert!(matches!(err, SignQuoteError::Verify(_)), "{err}");
    }

    #[tokio::test]
    async fn simulated_and_garbage_quotes_and_missing_collateral_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sim = quarry_enclave::simulation::Simulation::new(
            quarry_enclave::simulation::SimulationSettings::new(dir.path()),
        )
        .unwrap();
        let simulated = quarry_enclave::Enclave::quote(&sim, &[0; 64]).unwrap();
        let err = signer(INSIDE_VALIDITY)
            .sign(ca(), with_open_enclave_header(&simulated))
            .await
            .unwrap_err();
        assert!(matches!(err, SignQuoteError::Simulated), "{err}");

        let err = signer(INSIDE_VALIDITY)
            .sign(ca(), b"hello".to_vec())
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "not an sgx quote: it has no open enclave header, and as a raw quote it is 5 bytes \
             long, less than 48"
        );
        assert!(err.is_quote_failure());

        let none = QuoteSigner::new(None, Verifier::default());
        let err = none
            .sign(ca(), testdata("dcap-qvl-sample.quote"))
            .await
            .unwrap_err();
        assert!(matches!(err, SignQuoteError::NoCollateral), "{err}");
        assert!(!err.is_quote_failure());
    }

    #[test]
    fn raw_quote_check_follows_the_reference() {
        let raw = testdata("dcap-qvl-sample.quote");
        assert_eq!(raw_quote_mismatch(&raw), None);
        let headed = with_open_enclave_header(&raw);
        assert!(raw_quote_mismatch(&headed).is_some());
        assert_eq!(open_enclave_form(&headed).unwrap(), headed);
        assert_eq!(open_enclave_form(&raw).unwrap(), headed);
        for (offset, value, reason) in [
            (0usize, 4u8, "its version is 4, not 3"),
            (2, 4, "its attestation key type is 4, above 3"),
            (4, 0x81, "its tee type is 0x81, not 0 (sgx)"),
        ] {
            let mut changed = raw.clone();
            changed[offset] = value;
            assert_eq!(raw_quote_mismatch(&changed).as_deref(), Some(reason));
        }
        let mut no_qe_svn = raw.clone();
        no_qe_svn[8..10].copy_from_slice(&[0, 0]);
        assert_eq!(
            raw_quote_mismatch(&no_qe_svn).as_deref(),
            Some("its qe svn is 0")
        );
        assert!(matches!(
            open_enclave_form(&no_qe_svn),
            Err(SignQuoteError::NotAQuote { .. })
        ));
        let mut no_pce_svn = raw;
        no_pce_svn[10..12].copy_from_slice(&[0, 0]);
        assert_eq!(
            raw_quote_mismatch(&no_pce_svn).as_deref(),
            Some("its pce svn is 0")
        );
    }

    #[test]
    fn status_names_are_the_eight_of_the_reference() {
        for status in TcbStatus::ALL {
            let name = tcb_status_name(status);
            assert!(TCB_STATUS_NAMES.contains(&name), "{name}");
            assert_eq!(name, status.as_str());
        }
    }
}
