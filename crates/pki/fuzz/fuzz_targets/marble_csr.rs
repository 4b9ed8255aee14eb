//! A Marble's CSR is untrusted input at activation: any bytes must give a certificate or an
//! error, never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use quarry_pki::{CaNames, CoordinatorCa, SystemRandom};
use time::OffsetDateTime;

fn ca() -> &'static CoordinatorCa {
    static CA: OnceLock<CoordinatorCa> = OnceLock::new();
    CA.get_or_init(|| {
        CoordinatorCa::generate(&CaNames::default(), OffsetDateTime::UNIX_EPOCH, &SystemRandom)
            .expect("generate CA")
    })
}

fuzz_target!(|data: &[u8]| {
    let (marble_type, csr) = data.split_at(data.len().min(8));
    let marble_type = String::from_utf8_lossy(marble_type);
    let _ = ca().issue_marble_certificate(
        csr,
        &marble_type,
        &[1; 16],
        OffsetDateTime::UNIX_EPOCH,
        &SystemRandom,
    );
});
