//! The real quote verifies with its collateral inside the validity window and not outside it.

use std::sync::Arc;

use quarry_enclave::collateral::Collateral;
use quarry_enclave::quote::with_open_enclave_header;
use quarry_enclave::verify::{FixedClock, TcbAcceptance, TcbStatus, Verifier, VerifyError};

use crate::fixtures::{VALID_FROM, VALID_UNTIL, real_collateral, real_quote};

fn at(secs: i64) -> Verifier {
    Verifier::new(Arc::new(FixedClock(secs)))
}

fn expect_sample_result(verifier: &Verifier, quote: &[u8], collateral: &Collateral) {
    let v = verifier.verify(quote, collateral).unwrap();
    assert_eq!(v.tcb_status, TcbStatus::ConfigurationAndSWHardeningNeeded);
    assert_eq!(v.advisory_ids, ["INTEL-SA-00289", "INTEL-SA-00615"]);
    assert_eq!(&v.quote.report_body.report_data[..13], b"Hello, world!");
}

#[test]
fn validity_window_is_the_documented_one() {
    let v = real_collateral().validity().unwrap();
    assert_eq!((v.not_before, v.not_before_part), (VALID_FROM, "tcb info"));
    assert_eq!(
        (v.not_after, v.not_after_part),
        (VALID_UNTIL, "qe identity")
    );
    assert_eq!(real_collateral().fmspc().unwrap(), "00A067110000");
}

#[test]
fn verifies_at_both_ends_of_the_window_and_in_between() {
    let collateral = real_collateral();
    for t in [VALID_FROM, 1_750_340_000, VALID_UNTIL] {
        expect_sample_result(&at(t), &real_quote(), &collateral);
    }
}

#[test]
fn verifies_with_the_open_enclave_header() {
    expect_sample_result(
        &at(1_750_340_000),
        &with_open_enclave_header(&real_quote()),
        &real_collateral(),
    );
}

#[test]
fn one_second_after_the_window_says_expired() {
    let err = at(VALID_UNTIL + 1)
        .verify(&real_quote(), &real_collateral())
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::CollateralExpired {
                part: "qe identity",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "collateral expired at 2025-07-19T10:01:19Z: its qe identity needed an update by 2025-07-19T10:01:18Z"
    );
}

#[test]
fn one_second_before_the_window_says_not_yet_valid() {
    let err = at(VALID_FROM - 1)
        .verify(&real_quote(), &real_collateral())
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::CollateralNotYetValid {
                part: "tcb info",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("not yet valid at 2025-06-19T10:56:10Z"),
        "{err}"
    );
}

#[test]
fn collateral_for_another_platform_is_named() {
    let mut json: serde_json::Value = serde_json::from_slice(&real_collateral().to_json()).unwrap();
    let tcb = json["tcb_info"]
        .as_str()
        .unwrap()
        .replace("00A067110000", "00906ED50000");
    json["tcb_info"] = tcb.into();
    let other = Collateral::from_json(&serde_json::to_vec(&json).unwrap()).unwrap();
    let err = at(1_750_340_000).verify(&real_quote(), &other).unwrap_err();
    assert_eq!(
        err.to_string(),
        "collateral is for fmspc 00906ED50000, the quote's platform is fmspc 00A067110000"
    );
}

#[test]
fn tampered_tcb_info_fails_its_signature() {
    let mut json: serde_json::Value = serde_json::from_slice(&real_collateral().to_json()).unwrap();
    let tcb = json["tcb_info"]
        .as_str()
        .unwrap()
        .replacen("\"svn\":11", "\"svn\":12", 1);
    json["tcb_info"] = tcb.into();
    let tampered = Collateral::from_json(&serde_json::to_vec(&json).unwrap()).unwrap();
    let err = at(1_750_340_000)
        .verify(&real_quote(), &tampered)
        .unwrap_err();
    assert!(matches!(err, VerifyError::Dcap(_)), "{err}");
}

#[test]
fn tampered_quote_fails() {
    let mut quote = real_quote();
    quote[368] ^= 1; // first byte of the report data
    let err = at(1_750_340_000)
        .verify(&quote, &real_collateral())
        .unwrap_err();
    assert!(matches!(err, VerifyError::Dcap(_)), "{err}");
}

#[test]
fn simulated_quotes_do_not_verify() {
    use quarry_enclave::Enclave;
    use quarry_enclave::simulation::{Simulation, SimulationSettings};
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulation::new(SimulationSettings::new(dir.path())).unwrap();
    let err = at(1_750_340_000)
        .verify(&sim.quote(&[0; 64]).unwrap(), &real_collateral())
        .unwrap_err();
    assert!(matches!(err, VerifyError::Quote(_)), "{err}");
}

#[test]
fn acceptance_of_the_sample_status() {
    let v = at(1_750_340_000)
        .verify(&real_quote(), &real_collateral())
        .unwrap();
    let err = v.check(&TcbAcceptance::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("ConfigurationAndSWHardeningNeeded is not accepted"),
        "{err}"
    );
    let listed = TcbAcceptance::new(&["ConfigurationAndSWHardeningNeeded".to_owned()], &[]);
    assert!(v.check(&listed).is_ok());
}

#[test]
fn malformed_collateral_is_named() {
    assert!(
        Collateral::from_json(b"{")
            .unwrap_err()
            .to_string()
            .starts_with("invalid collateral json")
    );
    let mut json: serde_json::Value = serde_json::from_slice(&real_collateral().to_json()).unwrap();
    let tcb = json["tcb_info"]
        .as_str()
        .unwrap()
        .replace("2025-07-19T10:56:11Z", "soon");
    json["tcb_info"] = tcb.into();
    let err = Collateral::from_json(&serde_json::to_vec(&json).unwrap()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid collateral tcb info: date \"soon\""),
        "{err}"
    );

    let mut json: serde_json::Value = serde_json::from_slice(&real_collateral().to_json()).unwrap();
    json["pck_crl"] = "00".into();
    let err = Collateral::from_json(&serde_json::to_vec(&json).unwrap()).unwrap_err();
    assert!(
        err.to_string().starts_with("invalid collateral pck crl"),
        "{err}"
    );
}
