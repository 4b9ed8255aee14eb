//! Verification of the Managed HSM release response, in this order: the `x5c` chain to a
//! trusted root and valid for the vault's host name; the JWS signature with `x5c[0]`'s key; the
//! echoed nonce; the released key's id (the requested name and, if one was asked for, version);
//! the wrapping mechanism; and the `key_hsm` envelope (for the wrapping key sent). Only what
//! passes all of these reaches the unwrap step.
//!
//! The JWS `kid` is not interpreted (its format differs between services); the certificate
//! chain and the host name are what identify the signer.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use reqwest::Url;
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, UnixTime};
use serde::Deserialize;

use crate::config::is_key_version;
use crate::error::ErrorKind;
use crate::trust::{TrustStore, verify_chain};
use crate::wrapping::WrapAlgorithm;

const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
/// base64url, padding optional (JWS segments, `key_hsm`, `ciphertext`).
pub(crate) const B64URL: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);
/// standard base64, padding optional (`x5c`).
const B64STD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);

/// What the client asked for, which the response must match.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The vault's host name.
    pub host: &'a str,
    /// The key name requested.
    pub key_name: &'a str,
    /// The key version requested, if any.
    pub key_version: Option<&'a str>,
    /// The nonce sent, if any.
    pub nonce: Option<&'a str>,
    /// The mechanism requested.
    pub enc: WrapAlgorithm,
    /// The `kid` of the wrapping key sent; `None` skips the `key_hsm.header.kid` check.
    pub wrapping_kid: Option<&'a str>,
}

/// A verified release: who the key is, and its still-wrapped material.
#[derive(Debug, Clone)]
pub struct VerifiedRelease {
    /// The released key's full id, `https://{host}/keys/{name}/{version}`.
    pub key_id: String,
    /// The released key's version.
    pub version: String,
    /// The released key's type, as sent (`oct`, `oct-HSM`, `RSA`, ...).
    pub kty: String,
    /// The wrapped key: `RSA-OAEP(K) || AES-KWP(K, key)`.
    pub ciphertext: Vec<u8>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    x5c: Vec<String>,
}

#[derive(Deserialize)]
struct Payload {
    request: Option<RequestEcho>,
    response: ResponseBody,
}

#[derive(Deserialize)]
struct RequestEcho {
    enc: Option<String>,
    nonce: Option<String>,
}

#[derive(Deserialize)]
struct ResponseBody {
    key: KeyBundle,
}

#[derive(Deserialize)]
struct KeyBundle {
    key: ReleasedJwk,
}

#[derive(Deserialize)]
struct ReleasedJwk {
    kid: String,
    kty: String,
    key_hsm: Option<String>,
}

#[derive(Deserialize)]
struct KeyHsm {
    ciphertext: String,
    header: KeyHsmHeader,
}

#[derive(Deserialize)]
struct KeyHsmHeader {
    kid: Option<String>,
    enc: Option<String>,
}

fn malformed(what: &'static str, detail: impl Into<String>) -> ErrorKind {
    ErrorKind::Malformed {
        what,
        detail: detail.into(),
    }
}

/// Verifies a release response's compact JWS against `expected`, trusting `trust` at `now`.
pub fn verify_release(
    jws: &str,
    expected: &Expected<'_>,
    trust: &TrustStore,
    now: UnixTime,
) -> Result<VerifiedRelease, ErrorKind> {
    let mut parts = jws.trim().split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed(
            "release response",
            "not a compact JWS of three parts",
        ));
    };
    let header: Header = decode_json(header_b64, "jws header")?;
    let chain = header
        .x5c
        .iter()
        .map(|c| B64STD.decode(c).map(CertificateDer::from))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| malformed("jws header", format!("x5c entry is not base64: {e}")))?;

    verify_chain(&chain, expected.host, trust, now)?;
    verify_signature(
        &header.alg,
        &chain[0],
        header_b64,
        payload_b64,
        signature_b64,
    )?;

    let payload: Payload = decode_json(payload_b64, "jws payload")?;
    let echo = payload.request.unwrap_or(RequestEcho {
        enc: None,
        nonce: None,
    });
    if let Some(nonce) = expected.nonce
        && echo.nonce.as_deref() != Some(nonce)
    {
        return Err(ErrorKind::NonceMismatch {
            expected: nonce.to_owned(),
            found: echo.nonce,
        });
    }
    let jwk = payload.response.key.key;
    let version = check_key_id(&jwk.kid, expected)?;

    let key_hsm_b64 = jwk
        .key_hsm
        .ok_or_else(|| malformed("released key", "no key_hsm"))?;
    let key_hsm: KeyHsm = decode_json(&key_hsm_b64, "key_hsm")?;
    for found in [echo.enc.as_deref(), key_hsm.header.enc.as_deref()] {
        // The service echoes the effective mechanism; a missing echo is taken as the
        // service default, which is not what Quarry asks for.
        let found = found.unwrap_or(WrapAlgorithm::CkmRsaAesKeyWrap.as_str());
        if found != expected.enc.as_str() {
            return Err(ErrorKind::EncMismatch {
                expected: expected.enc.as_str().to_owned(),
                found: found.to_owned(),
            });
        }
    }
    if let Some(kid) = expected.wrapping_kid {
        let found = key_hsm.header.kid.unwrap_or_default();
        if found != kid {
            return Err(ErrorKind::WrappingKeyMismatch {
                expected: kid.to_owned(),
                found,
            });
        }
    }
    let ciphertext = B64URL
        .decode(key_hsm.ciphertext.as_bytes())
        .map_err(|e| malformed("key_hsm", format!("ciphertext is not base64url: {e}")))?;

    Ok(VerifiedRelease {
        key_id: jwk.kid,
        version,
        kty: jwk.kty,
        ciphertext,
    })
}

fn decode_json<T: for<'de> Deserialize<'de>>(
    b64: &str,
    what: &'static str,
) -> Result<T, ErrorKind> {
    let bytes = B64URL
        .decode(b64.as_bytes())
        .map_err(|e| malformed(what, format!("not base64url: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| malformed(what, e.to_string()))
}

/// Checks the JWS signature over `header.payload` with the leaf's key.
fn verify_signature(
    alg: &str,
    leaf: &CertificateDer<'_>,
    header_b64: &str,
    payload_b64: &str,
    signature_b64: &str,
) -> Result<(), ErrorKind> {
    use webpki::aws_lc_rs as algs;

    let (algorithm, ecdsa_len): (&dyn SignatureVerificationAlgorithm, Option<usize>) = match alg {
        "RS256" => (algs::RSA_PKCS1_2048_8192_SHA256, None),
        "RS384" => (algs::RSA_PKCS1_2048_8192_SHA384, None),
        "RS512" => (algs::RSA_PKCS1_2048_8192_SHA512, None),
        "PS256" => (algs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY, None),
        "PS384" => (algs::RSA_PSS_2048_8192_SHA384_LEGACY_KEY, None),
        "PS512" => (algs::RSA_PSS_2048_8192_SHA512_LEGACY_KEY, None),
        "ES256" => (algs::ECDSA_P256_SHA256, Some(32)),
        "ES384" => (algs::ECDSA_P384_SHA384, Some(48)),
        "ES512" => (algs::ECDSA_P521_SHA512, Some(66)),
        other => {
            return Err(ErrorKind::UnsupportedAlgorithm {
                alg: other.to_owned(),
            });
        }
    };
    let bad = || ErrorKind::BadSignature {
        alg: alg.to_owned(),
    };
    let signature = B64URL.decode(signature_b64.as_bytes()).map_err(|_| bad())?;
    let signature = match ecdsa_len {
        Some(len) => ecdsa_fixed_to_der(&signature, len).ok_or_else(bad)?,
        None => signature,
    };
    let leaf = webpki::EndEntityCert::try_from(leaf).map_err(ErrorKind::UntrustedChain)?;
    let message = format!("{header_b64}.{payload_b64}");
    leaf.verify_signature(algorithm, message.as_bytes(), &signature)
        .map_err(|_| bad())
}

/// Converts a JWS ECDSA signature (`r || s`, each `len` bytes) to the DER form webpki verifies.
fn ecdsa_fixed_to_der(signature: &[u8], len: usize) -> Option<Vec<u8>> {
    if signature.len() != 2 * len {
        return None;
    }
    let integer = |bytes: &[u8]| {
        let start = bytes
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(bytes.len() - 1);
        let bytes = &bytes[start..];
        let mut out = vec![0x02];
        let pad = bytes[0] & 0x80 != 0;
        der_len(&mut out, bytes.len() + usize::from(pad));
        if pad {
            out.push(0);
        }
        out.extend_from_slice(bytes);
        out
    };
    let body = [integer(&signature[..len]), integer(&signature[len..])].concat();
    let mut out = vec![0x30];
    der_len(&mut out, body.len());
    out.extend_from_slice(&body);
    Some(out)
}

fn der_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        // Signatures are shorter than 256 bytes.
        out.extend_from_slice(&[0x81, len as u8]);
    }
}

/// Checks `https://{host}/keys/{name}/{version}` against the request; returns the version.
fn check_key_id(kid: &str, expected: &Expected<'_>) -> Result<String, ErrorKind> {
    let requested = match expected.key_version {
        Some(v) => format!("https://{}/keys/{}/{v}", expected.host, expected.key_name),
        None => format!("https://{}/keys/{}", expected.host, expected.key_name),
    };
    let mismatch = || ErrorKind::KeyIdMismatch {
        expected: requested.clone(),
        found: kid.to_owned(),
    };
    let url = Url::parse(kid).map_err(|_| mismatch())?;
    if url.scheme() != "https"
        || !url
            .host_str()
            .is_some_and(|h| h.eq_ignore_ascii_case(expected.host))
        || url.query().is_some()
    {
        return Err(mismatch());
    }
    let segments: Vec<&str> = url
        .path_segments()
        .map(Iterator::collect)
        .unwrap_or_default();
    let [keys, name, version] = segments[..] else {
        return Err(mismatch());
    };
    if keys != "keys" || !name.eq_ignore_ascii_case(expected.key_name) || !is_key_version(version) {
        return Err(mismatch());
    }
    if expected
        .key_version
        .is_some_and(|v| !v.eq_ignore_ascii_case(version))
    {
        return Err(mismatch());
    }
    Ok(version.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected<'a>(version: Option<&'a str>) -> Expected<'a> {
        Expected {
            host: "h.managedhsm.azure.net",
            key_name: "k1",
            key_version: version,
            nonce: None,
            enc: WrapAlgorithm::RsaAesKeyWrap384,
            wrapping_kid: None,
        }
    }

    #[test]
    fn key_id_must_name_the_requested_key() {
        let v = "0f5e6d2c9a8b47c1b2d3e4f5a6b7c8d9";
        let kid = format!("https://h.managedhsm.azure.net/keys/k1/{v}");
        assert_eq!(check_key_id(&kid, &expected(None)).unwrap(), v);
        assert_eq!(check_key_id(&kid, &expected(Some(v))).unwrap(), v);
        let other = "1f5e6d2c9a8b47c1b2d3e4f5a6b7c8d9";
        for bad in [
            format!("https://h.managedhsm.azure.net/keys/k2/{v}"),
            format!("https://other.managedhsm.azure.net/keys/k1/{v}"),
            format!("https://h.managedhsm.azure.net/secrets/k1/{v}"),
            "https://h.managedhsm.azure.net/keys/k1".to_owned(),
            format!("http://h.managedhsm.azure.net/keys/k1/{v}"),
        ] {
            assert!(check_key_id(&bad, &expected(None)).is_err(), "{bad}");
        }
        assert!(matches!(
            check_key_id(&kid, &expected(Some(other))),
            Err(ErrorKind::KeyIdMismatch { .. })
        ));
    }

    #[test]
    fn ecdsa_signature_conversion() {
        let mut sig = vec![0u8; 64];
        sig[0] = 0x80;
        sig[63] = 1;
        let der = ecdsa_fixed_to_der(&sig, 32).unwrap();
        assert_eq!(&der[..4], &[0x30, 38, 0x02, 33]);
        assert_eq!(&der[der.len() - 3..], &[0x02, 1, 1]);
        assert!(ecdsa_fixed_to_der(&sig[..63], 32).is_none());
    }

    #[test]
    fn refuses_non_jws() {
        let trust = TrustStore::empty();
        for input in ["", "a.b", "a.b.c.d"] {
            assert!(matches!(
                verify_release(input, &expected(None), &trust, UnixTime::now()),
                Err(ErrorKind::Malformed { .. })
            ));
        }
    }
}
