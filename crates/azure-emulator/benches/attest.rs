//! Cost of an MAA attestation in the emulator, against the cost of what it cannot avoid: the
//! RS256 signature of the token and the parse of the quote. Report ratios, not times.

use criterion::{Criterion, criterion_group, criterion_main};
use quarry_azure_emulator::jose::{RsaSigningKey, b64url};
use quarry_azure_emulator::maa::{AttestSgxRequest, Maa};
use quarry_azure_emulator::persist::StateDir;
use quarry_enclave::quote::Quote;

fn bench(c: &mut Criterion) {
    let quote = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/sgx/dcap-qvl-sample.quote"),
    )
    .expect("the real quote in testdata");
    let dir = tempfile::tempdir().expect("temporary directory");
    let state = StateDir::open(dir.path()).expect("state directory");
    let maa = Maa::open(&state, "https://localhost:8443").expect("maa instance");
    let body = format!(r#"{{"quote":"{}"}}"#, b64url(&quote));
    let key = RsaSigningKey::generate().expect("rsa key");
    let message = vec![b'a'; 2048];

    c.bench_function("attest_real_quote", |b| {
        b.iter(|| {
            let request = AttestSgxRequest::from_json(body.as_bytes()).expect("request");
            maa.attest_sgx(&request, None).expect("token")
        })
    });
    c.bench_function("rs256_sign_2k", |b| {
        b.iter(|| key.sign_rs256(&message).expect("sign"))
    });
    c.bench_function("quote_parse", |b| {
        b.iter(|| Quote::parse(&quote).expect("quote"))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
