//! Fuzzes the Entra ID token request form up to the point where a principal is looked up.

#![no_main]

use libfuzzer_sys::fuzz_target;
use quarry_azure_emulator::entra::routes::parse_token_form;

fuzz_target!(|data: &[u8]| {
    let _ = parse_token_form(data);
});
