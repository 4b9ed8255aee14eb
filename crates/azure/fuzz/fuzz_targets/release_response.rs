//! Fuzzes the parsing and checking of a Managed HSM release response (compact JWS, its header,
//! the `x5c` certificates, the payload and `key_hsm`): any input must give a verdict, never a
//! panic.

#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use quarry_azure::{Expected, TrustStore, WrapAlgorithm, verify_release};
use rustls_pki_types::UnixTime;

fuzz_target!(|data: &[u8]| {
    static TRUST: OnceLock<TrustStore> = OnceLock::new();
    let trust = TRUST.get_or_init(TrustStore::system);
    let Ok(jws) = std::str::from_utf8(data) else { return };
    let expected = Expected {
        host: "malegeskrkvhsm.managedhsm.azure.net",
        key_name: "k",
        key_version: None,
        nonce: Some("nonce"),
        enc: WrapAlgorithm::RsaAesKeyWrap384,
        wrapping_kid: Some("kid"),
    };
    let at = UnixTime::since_unix_epoch(Duration::from_secs(1_640_995_200));
    let _ = verify_release(jws, &expected, trust, at);
});
