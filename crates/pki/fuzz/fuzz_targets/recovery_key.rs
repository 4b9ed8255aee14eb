//! Recovery keys come from the manifest: any text must parse to a key or an error, and
//! signature checks on any bytes must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quarry_pki::recovery::RecoveryPublicKey;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(key) = RecoveryPublicKey::from_pem("fuzz", &text) {
        let _ = key.verify_signature(data, data);
    }
    if let Ok(key) = RecoveryPublicKey::from_spki_der("fuzz", data) {
        let _ = key.encrypt(b"secret");
    }
});
