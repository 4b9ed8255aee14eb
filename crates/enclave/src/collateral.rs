//! DCAP collateral: the Intel-signed data a verifier needs besides the quote.
//!
//! A [`Collateral`] holds the PCK CRL and its issuer chain, the root CA CRL, the TCB info of
//! one FMSPC and the QE identity, each signed JSON kept as the exact text Intel signed, with
//! their issuer chains. It reads and writes the JSON shape `dcap-qvl` uses (byte fields as hex
//! strings; `testdata/sgx/dcap-qvl-sample.collateral.json` is one), and knows the time window
//! in which all of its parts are valid, so that a verifier can say precisely why collateral
//! is too old or too new.

use std::path::Path;

use dcap_qvl::QuoteCollateralV3;
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Collateral that cannot be read or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollateralError {
    /// The collateral file could not be read.
    #[error("read collateral file {path}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The collateral JSON does not have the expected shape.
    #[error("invalid collateral json: {0}")]
    Json(String),
    /// A part of the collateral is malformed.
    #[error("invalid collateral {part}: {detail}")]
    Part {
        /// Which part (`tcb info`, `qe identity`, `pck crl`, `root ca crl`).
        part: &'static str,
        /// What is wrong.
        detail: String,
    },
}

/// The collateral for verifying quotes of one platform (FMSPC) and PCK CA.
#[derive(Clone, PartialEq, Eq)]
pub struct Collateral {
    inner: QuoteCollateralV3,
}

impl std::fmt::Debug for Collateral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collateral")
            .field("fmspc", &self.fmspc().ok())
            .field("validity", &self.validity().ok())
            .finish_non_exhaustive()
    }
}

/// When a collateral set can be used: from the latest issue date of its parts to the earliest
/// next-update date, both inclusive, in Unix seconds, with the parts that set each bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// The first second at which every part is issued.
    pub not_before: i64,
    /// The part issued last.
    pub not_before_part: &'static str,
    /// The last second before a part must be updated.
    pub not_after: i64,
    /// The part that expires first.
    pub not_after_part: &'static str,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Dated {
    issue_date: String,
    next_update: String,
    #[serde(default)]
    fmspc: Option<String>,
}

impl Collateral {
    /// Wraps dcap-qvl's collateral structure.
    pub fn from_dcap(inner: QuoteCollateralV3) -> Self {
        Self { inner }
    }

    /// Parses collateral JSON (the shape of `dcap-qvl-sample.collateral.json`).
    pub fn from_json(bytes: &[u8]) -> Result<Self, CollateralError> {
        let inner: QuoteCollateralV3 =
            serde_json::from_slice(bytes).map_err(|e| CollateralError::Json(e.to_string()))?;
        let collateral = Self { inner };
        // Fail early on parts that cannot be dated rather than at the first verification.
        collateral.validity()?;
        Ok(collateral)
    }

    /// Reads collateral JSON from a file.
    pub fn from_file(path: &Path) -> Result<Self, CollateralError> {
        let bytes = std::fs::read(path).map_err(|e| CollateralError::Read {
            path: path.to_owned(),
            source: e,
        })?;
        Self::from_json(&bytes)
    }

    /// The collateral as JSON in the same shape.
    pub fn to_json(&self) -> Vec<u8> {
        // Cannot fail: the structure holds only strings and byte vectors.
        serde_json::to_vec_pretty(&self.inner).unwrap_or_default()
    }

    /// The dcap-qvl structure.
    pub fn as_dcap(&self) -> &QuoteCollateralV3 {
        &self.inner
    }

    /// The TCB info JSON exactly as signed.
    pub fn tcb_info(&self) -> &str {
        &self.inner.tcb_info
    }

    /// The QE identity JSON exactly as signed.
    pub fn qe_identity(&self) -> &str {
        &self.inner.qe_identity
    }

    /// The FMSPC the TCB info is for (12 upper-case hex characters).
    pub fn fmspc(&self) -> Result<String, CollateralError> {
        let dated = dated("tcb info", &self.inner.tcb_info)?;
        dated
            .fmspc
            .map(|f| f.to_ascii_uppercase())
            .ok_or(CollateralError::Part {
                part: "tcb info",
                detail: "no fmspc".into(),
            })
    }

    /// The window in which every part is valid.
    pub fn validity(&self) -> Result<Validity, CollateralError> {
        let tcb = dated("tcb info", &self.inner.tcb_info)?;
        let qe = dated("qe identity", &self.inner.qe_identity)?;
        let windows = [
            (
                "tcb info",
                rfc3339("tcb info", &tcb.issue_date)?,
                rfc3339("tcb info", &tcb.next_update)?,
            ),
            (
                "qe identity",
                rfc3339("qe identity", &qe.issue_date)?,
                rfc3339("qe identity", &qe.next_update)?,
            ),
            crl_window("pck crl", &self.inner.pck_crl)?,
            crl_window("root ca crl", &self.inner.root_ca_crl)?,
        ];
        let mut v = Validity {
            not_before: i64::MIN,
            not_before_part: "",
            not_after: i64::MAX,
            not_after_part: "",
        };
        for (part, from, until) in windows {
            if from > v.not_before {
                v.not_before = from;
                v.not_before_part = part;
            }
            if until < v.not_after {
                v.not_after = until;
                v.not_after_part = part;
            }
        }
        Ok(v)
    }
}

/// Formats Unix seconds as RFC 3339 for messages (the number itself if out of range).
pub fn format_time(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| secs.to_string())
}

fn dated(part: &'static str, json: &str) -> Result<Dated, CollateralError> {
    serde_json::from_str(json).map_err(|e| CollateralError::Part {
        part,
        detail: format!("issueDate/nextUpdate: {e}"),
    })
}

fn rfc3339(part: &'static str, text: &str) -> Result<i64, CollateralError> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map(OffsetDateTime::unix_timestamp)
        .map_err(|e| CollateralError::Part {
            part,
            detail: format!("date {text:?}: {e}"),
        })
}

fn crl_window(part: &'static str, der: &[u8]) -> Result<(&'static str, i64, i64), CollateralError> {
    let (_, crl) = x509_parser::parse_x509_crl(der).map_err(|e| CollateralError::Part {
        part,
        detail: e.to_string(),
    })?;
    let next = crl.next_update().ok_or(CollateralError::Part {
        part,
        detail: "no nextUpdate".into(),
    })?;
    Ok((part, crl.last_update().timestamp(), next.timestamp()))
}
