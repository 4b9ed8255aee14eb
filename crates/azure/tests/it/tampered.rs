//! Release responses built and signed by this test code, each wrong in one way, must each be
//! refused with their own error — before anything is unwrapped.

use std::sync::OnceLock;

use quarry_azure::{
    ErrorClass, ErrorKind, Expected, VerifiedRelease, WrapAlgorithm, WrappingKey, WrappingKeySize,
    verify_release,
};
use rustls_pki_types::UnixTime;

use crate::support::{KEY_NAME, LeafAlg, ReleaseResponse, TestCa, VERSION_1, VERSION_2};

const HOST: &str = "quarry.managedhsm.azure.net";
const NONCE: &str = "bm9uY2Utbm9uY2Utbm9u";
const SECRET: [u8; 32] = [0x5a; 32];

struct World {
    ca: TestCa,
    other_ca: TestCa,
    key: WrappingKey,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| World {
        ca: TestCa::new("hsm"),
        other_ca: TestCa::new("attacker"),
        key: WrappingKey::generate(WrappingKeySize::Rsa2048).unwrap(),
    })
}

fn jwk(key: &WrappingKey) -> (String, String, String) {
    let set: serde_json::Value = serde_json::from_slice(key.jwk_set_json()).unwrap();
    let k = &set["keys"][0];
    (
        k["n"].as_str().unwrap().into(),
        k["e"].as_str().unwrap().into(),
        k["kid"].as_str().unwrap().into(),
    )
}

fn expected(version: Option<&'static str>) -> Expected<'static> {
    Expected {
        host: HOST,
        key_name: KEY_NAME,
        key_version: version,
        nonce: Some(NONCE),
        enc: WrapAlgorithm::RsaAesKeyWrap384,
        wrapping_kid: Some(world().key.kid()),
    }
}

/// Builds a correct response with `alg`, lets `tamper` change it, signs it with `leaf`.
fn respond(
    alg: LeafAlg,
    tamper: impl FnOnce(&mut ReleaseResponse),
) -> Result<VerifiedRelease, ErrorKind> {
    let w = world();
    let leaf = w.ca.leaf(&[HOST], alg);
    let (n, e, kid) = jwk(&w.key);
    let mut response =
        ReleaseResponse::new(&leaf, HOST, VERSION_1, Some(NONCE), (&n, &e, &kid), &SECRET);
    tamper(&mut response);
    verify_release(
        &response.sign(&leaf),
        &expected(None),
        &w.ca.trust(),
        UnixTime::now(),
    )
}

#[test]
fn a_correct_response_verifies_and_unwraps() {
    for alg in [LeafAlg::Rs256, LeafAlg::Es256] {
        let verified = respond(alg, |_| {}).unwrap();
        assert_eq!(verified.version, VERSION_1);
        let key = world()
            .key
            .unwrap(WrapAlgorithm::RsaAesKeyWrap384, &verified.ciphertext)
            .unwrap();
        assert_eq!(key.as_slice(), &SECRET);
    }
}

#[test]
fn refuses_an_untrusted_chain() {
    let w = world();
    let leaf = w.other_ca.leaf(&[HOST], LeafAlg::Rs256);
    let (n, e, kid) = jwk(&w.key);
    let response =
        ReleaseResponse::new(&leaf, HOST, VERSION_1, Some(NONCE), (&n, &e, &kid), &SECRET);
    let err = verify_release(
        &response.sign(&leaf),
        &expected(None),
        &w.ca.trust(),
        UnixTime::now(),
    )
    .unwrap_err();
    assert!(matches!(err, ErrorKind::UntrustedChain(_)), "{err}");
    assert_eq!(err.class(), ErrorClass::NeedsOperator);
}

#[test]
fn refuses_a_chain_that_leaves_out_the_intermediate() {
    let err = respond(LeafAlg::Rs256, |r| r.x5c.truncate(1)).unwrap_err();
    assert!(matches!(err, ErrorKind::UntrustedChain(_)), "{err}");
}

#[test]
fn refuses_a_certificate_for_another_host() {
    let w = world();
    let leaf = w.ca.leaf(&["other.managedhsm.azure.net"], LeafAlg::Rs256);
    let (n, e, kid) = jwk(&w.key);
    let response =
        ReleaseResponse::new(&leaf, HOST, VERSION_1, Some(NONCE), (&n, &e, &kid), &SECRET);
    let err = verify_release(
        &response.sign(&leaf),
        &expected(None),
        &w.ca.trust(),
        UnixTime::now(),
    )
    .unwrap_err();
    assert!(matches!(err, ErrorKind::WrongHost { .. }), "{err}");
}

#[test]
fn refuses_a_bad_signature() {
    let w = world();
    let leaf = w.ca.leaf(&[HOST], LeafAlg::Rs256);
    let (n, e, kid) = jwk(&w.key);
    let response =
        ReleaseResponse::new(&leaf, HOST, VERSION_1, Some(NONCE), (&n, &e, &kid), &SECRET);
    let jws = response.sign(&leaf);
    // Signed by the right certificate's sibling key: same chain in x5c, another signer.
    let impostor = w.ca.leaf(&[HOST], LeafAlg::Rs256);
    let forged = {
        let (input, _) = jws.rsplit_once('.').unwrap();
        use base64::Engine as _;
        let sig = impostor.sign(input.as_bytes());
        format!(
            "{input}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig)
        )
    };
    let err = verify_release(&forged, &expected(None), &w.ca.trust(), UnixTime::now()).unwrap_err();
    assert!(matches!(err, ErrorKind::BadSignature { .. }), "{err}");

    // A signature algorithm that does not fit the key, and one that is not accepted at all.
    let err = respond(LeafAlg::Rs256, |r| r.alg = "ES256".into()).unwrap_err();
    assert!(matches!(err, ErrorKind::BadSignature { .. }), "{err}");
    for alg in ["none", "HS256"] {
        let err = respond(LeafAlg::Rs256, |r| r.alg = alg.into()).unwrap_err();
        assert!(
            matches!(err, ErrorKind::UnsupportedAlgorithm { .. }),
            "{err}"
        );
    }
}

#[test]
fn refuses_a_wrong_or_missing_nonce() {
    let err = respond(LeafAlg::Rs256, |r| r.nonce = Some("replayed".into())).unwrap_err();
    assert!(
        matches!(&err, ErrorKind::NonceMismatch { found: Some(f), .. } if f == "replayed"),
        "{err}"
    );
    let err = respond(LeafAlg::Rs256, |r| r.nonce = None).unwrap_err();
    assert!(
        matches!(err, ErrorKind::NonceMismatch { found: None, .. }),
        "{err}"
    );
}

#[test]
fn refuses_another_key_id() {
    let err = respond(LeafAlg::Rs256, |r| {
        r.kid = format!("https://{HOST}/keys/another-key/{VERSION_1}");
    })
    .unwrap_err();
    assert!(matches!(err, ErrorKind::KeyIdMismatch { .. }), "{err}");

    // A version other than the one asked for.
    let w = world();
    let leaf = w.ca.leaf(&[HOST], LeafAlg::Rs256);
    let (n, e, kid) = jwk(&w.key);
    let response =
        ReleaseResponse::new(&leaf, HOST, VERSION_2, Some(NONCE), (&n, &e, &kid), &SECRET);
    let err = verify_release(
        &response.sign(&leaf),
        &expected(Some(VERSION_1)),
        &w.ca.trust(),
        UnixTime::now(),
    )
    .unwrap_err();
    assert!(matches!(err, ErrorKind::KeyIdMismatch { .. }), "{err}");
}

#[test]
fn refuses_an_enc_not_asked_for() {
    let err = respond(LeafAlg::Rs256, |r| {
        r.request_enc = Some("RSA_AES_KEY_WRAP_256".into())
    })
    .unwrap_err();
    assert!(matches!(err, ErrorKind::EncMismatch { .. }), "{err}");
    let err = respond(LeafAlg::Rs256, |r| {
        r.header_enc = Some("CKM_RSA_AES_KEY_WRAP".into())
    })
    .unwrap_err();
    assert!(matches!(err, ErrorKind::EncMismatch { .. }), "{err}");
    // No echo means the service default, which was not asked for.
    let err = respond(LeafAlg::Rs256, |r| r.request_enc = None).unwrap_err();
    assert!(matches!(err, ErrorKind::EncMismatch { .. }), "{err}");
}

#[test]
fn refuses_a_key_wrapped_for_another_wrapping_key() {
    let err = respond(LeafAlg::Rs256, |r| r.wrapping_kid = "someone-else".into()).unwrap_err();
    assert!(
        matches!(err, ErrorKind::WrappingKeyMismatch { .. }),
        "{err}"
    );
}

#[test]
fn refuses_a_key_hsm_blob_of_the_wrong_length() {
    let verified = respond(LeafAlg::Rs256, |r| {
        r.ciphertext.truncate(r.ciphertext.len() - 5);
    })
    .unwrap();
    let err = world()
        .key
        .unwrap(WrapAlgorithm::RsaAesKeyWrap384, &verified.ciphertext)
        .unwrap_err();
    assert!(
        matches!(err, ErrorKind::CiphertextLength { rsa_len: 256, .. }),
        "{err}"
    );

    let verified = respond(LeafAlg::Rs256, |r| r.ciphertext.truncate(256)).unwrap();
    let err = world()
        .key
        .unwrap(WrapAlgorithm::RsaAesKeyWrap384, &verified.ciphertext)
        .unwrap_err();
    assert!(
        matches!(err, ErrorKind::CiphertextLength { len: 256, .. }),
        "{err}"
    );
}

#[test]
fn refuses_a_tampered_wrapped_key() {
    let verified = respond(LeafAlg::Rs256, |r| r.ciphertext[290] ^= 0x80).unwrap();
    let err = world()
        .key
        .unwrap(WrapAlgorithm::RsaAesKeyWrap384, &verified.ciphertext)
        .unwrap_err();
    assert!(matches!(err, ErrorKind::AesKeyUnwrap), "{err}");
    let verified = respond(LeafAlg::Rs256, |r| r.ciphertext[10] ^= 0x80).unwrap();
    let err = world()
        .key
        .unwrap(WrapAlgorithm::RsaAesKeyWrap384, &verified.ciphertext)
        .unwrap_err();
    assert!(matches!(err, ErrorKind::RsaOaep), "{err}");
}
