//! `POST /api/v2/sign-quote` against the real binary with `curl`: the feature gate, MarbleRun's
//! answers to bad bodies, and real DCAP verification of the real Intel quote in `testdata/sgx`
//! with its collateral, which has expired — so today every path ends in the verification
//! failure that names the expired part. The signing itself is tested at a time inside the
//! collateral's validity in `quarry_coordinator::core::sign_quote`.

use std::path::{Path, PathBuf};

use quarry_testkit::coordinator::Coordinator;
use quarry_testkit::pccs::{Behaviour, FakePccs};
use serde_json::json;

use crate::activation::simulated_quote;
use crate::tools::{Answer, Trust, b64, curl, file};
use crate::workflow::set_manifest;

const NOT_ENABLED: &str = "SignQuoteEndpoint feature is not enabled in the manifest";

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/sgx")
        .join(name)
}

fn manifest(gates: &[&str]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "Packages": {"pkg": {"SignerID": "ab".repeat(32), "ProductID": 3, "SecurityVersion": 2}},
        "Marbles": {"app": {"Package": "pkg"}},
        "Config": {"FeatureGates": gates}
    }))
    .unwrap()
}

fn post(c: &Coordinator, dir: &Path, name: &str, body: impl AsRef<[u8]>) -> Answer {
    let body = file(dir, name, body);
    curl(
        &Trust::Insecure,
        "POST",
        &c.url("/api/v2/sign-quote"),
        Some(&body),
        &[],
    )
}

fn sign(c: &Coordinator, dir: &Path, name: &str, quote: &[u8]) -> Answer {
    post(c, dir, name, json!({ "sgxQuote": b64(quote) }).to_string())
}

/// The `sgxQuote` text of a verification failure, after checking MarbleRun's shape.
fn verification_failure(answer: &Answer) -> String {
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    assert_eq!(answer.body["status"], "fail");
    assert_eq!(answer.message(), "quote verification failed");
    let detail = answer.body["data"]["sgxQuote"].as_str().unwrap().to_owned();
    assert!(
        detail.starts_with("quote verification failed: "),
        "{detail}"
    );
    detail
}

#[test]
fn sign_quote_needs_the_gate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let c = Coordinator::start(dir).unwrap();
    let quote = std::fs::read(testdata("dcap-qvl-sample.quote")).unwrap();

    // No manifest yet, then a manifest with another gate: 403 error, even for a bad body.
    for step in ["state 2", "other gate"] {
        for body in [json!({ "sgxQuote": b64(&quote) }).to_string(), "{".into()] {
            let answer = post(&c, dir, "q.json", body);
            assert_eq!(answer.status, 403, "{step}: {:?}", answer.body);
            assert_eq!(answer.body["status"], "error");
            assert_eq!(answer.message(), NOT_ENABLED);
            assert_eq!(answer.content_type, "text/plain; charset=utf-8");
        }
        if step == "state 2" {
            set_manifest(&c, &Trust::Insecure, dir, &manifest(&["MonotonicCounter"]));
        }
    }
    // Only POST is routed.
    let answer = curl(
        &Trust::Insecure,
        "GET",
        &c.url("/api/v2/sign-quote"),
        None,
        &[],
    );
    assert_eq!(answer.status, 405);
}

#[test]
fn sign_quote_verifies_real_quotes_and_answers_bad_input_as_marblerun() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let collateral = testdata("dcap-qvl-sample.collateral.json");
    let mut c = Coordinator::start_with(
        dir,
        &[("QUARRY_COLLATERAL_FILE", collateral.to_str().unwrap())],
    )
    .unwrap();
    set_manifest(&c, &Trust::Insecure, dir, &manifest(&["signquoteendpoint"]));

    // Bodies that are not `{"sgxQuote": base64}`.
    for (body, detail) in [
        ("not json", "request body is not JSON"),
        (
            r#"{"sgxQuote": 42}"#,
            "sgxQuote: expected a base64 string, found a number",
        ),
        (r#"{"sgxQuote": "%%%"}"#, "sgxQuote: invalid base64"),
        ("{}", "sgxQuote: missing"),
    ] {
        let answer = post(&c, dir, "bad.json", body);
        assert_eq!(answer.status, 400, "{body}: {:?}", answer.body);
        assert_eq!(answer.body["status"], "fail");
        assert_eq!(
            answer.body["data"],
            json!({"sgxQuote": "failed to parse JSON data"})
        );
        assert!(
            answer.message().starts_with("bad request: "),
            "{:?}",
            answer.body
        );
        assert!(answer.message().contains(detail), "{:?}", answer.body);
    }
    // The member name matches case-insensitively, as in Go.
    let answer = post(
        &c,
        dir,
        "case.json",
        json!({"SGXQuote": b64(b"x")}).to_string(),
    );
    verification_failure(&answer);

    // The real Intel quote, raw and with the Open Enclave header: verified for real, and
    // refused because its collateral expired, naming the part.
    let raw = std::fs::read(testdata("dcap-qvl-sample.quote")).unwrap();
    let headed = quarry_enclave::quote::with_open_enclave_header(&raw);
    for (name, quote) in [("raw.json", &raw), ("headed.json", &headed)] {
        let detail = verification_failure(&sign(&c, dir, name, quote));
        assert!(detail.contains("collateral expired at"), "{name}: {detail}");
        assert!(detail.contains("needed an update by"), "{name}: {detail}");
    }

    // A simulated quote is never signed, although the Coordinator itself is simulated.
    let detail = verification_failure(&sign(&c, dir, "sim.json", &simulated_quote(&[0; 64])));
    assert!(detail.contains("simulated quote"), "{detail}");
    // Neither a raw quote nor one with the header.
    let detail = verification_failure(&sign(&c, dir, "short.json", b"hello"));
    assert!(detail.contains("not an sgx quote"), "{detail}");

    // Without collateral nothing can be verified, so nothing is signed.
    c.restart_with("QUARRY_COLLATERAL_FILE", None).unwrap();
    let answer = sign(&c, dir, "raw.json", &raw);
    assert_eq!(answer.status, 500, "{:?}", answer.body);
    assert_eq!(answer.body["status"], "error");
    assert!(
        answer.message().contains("no dcap collateral configured"),
        "{:?}",
        answer.body
    );
}

#[test]
fn sign_quote_takes_collateral_from_the_pccs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let json = std::fs::read(testdata("dcap-qvl-sample.collateral.json")).unwrap();
    let pccs = runtime
        .block_on(FakePccs::start(&json, "processor", true))
        .unwrap();
    let ca_file = file(dir, "pccs-ca.pem", pccs.ca_pem().unwrap());
    let c = Coordinator::start_with(
        dir,
        &[
            ("QUARRY_PCCS_URL", &pccs.url()),
            ("QUARRY_PCCS_CA_FILE", ca_file.to_str().unwrap()),
        ],
    )
    .unwrap();
    set_manifest(&c, &Trust::Insecure, dir, &manifest(&["SignQuoteEndpoint"]));
    let raw = std::fs::read(testdata("dcap-qvl-sample.quote")).unwrap();

    // The collateral for the quote's platform comes from the PCCS, then fails the clock check.
    let detail = verification_failure(&sign(&c, dir, "raw.json", &raw));
    assert!(detail.contains("collateral expired at"), "{detail}");
    let requests = pccs.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("/sgx/certification/v4/tcb?fmspc=")),
        "{requests:?}"
    );

    // A failing PCCS is named in the answer.
    pccs.set_behaviour(Behaviour {
        fail_with: Some(503),
        ..Behaviour::default()
    });
    let detail = verification_failure(&sign(&c, dir, "raw.json", &raw));
    assert!(detail.contains("fetching dcap collateral"), "{detail}");
    assert!(detail.contains("503"), "{detail}");
}
