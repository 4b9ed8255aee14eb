//! The ephemeral RSA wrapping key: generated per release, its public half published as a JWK
//! set in the MAA runtime data (so it appears in the token's `x-ms-runtime.keys`), its private
//! half used once to unwrap the released key and then dropped.
//!
//! Unwrapping follows the `CKM_RSA_AES_KEY_WRAP` construction Managed HSM uses: the ciphertext
//! is `RSA-OAEP(wrapping key, K) || AES-KWP(K, key)` with a fresh AES key `K`; the OAEP hash is
//! SHA-1, SHA-256 or SHA-384 according to the [`WrapAlgorithm`]; the AES key wrap is the padded
//! variant of RFC 5649.

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::key_wrap::{AES_128, AES_256, AesKek, KeyWrapPadded};
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OAEP_SHA384_MGF1SHA384, OaepAlgorithm,
    OaepPrivateDecryptingKey, PrivateDecryptingKey, PublicEncryptingKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::error::ErrorKind;

/// The key-export mechanism (`enc`) of a release request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WrapAlgorithm {
    /// `CKM_RSA_AES_KEY_WRAP`: RSA-OAEP with SHA-1 (the service default when `enc` is absent).
    CkmRsaAesKeyWrap,
    /// `RSA_AES_KEY_WRAP_256`: RSA-OAEP with SHA-256.
    RsaAesKeyWrap256,
    /// `RSA_AES_KEY_WRAP_384`: RSA-OAEP with SHA-384 (what Quarry asks for).
    RsaAesKeyWrap384,
}

impl WrapAlgorithm {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CkmRsaAesKeyWrap => "CKM_RSA_AES_KEY_WRAP",
            Self::RsaAesKeyWrap256 => "RSA_AES_KEY_WRAP_256",
            Self::RsaAesKeyWrap384 => "RSA_AES_KEY_WRAP_384",
        }
    }

    fn oaep(self) -> &'static OaepAlgorithm {
        match self {
            Self::CkmRsaAesKeyWrap => &OAEP_SHA1_MGF1SHA1,
            Self::RsaAesKeyWrap256 => &OAEP_SHA256_MGF1SHA256,
            Self::RsaAesKeyWrap384 => &OAEP_SHA384_MGF1SHA384,
        }
    }
}

impl fmt::Display for WrapAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WrapAlgorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "CKM_RSA_AES_KEY_WRAP" => Ok(Self::CkmRsaAesKeyWrap),
            "RSA_AES_KEY_WRAP_256" => Ok(Self::RsaAesKeyWrap256),
            "RSA_AES_KEY_WRAP_384" => Ok(Self::RsaAesKeyWrap384),
            other => Err(format!("unknown key-export mechanism {other:?}")),
        }
    }
}

/// Sizes of the wrapping key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WrappingKeySize {
    /// RSA-2048.
    Rsa2048,
    /// RSA-3072.
    Rsa3072,
    /// RSA-4096 (the default, as MarbleRun).
    #[default]
    Rsa4096,
}

impl WrappingKeySize {
    fn aws(self) -> KeySize {
        match self {
            Self::Rsa2048 => KeySize::Rsa2048,
            Self::Rsa3072 => KeySize::Rsa3072,
            Self::Rsa4096 => KeySize::Rsa4096,
        }
    }
}

/// An ephemeral RSA key pair and the JWK set that publishes its public half. `Debug` shows the
/// `kid` only.
pub struct WrappingKey {
    private: OaepPrivateDecryptingKey,
    public: PublicEncryptingKey,
    kid: String,
    jwks: Vec<u8>,
}

impl fmt::Debug for WrappingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrappingKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Jwk<'a> {
    kty: &'static str,
    kid: &'a str,
    key_ops: [&'static str; 1],
    e: &'a str,
    n: &'a str,
}

#[derive(Serialize)]
struct JwkSet<'a> {
    keys: [Jwk<'a>; 1],
}

impl WrappingKey {
    /// Generates a new key pair (slow for RSA-4096: run it on a blocking thread).
    pub fn generate(size: WrappingKeySize) -> Result<Self, ErrorKind> {
        let private = PrivateDecryptingKey::generate(size.aws())
            .map_err(|_| ErrorKind::Crypto("rsa key generation"))?;
        Self::from_private(private)
    }

    /// Uses an existing private key (for known-answer tests).
    pub fn from_private(private: PrivateDecryptingKey) -> Result<Self, ErrorKind> {
        let public = private.public_key();
        let spki = public
            .as_der()
            .map_err(|_| ErrorKind::Crypto("public key encoding"))?;
        let (n, e) = rsa_components(spki.as_ref())?;
        let (n, e) = (URL_SAFE_NO_PAD.encode(n), URL_SAFE_NO_PAD.encode(e));
        let kid = thumbprint(&n, &e);
        let set = JwkSet {
            keys: [Jwk {
                kty: "RSA",
                kid: &kid,
                key_ops: ["encrypt"],
                e: &e,
                n: &n,
            }],
        };
        let jwks = serde_json::to_vec(&set).map_err(|_| ErrorKind::Crypto("jwk set encoding"))?;
        let private = OaepPrivateDecryptingKey::new(private)
            .map_err(|_| ErrorKind::Crypto("rsa key import"))?;
        Ok(Self {
            private,
            public,
            kid,
            jwks,
        })
    }

    /// The key id: the RFC 7638 SHA-256 thumbprint, base64url.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The exact JWK-set bytes sent as MAA runtime data.
    pub fn jwk_set_json(&self) -> &[u8] {
        &self.jwks
    }

    /// The report data for the quote: SHA-256 of the JWK set, then 32 zero bytes.
    pub fn report_data(&self) -> [u8; 64] {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &self.jwks);
        let mut data = [0u8; 64];
        data[..32].copy_from_slice(digest.as_ref());
        data
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicEncryptingKey {
        &self.public
    }

    /// The modulus length in bytes: where the ciphertext splits.
    pub fn modulus_len(&self) -> usize {
        self.private.key_size_bytes()
    }

    /// Unwraps `RSA-OAEP(K) || AES-KWP(K, key)`.
    pub fn unwrap(
        &self,
        algorithm: WrapAlgorithm,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, ErrorKind> {
        let rsa_len = self.modulus_len();
        let wrapped_len = ciphertext.len().saturating_sub(rsa_len);
        if ciphertext.len() < rsa_len + 16 || !wrapped_len.is_multiple_of(8) {
            return Err(ErrorKind::CiphertextLength {
                len: ciphertext.len(),
                rsa_len,
            });
        }
        let (rsa_part, wrapped) = ciphertext.split_at(rsa_len);

        let mut transport = Zeroizing::new(vec![0u8; self.private.min_output_size()]);
        let transport_len = self
            .private
            .decrypt(algorithm.oaep(), rsa_part, &mut transport, None)
            .map_err(|_| ErrorKind::RsaOaep)?
            .len();
        let cipher = match transport_len {
            16 => &AES_128,
            32 => &AES_256,
            len => return Err(ErrorKind::TransportKeyLength { len }),
        };
        let kek = AesKek::new(cipher, &transport[..transport_len])
            .map_err(|_| ErrorKind::TransportKeyLength { len: transport_len })?;

        let mut key = Zeroizing::new(vec![0u8; wrapped.len()]);
        let key_len = kek
            .unwrap_with_padding(wrapped, &mut key)
            .map_err(|_| ErrorKind::AesKeyUnwrap)?
            .len();
        key.truncate(key_len);
        Ok(key)
    }
}

/// RFC 7638 thumbprint of an RSA JWK: SHA-256 over `{"e":..,"kty":"RSA","n":..}`, base64url.
fn thumbprint(n: &str, e: &str) -> String {
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// Modulus and public exponent (big-endian, without leading zeros) of an RSA SPKI.
fn rsa_components(spki: &[u8]) -> Result<(Vec<u8>, Vec<u8>), ErrorKind> {
    use x509_parser::prelude::FromDer;
    use x509_parser::public_key::PublicKey;
    use x509_parser::x509::SubjectPublicKeyInfo;

    let bad = || ErrorKind::Crypto("public key decoding");
    let (_, info) = SubjectPublicKeyInfo::from_der(spki).map_err(|_| bad())?;
    match info.parsed().map_err(|_| bad())? {
        PublicKey::RSA(rsa) => Ok((strip(rsa.modulus).to_vec(), strip(rsa.exponent).to_vec())),
        _ => Err(bad()),
    }
}

fn strip(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    &bytes[start..]
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::rsa::OaepPublicEncryptingKey;

    use super::*;

    fn wrap(
        key: &WrappingKey,
        algorithm: WrapAlgorithm,
        transport: &[u8],
        secret: &[u8],
    ) -> Vec<u8> {
        let public = OaepPublicEncryptingKey::new(key.public_key().clone()).unwrap();
        let mut out = vec![0u8; public.ciphertext_size()];
        let rsa = public
            .encrypt(algorithm.oaep(), transport, &mut out, None)
            .unwrap()
            .to_vec();
        let kek = AesKek::new(&AES_256, transport).unwrap();
        let mut wrapped = vec![0u8; secret.len() + 16];
        let wrapped = kek
            .wrap_with_padding(secret, &mut wrapped)
            .unwrap()
            .to_vec();
        [rsa, wrapped].concat()
    }

    #[test]
    fn jwk_set_has_kid_and_key_ops_and_binds_report_data() {
        let key = WrappingKey::generate(WrappingKeySize::Rsa2048).unwrap();
        let set: serde_json::Value = serde_json::from_slice(key.jwk_set_json()).unwrap();
        let jwk = &set["keys"][0];
        assert_eq!(jwk["kty"], "RSA");
        assert_eq!(jwk["kid"], key.kid());
        assert_eq!(jwk["key_ops"], serde_json::json!(["encrypt"]));
        assert_eq!(jwk["e"], "AQAB");
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(jwk["n"].as_str().unwrap())
                .unwrap()
                .len(),
            256
        );
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.jwk_set_json());
        assert_eq!(&key.report_data()[..32], digest.as_ref());
        assert_eq!(key.report_data()[32..], [0u8; 32]);
    }

    #[test]
    fn unwraps_each_mechanism_and_refuses_the_wrong_one() {
        let key = WrappingKey::generate(WrappingKeySize::Rsa2048).unwrap();
        let secret = [7u8; 32];
        for algorithm in [
            WrapAlgorithm::CkmRsaAesKeyWrap,
            WrapAlgorithm::RsaAesKeyWrap256,
            WrapAlgorithm::RsaAesKeyWrap384,
        ] {
            let ciphertext = wrap(&key, algorithm, &[9u8; 32], &secret);
            assert_eq!(ciphertext.len(), 256 + 40);
            assert_eq!(
                key.unwrap(algorithm, &ciphertext).unwrap().as_slice(),
                &secret
            );
        }
        let ciphertext = wrap(&key, WrapAlgorithm::RsaAesKeyWrap256, &[9u8; 32], &secret);
        assert!(matches!(
            key.unwrap(WrapAlgorithm::RsaAesKeyWrap384, &ciphertext),
            Err(ErrorKind::RsaOaep)
        ));
    }

    #[test]
    fn refuses_tampered_and_truncated_ciphertext() {
        let key = WrappingKey::generate(WrappingKeySize::Rsa2048).unwrap();
        let mut ciphertext = wrap(
            &key,
            WrapAlgorithm::RsaAesKeyWrap384,
            &[1u8; 32],
            &[2u8; 32],
        );
        assert!(matches!(
            key.unwrap(WrapAlgorithm::RsaAesKeyWrap384, &ciphertext[..200]),
            Err(ErrorKind::CiphertextLength {
                len: 200,
                rsa_len: 256
            })
        ));
        assert!(matches!(
            key.unwrap(
                WrapAlgorithm::RsaAesKeyWrap384,
                &ciphertext[..ciphertext.len() - 3]
            ),
            Err(ErrorKind::CiphertextLength { .. })
        ));
        let last = ciphertext.len() - 1;
        ciphertext[last] ^= 1;
        assert!(matches!(
            key.unwrap(WrapAlgorithm::RsaAesKeyWrap384, &ciphertext),
            Err(ErrorKind::AesKeyUnwrap)
        ));
    }

    #[test]
    fn thumbprint_matches_rfc_7638_example() {
        // RFC 7638 section 3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        assert_eq!(
            thumbprint(n, "AQAB"),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn wire_names_round_trip() {
        for name in [
            "CKM_RSA_AES_KEY_WRAP",
            "RSA_AES_KEY_WRAP_256",
            "RSA_AES_KEY_WRAP_384",
        ] {
            assert_eq!(name.parse::<WrapAlgorithm>().unwrap().as_str(), name);
        }
        assert!("A256KW".parse::<WrapAlgorithm>().is_err());
    }
}
