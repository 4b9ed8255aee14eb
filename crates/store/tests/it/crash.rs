//! Crashes at every step of the commit protocol, with and without power loss: the store always
//! reopens to the old or the new state and never needs recovery; a commit that returned `Ok`
//! survives power loss.

use std::sync::Arc;

use quarry_store::fs::FileSystem;
use quarry_store::{SealMode, Status, Store, StoreError};

use crate::support::{
    Crash, DIR, MemFs, TestEnclave, commit_entries, entries, generation, hsm_layer, hsm_ref, reopen,
};

const MODELS: [Crash; 3] = [Crash::Process, Crash::PowerLoss, Crash::PowerLossDataOnly];
const ENTRIES: usize = 20;

/// A file system holding a committed generation 1.
fn setup() -> (MemFs, Arc<TestEnclave>) {
    let fs = MemFs::new();
    let enclave = TestEnclave::standard();
    let store = reopen(&fs, &enclave);
    commit_entries(&store, &generation(ENTRIES, 1), SealMode::ProductKey).unwrap();
    (fs, enclave)
}

/// How many file-system steps one commit takes.
fn commit_steps() -> u64 {
    let (fs, enclave) = setup();
    let store = reopen(&fs, &enclave);
    let before = fs.steps();
    commit_entries(&store, &generation(ENTRIES, 2), SealMode::ProductKey).unwrap();
    fs.steps() - before
}

/// Commits `generation`, crashing at step `crash_at`; returns whether the commit returned `Ok`
/// and the generation the store reopens to.
fn crash_commit(
    fs: &MemFs,
    enclave: &Arc<TestEnclave>,
    gen_: u64,
    crash_at: u64,
    model: Crash,
) -> (bool, u64) {
    let store = reopen(fs, enclave);
    fs.crash_in(crash_at);
    let ok = commit_entries(&store, &generation(ENTRIES, gen_), SealMode::ProductKey).is_ok();
    drop(store);
    fs.crash(model);

    let store = Store::open_with_fs(DIR, enclave.clone(), Arc::new(fs.clone())).unwrap();
    if let Err(error) = store.unseal(&[]) {
        panic!("{model:?}, crash at step {crash_at}: reopening failed: {error:#?}");
    }
    let got = entries(&store.snapshot());
    let found = (0..=gen_).find(|&g| got == generation(ENTRIES, g));
    let Some(found) = found else {
        panic!("{model:?}, crash at step {crash_at}: reopened to a state of no generation");
    };
    (ok, found)
}

#[test]
fn the_commit_protocol_has_the_designed_steps() {
    let (fs, enclave) = setup();
    let store = reopen(&fs, &enclave);
    let before = fs.trace().len();
    commit_entries(&store, &generation(ENTRIES, 2), SealMode::ProductKey).unwrap();
    let trace = fs.trace()[before..].to_vec();
    assert_eq!(
        trace,
        [
            "create /seal/sealed_data.tmp",
            "write /seal/sealed_data.tmp",
            "create /seal/sealed_key.tmp",
            "write /seal/sealed_key.tmp",
            "fsync /seal/sealed_data.tmp",
            "fsync /seal/sealed_key.tmp",
            "fsync /seal",
            "rename /seal/sealed_data.tmp -> /seal/sealed_data",
            "rename /seal/sealed_key.tmp -> /seal/sealed_key",
            "fsync /seal",
        ]
    );
}

#[test]
fn every_crash_point_reopens_to_the_old_or_the_new_state() {
    let total = commit_steps();
    for model in MODELS {
        for crash_at in 0..=total {
            let (fs, enclave) = setup();
            let (ok, found) = crash_commit(&fs, &enclave, 2, crash_at, model);
            assert!(
                found == 1 || found == 2,
                "{model:?} step {crash_at}: generation {found}"
            );
            if ok {
                assert_eq!(
                    found, 2,
                    "{model:?} step {crash_at}: a returned commit was lost"
                );
            }
            if crash_at == total {
                assert!(
                    ok,
                    "{model:?}: a crash after the last step failed the commit"
                );
            }
        }
    }
}

#[test]
fn a_crash_while_rotating_the_data_key_reopens_to_the_old_or_the_new_state() {
    let total = commit_steps();
    for model in MODELS {
        for crash_at in 0..=total {
            let (fs, enclave) = setup();
            let store = reopen(&fs, &enclave);
            fs.crash_in(crash_at);
            let mut txn = store.begin();
            for (k, v) in generation(ENTRIES, 2) {
                txn.put(k, v);
            }
            txn.rotate_data_key().unwrap();
            let ok = txn.commit().is_ok();
            drop(store);
            fs.crash(model);

            // Never recovery: sealed_key and sealed_data are replaced as a pair, so the enclave
            // opens whichever data key matches the data it finds.
            let store = Store::open_with_fs(DIR, enclave.clone(), Arc::new(fs.clone())).unwrap();
            if let Err(error) = store.unseal(&[]) {
                panic!("{model:?}, crash at step {crash_at}: reopening failed: {error:#?}");
            }
            let got = entries(&store.snapshot());
            let found = [1, 2].into_iter().find(|&g| got == generation(ENTRIES, g));
            assert!(found.is_some(), "{model:?} step {crash_at}: no generation");
            if ok {
                assert_eq!(
                    found,
                    Some(2),
                    "{model:?} step {crash_at}: a returned commit was lost"
                );
            }
        }
    }
}

#[test]
fn a_crash_after_a_crash_still_reopens_to_a_committed_state() {
    // The second commit may start from a state that was loaded through sealed_key.tmp.
    let total = commit_steps() + 2;
    for model in MODELS {
        for first in 0..total {
            for second in 0..=total {
                let (fs, enclave) = setup();
                let (_, after_first) = crash_commit(&fs, &enclave, 2, first, model);
                let (ok, found) = crash_commit(&fs, &enclave, 3, second, model);
                assert!(
                    found == after_first || found == 3,
                    "{model:?} steps {first}/{second}: generation {found}, expected \
                     {after_first} or 3"
                );
                if ok {
                    assert_eq!(found, 3, "{model:?} steps {first}/{second}: commit lost");
                }
            }
        }
    }
}

#[test]
fn a_crash_between_the_renames_is_completed_by_the_next_commit() {
    let (fs, enclave) = setup();
    let rename_key = 8;
    let (ok, found) = crash_commit(&fs, &enclave, 2, rename_key, Crash::Process);
    assert!(!ok);
    assert_eq!(found, 2);
    assert!(
        fs.files()
            .contains_key(std::path::Path::new("/seal/sealed_key.tmp"))
    );

    let store = reopen(&fs, &enclave);
    let before = fs.trace().len();
    commit_entries(&store, &generation(ENTRIES, 3), SealMode::ProductKey).unwrap();
    let trace = fs.trace()[before..].to_vec();
    assert_eq!(trace[0], "rename /seal/sealed_key.tmp -> /seal/sealed_key");
    assert_eq!(trace[1], "fsync /seal");
}

#[test]
fn power_loss_model_drops_what_was_not_fsynced() {
    // The harness must be able to catch a missing fsync, or the tests above prove nothing.
    let path = std::path::Path::new("/seal/file");
    let tmp = std::path::Path::new("/seal/file.tmp");
    for (model, expect_entry) in [(Crash::PowerLoss, false), (Crash::PowerLossDataOnly, true)] {
        let fs = MemFs::new();
        let mut file = fs.create(tmp).unwrap();
        file.write_all(b"content").unwrap();
        fs.rename(tmp, path).unwrap();
        fs.crash(model);
        let files = fs.files();
        assert_eq!(files.contains_key(path), expect_entry, "{model:?}");
        if expect_entry {
            assert_eq!(files[path], b"", "{model:?}: unsynced data survived");
        }
    }
    let fs = MemFs::new();
    let mut file = fs.create(tmp).unwrap();
    file.write_all(b"content").unwrap();
    file.sync().unwrap();
    fs.rename(tmp, path).unwrap();
    fs.sync_dir(std::path::Path::new(DIR)).unwrap();
    fs.crash(Crash::PowerLoss);
    assert_eq!(fs.files()[path], b"content");
}

#[test]
fn a_crash_during_key_rotation_asks_for_both_key_versions() {
    let fs = MemFs::new();
    let enclave = TestEnclave::standard();
    let store = reopen(&fs, &enclave);
    let mut txn = store.begin();
    txn.put("generation", "1");
    txn.set_seal_mode(SealMode::ProductKey);
    txn.set_wrap_layers(vec![hsm_layer("v1")]);
    txn.commit().unwrap();
    drop(store);

    let store = Store::open_with_fs(DIR, enclave.clone(), Arc::new(fs.clone())).unwrap();
    assert_eq!(store.required_wrap_keys(), vec![hsm_ref("v1")]);
    store.unseal(&[hsm_layer("v1")]).unwrap();
    let mut txn = store.begin();
    txn.put("generation", "2");
    txn.set_wrap_layers(vec![hsm_layer("v2")]);
    fs.crash_in(8); // sealed_data is renamed, sealed_key is not
    assert!(matches!(txn.commit(), Err(StoreError::InDoubt { .. })));
    drop(store);
    fs.crash(Crash::Process);

    let store = Store::open_with_fs(DIR, enclave.clone(), Arc::new(fs.clone())).unwrap();
    assert_eq!(
        store.required_wrap_keys(),
        vec![hsm_ref("v1"), hsm_ref("v2")]
    );
    match store.unseal(&[hsm_layer("v1")]) {
        Err(StoreError::WrapKeyRequired { key }) => assert_eq!(*key, hsm_ref("v2")),
        other => panic!("expected a request for v2, got {other:?}"),
    }
    assert_eq!(store.status(), Status::Sealed);
    store.unseal(&[hsm_layer("v1"), hsm_layer("v2")]).unwrap();
    assert_eq!(store.snapshot().get(b"generation"), Some(&b"2"[..]));
    assert_eq!(store.wrap_keys(), vec![hsm_ref("v2")]);
}

/// Discards the unrecoverable generation 1 (opened by an enclave that cannot unseal it),
/// crashing at step `crash_at`, then reopens, sets a new state if the store starts fresh, and
/// returns the files.
fn crash_discard(crash_at: u64, model: Crash) -> (MemFs, Vec<u8>, Vec<u8>) {
    let (fs, _) = setup();
    let files = fs.files();
    let old_data = files[std::path::Path::new("/seal/sealed_data")].clone();
    let old_key = files[std::path::Path::new("/seal/sealed_key")].clone();
    let moved = TestEnclave::new(9, 9);

    let store = Store::open_with_fs(DIR, moved.clone(), Arc::new(fs.clone())).unwrap();
    assert!(store.unseal(&[]).is_err());
    fs.crash_in(crash_at);
    let _ = store.discard(time::macros::datetime!(2026-12-04 17:03:00 UTC));
    drop(store);
    fs.crash(model);

    let store = Store::open_with_fs(DIR, moved, Arc::new(fs.clone())).unwrap();
    match store.status() {
        // Not discarded (yet): still in recovery mode, to be discarded or recovered again.
        Status::Sealed => assert!(store.unseal(&[]).is_err()),
        // Discarded: a new state is set, which must not overwrite any old file.
        Status::Ready => {
            commit_entries(&store, &generation(ENTRIES, 2), SealMode::ProductKey).unwrap()
        }
        other => panic!("{model:?} step {crash_at}: status {other:?}"),
    }
    (fs, old_data, old_key)
}

#[test]
fn a_crash_while_discarding_never_loses_an_old_sealed_file() {
    for model in MODELS {
        for crash_at in 0..6 {
            let (fs, old_data, old_key) = crash_discard(crash_at, model);
            let files = fs.files();
            for (what, old) in [("sealed_data", &old_data), ("sealed_key", &old_key)] {
                assert!(
                    files.values().any(|bytes| bytes == old),
                    "{model:?} step {crash_at}: the old {what} is gone: {:?}",
                    files.keys().collect::<Vec<_>>()
                );
            }
        }
    }
}

/// The seal directory's files other than the lock.
fn sealed_files(fs: &MemFs) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    let mut files = fs.files();
    files.retain(|path, _| !path.ends_with(quarry_store::LOCK_FILE));
    files
}

/// Every layout a crashed commit leaves behind (old files, temporary files of the next
/// generation, `sealed_data` already renamed), discarded by an enclave that cannot unseal it,
/// with a crash at every step of the discard and under every crash model. After the restart the
/// store is either still in recovery mode (and a second discard completes it) or fresh; either
/// way a new state is committed, and every file that existed before the discard must still
/// exist under some name with its contents: nothing old is overwritten or removed.
#[test]
fn a_crash_at_any_step_of_discarding_any_layout_keeps_every_old_file() {
    let at = time::macros::datetime!(2026-12-04 17:03:00 UTC);
    let moved = TestEnclave::new(9, 9);
    let layouts = commit_steps() + 1;
    for layout in 0..=layouts {
        // The layout: a commit of generation 2 that crashed at step `layout` (or completed).
        let (fs, enclave) = setup();
        let store = reopen(&fs, &enclave);
        fs.crash_in(layout);
        let _ = commit_entries(&store, &generation(ENTRIES, 2), SealMode::ProductKey);
        drop(store);
        fs.crash(Crash::Process);
        let before = sealed_files(&fs);

        // How many steps a discard of this layout takes.
        let steps = {
            let probe = MemFs::new();
            for (path, bytes) in &before {
                let mut file = probe.create(path).unwrap();
                file.write_all(bytes).unwrap();
            }
            let store = Store::open_with_fs(DIR, moved.clone(), Arc::new(probe.clone())).unwrap();
            assert!(store.unseal(&[]).is_err(), "layout {layout}: unsealed");
            let start = probe.steps();
            store.discard(at).unwrap();
            probe.steps() - start
        };

        for model in MODELS {
            for crash_at in 0..=steps {
                let case = format!("layout {layout}, {model:?}, discard crash at {crash_at}");
                let fs = MemFs::new();
                for (path, bytes) in &before {
                    let mut file = fs.create(path).unwrap();
                    file.write_all(bytes).unwrap();
                    file.sync().unwrap();
                }
                fs.sync_dir(std::path::Path::new(DIR)).unwrap();

                let store = Store::open_with_fs(DIR, moved.clone(), Arc::new(fs.clone())).unwrap();
                assert!(store.unseal(&[]).is_err(), "{case}: unsealed");
                fs.crash_in(crash_at);
                let result = store.discard(at);
                if crash_at == steps {
                    assert!(result.is_ok(), "{case}: {result:?}");
                }
                drop(store);
                fs.crash(model);

                let store = Store::open_with_fs(DIR, moved.clone(), Arc::new(fs.clone())).unwrap();
                match store.status() {
                    Status::Sealed => {
                        assert!(store.unseal(&[]).is_err(), "{case}: unsealed after restart");
                        store.discard(at).unwrap();
                    }
                    Status::Ready => assert!(
                        store.snapshot().is_empty(),
                        "{case}: restarted to a state that is not fresh"
                    ),
                    other => panic!("{case}: status {other:?}"),
                }
                commit_entries(&store, &generation(ENTRIES, 5), SealMode::ProductKey).unwrap();
                drop(store);

                let after = sealed_files(&fs);
                for (path, old) in &before {
                    assert!(
                        after.values().any(|bytes| bytes == old),
                        "{case}: {} is gone: {:?}",
                        path.display(),
                        after.keys().collect::<Vec<_>>()
                    );
                }
                let reopened = reopen(&fs, &moved);
                assert_eq!(
                    entries(&reopened.snapshot()),
                    generation(ENTRIES, 5),
                    "{case}"
                );
            }
        }
    }
}
