//! Fuzzes compact JWT parsing (client assertions, access tokens, MAA tokens handed back).

#![no_main]

use libfuzzer_sys::fuzz_target;
use quarry_azure_emulator::jose::UnverifiedJwt;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(jwt) = UnverifiedJwt::parse(text)
    {
        let _ = (
            jwt.alg(),
            jwt.kid(),
            jwt.claim_str("iss"),
            jwt.claim_i64("exp"),
        );
    }
});
