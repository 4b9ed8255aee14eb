//! Shared helpers: temporary files, the `openssl` tool, a deterministic RNG, fixed times.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use quarry_pki::{CaNames, CoordinatorCa, Error, RandomSource, SystemRandom};
use time::OffsetDateTime;
use time::macros::datetime;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

/// A fixed "now" in the past, so that `openssl verify` at the real time accepts the
/// certificates.
pub(crate) const NOW: OffsetDateTime = datetime!(2026-01-02 03:04:05.678 UTC);

/// A temporary directory for files handed to `openssl`.
pub(crate) struct Dir(tempfile::TempDir);

impl Dir {
    pub(crate) fn new() -> Self {
        Self(tempfile::tempdir().expect("create temporary directory"))
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    pub(crate) fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> String {
        let path = self.path(name);
        std::fs::write(&path, contents).expect("write temporary file");
        path.to_str().expect("utf-8 path").to_owned()
    }

    pub(crate) fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).expect("read temporary file")
    }
}

/// Runs `openssl` and returns stdout; panics with stderr if it fails.
pub(crate) fn openssl(args: &[&str]) -> Vec<u8> {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Runs `openssl` expecting failure; returns stdout + stderr.
pub(crate) fn openssl_fails(args: &[&str]) -> String {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        !output.status.success(),
        "openssl {args:?} unexpectedly succeeded"
    );
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

/// A reproducible RNG (xorshift64*), for tests that need fixed random values.
pub(crate) struct FixedRng(Mutex<u64>);

impl FixedRng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(Mutex::new(seed | 1))
    }
}

impl RandomSource for FixedRng {
    fn fill(&self, dest: &mut [u8]) -> Result<(), Error> {
        let mut state = self.0.lock().expect("rng lock");
        for byte in dest {
            *state ^= *state >> 12;
            *state ^= *state << 25;
            *state ^= *state >> 27;
            *byte = (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8;
        }
        Ok(())
    }
}

/// An RNG that returns only `0xff` bytes (serials with the top bit set).
pub(crate) struct OnesRng;

impl RandomSource for OnesRng {
    fn fill(&self, dest: &mut [u8]) -> Result<(), Error> {
        dest.fill(0xff);
        Ok(())
    }
}

pub(crate) fn new_ca() -> CoordinatorCa {
    CoordinatorCa::generate(&CaNames::default(), NOW, &SystemRandom).expect("generate CA")
}

pub(crate) fn parse(der: &[u8]) -> X509Certificate<'_> {
    let (rest, cert) = X509Certificate::from_der(der).expect("parse certificate");
    assert!(rest.is_empty(), "trailing bytes after certificate");
    cert
}

/// Writes the three CA certificates as PEM files `root.pem`, `intermediate.pem`,
/// `marble-root.pem`.
pub(crate) fn write_ca(dir: &Dir, ca: &CoordinatorCa) {
    dir.write("root.pem", ca.root_certificate_pem());
    dir.write("intermediate.pem", ca.intermediate_certificate_pem());
    dir.write("marble-root.pem", ca.marble_root_certificate_pem());
}

/// `openssl verify` of `leaf` against the Marble root as trust anchor and through
/// intermediate → root.
pub(crate) fn verify_under_both_anchors(dir: &Dir, leaf: &str) {
    let marble_root = dir.path("marble-root.pem");
    let out = openssl(&["verify", "-CAfile", marble_root.to_str().unwrap(), leaf]);
    assert!(String::from_utf8_lossy(&out).contains(": OK"));
    let root = dir.path("root.pem");
    let intermediate = dir.path("intermediate.pem");
    let out = openssl(&[
        "verify",
        "-CAfile",
        root.to_str().unwrap(),
        "-untrusted",
        intermediate.to_str().unwrap(),
        leaf,
    ]);
    assert!(String::from_utf8_lossy(&out).contains(": OK"));
}

/// Names of OIDs used in assertions.
pub(crate) mod oids {
    pub(crate) const ECDSA_SHA384: &str = "1.2.840.10045.4.3.3";
    pub(crate) const SECP384R1: &str = "1.3.132.0.34";
}

/// The extension with the dotted OID, if present (panics if it appears twice).
pub(crate) fn extension<'a>(
    cert: &'a X509Certificate<'_>,
    oid: &str,
) -> Option<&'a x509_parser::extensions::X509Extension<'a>> {
    let mut found = cert
        .extensions()
        .iter()
        .filter(|e| e.oid.to_id_string() == oid);
    let first = found.next();
    assert!(found.next().is_none(), "extension {oid} appears twice");
    first
}

pub(crate) fn common_name(name: &x509_parser::x509::X509Name<'_>) -> String {
    name.iter_common_name()
        .next()
        .expect("CN present")
        .as_str()
        .expect("CN string")
        .to_owned()
}

pub(crate) fn subject_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
}

pub(crate) fn authority_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })
}

/// DNS and IP SANs as strings.
pub(crate) fn sans(cert: &X509Certificate<'_>) -> (Vec<String>, Vec<String>) {
    use x509_parser::extensions::GeneralName;
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    if let Some(san) = cert.subject_alternative_name().expect("SAN parses") {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => dns.push((*d).to_owned()),
                GeneralName::IPAddress(b) => {
                    let ip: std::net::IpAddr = match b.len() {
                        4 => <[u8; 4]>::try_from(*b).unwrap().into(),
                        _ => <[u8; 16]>::try_from(*b).unwrap().into(),
                    };
                    ips.push(ip.to_string());
                }
                _ => {}
            }
        }
    }
    (dns, ips)
}
