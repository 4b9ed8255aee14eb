//! The emulator's own JOSE code: base64 in the alphabets Azure uses, RS256 signing of compact
//! JWTs, and verification of RS256 and ES256 signatures for the tokens the emulator accepts
//! (its own access tokens, federated client assertions).
//!
//! This is deliberately independent of the SKR client's JOSE code: the emulator stands in for
//! Azure, and sharing the wire code would let one mistake pass on both ends.
//!
//! Invariants: header and claims are serialised exactly as given (member order preserved), and
//! parsing never trusts a header's `alg` beyond choosing among the algorithms the caller allows.

use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{self, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

/// Base64url without padding, as JWS segments, MAA runtime data and `x-ms-sgx-ehd` use it.
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Standard base64 with padding, as `x5c` entries and MAA key ids use it.
pub fn b64std(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Why a base64url string could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Base64Error {
    /// The string holds `+` or `/`: the standard alphabet, not base64url.
    #[error(
        "character {character:?} at offset {offset} belongs to the standard base64 alphabet, not base64url"
    )]
    StandardAlphabet {
        /// The offending character.
        character: char,
        /// Its byte offset.
        offset: usize,
    },
    /// Any other decoding failure (bad character, bad length, bad padding).
    #[error("invalid base64url: {0}")]
    Invalid(String),
}

/// Decodes base64url with or without `=` padding (Azure's clients send both); rejects the
/// standard alphabet with an error that says so.
pub fn b64url_decode(input: &str) -> Result<Vec<u8>, Base64Error> {
    if let Some((offset, character)) = input.char_indices().find(|(_, c)| matches!(c, '+' | '/')) {
        return Err(Base64Error::StandardAlphabet { character, offset });
    }
    let trimmed = input.trim_end_matches('=');
    if input.len() - trimmed.len() > 2 {
        return Err(Base64Error::Invalid(
            "more than two padding characters".into(),
        ));
    }
    URL_SAFE_NO_PAD
        .decode(trimmed)
        .map_err(|e| Base64Error::Invalid(e.to_string()))
}

/// An RSA private key that signs RS256. Zeroed on drop; `Debug` shows no key material.
pub struct RsaSigningKey {
    pkcs8: Zeroizing<Vec<u8>>,
    pair: RsaKeyPair,
}

impl fmt::Debug for RsaSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RsaSigningKey(..)")
    }
}

/// A key that could not be generated, loaded or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Key generation failed in the crypto provider.
    #[error("rsa key generation failed")]
    Generate,
    /// The PKCS#8 document is not an RSA private key the provider accepts.
    #[error("invalid rsa private key: {0}")]
    Rejected(String),
    /// Signing failed in the crypto provider.
    #[error("rsa signing failed")]
    Sign,
}

impl RsaSigningKey {
    /// A fresh RSA-2048 key.
    pub fn generate() -> Result<Self, KeyError> {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyError::Generate)?;
        let pkcs8 = pair.as_der().map_err(|_| KeyError::Generate)?;
        Ok(Self {
            pkcs8: Zeroizing::new(pkcs8.as_ref().to_vec()),
            pair,
        })
    }

    /// Loads a PKCS#8 RSA private key.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, KeyError> {
        let pair = RsaKeyPair::from_pkcs8(pkcs8).map_err(|e| KeyError::Rejected(e.to_string()))?;
        Ok(Self {
            pkcs8: Zeroizing::new(pkcs8.to_vec()),
            pair,
        })
    }

    /// The PKCS#8 DER of the private key.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public modulus, big-endian without leading zeros.
    pub fn modulus(&self) -> Vec<u8> {
        self.pair
            .public_key()
            .modulus()
            .big_endian_without_leading_zero()
            .to_vec()
    }

    /// The public exponent, big-endian without leading zeros.
    pub fn exponent(&self) -> Vec<u8> {
        self.pair
            .public_key()
            .exponent()
            .big_endian_without_leading_zero()
            .to_vec()
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256 over `message`.
    pub fn sign_rs256(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                message,
                &mut sig,
            )
            .map_err(|_| KeyError::Sign)?;
        Ok(sig)
    }

    /// The public key as a JWK verifier.
    pub fn verifier(&self) -> JwkKey {
        JwkKey::Rsa {
            n: self.modulus(),
            e: self.exponent(),
        }
    }
}

/// Builds a compact JWS `header.claims.signature` signed with RS256. The header should carry
/// `"alg":"RS256"`; it and the claims are serialised in their member order.
pub fn sign_jwt(
    header: &Map<String, Value>,
    claims: &Map<String, Value>,
    key: &RsaSigningKey,
) -> Result<String, KeyError> {
    // Serialising a map of JSON values cannot fail.
    let header = serde_json::to_vec(header).unwrap_or_default();
    let claims = serde_json::to_vec(claims).unwrap_or_default();
    let signing_input = format!("{}.{}", b64url(&header), b64url(&claims));
    let sig = key.sign_rs256(signing_input.as_bytes())?;
    Ok(format!("{signing_input}.{}", b64url(&sig)))
}

/// A public key a JWT can be checked with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwkKey {
    /// RSA, for RS256.
    Rsa {
        /// Modulus, big-endian.
        n: Vec<u8>,
        /// Exponent, big-endian.
        e: Vec<u8>,
    },
    /// EC P-256, for ES256.
    EcP256 {
        /// X coordinate, 32 bytes.
        x: Vec<u8>,
        /// Y coordinate, 32 bytes.
        y: Vec<u8>,
    },
}

impl JwkKey {
    /// Reads a public JWK (`kty` `RSA` with `n`/`e`, or `EC` with `crv` `P-256` and `x`/`y`).
    pub fn from_jwk(jwk: &Value) -> Result<Self, JwtError> {
        let field = |name: &str| -> Result<Vec<u8>, JwtError> {
            let s = jwk
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| JwtError::Key(format!("jwk has no string member {name:?}")))?;
            b64url_decode(s).map_err(|e| JwtError::Key(format!("jwk member {name:?}: {e}")))
        };
        match jwk.get("kty").and_then(Value::as_str) {
            Some("RSA") => Ok(JwkKey::Rsa {
                n: field("n")?,
                e: field("e")?,
            }),
            Some("EC") if jwk.get("crv").and_then(Value::as_str) == Some("P-256") => {
                Ok(JwkKey::EcP256 {
                    x: field("x")?,
                    y: field("y")?,
                })
            }
            other => Err(JwtError::Key(format!("unsupported jwk key type {other:?}"))),
        }
    }

    /// The public JWK members (`kty`, and `n`/`e` or `crv`/`x`/`y`).
    pub fn to_jwk(&self) -> Map<String, Value> {
        let mut m = Map::new();
        match self {
            JwkKey::Rsa { n, e } => {
                m.insert("kty".into(), "RSA".into());
                m.insert("n".into(), b64url(n).into());
                m.insert("e".into(), b64url(e).into());
            }
            JwkKey::EcP256 { x, y } => {
                m.insert("kty".into(), "EC".into());
                m.insert("crv".into(), "P-256".into());
                m.insert("x".into(), b64url(x).into());
                m.insert("y".into(), b64url(y).into());
            }
        }
        m
    }

    /// Checks `signature` over `message` for `alg` (`RS256` or `ES256`, matching the key type).
    pub fn verify(&self, alg: &str, message: &[u8], sig: &[u8]) -> Result<(), JwtError> {
        let ok = match (self, alg) {
            (JwkKey::Rsa { n, e }, "RS256") => signature::RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, sig)
                .is_ok(),
            (JwkKey::EcP256 { x, y }, "ES256") => {
                let mut point = Vec::with_capacity(65);
                point.push(4);
                point.extend_from_slice(x);
                point.extend_from_slice(y);
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, sig)
                    .is_ok()
            }
            _ => return Err(JwtError::Algorithm(alg.to_owned())),
        };
        if ok { Ok(()) } else { Err(JwtError::Signature) }
    }
}

/// Why a JWT was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// Not three base64url segments with JSON header and claims.
    #[error("malformed jwt: {0}")]
    Malformed(String),
    /// The `alg` is not one the verifier accepts for the key.
    #[error("unsupported jwt algorithm {0:?}")]
    Algorithm(String),
    /// The signature does not verify.
    #[error("jwt signature does not verify")]
    Signature,
    /// The verification key is unusable.
    #[error("invalid verification key: {0}")]
    Key(String),
}

/// A compact JWT split into its parts, signature not yet checked.
#[derive(Clone)]
pub struct UnverifiedJwt {
    /// The protected header.
    pub header: Map<String, Value>,
    /// The claims.
    pub claims: Map<String, Value>,
    signing_input: String,
    signature: Vec<u8>,
}

impl fmt::Debug for UnverifiedJwt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UnverifiedJwt(..)")
    }
}

impl UnverifiedJwt {
    /// Splits and decodes a compact JWT. Tokens longer than 64 KiB are refused.
    pub fn parse(token: &str) -> Result<Self, JwtError> {
        const MAX_TOKEN_LEN: usize = 64 * 1024;
        if token.len() > MAX_TOKEN_LEN {
            return Err(JwtError::Malformed(format!(
                "token of {} bytes exceeds {MAX_TOKEN_LEN}",
                token.len()
            )));
        }
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed(
                "expected three dot-separated segments".into(),
            ));
        };
        let object = |segment: &str, what: &str| -> Result<Map<String, Value>, JwtError> {
            let bytes =
                b64url_decode(segment).map_err(|e| JwtError::Malformed(format!("{what}: {e}")))?;
            match serde_json::from_slice(&bytes) {
                Ok(Value::Object(m)) => Ok(m),
                Ok(_) => Err(JwtError::Malformed(format!("{what} is not a json object"))),
                Err(e) => Err(JwtError::Malformed(format!("{what}: {e}"))),
            }
        };
        let header = object(h, "header")?;
        let claims = object(c, "claims")?;
        let signature =
            b64url_decode(s).map_err(|e| JwtError::Malformed(format!("signature: {e}")))?;
        Ok(Self {
            header,
            claims,
            signing_input: format!("{h}.{c}"),
            signature,
        })
    }

    /// The header's `alg`, if it is a string.
    pub fn alg(&self) -> Option<&str> {
        self.header.get("alg").and_then(Value::as_str)
    }

    /// The header's `kid`, if it is a string.
    pub fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(Value::as_str)
    }

    /// A string claim.
    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// An integer claim (`exp`, `nbf`, `iat`).
    pub fn claim_i64(&self, name: &str) -> Option<i64> {
        self.claims.get(name).and_then(Value::as_i64)
    }

    /// Checks the signature with `key`, for the header's `alg`.
    pub fn verify(&self, key: &JwkKey) -> Result<(), JwtError> {
        let alg = self
            .alg()
            .ok_or_else(|| JwtError::Algorithm(String::new()))?;
        key.verify(alg, self.signing_input.as_bytes(), &self.signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_accepts_padding_and_rejects_standard_alphabet() {
        assert_eq!(b64url_decode("aGk").unwrap(), b"hi");
        assert_eq!(b64url_decode("aGk=").unwrap(), b"hi");
        assert!(matches!(
            b64url_decode("a+8="),
            Err(Base64Error::StandardAlphabet {
                character: '+',
                offset: 1
            })
        ));
        assert!(matches!(
            b64url_decode("a==="),
            Err(Base64Error::Invalid(_))
        ));
        assert!(matches!(
            b64url_decode("@@@@"),
            Err(Base64Error::Invalid(_))
        ));
    }

    #[test]
    fn signed_jwt_verifies_and_tampering_is_detected() {
        let key = RsaSigningKey::generate().unwrap();
        let mut header = Map::new();
        header.insert("alg".into(), "RS256".into());
        let mut claims = Map::new();
        claims.insert("sub".into(), "x".into());
        let token = sign_jwt(&header, &claims, &key).unwrap();
        let parsed = UnverifiedJwt::parse(&token).unwrap();
        parsed.verify(&key.verifier()).unwrap();
        assert_eq!(parsed.claim_str("sub"), Some("x"));

        let other = RsaSigningKey::generate().unwrap();
        assert_eq!(parsed.verify(&other.verifier()), Err(JwtError::Signature));

        let mut segments: Vec<&str> = token.split('.').collect();
        let other_claims = b64url(br#"{"sub":"y"}"#);
        segments[1] = &other_claims;
        let forged = segments.join(".");
        assert_eq!(
            UnverifiedJwt::parse(&forged)
                .unwrap()
                .verify(&key.verifier()),
            Err(JwtError::Signature)
        );

        let reloaded = RsaSigningKey::from_pkcs8(key.pkcs8()).unwrap();
        parsed.verify(&reloaded.verifier()).unwrap();
    }

    #[test]
    fn rejects_malformed_tokens() {
        for bad in [
            "",
            "a.b",
            "a.b.c.d",
            "e30.e30.@",
            "WzFd.e30.",
            "e30.bnVsbA.e30",
        ] {
            assert!(UnverifiedJwt::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn algorithm_must_match_key_type() {
        let key = RsaSigningKey::generate().unwrap();
        assert_eq!(
            key.verifier().verify("ES256", b"m", b"s"),
            Err(JwtError::Algorithm("ES256".into()))
        );
        assert_eq!(
            key.verifier().verify("none", b"m", b""),
            Err(JwtError::Algorithm("none".into()))
        );
    }
}
