//! Test doubles: an enclave with deterministic seal keys, and an in-memory file system that
//! counts every step, crashes or fails at a chosen step, and simulates power loss by dropping
//! whatever was not fsynced.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use aws_lc_rs::digest;
use quarry_enclave::{Enclave, EnclaveError, Identity, SealKey, SealPolicy};
use quarry_store::fs::{FileSystem, LockGuard, WriteFile};
use quarry_store::{
    DataKey, HsmKeyRef, HsmWrapKey, SealMode, State, Status, Store, StoreError, WrapLayer,
};

/// Keeps a spawned child from holding a copy of a seal directory's lock. A child holds every
/// open file description of the test process until its `exec`, so a test that closes a store
/// and reopens its directory while another test spawns a child could find the directory still
/// locked. Opening a real seal directory takes this shared; spawning a child takes it
/// exclusively (`Command::spawn` returns only after the child's `exec`).
static SPAWNING: RwLock<()> = RwLock::new(());

/// [`Store::open`] on a real directory, never overlapping a child's spawn.
pub(crate) fn open_store(dir: &Path, enclave: Arc<TestEnclave>) -> Result<Store, StoreError> {
    let _guard = SPAWNING.read().unwrap_or_else(PoisonError::into_inner);
    Store::open(dir, enclave)
}

/// Spawns `command`, never overlapping a test's [`open_store`].
pub(crate) fn spawn(command: &mut Command) -> io::Result<Child> {
    let _guard = SPAWNING.write().unwrap_or_else(PoisonError::into_inner);
    command.spawn()
}

/// An enclave whose seal keys derive from a signer and a measurement byte, like SGX: the
/// product key depends on the signer only, the unique key on both.
#[derive(Debug)]
pub(crate) struct TestEnclave {
    identity: Identity,
    unavailable: AtomicBool,
}

impl TestEnclave {
    pub(crate) fn new(signer: u8, measurement: u8) -> Arc<Self> {
        Arc::new(Self {
            identity: Identity {
                mrenclave: [measurement; 32],
                mrsigner: [signer; 32],
                isv_prod_id: 1,
                isv_svn: 1,
                debug: false,
            },
            unavailable: AtomicBool::new(false),
        })
    }

    /// The default enclave of the tests.
    pub(crate) fn standard() -> Arc<Self> {
        Self::new(1, 1)
    }

    /// Makes `seal_key` fail (as when `/dev/attestation` cannot be read).
    pub(crate) fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::SeqCst);
    }
}

impl Enclave for TestEnclave {
    fn quote(&self, _report_data: &[u8; 64]) -> Result<Vec<u8>, EnclaveError> {
        Err(EnclaveError::Refused(
            "the test enclave makes no quotes".into(),
        ))
    }

    fn seal_key(&self, policy: SealPolicy) -> Result<SealKey, EnclaveError> {
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(EnclaveError::Refused("seal key unavailable".into()));
        }
        let mut input = b"test seal key".to_vec();
        input.extend_from_slice(&self.identity.mrsigner);
        if policy == SealPolicy::UniqueKey {
            input.extend_from_slice(&self.identity.mrenclave);
        }
        // 128 bits, like an SGX seal key.
        Ok(SealKey::new(
            digest::digest(&digest::SHA256, &input).as_ref()[..16].to_vec(),
        ))
    }

    fn identity(&self) -> &Identity {
        &self.identity
    }

    fn is_simulation(&self) -> bool {
        true
    }
}

pub(crate) fn hsm_ref(version: &str) -> HsmKeyRef {
    HsmKeyRef {
        vault_host: "quarry-test.managedhsm.azure.net".into(),
        key_name: "coordinator-seal".into(),
        key_version: version.into(),
    }
}

/// The layer for HSM key `version`, whose bytes derive from the version.
pub(crate) fn hsm_layer(version: &str) -> Arc<dyn WrapLayer> {
    let key = digest::digest(&digest::SHA256, version.as_bytes());
    Arc::new(HsmWrapKey::new(hsm_ref(version), key.as_ref()).unwrap())
}

/// The state as owned pairs, for comparisons.
pub(crate) fn entries(state: &State) -> Vec<(Vec<u8>, Vec<u8>)> {
    state
        .iter()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect()
}

/// A state with `n` entries whose values name generation `generation`.
pub(crate) fn generation(n: usize, generation: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out: Vec<_> = (0..n)
        .map(|i| {
            (
                format!("entry:{i:05}").into_bytes(),
                format!("gen {generation} value {i}").into_bytes(),
            )
        })
        .collect();
    out.push((b"generation".to_vec(), generation.to_string().into_bytes()));
    out.sort();
    out
}

/// Commits exactly `entries` as the state, with `mode`.
pub(crate) fn commit_entries(
    store: &Store,
    entries: &[(Vec<u8>, Vec<u8>)],
    mode: SealMode,
) -> Result<(), quarry_store::StoreError> {
    let mut txn = store.begin();
    let old: Vec<Vec<u8>> = txn.iter().map(|(k, _)| k.to_vec()).collect();
    for key in old {
        txn.delete(&key);
    }
    for (k, v) in entries {
        txn.put(k.clone(), v.clone());
    }
    txn.set_seal_mode(mode);
    txn.commit()
}

/// Opens and unseals `dir` on `fs`, expecting success.
pub(crate) fn reopen(fs: &MemFs, enclave: &Arc<TestEnclave>) -> Store {
    let store = Store::open_with_fs(DIR, enclave.clone(), Arc::new(fs.clone())).unwrap();
    if store.status() == Status::Sealed {
        store.unseal(&[]).unwrap();
    }
    assert_eq!(store.status(), Status::Ready);
    store
}

/// A data key with known bytes, for comparisons.
pub(crate) fn key_bytes(key: &DataKey) -> Vec<u8> {
    key.as_bytes().to_vec()
}

/// The seal directory inside the in-memory file system.
pub(crate) const DIR: &str = "/seal";

/// What survives a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Crash {
    /// The process dies; the kernel keeps everything it was given.
    Process,
    /// Power loss: everything not fsynced is gone (file data and directory entries).
    PowerLoss,
    /// Power loss on a file system that journals metadata but not data: renames and new
    /// entries survive, file contents not fsynced are lost.
    PowerLossDataOnly,
}

#[derive(Debug, Default, Clone)]
struct Inode {
    data: Vec<u8>,
    synced: Vec<u8>,
}

#[derive(Debug, Default)]
struct World {
    inodes: Vec<Inode>,
    entries: BTreeMap<PathBuf, usize>,
    synced_entries: BTreeMap<PathBuf, usize>,
    locks: BTreeSet<PathBuf>,
    steps: u64,
    /// The process dies when it attempts step number `crash_at` (counting from 0).
    crash_at: Option<u64>,
    dead: bool,
    /// One step fails with this error; the process lives on.
    fail_at: Option<(u64, io::ErrorKind)>,
    /// Every modifying step fails with this error (read-only or full disk).
    fail_all: Option<io::ErrorKind>,
    trace: Vec<String>,
}

impl World {
    /// Counts a modifying step and decides whether it happens.
    fn step(&mut self, what: String) -> io::Result<()> {
        if self.dead {
            return Err(io::Error::other("process is dead"));
        }
        let n = self.steps;
        self.steps += 1;
        if self.crash_at == Some(n) {
            self.dead = true;
            return Err(io::Error::other(format!("crash at step {n} ({what})")));
        }
        if let Some((at, kind)) = self.fail_at
            && at == n
        {
            self.fail_at = None;
            return Err(io::Error::new(
                kind,
                format!("injected failure at step {n} ({what})"),
            ));
        }
        if let Some(kind) = self.fail_all {
            return Err(io::Error::new(kind, format!("injected failure ({what})")));
        }
        self.trace.push(what);
        Ok(())
    }
}

/// The in-memory file system. Clones share the same world.
#[derive(Debug, Clone, Default)]
pub(crate) struct MemFs(Arc<Mutex<World>>);

impl MemFs {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.0.lock().unwrap()
    }

    /// Modifying steps so far.
    pub(crate) fn steps(&self) -> u64 {
        self.world().steps
    }

    /// The names of the steps so far.
    pub(crate) fn trace(&self) -> Vec<String> {
        self.world().trace.clone()
    }

    /// The process dies at the `n`-th step from now (0 = the next step).
    pub(crate) fn crash_in(&self, n: u64) {
        let mut w = self.world();
        w.crash_at = Some(w.steps + n);
    }

    /// The `n`-th step from now fails once with `kind`.
    pub(crate) fn fail_in(&self, n: u64, kind: io::ErrorKind) {
        let mut w = self.world();
        w.fail_at = Some((w.steps + n, kind));
    }

    /// Every modifying step fails with `kind` until called with `None`.
    pub(crate) fn fail_all(&self, kind: Option<io::ErrorKind>) {
        self.world().fail_all = kind;
    }

    /// What the next boot sees after `crash`. Locks are released; the process lives again.
    pub(crate) fn crash(&self, crash: Crash) {
        let mut w = self.world();
        match crash {
            Crash::Process => {}
            Crash::PowerLoss => {
                w.entries = w.synced_entries.clone();
                for inode in &mut w.inodes {
                    inode.data = inode.synced.clone();
                }
            }
            Crash::PowerLossDataOnly => {
                w.synced_entries = w.entries.clone();
                for inode in &mut w.inodes {
                    inode.data = inode.synced.clone();
                }
            }
        }
        w.locks.clear();
        w.dead = false;
        w.crash_at = None;
        w.fail_at = None;
    }

    /// The visible files and their contents.
    pub(crate) fn files(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let w = self.world();
        w.entries
            .iter()
            .map(|(p, &i)| (p.clone(), w.inodes[i].data.clone()))
            .collect()
    }
}

struct MemFile {
    fs: MemFs,
    inode: usize,
    path: PathBuf,
}

impl WriteFile for MemFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let mut w = self.fs.world();
        let result = w.step(format!("write {}", self.path.display()));
        match &result {
            Ok(()) => w.inodes[self.inode].data.extend_from_slice(buf),
            // A torn write: half of it reached the page cache.
            Err(_) => w.inodes[self.inode]
                .data
                .extend_from_slice(&buf[..buf.len() / 2]),
        }
        result
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut w = self.fs.world();
        w.step(format!("fsync {}", self.path.display()))?;
        let inode = &mut w.inodes[self.inode];
        inode.synced = inode.data.clone();
        Ok(())
    }
}

impl FileSystem for MemFs {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<LockGuard>> {
        let mut w = self.world();
        if !w.locks.insert(path.to_path_buf()) {
            return Ok(None);
        }
        Ok(Some(Box::new(MemLock {
            fs: self.clone(),
            path: path.to_path_buf(),
        })))
    }

    fn read(&self, path: &Path, limit: u64) -> io::Result<Option<Vec<u8>>> {
        let w = self.world();
        match w.entries.get(path) {
            None => Ok(None),
            Some(&i) if w.inodes[i].data.len() as u64 > limit => {
                Err(io::Error::from(io::ErrorKind::FileTooLarge))
            }
            Some(&i) => Ok(Some(w.inodes[i].data.clone())),
        }
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        let mut w = self.world();
        w.step(format!("create {}", path.display()))?;
        let inode = match w.entries.get(path) {
            Some(&i) => {
                w.inodes[i].data.clear();
                i
            }
            None => {
                w.inodes.push(Inode::default());
                let i = w.inodes.len() - 1;
                w.entries.insert(path.to_path_buf(), i);
                i
            }
        };
        Ok(Box::new(MemFile {
            fs: self.clone(),
            inode,
            path: path.to_path_buf(),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut w = self.world();
        if !w.entries.contains_key(from) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "rename source missing",
            ));
        }
        w.step(format!("rename {} -> {}", from.display(), to.display()))?;
        let inode = w.entries.remove(from).expect("checked above");
        w.entries.insert(to.to_path_buf(), inode);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut w = self.world();
        w.step(format!("remove {}", path.display()))?;
        w.entries
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        Ok(self.world().entries.contains_key(path))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut w = self.world();
        w.step(format!("fsync {}", dir.display()))?;
        w.synced_entries = w.entries.clone();
        Ok(())
    }
}

struct MemLock {
    fs: MemFs,
    path: PathBuf,
}

impl Drop for MemLock {
    fn drop(&mut self) {
        self.fs.world().locks.remove(&self.path);
    }
}
