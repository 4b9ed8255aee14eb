//! The recovery data is read from `sealed_data` in the clear before anything is decrypted: any
//! bytes must decode or give an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quarry_coordinator::core::keys::RecoveryData;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(parsed)) = RecoveryData::from_bytes(data) {
        assert_eq!(RecoveryData::from_bytes(&parsed.to_bytes()).unwrap(), Some(parsed));
    }
});
