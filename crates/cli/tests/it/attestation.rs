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

/// A TLS server presenting `tls_cert` that answers every request with the quote response
/// `{cert: intermediate + root, quote}`; returns its address.
fn fake_coordinator(chain_root_is_tls_cert: bool) -> String {
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
    let quote = std::fs::read(testdata("sgx/dcap-qvl-sample.quote")).unwrap();
    let body = json!({
        "status": "success",
        "data": {
            "cert": format!("{}{}", intermediate.pem(), root.pem()),
            "quote": base64::engine::general_purpose::STANDARD.encode(quote),
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
