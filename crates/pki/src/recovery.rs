//! Recovery secrets: the encryption key of the sealed state, handed to the holders of the
//! manifest's `RecoveryKeys`.
//!
//! How the 32-byte data encryption key (DEK) is shared depends on the number of keys and
//! `Config.RecoveryThreshold` (see [`RecoveryMode::for_keys`]):
//!
//! | keys | threshold | DEK | each holder receives |
//! |---|---|---|---|
//! | 0 or 1 | 0 | random | the DEK itself |
//! | ≥ 2 | 0 or = keys | XOR of one random 32-byte share per key | its share |
//! | ≥ 2 | 2 ≤ t < keys | random | a 33-byte Shamir share ([`crate::shamir`]) |
//!
//! Every per-key secret is encrypted with RSA-OAEP (SHA-256, MGF1-SHA-256, empty label) to
//! the key's PKIX RSA public key, so holders decrypt with
//! `openssl pkeyutl -decrypt -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256`.
//! When they upload the plain secret they sign it with RSA PKCS#1 v1.5 over SHA-256
//! (`openssl dgst -sha256 -sign`); [`RecoveryPublicKey::verify_signature`] checks that.
//! Uploads may be encrypted to the Coordinator's [`EphemeralRecoveryKey`] (RSA-4096,
//! RSA-OAEP-SHA256) on the way.
//!
//! RSA keys must have 2048 to 8192 bits (MarbleRun accepts smaller keys).

use std::collections::BTreeMap;
use std::fmt;

use aws_lc_rs::digest;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    PrivateDecryptingKey, PublicEncryptingKey,
};
use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;
use zeroize::Zeroizing;

use crate::{Error, RandomSource, shamir};

/// Length of the data encryption key and of XOR shares.
pub const RECOVERY_KEY_SIZE: usize = 32;

/// Length of a Shamir share of the DEK (32 value bytes + the x-coordinate).
pub const SHAMIR_SHARE_SIZE: usize = RECOVERY_KEY_SIZE + 1;

/// A recovery key from the manifest: a named RSA public key.
#[derive(Clone)]
pub struct RecoveryPublicKey {
    name: String,
    encrypting: PublicEncryptingKey,
    /// PKCS#1 `RSAPublicKey` DER, for signature checks.
    rsa_public_key: Vec<u8>,
}

impl RecoveryPublicKey {
    /// Parses the first PEM block of `pem_text`, found as Go's `pem.Decode` finds it, as a PKIX
    /// RSA public key; `name` is the key's name in `RecoveryKeys`. As in MarbleRun the block's
    /// type is not looked at (`PUBLIC KEY` is usual), only its contents, so every key the
    /// manifest check accepts is read here too.
    pub fn from_pem(name: &str, pem_text: &str) -> Result<Self, Error> {
        let block = quarry_common::go::pem_decode(pem_text.as_bytes()).ok_or_else(|| {
            Error::InvalidRecoveryKey {
                name: name.to_owned(),
                reason: "not PEM: no well-formed BEGIN/END pair with base64 contents".to_owned(),
            }
        })?;
        Self::from_spki_der(name, &block.contents)
    }

    /// Reads a PKIX `SubjectPublicKeyInfo` DER holding an RSA key.
    pub fn from_spki_der(name: &str, der: &[u8]) -> Result<Self, Error> {
        let invalid = |reason: String| Error::InvalidRecoveryKey {
            name: name.to_owned(),
            reason,
        };
        let (rest, spki) = SubjectPublicKeyInfo::from_der(der)
            .map_err(|e| invalid(format!("not a public key: {e}")))?;
        if !rest.is_empty() {
            return Err(invalid(format!(
                "{} trailing bytes after the public key",
                rest.len()
            )));
        }
        if spki.algorithm.algorithm != x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION {
            return Err(invalid(format!(
                "not an RSA key (algorithm {})",
                spki.algorithm.algorithm
            )));
        }
        let encrypting = PublicEncryptingKey::from_der(der).map_err(|e| {
            invalid(format!(
                "RSA key rejected ({e}); 2048 to 8192 bits are allowed"
            ))
        })?;
        Ok(Self {
            name: name.to_owned(),
            encrypting,
            rsa_public_key: spki.subject_public_key.data.to_vec(),
        })
    }

    /// The key's name in `RecoveryKeys`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Encrypts `plaintext` with RSA-OAEP (SHA-256, MGF1-SHA-256, no label).
    pub fn encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        let failed = || Error::RecoveryEncryption {
            name: self.name.clone(),
        };
        let key = OaepPublicEncryptingKey::new(self.encrypting.clone()).map_err(|_| failed())?;
        let mut out = vec![0u8; key.ciphertext_size()];
        let len = key
            .encrypt(&OAEP_SHA256_MGF1SHA256, plaintext, &mut out, None)
            .map_err(|_| failed())?
            .len();
        out.truncate(len);
        Ok(out)
    }

    /// Checks an RSA PKCS#1 v1.5 SHA-256 signature over the plain recovery secret.
    pub fn verify_signature(&self, secret: &[u8], signature: &[u8]) -> Result<(), Error> {
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &self.rsa_public_key)
            .verify(secret, signature)
            .map_err(|_| Error::BadSignature {
                what: "recovery secret",
            })
    }
}

impl fmt::Debug for RecoveryPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecoveryPublicKey")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// How the DEK is shared among the recovery keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryMode {
    /// Zero or one key: the DEK itself is the recovery secret.
    SingleParty,
    /// Every key holder gets a share; all shares XORed give the DEK.
    Xor,
    /// Shamir sharing; any `threshold` shares give the DEK.
    Shamir {
        /// Shares needed.
        threshold: usize,
    },
}

impl RecoveryMode {
    /// The mode for `keys` recovery keys and the manifest's `RecoveryThreshold`. A threshold
    /// sharing of more than 255 keys is refused here, before anything is generated: Shamir
    /// shares have one-byte coordinates.
    pub fn for_keys(keys: usize, threshold: u32) -> Result<Self, Error> {
        let t = threshold as usize;
        match (keys, t) {
            (0 | 1, 0) => Ok(Self::SingleParty),
            (_, 0) => Ok(Self::Xor),
            (k, t) if t == k && k >= 2 => Ok(Self::Xor),
            (k, t) if t >= 2 && t < k && k <= 255 => Ok(Self::Shamir { threshold: t }),
            _ => Err(Error::InvalidRecoveryThreshold { threshold, keys }),
        }
    }
}

/// The DEK and what goes to each recovery key holder.
pub struct RecoveryMaterial {
    /// How the DEK was shared.
    pub mode: RecoveryMode,
    /// The data encryption key of the sealed state.
    pub encryption_key: Zeroizing<[u8; RECOVERY_KEY_SIZE]>,
    /// Recovery key name → RSA-OAEP ciphertext (the API's `RecoverySecrets`).
    pub recovery_secrets: BTreeMap<String, Vec<u8>>,
    /// SHA-256 of each plain share, in key order (empty in single-party mode). MarbleRun keeps
    /// them, hex-encoded, as the unencrypted recovery data of `sealed_data`.
    pub share_hashes: Vec<[u8; 32]>,
}

impl fmt::Debug for RecoveryMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecoveryMaterial")
            .field("mode", &self.mode)
            .field(
                "recovery_keys",
                &self.recovery_secrets.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// SHA-256 of a plain share, as recorded in the recovery data.
pub fn share_hash(share: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, share).as_ref());
    out
}

/// Generates a fresh DEK and the recovery secrets for `keys` (at manifest set, and at a full
/// update that changes the recovery keys). Shares are assigned to keys in the given order.
pub fn generate_recovery(
    keys: &[RecoveryPublicKey],
    threshold: u32,
    rng: &dyn RandomSource,
) -> Result<RecoveryMaterial, Error> {
    let mut encryption_key = Zeroizing::new([0u8; RECOVERY_KEY_SIZE]);
    rng.fill(encryption_key.as_mut())?;
    share_recovery_key(keys, threshold, &encryption_key, rng)
}

/// The recovery secrets of an existing DEK `encryption_key` for `keys`: like
/// [`generate_recovery`], for a caller whose sealed store already holds the key of its state.
/// In XOR mode every share but the last is random and the last one makes the XOR equal the key.
pub fn share_recovery_key(
    keys: &[RecoveryPublicKey],
    threshold: u32,
    encryption_key: &[u8; RECOVERY_KEY_SIZE],
    rng: &dyn RandomSource,
) -> Result<RecoveryMaterial, Error> {
    if let Some(name) = duplicate_name(keys) {
        return Err(Error::InvalidRecoveryKey {
            name,
            reason: "the name is used twice".into(),
        });
    }
    let mode = RecoveryMode::for_keys(keys.len(), threshold)?;
    let encryption_key = Zeroizing::new(*encryption_key);
    let mut recovery_secrets = BTreeMap::new();
    let mut share_hashes = Vec::new();

    match mode {
        RecoveryMode::SingleParty => {
            for key in keys {
                recovery_secrets
                    .insert(key.name().to_owned(), key.encrypt(encryption_key.as_ref())?);
            }
        }
        RecoveryMode::Xor => {
            let mut rest = Zeroizing::new(*encryption_key);
            for (i, key) in keys.iter().enumerate() {
                let mut share = Zeroizing::new([0u8; RECOVERY_KEY_SIZE]);
                if i + 1 == keys.len() {
                    share.copy_from_slice(rest.as_ref());
                } else {
                    rng.fill(share.as_mut())?;
                    for (r, s) in rest.iter_mut().zip(share.iter()) {
                        *r ^= s;
                    }
                }
                share_hashes.push(share_hash(share.as_ref()));
                recovery_secrets.insert(key.name().to_owned(), key.encrypt(share.as_ref())?);
            }
        }
        RecoveryMode::Shamir { threshold } => {
            let shares = shamir::split(encryption_key.as_ref(), keys.len(), threshold, rng)?;
            for (key, share) in keys.iter().zip(&shares) {
                share_hashes.push(share_hash(share));
                recovery_secrets.insert(key.name().to_owned(), key.encrypt(share)?);
            }
        }
    }
    Ok(RecoveryMaterial {
        mode,
        encryption_key,
        recovery_secrets,
        share_hashes,
    })
}

fn duplicate_name(keys: &[RecoveryPublicKey]) -> Option<String> {
    keys.iter()
        .enumerate()
        .find(|(i, k)| keys[..*i].iter().any(|o| o.name == k.name))
        .map(|(_, k)| k.name.clone())
}

/// XORs equally long secrets (the XOR mode's combination).
pub fn xor_combine(secrets: &[&[u8]]) -> Result<Zeroizing<Vec<u8>>, Error> {
    let Some(first) = secrets.first() else {
        return Err(Error::KeyDerivation {
            what: "XOR of recovery secrets",
            reason: "no secrets",
        });
    };
    let mut out = Zeroizing::new(vec![0u8; first.len()]);
    for secret in secrets {
        if secret.len() != out.len() {
            return Err(Error::KeyDerivation {
                what: "XOR of recovery secrets",
                reason: "the secrets differ in length",
            });
        }
        for (o, s) in out.iter_mut().zip(secret.iter()) {
            *o ^= s;
        }
    }
    Ok(out)
}

/// Matches uploaded `(secret, signature)` pairs to distinct recovery keys.
///
/// Returns, for each upload, the name of the key whose signature it carries. An upload that
/// verifies under no key still unmatched is refused. Two names holding the same public key
/// are interchangeable, so assigning each upload to the first free key that verifies it is
/// exact.
pub fn match_signatures(
    keys: &[RecoveryPublicKey],
    uploads: &[(&[u8], &[u8])],
) -> Result<Vec<String>, Error> {
    let mut used = vec![false; keys.len()];
    let mut names = Vec::with_capacity(uploads.len());
    for (secret, signature) in uploads {
        let found = keys
            .iter()
            .enumerate()
            .find(|(i, key)| !used[*i] && key.verify_signature(secret, signature).is_ok());
        let Some((i, key)) = found else {
            return Err(Error::BadSignature {
                what: "recovery secret",
            });
        };
        used[i] = true;
        names.push(key.name().to_owned());
    }
    Ok(names)
}

/// The Coordinator's ephemeral RSA-4096 key for encrypted recovery uploads
/// (`GET /api/v2/recover/public-key`). It exists only in memory, in recovery mode.
pub struct EphemeralRecoveryKey {
    key: PrivateDecryptingKey,
}

impl EphemeralRecoveryKey {
    /// Generates the key (RSA-4096; takes a few hundred milliseconds).
    pub fn generate() -> Result<Self, Error> {
        let key = PrivateDecryptingKey::generate(KeySize::Rsa4096)
            .map_err(|_| Error::KeyGeneration { what: "RSA-4096" })?;
        Ok(Self { key })
    }

    /// The public key as PKIX DER (the endpoint's `ephemeralPublicKey`, base64-encoded).
    pub fn public_key_der(&self) -> Result<Vec<u8>, Error> {
        let der = self
            .key
            .public_key()
            .as_der()
            .map_err(|_| Error::KeyGeneration { what: "RSA-4096" })?;
        Ok(der.as_ref().to_vec())
    }

    /// Decrypts an upload encrypted with RSA-OAEP-SHA256 to this key.
    pub fn decrypt(&self, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        let key = OaepPrivateDecryptingKey::new(self.key.clone()).map_err(|_| Error::Decryption)?;
        let mut out = Zeroizing::new(vec![0u8; key.min_output_size()]);
        let len = key
            .decrypt(&OAEP_SHA256_MGF1SHA256, ciphertext, &mut out, None)
            .map_err(|_| Error::Decryption)?
            .len();
        out.truncate(len);
        Ok(out)
    }
}

impl fmt::Debug for EphemeralRecoveryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EphemeralRecoveryKey")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_follows_keys_and_threshold() {
        assert_eq!(
            RecoveryMode::for_keys(0, 0).unwrap(),
            RecoveryMode::SingleParty
        );
        assert_eq!(
            RecoveryMode::for_keys(1, 0).unwrap(),
            RecoveryMode::SingleParty
        );
        assert_eq!(RecoveryMode::for_keys(2, 0).unwrap(), RecoveryMode::Xor);
        assert_eq!(RecoveryMode::for_keys(3, 3).unwrap(), RecoveryMode::Xor);
        assert_eq!(
            RecoveryMode::for_keys(3, 2).unwrap(),
            RecoveryMode::Shamir { threshold: 2 }
        );
        assert_eq!(
            RecoveryMode::for_keys(255, 254).unwrap(),
            RecoveryMode::Shamir { threshold: 254 }
        );
        assert_eq!(RecoveryMode::for_keys(300, 0).unwrap(), RecoveryMode::Xor);
        for (keys, threshold) in [(3, 1), (3, 4), (1, 1), (0, 2), (1, 2), (256, 2), (256, 255)] {
            assert!(
                matches!(
                    RecoveryMode::for_keys(keys, threshold),
                    Err(Error::InvalidRecoveryThreshold { .. })
                ),
                "{keys} keys, threshold {threshold}"
            );
        }
    }

    #[test]
    fn shares_of_a_given_key_combine_to_it() {
        let holders: Vec<EphemeralRecoveryKey> = (0..3)
            .map(|_| EphemeralRecoveryKey::generate().unwrap())
            .collect();
        let keys: Vec<RecoveryPublicKey> = holders
            .iter()
            .enumerate()
            .map(|(i, h)| {
                RecoveryPublicKey::from_spki_der(&format!("k{i}"), &h.public_key_der().unwrap())
                    .unwrap()
            })
            .collect();
        let dek = [0x42u8; RECOVERY_KEY_SIZE];
        let open = |m: &RecoveryMaterial, i: usize| {
            holders[i]
                .decrypt(&m.recovery_secrets[&format!("k{i}")])
                .unwrap()
        };

        let single = share_recovery_key(&keys[..1], 0, &dek, &crate::SystemRandom).unwrap();
        assert_eq!(open(&single, 0).as_slice(), &dek);

        let xor = share_recovery_key(&keys, 0, &dek, &crate::SystemRandom).unwrap();
        assert_eq!(xor.mode, RecoveryMode::Xor);
        let shares: Vec<_> = (0..3).map(|i| open(&xor, i)).collect();
        assert_ne!(shares[0].as_slice(), &dek);
        let parts: Vec<&[u8]> = shares.iter().map(|s| s.as_slice()).collect();
        assert_eq!(xor_combine(&parts).unwrap().as_slice(), &dek);
        assert_eq!(xor.share_hashes[2], share_hash(&shares[2]));

        let shamir = share_recovery_key(&keys, 2, &dek, &crate::SystemRandom).unwrap();
        let shares: Vec<_> = [0, 2].iter().map(|&i| open(&shamir, i)).collect();
        let parts: Vec<&[u8]> = shares.iter().map(|s| s.as_slice()).collect();
        assert_eq!(shamir::combine(&parts).unwrap().as_slice(), &dek);
    }

    #[test]
    fn xor_combine_checks_lengths() {
        let out = xor_combine(&[&[1, 2, 3], &[3, 2, 1]]).unwrap();
        assert_eq!(out.as_slice(), &[2, 0, 2]);
        assert!(xor_combine(&[&[1, 2], &[1]]).is_err());
        assert!(xor_combine(&[]).is_err());
    }

    #[test]
    fn rejects_non_rsa_and_wrong_pem() {
        let ec = crate::CaKey::generate()
            .unwrap()
            .public_key_spki_der()
            .unwrap();
        let err = RecoveryPublicKey::from_spki_der("alice", &ec).unwrap_err();
        assert!(err.to_string().contains("not an RSA key"), "{err}");
        let pem_text = crate::ca::pem_lf("PUBLIC KEY", &ec);
        let err = RecoveryPublicKey::from_pem("alice", &pem_text).unwrap_err();
        assert!(err.to_string().contains("not an RSA key"), "{err}");
        let err = RecoveryPublicKey::from_pem("alice", "garbage").unwrap_err();
        assert!(err.to_string().contains("not PEM"), "{err}");
    }

    #[test]
    fn reads_pem_as_the_manifest_check_does() {
        // Any block type, blank lines and indentation in the body, text before the block.
        let eph = EphemeralRecoveryKey::generate().unwrap();
        let der = eph.public_key_der().unwrap();
        let pem_text = crate::ca::pem_lf("RSA PUBLIC KEY", &der);
        let mut lines: Vec<String> = pem_text.lines().map(|l| format!("  {l}")).collect();
        lines[0] = lines[0].trim_start().to_owned();
        let last = lines.len() - 1;
        lines[last] = lines[last].trim_start().to_owned();
        lines.insert(2, String::new());
        let loose = format!("key of alice\n{}\n", lines.join("\n"));
        let key = RecoveryPublicKey::from_pem("alice", &loose).unwrap();
        let plain = RecoveryPublicKey::from_spki_der("alice", &der).unwrap();
        assert_eq!(key.rsa_public_key, plain.rsa_public_key);
    }

    #[test]
    fn ephemeral_key_round_trip() {
        let eph = EphemeralRecoveryKey::generate().unwrap();
        let public =
            RecoveryPublicKey::from_spki_der("coordinator", &eph.public_key_der().unwrap())
                .unwrap();
        let ct = public.encrypt(&[7u8; 33]).unwrap();
        assert_eq!(eph.decrypt(&ct).unwrap().as_slice(), &[7u8; 33]);
        assert!(matches!(eph.decrypt(&ct[1..]), Err(Error::Decryption)));
        assert_eq!(format!("{eph:?}"), "EphemeralRecoveryKey");
    }
}
