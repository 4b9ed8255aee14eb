//! Shamir secret sharing over GF(2^8) in HashiCorp Vault's share layout.
//!
//! MarbleRun splits the recovery key with a vendored copy of Vault's `shamir` package, so
//! shares must use exactly that layout to be interchangeable:
//!
//! - arithmetic in GF(2^8) with the AES reduction polynomial x^8 + x^4 + x^3 + x + 1
//!   (0x11B);
//! - for each byte of the secret an independent random polynomial of degree
//!   `threshold − 1` whose constant term is that byte;
//! - a share is the polynomial values at its x-coordinate, one byte per secret byte,
//!   **followed** by the x-coordinate itself (so a share is one byte longer than the
//!   secret);
//! - x-coordinates are distinct, random, in 1..=255; 2 ≤ threshold ≤ parts ≤ 255.
//!
//! Combining interpolates at x = 0 with Lagrange's formula. It cannot tell whether enough
//! shares were given: fewer than the threshold yield a wrong secret, which the caller detects
//! by trying it (MarbleRun test-decrypts the sealed state). Field arithmetic is written
//! without secret-dependent branches or table look-ups.

use zeroize::Zeroizing;

use crate::RandomSource;
use crate::rng::uniform_below;

/// Why a split or combine was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShamirError {
    /// The secret to split is empty.
    #[error("cannot split an empty secret")]
    EmptySecret,
    /// The threshold is below 2 (a threshold of 1 would hand out the secret itself).
    #[error("threshold {0} is below 2")]
    ThresholdTooSmall(usize),
    /// More shares are needed than are made.
    #[error("threshold {threshold} is larger than the number of parts {parts}")]
    ThresholdAboveParts {
        /// Requested threshold.
        threshold: usize,
        /// Requested number of parts.
        parts: usize,
    },
    /// More than 255 parts (x-coordinates are non-zero bytes).
    #[error("{0} parts requested, at most 255 are possible")]
    TooManyParts(usize),
    /// Fewer than two shares were given to combine.
    #[error("{0} shares given, at least 2 are needed")]
    TooFewShares(usize),
    /// A share has no value byte besides its x-coordinate.
    #[error("share {index} is {len} bytes long, at least 2 are needed")]
    ShareTooShort {
        /// Position of the share in the input.
        index: usize,
        /// Its length.
        len: usize,
    },
    /// Shares of different lengths.
    #[error("share {index} is {len} bytes long, share 0 is {expected}")]
    InconsistentLengths {
        /// Position of the offending share.
        index: usize,
        /// Its length.
        len: usize,
        /// Length of the first share.
        expected: usize,
    },
    /// Two shares with the same x-coordinate.
    #[error("shares {first} and {second} have the same x-coordinate {x}")]
    DuplicateShare {
        /// Position of the first share.
        first: usize,
        /// Position of the duplicate.
        second: usize,
        /// The shared x-coordinate.
        x: u8,
    },
    /// A share with x-coordinate 0, which would be the secret itself.
    #[error("share {0} has x-coordinate 0")]
    ZeroCoordinate(usize),
    /// The random number generator failed.
    #[error("random number generator failed")]
    Random,
}

/// Multiplies in GF(2^8) modulo 0x11B, in constant time.
pub(crate) fn gf_mul(a: u8, b: u8) -> u8 {
    let mut a = a;
    let mut product = 0u8;
    for bit in 0..8 {
        // all-ones when the bit of b is set, zero otherwise
        let take = 0u8.wrapping_sub((b >> bit) & 1);
        product ^= a & take;
        let carry = 0u8.wrapping_sub(a >> 7);
        a = (a << 1) ^ (0x1b & carry);
    }
    product
}

/// The multiplicative inverse (a^254); 0 maps to 0.
pub(crate) fn gf_inv(a: u8) -> u8 {
    // a^254 = a^(2+4+8+16+32+64+128)
    let mut result = 1u8;
    let mut square = a;
    for _ in 0..7 {
        square = gf_mul(square, square);
        result = gf_mul(result, square);
    }
    result
}

/// Splits `secret` into `parts` shares of which any `threshold` recover it.
pub fn split(
    secret: &[u8],
    parts: usize,
    threshold: usize,
    rng: &dyn RandomSource,
) -> Result<Vec<Zeroizing<Vec<u8>>>, ShamirError> {
    if secret.is_empty() {
        return Err(ShamirError::EmptySecret);
    }
    if threshold < 2 {
        return Err(ShamirError::ThresholdTooSmall(threshold));
    }
    if parts < threshold {
        return Err(ShamirError::ThresholdAboveParts { threshold, parts });
    }
    if parts > 255 {
        return Err(ShamirError::TooManyParts(parts));
    }

    let xs = distinct_coordinates(parts, rng)?;
    let mut shares: Vec<Zeroizing<Vec<u8>>> = xs
        .iter()
        .map(|&x| {
            let mut share = Zeroizing::new(vec![0u8; secret.len() + 1]);
            share[secret.len()] = x;
            share
        })
        .collect();

    // coefficients[0] is the secret byte, the others are random
    let mut coefficients = Zeroizing::new(vec![0u8; threshold]);
    for (i, &byte) in secret.iter().enumerate() {
        coefficients[0] = byte;
        rng.fill(&mut coefficients[1..])
            .map_err(|_| ShamirError::Random)?;
        for (share, &x) in shares.iter_mut().zip(&xs) {
            share[i] = evaluate(&coefficients, x);
        }
    }
    Ok(shares)
}

/// Recovers the secret from shares made by [`split`] (or by Vault's or MarbleRun's code).
pub fn combine(shares: &[&[u8]]) -> Result<Zeroizing<Vec<u8>>, ShamirError> {
    if shares.len() < 2 {
        return Err(ShamirError::TooFewShares(shares.len()));
    }
    let len = shares[0].len();
    if len < 2 {
        return Err(ShamirError::ShareTooShort { index: 0, len });
    }
    let mut xs = Vec::with_capacity(shares.len());
    for (index, share) in shares.iter().enumerate() {
        if share.len() != len {
            return Err(ShamirError::InconsistentLengths {
                index,
                len: share.len(),
                expected: len,
            });
        }
        let x = share[len - 1];
        if x == 0 {
            return Err(ShamirError::ZeroCoordinate(index));
        }
        if let Some(first) = xs.iter().position(|&seen| seen == x) {
            return Err(ShamirError::DuplicateShare {
                first,
                second: index,
                x,
            });
        }
        xs.push(x);
    }

    // Lagrange basis values at 0 depend only on the x-coordinates.
    let basis: Vec<u8> = (0..xs.len())
        .map(|i| {
            xs.iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .fold(1u8, |acc, (_, &xj)| {
                    gf_mul(acc, gf_mul(xj, gf_inv(xs[i] ^ xj)))
                })
        })
        .collect();

    let mut secret = Zeroizing::new(vec![0u8; len - 1]);
    for (i, byte) in secret.iter_mut().enumerate() {
        *byte = shares
            .iter()
            .zip(&basis)
            .fold(0u8, |acc, (share, &b)| acc ^ gf_mul(share[i], b));
    }
    Ok(secret)
}

/// Horner evaluation of the polynomial with `coefficients` (constant term first) at `x`.
fn evaluate(coefficients: &[u8], x: u8) -> u8 {
    coefficients
        .iter()
        .rev()
        .fold(0u8, |acc, &c| gf_mul(acc, x) ^ c)
}

/// `count` distinct x-coordinates in 1..=255, drawn by a partial Fisher–Yates shuffle.
fn distinct_coordinates(count: usize, rng: &dyn RandomSource) -> Result<Vec<u8>, ShamirError> {
    let mut pool: Vec<u8> = (1..=255).collect();
    for i in 0..count {
        // pick from pool[i..255], which has 255 - i candidates (1..=255 of them)
        let remaining = (255 - i) as u8;
        let pick = i + usize::from(uniform_below(rng, remaining).map_err(|_| ShamirError::Random)?);
        pool.swap(i, pick);
    }
    pool.truncate(count);
    Ok(pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiplication_matches_fips_197_examples() {
        // FIPS-197 section 4.2: {57} • {83} = {c1} and {57} • {13} = {fe}
        assert_eq!(gf_mul(0x57, 0x83), 0xc1);
        assert_eq!(gf_mul(0x57, 0x13), 0xfe);
        assert_eq!(gf_mul(0x57, 0x02), 0xae);
        assert_eq!(gf_mul(0xae, 0x02), 0x47);
    }

    #[test]
    fn inverse_is_an_inverse_for_every_element() {
        assert_eq!(gf_inv(0), 0);
        for a in 1..=255u8 {
            assert_eq!(gf_mul(a, gf_inv(a)), 1, "a = {a:#04x}");
        }
        // FIPS-197 section 4.4 (S-box construction) uses {53}^-1 = {ca}
        assert_eq!(gf_inv(0x53), 0xca);
    }

    #[test]
    fn horner_evaluation() {
        // f(x) = 0x2a + 0x57 x at x = 0x83: 0x2a ^ 0xc1
        assert_eq!(evaluate(&[0x2a, 0x57], 0x83), 0xeb);
        assert_eq!(evaluate(&[0x2a, 0x57], 0), 0x2a);
    }
}
