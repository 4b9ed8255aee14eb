//! The key wrapping of a release, as Managed HSM does it (PKCS#11 `CKM_RSA_AES_KEY_WRAP`):
//! a fresh AES-256 key is encrypted with RSA-OAEP under the caller's wrapping key, and the
//! released key is wrapped under that AES key with AES key wrap with padding (RFC 5649). The
//! ciphertext is the two concatenated, the RSA part first (as long as the modulus).
//!
//! This is the emulator's own implementation: it shares nothing with Quarry's SKR client, which
//! unwraps, so that a mistake on one side cannot hide the same mistake on the other.

use aws_lc_rs::key_wrap::{AES_256, AesKek, KeyWrapPadded};
use aws_lc_rs::rsa::{
    OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OAEP_SHA384_MGF1SHA384, OaepAlgorithm,
    OaepPublicEncryptingKey, PublicEncryptingKey, PublicKeyComponents,
};
use zeroize::Zeroizing;

use super::error::HsmError;

/// Smallest wrapping key accepted, in bits.
pub const MIN_WRAPPING_KEY_BITS: usize = 2048;

/// The wrapping algorithm of a release (`enc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReleaseEnc {
    /// `CKM_RSA_AES_KEY_WRAP`: OAEP with SHA-1 and MGF1-SHA-1. The service's default.
    CkmRsaAesKeyWrap,
    /// `RSA_AES_KEY_WRAP_256`: OAEP with SHA-256 and MGF1-SHA-256.
    RsaAesKeyWrap256,
    /// `RSA_AES_KEY_WRAP_384`: OAEP with SHA-384 and MGF1-SHA-384.
    RsaAesKeyWrap384,
}

impl ReleaseEnc {
    /// Reads a request's `enc`; absent means `CKM_RSA_AES_KEY_WRAP`, as the service defaults.
    pub fn parse(enc: Option<&str>) -> Result<Self, HsmError> {
        match enc {
            None | Some("CKM_RSA_AES_KEY_WRAP") => Ok(ReleaseEnc::CkmRsaAesKeyWrap),
            Some("RSA_AES_KEY_WRAP_256") => Ok(ReleaseEnc::RsaAesKeyWrap256),
            Some("RSA_AES_KEY_WRAP_384") => Ok(ReleaseEnc::RsaAesKeyWrap384),
            Some(other) => Err(HsmError::bad_parameter(format!(
                "invalid enc {other:?}: expected CKM_RSA_AES_KEY_WRAP, RSA_AES_KEY_WRAP_256 or \
                 RSA_AES_KEY_WRAP_384"
            ))),
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseEnc::CkmRsaAesKeyWrap => "CKM_RSA_AES_KEY_WRAP",
            ReleaseEnc::RsaAesKeyWrap256 => "RSA_AES_KEY_WRAP_256",
            ReleaseEnc::RsaAesKeyWrap384 => "RSA_AES_KEY_WRAP_384",
        }
    }

    fn oaep(self) -> &'static OaepAlgorithm {
        match self {
            ReleaseEnc::CkmRsaAesKeyWrap => &OAEP_SHA1_MGF1SHA1,
            ReleaseEnc::RsaAesKeyWrap256 => &OAEP_SHA256_MGF1SHA256,
            ReleaseEnc::RsaAesKeyWrap384 => &OAEP_SHA384_MGF1SHA384,
        }
    }
}

/// The caller's RSA wrapping key, from the attestation token.
#[derive(Debug)]
pub struct WrappingKey {
    key: PublicEncryptingKey,
}

impl WrappingKey {
    /// A wrapping key from its modulus and exponent (big-endian).
    pub fn from_components(n: &[u8], e: &[u8]) -> Result<Self, String> {
        let key: PublicEncryptingKey = PublicKeyComponents { n, e }.try_into().map_err(|_| {
            "the modulus and exponent do not form a usable RSA public key".to_owned()
        })?;
        let bits = key.key_size_bits();
        if bits < MIN_WRAPPING_KEY_BITS {
            return Err(format!(
                "the RSA key has {bits} bits; at least {MIN_WRAPPING_KEY_BITS} are required"
            ));
        }
        Ok(Self { key })
    }

    /// The modulus length in bytes: where the ciphertext splits.
    pub fn modulus_len(&self) -> usize {
        self.key.key_size_bytes()
    }
}

/// Wraps `target` (raw key bytes or PKCS#8 DER) for `kek` with `enc`.
pub fn wrap(kek: &WrappingKey, enc: ReleaseEnc, target: &[u8]) -> Result<Vec<u8>, HsmError> {
    let failed = |what: &'static str| {
        move |_| {
            tracing::error!(what, "release wrapping failed in the crypto provider");
            HsmError::internal()
        }
    };
    let mut aes_key = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(aes_key.as_mut()).map_err(failed("random"))?;

    let oaep = OaepPublicEncryptingKey::new(kek.key.clone()).map_err(failed("oaep key"))?;
    let mut out = vec![0u8; oaep.ciphertext_size()];
    let rsa_len = oaep
        .encrypt(enc.oaep(), aes_key.as_ref(), &mut out, None)
        .map_err(failed("oaep"))?
        .len();
    out.truncate(rsa_len);

    // RFC 5649 pads to a multiple of 8 and adds one 8-byte block.
    let mut wrapped = vec![0u8; target.len().div_ceil(8) * 8 + 8];
    let aes = AesKek::new(&AES_256, aes_key.as_ref()).map_err(failed("aes key"))?;
    let kwp_len = aes
        .wrap_with_padding(target, &mut wrapped)
        .map_err(failed("aes-kwp"))?
        .len();
    out.extend_from_slice(&wrapped[..kwp_len]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::key_wrap::AES_256;
    use aws_lc_rs::rsa::{KeySize, OaepPrivateDecryptingKey, PrivateDecryptingKey};

    use super::*;

    /// An independent unwrap for the test: RSA-OAEP decrypt, then AES-KWP unwrap.
    fn unwrap(private: &PrivateDecryptingKey, enc: ReleaseEnc, ciphertext: &[u8]) -> Vec<u8> {
        let k = private.key_size_bytes();
        let oaep = OaepPrivateDecryptingKey::new(private.clone()).unwrap();
        let mut aes_key = vec![0u8; k];
        let aes_key = oaep
            .decrypt(enc.oaep(), &ciphertext[..k], &mut aes_key, None)
            .unwrap()
            .to_vec();
        assert_eq!(aes_key.len(), 32);
        let kek = AesKek::new(&AES_256, &aes_key).unwrap();
        let mut out = vec![0u8; ciphertext.len()];
        kek.unwrap_with_padding(&ciphertext[k..], &mut out)
            .unwrap()
            .to_vec()
    }

    fn kek(private: &PrivateDecryptingKey) -> WrappingKey {
        WrappingKey {
            key: private.public_key(),
        }
    }

    #[test]
    fn wraps_for_every_enc_with_the_documented_lengths() {
        let private = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
        for enc in [
            ReleaseEnc::CkmRsaAesKeyWrap,
            ReleaseEnc::RsaAesKeyWrap256,
            ReleaseEnc::RsaAesKeyWrap384,
        ] {
            let target = [0x5au8; 32];
            let ct = wrap(&kek(&private), enc, &target).unwrap();
            assert_eq!(
                ct.len(),
                296,
                "AES-256 target with a 2048-bit KEK: 256 + 40 bytes"
            );
            assert_eq!(unwrap(&private, enc, &ct), target);

            let pkcs8_like = vec![0x30u8; 138];
            let ct = wrap(&kek(&private), enc, &pkcs8_like).unwrap();
            assert_eq!(ct.len(), 256 + 152, "138-byte EC P-256 PKCS#8");
            assert_eq!(unwrap(&private, enc, &ct), pkcs8_like);
        }
    }

    #[test]
    fn the_oaep_hash_follows_enc() {
        let private = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
        let ct = wrap(&kek(&private), ReleaseEnc::CkmRsaAesKeyWrap, &[1u8; 16]).unwrap();
        let oaep = OaepPrivateDecryptingKey::new(private.clone()).unwrap();
        let mut out = vec![0u8; 256];
        assert!(
            oaep.decrypt(&OAEP_SHA256_MGF1SHA256, &ct[..256], &mut out, None)
                .is_err()
        );
        assert!(
            oaep.decrypt(&OAEP_SHA1_MGF1SHA1, &ct[..256], &mut out, None)
                .is_ok()
        );
    }

    #[test]
    fn parses_enc_with_the_documented_default() {
        assert_eq!(
            ReleaseEnc::parse(None).unwrap(),
            ReleaseEnc::CkmRsaAesKeyWrap
        );
        assert_eq!(
            ReleaseEnc::parse(Some("RSA_AES_KEY_WRAP_384"))
                .unwrap()
                .as_str(),
            "RSA_AES_KEY_WRAP_384"
        );
        assert_eq!(
            ReleaseEnc::parse(Some("RSA-OAEP"))
                .unwrap_err()
                .status
                .as_u16(),
            400
        );
    }

    #[test]
    fn refuses_small_or_invalid_wrapping_keys() {
        let small = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
        let _ = small;
        assert!(WrappingKey::from_components(&[0xff; 128], &[1, 0, 1]).is_err());
        assert!(WrappingKey::from_components(&[], &[1, 0, 1]).is_err());
    }
}
