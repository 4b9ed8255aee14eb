//! Every parser of the sealed files on arbitrary bytes: none may panic, and what they accept
//! must lie inside the input.

#![no_main]

use libfuzzer_sys::fuzz_target;
use quarry_store::State;
use quarry_store::frame::{self, EnclaveFrame, Frame, HsmFrame, SealedData};

fuzz_target!(|data: &[u8]| {
    if let Ok(parsed) = SealedData::parse(data) {
        assert!(data.starts_with(parsed.header));
        assert!(parsed.header.len() + parsed.ciphertext.len() + 12 == data.len());
        assert!(parsed.recovery_data.len() + 14 == parsed.header.len());
    }
    if let Ok(outer) = frame::parse_sealed_key(data) {
        if let Frame::Hsm(hsm) = outer {
            assert!(data[10..].starts_with(hsm.header));
            assert!(!hsm.key.vault_host.is_empty());
        }
    }
    if let Ok(Frame::Hsm(hsm)) = Frame::parse(data) {
        assert_eq!(hsm.header.len() + hsm.ciphertext.len(), data.len());
    }
    let _ = HsmFrame::parse(data);
    if let Ok(enclave) = EnclaveFrame::parse(data) {
        assert_eq!(enclave.ciphertext.len(), 48);
    }
    if let Ok(state) = State::decode(data) {
        assert!(state.len() <= data.len() / 8);
    }
});
