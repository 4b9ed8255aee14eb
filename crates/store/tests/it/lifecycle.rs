//! The store's life on a real file system: fresh start, seal modes, the directory lock,
//! snapshots and transactions, HSM wrap layers, recovery and discarding an unrecoverable state.

use std::fs;
use std::sync::Arc;
use std::thread;

use quarry_store::frame::{self, Frame};
use quarry_store::{DataKey, RecoveryReason, SealMode, Status, Store, StoreError, WrapLayer};
use time::macros::datetime;

use crate::support::{
    TestEnclave, commit_entries, entries, generation, hsm_layer, hsm_ref, key_bytes, open_store,
};

fn open(dir: &tempfile::TempDir, enclave: &Arc<TestEnclave>) -> Store {
    open_store(dir.path(), enclave.clone()).unwrap()
}

fn names(dir: &tempfile::TempDir) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_fresh_store_persists_nothing_until_a_seal_mode_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let enclave = TestEnclave::standard();
    let store = open(&dir, &enclave);
    assert_eq!(store.status(), Status::Ready);
    assert_eq!(store.seal_mode(), SealMode::Disabled);
    commit_entries(&store, &generation(2, 1), SealMode::Disabled).unwrap();
    assert_eq!(entries(&store.snapshot()), generation(2, 1));
    assert_eq!(names(&dir), ["quarry.lock"]);
    drop(store);
    assert!(open(&dir, &enclave).snapshot().is_empty());
}

#[test]
fn both_seal_modes_round_trip_and_bind_to_their_identity() {
    for (mode, other_measurement_opens) in
        [(SealMode::ProductKey, true), (SealMode::UniqueKey, false)]
    {
        let dir = tempfile::tempdir().unwrap();
        let enclave = TestEnclave::new(1, 1);
        let store = open(&dir, &enclave);
        commit_entries(&store, &generation(5, 1), mode).unwrap();
        drop(store);
        assert_eq!(names(&dir), ["quarry.lock", "sealed_data", "sealed_key"]);

        let store = open(&dir, &enclave);
        assert_eq!(store.status(), Status::Sealed);
        store.unseal(&[]).unwrap();
        assert_eq!(store.seal_mode(), mode);
        assert_eq!(entries(&store.snapshot()), generation(5, 1));
        drop(store);

        // Same signer, another measurement (an enclave upgrade).
        let upgraded = TestEnclave::new(1, 2);
        let store = open(&dir, &upgraded);
        assert_eq!(
            store.unseal(&[]).is_ok(),
            other_measurement_opens,
            "{mode:?}"
        );
    }
}

#[test]
fn a_second_store_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let enclave = TestEnclave::standard();
    let store = open(&dir, &enclave);
    match open_store(dir.path(), enclave.clone()) {
        Err(error @ StoreError::Locked { .. }) => {
            assert!(
                error
                    .to_string()
                    .contains(&dir.path().display().to_string()),
                "{error}"
            );
        }
        other => panic!("expected the lock to be refused, got {other:?}"),
    }
    drop(store);
    open(&dir, &enclave);
}

#[test]
fn snapshots_are_isolated_from_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, &TestEnclave::standard());
    commit_entries(&store, &generation(3, 1), SealMode::ProductKey).unwrap();
    let before = store.snapshot();

    let mut txn = store.begin();
    txn.put("entry:00000", "changed");
    txn.delete(b"entry:00001");
    assert_eq!(txn.get(b"entry:00000"), Some(&b"changed"[..]));
    assert!(!txn.contains_key(b"entry:00001"));
    assert_eq!(entries(&store.snapshot()), generation(3, 1));
    drop(txn);
    assert_eq!(entries(&store.snapshot()), generation(3, 1));

    let mut txn = store.begin();
    txn.put("entry:00000", "changed");
    txn.commit().unwrap();
    assert_eq!(store.snapshot().get(b"entry:00000"), Some(&b"changed"[..]));
    assert_eq!(entries(&before), generation(3, 1));
}

#[test]
fn concurrent_readers_always_see_a_whole_generation() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, &TestEnclave::standard());
    commit_entries(&store, &generation(20, 0), SealMode::ProductKey).unwrap();
    thread::scope(|scope| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    for _ in 0..200 {
                        let snap = store.snapshot();
                        let gen_: u64 = std::str::from_utf8(snap.get(b"generation").unwrap())
                            .unwrap()
                            .parse()
                            .unwrap();
                        assert_eq!(entries(&snap), generation(20, gen_));
                    }
                })
            })
            .collect();
        for gen_ in 1..=20 {
            commit_entries(&store, &generation(20, gen_), SealMode::ProductKey).unwrap();
        }
        for reader in readers {
            reader.join().unwrap();
        }
    });
}

#[test]
fn recovery_data_is_readable_before_unsealing() {
    let dir = tempfile::tempdir().unwrap();
    let enclave = TestEnclave::standard();
    let store = open(&dir, &enclave);
    let mut txn = store.begin();
    txn.put("state", "3");
    txn.set_recovery_data(b"{\"abc\":true}".to_vec());
    txn.set_seal_mode(SealMode::ProductKey);
    txn.commit().unwrap();
    drop(store);
    fs::remove_file(dir.path().join("sealed_key")).unwrap();

    let store = open(&dir, &enclave);
    assert_eq!(store.recovery_data(), b"{\"abc\":true}");
    assert!(store.unseal(&[]).is_err());
    assert_eq!(store.recovery_data(), b"{\"abc\":true}");
}

#[test]
fn hsm_layers_are_named_before_unwrapping_and_follow_the_settings() {
    let dir = tempfile::tempdir().unwrap();
    let enclave = TestEnclave::standard();
    let store = open(&dir, &enclave);
    let mut txn = store.begin();
    txn.put("state", "3");
    txn.set_seal_mode(SealMode::ProductKey);
    txn.set_wrap_layers(vec![hsm_layer("v1")]);
    txn.commit().unwrap();
    drop(store);

    let key_file = fs::read(dir.path().join("sealed_key")).unwrap();
    match frame::parse_sealed_key(&key_file).unwrap() {
        Frame::Hsm(frame) => assert_eq!(frame.key, hsm_ref("v1")),
        other => panic!("expected an HSM frame, got {other:?}"),
    }

    let store = open(&dir, &enclave);
    assert_eq!(store.required_wrap_keys(), vec![hsm_ref("v1")]);
    match store.unseal(&[]) {
        Err(StoreError::WrapKeyRequired { key }) => assert_eq!(*key, hsm_ref("v1")),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.status(), Status::Sealed);
    // Released bytes for v1 that are not v1's: a definite answer.
    let wrong: Arc<dyn WrapLayer> =
        Arc::new(quarry_store::HsmWrapKey::new(hsm_ref("v1"), &[0u8; 32]).unwrap());
    match store.unseal(&[wrong]) {
        Err(StoreError::NeedsRecovery {
            reason: RecoveryReason::WrapKeyMismatch { key },
        }) => {
            assert_eq!(key, hsm_ref("v1"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(store.status(), Status::Recovery);
    store.unseal(&[hsm_layer("v1")]).unwrap();
    assert_eq!(store.wrap_keys(), vec![hsm_ref("v1")]);

    // Re-seal under the configured version, then turn the layer off.
    let mut txn = store.begin();
    txn.set_wrap_layers(vec![hsm_layer("v2")]);
    txn.commit().unwrap();
    drop(store);
    let store = open(&dir, &enclave);
    assert_eq!(store.required_wrap_keys(), vec![hsm_ref("v2")]);
    store.unseal(&[hsm_layer("v2")]).unwrap();
    let mut txn = store.begin();
    txn.set_wrap_layers(Vec::new());
    txn.commit().unwrap();
    drop(store);
    let store = open(&dir, &enclave);
    assert!(store.required_wrap_keys().is_empty());
    store.unseal(&[]).unwrap();
    assert_eq!(store.snapshot().get(b"state"), Some(&b"3"[..]));
}

#[test]
fn two_layers_nest() {
    let dir = tempfile::tempdir().unwrap();
    let enclave = TestEnclave::standard();
    let store = open(&dir, &enclave);
    let mut txn = store.begin();
    txn.put("state", "3");
    txn.set_seal_mode(SealMode::UniqueKey);
    txn.set_wrap_layers(vec![hsm_layer("inner"), hsm_layer("outer")]);
    txn.commit().unwrap();
    drop(store);

    let store = open(&dir, &enclave);
    assert_eq!(store.required_wrap_keys(), vec![hsm_ref("outer")]);
    match store.unseal(&[hsm_layer("outer")]) {
        Err(StoreError::WrapKeyRequired { key }) => assert_eq!(*key, hsm_ref("inner")),
        other => panic!("{other:?}"),
    }
    store
        .unseal(&[hsm_layer("outer"), hsm_layer("inner")])
        .unwrap();
    assert_eq!(store.wrap_keys(), vec![hsm_ref("inner"), hsm_ref("outer")]);
}

#[test]
fn recovery_with_the_data_key_restores_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let enclave = TestEnclave::standard();
    let store = open(&dir, &enclave);
    commit_entries(&store, &generation(4, 7), SealMode::ProductKey).unwrap();
    let data_key = store.data_key().unwrap();
    drop(store);

    let moved = TestEnclave::new(9, 9); // another machine
    let store = open(&dir, &moved);
    assert!(store.unseal(&[]).is_err());
    assert_eq!(store.status(), Status::Recovery);
    assert!(store.data_key().is_none());
    let wrong = DataKey::from_bytes(&[0u8; 32]).unwrap();
    assert!(matches!(
        store.recover(wrong),
        Err(StoreError::WrongRecoveryKey)
    ));
    assert_eq!(store.status(), Status::Recovery);
    store.recover(data_key.clone()).unwrap();
    assert_eq!(entries(&store.snapshot()), generation(4, 7));
    assert_eq!(key_bytes(&store.data_key().unwrap()), key_bytes(&data_key));
    store.reseal().unwrap();
    drop(store);

    let store = open(&dir, &moved);
    store.unseal(&[]).unwrap();
    assert_eq!(entries(&store.snapshot()), generation(4, 7));
}

#[test]
fn a_rotated_data_key_replaces_the_old_one_for_every_later_commit() {
    let dir = tempfile::tempdir().unwrap();
    let enclave = TestEnclave::standard();
    let store = open(&dir, &enclave);
    commit_entries(&store, &generation(2, 1), SealMode::ProductKey).unwrap();
    let old_key = store.data_key().unwrap();
    let old_data = fs::read(dir.path().join("sealed_data")).unwrap();

    let mut txn = store.begin();
    let new_key = txn.rotate_data_key().unwrap();
    assert_ne!(key_bytes(&new_key), key_bytes(&old_key));
    txn.set_recovery_data(b"for the new key".to_vec());
    drop(txn); // not committed: nothing changes
    assert_eq!(key_bytes(&store.data_key().unwrap()), key_bytes(&old_key));

    let mut txn = store.begin();
    let new_key = txn.rotate_data_key().unwrap();
    txn.set_recovery_data(b"for the new key".to_vec());
    txn.commit().unwrap();
    assert_eq!(key_bytes(&store.data_key().unwrap()), key_bytes(&new_key));
    commit_entries(&store, &generation(3, 1), SealMode::ProductKey).unwrap();
    drop(store);

    // The same enclave unseals the new state; on another machine only the new key recovers it,
    // and the old key no longer opens anything written since.
    let store = open(&dir, &enclave);
    store.unseal(&[]).unwrap();
    assert_eq!(entries(&store.snapshot()), generation(3, 1));
    drop(store);
    let moved = TestEnclave::new(9, 9);
    let store = open(&dir, &moved);
    assert!(store.unseal(&[]).is_err());
    assert!(matches!(
        store.try_recovery_key(&old_key),
        Err(StoreError::WrongRecoveryKey)
    ));
    store.recover(new_key).unwrap();
    assert_eq!(entries(&store.snapshot()), generation(3, 1));
    assert_ne!(fs::read(dir.path().join("sealed_data")).unwrap(), old_data);
}

#[test]
fn a_recovery_key_is_tried_on_the_loaded_state_without_changing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let enclave = TestEnclave::standard();
    let store = open(&dir, &enclave);
    commit_entries(&store, &generation(3, 2), SealMode::ProductKey).unwrap();
    let data_key = store.data_key().unwrap();
    assert!(matches!(
        store.try_recovery_key(&data_key),
        Err(StoreError::NotInRecovery)
    ));
    drop(store);

    let moved = TestEnclave::new(9, 9);
    let store = open(&dir, &moved);
    assert!(store.unseal(&[]).is_err());
    let before = fs::read(dir.path().join("sealed_data")).unwrap();
    // The files on disk change after the store read them; the trial and the recovery both use
    // the bytes read at open, so what was checked is what is recovered.
    fs::write(dir.path().join("sealed_data"), b"replaced").unwrap();

    let wrong = DataKey::from_bytes(&[0u8; 32]).unwrap();
    assert!(matches!(
        store.try_recovery_key(&wrong),
        Err(StoreError::WrongRecoveryKey)
    ));
    let state = store.try_recovery_key(&data_key).unwrap();
    assert_eq!(entries(&state), generation(3, 2));
    assert_eq!(store.status(), Status::Recovery);
    assert!(store.snapshot().is_empty());
    assert!(store.data_key().is_none());
    store.recover(data_key).unwrap();
    assert_eq!(entries(&store.snapshot()), generation(3, 2));
    fs::write(dir.path().join("sealed_data"), before).unwrap();
}

#[test]
fn a_discard_with_a_chosen_key_seals_the_new_state_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let enclave = TestEnclave::standard();
    let store = open(&dir, &enclave);
    commit_entries(&store, &generation(2, 1), SealMode::ProductKey).unwrap();
    drop(store);

    // Recovery secrets of the new state are made from the key before anything is moved.
    let chosen = DataKey::generate().unwrap();
    let moved = TestEnclave::new(5, 5);
    let store = open(&dir, &moved);
    assert!(store.unseal(&[]).is_err());
    store
        .discard_with_key(datetime!(2026-12-04 17:03:00 UTC), chosen.clone())
        .unwrap();
    assert_eq!(key_bytes(&store.data_key().unwrap()), key_bytes(&chosen));
    commit_entries(&store, &generation(3, 2), SealMode::ProductKey).unwrap();
    drop(store);

    // Elsewhere, the chosen key recovers what was written after the discard.
    let store = open(&dir, &TestEnclave::new(7, 7));
    assert!(store.unseal(&[]).is_err());
    store.recover(chosen).unwrap();
    assert_eq!(entries(&store.snapshot()), generation(3, 2));
}

#[test]
fn discarding_moves_the_old_files_aside() {
    let dir = tempfile::tempdir().unwrap();
    let enclave = TestEnclave::standard();
    let store = open(&dir, &enclave);
    let mut txn = store.begin();
    txn.set_recovery_data(b"null".to_vec());
    txn.commit().unwrap();
    commit_entries(&store, &generation(2, 1), SealMode::ProductKey).unwrap();
    drop(store);
    let old_data = fs::read(dir.path().join("sealed_data")).unwrap();
    let old_key = fs::read(dir.path().join("sealed_key")).unwrap();

    let moved = TestEnclave::new(5, 5);
    let store = open(&dir, &moved);
    assert!(store.unseal(&[]).is_err());
    assert!(matches!(store.discard(datetime!(2026-12-04 17:03:00 UTC)), Ok(ref m) if m.len() == 2));
    assert_eq!(store.status(), Status::Ready);
    assert!(store.snapshot().is_empty());
    assert!(
        store.recovery_data().is_empty(),
        "the old recovery data survived the discard"
    );
    assert!(matches!(
        store.discard(datetime!(2026-12-04 17:03:00 UTC)),
        Err(StoreError::NotInRecovery)
    ));
    commit_entries(&store, &generation(2, 2), SealMode::ProductKey).unwrap();
    drop(store);

    assert_eq!(
        names(&dir),
        [
            "quarry.lock",
            "sealed_data",
            "sealed_data.discarded-20261204T170300Z",
            "sealed_key",
            "sealed_key.discarded-20261204T170300Z",
        ]
    );
    assert_eq!(
        fs::read(dir.path().join("sealed_data.discarded-20261204T170300Z")).unwrap(),
        old_data
    );
    assert_eq!(
        fs::read(dir.path().join("sealed_key.discarded-20261204T170300Z")).unwrap(),
        old_key
    );
    let store = open(&dir, &moved);
    store.unseal(&[]).unwrap();
    assert_eq!(entries(&store.snapshot()), generation(2, 2));

    // The same second again: the earlier discarded files are kept.
    drop(store);
    let store = open(&dir, &enclave);
    assert!(store.unseal(&[]).is_err());
    let moved_again = store
        .discard(datetime!(2026-12-04 18:03:00 +01:00))
        .unwrap();
    assert!(
        moved_again
            .iter()
            .all(|p| p.to_string_lossy().ends_with("-20261204T170300Z-1")),
        "{moved_again:?}"
    );
}

#[test]
fn debug_output_shows_no_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, &TestEnclave::standard());
    let data_key = store.data_key();
    let mut txn = store.begin();
    txn.put("privateKey:root", "very secret value");
    let text = format!("{txn:?} {store:?} {:?} {data_key:?}", store.snapshot());
    assert!(!text.contains("very secret"), "{text}");
    assert!(text.contains("DataKey(..)"), "{text}");
}

#[test]
fn a_state_still_sealed_can_be_discarded_like_one_in_recovery() {
    // The Coordinator enters recovery mode without unsealing when the HSM key it was given
    // cannot be used at all; a new manifest must then be able to replace the state.
    let dir = tempfile::tempdir().unwrap();
    let enclave = TestEnclave::standard();
    let store = open(&dir, &enclave);
    let mut txn = store.begin();
    txn.put("state", "3");
    txn.set_seal_mode(SealMode::ProductKey);
    txn.set_wrap_layers(vec![hsm_layer("unusable")]);
    txn.commit().unwrap();
    drop(store);
    let old_data = fs::read(dir.path().join("sealed_data")).unwrap();

    let store = open(&dir, &enclave);
    assert_eq!(store.status(), Status::Sealed);
    let moved = store.discard(datetime!(2026-12-04 17:03:00 UTC)).unwrap();
    assert_eq!(moved.len(), 2);
    assert_eq!(store.status(), Status::Ready);
    assert!(store.snapshot().is_empty());
    assert!(store.required_wrap_keys().is_empty());
    assert_eq!(
        fs::read(dir.path().join("sealed_data.discarded-20261204T170300Z")).unwrap(),
        old_data
    );
    commit_entries(&store, &generation(2, 5), SealMode::ProductKey).unwrap();
    drop(store);
    let store = open(&dir, &enclave);
    store.unseal(&[]).unwrap();
    assert_eq!(entries(&store.snapshot()), generation(2, 5));
}

#[test]
fn recovery_is_accepted_while_waiting_for_a_wrap_key() {
    let dir = tempfile::tempdir().unwrap();
    let enclave = TestEnclave::standard();
    let store = open(&dir, &enclave);
    let mut txn = store.begin();
    txn.put("state", "3");
    txn.set_seal_mode(SealMode::ProductKey);
    txn.set_wrap_layers(vec![hsm_layer("deleted")]);
    txn.commit().unwrap();
    let data_key = store.data_key().unwrap();
    drop(store);

    let store = open(&dir, &enclave);
    assert!(matches!(
        store.unseal(&[]),
        Err(StoreError::WrapKeyRequired { .. })
    ));
    assert_eq!(store.status(), Status::Sealed);
    store.recover(data_key).unwrap();
    assert_eq!(store.snapshot().get(b"state"), Some(&b"3"[..]));
    assert!(store.wrap_keys().is_empty());
}
