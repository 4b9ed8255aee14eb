//! The store: an exclusively locked seal directory, the state in memory, snapshot transactions,
//! and the commit protocol and loader that keep `sealed_data` and `sealed_key` consistent
//! across crashes.
//!
//! Invariants:
//! - The in-memory state and the store's settings change only after a commit has made the new
//!   files durable; a commit that fails before `sealed_data` is replaced leaves memory and the
//!   sealed files as they were.
//! - Commit: write `sealed_data.tmp` and `sealed_key.tmp`, fsync both, fsync the directory,
//!   rename data then key, fsync the directory. The loader tries (`sealed_data`, `sealed_key`),
//!   then (`sealed_data`, `sealed_key.tmp`), so a crash at any point leaves the old or the new
//!   state readable and never forces a recovery.
//! - If the loader needed `sealed_key.tmp`, the next commit first renames it to `sealed_key`
//!   (and fsyncs the directory): otherwise writing the next `sealed_key.tmp` would destroy the
//!   only key that opens the current `sealed_data`.
//! - Nothing is written while the store is sealed or in recovery mode, except by
//!   [`Store::discard`], which moves the old files aside instead of overwriting them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use quarry_enclave::{Enclave, SealPolicy};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::crypto::{self, DataKey, GcmKey, NONCE};
use crate::error::{Corruption, RecoveryReason, StoreError};
use crate::frame::{
    self, EnclaveFrame, Frame, FrameError, HsmFrame, HsmKeyRef, MAX_WRAP_LAYERS, SealedData,
};
use crate::fs::{FileSystem, LockGuard, StdFs};
use crate::state::State;
use crate::wrap::{WrapError, WrapLayer};

/// Name of the encrypted state file.
pub const SEALED_DATA: &str = "sealed_data";
/// Name of the sealed key file.
pub const SEALED_KEY: &str = "sealed_key";
/// Name of the lock file in the seal directory.
pub const LOCK_FILE: &str = "quarry.lock";
/// Largest `sealed_data` the store reads or writes.
pub const MAX_SEALED_DATA_LEN: u64 = 256 * 1024 * 1024;
/// Largest `sealed_key` the store reads.
pub const MAX_SEALED_KEY_LEN: u64 = 64 * 1024;
/// Largest recovery data the store writes.
pub const MAX_RECOVERY_DATA_LEN: u64 = 1024 * 1024;

/// How the data key is sealed (the manifest's `Config.SealMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SealMode {
    /// Sealed with the key bound to the enclave's signer and product.
    ProductKey,
    /// Sealed with the key bound to the enclave's exact measurement.
    UniqueKey,
    /// Nothing is persisted: commits change only the state in memory.
    Disabled,
}

impl SealMode {
    /// The enclave seal policy of this mode, or `None` when nothing is sealed.
    pub fn policy(self) -> Option<SealPolicy> {
        match self {
            Self::ProductKey => Some(SealPolicy::ProductKey),
            Self::UniqueKey => Some(SealPolicy::UniqueKey),
            Self::Disabled => None,
        }
    }
}

/// Where the store is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Sealed files were read but not unsealed yet ([`Store::unseal`]).
    Sealed,
    /// The state is available and commits are written.
    Ready,
    /// The sealed state cannot be unsealed; only [`Store::recover`] or [`Store::discard`]
    /// leave this status, and nothing is written meanwhile.
    Recovery,
    /// A commit failed after the point of no return; reopen the store.
    InDoubt,
}

/// The files of the seal directory.
#[derive(Debug, Clone)]
struct Paths {
    dir: PathBuf,
    data: PathBuf,
    key: PathBuf,
    data_tmp: PathBuf,
    key_tmp: PathBuf,
}

impl Paths {
    fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            data: dir.join(SEALED_DATA),
            key: dir.join(SEALED_KEY),
            data_tmp: dir.join(format!("{SEALED_DATA}.tmp")),
            key_tmp: dir.join(format!("{SEALED_KEY}.tmp")),
        }
    }
}

/// The sealed files as read at open, kept until they are unsealed or discarded.
struct Loaded {
    data: Vec<u8>,
    key: Option<Vec<u8>>,
    key_tmp: Option<Vec<u8>>,
}

/// What only the writer (a transaction, unseal, recover, discard) touches.
struct Writer {
    status: Status,
    seal_mode: SealMode,
    layers: Vec<Arc<dyn WrapLayer>>,
    data_key: Option<DataKey>,
    recovery_data: Vec<u8>,
    /// The loaded state was opened with `sealed_key.tmp`; the next commit renames it first.
    key_from_tmp: bool,
    loaded: Option<Loaded>,
    /// The last `sealed_data` written (ciphertext only), kept so that its allocation is reused.
    buffer: Vec<u8>,
}

/// The sealed state store of one seal directory.
pub struct Store {
    paths: Paths,
    fs: Arc<dyn FileSystem>,
    enclave: Arc<dyn Enclave>,
    current: RwLock<Arc<State>>,
    status: RwLock<Status>,
    writer: Mutex<Writer>,
    _lock: LockGuard,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.paths.dir)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the seal directory `dir` (created if missing) on the real file system.
    pub fn open(dir: impl AsRef<Path>, enclave: Arc<dyn Enclave>) -> Result<Self, StoreError> {
        Self::open_with_fs(dir, enclave, Arc::new(StdFs))
    }

    /// Opens the seal directory `dir` through `fs`.
    ///
    /// Takes the directory's exclusive lock and reads the sealed files. Without `sealed_data`
    /// the store starts empty ([`Status::Ready`], seal mode [`SealMode::Disabled`] until a
    /// transaction sets one, a fresh data key). Otherwise it is [`Status::Sealed`] and
    /// [`Store::unseal`] comes next. A broken `sealed_data` frame is an error here: there is
    /// nothing a recovery key could decrypt.
    pub fn open_with_fs(
        dir: impl AsRef<Path>,
        enclave: Arc<dyn Enclave>,
        fs: Arc<dyn FileSystem>,
    ) -> Result<Self, StoreError> {
        let paths = Paths::new(dir.as_ref());
        fs.create_dir_all(&paths.dir)
            .map_err(io_err("create directory", &paths.dir))?;
        let lock_path = paths.dir.join(LOCK_FILE);
        let lock = fs
            .try_lock(&lock_path)
            .map_err(io_err("lock", &lock_path))?
            .ok_or_else(|| StoreError::Locked {
                dir: paths.dir.clone(),
            })?;

        let data = read_limited(&*fs, &paths.data, MAX_SEALED_DATA_LEN)?;
        let (status, data_key, recovery_data, loaded) = match data {
            None => (
                Status::Ready,
                Some(DataKey::generate().map_err(StoreError::Crypto)?),
                Vec::new(),
                None,
            ),
            Some(data) => {
                let parsed = SealedData::parse(&data).map_err(|e| corrupted(&paths.data, e))?;
                let recovery_data = parsed.recovery_data.to_vec();
                let key = read_limited(&*fs, &paths.key, MAX_SEALED_KEY_LEN)?;
                let key_tmp = read_limited(&*fs, &paths.key_tmp, MAX_SEALED_KEY_LEN)?;
                (
                    Status::Sealed,
                    None,
                    recovery_data,
                    Some(Loaded { data, key, key_tmp }),
                )
            }
        };
        tracing::debug!(dir = %paths.dir.display(), ?status, "seal directory opened");

        let writer = Writer {
            status,
            seal_mode: SealMode::Disabled,
            layers: Vec::new(),
            data_key,
            recovery_data,
            key_from_tmp: false,
            loaded,
            buffer: Vec::new(),
        };
        Ok(Self {
            paths,
            fs,
            enclave,
            current: RwLock::new(Arc::new(State::default())),
            status: RwLock::new(status),
            writer: Mutex::new(writer),
            _lock: lock,
        })
    }

    /// The seal directory.
    pub fn dir(&self) -> &Path {
        &self.paths.dir
    }

    /// Where the store is in its life.
    pub fn status(&self) -> Status {
        *self.status.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// A consistent snapshot of the committed state.
    pub fn snapshot(&self) -> Arc<State> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The HSM keys that wrap the candidate sealed keys (`sealed_key`, then `sealed_key.tmp`),
    /// read from the outermost frames before anything is decrypted. Empty when the store is
    /// not sealed or no candidate is HSM-wrapped. Blocks while a transaction is open.
    pub fn required_wrap_keys(&self) -> Vec<HsmKeyRef> {
        let writer = self.lock_writer();
        let Some(loaded) = &writer.loaded else {
            return Vec::new();
        };
        let mut keys = Vec::new();
        for bytes in [&loaded.key, &loaded.key_tmp].into_iter().flatten() {
            if let Ok(Frame::Hsm(frame)) = frame::parse_sealed_key(bytes)
                && !keys.contains(&frame.key)
            {
                keys.push(frame.key);
            }
        }
        keys
    }

    /// The recovery data stored in the clear at the start of `sealed_data` (empty for a new
    /// state). Available in every status. Blocks while a transaction is open.
    pub fn recovery_data(&self) -> Vec<u8> {
        self.lock_writer().recovery_data.clone()
    }

    /// The data key of the current state, if the store is ready. The Coordinator encrypts it
    /// for the recovery keys. Blocks while a transaction is open.
    pub fn data_key(&self) -> Option<DataKey> {
        self.lock_writer().data_key.clone()
    }

    /// The seal mode that commits use. Blocks while a transaction is open.
    pub fn seal_mode(&self) -> SealMode {
        self.lock_writer().seal_mode
    }

    /// The HSM keys of the wrap layers that commits apply, outermost last. Blocks while a
    /// transaction is open.
    pub fn wrap_keys(&self) -> Vec<HsmKeyRef> {
        self.lock_writer()
            .layers
            .iter()
            .map(|l| l.key_ref().clone())
            .collect()
    }

    /// Unseals the files read at open, using `layers` for any wrap layers.
    ///
    /// Tries (`sealed_data`, `sealed_key`), then (`sealed_data`, `sealed_key.tmp`). On success
    /// the store is [`Status::Ready`] with the seal mode and wrap layers the state was sealed
    /// with. [`StoreError::WrapKeyRequired`], [`StoreError::Enclave`] and I/O errors leave it
    /// [`Status::Sealed`], to be retried; [`StoreError::NeedsRecovery`] and
    /// [`StoreError::Corrupted`] put it in [`Status::Recovery`]. Nothing is written.
    pub fn unseal(&self, layers: &[Arc<dyn WrapLayer>]) -> Result<(), StoreError> {
        let mut writer = self.lock_writer();
        match writer.status {
            Status::Ready => return Ok(()),
            Status::InDoubt => return Err(StoreError::NeedsReopen),
            Status::Sealed | Status::Recovery => {}
        }
        let Some(loaded) = writer.loaded.as_ref() else {
            return Err(StoreError::NotUnsealed);
        };
        let data_hash = crypto::sha256(&loaded.data);
        let unsealer = Unsealer {
            enclave: &*self.enclave,
            layers,
            data_hash: &data_hash,
        };
        let outcome = match unsealer.candidate(loaded.key.as_deref()) {
            Attempt::Opened(opened) => Ok((opened, false)),
            primary => match unsealer.candidate(loaded.key_tmp.as_deref()) {
                Attempt::Opened(opened) => Ok((opened, true)),
                secondary => Err(self.classify(primary, secondary)),
            },
        };
        let (opened, from_tmp) = match outcome {
            Ok(found) => found,
            Err(error) => {
                if matches!(
                    error,
                    StoreError::NeedsRecovery { .. } | StoreError::Corrupted { .. }
                ) {
                    self.set_status(&mut writer, Status::Recovery);
                }
                return Err(error);
            }
        };
        let state = match decrypt_state(&loaded.data, &opened.data_key) {
            Ok(state) => state,
            Err(source) => {
                self.set_status(&mut writer, Status::Recovery);
                return Err(StoreError::Corrupted {
                    path: self.paths.data.clone(),
                    source,
                });
            }
        };

        tracing::debug!(
            from_tmp,
            layers = opened.layers.len(),
            "sealed state unsealed"
        );
        writer.seal_mode = match opened.policy {
            SealPolicy::ProductKey => SealMode::ProductKey,
            SealPolicy::UniqueKey => SealMode::UniqueKey,
        };
        writer.layers = opened.layers;
        writer.key_from_tmp = from_tmp;
        self.become_ready(&mut writer, opened.data_key, state);
        Ok(())
    }

    /// Decrypts the sealed state read at open with a candidate data key, without changing the
    /// store: the caller can check the decrypted state (for example the recovery keys of its
    /// manifest) before it commits to [`Store::recover`] with the same key, which then opens the
    /// same bytes. Allowed where [`Store::recover`] is (recovery mode, or still sealed).
    ///
    /// A key that does not open `sealed_data` is [`StoreError::WrongRecoveryKey`]; a key that
    /// opens it but yields an undecodable state is [`StoreError::Corrupted`].
    pub fn try_recovery_key(&self, key: &DataKey) -> Result<State, StoreError> {
        let writer = self.lock_writer();
        if !matches!(writer.status, Status::Recovery | Status::Sealed) {
            return Err(StoreError::NotInRecovery);
        }
        let Some(loaded) = writer.loaded.as_ref() else {
            return Err(StoreError::NotInRecovery);
        };
        match decrypt_state(&loaded.data, key) {
            Ok(state) => Ok(state),
            Err(Corruption::DataAuthentication) => Err(StoreError::WrongRecoveryKey),
            Err(source) => Err(StoreError::Corrupted {
                path: self.paths.data.clone(),
                source,
            }),
        }
    }

    /// Leaves recovery mode with the data key restored from the recovery secrets. Also allowed
    /// while the store is still sealed (the Coordinator accepts a recovery while it waits for a
    /// key release).
    ///
    /// A wrong key changes nothing. After success the store is ready with seal mode
    /// [`SealMode::ProductKey`] and no wrap layers, and nothing is written until the next
    /// commit, which writes both files anew.
    pub fn recover(&self, key: DataKey) -> Result<(), StoreError> {
        let mut writer = self.lock_writer();
        if !matches!(writer.status, Status::Recovery | Status::Sealed) {
            return Err(StoreError::NotInRecovery);
        }
        let Some(loaded) = writer.loaded.as_ref() else {
            return Err(StoreError::NotInRecovery);
        };
        let state = match decrypt_state(&loaded.data, &key) {
            Ok(state) => state,
            Err(Corruption::DataAuthentication) => return Err(StoreError::WrongRecoveryKey),
            Err(source) => {
                return Err(StoreError::Corrupted {
                    path: self.paths.data.clone(),
                    source,
                });
            }
        };
        tracing::debug!("sealed state recovered");
        writer.seal_mode = SealMode::ProductKey;
        writer.layers = Vec::new();
        writer.key_from_tmp = false;
        self.become_ready(&mut writer, key, state);
        Ok(())
    }

    /// Leaves recovery mode with a new, empty state: moves the old sealed files aside as
    /// `<name>.discarded-<at>` (never overwriting anything; `sealed_data` last, so a crash
    /// leaves either recovery mode or every old file aside), fsyncs the directory, and returns
    /// the new paths. The store is then ready like a fresh one (seal mode
    /// [`SealMode::Disabled`] until a transaction sets one, a new data key). Allowed where
    /// [`Store::recover`] is: in recovery mode, or still sealed (the Coordinator enters
    /// recovery mode without unsealing when a released HSM key cannot be used at all).
    ///
    /// An error part-way leaves the files moved so far aside and the status as it was; a sealed
    /// key that was moved no longer unseals the state held in memory, so memory and a restart
    /// agree on what the directory holds.
    pub fn discard(&self, at: OffsetDateTime) -> Result<Vec<PathBuf>, StoreError> {
        let data_key = DataKey::generate().map_err(StoreError::Crypto)?;
        self.discard_with_key(at, data_key)
    }

    /// [`Store::discard`] with the new state's data key chosen by the caller, who can then
    /// prepare everything that depends on it (recovery secrets) before any file is moved.
    pub fn discard_with_key(
        &self,
        at: OffsetDateTime,
        data_key: DataKey,
    ) -> Result<Vec<PathBuf>, StoreError> {
        let mut writer = self.lock_writer();
        if !matches!(writer.status, Status::Recovery | Status::Sealed) {
            return Err(StoreError::NotInRecovery);
        }
        let stamp = discard_stamp(at);
        let mut moved = Vec::new();
        let result = self.move_aside(&stamp, &mut moved);
        if let Err(error) = result {
            // Part of the files may be aside already. A sealed key that was moved must no longer
            // open the state from memory: the next commit would then rename or replace files
            // that are gone, and a restart would not find the state that memory holds.
            if let Some(loaded) = writer.loaded.as_mut() {
                for (path, slot) in [
                    (&self.paths.key, &mut loaded.key),
                    (&self.paths.key_tmp, &mut loaded.key_tmp),
                ] {
                    if !self.fs.exists(path).unwrap_or(false) {
                        *slot = None;
                    }
                }
            }
            return Err(error);
        }
        tracing::debug!(
            files = moved.len(),
            "unrecoverable sealed state moved aside"
        );

        writer.seal_mode = SealMode::Disabled;
        writer.layers = Vec::new();
        writer.recovery_data = Vec::new();
        writer.key_from_tmp = false;
        self.become_ready(&mut writer, data_key, State::default());
        Ok(moved)
    }

    /// Moves the sealed files aside for [`Store::discard`] (pushing their new names to `moved`)
    /// and fsyncs the directory.
    fn move_aside(&self, stamp: &str, moved: &mut Vec<PathBuf>) -> Result<(), StoreError> {
        // `sealed_data` goes last: until it is moved, a restart still finds the old state (and
        // recovery mode). Moving it first would let a crash leave the old `sealed_key` in place
        // beside no `sealed_data`, so the restarted Coordinator starts fresh and its first
        // commit overwrites that key.
        for from in [
            &self.paths.key_tmp,
            &self.paths.key,
            &self.paths.data_tmp,
            &self.paths.data,
        ] {
            if !self.fs.exists(from).map_err(io_err("stat", from))? {
                continue;
            }
            let to = self.free_name(from, stamp)?;
            self.fs.rename(from, &to).map_err(io_err("rename", from))?;
            moved.push(to);
        }
        self.fs
            .sync_dir(&self.paths.dir)
            .map_err(io_err("fsync", &self.paths.dir))
    }

    /// Starts a transaction on a copy of the current state. Only one transaction is open at a
    /// time; this blocks until the previous one ends. Keep it short: it holds the store's lock.
    pub fn begin(&self) -> Transaction<'_> {
        let writer = self.lock_writer();
        let state = State::clone(&self.snapshot());
        Transaction {
            store: self,
            writer,
            state,
            recovery_data: None,
            seal_mode: None,
            layers: None,
            data_key: None,
        }
    }

    /// Writes the current state again with the current settings (for example right after
    /// unsealing, to re-seal under another HSM key version, or after recovery).
    pub fn reseal(&self) -> Result<(), StoreError> {
        self.begin().commit()
    }

    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        // A panic while the writer was held cannot leave it half-updated: every field changes
        // only after the commit's file operations have succeeded.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_status(&self, writer: &mut Writer, status: Status) {
        writer.status = status;
        *self.status.write().unwrap_or_else(PoisonError::into_inner) = status;
    }

    fn become_ready(&self, writer: &mut Writer, data_key: DataKey, state: State) {
        writer.loaded = None;
        writer.data_key = Some(data_key);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(state);
        self.set_status(writer, Status::Ready);
    }

    /// The error when no candidate opened: anything that may resolve itself first, then the
    /// verdict on `sealed_key`.
    fn classify(&self, primary: Attempt, secondary: Attempt) -> StoreError {
        let mut primary = Some(primary);
        let mut secondary = Some(secondary);
        for slot in [&mut primary, &mut secondary] {
            if matches!(slot, Some(Attempt::Failed(_)))
                && let Some(Attempt::Failed(error)) = slot.take()
            {
                return error;
            }
        }
        for attempt in [&primary, &secondary].into_iter().flatten() {
            if let Attempt::NeedKey(key) = attempt {
                return StoreError::WrapKeyRequired {
                    key: Box::new(key.clone()),
                };
            }
        }
        match primary {
            Some(Attempt::Corrupt(source)) => corrupted(&self.paths.key, source),
            Some(Attempt::Mismatch(reason)) => StoreError::NeedsRecovery { reason },
            _ => StoreError::NeedsRecovery {
                reason: RecoveryReason::KeyMissing,
            },
        }
    }

    /// A name for `from` moved aside that does not exist yet.
    fn free_name(&self, from: &Path, stamp: &str) -> Result<PathBuf, StoreError> {
        let base = format!("{}.discarded-{stamp}", from.display());
        let mut candidate = PathBuf::from(&base);
        let mut n = 1;
        while self
            .fs
            .exists(&candidate)
            .map_err(io_err("stat", &candidate))?
        {
            candidate = PathBuf::from(format!("{base}-{n}"));
            n += 1;
        }
        Ok(candidate)
    }

    /// Writes `data` and `key` with the commit protocol. An error before the rename of
    /// `sealed_data` leaves the sealed files as they were; an error after it is
    /// [`StoreError::InDoubt`].
    fn write_files(&self, writer: &mut Writer, data: &[u8], key: &[u8]) -> Result<(), StoreError> {
        let p = &self.paths;
        if writer.key_from_tmp {
            self.fs
                .rename(&p.key_tmp, &p.key)
                .map_err(io_err("rename", &p.key_tmp))?;
            writer.key_from_tmp = false;
            self.fs.sync_dir(&p.dir).map_err(io_err("fsync", &p.dir))?;
        }

        if let Err(error) = self.write_and_rename_data(data, key) {
            // Best effort: the temporary files are ours and no longer needed by any loader.
            let _ = self.fs.remove_file(&p.data_tmp);
            let _ = self.fs.remove_file(&p.key_tmp);
            return Err(error);
        }

        let finish = self
            .fs
            .rename(&p.key_tmp, &p.key)
            .map_err(io_err("rename", &p.key_tmp))
            .and_then(|()| self.fs.sync_dir(&p.dir).map_err(io_err("fsync", &p.dir)));
        if let Err(error) = finish {
            self.set_status(writer, Status::InDoubt);
            return Err(StoreError::InDoubt {
                source: Box::new(error),
            });
        }
        Ok(())
    }

    fn write_and_rename_data(&self, data: &[u8], key: &[u8]) -> Result<(), StoreError> {
        let p = &self.paths;
        let mut data_file = self
            .fs
            .create(&p.data_tmp)
            .map_err(io_err("create", &p.data_tmp))?;
        data_file
            .write_all(data)
            .map_err(io_err("write", &p.data_tmp))?;
        let mut key_file = self
            .fs
            .create(&p.key_tmp)
            .map_err(io_err("create", &p.key_tmp))?;
        key_file
            .write_all(key)
            .map_err(io_err("write", &p.key_tmp))?;
        data_file.sync().map_err(io_err("fsync", &p.data_tmp))?;
        key_file.sync().map_err(io_err("fsync", &p.key_tmp))?;
        drop((data_file, key_file));
        self.fs.sync_dir(&p.dir).map_err(io_err("fsync", &p.dir))?;
        self.fs
            .rename(&p.data_tmp, &p.data)
            .map_err(io_err("rename", &p.data_tmp))
    }

    /// Builds both files for `state` and writes them.
    fn persist(
        &self,
        writer: &mut Writer,
        policy: SealPolicy,
        layers: &[Arc<dyn WrapLayer>],
        recovery_data: &[u8],
        state: &State,
        data_key: &DataKey,
    ) -> Result<(), StoreError> {
        let mut data = std::mem::take(&mut writer.buffer);
        seal_data(data_key, recovery_data, state, &mut data)?;
        let key = self.seal_key(data_key, &crypto::sha256(&data), policy, layers)?;
        let result = self.write_files(writer, &data, &key);
        writer.buffer = data;
        result
    }

    /// `sealed_key`: the data key sealed with the enclave's key for `policy` and bound to
    /// `data_hash`, then wrapped by each of `layers` in turn.
    fn seal_key(
        &self,
        data_key: &DataKey,
        data_hash: &[u8; 32],
        policy: SealPolicy,
        layers: &[Arc<dyn WrapLayer>],
    ) -> Result<Vec<u8>, StoreError> {
        if layers.len() > MAX_WRAP_LAYERS {
            return Err(StoreError::TooManyWrapLayers {
                count: layers.len(),
            });
        }
        let seal_key = self.enclave.seal_key(policy).map_err(StoreError::Enclave)?;
        let wrap_key = crypto::enclave_wrap_key(&seal_key, policy).map_err(StoreError::Crypto)?;
        let nonce = crypto::random_nonce().map_err(StoreError::Crypto)?;
        let sealed = wrap_key
            .seal(&nonce, data_hash, data_key.as_bytes())
            .map_err(StoreError::Crypto)?;
        let mut frame = Zeroizing::new(EnclaveFrame::encode(policy, &nonce, &sealed));

        for layer in layers {
            let key = layer.key_ref();
            let nonce = crypto::random_nonce().map_err(StoreError::Crypto)?;
            let mut header =
                HsmFrame::header_for(key, &nonce).map_err(|source| StoreError::Wrap {
                    key: Box::new(key.clone()),
                    source: WrapError::InvalidKeyRef(source),
                })?;
            let ciphertext =
                layer
                    .seal(&nonce, &header, &frame)
                    .map_err(|source| StoreError::Wrap {
                        key: Box::new(key.clone()),
                        source,
                    })?;
            header.extend_from_slice(&ciphertext);
            frame = Zeroizing::new(header);
        }
        Ok(frame::sealed_key_file(&frame))
    }
}

/// A transaction: a private copy of the state that becomes the store's state when
/// [`Transaction::commit`] succeeds. Dropping it without committing discards it.
pub struct Transaction<'a> {
    store: &'a Store,
    writer: MutexGuard<'a, Writer>,
    state: State,
    recovery_data: Option<Vec<u8>>,
    seal_mode: Option<SealMode>,
    layers: Option<Vec<Arc<dyn WrapLayer>>>,
    data_key: Option<DataKey>,
}

impl std::fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl std::ops::Deref for Transaction<'_> {
    type Target = State;

    fn deref(&self) -> &State {
        &self.state
    }
}

impl Transaction<'_> {
    /// Sets `key` to `value`.
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.state.insert(key.into(), value.into());
    }

    /// Removes `key`; returns whether it was there.
    pub fn delete(&mut self, key: &[u8]) -> bool {
        self.state.remove(key)
    }

    /// Sets the recovery data written in the clear at the start of `sealed_data`.
    pub fn set_recovery_data(&mut self, data: Vec<u8>) {
        self.recovery_data = Some(data);
    }

    /// Encrypts this and later commits under a new data key, and returns it so that the caller
    /// can set recovery data for it ([`Transaction::set_recovery_data`]). Use it whenever the
    /// holders of the recovery data change: recovery data made for the old key, and every copy
    /// of `sealed_data` written under it, then no longer open the new state.
    pub fn rotate_data_key(&mut self) -> Result<DataKey, StoreError> {
        let key = DataKey::generate().map_err(StoreError::Crypto)?;
        self.data_key = Some(key.clone());
        Ok(key)
    }

    /// Sets the seal mode for this and later commits.
    pub fn set_seal_mode(&mut self, mode: SealMode) {
        self.seal_mode = Some(mode);
    }

    /// Sets the wrap layers (applied in order, the last one outermost) for this and later
    /// commits.
    pub fn set_wrap_layers(&mut self, layers: Vec<Arc<dyn WrapLayer>>) {
        self.layers = Some(layers);
    }

    /// Writes the state (unless the seal mode is [`SealMode::Disabled`]) and makes it the
    /// store's state. On error nothing changes in memory, and the sealed files stay as they
    /// were unless the error is [`StoreError::InDoubt`].
    pub fn commit(mut self) -> Result<(), StoreError> {
        let store = self.store;
        match self.writer.status {
            Status::Ready => {}
            Status::Sealed => return Err(StoreError::NotUnsealed),
            Status::Recovery => return Err(StoreError::InRecovery),
            Status::InDoubt => return Err(StoreError::NeedsReopen),
        }
        let seal_mode = self.seal_mode.unwrap_or(self.writer.seal_mode);
        let layers = self
            .layers
            .take()
            .unwrap_or_else(|| self.writer.layers.clone());
        let recovery_data = self
            .recovery_data
            .take()
            .unwrap_or_else(|| self.writer.recovery_data.clone());
        if recovery_data.len() as u64 > MAX_RECOVERY_DATA_LEN {
            return Err(StoreError::StateTooLarge {
                what: "recovery data",
                len: recovery_data.len(),
                limit: MAX_RECOVERY_DATA_LEN,
            });
        }

        let data_key = match self.data_key.take() {
            Some(key) => key,
            None => self
                .writer
                .data_key
                .clone()
                .ok_or(StoreError::NotUnsealed)?,
        };
        if let Some(policy) = seal_mode.policy() {
            store.persist(
                &mut self.writer,
                policy,
                &layers,
                &recovery_data,
                &self.state,
                &data_key,
            )?;
        }

        let writer = &mut *self.writer;
        writer.data_key = Some(data_key);
        writer.seal_mode = seal_mode;
        writer.layers = layers;
        writer.recovery_data = recovery_data;
        let state = std::mem::take(&mut self.state);
        *store
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(state);
        Ok(())
    }
}

/// A sealed key that opened.
struct Opened {
    data_key: DataKey,
    policy: SealPolicy,
    layers: Vec<Arc<dyn WrapLayer>>,
}

/// The outcome of trying one candidate sealed key.
enum Attempt {
    Opened(Opened),
    Missing,
    Corrupt(FrameError),
    Mismatch(RecoveryReason),
    NeedKey(HsmKeyRef),
    Failed(StoreError),
}

struct Unsealer<'a> {
    enclave: &'a dyn Enclave,
    layers: &'a [Arc<dyn WrapLayer>],
    data_hash: &'a [u8; 32],
}

impl Unsealer<'_> {
    fn candidate(&self, bytes: Option<&[u8]>) -> Attempt {
        let Some(bytes) = bytes else {
            return Attempt::Missing;
        };
        match frame::parse_sealed_key(bytes) {
            Ok(frame) => self.open_frame(frame, Vec::new()),
            Err(error) => Attempt::Corrupt(error),
        }
    }

    fn open_frame(&self, frame: Frame<'_>, mut used: Vec<Arc<dyn WrapLayer>>) -> Attempt {
        match frame {
            Frame::Enclave(frame) => self.open_enclave(&frame, used),
            Frame::Hsm(frame) => {
                if used.len() >= MAX_WRAP_LAYERS {
                    return Attempt::Corrupt(FrameError::TooManyLayers);
                }
                let Some(layer) = self.layers.iter().find(|l| *l.key_ref() == frame.key) else {
                    return Attempt::NeedKey(frame.key);
                };
                let inner = match layer.open(&frame.nonce, frame.header, frame.ciphertext) {
                    Ok(inner) => inner,
                    Err(WrapError::WrongKey) => {
                        return Attempt::Mismatch(RecoveryReason::WrapKeyMismatch {
                            key: frame.key,
                        });
                    }
                    Err(source) => {
                        return Attempt::Failed(StoreError::Wrap {
                            key: Box::new(frame.key),
                            source,
                        });
                    }
                };
                used.insert(0, Arc::clone(layer));
                match Frame::parse(&inner) {
                    Ok(inner_frame) => self.open_frame(inner_frame, used),
                    Err(error) => Attempt::Corrupt(error),
                }
            }
        }
    }

    fn open_enclave(&self, frame: &EnclaveFrame<'_>, used: Vec<Arc<dyn WrapLayer>>) -> Attempt {
        let seal_key = match self.enclave.seal_key(frame.policy) {
            Ok(key) => key,
            Err(error) => return Attempt::Failed(StoreError::Enclave(error)),
        };
        let key = match crypto::enclave_wrap_key(&seal_key, frame.policy) {
            Ok(key) => key,
            Err(error) => return Attempt::Failed(StoreError::Crypto(error)),
        };
        let Ok(bytes) = key.open(&frame.nonce, self.data_hash, frame.ciphertext) else {
            return Attempt::Mismatch(RecoveryReason::KeyMismatch);
        };
        match DataKey::from_bytes(&bytes) {
            Ok(data_key) => Attempt::Opened(Opened {
                data_key,
                policy: frame.policy,
                layers: used,
            }),
            // The frame parser fixes the ciphertext length, so the plaintext is 32 bytes.
            Err(error) => Attempt::Failed(StoreError::Crypto(error)),
        }
    }
}

/// Writes `sealed_data` for `state` into `out`.
fn seal_data(
    data_key: &DataKey,
    recovery_data: &[u8],
    state: &State,
    out: &mut Vec<u8>,
) -> Result<(), StoreError> {
    let header = SealedData::header_for(recovery_data).map_err(|_| StoreError::StateTooLarge {
        what: "recovery data",
        len: recovery_data.len(),
        limit: MAX_RECOVERY_DATA_LEN,
    })?;
    let total = header.len() + NONCE + state.encoded_len() + crypto::TAG;
    if total as u64 > MAX_SEALED_DATA_LEN {
        return Err(StoreError::StateTooLarge {
            what: "state",
            len: total,
            limit: MAX_SEALED_DATA_LEN,
        });
    }
    let key = GcmKey::new("data key", data_key.as_bytes()).map_err(StoreError::Crypto)?;
    let nonce = crypto::random_nonce().map_err(StoreError::Crypto)?;
    // The state is encoded straight into the output and encrypted in place: no other copy of
    // the plaintext exists, and `seal_tail` zeroes it if encryption fails.
    out.clear();
    out.reserve(total);
    out.extend_from_slice(&header);
    out.extend_from_slice(&nonce);
    let start = out.len();
    state.encode_into(out);
    key.seal_tail(&nonce, &header, out, start)
        .map_err(StoreError::Crypto)
}

/// Decrypts and decodes the state in `sealed_data`.
fn decrypt_state(data: &[u8], data_key: &DataKey) -> Result<State, Corruption> {
    let parsed = SealedData::parse(data)?;
    let key =
        GcmKey::new("data key", data_key.as_bytes()).map_err(|_| Corruption::DataAuthentication)?;
    let plaintext = key
        .open(&parsed.nonce, parsed.header, parsed.ciphertext)
        .map_err(|_| Corruption::DataAuthentication)?;
    Ok(State::decode(&plaintext)?)
}

fn read_limited(
    fs: &dyn FileSystem,
    path: &Path,
    limit: u64,
) -> Result<Option<Vec<u8>>, StoreError> {
    match fs.read(path, limit) {
        Ok(Some(bytes)) if bytes.len() as u64 > limit => Err(StoreError::TooLarge {
            path: path.to_path_buf(),
            limit,
        }),
        Ok(bytes) => Ok(bytes),
        Err(error) if error.kind() == std::io::ErrorKind::FileTooLarge => {
            Err(StoreError::TooLarge {
                path: path.to_path_buf(),
                limit,
            })
        }
        Err(error) => Err(io_err("read", path)(error)),
    }
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { op, path, source }
}

fn corrupted(path: &Path, error: FrameError) -> StoreError {
    StoreError::Corrupted {
        path: path.to_path_buf(),
        source: Corruption::Frame(error),
    }
}

/// `20261204T170300Z`: the time in UTC, sortable, without characters that need quoting.
fn discard_stamp(at: OffsetDateTime) -> String {
    let t = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}
