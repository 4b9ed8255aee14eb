//! Fuzzes the SGX quote parser: any input either fails with an error or parses to a quote that
//! encodes back to the same DCAP bytes; the certificate-chain and claim accessors never panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use quarry_enclave::claims;
use quarry_enclave::quote::{OE_HEADER_SIZE, Quote};

fuzz_target!(|data: &[u8]| {
    let Ok(quote) = Quote::parse(data) else { return };
    let encoded = quote.encode();
    let raw = if quote.open_enclave_header { &data[OE_HEADER_SIZE..] } else { data };
    assert_eq!(encoded, raw, "parse and encode must round-trip");
    assert_eq!(Quote::parse(&encoded).map(|q| q.report_body), Ok(quote.report_body.clone()));
    if let Ok(chain) = quote.pck_chain() {
        let _ = chain.fmspc();
        let _ = chain.ca();
    }
    let _ = claims::report_claims(&quote.report_body);
});
