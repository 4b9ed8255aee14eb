//! Failing disks: a read-only or full disk, and an error at every single step of a commit. A
//! failed commit changes nothing in memory, and nothing on disk unless it failed after the point
//! of no return (the rename of `sealed_data`), which the store reports as in doubt.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use quarry_store::{SealMode, Status, StoreError};

use crate::support::{MemFs, TestEnclave, commit_entries, entries, generation, reopen};

const ENTRIES: usize = 10;

fn sealed_files(fs: &MemFs) -> Vec<(PathBuf, Vec<u8>)> {
    fs.files()
        .into_iter()
        .filter(|(p, _)| p == Path::new("/seal/sealed_data") || p == Path::new("/seal/sealed_key"))
        .collect()
}

fn setup() -> (MemFs, std::sync::Arc<TestEnclave>) {
    let fs = MemFs::new();
    let enclave = TestEnclave::standard();
    let store = reopen(&fs, &enclave);
    commit_entries(&store, &generation(ENTRIES, 1), SealMode::ProductKey).unwrap();
    (fs, enclave)
}

fn io_kind(error: &StoreError) -> Option<(&'static str, ErrorKind)> {
    match error {
        StoreError::Io { op, source, .. } => Some((op, source.kind())),
        _ => None,
    }
}

#[test]
fn read_only_disk_fails_the_commit_and_changes_nothing() {
    let (fs, enclave) = setup();
    let store = reopen(&fs, &enclave);
    let before = fs.files();
    fs.fail_all(Some(ErrorKind::ReadOnlyFilesystem));

    let error = commit_entries(&store, &generation(ENTRIES, 2), SealMode::ProductKey).unwrap_err();
    assert_eq!(
        io_kind(&error),
        Some(("create", ErrorKind::ReadOnlyFilesystem)),
        "{error:?}"
    );
    assert!(error.to_string().contains("sealed_data.tmp"), "{error}");
    assert_eq!(fs.files(), before);
    assert_eq!(entries(&store.snapshot()), generation(ENTRIES, 1));
    assert_eq!(store.status(), Status::Ready);

    fs.fail_all(None);
    commit_entries(&store, &generation(ENTRIES, 3), SealMode::ProductKey).unwrap();
    drop(store);
    assert_eq!(
        entries(&reopen(&fs, &enclave).snapshot()),
        generation(ENTRIES, 3)
    );
}

#[test]
fn full_disk_fails_the_commit_removes_the_temporary_files_and_changes_nothing() {
    let (fs, enclave) = setup();
    let store = reopen(&fs, &enclave);
    let before = fs.files();
    fs.fail_in(1, ErrorKind::StorageFull); // the write of sealed_data.tmp

    let error = commit_entries(&store, &generation(ENTRIES, 2), SealMode::ProductKey).unwrap_err();
    assert_eq!(
        io_kind(&error),
        Some(("write", ErrorKind::StorageFull)),
        "{error:?}"
    );
    assert_eq!(
        fs.files(),
        before,
        "temporary files left behind or sealed files changed"
    );
    assert_eq!(entries(&store.snapshot()), generation(ENTRIES, 1));
    drop(store);
    assert_eq!(
        entries(&reopen(&fs, &enclave).snapshot()),
        generation(ENTRIES, 1)
    );
}

#[test]
fn an_error_at_any_step_fails_cleanly_or_reports_the_commit_in_doubt() {
    let (fs, enclave) = setup();
    let store = reopen(&fs, &enclave);
    let start = fs.trace().len();
    commit_entries(&store, &generation(ENTRIES, 2), SealMode::ProductKey).unwrap();
    let trace = fs.trace()[start..].to_vec();
    let point_of_no_return = trace
        .iter()
        .position(|step| step == "rename /seal/sealed_data.tmp -> /seal/sealed_data")
        .unwrap() as u64;
    drop(store);

    for step in 0..trace.len() as u64 {
        let (fs, enclave) = setup();
        let store = reopen(&fs, &enclave);
        let sealed_before = sealed_files(&fs);
        fs.fail_in(step, ErrorKind::Other);
        let error =
            commit_entries(&store, &generation(ENTRIES, 2), SealMode::ProductKey).unwrap_err();
        assert_eq!(
            entries(&store.snapshot()),
            generation(ENTRIES, 1),
            "step {step}"
        );

        if step <= point_of_no_return {
            assert!(io_kind(&error).is_some(), "step {step}: {error:?}");
            assert_eq!(sealed_files(&fs), sealed_before, "step {step}");
            commit_entries(&store, &generation(ENTRIES, 3), SealMode::ProductKey).unwrap();
            drop(store);
            assert_eq!(
                entries(&reopen(&fs, &enclave).snapshot()),
                generation(ENTRIES, 3)
            );
        } else {
            assert!(
                matches!(error, StoreError::InDoubt { .. }),
                "step {step}: {error:?}"
            );
            assert_eq!(store.status(), Status::InDoubt);
            let again = commit_entries(&store, &generation(ENTRIES, 3), SealMode::ProductKey);
            assert!(matches!(again, Err(StoreError::NeedsReopen)), "step {step}");
            drop(store);
            assert_eq!(
                entries(&reopen(&fs, &enclave).snapshot()),
                generation(ENTRIES, 2)
            );
        }
    }
}

#[test]
fn an_unavailable_seal_key_fails_the_commit_and_leaves_unsealing_retryable() {
    let (fs, enclave) = setup();
    let store = reopen(&fs, &enclave);
    let before = fs.files();
    enclave.set_unavailable(true);
    let error = commit_entries(&store, &generation(ENTRIES, 2), SealMode::ProductKey).unwrap_err();
    assert!(matches!(error, StoreError::Enclave(_)), "{error:?}");
    assert_eq!(fs.files(), before);
    drop(store);

    let store = quarry_store::Store::open_with_fs(
        crate::support::DIR,
        enclave.clone(),
        std::sync::Arc::new(fs.clone()),
    )
    .unwrap();
    assert!(matches!(store.unseal(&[]), Err(StoreError::Enclave(_))));
    assert_eq!(store.status(), Status::Sealed);
    enclave.set_unavailable(false);
    store.unseal(&[]).unwrap();
    assert_eq!(entries(&store.snapshot()), generation(ENTRIES, 1));
}

/// A discard that fails part-way (here: `sealed_key.tmp` is moved aside, then moving
/// `sealed_key` fails) must not leave the store able to unseal, from what it read at open, a
/// state that the directory no longer holds: the next commit would look for the moved
/// `sealed_key.tmp`, and a restart would find `sealed_data` beside a key that does not open it.
#[test]
fn a_discard_that_fails_part_way_does_not_unseal_from_a_moved_key() {
    use std::sync::Arc;

    use quarry_store::Store;

    use crate::support::{Crash, DIR};

    // sealed_data of generation 2 beside sealed_key of generation 1: only sealed_key.tmp opens it.
    let (fs, enclave) = setup();
    let store = reopen(&fs, &enclave);
    fs.crash_in(8);
    assert!(commit_entries(&store, &generation(ENTRIES, 2), SealMode::ProductKey).is_err());
    drop(store);
    fs.crash(Crash::Process);
    assert!(fs.files().contains_key(Path::new("/seal/sealed_key.tmp")));

    // Still sealed (the seal key is not available yet), and the discard fails at its second
    // rename.
    let store = Store::open_with_fs(DIR, enclave.clone(), Arc::new(fs.clone())).unwrap();
    enclave.set_unavailable(true);
    assert!(matches!(store.unseal(&[]), Err(StoreError::Enclave(_))));
    fs.fail_in(1, ErrorKind::PermissionDenied);
    let error = store
        .discard(time::macros::datetime!(2026-12-04 17:03:00 UTC))
        .unwrap_err();
    assert_eq!(
        io_kind(&error),
        Some(("rename", ErrorKind::PermissionDenied)),
        "{error:?}"
    );
    assert!(!fs.files().contains_key(Path::new("/seal/sealed_key.tmp")));
    assert_eq!(store.status(), Status::Sealed);

    // The seal key is back: the store must see what a restart sees.
    enclave.set_unavailable(false);
    let in_memory = store.unseal(&[]);
    if in_memory.is_ok() {
        commit_entries(&store, &generation(ENTRIES, 3), SealMode::ProductKey)
            .expect("a state the store unsealed can be committed");
    }
    drop(store);
    let restarted = Store::open_with_fs(DIR, enclave.clone(), Arc::new(fs.clone())).unwrap();
    let on_disk = restarted.unseal(&[]);
    assert_eq!(
        in_memory.is_ok(),
        on_disk.is_ok(),
        "unsealed from memory: {in_memory:?}; after a restart: {on_disk:?}"
    );
    assert!(
        matches!(on_disk, Err(StoreError::NeedsRecovery { .. })),
        "{on_disk:?}"
    );
}
