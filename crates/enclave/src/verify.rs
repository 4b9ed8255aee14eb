//! DCAP quote verification and the TCB acceptance rules of manifest packages.
//!
//! [`Verifier::verify`] parses the quote with Quarry's parser, checks that the collateral is for
//! the quote's platform (FMSPC) and valid at the [`Clock`]'s time, and then has `dcap-qvl`
//! verify the PCK chain to Intel's root, the CRLs, the TCB info and QE identity signatures, the
//! QE report and the quote signature. The result carries the TCB status and advisories.
//! Debug enclaves are refused unless [`Verifier::allow_debug`] is set (the package's `Debug`
//! flag decides that, and the identity check compares it anyway).
//!
//! [`TcbAcceptance`] applies `AcceptedTCBStatuses` / `AcceptedAdvisories` as MarbleRun's
//! packages do: `UpToDate` is always accepted; any other status only if listed, and an empty
//! list means `["SWHardeningNeeded"]`; names compare case-sensitively. Advisories are checked
//! only for status `SWHardeningNeeded` and only when the list is not empty: then every reported
//! advisory must be listed (case-insensitively).

use std::fmt;
use std::sync::Arc;

use dcap_qvl::configs::RustCryptoConfig;
use dcap_qvl::verify::QuoteVerifier;

use crate::collateral::{Collateral, CollateralError, format_time};
use crate::quote::{Quote, QuoteError};

/// Where verification takes its time from.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Seconds since the Unix epoch.
    fn now(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }
}

/// A clock that always answers the same time (tests, and verifying old quotes on purpose).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedClock(pub i64);

impl Clock for FixedClock {
    fn now(&self) -> i64 {
        self.0
    }
}

/// The TCB status of a verified quote's platform and Quoting Enclave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TcbStatus {
    /// Fully patched.
    UpToDate,
    /// Patched, but software mitigations are needed (see the advisories).
    SWHardeningNeeded,
    /// The platform configuration needs changes (see the advisories).
    ConfigurationNeeded,
    /// Both of the above.
    ConfigurationAndSWHardeningNeeded,
    /// The TCB is out of date.
    OutOfDate,
    /// Out of date and the configuration needs changes.
    OutOfDateConfigurationNeeded,
    /// The platform's keys are revoked.
    Revoked,
}

impl TcbStatus {
    /// Every status, in the order above.
    pub const ALL: [TcbStatus; 7] = [
        TcbStatus::UpToDate,
        TcbStatus::SWHardeningNeeded,
        TcbStatus::ConfigurationNeeded,
        TcbStatus::ConfigurationAndSWHardeningNeeded,
        TcbStatus::OutOfDate,
        TcbStatus::OutOfDateConfigurationNeeded,
        TcbStatus::Revoked,
    ];

    /// Intel's name for the status, as manifests write it.
    pub fn as_str(self) -> &'static str {
        match self {
            TcbStatus::UpToDate => "UpToDate",
            TcbStatus::SWHardeningNeeded => "SWHardeningNeeded",
            TcbStatus::ConfigurationNeeded => "ConfigurationNeeded",
            TcbStatus::ConfigurationAndSWHardeningNeeded => "ConfigurationAndSWHardeningNeeded",
            TcbStatus::OutOfDate => "OutOfDate",
            TcbStatus::OutOfDateConfigurationNeeded => "OutOfDateConfigurationNeeded",
            TcbStatus::Revoked => "Revoked",
        }
    }

    /// The status with Intel's name `name` (case-sensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for TcbStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a quote did not verify or was not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The quote could not be parsed.
    #[error("invalid quote")]
    Quote(#[from] QuoteError),
    /// The collateral is malformed.
    #[error("invalid collateral")]
    Collateral(#[from] CollateralError),
    /// The collateral is for another platform.
    #[error("collateral is for fmspc {collateral}, the quote's platform is fmspc {quote}")]
    FmspcMismatch {
        /// The quote's FMSPC.
        quote: String,
        /// The collateral's FMSPC.
        collateral: String,
    },
    /// The clock is before the collateral's validity.
    #[error("collateral not yet valid at {now}: its {part} is issued at {not_before}")]
    CollateralNotYetValid {
        /// The clock's time (RFC 3339).
        now: String,
        /// When the collateral becomes valid.
        not_before: String,
        /// The part that sets that time.
        part: &'static str,
    },
    /// The clock is after the collateral's validity.
    #[error("collateral expired at {now}: its {part} needed an update by {not_after}")]
    CollateralExpired {
        /// The clock's time (RFC 3339).
        now: String,
        /// When the collateral stopped being valid.
        not_after: String,
        /// The part that sets that time.
        part: &'static str,
    },
    /// dcap-qvl rejected the quote (signature, chain, CRL, QE identity, TCB level, debug).
    #[error("quote verification failed: {0}")]
    Dcap(String),
    /// The TCB status is not accepted.
    #[error("tcb status {status} is not accepted (accepted: UpToDate, {accepted})")]
    StatusNotAccepted {
        /// The quote's status.
        status: TcbStatus,
        /// The accepted statuses, comma-separated.
        accepted: String,
    },
    /// An advisory is not accepted.
    #[error("advisory {advisory} of tcb status {status} is not accepted")]
    AdvisoryNotAccepted {
        /// The first advisory not in the list.
        advisory: String,
        /// The quote's status.
        status: TcbStatus,
    },
}

/// A quote that verified, with what the verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The parsed quote.
    pub quote: Quote,
    /// The TCB status.
    pub tcb_status: TcbStatus,
    /// Intel security advisories that apply (`INTEL-SA-…`).
    pub advisory_ids: Vec<String>,
}

impl Verified {
    /// Applies a package's acceptance rules.
    pub fn check(&self, acceptance: &TcbAcceptance) -> Result<(), VerifyError> {
        acceptance.check(self.tcb_status, &self.advisory_ids)
    }
}

/// Verifies quotes against collateral at a clock's time.
#[derive(Debug, Clone)]
pub struct Verifier {
    clock: Arc<dyn Clock>,
    allow_debug: bool,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new(Arc::new(SystemClock))
    }
}

impl Verifier {
    /// A verifier with Intel's root CA and `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            allow_debug: false,
        }
    }

    /// Whether quotes of debug enclaves may verify (off by default).
    pub fn allow_debug(mut self, allow: bool) -> Self {
        self.allow_debug = allow;
        self
    }

    /// The clock in use.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Verifies `quote` (with or without the Open Enclave header) against `collateral`.
    pub fn verify(&self, quote: &[u8], collateral: &Collateral) -> Result<Verified, VerifyError> {
        let parsed = Quote::parse(quote)?;
        let quote_fmspc = hex::encode_upper(parsed.pck_chain()?.fmspc()?);
        let collateral_fmspc = collateral.fmspc()?;
        if quote_fmspc != collateral_fmspc {
            return Err(VerifyError::FmspcMismatch {
                quote: quote_fmspc,
                collateral: collateral_fmspc,
            });
        }
        let now = self.clock.now();
        check_validity(collateral, now)?;

        let raw = parsed.encode();
        let now_secs = u64::try_from(now).map_err(|_| VerifyError::CollateralNotYetValid {
            now: format_time(now),
            not_before: format_time(0),
            part: "clock",
        })?;
        let report = QuoteVerifier::new_prod()
            .with_config::<RustCryptoConfig>()
            .allow_debug(self.allow_debug)
            .verify(&raw, collateral.as_dcap(), now_secs)
            .map_err(|e| VerifyError::Dcap(format!("{e:#}")))?;
        let tcb_status = TcbStatus::from_name(&report.status).ok_or_else(|| {
            VerifyError::Dcap(format!(
                "unexpected tcb status {:?} for an sgx quote",
                report.status
            ))
        })?;

        Ok(Verified {
            quote: parsed,
            tcb_status,
            advisory_ids: report.advisory_ids,
        })
    }
}

fn check_validity(collateral: &Collateral, now: i64) -> Result<(), VerifyError> {
    let v = collateral.validity()?;
    if now < v.not_before {
        return Err(VerifyError::CollateralNotYetValid {
            now: format_time(now),
            not_before: format_time(v.not_before),
            part: v.not_before_part,
        });
    }
    if now > v.not_after {
        return Err(VerifyError::CollateralExpired {
            now: format_time(now),
            not_after: format_time(v.not_after),
            part: v.not_after_part,
        });
    }
    Ok(())
}

/// A package's `AcceptedTCBStatuses` and `AcceptedAdvisories`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TcbAcceptance {
    statuses: Vec<String>,
    advisories: Vec<String>,
}

impl TcbAcceptance {
    /// The rules for the given lists (either may be empty).
    pub fn new(accepted_statuses: &[String], accepted_advisories: &[String]) -> Self {
        Self {
            statuses: accepted_statuses.to_vec(),
            advisories: accepted_advisories.to_vec(),
        }
    }

    /// Whether a verified `status` with `advisories` is accepted.
    pub fn check(&self, status: TcbStatus, advisories: &[String]) -> Result<(), VerifyError> {
        if status == TcbStatus::UpToDate {
            return Ok(());
        }
        let default = [TcbStatus::SWHardeningNeeded.as_str().to_owned()];
        let accepted: &[String] = if self.statuses.is_empty() {
            &default
        } else {
            &self.statuses
        };
        if !accepted.iter().any(|s| s == status.as_str()) {
            return Err(VerifyError::StatusNotAccepted {
                status,
                accepted: accepted.join(", "),
            });
        }
        if status != TcbStatus::SWHardeningNeeded || self.advisories.is_empty() {
            return Ok(());
        }
        if let Some(advisory) = advisories
            .iter()
            .find(|a| !self.advisories.iter().any(|ok| ok.eq_ignore_ascii_case(a)))
        {
            return Err(VerifyError::AdvisoryNotAccepted {
                advisory: advisory.clone(),
                status,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn up_to_date_is_always_accepted() {
        let a = TcbAcceptance::new(&strings(&["OutOfDate"]), &strings(&["INTEL-SA-1"]));
        assert!(
            a.check(TcbStatus::UpToDate, &strings(&["INTEL-SA-2"]))
                .is_ok()
        );
    }

    #[test]
    fn empty_list_means_sw_hardening_needed() {
        let a = TcbAcceptance::default();
        assert!(
            a.check(TcbStatus::SWHardeningNeeded, &strings(&["X"]))
                .is_ok()
        );
        let err = a.check(TcbStatus::OutOfDate, &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tcb status OutOfDate is not accepted (accepted: UpToDate, SWHardeningNeeded)"
        );
    }

    #[test]
    fn listed_statuses_replace_the_default_and_are_case_sensitive() {
        let a = TcbAcceptance::new(&strings(&["ConfigurationAndSWHardeningNeeded"]), &[]);
        assert!(
            a.check(TcbStatus::ConfigurationAndSWHardeningNeeded, &[])
                .is_ok()
        );
        assert!(a.check(TcbStatus::SWHardeningNeeded, &[]).is_err());
        let lower = TcbAcceptance::new(&strings(&["swhardeningneeded"]), &[]);
        assert!(lower.check(TcbStatus::SWHardeningNeeded, &[]).is_err());
    }

    #[test]
    fn advisories_apply_to_sw_hardening_needed_only() {
        let a = TcbAcceptance::new(
            &strings(&["SWHardeningNeeded", "ConfigurationAndSWHardeningNeeded"]),
            &strings(&["intel-sa-00615"]),
        );
        assert!(
            a.check(TcbStatus::SWHardeningNeeded, &strings(&["INTEL-SA-00615"]))
                .is_ok()
        );
        let err = a
            .check(
                TcbStatus::SWHardeningNeeded,
                &strings(&["INTEL-SA-00615", "INTEL-SA-00289"]),
            )
            .unwrap_err();
        assert!(
            matches!(err, VerifyError::AdvisoryNotAccepted { ref advisory, .. } if advisory == "INTEL-SA-00289")
        );
        assert!(
            a.check(
                TcbStatus::ConfigurationAndSWHardeningNeeded,
                &strings(&["INTEL-SA-00289"])
            )
            .is_ok()
        );
    }

    #[test]
    fn status_names_round_trip() {
        for s in TcbStatus::ALL {
            assert_eq!(TcbStatus::from_name(s.as_str()), Some(s));
        }
        assert_eq!(TcbStatus::from_name("uptodate"), None);
    }
}
