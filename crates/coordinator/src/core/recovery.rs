//! Recovery of a sealed state whose key cannot be unsealed, by the holders of the recovery keys
//! (`POST /api/v2/recover`, `GET /api/v2/recover/public-key`).
//!
//! How the data key was shared is in the recovery data in the clear at the start of
//! `sealed_data` ([`RecoveryData`]): single-party (the secret is the key), XOR (every share is
//! needed), or Shamir (a threshold of 33-byte shares in HashiCorp's layout). Each upload is
//! checked at once: its length, that its SHA-256 is one of the shares and was not uploaded
//! before, and that its signature (RSA PKCS#1 v1.5, SHA-256, over the plain secret) verifies
//! with a recovery key that no earlier upload used. A refused upload leaves the round as it
//! was. Uploads may be encrypted to an ephemeral RSA-4096 key of this process (RSA-OAEP,
//! SHA-256).
//!
//! When enough shares are in, the candidate key must decrypt `sealed_data`, and the
//! signatures are checked again against the recovery keys of the decrypted manifest, which is
//! authoritative (the recovery data is authenticated only by that decryption). Only then is the
//! store recovered and re-sealed: nothing is written before.

use quarry_manifest::ManifestDocument;
use quarry_pki::recovery::{
    EphemeralRecoveryKey, RECOVERY_KEY_SIZE, RecoveryPublicKey, SHAMIR_SHARE_SIZE,
    match_signatures, share_hash, xor_combine,
};
use quarry_pki::shamir;
use quarry_store::{DataKey, StoreError};
use zeroize::Zeroizing;

use super::keys::{self, RecoveryData};
use super::manifest::parse_recovery_keys;
use super::{CoordinatorState, Core, CoreError};

/// The answer to one upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoverOutcome {
    /// Secrets still needed; 0 when the state is recovered.
    pub remaining: usize,
    /// MarbleRun's message for that.
    pub message: String,
}

impl RecoverOutcome {
    fn remaining(remaining: usize) -> Self {
        let message = if remaining == 0 {
            "Recovery successful.".to_owned()
        } else {
            format!(
                "Secret was processed successfully. Upload the next secret. Remaining secrets: \
                 {remaining}"
            )
        };
        Self { remaining, message }
    }
}

/// One accepted upload.
struct Upload {
    secret: Zeroizing<Vec<u8>>,
    signature: Vec<u8>,
    /// Index of the recovery key (of the recovery data) its signature verified with.
    key: Option<usize>,
}

/// The uploads of the current round and the ephemeral key.
pub(super) struct RecoverySession {
    plan: Option<RecoveryData>,
    keys: Vec<RecoveryPublicKey>,
    uploads: Vec<Upload>,
    ephemeral: Option<std::sync::Arc<EphemeralRecoveryKey>>,
}

enum Step {
    Pending(usize),
    Candidate(Zeroizing<Vec<u8>>),
}

impl RecoverySession {
    pub(super) fn new(recovery_data: &[u8]) -> Self {
        let plan = match RecoveryData::from_bytes(recovery_data) {
            Ok(plan) => plan,
            Err(error) => {
                tracing::warn!(%error, "recovery data unreadable");
                None
            }
        };
        let keys = plan
            .as_ref()
            .map(|p| {
                p.keys
                    .iter()
                    .filter_map(|(name, pem)| RecoveryPublicKey::from_pem(name, pem).ok())
                    .collect()
            })
            .unwrap_or_default();
        Self {
            plan,
            keys,
            uploads: Vec::new(),
            ephemeral: None,
        }
    }

    /// Forgets the uploads of this round.
    fn reset_round(&mut self) {
        self.uploads.clear();
    }

    /// Forgets everything (recovery completed or abandoned).
    pub(super) fn reset_all(&mut self) {
        self.uploads.clear();
        self.ephemeral = None;
        self.plan = None;
        self.keys.clear();
    }

    fn add(&mut self, secret: Zeroizing<Vec<u8>>, signature: Vec<u8>) -> Result<Step, CoreError> {
        let Some(plan) = &self.plan else {
            return Err(CoreError::invalid(
                "the sealed state has no recovery data, so no recovery secret can restore it",
            ));
        };
        let (expected_len, needed) = match plan.mode.as_str() {
            "single" => (RECOVERY_KEY_SIZE, 1),
            "xor" => (RECOVERY_KEY_SIZE, plan.threshold),
            _ => (SHAMIR_SHARE_SIZE, plan.threshold),
        };
        if secret.len() != expected_len {
            return Err(CoreError::invalid(format!(
                "recoverySecret: has {} bytes, this state's recovery secrets have {expected_len}",
                secret.len()
            )));
        }
        if plan.mode != "single" {
            let hash = hex::encode(share_hash(&secret));
            if !plan.shares.contains(&hash) {
                return Err(CoreError::invalid(
                    "recoverySecret: is not one of the recovery secrets of this state",
                ));
            }
            if self.uploads.iter().any(|u| u.secret == secret) {
                return Err(CoreError::invalid(
                    "recoverySecret: was already uploaded in this round",
                ));
            }
        }
        let key = if self.keys.is_empty() {
            None
        } else {
            let found = self.keys.iter().enumerate().find(|(i, k)| {
                !self.uploads.iter().any(|u| u.key == Some(*i))
                    && k.verify_signature(&secret, &signature).is_ok()
            });
            match found {
                Some((i, _)) => Some(i),
                None => {
                    return Err(CoreError::invalid(
                        "recoverySecretSignature: does not verify with any recovery key that \
                         an earlier upload of this round did not use",
                    ));
                }
            }
        };
        self.uploads.push(Upload {
            secret,
            signature,
            key,
        });
        let remaining = needed.saturating_sub(self.uploads.len());
        if remaining > 0 {
            return Ok(Step::Pending(remaining));
        }
        let parts: Vec<&[u8]> = self.uploads.iter().map(|u| u.secret.as_slice()).collect();
        let key = match plan.mode.as_str() {
            "single" => Zeroizing::new(parts[0].to_vec()),
            "xor" => xor_combine(&parts)?,
            _ => shamir::combine(&parts).map_err(quarry_pki::Error::from)?,
        };
        Ok(Step::Candidate(key))
    }
}

/// The ephemeral key of `session`, generated by `generate` on first use.
///
/// The session stays locked while the key is generated: RSA-4096 takes a while, and concurrent
/// first requests (which anyone can send in recovery mode) must wait for that one key rather
/// than each generate their own and keep every CPU busy.
fn ephemeral_key(
    session: &std::sync::Mutex<RecoverySession>,
    generate: impl FnOnce() -> Result<EphemeralRecoveryKey, quarry_pki::Error>,
) -> Result<std::sync::Arc<EphemeralRecoveryKey>, CoreError> {
    // The session is reset whole on every completed or failed round.
    let mut session = session
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(key) = &session.ephemeral {
        return Ok(std::sync::Arc::clone(key));
    }
    let key = std::sync::Arc::new(generate()?);
    session.ephemeral = Some(std::sync::Arc::clone(&key));
    Ok(key)
}

impl Core {
    /// The ephemeral public key for encrypted uploads (PKIX DER), generated on first use.
    pub fn recovery_public_key(&self) -> Result<Vec<u8>, CoreError> {
        self.require_state(
            "the recovery public key",
            &[0, 1],
            "state 1 (recovery mode) or 0 (waiting for a key release)",
        )?;
        let key = ephemeral_key(&self.recovery, EphemeralRecoveryKey::generate)?;
        Ok(key.public_key_der()?)
    }

    /// Processes one recovery upload: `secret` plain (32 or 33 bytes, or 16 for a legacy
    /// key) or encrypted to the ephemeral key, `signature` over the plain secret.
    pub fn recover(
        &self,
        secret: Vec<u8>,
        signature: Vec<u8>,
    ) -> Result<RecoverOutcome, CoreError> {
        let _guard = self.lock();
        self.require_state(
            "recovery",
            &[0, 1],
            "state 1 (recovery mode) or 0 (waiting for a key release)",
        )?;
        let secret = Zeroizing::new(secret);
        let mut session = self.recovery_session();

        let secret = if matches!(secret.len(), 16 | RECOVERY_KEY_SIZE | SHAMIR_SHARE_SIZE) {
            secret
        } else {
            let Some(ephemeral) = &session.ephemeral else {
                return Err(CoreError::invalid(format!(
                    "recoverySecret: has {} bytes, which is neither a plain recovery secret (32 \
                     or 33 bytes) nor encrypted to an ephemeral key (none was requested)",
                    secret.len()
                )));
            };
            ephemeral.decrypt(&secret).map_err(|_| {
                CoreError::invalid("recoverySecret: does not decrypt with the ephemeral key")
            })?
        };
        let candidate = match session.add(secret, signature)? {
            Step::Pending(remaining) => return Ok(RecoverOutcome::remaining(remaining)),
            Step::Candidate(key) => key,
        };

        let data_key = DataKey::from_bytes(&candidate).map_err(|_| {
            CoreError::invalid("recoverySecret: the recovered key has the wrong length")
        })?;
        let state = match self.store().try_recovery_key(&data_key) {
            Ok(state) => state,
            Err(StoreError::WrongRecoveryKey) => {
                session.reset_round();
                tracing::warn!("recovery attempt failed: the combined key does not open the state");
                return Err(CoreError::invalid(
                    "the recovery secrets of this round do not decrypt the sealed state; the \
                     round was reset, upload the secrets again",
                ));
            }
            Err(error) => {
                session.reset_round();
                return Err(error.into());
            }
        };
        let raw = keys::manifest(&state)
            .ok_or_else(|| CoreError::Internal("recovered state has no manifest".into()))?;
        let document = ManifestDocument::from_json(raw.to_vec())
            .map_err(|e| CoreError::Internal(format!("recovered manifest: {e}")))?;
        let manifest_keys = parse_recovery_keys(document.manifest())?;
        let uploads: Vec<(&[u8], &[u8])> = session
            .uploads
            .iter()
            .map(|u| (u.secret.as_slice(), u.signature.as_slice()))
            .collect();
        if match_signatures(&manifest_keys, &uploads).is_err() {
            session.reset_round();
            return Err(CoreError::invalid(
                "recoverySecretSignature: the signatures do not verify with distinct recovery \
                 keys of the sealed manifest; the round was reset, upload the secrets again",
            ));
        }

        self.restore(data_key, document.manifest())?;
        session.reset_all();
        Ok(RecoverOutcome::remaining(0))
    }

    /// Leaves recovery mode with the recovered key: the store takes the state, the CA and the
    /// state number come back, and the state is re-sealed with the manifest's seal mode.
    fn restore(
        &self,
        data_key: DataKey,
        manifest: &quarry_manifest::Manifest,
    ) -> Result<(), CoreError> {
        self.store().recover(data_key)?;
        let snapshot = self.snapshot();
        let ca = keys::ca(&snapshot)?;
        let state = match keys::state_code(&snapshot)? {
            Some(3) | None => CoordinatorState::AcceptingMarbles,
            Some(other) => {
                return Err(CoreError::Internal(format!(
                    "recovered state records state {other}, expected 3"
                )));
            }
        };
        {
            let mut inner = self.write();
            inner.state = state;
            inner.pending_root_secret = None;
        }
        self.set_ca(ca)?;
        tracing::info!("sealed state recovered");

        let mut seal_mode = super::store_seal_mode(manifest.config.seal_mode());
        // With the gate, the recovered state is sealed through the HSM again. If no key can be
        // released now, nothing is written (seal mode Disabled in memory) rather than writing
        // the state without the HSM layer; the HSM task persists it once a key is released.
        let gate = manifest
            .config
            .has_feature(quarry_manifest::FeatureGate::AzureHsmSealing);
        let layers = match self.hsm().layers_for(gate, crate::hsm::Purpose::Recovery) {
            Ok(layers) => {
                self.hsm().set_note(None);
                layers
            }
            Err(error) => {
                let message = error.describe();
                tracing::error!(error = %message, "recovered state cannot be persisted until the HSM releases the key");
                self.hsm().set_note(Some(format!(
                    "The recovered state is not persisted until the HSM key is released \
                     ({message}); retrying."
                )));
                self.hsm().request_persist();
                seal_mode = quarry_store::SealMode::Disabled;
                Vec::new()
            }
        };
        let mut tx = self.store().begin();
        tx.set_seal_mode(seal_mode);
        tx.set_wrap_layers(layers);
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};

    struct Holder {
        key: KeyPair,
        pem: String,
    }

    fn holder() -> Holder {
        let key = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let der = key.public_key().as_der().unwrap();
        let pem = crate::core::public_key_pem(der.as_ref());
        Holder { key, pem }
    }

    fn sign(holder: &Holder, message: &[u8]) -> Vec<u8> {
        let mut sig = vec![0; holder.key.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        holder
            .key
            .sign(&RSA_PKCS1_SHA256, &rng, message, &mut sig)
            .unwrap();
        sig
    }

    fn xor_session(holders: &[Holder], shares: &[[u8; 32]]) -> RecoverySession {
        let data = RecoveryData {
            mode: "xor".into(),
            threshold: shares.len(),
            shares: shares.iter().map(|s| hex::encode(share_hash(s))).collect(),
            keys: holders
                .iter()
                .enumerate()
                .map(|(i, h)| (format!("k{i}"), h.pem.clone()))
                .collect(),
        };
        RecoverySession::new(&data.to_bytes())
    }

    fn message(result: Result<Step, CoreError>) -> String {
        match result {
            Err(CoreError::InvalidInput { message }) => message,
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn xor_round_checks_each_upload_and_combines_the_shares() {
        let holders = [holder(), holder()];
        let shares = [[1u8; 32], [2u8; 32]];
        let mut session = xor_session(&holders, &shares);
        let upload = |s: &[u8; 32]| Zeroizing::new(s.to_vec());

        let err = message(session.add(Zeroizing::new(vec![1; 33]), sign(&holders[0], &[1; 33])));
        assert!(err.contains("has 33 bytes"), "{err}");
        let err = message(session.add(upload(&[9; 32]), sign(&holders[0], &[9; 32])));
        assert!(err.contains("not one of the recovery secrets"), "{err}");
        let stranger = holder();
        let err = message(session.add(upload(&shares[0]), sign(&stranger, &shares[0])));
        assert!(err.contains("recoverySecretSignature"), "{err}");
        assert!(session.uploads.is_empty());

        let step = session.add(upload(&shares[0]), sign(&holders[1], &shares[0]));
        assert!(matches!(step, Ok(Step::Pending(1))));
        let err = message(session.add(upload(&shares[0]), sign(&holders[0], &shares[0])));
        assert!(err.contains("already uploaded"), "{err}");
        // holders[1]'s key is taken by the first upload.
        let err = message(session.add(upload(&shares[1]), sign(&holders[1], &shares[1])));
        assert!(err.contains("recoverySecretSignature"), "{err}");

        match session.add(upload(&shares[1]), sign(&holders[0], &shares[1])) {
            Ok(Step::Candidate(key)) => assert_eq!(key.as_slice(), &[3u8; 32]),
            _ => panic!("expected a candidate key"),
        }
    }

    #[test]
    fn without_recovery_data_nothing_can_be_uploaded() {
        let mut session = RecoverySession::new(b"");
        let err = message(session.add(Zeroizing::new(vec![0; 32]), vec![]));
        assert!(err.contains("no recovery data"), "{err}");
    }

    #[test]
    fn concurrent_first_requests_share_one_generated_ephemeral_key() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::{Arc, Mutex, mpsc};

        let session = Arc::new(Mutex::new(RecoverySession::new(b"")));
        let generated = Arc::new(AtomicUsize::new(0));
        let (started, generating) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let released = Mutex::new(released);
        let released = Arc::new(released);

        let first = {
            let (session, generated, released) = (
                Arc::clone(&session),
                Arc::clone(&generated),
                Arc::clone(&released),
            );
            std::thread::spawn(move || {
                ephemeral_key(&session, || {
                    generated.fetch_add(1, Ordering::SeqCst);
                    started.send(()).unwrap();
                    // Hold the generation until the other callers are on their way.
                    released.lock().unwrap().recv().unwrap();
                    EphemeralRecoveryKey::generate()
                })
                .unwrap()
            })
        };
        generating.recv().unwrap();
        let others: Vec<_> = (0..4)
            .map(|_| {
                let (session, generated) = (Arc::clone(&session), Arc::clone(&generated));
                std::thread::spawn(move || {
                    ephemeral_key(&session, || {
                        generated.fetch_add(1, Ordering::SeqCst);
                        EphemeralRecoveryKey::generate()
                    })
                    .unwrap()
                })
            })
            .collect();
        release.send(()).unwrap();

        let first = first.join().unwrap();
        for other in others {
            let other = other.join().unwrap();
            assert!(Arc::ptr_eq(&first, &other));
        }
        assert_eq!(generated.load(Ordering::SeqCst), 1);
    }
}
