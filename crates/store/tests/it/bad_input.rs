//! Damaged, swapped, stale and oversized sealed files on a real file system: each gives its
//! precise error, none panics, and nothing on disk changes.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use quarry_store::{
    Corruption, FrameError, MAX_SEALED_DATA_LEN, MAX_SEALED_KEY_LEN, RecoveryReason, SealMode,
    Status, Store, StoreError,
};

use crate::support::{TestEnclave, commit_entries, generation, open_store};

/// A seal directory with a committed state.
struct Sealed {
    dir: tempfile::TempDir,
    enclave: Arc<TestEnclave>,
}

impl Sealed {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let enclave = TestEnclave::standard();
        let store = open_store(dir.path(), enclave.clone()).unwrap();
        commit_entries(&store, &generation(3, 1), SealMode::ProductKey).unwrap();
        Self { dir, enclave }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn read(&self, name: &str) -> Vec<u8> {
        fs::read(self.path(name)).unwrap()
    }

    fn write(&self, name: &str, bytes: &[u8]) {
        fs::write(self.path(name), bytes).unwrap();
    }

    fn listing(&self) -> BTreeMap<String, Vec<u8>> {
        fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    fs::read(e.path()).unwrap(),
                )
            })
            .collect()
    }

    /// Opens and unseals; checks that the directory is unchanged afterwards.
    fn load(&self) -> Result<Store, StoreError> {
        let before = self.listing();
        let result = open_store(self.dir.path(), self.enclave.clone())
            .and_then(|store| store.unseal(&[]).map(|()| store));
        assert_eq!(self.listing(), before, "loading changed the seal directory");
        result
    }
}

fn frame_error(result: Result<Store, StoreError>, file: &str) -> FrameError {
    match result {
        Err(StoreError::Corrupted {
            path,
            source: Corruption::Frame(error),
        }) if path.file_name().unwrap() == file => error,
        other => panic!("expected {file} to be corrupted, got {other:?}"),
    }
}

fn recovery_reason(result: Result<Store, StoreError>) -> RecoveryReason {
    match result {
        Err(StoreError::NeedsRecovery { reason }) => reason,
        other => panic!("expected needs recovery, got {other:?}"),
    }
}

#[test]
fn empty_files_are_corrupted() {
    let sealed = Sealed::new();
    sealed.write("sealed_data", b"");
    assert_eq!(
        frame_error(sealed.load(), "sealed_data"),
        FrameError::Empty {
            what: "sealed_data"
        }
    );

    let sealed = Sealed::new();
    sealed.write("sealed_key", b"");
    assert_eq!(
        frame_error(sealed.load(), "sealed_key"),
        FrameError::Empty { what: "sealed_key" }
    );
}

#[test]
fn every_truncation_is_an_error() {
    let sealed = Sealed::new();
    let data = sealed.read("sealed_data");
    let key = sealed.read("sealed_key");
    for len in 0..data.len() {
        sealed.write("sealed_data", &data[..len]);
        match sealed.load() {
            Err(StoreError::Corrupted { .. }) => {}
            Err(StoreError::NeedsRecovery {
                reason: RecoveryReason::KeyMismatch,
            }) => {}
            other => panic!("sealed_data truncated to {len}: {other:?}"),
        }
    }
    sealed.write("sealed_data", &data);
    for len in 1..key.len() {
        sealed.write("sealed_key", &key[..len]);
        frame_error(sealed.load(), "sealed_key");
    }
    sealed.write("sealed_key", &key);
    assert!(sealed.load().is_ok());
}

#[test]
fn every_bit_flip_is_detected() {
    let sealed = Sealed::new();
    for name in ["sealed_data", "sealed_key"] {
        let original = sealed.read(name);
        for bit in 0..original.len() * 8 {
            let mut flipped = original.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            sealed.write(name, &flipped);
            match sealed.load() {
                Err(StoreError::Corrupted { .. } | StoreError::NeedsRecovery { .. }) => {}
                other => panic!("{name} bit {bit}: {other:?}"),
            }
        }
        sealed.write(name, &original);
    }
    // A flipped magic is named as such, a flipped sealed key as a mismatch.
    let mut key = sealed.read("sealed_key");
    key[0] ^= 1;
    sealed.write("sealed_key", &key);
    assert!(matches!(
        frame_error(sealed.load(), "sealed_key"),
        FrameError::BadMagic { .. }
    ));
    key[0] ^= 1;
    let last = key.len() - 1;
    key[last] ^= 1;
    sealed.write("sealed_key", &key);
    assert_eq!(recovery_reason(sealed.load()), RecoveryReason::KeyMismatch);
}

#[test]
fn swapped_files_are_named() {
    let sealed = Sealed::new();
    let data = sealed.read("sealed_data");
    let key = sealed.read("sealed_key");
    sealed.write("sealed_data", &key);
    sealed.write("sealed_key", &data);
    assert_eq!(
        frame_error(sealed.load(), "sealed_data"),
        FrameError::Swapped {
            what: "sealed_data",
            found: "sealed_key"
        }
    );
    sealed.write("sealed_data", &data);
    assert_eq!(
        frame_error(sealed.load(), "sealed_key"),
        FrameError::Swapped {
            what: "sealed_key",
            found: "sealed_data"
        }
    );
}

#[test]
fn oversized_files_are_refused_without_reading_them() {
    let sealed = Sealed::new();
    let file = fs::File::create(sealed.path("sealed_data")).unwrap();
    file.set_len(MAX_SEALED_DATA_LEN + 1).unwrap(); // sparse
    match open_store(sealed.dir.path(), sealed.enclave.clone()) {
        Err(StoreError::TooLarge { path, limit }) => {
            assert_eq!(path, sealed.path("sealed_data"));
            assert_eq!(limit, MAX_SEALED_DATA_LEN);
        }
        other => panic!("{other:?}"),
    }

    let sealed = Sealed::new();
    let mut key = sealed.read("sealed_key");
    key.resize(MAX_SEALED_KEY_LEN as usize + 1, 0);
    sealed.write("sealed_key", &key);
    assert!(matches!(sealed.load(), Err(StoreError::TooLarge { .. })));
}

#[test]
fn a_sealed_key_from_an_older_sealed_data_needs_recovery() {
    let sealed = Sealed::new();
    let old_key = sealed.read("sealed_key");
    {
        let store = sealed.load().unwrap();
        commit_entries(&store, &generation(3, 2), SealMode::ProductKey).unwrap();
    }
    sealed.write("sealed_key", &old_key);
    assert_eq!(recovery_reason(sealed.load()), RecoveryReason::KeyMismatch);
}

#[test]
fn a_missing_sealed_key_needs_recovery() {
    let sealed = Sealed::new();
    fs::remove_file(sealed.path("sealed_key")).unwrap();
    assert_eq!(recovery_reason(sealed.load()), RecoveryReason::KeyMissing);
}

#[test]
fn another_enclave_signer_needs_recovery() {
    let sealed = Sealed::new();
    let other = TestEnclave::new(2, 1);
    let store = open_store(sealed.dir.path(), other).unwrap();
    assert!(matches!(
        store.unseal(&[]),
        Err(StoreError::NeedsRecovery {
            reason: RecoveryReason::KeyMismatch
        })
    ));
    assert_eq!(store.status(), Status::Recovery);
}

#[test]
fn a_file_that_is_not_ours_is_named() {
    let sealed = Sealed::new();
    sealed.write(
        "sealed_data",
        b"\x10\x00\x00\x00null0123456789abcdef0123456789abcdef",
    );
    match frame_error(sealed.load(), "sealed_data") {
        FrameError::BadMagic { expected, .. } => assert_eq!(expected, "\"QUARRYSD\""),
        other => panic!("{other:?}"),
    }
}

#[test]
fn nothing_is_written_in_recovery_mode() {
    let sealed = Sealed::new();
    fs::remove_file(sealed.path("sealed_key")).unwrap();
    let before = sealed.listing();
    let store = open_store(sealed.dir.path(), sealed.enclave.clone()).unwrap();
    assert!(store.unseal(&[]).is_err());
    let error = commit_entries(&store, &generation(3, 9), SealMode::ProductKey).unwrap_err();
    assert!(matches!(error, StoreError::InRecovery), "{error:?}");
    assert!(matches!(store.reseal(), Err(StoreError::InRecovery)));
    assert_eq!(sealed.listing(), before);
    assert!(Path::new(sealed.dir.path()).join("sealed_data").exists());
}
