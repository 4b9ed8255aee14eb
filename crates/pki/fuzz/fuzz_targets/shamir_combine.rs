//! Uploaded recovery shares are untrusted: combining any set of byte strings must return a
//! secret or an error, and splitting then combining must round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quarry_pki::SystemRandom;
use quarry_pki::shamir::{combine, split};

fuzz_target!(|data: &[u8]| {
    let Some((&shape, rest)) = data.split_first() else { return };
    let len = usize::from(shape % 8) + 1;
    let shares: Vec<&[u8]> = rest.chunks(len).collect();
    let _ = combine(&shares);

    if !rest.is_empty() {
        let threshold = usize::from(shape % 4) + 2;
        let parts = threshold + usize::from(shape >> 6);
        let split_shares = split(rest, parts, threshold, &SystemRandom).expect("valid split");
        let chosen: Vec<&[u8]> = split_shares[..threshold].iter().map(|s| &s[..]).collect();
        assert_eq!(combine(&chosen).expect("combine").as_slice(), rest);
    }
});
