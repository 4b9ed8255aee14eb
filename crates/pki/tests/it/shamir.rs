//! Shamir sharing in HashiCorp Vault's layout: known vectors, round trips, edge cases.

use quarry_pki::SystemRandom;
use quarry_pki::shamir::{ShamirError, combine, split};

use crate::support::FixedRng;

/// Vectors worked out by hand from the documented layout (y bytes, then x) and the AES field.
#[test]
fn known_vectors_combine() {
    // f(x) = 0x2a + 0x57·x; 0x57·0x83 = 0xc1 and 0x57·0x13 = 0xfe (FIPS-197 4.2), so
    // f(0x83) = 0xeb and f(0x13) = 0xd4. With the other common field (0x11D) this fails.
    assert_eq!(
        combine(&[&[0xeb, 0x83], &[0xd4, 0x13]]).unwrap().as_slice(),
        [0x2a]
    );
    // f(x) = 0x42 + x + x²: f(1) = 0x42, f(2) = 0x42^2^4 = 0x44, f(3) = 0x42^3^5 = 0x44.
    let shares: [&[u8]; 3] = [&[0x42, 0x01], &[0x44, 0x02], &[0x44, 0x03]];
    assert_eq!(combine(&shares).unwrap().as_slice(), [0x42]);
    // Two bytes: byte 0 with f(x) = 0x01 + 0x02·x, byte 1 with g(x) = 0xff + 0x80·x.
    // At x = 3: f = 0x01^0x06 = 0x07, g = 0xff^(0x80·3 = 0x80^0x1b = 0x9b) = 0x64.
    // At x = 4: f = 0x01^0x08 = 0x09, g = 0xff^(0x80·4 = 0x36) = 0xc9.
    let shares: [&[u8]; 2] = [&[0x07, 0x64, 0x03], &[0x09, 0xc9, 0x04]];
    assert_eq!(combine(&shares).unwrap().as_slice(), [0x01, 0xff]);
}

#[test]
fn shares_have_vault_layout() {
    let secret = [0x11u8; 32];
    let shares = split(&secret, 5, 3, &SystemRandom).unwrap();
    let mut xs: Vec<u8> = shares.iter().map(|s| s[32]).collect();
    assert!(shares.iter().all(|s| s.len() == 33));
    assert!(xs.iter().all(|&x| x != 0));
    xs.sort_unstable();
    xs.dedup();
    assert_eq!(xs.len(), 5, "x-coordinates are distinct");
}

#[test]
fn round_trips_for_thresholds_two_to_five() {
    for threshold in 2..=5usize {
        for parts in [threshold, threshold + 1, 10, 255] {
            for len in [1usize, 32, 100] {
                let secret: Vec<u8> = (0..len).map(|i| (i * 37 + threshold) as u8).collect();
                let shares = split(&secret, parts, threshold, &SystemRandom).unwrap();
                assert_eq!(shares.len(), parts);
                let subsets = [
                    (0..threshold).collect::<Vec<_>>(),
                    (parts - threshold..parts).collect(),
                    (0..parts)
                        .step_by(parts / threshold)
                        .take(threshold)
                        .collect(),
                    (0..parts).collect(),
                ];
                for subset in subsets {
                    let chosen: Vec<&[u8]> = subset.iter().map(|&i| &shares[i][..]).collect();
                    let recovered = combine(&chosen).unwrap();
                    assert_eq!(
                        recovered.as_slice(),
                        secret,
                        "t={threshold} n={parts} {subset:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn threshold_one_is_refused() {
    // Vault and MarbleRun refuse it: every share would contain the secret in clear.
    assert_eq!(
        split(b"k", 3, 1, &SystemRandom).unwrap_err(),
        ShamirError::ThresholdTooSmall(1)
    );
    assert_eq!(
        split(b"k", 3, 0, &SystemRandom).unwrap_err(),
        ShamirError::ThresholdTooSmall(0)
    );
}

#[test]
fn fewer_shares_than_the_threshold_give_a_wrong_secret() {
    let secret = [0xa5u8; 32];
    let shares = split(&secret, 5, 3, &FixedRng::new(99)).unwrap();
    let two = combine(&[&shares[0], &shares[1]]).unwrap();
    assert_ne!(two.as_slice(), secret);
}

#[test]
fn split_is_reproducible_with_a_fixed_rng() {
    let a = split(b"secret", 4, 2, &FixedRng::new(7)).unwrap();
    let b = split(b"secret", 4, 2, &FixedRng::new(7)).unwrap();
    let c = split(b"secret", 4, 2, &FixedRng::new(8)).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn all_255_coordinates_are_usable() {
    let secret = b"thirty-two bytes of key material";
    let shares = split(secret, 255, 255, &SystemRandom).unwrap();
    let mut xs: Vec<u8> = shares.iter().map(|s| s[secret.len()]).collect();
    xs.sort_unstable();
    assert_eq!(xs, (1..=255).collect::<Vec<u8>>());
    let all: Vec<&[u8]> = shares.iter().map(|s| &s[..]).collect();
    assert_eq!(combine(&all).unwrap().as_slice(), secret);
    // 254 of 255 needed shares are not enough
    assert_ne!(combine(&all[1..]).unwrap().as_slice(), secret);

    let two_of_255 = split(secret, 255, 2, &SystemRandom).unwrap();
    assert_eq!(
        combine(&[&two_of_255[17], &two_of_255[254]])
            .unwrap()
            .as_slice(),
        secret
    );
}

#[test]
fn split_errors() {
    assert_eq!(
        split(b"", 3, 2, &SystemRandom).unwrap_err(),
        ShamirError::EmptySecret
    );
    assert_eq!(
        split(b"k", 2, 3, &SystemRandom).unwrap_err(),
        ShamirError::ThresholdAboveParts {
            threshold: 3,
            parts: 2
        }
    );
    assert_eq!(
        split(b"k", 256, 2, &SystemRandom).unwrap_err(),
        ShamirError::TooManyParts(256)
    );
}

#[test]
fn combine_errors() {
    let shares = split(b"secret", 3, 2, &SystemRandom).unwrap();
    assert_eq!(
        combine(&[&shares[0]]).unwrap_err(),
        ShamirError::TooFewShares(1)
    );
    assert_eq!(combine(&[]).unwrap_err(), ShamirError::TooFewShares(0));
    let x = shares[1][6];
    assert_eq!(
        combine(&[&shares[0], &shares[1], &shares[1]]).unwrap_err(),
        ShamirError::DuplicateShare {
            first: 1,
            second: 2,
            x
        }
    );
    assert_eq!(
        combine(&[&shares[0], &shares[1][1..]]).unwrap_err(),
        ShamirError::InconsistentLengths {
            index: 1,
            len: 6,
            expected: 7
        }
    );
    assert_eq!(
        combine(&[&[1], &[2]]).unwrap_err(),
        ShamirError::ShareTooShort { index: 0, len: 1 }
    );
    assert_eq!(
        combine(&[&[1, 0], &[2, 5]]).unwrap_err(),
        ShamirError::ZeroCoordinate(0)
    );
    let err = ShamirError::DuplicateShare {
        first: 0,
        second: 1,
        x: 9,
    }
    .to_string();
    assert_eq!(err, "shares 0 and 1 have the same x-coordinate 9");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Any `threshold` or more of the shares, in any order, give the secret back.
    #[test]
    fn any_large_enough_subset_recovers_the_secret(
        secret in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..64),
        threshold in 2usize..=8,
        extra in 0usize..=12,
        seed in proptest::prelude::any::<u64>(),
        order in proptest::collection::vec(proptest::prelude::any::<proptest::sample::Index>(), 20),
    ) {
        let parts = threshold + extra;
        let shares = split(&secret, parts, threshold, &FixedRng::new(seed)).unwrap();
        let mut indices: Vec<usize> = (0..parts).collect();
        for (i, pick) in order.iter().enumerate().take(parts) {
            let j = i + pick.index(parts - i);
            indices.swap(i, j);
        }
        let take = threshold + extra / 2;
        let chosen: Vec<&[u8]> = indices[..take].iter().map(|&i| &shares[i][..]).collect();
        let recovered = combine(&chosen).unwrap();
        proptest::prop_assert_eq!(recovered.as_slice(), &secret[..]);
    }
}
