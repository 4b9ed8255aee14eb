//! The ECDSA P-384 keys of the Coordinator's certificate authorities and of Marbles.
//!
//! A [`CaKey`] keeps its private half inside an aws-lc-rs key object; aws-lc-rs clears that
//! memory when the object is freed. Exports are returned in [`Zeroizing`] buffers.

use std::fmt;

use aws_lc_rs::digest;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom as LcRandom;
use aws_lc_rs::signature::{ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use zeroize::Zeroizing;

use crate::Error;

/// An ECDSA P-384 key pair that signs certificates (with ECDSA-SHA384) and manifests (with
/// ECDSA over SHA-256, as MarbleRun does).
pub struct CaKey {
    pair: EcdsaKeyPair,
}

impl CaKey {
    /// Generates a fresh P-384 key pair.
    pub fn generate() -> Result<Self, Error> {
        let pair = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_ASN1_SIGNING)
            .map_err(|_| Error::KeyGeneration { what: "P-384" })?;
        Ok(Self { pair })
    }

    /// Reads a P-384 private key from SEC1 (`EC PRIVATE KEY`, RFC 5915) or PKCS#8 DER.
    ///
    /// `what` names the key in the error.
    pub fn from_der(der: &[u8], what: &'static str) -> Result<Self, Error> {
        let pair = EcdsaKeyPair::from_private_key_der(&ECDSA_P384_SHA384_ASN1_SIGNING, der)
            .map_err(|_| Error::InvalidPrivateKey { what })?;
        Ok(Self { pair })
    }

    /// The private key as SEC1 `ECPrivateKey` DER, the form MarbleRun stores.
    pub fn to_sec1_der(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        let der = self
            .pair
            .private_key()
            .as_der()
            .map_err(|_| Error::InvalidPrivateKey { what: "P-384" })?;
        Ok(Zeroizing::new(der.as_ref().to_vec()))
    }

    /// The private key as PKCS#8 DER (`PRIVATE KEY`).
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        let doc = self
            .pair
            .to_pkcs8v1()
            .map_err(|_| Error::InvalidPrivateKey { what: "P-384" })?;
        Ok(Zeroizing::new(doc.as_ref().to_vec()))
    }

    /// The public key as X.509 `SubjectPublicKeyInfo` DER.
    pub fn public_key_spki_der(&self) -> Result<Vec<u8>, Error> {
        let der = self
            .pair
            .public_key()
            .as_der()
            .map_err(|_| Error::InvalidPrivateKey { what: "P-384" })?;
        Ok(der.as_ref().to_vec())
    }

    /// The public key as an uncompressed curve point (`04 || x || y`).
    pub fn public_key_point(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// Signs `message` with ECDSA over its SHA-384 digest; the signature is ASN.1 DER.
    pub fn sign_sha384(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        let signature = self
            .pair
            .sign(&LcRandom::new(), message)
            .map_err(|_| Error::Signing { what: "message" })?;
        Ok(signature.as_ref().to_vec())
    }

    /// Signs `message` with ECDSA over its SHA-256 digest; the signature is ASN.1 DER.
    ///
    /// This is what `openssl dgst -sha256 -sign` produces with a P-384 key. aws-lc-rs binds a
    /// P-384 key to SHA-384, so the SHA-256 digest is handed to the signer as a 48-byte
    /// value with 16 leading zero bytes. ECDSA turns the digest into the integer `e` from its
    /// leftmost 384 bits; a 256-bit digest is used whole (FIPS 186-5, 6.4.1), and the zero
    /// prefix gives exactly that integer, so the signature is the standard one.
    pub fn sign_sha256(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        let sha256 = digest::digest(&digest::SHA256, message);
        let mut widened = [0u8; 48];
        widened[16..].copy_from_slice(sha256.as_ref());
        let digest = digest::Digest::import_less_safe(&widened, &digest::SHA384)
            .map_err(|_| Error::Signing { what: "digest" })?;
        let signature = self
            .pair
            .sign_digest(&digest)
            .map_err(|_| Error::Signing { what: "digest" })?;
        Ok(signature.as_ref().to_vec())
    }
}

impl fmt::Debug for CaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CaKey")
    }
}

impl rcgen::PublicKeyData for CaKey {
    fn der_bytes(&self) -> &[u8] {
        self.public_key_point()
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P384_SHA384
    }
}

impl rcgen::SigningKey for CaKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.sign_sha384(msg)
            .map_err(|_| rcgen::Error::RingUnspecified)
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::signature::{ECDSA_P384_SHA256_ASN1, ECDSA_P384_SHA384_ASN1, UnparsedPublicKey};

    use super::*;

    #[test]
    fn sha256_signature_verifies_as_p384_sha256() {
        let key = CaKey::generate().unwrap();
        let sig = key.sign_sha256(b"manifest bytes").unwrap();
        let public = UnparsedPublicKey::new(&ECDSA_P384_SHA256_ASN1, key.public_key_point());
        public.verify(b"manifest bytes", &sig).unwrap();
        assert!(public.verify(b"other bytes", &sig).is_err());
        let as_sha384 = UnparsedPublicKey::new(&ECDSA_P384_SHA384_ASN1, key.public_key_point());
        assert!(as_sha384.verify(b"manifest bytes", &sig).is_err());
    }

    #[test]
    fn sec1_and_pkcs8_round_trip() {
        let key = CaKey::generate().unwrap();
        let sec1 = key.to_sec1_der().unwrap();
        let pkcs8 = key.to_pkcs8_der().unwrap();
        let from_sec1 = CaKey::from_der(&sec1, "test").unwrap();
        let from_pkcs8 = CaKey::from_der(&pkcs8, "test").unwrap();
        assert_eq!(from_sec1.public_key_point(), key.public_key_point());
        assert_eq!(from_pkcs8.public_key_point(), key.public_key_point());
    }

    #[test]
    fn rejects_garbage_and_other_curves() {
        assert!(matches!(
            CaKey::from_der(b"not a key", "root CA"),
            Err(Error::InvalidPrivateKey { what: "root CA" })
        ));
        let p256 = EcdsaKeyPair::generate(&aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING)
            .unwrap()
            .to_pkcs8v1()
            .unwrap();
        assert!(CaKey::from_der(p256.as_ref(), "root CA").is_err());
    }

    #[test]
    fn debug_prints_no_key_material() {
        let key = CaKey::generate().unwrap();
        assert_eq!(format!("{key:?}"), "CaKey");
    }
}
