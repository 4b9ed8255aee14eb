//! The key-wrapping hook: extra layers of encryption around the sealed data key.
//!
//! A [`WrapLayer`] holds a key that its owner fetched *before* handing the layer to the store
//! (the Coordinator releases its Managed HSM key first); the store only calls synchronous
//! encrypt and decrypt functions, so no network I/O ever happens while the store is locked.
//! The store owns the frame layout (see [`crate::frame`]); a layer supplies its key identity and
//! the cipher operations. [`HsmWrapKey`] is the layer for a released Managed HSM key: the HSM
//! adapter only has to supply the key bytes and where they came from.

use std::fmt;

use zeroize::Zeroizing;

use crate::crypto::{CryptoError, GcmKey, NONCE};
use crate::frame::{FrameError, HsmKeyRef};

/// A wrap layer around the sealed data key.
pub trait WrapLayer: Send + Sync + fmt::Debug {
    /// The key this layer uses, recorded in the clear in the layer's frame.
    fn key_ref(&self) -> &HsmKeyRef;

    /// Encrypts `plaintext` with AES-GCM under this layer's key; returns the ciphertext
    /// followed by the 16-byte tag.
    fn seal(&self, nonce: &[u8; NONCE], aad: &[u8], plaintext: &[u8])
    -> Result<Vec<u8>, WrapError>;

    /// Decrypts what [`WrapLayer::seal`] produced.
    fn open(
        &self,
        nonce: &[u8; NONCE],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, WrapError>;
}

/// A failure of a wrap layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WrapError {
    /// The layer's key does not open the frame: the frame was sealed with another key, or it
    /// was altered.
    #[error("wrap key does not open the frame")]
    WrongKey,
    /// The layer's cipher failed for another reason.
    #[error("wrap layer cipher failed")]
    Crypto(#[source] CryptoError),
    /// The layer's key reference cannot be written into a frame.
    #[error("invalid HSM key reference")]
    InvalidKeyRef(#[source] FrameError),
}

/// A released Managed HSM key (AES, 128, 192 or 256 bits) as a wrap layer.
pub struct HsmWrapKey {
    key_ref: HsmKeyRef,
    key: GcmKey,
}

impl HsmWrapKey {
    /// The layer for the key `key_ref` whose released bytes are `key`.
    pub fn new(key_ref: HsmKeyRef, key: &[u8]) -> Result<Self, CryptoError> {
        Ok(Self {
            key_ref,
            key: GcmKey::new("HSM key", key)?,
        })
    }
}

impl fmt::Debug for HsmWrapKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key identity is public (it is written in the clear); the key is not.
        f.debug_struct("HsmWrapKey")
            .field("key_ref", &self.key_ref)
            .finish_non_exhaustive()
    }
}

impl WrapLayer for HsmWrapKey {
    fn key_ref(&self) -> &HsmKeyRef {
        &self.key_ref
    }

    fn seal(
        &self,
        nonce: &[u8; NONCE],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, WrapError> {
        self.key
            .seal(nonce, aad, plaintext)
            .map_err(WrapError::Crypto)
    }

    fn open(
        &self,
        nonce: &[u8; NONCE],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, WrapError> {
        self.key
            .open(nonce, aad, ciphertext)
            .map_err(|err| match err {
                CryptoError::Open => WrapError::WrongKey,
                other => WrapError::Crypto(other),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_ref() -> HsmKeyRef {
        HsmKeyRef {
            vault_host: "h.managedhsm.azure.net".into(),
            key_name: "k".into(),
            key_version: "1".into(),
        }
    }

    #[test]
    fn debug_names_the_key_but_hides_it() {
        let layer = HsmWrapKey::new(key_ref(), &[0x5a; 32]).unwrap();
        let text = format!("{layer:?}");
        assert!(text.contains("h.managedhsm.azure.net"), "{text}");
        assert!(!text.contains("90"), "{text}");
    }

    #[test]
    fn another_key_is_reported_as_wrong_key() {
        let a = HsmWrapKey::new(key_ref(), &[1; 32]).unwrap();
        let b = HsmWrapKey::new(key_ref(), &[2; 32]).unwrap();
        let sealed = a.seal(&[0; NONCE], b"hdr", b"inner").unwrap();
        assert_eq!(
            a.open(&[0; NONCE], b"hdr", &sealed).unwrap().as_slice(),
            b"inner"
        );
        assert!(matches!(
            b.open(&[0; NONCE], b"hdr", &sealed),
            Err(WrapError::WrongKey)
        ));
    }
}
