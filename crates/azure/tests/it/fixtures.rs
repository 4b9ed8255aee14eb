//! Real Azure data from `testdata/azure`: the Managed HSM signing chains and release responses,
//! checked with exactly the functions the client uses, and the unwrap known-answer vector.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use quarry_azure::{
    ErrorKind, Expected, TrustStore, WrapAlgorithm, WrappingKey, verify_chain, verify_release,
};
use rustls_pki_types::{CertificateDer, UnixTime};

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/azure")
        .join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(testdata(name)).unwrap()
}

/// Seconds since the epoch of a UTC date at midnight.
fn at(year: i32, month: u32, day: u32) -> UnixTime {
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy as i32;
    let days = era as i64 * 146_097 + doe as i64 - 719_468;
    UnixTime::since_unix_epoch(Duration::from_secs(days as u64 * 86_400))
}

fn sidecar_chain() -> Vec<CertificateDer<'static>> {
    let entries: Vec<String> = serde_json::from_str(&read("mhsm-x5c-chain.json")).unwrap();
    entries
        .iter()
        .map(|e| CertificateDer::from(STANDARD.decode(e).unwrap()))
        .collect()
}

fn only_root(chain: &[CertificateDer<'_>]) -> TrustStore {
    let mut trust = TrustStore::empty();
    trust.add_der(chain.last().unwrap()).unwrap();
    trust
}

const SIDECAR_HOST: &str = "svolos-myhsm-01.managedhsm.azure.net";

#[test]
fn real_mhsm_chain_is_accepted_for_its_host_at_a_time_inside_its_validity() {
    let chain = sidecar_chain();
    let trust = only_root(&chain);
    verify_chain(&chain[..2], SIDECAR_HOST, &trust, at(2022, 6, 1)).unwrap();
    // The wildcard name covers sub-domains of the HSM host too.
    verify_chain(
        &chain[..2],
        &format!("x.{SIDECAR_HOST}"),
        &trust,
        at(2022, 6, 1),
    )
    .unwrap();
    // And DigiCert Global Root G2 is among the compiled-in roots.
    verify_chain(
        &chain[..2],
        SIDECAR_HOST,
        &TrustStore::system(),
        at(2022, 6, 1),
    )
    .unwrap();
}

#[test]
fn real_mhsm_chain_is_refused_for_another_host() {
    let chain = sidecar_chain();
    let err = verify_chain(
        &chain[..2],
        "other.managedhsm.azure.net",
        &only_root(&chain),
        at(2022, 6, 1),
    )
    .unwrap_err();
    assert!(matches!(err, ErrorKind::WrongHost { .. }), "{err}");
}

#[test]
fn real_mhsm_chain_is_refused_after_expiry_and_without_its_root() {
    let chain = sidecar_chain();
    let err = verify_chain(
        &chain[..2],
        SIDECAR_HOST,
        &only_root(&chain),
        at(2025, 1, 1),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            ErrorKind::UntrustedChain(webpki::Error::CertExpired { .. })
        ),
        "{err}"
    );
    let err = verify_chain(
        &chain[..2],
        SIDECAR_HOST,
        &TrustStore::empty(),
        at(2022, 6, 1),
    )
    .unwrap_err();
    assert!(matches!(err, ErrorKind::UntrustedChain(_)), "{err}");
}

#[test]
fn real_release_response_passes_every_signed_check() {
    let jws = read("mhsm-release-response.jws");
    let expected = Expected {
        host: "malegeskrkvhsm.managedhsm.azure.net",
        key_name: "importreleasekey164011273007309472",
        key_version: Some("4a868dd61c7a450f3035fc879d014373"),
        nonce: Some("nonce"),
        enc: WrapAlgorithm::RsaAesKeyWrap256,
        wrapping_kid: Some("fake-release-key"),
    };
    let verified = verify_release(&jws, &expected, &TrustStore::system(), at(2022, 1, 1)).unwrap();
    assert_eq!(verified.version, "4a868dd61c7a450f3035fc879d014373");
    assert_eq!(verified.kty, "RSA");
    assert_eq!(verified.ciphertext.len(), 1488);

    // The same response, checked for what it is not.
    type Check = fn(&ErrorKind) -> bool;
    let cases: [(Expected<'_>, Check); 5] = [
        (
            Expected {
                host: "otherhsm.managedhsm.azure.net",
                ..expected
            },
            |e| matches!(e, ErrorKind::WrongHost { .. }),
        ),
        (
            Expected {
                nonce: Some("another"),
                ..expected
            },
            |e| matches!(e, ErrorKind::NonceMismatch { .. }),
        ),
        (
            Expected {
                key_name: "otherkey",
                ..expected
            },
            |e| matches!(e, ErrorKind::KeyIdMismatch { .. }),
        ),
        (
            Expected {
                enc: WrapAlgorithm::RsaAesKeyWrap384,
                ..expected
            },
            |e| matches!(e, ErrorKind::EncMismatch { .. }),
        ),
        (
            Expected {
                wrapping_kid: Some("mine"),
                ..expected
            },
            |e| matches!(e, ErrorKind::WrappingKeyMismatch { .. }),
        ),
    ];
    for (case, check) in cases {
        let err = verify_release(&jws, &case, &TrustStore::system(), at(2022, 1, 1)).unwrap_err();
        assert!(check(&err), "{err}");
    }
    let err = verify_release(&jws, &expected, &TrustStore::system(), UnixTime::now()).unwrap_err();
    assert!(matches!(err, ErrorKind::UntrustedChain(_)), "{err}");
}

#[test]
fn real_versionless_release_with_default_enc_reports_its_version() {
    for (file, host, name, version, when) in [
        (
            "mhsm-release-response-default-enc.jws",
            "malegeskrkvhsm.managedhsm.azure.net",
            "exportkey164011272764004115",
            "395e0d6ec0214e8318bb9da42788f8f3",
            at(2022, 1, 1),
        ),
        (
            "mhsm-release-response-7.3.jws",
            "timovkeyvaulthsm.managedhsm.azure.net",
            "exportkey-68488",
            "d07e761c31c24e6b945882cf7ce31729",
            at(2022, 6, 1),
        ),
    ] {
        let expected = Expected {
            host,
            key_name: name,
            key_version: None,
            nonce: None,
            enc: WrapAlgorithm::CkmRsaAesKeyWrap,
            wrapping_kid: Some("fake-release-key"),
        };
        let verified = verify_release(&read(file), &expected, &TrustStore::system(), when).unwrap();
        assert_eq!(verified.version, version, "{file}");
        // A nonce that was never echoed is refused.
        let err = verify_release(
            &read(file),
            &Expected {
                nonce: Some("n"),
                ..expected
            },
            &TrustStore::system(),
            when,
        )
        .unwrap_err();
        assert!(
            matches!(err, ErrorKind::NonceMismatch { found: None, .. }),
            "{err}"
        );
    }
}

#[test]
fn real_release_with_one_flipped_payload_byte_has_a_bad_signature() {
    let jws = read("mhsm-release-response.jws");
    let mut parts: Vec<String> = jws.split('.').map(str::to_owned).collect();
    let mut payload = URL_SAFE_NO_PAD.decode(&parts[1]).unwrap();
    let at_nonce = payload.windows(7).position(|w| w == b"\"nonce\"").unwrap();
    payload[at_nonce + 10] ^= 0x01;
    parts[1] = URL_SAFE_NO_PAD.encode(payload);
    let expected = Expected {
        host: "malegeskrkvhsm.managedhsm.azure.net",
        key_name: "importreleasekey164011273007309472",
        key_version: None,
        nonce: None,
        enc: WrapAlgorithm::RsaAesKeyWrap256,
        wrapping_kid: None,
    };
    let err = verify_release(
        &parts.join("."),
        &expected,
        &TrustStore::system(),
        at(2022, 1, 1),
    )
    .unwrap_err();
    assert!(matches!(err, ErrorKind::BadSignature { .. }), "{err}");
}

/// PKCS#8 `PrivateKeyInfo` around a PKCS#1 `RSAPrivateKey`.
fn pkcs8_from_pkcs1(pkcs1: &[u8]) -> Vec<u8> {
    fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match body.len() {
            n if n < 0x80 => out.push(n as u8),
            n if n < 0x100 => out.extend_from_slice(&[0x81, n as u8]),
            n => out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(body);
        out
    }
    let algorithm = tlv(
        0x30,
        &[
            tlv(
                0x06,
                &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01],
            ),
            vec![0x05, 0x00],
        ]
        .concat(),
    );
    tlv(
        0x30,
        &[vec![0x02, 0x01, 0x00], algorithm, tlv(0x04, pkcs1)].concat(),
    )
}

#[test]
fn unwraps_the_known_answer_vector() {
    let kat: serde_json::Value =
        serde_json::from_str(&read("sidecar-rsa-aes-unwrap-kat.json")).unwrap();
    let pem = kat["wrapping_private_key_pem"].as_str().unwrap();
    let pkcs1 = pem::parse(pem).unwrap();
    assert_eq!(pkcs1.tag(), "RSA PRIVATE KEY");
    let private =
        aws_lc_rs::rsa::PrivateDecryptingKey::from_pkcs8(&pkcs8_from_pkcs1(pkcs1.contents()))
            .unwrap();
    let key = WrappingKey::from_private(private).unwrap();
    let ciphertext = URL_SAFE_NO_PAD
        .decode(kat["ciphertext"].as_str().unwrap())
        .unwrap();
    let expected: Vec<u8> = kat["expected_plaintext"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_u64().unwrap() as u8)
        .collect();
    let enc: WrapAlgorithm = kat["enc"].as_str().unwrap().parse().unwrap();

    let plaintext = key.unwrap(enc, &ciphertext).unwrap();
    assert_eq!(plaintext.as_slice(), expected.as_slice());

    // The SHA-256 mechanism on the same bytes fails, as the reference says.
    assert!(matches!(
        key.unwrap(WrapAlgorithm::RsaAesKeyWrap256, &ciphertext),
        Err(ErrorKind::RsaOaep)
    ));
}
