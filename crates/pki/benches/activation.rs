//! The cryptography of one Marble activation, measured so that the end-to-end activation
//! benchmark can report its throughput against this cost.
//!
//! `marble_credentials` is what every activation pays: parse and verify the CSR, generate a
//! P-384 key, sign the certificate with the intermediate key, export PKCS#8. The other
//! benchmarks are the parts and the optional per-Marble secrets (a unique symmetric key, a
//! unique certificate secret), to read ratios against.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use quarry_pki::secrets::{CertKeyType, EcdsaCurve, derive_marble_key};
use quarry_pki::template::CertTemplate;
use quarry_pki::{CaKey, CaNames, CoordinatorCa, SystemRandom};
use rcgen::{CertificateParams, KeyPair};
use time::OffsetDateTime;

fn marble_csr() -> Vec<u8> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("CSR key");
    let params = CertificateParams::new(vec!["marble.local".to_owned(), "10.0.0.1".to_owned()])
        .expect("CSR params");
    params.serialize_request(&key).expect("CSR").der().to_vec()
}

fn activation(c: &mut Criterion) {
    let now = OffsetDateTime::now_utc();
    let ca = CoordinatorCa::generate(&CaNames::default(), now, &SystemRandom).expect("CA");
    let csr = marble_csr();
    let uuid = [0x42u8; 16];
    let root_secret = [7u8; 32];

    let mut group = c.benchmark_group("activation");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("marble_credentials", |b| {
        b.iter(|| {
            ca.issue_marble_certificate(black_box(&csr), "backend", &uuid, now, &SystemRandom)
                .expect("issue")
        })
    });
    group.bench_function("csr_parse_and_verify", |b| {
        use x509_parser::prelude::FromDer;
        b.iter(|| {
            let (_, request) =
                x509_parser::certification_request::X509CertificationRequest::from_der(black_box(
                    &csr,
                ))
                .expect("parse");
            request.verify_signature().expect("verify")
        })
    });
    group.bench_function("p384_key_generation", |b| {
        b.iter(|| CaKey::generate().expect("key"))
    });
    group.bench_function("p384_sign", |b| {
        let key = ca.intermediate_key();
        b.iter(|| key.sign_sha384(black_box(b"to be signed")).expect("sign"))
    });
    group.bench_function("unique_symmetric_key_256", |b| {
        b.iter(|| {
            derive_marble_key(
                black_box(&root_secret),
                &uuid,
                "ProtectedFilesKey",
                "backend",
                256,
            )
            .expect("derive")
        })
    });
    group.bench_function("unique_cert_secret_p256", |b| {
        let template = CertTemplate::default();
        b.iter(|| {
            ca.issue_secret_certificate(
                CertKeyType::Ecdsa(EcdsaCurve::P256),
                &template,
                0,
                now,
                &SystemRandom,
            )
            .expect("issue")
        })
    });
    group.finish();
}

criterion_group!(benches, activation);
criterion_main!(benches);
