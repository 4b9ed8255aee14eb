//! Verification of a Coordinator with a real SGX quote: a small TLS server on loopback plays a
//! Coordinator that serves the real DCAP quote of `testdata/sgx`, and the CLI must run the whole
//! DCAP verification with the real collateral and then refuse for the right reason.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use predicates::str::contains;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;

use crate::support::{quarry_in, testdata};

/// Inside the validity window of the sample collateral (2025-06-19T13:33:20Z).
const INSIDE: &str = "2025-06-19T13:33:20Z";

/// A TLS server that answers every request with the quote response
/// `{cert: intermediate + root, quote}`, with the real sample quote; returns its address. Its
/// TLS certificate is the chain's root, or another certificate.
fn fake_coordinator(chain_root_is_tls_cert: bool) -> String {
    let quote = std::fs::read(testdata("sgx/dcap-qvl-sample.quote")).unwrap();
    fake_coordinator_quoting(chain_root_is_tls_cert, Some(&quote))
}

/// [`fake_coordinator`] with the given quote; `None` sends `"quote": null`, as a MarbleRun
/// Coordinator in simulation mode does.
fn fake_coordinator_quoting(chain_root_is_tls_cert: bool, quote: Option<&[u8]>) -> String {
    let root_key = KeyPair::generate().unwrap();
    let mut root_params = CertificateParams::new(vec!["localhost".into()]).unwrap();
    root_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let root = root_params.self_signed(&root_key).unwrap();
    let issuer = Issuer::new(root_params, root_key);
    let inter_key = KeyPair::generate().unwrap();
    let mut inter_params = CertificateParams::new(vec!["localhost".into()]).unwrap();
    inter_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let intermediate = inter_params.signed_by(&inter_key, &issuer).unwrap();

    let (tls_cert, tls_key) = if chain_root_is_tls_cert {
        (root.der().to_vec(), issuer.key().serialize_der())
    } else {
        let other_key = KeyPair::generate().unwrap();
        let other = CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&other_key)
            .unwrap();
        (other.der().to_vec(), other_key.serialize_der())
    };
    let body = json!({
        "status": "success",
        "data": {
            "cert": format!("{}{}", intermediate.pem(), root.pem()),
            "quote": quote.map(|q| base64::engine::general_purpose::STANDARD.encode(q)),
        }
    })
    .to_string();

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(tls_cert)],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(tls_key)),
        )
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
                continue;
            };
            let mut tls = rustls::StreamOwned::new(conn, stream);
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tls.write_all(response.as_bytes());
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    addr
}

fn status(dir: &Path, addr: &str, extra: &[&str]) -> assert_cmd::assert::Assert {
    quarry_in(dir)
        .args(["status", addr, "--coordinator-cert"])
        .arg(dir.join("pin.pem"))
        .args(extra)
        .assert()
}

#[test]
fn real_quote_is_verified_then_refused_for_its_tcb_status() {
    let dir = tempfile::tempdir().unwrap();
    let addr = fake_coordinator(true);
    let collateral = testdata("sgx/dcap-qvl-sample.collateral.json");
    status(
        dir.path(),
        &addr,
        &[
            "--collateral",
            collateral.to_str().unwrap(),
            "--insecure-attestation-time",
            INSIDE,
        ],
    )
    .code(5)
    .stderr(contains(
        "tcb status ConfigurationAndSWHardeningNeeded is not accepted",
    ));
    assert!(!dir.path().join("pin.pem").exists(), "nothing is pinned");
}

#[test]
fn real_quote_that_verifies_must_still_bind_the_root_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let addr = fake_coordinator(true);
    let collateral = testdata("sgx/dcap-qvl-sample.collateral.json");
    // The sample quote's report data is "Hello, world!", not the hash of this root.
    status(
        dir.path(),
        &addr,
        &[
            "--collateral",
            collateral.to_str().unwrap(),
            "--insecure-attestation-time",
            INSIDE,
            "--accepted-tcb-statuses",
            "ConfigurationAndSWHardeningNeeded",
        ],
    )
    .code(5)
    .stderr(contains(
        "the quote's report data 48656c6c6f2c20776f726c6421",
    ))
    .stderr(contains("is not SHA-256 of the root certificate"));
}

#[test]
fn expired_collateral_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let addr = fake_coordinator(true);
    let collateral = testdata("sgx/dcap-qvl-sample.collateral.json");
    status(
        dir.path(),
        &addr,
        &["--collateral", collateral.to_str().unwrap()],
    )
    .code(5)
    .stderr(contains("quote verification failed: collateral expired"));
}

#[test]
fn real_quote_without_collateral_source_is_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let addr = fake_coordinator(true);
    status(dir.path(), &addr, &[])
        .code(1)
        .stderr(contains("the quote needs collateral to verify"));
}

#[test]
fn tls_certificate_other_than_the_quoted_root_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let addr = fake_coordinator(false);
    status(dir.path(), &addr, &["--insecure-simulation"])
        .code(5)
        .stderr(contains(
            "presented a TLS certificate other than the root certificate",
        ));
}

#[test]
fn insecure_skips_verification_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let addr = fake_coordinator(false);
    quarry_in(dir.path())
        .args(["certificate", "root", &addr, "-o", "-", "--insecure"])
        .assert()
        .code(0)
        .stdout(contains("-----BEGIN CERTIFICATE-----"))
        .stderr(contains(
            "INSECURE: --insecure skips the Coordinator's attestation",
        ));
}

/// `certificate root` against a Coordinator that sends no quote, pinning into `dir`.
fn root_without_quote(dir: &Path, addr: &str, extra: &[&str]) -> assert_cmd::assert::Assert {
    quarry_in(dir)
        .args(["certificate", "root", addr, "-o", "-", "--coordinator-cert"])
        .arg(dir.join("pin.pem"))
        .args(extra)
        .assert()
}

#[test]
fn a_missing_quote_is_accepted_only_by_plain_insecure_simulation() {
    let dir = tempfile::tempdir().unwrap();
    let addr = fake_coordinator_quoting(true, None);

    root_without_quote(dir.path(), &addr, &[])
        .code(5)
        .stderr(contains("sent no quote: it runs without SGX"));
    root_without_quote(dir.path(), &addr, &["--insecure-simulation"])
        .code(0)
        .stdout(contains("-----BEGIN CERTIFICATE-----"))
        .stderr(contains(
            "sent no quote; accepted because of --insecure-simulation",
        ));
}

#[test]
fn a_missing_quote_fails_when_an_identity_is_expected() {
    let dir = tempfile::tempdir().unwrap();
    let addr = fake_coordinator_quoting(true, None);
    let era = dir.path().join("era.json");
    std::fs::write(
        &era,
        format!(r#"{{"UniqueID":"{}","Debug":false}}"#, "ab".repeat(32)),
    )
    .unwrap();
    let refused = "--insecure-simulation accepts a coordinator without a quote only when no \
                   identity is expected or pinned";

    root_without_quote(
        dir.path(),
        &addr,
        &[
            "--insecure-simulation",
            "--era-config",
            era.to_str().unwrap(),
        ],
    )
    .code(5)
    .stderr(contains(format!(
        "sent no quote, so the expected identity (from --era-config {}) cannot be checked",
        era.display()
    )))
    .stderr(contains(refused));
    root_without_quote(
        dir.path(),
        &addr,
        &[
            "--insecure-simulation",
            "--signer-id",
            &"cd".repeat(32),
            "--product-id",
            "3",
            "--security-version",
            "2",
        ],
    )
    .code(5)
    .stderr(contains(
        "the expected identity (from --signer-id, --product-id, --security-version) cannot \
         be checked",
    ));
    // MarbleRun's default: an era-config.json in the working directory is an expectation too.
    std::fs::copy(&era, dir.path().join("era-config.json")).unwrap();
    root_without_quote(dir.path(), &addr, &["--insecure-simulation"])
        .code(5)
        .stderr(contains("the expected identity (from ./era-config.json)"));
    std::fs::remove_file(dir.path().join("era-config.json")).unwrap();
    // A nonce asks for a fresh quote.
    root_without_quote(
        dir.path(),
        &addr,
        &["--insecure-simulation", "--nonce", "fresh"],
    )
    .code(5)
    .stderr(contains("the nonce \"fresh\" cannot be bound to it"));
    assert!(
        !dir.path().join("pin.pem").exists(),
        "a refused coordinator is not pinned"
    );
}

#[test]
fn a_missing_quote_fails_against_a_pinned_identity_unless_trusting_a_new_coordinator() {
    let dir = tempfile::tempdir().unwrap();
    let addr = fake_coordinator_quoting(true, None);
    let pinned = dir.path().join("pin.pem.identity.json");
    std::fs::write(
        &pinned,
        format!(
            r#"{{"UniqueID":"{}","SignerID":"{}","ProductID":3,"SecurityVersion":2,"Debug":false}}"#,
            "ab".repeat(32),
            "cd".repeat(32)
        ),
    )
    .unwrap();

    root_without_quote(dir.path(), &addr, &["--insecure-simulation"])
        .code(5)
        .stderr(contains(format!(
            "sent no quote, so the identity pinned in {} cannot be checked",
            pinned.display()
        )))
        .stderr(contains("pass --trust-new-coordinator"));
    root_without_quote(
        dir.path(),
        &addr,
        &["--insecure-simulation", "--trust-new-coordinator"],
    )
    .code(0)
    .stderr(contains("sent no quote; accepted"));
}

#[test]
fn recover_never_sends_a_secret_to_a_coordinator_without_a_quote() {
    let dir = tempfile::tempdir().unwrap();
    let addr = fake_coordinator_quoting(true, None);
    let (key, _, _) = crate::support::rsa_key(dir.path(), "holder");
    let secret = crate::support::file(dir.path(), "secret.bin", [7u8; 32]);
    let recover = |extra: &[&str]| {
        quarry_in(dir.path())
            .arg("recover")
            .arg(&secret)
            .arg(&addr)
            .arg("--key")
            .arg(&key)
            .args(["--insecure-simulation"])
            .args(extra)
            .assert()
    };
    recover(&[])
        .code(1)
        .stderr(contains("no expected coordinator identity to check"));
    recover(&["--unique-id", &"ab".repeat(32)])
        .code(5)
        .stderr(contains("sent no quote, so the expected identity"));
}
