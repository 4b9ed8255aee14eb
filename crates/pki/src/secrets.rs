//! Secret generation for the manifest's secret types, and the per-Marble derivation of
//! unique symmetric keys.
//!
//! | `Type` | `Size` | material |
//! |---|---|---|
//! | `symmetric-key` | bits, > 0, multiple of 8 | shared: random bytes; unique: [`derive_marble_key`] |
//! | `cert-rsa` | 2048, 3072, 4096 or 8192 | RSA key pair, PKCS#8 / PKIX |
//! | `cert-ecdsa` | 256, 384 or 521 (224 is refused) | ECDSA key pair on that NIST curve |
//! | `cert-ed25519` | 0 | Ed25519 key pair (PKCS#8 v1, RFC 8410) |
//! | `plain` | — | never generated (user-defined only) |
//!
//! Differences from MarbleRun: `cert-ecdsa` with P-224 and RSA sizes other than the four
//! above are refused, because aws-lc-rs (through rcgen) supports neither.
//!
//! Unique symmetric keys are HKDF-SHA256 (RFC 5869, extract and expand) with the
//! Coordinator's root secret as input key material, the Marble's UUID in canonical form
//! (lower-case, hyphenated) immediately followed by the secret's name as salt, the Marble
//! type (or the empty string when the Marble sets `DisableSecretBinding`) as info, and
//! `Size / 8` bytes of output. A Marble that restarts with the same UUID gets the same key.

use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::hkdf;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, ECDSA_P521_SHA512_ASN1_SIGNING,
    EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};
use zeroize::Zeroizing;

use crate::{Error, RandomSource};

/// Length of the Coordinator's root secret.
pub const ROOT_SECRET_SIZE: usize = 32;

/// Largest unique symmetric key: HKDF-SHA256 yields at most 255 × 32 bytes.
pub const MAX_DERIVED_KEY_BITS: u32 = 255 * 32 * 8;

/// A new root secret (32 random bytes), the input of every unique symmetric key.
pub fn generate_root_secret(
    rng: &dyn RandomSource,
) -> Result<Zeroizing<[u8; ROOT_SECRET_SIZE]>, Error> {
    let mut secret = Zeroizing::new([0u8; ROOT_SECRET_SIZE]);
    rng.fill(secret.as_mut())?;
    Ok(secret)
}

fn check_symmetric_size(size_bits: u32) -> Result<usize, Error> {
    if size_bits == 0 || !size_bits.is_multiple_of(8) {
        return Err(Error::UnsupportedSecretSize {
            secret_type: "symmetric-key",
            size: size_bits,
            reason: "must be a positive multiple of 8",
        });
    }
    Ok(size_bits as usize / 8)
}

/// A shared `symmetric-key` secret: `size_bits / 8` random bytes.
pub fn generate_symmetric_key(
    size_bits: u32,
    rng: &dyn RandomSource,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let len = check_symmetric_size(size_bits)?;
    let mut key = Zeroizing::new(vec![0u8; len]);
    rng.fill(&mut key)?;
    Ok(key)
}

/// The canonical text form of a UUID: lower-case hex, hyphenated, 36 characters.
pub fn canonical_uuid(uuid: &[u8; 16]) -> String {
    let hex: String = uuid.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

struct OutputLen(usize);

impl hkdf::KeyType for OutputLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// A unique (per-Marble) `symmetric-key` secret, derived as the module documentation says.
///
/// `binding` is the Marble type, or `""` for a Marble with `DisableSecretBinding`.
pub fn derive_marble_key(
    root_secret: &[u8],
    marble_uuid: &[u8; 16],
    secret_name: &str,
    binding: &str,
    size_bits: u32,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let len = check_symmetric_size(size_bits)?;
    if size_bits > MAX_DERIVED_KEY_BITS {
        return Err(Error::UnsupportedSecretSize {
            secret_type: "symmetric-key",
            size: size_bits,
            reason: "a unique key can have at most 65280 bits (the HKDF-SHA256 limit)",
        });
    }
    let salt = format!("{}{secret_name}", canonical_uuid(marble_uuid));
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt.as_bytes()).extract(root_secret);
    let info = [binding.as_bytes()];
    let okm = prk
        .expand(&info, OutputLen(len))
        .map_err(|_| Error::KeyDerivation {
            what: "unique symmetric key",
            reason: "output too long",
        })?;
    let mut key = Zeroizing::new(vec![0u8; len]);
    okm.fill(&mut key).map_err(|_| Error::KeyDerivation {
        what: "unique symmetric key",
        reason: "HKDF failed",
    })?;
    Ok(key)
}

/// NIST curves for `cert-ecdsa`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcdsaCurve {
    /// P-256 (`Size` 256).
    P256,
    /// P-384 (`Size` 384).
    P384,
    /// P-521 (`Size` 521).
    P521,
}

/// The key type of a certificate secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertKeyType {
    /// `cert-rsa` with the modulus size in bits.
    Rsa {
        /// Modulus size.
        bits: u32,
    },
    /// `cert-ecdsa`.
    Ecdsa(EcdsaCurve),
    /// `cert-ed25519`.
    Ed25519,
}

impl CertKeyType {
    /// The key type for a manifest secret's `Type` and `Size`.
    pub fn from_secret(secret_type: &str, size: u32) -> Result<Self, Error> {
        match secret_type {
            "cert-rsa" => match size {
                2048 | 3072 | 4096 | 8192 => Ok(Self::Rsa { bits: size }),
                _ => Err(Error::UnsupportedSecretSize {
                    secret_type: "cert-rsa",
                    size,
                    reason: "RSA keys can have 2048, 3072, 4096 or 8192 bits",
                }),
            },
            "cert-ecdsa" => match size {
                256 => Ok(Self::Ecdsa(EcdsaCurve::P256)),
                384 => Ok(Self::Ecdsa(EcdsaCurve::P384)),
                521 => Ok(Self::Ecdsa(EcdsaCurve::P521)),
                224 => Err(Error::UnsupportedSecretSize {
                    secret_type: "cert-ecdsa",
                    size,
                    reason: "P-224 is not supported (MarbleRun accepts it; use 256, 384 or 521)",
                }),
                _ => Err(Error::UnsupportedSecretSize {
                    secret_type: "cert-ecdsa",
                    size,
                    reason: "the size must be 256, 384 or 521",
                }),
            },
            "cert-ed25519" => match size {
                0 => Ok(Self::Ed25519),
                _ => Err(Error::UnsupportedSecretSize {
                    secret_type: "cert-ed25519",
                    size,
                    reason: "Ed25519 keys take no size",
                }),
            },
            other => Err(Error::UnsupportedSecretType(other.to_owned())),
        }
    }
}

/// A freshly generated key pair of a certificate secret.
pub struct SecretKeyPair {
    key_type: CertKeyType,
    private_key: Zeroizing<Vec<u8>>,
    public_key: Vec<u8>,
}

impl SecretKeyPair {
    /// Generates a key pair (RSA generation takes from tens of milliseconds to seconds).
    pub fn generate(key_type: CertKeyType) -> Result<Self, Error> {
        let (private_key, public_key) = match key_type {
            CertKeyType::Rsa { bits } => generate_rsa(bits)?,
            CertKeyType::Ecdsa(curve) => generate_ecdsa(curve)?,
            CertKeyType::Ed25519 => generate_ed25519()?,
        };
        Ok(Self {
            key_type,
            private_key,
            public_key,
        })
    }

    /// The key type.
    pub fn key_type(&self) -> CertKeyType {
        self.key_type
    }

    /// The private key as PKCS#8 DER (a secret's `Private`).
    pub fn private_key_pkcs8_der(&self) -> &[u8] {
        &self.private_key
    }

    /// The public key as PKIX `SubjectPublicKeyInfo` DER (a secret's `Public`).
    pub fn public_key_spki_der(&self) -> &[u8] {
        &self.public_key
    }

    pub(crate) fn into_parts(self) -> (Zeroizing<Vec<u8>>, Vec<u8>) {
        (self.private_key, self.public_key)
    }
}

impl fmt::Debug for SecretKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKeyPair")
            .field("key_type", &self.key_type)
            .finish_non_exhaustive()
    }
}

type KeyParts = (Zeroizing<Vec<u8>>, Vec<u8>);

fn generate_rsa(bits: u32) -> Result<KeyParts, Error> {
    let size = match bits {
        2048 => KeySize::Rsa2048,
        3072 => KeySize::Rsa3072,
        4096 => KeySize::Rsa4096,
        8192 => KeySize::Rsa8192,
        _ => {
            return Err(Error::UnsupportedSecretSize {
                secret_type: "cert-rsa",
                size: bits,
                reason: "RSA keys can have 2048, 3072, 4096 or 8192 bits",
            });
        }
    };
    let failed = || Error::KeyGeneration { what: "RSA" };
    let pair = RsaKeyPair::generate(size).map_err(|_| failed())?;
    let private = pair.as_der().map_err(|_| failed())?;
    let public = pair.public_key().as_der().map_err(|_| failed())?;
    Ok((
        Zeroizing::new(private.as_ref().to_vec()),
        public.as_ref().to_vec(),
    ))
}

fn generate_ecdsa(curve: EcdsaCurve) -> Result<KeyParts, Error> {
    let (alg, what) = match curve {
        EcdsaCurve::P256 => (&ECDSA_P256_SHA256_ASN1_SIGNING, "P-256"),
        EcdsaCurve::P384 => (&ECDSA_P384_SHA384_ASN1_SIGNING, "P-384"),
        EcdsaCurve::P521 => (&ECDSA_P521_SHA512_ASN1_SIGNING, "P-521"),
    };
    let failed = || Error::KeyGeneration { what };
    let pair = EcdsaKeyPair::generate(alg).map_err(|_| failed())?;
    let private = pair.to_pkcs8v1().map_err(|_| failed())?;
    let public = pair.public_key().as_der().map_err(|_| failed())?;
    Ok((
        Zeroizing::new(private.as_ref().to_vec()),
        public.as_ref().to_vec(),
    ))
}

fn generate_ed25519() -> Result<KeyParts, Error> {
    let failed = || Error::KeyGeneration { what: "Ed25519" };
    let pair = Ed25519KeyPair::generate().map_err(|_| failed())?;
    let private = pair.to_pkcs8v1().map_err(|_| failed())?;
    let public = pair.public_key().as_der().map_err(|_| failed())?;
    Ok((
        Zeroizing::new(private.as_ref().to_vec()),
        public.as_ref().to_vec(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_uuid_form() {
        let uuid = [
            0x12, 0x3e, 0x45, 0x67, 0xe8, 0x9b, 0x12, 0xd3, 0xa4, 0x56, 0x42, 0x66, 0x14, 0x17,
            0x40, 0x00,
        ];
        assert_eq!(
            canonical_uuid(&uuid),
            "123e4567-e89b-12d3-a456-426614174000"
        );
    }

    #[test]
    fn symmetric_sizes() {
        let rng = crate::SystemRandom;
        assert_eq!(generate_symmetric_key(128, &rng).unwrap().len(), 16);
        assert_eq!(generate_symmetric_key(8, &rng).unwrap().len(), 1);
        for bad in [0, 7, 129] {
            assert!(matches!(
                generate_symmetric_key(bad, &rng),
                Err(Error::UnsupportedSecretSize { size, .. }) if size == bad
            ));
        }
    }

    #[test]
    fn derived_key_limits() {
        let uuid = [1u8; 16];
        let max = derive_marble_key(b"root", &uuid, "k", "t", MAX_DERIVED_KEY_BITS).unwrap();
        assert_eq!(max.len(), 8160);
        assert!(derive_marble_key(b"root", &uuid, "k", "t", MAX_DERIVED_KEY_BITS + 8).is_err());
        assert!(derive_marble_key(b"root", &uuid, "k", "t", 12).is_err());
    }

    #[test]
    fn key_type_from_manifest() {
        assert_eq!(
            CertKeyType::from_secret("cert-rsa", 2048).unwrap(),
            CertKeyType::Rsa { bits: 2048 }
        );
        assert_eq!(
            CertKeyType::from_secret("cert-ecdsa", 521).unwrap(),
            CertKeyType::Ecdsa(EcdsaCurve::P521)
        );
        assert_eq!(
            CertKeyType::from_secret("cert-ed25519", 0).unwrap(),
            CertKeyType::Ed25519
        );
        let p224 = CertKeyType::from_secret("cert-ecdsa", 224)
            .unwrap_err()
            .to_string();
        assert!(p224.contains("P-224 is not supported"), "{p224}");
        assert!(CertKeyType::from_secret("cert-rsa", 1024).is_err());
        assert!(CertKeyType::from_secret("cert-ed25519", 256).is_err());
        assert!(matches!(
            CertKeyType::from_secret("plain", 0),
            Err(Error::UnsupportedSecretType(t)) if t == "plain"
        ));
    }
}
