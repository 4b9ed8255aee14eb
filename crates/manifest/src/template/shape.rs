//! Secret shapes and the placeholder values the dry run renders with.
//!
//! When a manifest is set, most secret values do not exist yet (unique secrets are made per
//! Marble, user-defined ones are uploaded later), but every template must already render.
//! The dry run therefore renders over placeholders: values of the right type whose parts have
//! the length a real value of that type and size has (for RSA the usual length, since the exact
//! DER length of an RSA key varies by a byte). The placeholder bytes are a fixed filler (`A`,
//! the byte MarbleRun's dummies use): the encoders and the checks on the output do not depend
//! on the content, and the crate stays free of randomness.
//!
//! Sizes follow MarbleRun's generation rules: `symmetric-key` a positive multiple of 8 bits,
//! `cert-rsa` at least 1024 bits, `cert-ecdsa` 256, 384 or 521 (P-224 is refused: rcgen cannot
//! make such keys), `cert-ed25519` 0. MarbleRun checks the size of a user-defined secret only
//! when a value is uploaded, so a user-defined secret with a size that generation would refuse
//! still gets a placeholder (the type's usual length) instead of an error.

use std::collections::BTreeMap;

use quarry_common::DocPath;

use super::data::{MarbleRunSecrets, Part, Secret, SecretBytes, SecretType, TemplateData};
use super::error::{RenderError, TemplateErrors, TemplateProblem};

/// The filler byte of placeholder values.
const FILLER: u8 = b'A';

/// Largest symmetric key a placeholder is made for, in bytes; larger sizes are refused rather
/// than allocated.
const MAX_PLACEHOLDER_KEY_BYTES: u64 = 1024 * 1024;

/// Largest RSA modulus a placeholder is made for, in bits.
const MAX_RSA_BITS: u64 = 16384;

/// What a secret will be, as far as templates care: its type, its size and whether users
/// upload it. Mapped from a manifest `Secrets` entry (`Type`, `Size`, `UserDefined`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretShape {
    /// The secret's `Type`.
    pub secret_type: SecretType,
    /// The secret's `Size` in bits (0 when the manifest omits it).
    pub size: u64,
    /// The secret's `UserDefined` flag.
    pub user_defined: bool,
}

/// Why no placeholder can be made for a [`SecretShape`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShapeError {
    /// The size is not one the type allows.
    #[error("size {size} is not valid for a {secret_type} secret: {expected}")]
    InvalidSize {
        /// The secret's type.
        secret_type: SecretType,
        /// The size given.
        size: u64,
        /// What the type allows.
        expected: &'static str,
    },
    /// A `plain` secret is never generated, so it must be user-defined.
    #[error("a plain secret must be user-defined")]
    PlainNotUserDefined,
    /// The secrets together, up to and including this one, are larger than the sealed state
    /// the Coordinator can keep.
    #[error(
        "the secrets up to this one hold {total} bytes, more than the {limit} bytes the sealed \
         state can keep"
    )]
    TooLarge {
        /// Bytes of the secrets up to and including this one.
        total: usize,
        /// [`MAX_PLACEHOLDER_TOTAL_BYTES`].
        limit: usize,
    },
}

/// The most bytes of secret material (each secret's certificate and private part) one dry run
/// makes placeholders for: the largest sealed state the Coordinator's store keeps, so no
/// manifest over it could be stored anyway. It bounds the dry run's memory.
pub const MAX_PLACEHOLDER_TOTAL_BYTES: usize = 256 * 1024 * 1024;

impl SecretShape {
    /// A placeholder value of this shape.
    pub fn placeholder(&self) -> Result<Secret, ShapeError> {
        match self.secret_type {
            SecretType::SymmetricKey => self.symmetric_key_placeholder(),
            SecretType::Plain if !self.user_defined => Err(ShapeError::PlainNotUserDefined),
            // MarbleRun's dummy for an unknown user value is the single byte `A`.
            SecretType::Plain => Ok(Secret::plain(filler(1))),
            SecretType::CertRsa | SecretType::CertEcdsa | SecretType::CertEd25519 => {
                let lengths = self.key_lengths()?;
                let secret = Secret::certificate(
                    self.secret_type,
                    filler(certificate_length(lengths.public)),
                    filler(lengths.public),
                    filler(lengths.private),
                );
                // The match arm only admits certificate types, which `certificate` accepts.
                secret.ok_or(ShapeError::InvalidSize {
                    secret_type: self.secret_type,
                    size: self.size,
                    expected: "a certificate type",
                })
            }
        }
    }

    fn symmetric_key_placeholder(&self) -> Result<Secret, ShapeError> {
        let valid = self.size > 0
            && self.size.is_multiple_of(8)
            && self.size / 8 <= MAX_PLACEHOLDER_KEY_BYTES;
        if valid {
            // Bounded by MAX_PLACEHOLDER_KEY_BYTES, so the cast cannot truncate.
            return Ok(Secret::symmetric_key(filler((self.size / 8) as usize)));
        }
        if self.user_defined {
            return Ok(Secret::symmetric_key(filler(1)));
        }
        Err(ShapeError::InvalidSize {
            secret_type: self.secret_type,
            size: self.size,
            expected: "a positive multiple of 8 bits, at most 8388608 bits (1 MiB)",
        })
    }

    fn key_lengths(&self) -> Result<KeyLengths, ShapeError> {
        let (lengths, expected) = match self.secret_type {
            SecretType::CertRsa => (
                (1024..=MAX_RSA_BITS)
                    .contains(&self.size)
                    .then(|| rsa_lengths(self.size)),
                "at least 1024 bits, at most 16384",
            ),
            SecretType::CertEcdsa => (ecdsa_lengths(self.size), "256, 384 or 521"),
            _ => ((self.size == 0).then_some(ED25519), "0 (or omitted)"),
        };
        match lengths {
            Some(lengths) => Ok(lengths),
            None if self.user_defined => Ok(self.default_lengths()),
            None => Err(ShapeError::InvalidSize {
                secret_type: self.secret_type,
                size: self.size,
                expected,
            }),
        }
    }

    fn default_lengths(&self) -> KeyLengths {
        match self.secret_type {
            SecretType::CertRsa => rsa_lengths(2048),
            SecretType::CertEcdsa => P256,
            _ => ED25519,
        }
    }
}

impl TemplateData {
    /// Dry-run data: a placeholder for every secret in `shapes` under `.Secrets` and
    /// `.Previous.Secrets`, and placeholder `.MarbleRun` entries. Replace placeholders by known
    /// values with [`TemplateData::set_secret`] (for example the value being uploaded).
    ///
    /// Every shape without a placeholder is reported, with the path `Secrets["name"].Size`
    /// (or `.UserDefined` for a generated plain secret).
    pub fn placeholders<'a, I>(shapes: I) -> Result<Self, TemplateErrors>
    where
        I: IntoIterator<Item = (&'a str, &'a SecretShape)>,
    {
        let mut data = Self::new(placeholder_marblerun());
        let mut problems = Vec::new();
        let mut total = 0usize;
        for (name, shape) in shapes {
            let placeholder = shape.placeholder().and_then(|secret| {
                total = total
                    .saturating_add(secret.part(Part::Cert).len())
                    .saturating_add(secret.part(Part::Private).len());
                if total > MAX_PLACEHOLDER_TOTAL_BYTES {
                    return Err(ShapeError::TooLarge {
                        total,
                        limit: MAX_PLACEHOLDER_TOTAL_BYTES,
                    });
                }
                Ok(secret)
            });
            match placeholder {
                Ok(secret) => data.set_secret_and_previous(name, secret),
                Err(error) => {
                    let too_large = matches!(error, ShapeError::TooLarge { .. });
                    let field = match error {
                        ShapeError::PlainNotUserDefined => "UserDefined",
                        ShapeError::InvalidSize { .. } | ShapeError::TooLarge { .. } => "Size",
                    };
                    let path = DocPath::root().field("Secrets").key(name).field(field);
                    problems.push(TemplateProblem::new(path, RenderError::Shape(error)));
                    if too_large {
                        // No more placeholders: they would only grow past the limit.
                        break;
                    }
                }
            }
        }
        TemplateErrors::from_problems(problems).map_or(Ok(data), Err)
    }
}

/// Placeholder `.MarbleRun` entries: certificates for the CAs, and a P-384 key pair with a
/// certificate for the Marble (the key type the Coordinator gives Marbles).
pub fn placeholder_marblerun() -> MarbleRunSecrets {
    let ca = || Secret::reserved_certificate(filler(certificate_length(P384.public)));
    MarbleRunSecrets {
        root_ca: ca(),
        marble_cert: Secret::reserved(
            filler(certificate_length(P384.public)),
            filler(P384.public),
            filler(P384.private),
        ),
        coordinator_root: ca(),
        coordinator_intermediate: ca(),
    }
}

/// Placeholder data for every shape in a map, as [`TemplateData::placeholders`] does.
pub fn placeholder_data(
    shapes: &BTreeMap<String, SecretShape>,
) -> Result<TemplateData, TemplateErrors> {
    TemplateData::placeholders(shapes.iter().map(|(name, shape)| (name.as_str(), shape)))
}

fn filler(len: usize) -> SecretBytes {
    SecretBytes::new(vec![FILLER; len])
}

/// DER lengths of a key pair: PKIX `SubjectPublicKeyInfo` and PKCS#8 as Go writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct KeyLengths {
    public: usize,
    private: usize,
}

/// Ed25519: PKCS#8 without the optional public key (RFC 8410, Go's form).
const ED25519: KeyLengths = KeyLengths {
    public: 44,
    private: 48,
};

/// ECDSA P-256; Go's PKCS#8 embeds the public key and omits the inner curve parameters.
const P256: KeyLengths = KeyLengths {
    public: 91,
    private: 138,
};

/// ECDSA P-384.
const P384: KeyLengths = KeyLengths {
    public: 120,
    private: 185,
};

/// ECDSA P-521.
const P521: KeyLengths = KeyLengths {
    public: 158,
    private: 241,
};

fn ecdsa_lengths(bits: u64) -> Option<KeyLengths> {
    match bits {
        256 => Some(P256),
        384 => Some(P384),
        521 => Some(P521),
        _ => None,
    }
}

/// The usual DER lengths of an RSA key with exponent 65537 whose modulus has `bits` bits.
fn rsa_lengths(bits: u64) -> KeyLengths {
    // `bits` is at most MAX_RSA_BITS here, so the casts cannot truncate.
    let modulus = (bits as usize).div_ceil(8);
    let half = modulus.div_ceil(2);
    // INTEGERs get a leading zero when their top bit is set, as a full-size modulus has.
    let big = |len: usize| der_len(len + 1);
    let exponent = der_len(3);
    let algorithm = 15; // SEQUENCE { rsaEncryption, NULL }

    let public_key = der_len(big(modulus) + exponent);
    let public = der_len(algorithm + der_len(1 + public_key));

    // The primes and their exponents usually have their top bit set; the private exponent
    // and the CRT coefficient usually do not.
    let private_key = der_len(
        der_len(1) // version
            + big(modulus)
            + exponent
            + der_len(modulus) // private exponent
            + 4 * big(half) // p, q, d mod p-1, d mod q-1
            + der_len(half), // q^-1 mod p
    );
    let private = der_len(der_len(1) + algorithm + der_len(private_key));
    KeyLengths { public, private }
}

/// The usual length of a certificate for a key whose PKIX encoding is `public` bytes long,
/// signed by the Coordinator's P-384 intermediate key (names, validity, extensions and
/// signature add about 450 bytes).
fn certificate_length(public: usize) -> usize {
    public + 450
}

/// The length of a DER element with `content` bytes of content.
fn der_len(content: usize) -> usize {
    let length_bytes = match content {
        0..=0x7f => 1,
        0x80..=0xff => 2,
        0x100..=0xffff => 3,
        _ => 4,
    };
    1 + length_bytes + content
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn shape(secret_type: SecretType, size: u64, user_defined: bool) -> SecretShape {
        SecretShape {
            secret_type,
            size,
            user_defined,
        }
    }

    fn lengths(secret: &Secret) -> [usize; 3] {
        Part::ALL.map(|part| secret.part(part).len())
    }

    #[test]
    fn symmetric_key_placeholder_has_size_over_eight_bytes() {
        let key = shape(SecretType::SymmetricKey, 256, false)
            .placeholder()
            .unwrap();
        assert_eq!(lengths(&key), [0, 32, 32]);
    }

    #[test]
    fn rsa_lengths_match_go_encodings() {
        // Lengths of keys made by Go's crypto/rsa and x509.MarshalPKCS8PrivateKey.
        assert_eq!(rsa_lengths(2048).public, 294);
        assert_eq!(rsa_lengths(4096).public, 550);
        assert!((1216..=1219).contains(&rsa_lengths(2048).private));
    }

    #[test]
    fn certificate_placeholders_have_key_lengths_of_their_size() {
        let ecdsa = shape(SecretType::CertEcdsa, 384, false)
            .placeholder()
            .unwrap();
        assert_eq!(lengths(&ecdsa)[1..], [120, 185]);
        let ed = shape(SecretType::CertEd25519, 0, false)
            .placeholder()
            .unwrap();
        assert_eq!(lengths(&ed)[1..], [44, 48]);
        assert!(!ed.part(Part::Cert).is_empty());
    }

    #[test]
    fn generated_secrets_with_invalid_sizes_are_refused() {
        for (ty, size) in [
            (SecretType::SymmetricKey, 0),
            (SecretType::SymmetricKey, 12),
            (SecretType::SymmetricKey, u64::MAX - 7),
            (SecretType::CertRsa, 512),
            (SecretType::CertEcdsa, 224),
            (SecretType::CertEd25519, 256),
        ] {
            let error = shape(ty, size, false).placeholder().unwrap_err();
            assert!(
                matches!(error, ShapeError::InvalidSize { .. }),
                "{ty} {size}"
            );
        }
    }

    #[test]
    fn symmetric_key_size_limit_is_stated_in_bits() {
        let largest = 8 * MAX_PLACEHOLDER_KEY_BYTES;
        assert!(
            shape(SecretType::SymmetricKey, largest, false)
                .placeholder()
                .is_ok()
        );
        let error = shape(SecretType::SymmetricKey, largest + 8, false)
            .placeholder()
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains(&format!("at most {largest} bits")),
            "{error}"
        );
    }

    #[test]
    fn user_defined_secrets_get_placeholders_whatever_their_size() {
        for ty in [
            SecretType::SymmetricKey,
            SecretType::CertRsa,
            SecretType::CertEcdsa,
            SecretType::CertEd25519,
            SecretType::Plain,
        ] {
            assert!(shape(ty, 3, true).placeholder().is_ok(), "{ty}");
        }
    }

    #[test]
    fn generated_plain_secret_is_refused_with_its_path() {
        let shapes = BTreeMap::from([("p".to_owned(), shape(SecretType::Plain, 0, false))]);
        let errors = placeholder_data(&shapes).unwrap_err();
        assert_eq!(
            errors.problems()[0].path.to_string(),
            r#"Secrets["p"].UserDefined"#
        );
    }

    #[test]
    fn placeholders_stop_at_the_sealed_state_limit() {
        // 1 MiB keys: 256 fit exactly, the 257th crosses the limit and is named.
        let key = shape(SecretType::SymmetricKey, 8 * 1024 * 1024, false);
        let names: Vec<String> = (0..2000).map(|i| format!("k{i:04}")).collect();
        let fitting = names[..256].iter().map(|n| (n.as_str(), &key));
        assert!(TemplateData::placeholders(fitting).is_ok());

        let errors = TemplateData::placeholders(names.iter().map(|n| (n.as_str(), &key)))
            .expect_err("over the limit");
        let [problem] = errors.problems() else {
            panic!("one problem expected: {errors}");
        };
        assert_eq!(
            problem.to_string().split(':').next(),
            Some(r#"Secrets["k0256"].Size"#)
        );
        assert!(
            problem.to_string().contains(&format!(
                "{} bytes, more than the {MAX_PLACEHOLDER_TOTAL_BYTES} bytes",
                MAX_PLACEHOLDER_TOTAL_BYTES + 1024 * 1024
            )),
            "{problem}"
        );
    }

    #[test]
    fn previous_and_current_placeholders_share_one_value() {
        let key = shape(SecretType::SymmetricKey, 128, false);
        let data = TemplateData::placeholders([("k", &key)]).unwrap();
        assert!(Arc::ptr_eq(&data.secrets["k"], &data.previous["k"]));
    }
}
