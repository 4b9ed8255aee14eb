//! Client API request bodies and queries come from anyone: any bytes must parse or give a
//! JSend error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quarry_coordinator::api::v2::{manifest, quote, recover};

fuzz_target!(|data: &[u8]| {
    let _ = manifest::parse_set_manifest(data);
    let _ = recover::parse_upload(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = quote::nonce(Some(text));
    }
});
