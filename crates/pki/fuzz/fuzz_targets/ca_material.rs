//! Sealed CA material is read back at start-up: any bytes must restore a CA or give an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quarry_pki::{CaMaterial, CoordinatorCa};

fuzz_target!(|data: &[u8]| {
    if let Ok(material) = CaMaterial::from_bytes(data) {
        let _ = CoordinatorCa::from_material(&material);
    }
});
