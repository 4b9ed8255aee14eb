//! Fuzzes the MAA `attest/SgxEnclave` body: JSON, base64url fields, the quote parser and the
//! runtime-data binding. Any input must give a token-ready request or a precise error.

#![no_main]

use libfuzzer_sys::fuzz_target;
use quarry_azure_emulator::maa::AttestSgxRequest;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = AttestSgxRequest::from_json(data) {
        if let Err(e) = request.validate() {
            // Every refusal maps to one of MAA's error codes and renders a message.
            assert!(!e.code().is_empty());
            let _ = e.to_string();
        }
    }
});
