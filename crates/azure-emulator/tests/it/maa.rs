//! MAA: real quotes, the runtime-data binding, the real token's shape, issuer configuration
//! and the errors for bad input.

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use quarry_enclave::quote::Quote;
use serde_json::{Map, Value, json};

use crate::common::{Emu, b64url, jwt_parts, testdata};

fn real_quote() -> Vec<u8> {
    std::fs::read(testdata("sgx/dcap-qvl-sample.quote")).unwrap()
}

/// The real quote with its report data replaced (SHA-256 of `runtime` then zeros), as an
/// enclave that bound `runtime` would produce (the emulator does not check DCAP signatures).
fn quote_binding(runtime: &[u8]) -> Vec<u8> {
    let mut quote = Quote::parse(&real_quote()).unwrap();
    let mut report_data = [0u8; 64];
    report_data[..32].copy_from_slice(digest::digest(&digest::SHA256, runtime).as_ref());
    quote.report_body.report_data = report_data;
    quote.encode()
}

/// Verifies a token with the key `/certs` publishes for its `kid`, with an independent JWT
/// implementation, and checks the header's `jku`.
async fn verify_with_certs(emu: &Emu, token: &str) -> Map<String, Value> {
    let certs = emu.get_json("/certs").await;
    let (header, _) = jwt_parts(token);
    let key = certs["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("the token's kid is in /certs");
    let der = STANDARD.decode(key["x5c"][0].as_str().unwrap()).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let decoding = DecodingKey::from_rsa_der(&cert.public_key().subject_public_key.data);
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_aud = false;
    jsonwebtoken::decode::<Map<String, Value>>(token, &decoding, &validation)
        .unwrap()
        .claims
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Claim names with JSON types, one level into objects (`x-ms-policy.svn`).
fn shape(claims: &Map<String, Value>) -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    for (name, value) in claims {
        out.push((name.clone(), json_type(value)));
        if let Value::Object(inner) = value {
            for (k, v) in inner {
                out.push((format!("{name}.{k}"), json_type(v)));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn real_quote_without_runtime_data_yields_the_readme_values() {
    let emu = Emu::start(&[]);
    let (status, body) = emu.attest(&json!({ "quote": b64url(&real_quote()) })).await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap();
    let claims = verify_with_certs(&emu, token).await;

    assert_eq!(
        claims["x-ms-sgx-mrenclave"],
        "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
    );
    assert_eq!(
        claims["x-ms-sgx-mrsigner"],
        "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"
    );
    assert_eq!(claims["x-ms-sgx-product-id"], 0);
    assert_eq!(claims["x-ms-sgx-svn"], 0);
    assert_eq!(claims["x-ms-sgx-is-debuggable"], false);
    let mut report_data = b"Hello, world!".to_vec();
    report_data.resize(64, 0);
    assert_eq!(claims["x-ms-sgx-report-data"], hex::encode(report_data));
    assert_eq!(claims["iss"], emu.base.as_str());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        28_800
    );
    for absent in ["x-ms-runtime", "x-ms-sgx-ehd", "nonce"] {
        assert!(!claims.contains_key(absent), "{absent}");
    }
    let (header, _) = jwt_parts(token);
    assert_eq!(header["jku"], format!("{}/certs", emu.base));
}

#[tokio::test]
async fn tokens_have_the_real_maa_tokens_header_and_claim_types() {
    let real = std::fs::read_to_string(testdata("azure/maa-sgx-token.jwt")).unwrap();
    let (real_header, real_claims) = jwt_parts(real.trim());

    // The real token attested the 25 bytes below as Binary runtime data.
    let runtime = b"This is some runtime data";
    let emu = Emu::start(&[]);
    let (status, body) = emu
        .attest(&json!({
            "quote": b64url(&quote_binding(runtime)),
            "runtimeData": { "data": b64url(runtime), "dataType": "Binary" },
        }))
        .await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap();
    let (header, claims) = jwt_parts(token);

    let keys = |m: &Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        keys(&header),
        keys(&real_header),
        "header members and their order"
    );
    assert_eq!(shape(&header), shape(&real_header));
    assert_eq!(
        shape(&claims),
        shape(&real_claims),
        "claim names and json types"
    );
    assert_eq!(keys(&claims), keys(&real_claims), "claim order");

    // The values that the inputs determine agree with the real token.
    for name in [
        "x-ms-sgx-ehd",
        "maa-ehd",
        "aas-ehd",
        "x-ms-attestation-type",
        "x-ms-ver",
        "tee",
    ] {
        assert_eq!(claims[name], real_claims[name], "{name}");
    }
    assert_eq!(
        claims["x-ms-sgx-report-data"].as_str().unwrap()[..64],
        real_claims["x-ms-sgx-report-data"].as_str().unwrap()[..64]
    );
    let kid = header["kid"].as_str().unwrap();
    assert_eq!(kid.len(), real_header["kid"].as_str().unwrap().len());
    assert!(
        STANDARD.decode(kid).is_ok(),
        "kid is standard base64 like MAA's"
    );
}

#[tokio::test]
async fn json_runtime_data_becomes_x_ms_runtime() {
    let emu = Emu::start(&[]);
    let runtime = br#"{"keys":[{"kid":"enclave-kek","kty":"RSA","key_ops":["encrypt"],"e":"AQAB","n":"sXch"}]}"#;
    let (status, body) = emu
        .attest(&json!({
            "quote": b64url(&quote_binding(runtime)),
            "runtimeData": { "data": b64url(runtime), "dataType": "JSON" },
            "nonce": "n-1",
        }))
        .await;
    assert_eq!(status, 200, "{body}");
    let claims = verify_with_certs(&emu, body["token"].as_str().unwrap()).await;
    let expected: Value = serde_json::from_slice(runtime).unwrap();
    assert_eq!(claims["x-ms-runtime"], expected);
    assert_eq!(claims["x-ms-runtime"]["keys"][0]["kid"], "enclave-kek");
    assert_eq!(claims["x-ms-sgx-ehd"], b64url(runtime));
    assert_eq!(claims["nonce"], "n-1");
}

#[tokio::test]
async fn issuer_follows_the_configuration_while_running() {
    let emu = Emu::start(&[]);
    let authority = "https://shareduks.uks.attest.azure.net";
    let shown = emu.cli(&["maa", "set-issuer", authority]);
    assert_eq!(shown["issuer"], authority);

    let (status, body) = emu.attest(&json!({ "quote": b64url(&real_quote()) })).await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap();
    let (header, claims) = jwt_parts(token);
    assert_eq!(claims["iss"], authority);
    assert_eq!(header["jku"], format!("{authority}/certs"));
    verify_with_certs(&emu, token).await;

    let meta = emu.get_json("/.well-known/openid-configuration").await;
    assert_eq!(meta["issuer"], authority);
    assert_eq!(meta["jwks_uri"], format!("{}/certs", emu.base));

    let out = emu.cli_raw(&[
        "maa",
        "set-issuer",
        "https://shareduks.uks.attest.azure.net/",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must not end with '/'"));
}

#[tokio::test]
async fn older_api_version_is_accepted() {
    let emu = Emu::start(&[]);
    let body = json!({ "quote": b64url(&real_quote()) }).to_string();
    let (status, _) = emu.attest_raw("?api-version=2020-10-01", body).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn bad_input_gets_maas_errors() {
    let emu = Emu::start(&[]);
    let quote = real_quote();
    let check = |(status, body): (u16, Value), expected: u16, code: &str, needle: &str| {
        assert_eq!(status, expected, "{body}");
        assert_eq!(body["error"]["code"], code, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    };

    let garbage = json!({ "quote": b64url(b"definitely not an sgx quote, just some bytes") });
    check(emu.attest(&garbage).await, 400, "InvalidQuote", "quote");
    let truncated = json!({ "quote": b64url(&quote[..1000]) });
    check(
        emu.attest(&truncated).await,
        400,
        "InvalidQuote",
        "truncated",
    );
    let standard = json!({ "quote": STANDARD.encode(&quote) });
    check(
        emu.attest(&standard).await,
        400,
        "InvalidParameter",
        "standard base64",
    );
    check(
        emu.attest(&json!({})).await,
        400,
        "InvalidParameter",
        "no quote",
    );
    let mismatch = json!({
        "quote": b64url(&quote),
        "runtimeData": { "data": b64url(b"other data"), "dataType": "Binary" },
    });
    check(
        emu.attest(&mismatch).await,
        400,
        "InvalidRuntimeData",
        "does not match",
    );
    let bad_type = json!({
        "quote": b64url(&quote),
        "runtimeData": { "data": b64url(b"x"), "dataType": "Text" },
    });
    check(
        emu.attest(&bad_type).await,
        400,
        "InvalidParameter",
        "dataType",
    );
    let runtime = b"[1,2]";
    let not_object = json!({
        "quote": b64url(&quote_binding(runtime)),
        "runtimeData": { "data": b64url(runtime), "dataType": "JSON" },
    });
    check(
        emu.attest(&not_object).await,
        400,
        "InvalidParameter",
        "not a JSON object",
    );
    let wrong_type = json!({ "quote": 42 });
    check(
        emu.attest(&wrong_type).await,
        400,
        "InvalidParameter",
        "attestation request",
    );
    check(
        emu.attest_raw("?api-version=2022-08-01", "{not json".into())
            .await,
        400,
        "InvalidParameter",
        "attestation request",
    );
    check(
        emu.attest_raw("", garbage.to_string()).await,
        400,
        "MissingApiVersionParameter",
        "api-version",
    );
    check(
        emu.attest_raw("?api-version=2018-09-01-preview", garbage.to_string())
            .await,
        400,
        "InvalidApiVersionParameter",
        "2018-09-01-preview",
    );
    check(
        emu.attest_raw(
            "?api-version=2022-08-01&api-version=2020-10-01",
            garbage.to_string(),
        )
        .await,
        400,
        "AmbiguousApiVersion",
        "'2022-08-01', '2020-10-01'",
    );
    // The same value twice is one value: the request gets as far as the quote.
    check(
        emu.attest_raw(
            "?api-version=2022-08-01&api-version=2022-08-01",
            garbage.to_string(),
        )
        .await,
        400,
        "InvalidQuote",
        "quote",
    );
    let huge = json!({ "quote": "A".repeat(2 * 1024 * 1024) }).to_string();
    check(
        emu.attest_raw("?api-version=2022-08-01", huge).await,
        413,
        "RequestEntityTooLarge",
        "limit",
    );

    let r = emu
        .client
        .get(emu.url("/attest/SgxEnclave?api-version=2022-08-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
}

#[tokio::test]
async fn dcap_verification_with_collateral_reports_its_hashes() {
    let collateral_path = testdata("sgx/dcap-qvl-sample.collateral.json");
    let collateral: Value =
        serde_json::from_slice(&std::fs::read(&collateral_path).unwrap()).unwrap();
    let sha = |bytes: &[u8]| hex::encode(digest::digest(&digest::SHA256, bytes).as_ref());
    // 2025-07-01T00:00:00Z lies inside the collateral's validity.
    let inside = "1751328000";
    let path = collateral_path.to_str().unwrap();
    let emu = Emu::start(&["--dcap-collateral", path, "--dcap-fixed-time", inside]);

    let quote = real_quote();
    let (status, body) = emu.attest(&json!({ "quote": b64url(&quote) })).await;
    assert_eq!(status, 200, "{body}");
    let claims = verify_with_certs(&emu, body["token"].as_str().unwrap()).await;
    let c = &claims["x-ms-sgx-collateral"];
    assert_eq!(c["quotehash"], sha(&quote));
    assert_eq!(
        c["tcbinfohash"],
        sha(collateral["tcb_info"].as_str().unwrap().as_bytes())
    );
    assert_eq!(
        c["qeidhash"],
        sha(collateral["qe_identity"].as_str().unwrap().as_bytes())
    );
    let root_crl = hex::decode(collateral["root_ca_crl"].as_str().unwrap()).unwrap();
    assert_eq!(c["qeidcrlhash"], sha(&root_crl));
    assert_eq!(claims["maa-attestationcollateral"], *c);

    // The signature covers the report body: a changed report data no longer verifies.
    let tampered = json!({
        "quote": b64url(&quote_binding(b"runtime")),
        "runtimeData": { "data": b64url(b"runtime"), "dataType": "Binary" },
    });
    let (status, body) = emu.attest(&tampered).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "InvalidQuote");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("collateral"),
        "{body}"
    );
}

#[tokio::test]
async fn dcap_verification_fails_outside_the_collateral_validity() {
    let path = testdata("sgx/dcap-qvl-sample.collateral.json");
    // 2025-08-01T00:00:00Z is after the collateral's next update.
    let emu = Emu::start(&[
        "--dcap-collateral",
        path.to_str().unwrap(),
        "--dcap-fixed-time",
        "1754006400",
    ]);
    let (status, body) = emu.attest(&json!({ "quote": b64url(&real_quote()) })).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{body}"
    );
}

/// An HTTP/1.1 client that writes its whole oversized body before reading the answer (as
/// Python's `http.client` does) gets the 413, not a reset connection.
#[test]
fn oversized_body_written_in_full_over_http1_gets_the_413() {
    use std::io::{Read as _, Write as _};
    use std::sync::Arc;

    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;

    let emu = Emu::start(&[]);
    let ca = std::fs::read(emu.state_dir().join("ca.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = "localhost".try_into().unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let port = emu.base.rsplit(':').next().unwrap();
    let tcp = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);

    let body = json!({ "quote": "A".repeat(12 * 1024 * 1024) }).to_string();
    let head = format!(
        "POST /attest/SgxEnclave?api-version=2022-08-01 HTTP/1.1\r\nhost: localhost:{port}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).unwrap();
    tls.write_all(body.as_bytes())
        .expect("the whole body is accepted");
    tls.flush().unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("RequestEntityTooLarge") {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) => panic!("reading the answer: {e}"),
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("RequestEntityTooLarge"), "{answer}");
}
