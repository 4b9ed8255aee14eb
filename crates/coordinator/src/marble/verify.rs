//! Whether a Marble's quote proves that it runs the manifest's package, on this connection.
//!
//! Checks, in order: the quote parses; its report data starts with SHA-256 of the client
//! certificate the TLS handshake proved (bytes 32..63 are not checked, as in MarbleRun); the
//! report body matches the package (`Debug` equal; `UniqueID` and `SignerID` equal ignoring
//! case when set; `ProductID` equal when set; `SecurityVersion` at least the package's when
//! set); and, outside simulation, the DCAP signature chain with the collateral, then the TCB
//! status and advisories under the package's `AcceptedTCBStatuses` and `AcceptedAdvisories`.
//!
//! Simulation (DESIGN): only the signature and TCB checks are skipped; the binding, the package
//! identity and the debug flag are still checked. An empty quote — what MarbleRun's Marbles
//! send when they cannot make one — is accepted only in simulation, with a warning by the
//! caller. MarbleRun's simulation skips every check; Quarry does not.

use quarry_enclave::pccs::CollateralSource;
use quarry_enclave::quote::{Quote, ReportBody};
use quarry_enclave::verify::{TcbAcceptance, Verifier};

use crate::core::keys::StoredPackage;

/// Why a quote was not accepted. The messages are sent to the Marble, so they name the check
/// and the values that differ, never the Coordinator's state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuoteRejection {
    /// No quote outside simulation.
    #[error("the quote is empty (an empty quote is accepted only by a coordinator in simulation)")]
    Empty,
    /// The quote does not parse.
    #[error("invalid quote: {0}")]
    Parse(#[from] quarry_enclave::quote::QuoteError),
    /// The report data does not bind the TLS client certificate.
    #[error("the quote's report data is not bound to the tls client certificate")]
    NotBound,
    /// The quoted enclave is not the package.
    #[error("the quote does not match package {package}: {field} is {actual}, expected {expected}")]
    Package {
        /// The package name.
        package: String,
        /// The field that differs.
        field: &'static str,
        /// What the quote says.
        actual: String,
        /// What the package requires.
        expected: String,
    },
    /// No collateral is configured for DCAP verification.
    #[error(
        "no dcap collateral configured: set QUARRY_PCCS_URL or QUARRY_COLLATERAL_FILE on the \
         coordinator"
    )]
    NoCollateral,
    /// Collateral could not be fetched.
    #[error("fetching dcap collateral: {0}")]
    Collateral(String),
    /// DCAP verification or the TCB rules failed.
    #[error("quote verification: {0}")]
    Verify(String),
}

/// SHA-256 of `certificate_der`.
pub fn certificate_hash(certificate_der: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, certificate_der);
    let mut hash = [0u8; 32];
    hash.copy_from_slice(digest.as_ref());
    hash
}

/// The checks that need no collateral: parse, binding, package identity. Returns the parsed
/// quote for the signature check.
pub fn check_binding_and_package(
    quote: &[u8],
    peer_certificate: &[u8],
    package_name: &str,
    package: &StoredPackage,
) -> Result<Quote, QuoteRejection> {
    if quote.is_empty() {
        return Err(QuoteRejection::Empty);
    }
    let parsed = Quote::parse(quote)?;
    let body = &parsed.report_body;
    // Not secret material: a plain comparison is fine.
    if body.report_data[..32] != certificate_hash(peer_certificate) {
        return Err(QuoteRejection::NotBound);
    }
    check_package(body, package_name, package)?;
    Ok(parsed)
}

/// MarbleRun's `IsCompliant`: the report body against the package.
pub fn check_package(
    body: &ReportBody,
    package_name: &str,
    package: &StoredPackage,
) -> Result<(), QuoteRejection> {
    let mismatch = |field, actual: String, expected: String| QuoteRejection::Package {
        package: package_name.to_owned(),
        field,
        actual,
        expected,
    };
    let debug = body.attributes.is_debug();
    if debug != package.debug {
        return Err(mismatch(
            "Debug",
            debug.to_string(),
            package.debug.to_string(),
        ));
    }
    if !package.unique_id.is_empty() {
        let actual = hex::encode(body.mr_enclave);
        if !actual.eq_ignore_ascii_case(&package.unique_id) {
            return Err(mismatch("UniqueID", actual, package.unique_id.clone()));
        }
    }
    if !package.signer_id.is_empty() {
        let actual = hex::encode(body.mr_signer);
        if !actual.eq_ignore_ascii_case(&package.signer_id) {
            return Err(mismatch("SignerID", actual, package.signer_id.clone()));
        }
    }
    if let Some(expected) = package.product_id
        && u64::from(body.isv_prod_id) != expected
    {
        return Err(mismatch(
            "ProductID",
            body.isv_prod_id.to_string(),
            expected.to_string(),
        ));
    }
    if let Some(expected) = package.security_version
        && u64::from(body.isv_svn) < expected
    {
        return Err(mismatch(
            "SecurityVersion",
            body.isv_svn.to_string(),
            format!("at least {expected}"),
        ));
    }
    Ok(())
}

/// The DCAP signature chain and the package's TCB rules.
pub async fn check_signature_and_tcb(
    raw_quote: &[u8],
    parsed: &Quote,
    package: &StoredPackage,
    collateral: Option<&CollateralSource>,
    verifier: &Verifier,
) -> Result<(), QuoteRejection> {
    let source = collateral.ok_or(QuoteRejection::NoCollateral)?;
    let collateral = source
        .collateral_for(parsed)
        .await
        .map_err(|e| QuoteRejection::Collateral(crate::core::error_chain(&e)))?;
    let verified = verifier
        .clone()
        .allow_debug(package.debug)
        .verify(raw_quote, &collateral)
        .map_err(|e| QuoteRejection::Verify(crate::core::error_chain(&e)))?;
    let acceptance =
        TcbAcceptance::new(&package.accepted_tcb_statuses, &package.accepted_advisories);
    verified
        .check(&acceptance)
        .map_err(|e| QuoteRejection::Verify(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use quarry_enclave::Enclave;
    use quarry_enclave::simulation::{Simulation, SimulationSettings};

    fn quote_over(cert: &[u8], debug: bool) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = SimulationSettings::new(dir.path());
        settings.identity.mrsigner = [0xab; 32];
        settings.identity.isv_prod_id = 3;
        settings.identity.isv_svn = 2;
        settings.identity.debug = debug;
        let sim = Simulation::new(settings).unwrap();
        let mut data = [0u8; 64];
        data[..32].copy_from_slice(&certificate_hash(cert));
        quarry_enclave::quote::with_open_enclave_header(&sim.quote(&data).unwrap())
    }

    fn package() -> StoredPackage {
        StoredPackage {
            signer_id: "AB".repeat(32),
            product_id: Some(3),
            security_version: Some(2),
            ..StoredPackage::default()
        }
    }

    #[test]
    fn accepts_a_bound_quote_of_the_package() {
        let quote = quote_over(b"cert", false);
        check_binding_and_package(&quote, b"cert", "p", &package()).unwrap();
    }

    #[test]
    fn rejects_a_quote_bound_to_another_certificate() {
        let quote = quote_over(b"other cert", false);
        let err = check_binding_and_package(&quote, b"cert", "p", &package()).unwrap_err();
        assert!(matches!(err, QuoteRejection::NotBound), "{err}");
    }

    #[test]
    fn rejects_other_packages_naming_the_field() {
        let quote = quote_over(b"cert", false);
        for (package, field) in [
            (
                StoredPackage {
                    product_id: Some(4),
                    ..package()
                },
                "ProductID",
            ),
            (
                StoredPackage {
                    security_version: Some(3),
                    ..package()
                },
                "SecurityVersion",
            ),
            (
                StoredPackage {
                    signer_id: "cd".repeat(32),
                    ..package()
                },
                "SignerID",
            ),
            (
                StoredPackage {
                    unique_id: "00".repeat(31) + "01",
                    ..package()
                },
                "UniqueID",
            ),
            (
                StoredPackage {
                    debug: true,
                    ..package()
                },
                "Debug",
            ),
        ] {
            let err = check_binding_and_package(&quote, b"cert", "p", &package).unwrap_err();
            assert!(
                matches!(&err, QuoteRejection::Package { field: f, .. } if *f == field),
                "{field}: {err}"
            );
        }
        let debug_quote = quote_over(b"cert", true);
        let err = check_binding_and_package(&debug_quote, b"cert", "p", &package()).unwrap_err();
        assert!(err.to_string().contains("Debug is true"), "{err}");
    }

    #[test]
    fn rejects_empty_and_garbage_quotes() {
        assert!(matches!(
            check_binding_and_package(b"", b"cert", "p", &package()),
            Err(QuoteRejection::Empty)
        ));
        assert!(matches!(
            check_binding_and_package(&[1, 2, 3], b"cert", "p", &package()),
            Err(QuoteRejection::Parse(_))
        ));
    }
}
