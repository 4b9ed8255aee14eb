//! PEM checks that MarbleRun makes while setting a manifest (after `Check`): every user's
//! certificate (P1) and every recovery key (P2) must parse. Only the first PEM block of a value
//! counts, found as Go's `pem.Decode` finds it ([`quarry_common::go::pem_decode`]): text
//! before it is skipped, and blank lines, spaces and tabs in its body are allowed.

use quarry_common::DocPath;
use quarry_common::go::{PemBlock, pem_decode};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::check::{CheckError, Violation};
use crate::model::Manifest;

/// Smallest RSA modulus Go (1.24 and later) encrypts to; recovery secrets are RSA-OAEP encrypted
/// to the recovery keys.
pub const MIN_RECOVERY_KEY_BITS: usize = 1024;

/// Checks that `pem_text` holds a PEM block whose content is an X.509 certificate; returns the
/// certificate's DER, which is what a user's TLS client certificate is compared against.
pub fn parse_user_certificate(pem_text: &str) -> Result<Vec<u8>, String> {
    let block = first_block(pem_text)?;
    match x509_parser::parse_x509_certificate(&block.contents) {
        Ok((rest, _)) if !rest.is_empty() => Err(format!(
            "certificate is followed by {} bytes of trailing data",
            rest.len()
        )),
        Ok(_) => Ok(block.contents),
        Err(e) => Err(format!("pem block is not an x509 certificate: {e}")),
    }
}

/// Checks that `pem_text` holds a PEM block with a PKIX RSA public key of at least
/// [`MIN_RECOVERY_KEY_BITS`]; returns the SubjectPublicKeyInfo DER.
pub fn parse_recovery_key(pem_text: &str) -> Result<Vec<u8>, String> {
    let block = first_block(pem_text)?;
    let spki = match SubjectPublicKeyInfo::from_der(&block.contents) {
        Ok((rest, _)) if !rest.is_empty() => {
            return Err(format!(
                "public key is followed by {} bytes of trailing data",
                rest.len()
            ));
        }
        Ok((_, spki)) => spki,
        Err(e) => return Err(format!("pem block is not a PKIX public key: {e}")),
    };
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) if rsa.key_size() < MIN_RECOVERY_KEY_BITS => Err(format!(
            "rsa key has {} bits, fewer than {MIN_RECOVERY_KEY_BITS}",
            rsa.key_size()
        )),
        Ok(PublicKey::RSA(_)) => Ok(block.contents),
        Ok(_) => Err("public key is not an rsa key".to_owned()),
        Err(e) => Err(format!("invalid public key: {e}")),
    }
}

/// The first PEM block of `pem_text` as Go's `pem.Decode` finds it (MarbleRun reads these
/// values with it), or why there is none.
fn first_block(pem_text: &str) -> Result<PemBlock, String> {
    pem_decode(pem_text.as_bytes()).ok_or_else(|| {
        "no pem block: no well-formed -----BEGIN ...----- / -----END ...----- pair with base64 \
         contents"
            .to_owned()
    })
}

pub(crate) fn check_recovery_keys(manifest: &Manifest, violations: &mut Vec<Violation>) {
    for (name, key) in &manifest.recovery_keys {
        if let Err(reason) = parse_recovery_key(key) {
            violations.push(Violation {
                path: DocPath::root().field("RecoveryKeys").key(name),
                error: CheckError::InvalidRecoveryKey(reason),
            });
        }
    }
}
