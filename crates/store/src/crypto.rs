//! The cryptography of the sealed files, all through aws-lc-rs: the random data key that
//! encrypts the state, AES-GCM with explicit nonces, the key derived from the enclave's seal key,
//! and SHA-256 of `sealed_data` that binds `sealed_key` to it.
//!
//! Every key type here zeroes its bytes when dropped and prints only its type name in `Debug`.

use std::fmt;

use aws_lc_rs::aead::{self, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::{digest, hkdf, rand};
use quarry_enclave::{SealKey, SealPolicy};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Length of an AES-GCM nonce.
pub(crate) const NONCE: usize = NONCE_LEN;

/// Length of an AES-GCM tag.
pub(crate) const TAG: usize = 16;

/// Length of the data key.
pub const DATA_KEY_LEN: usize = 32;

/// The shortest enclave seal key accepted (SGX seal keys are 128 bits).
const MIN_SEAL_KEY_LEN: usize = 16;

/// The AES-256 key that encrypts the state in `sealed_data`.
///
/// It is generated when a new state is created and kept while the recovery secrets the
/// Coordinator handed out (encryptions of this key) stay the same; a transaction replaces it
/// when they change ([`crate::Transaction::rotate_data_key`]).
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct DataKey([u8; DATA_KEY_LEN]);

impl DataKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut bytes = [0u8; DATA_KEY_LEN];
        rand::fill(&mut bytes).map_err(|_| CryptoError::Random)?;
        Ok(Self(bytes))
    }

    /// A key from its raw bytes (for example a recovered key), which must be 32 bytes long.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let bytes: [u8; DATA_KEY_LEN] = bytes.try_into().map_err(|_| CryptoError::KeyLength {
            what: "data key",
            len: bytes.len(),
        })?;
        Ok(Self(bytes))
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8; DATA_KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// A failure of the store's cryptography.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The system's random number generator failed.
    #[error("random number generator failed")]
    Random,
    /// A key has a length that its cipher cannot use.
    #[error("{what} has {len} bytes, which is not a valid key length")]
    KeyLength {
        /// Which key.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// Authenticated decryption failed: wrong key, wrong additional data or altered ciphertext.
    #[error("authenticated decryption failed")]
    Open,
    /// Encryption failed (the input is beyond what AES-GCM can encrypt).
    #[error("encryption failed")]
    Seal,
}

/// An AES-GCM key with explicit nonces.
pub(crate) struct GcmKey(LessSafeKey);

impl GcmKey {
    /// An AES-GCM key of 128, 192 or 256 bits.
    pub(crate) fn new(what: &'static str, bytes: &[u8]) -> Result<Self, CryptoError> {
        let algorithm = match bytes.len() {
            16 => &aead::AES_128_GCM,
            24 => &aead::AES_192_GCM,
            32 => &aead::AES_256_GCM,
            len => return Err(CryptoError::KeyLength { what, len }),
        };
        let key = UnboundKey::new(algorithm, bytes).map_err(|_| CryptoError::KeyLength {
            what,
            len: bytes.len(),
        })?;
        Ok(Self(LessSafeKey::new(key)))
    }

    /// Encrypts `plaintext`; the result is ciphertext followed by the tag.
    pub(crate) fn seal(
        &self,
        nonce: &[u8; NONCE],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let mut buf = Vec::with_capacity(plaintext.len() + TAG);
        buf.extend_from_slice(plaintext);
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                &mut buf,
            )
            .map_err(|_| CryptoError::Seal)?;
        Ok(buf)
    }

    /// Encrypts `buf[start..]` in place and appends the tag. On error the plaintext part is
    /// zeroed, so that no unencrypted bytes are left in the buffer.
    pub(crate) fn seal_tail(
        &self,
        nonce: &[u8; NONCE],
        aad: &[u8],
        buf: &mut Vec<u8>,
        start: usize,
    ) -> Result<(), CryptoError> {
        let result = self.0.seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(*nonce),
            Aad::from(aad),
            &mut buf[start..],
        );
        match result {
            Ok(tag) => {
                buf.extend_from_slice(tag.as_ref());
                Ok(())
            }
            Err(_) => {
                buf[start..].zeroize();
                Err(CryptoError::Seal)
            }
        }
    }

    /// Decrypts ciphertext followed by its tag.
    pub(crate) fn open(
        &self,
        nonce: &[u8; NONCE],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let mut buf = Zeroizing::new(ciphertext.to_vec());
        let len = self
            .0
            .open_in_place(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                &mut buf,
            )
            .map_err(|_| CryptoError::Open)?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

impl fmt::Debug for GcmKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GcmKey(..)")
    }
}

/// A fresh random nonce.
pub(crate) fn random_nonce() -> Result<[u8; NONCE], CryptoError> {
    let mut nonce = [0u8; NONCE];
    rand::fill(&mut nonce).map_err(|_| CryptoError::Random)?;
    Ok(nonce)
}

/// SHA-256 of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = digest::digest(&digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// The AES-256-GCM key that seals the data key, derived from the enclave's seal key.
///
/// Enclave seal keys are often 128 bits (SGX); HKDF-SHA256 turns any seal key of at least 128
/// bits into a 256-bit key, bound to the policy so that the two policies never share a key.
pub(crate) fn enclave_wrap_key(
    seal_key: &SealKey,
    policy: SealPolicy,
) -> Result<GcmKey, CryptoError> {
    let ikm = seal_key.as_bytes();
    if ikm.len() < MIN_SEAL_KEY_LEN {
        return Err(CryptoError::KeyLength {
            what: "enclave seal key",
            len: ikm.len(),
        });
    }
    let policy_label: &[u8] = match policy {
        SealPolicy::ProductKey => b"product-key",
        SealPolicy::UniqueKey => b"unique-key",
    };
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"quarry sealed_key").extract(ikm);
    let info: [&[u8]; 2] = [b"enclave layer v1 ", policy_label];
    let mut okm = Zeroizing::new([0u8; 32]);
    prk.expand(&info, &aead::AES_256_GCM)
        .and_then(|okm_ref| okm_ref.fill(okm.as_mut()))
        // Cannot fail: 32 bytes are far below HKDF-SHA256's limit of 8160.
        .map_err(|_| CryptoError::Seal)?;
    GcmKey::new("derived seal key", okm.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcm_round_trip_and_tamper_detection() {
        let key = GcmKey::new("test", &[1u8; 32]).unwrap();
        let nonce = random_nonce().unwrap();
        let sealed = key.seal(&nonce, b"aad", b"hello").unwrap();
        assert_eq!(sealed.len(), 5 + TAG);
        assert_eq!(
            key.open(&nonce, b"aad", &sealed).unwrap().as_slice(),
            b"hello"
        );
        assert!(matches!(
            key.open(&nonce, b"other", &sealed),
            Err(CryptoError::Open)
        ));
        let mut flipped = sealed.clone();
        flipped[0] ^= 1;
        assert!(matches!(
            key.open(&nonce, b"aad", &flipped),
            Err(CryptoError::Open)
        ));
        assert!(matches!(
            key.open(&nonce, b"aad", &sealed[..3]),
            Err(CryptoError::Open)
        ));
    }

    #[test]
    fn key_lengths_are_checked() {
        assert!(GcmKey::new("k", &[0; 16]).is_ok());
        assert!(GcmKey::new("k", &[0; 24]).is_ok());
        assert!(matches!(
            GcmKey::new("k", &[0; 31]),
            Err(CryptoError::KeyLength { len: 31, .. })
        ));
        assert!(DataKey::from_bytes(&[0; 16]).is_err());
        let short = SealKey::new(vec![0; 8]);
        assert!(enclave_wrap_key(&short, SealPolicy::ProductKey).is_err());
    }

    #[test]
    fn policies_derive_different_keys() {
        let seal = SealKey::new(vec![9; 16]);
        let product = enclave_wrap_key(&seal, SealPolicy::ProductKey).unwrap();
        let unique = enclave_wrap_key(&seal, SealPolicy::UniqueKey).unwrap();
        let nonce = [0u8; NONCE];
        let sealed = product.seal(&nonce, b"", b"data").unwrap();
        assert!(unique.open(&nonce, b"", &sealed).is_err());
    }

    #[test]
    fn data_key_debug_hides_bytes() {
        let key = DataKey::from_bytes(&[0xab; 32]).unwrap();
        assert_eq!(format!("{key:?}"), "DataKey(..)");
    }
}
