//! Fuzzes the unwrap of a `key_hsm` ciphertext (`RSA-OAEP || AES-KWP`) with every mechanism:
//! any input must give a key or an error, never a panic.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use quarry_azure::{WrapAlgorithm, WrappingKey, WrappingKeySize};

fuzz_target!(|data: &[u8]| {
    static KEY: OnceLock<WrappingKey> = OnceLock::new();
    let key = KEY.get_or_init(|| {
        WrappingKey::generate(WrappingKeySize::Rsa2048).expect("key generation works")
    });
    for algorithm in [
        WrapAlgorithm::CkmRsaAesKeyWrap,
        WrapAlgorithm::RsaAesKeyWrap256,
        WrapAlgorithm::RsaAesKeyWrap384,
    ] {
        let _ = key.unwrap(algorithm, data);
    }
});
