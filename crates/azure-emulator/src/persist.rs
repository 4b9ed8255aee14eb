//! The state directory: the emulator's only database.
//!
//! Everything that must survive a restart (the CA, the Entra tenant and its principals, signing
//! keys, the MAA issuer, the Managed HSM's keys and role assignments) lives in files under one
//! directory. Operator subcommands and a running server both work on it, so every
//! read-modify-write goes through [`StateDir::update_json`], which holds an exclusive lock on
//! `state.lock` for its duration, and every write is atomic (temporary file, fsync, rename,
//! fsync of the directory). A server therefore sees a service principal that `sp create`
//! added while it runs, without a restart.
//!
//! Private keys are written with mode 0600 and read into zeroed-on-drop buffers.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

/// A failure reading or writing the state directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PersistError {
    /// A file operation failed.
    #[error("{op} {path}")]
    Io {
        /// What was attempted.
        op: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A state file is not the JSON document it should be.
    #[error("state file {path} is corrupt")]
    Corrupt {
        /// The file concerned.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

/// The emulator's state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

/// An exclusive lock on the state directory, released on drop.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

impl StateDir {
    /// Opens (creating if needed, mode 0700) the state directory at `root`.
    pub fn open(root: &Path) -> Result<Self, PersistError> {
        std::fs::create_dir_all(root).map_err(|source| PersistError::Io {
            op: "create directory",
            path: root.to_owned(),
            source,
        })?;
        set_mode(root, 0o700)?;
        Ok(Self {
            root: root.to_owned(),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The path of `name` inside the directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Takes the directory's exclusive lock, waiting for other holders (processes or threads).
    pub fn lock(&self) -> Result<StateLock, PersistError> {
        let path = self.file("state.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| PersistError::Io {
                op: "open",
                path: path.clone(),
                source,
            })?;
        file.lock().map_err(|source| PersistError::Io {
            op: "lock",
            path,
            source,
        })?;
        Ok(StateLock { _file: file })
    }

    /// Reads the JSON document `name`; `Ok(None)` if it does not exist.
    pub fn read_json<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, PersistError> {
        let path = self.file(name);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(PersistError::Io {
                    op: "read",
                    path,
                    source,
                });
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| PersistError::Corrupt { path, source })
    }

    /// Writes `value` as pretty JSON to `name`, atomically.
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), PersistError> {
        let mut bytes =
            serde_json::to_vec_pretty(value).map_err(|source| PersistError::Corrupt {
                path: self.file(name),
                source,
            })?;
        bytes.push(b'\n');
        self.write_atomic(name, &bytes, 0o644)
    }

    /// Reads `name` under the lock, lets `f` change it (starting from `T::default()` if the file
    /// does not exist), and writes it back atomically if `f` succeeds.
    pub fn update_json<T, R, E>(
        &self,
        name: &str,
        f: impl FnOnce(&mut T) -> Result<R, E>,
    ) -> Result<R, E>
    where
        T: Serialize + DeserializeOwned + Default,
        E: From<PersistError>,
    {
        let _lock = self.lock()?;
        let mut value = self.read_json(name)?.unwrap_or_default();
        let result = f(&mut value)?;
        self.write_json(name, &value)?;
        Ok(result)
    }

    /// Reads a secret file (a private key); `Ok(None)` if it does not exist.
    pub fn read_secret(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, PersistError> {
        let path = self.file(name);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(Zeroizing::new(bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(PersistError::Io {
                op: "read",
                path,
                source,
            }),
        }
    }

    /// Writes a secret file with mode 0600, atomically.
    pub fn write_secret(&self, name: &str, bytes: &[u8]) -> Result<(), PersistError> {
        self.write_atomic(name, bytes, 0o600)
    }

    /// Writes a public file (a certificate) with mode 0644, atomically.
    pub fn write_public(&self, name: &str, bytes: &[u8]) -> Result<(), PersistError> {
        self.write_atomic(name, bytes, 0o644)
    }

    fn write_atomic(&self, name: &str, bytes: &[u8], mode: u32) -> Result<(), PersistError> {
        let path = self.file(name);
        let tmp = self.file(&format!("{name}.tmp"));
        let io = |op: &'static str, path: &Path| {
            let path = path.to_owned();
            move |source| PersistError::Io { op, path, source }
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io("create directory", parent))?;
        }
        let mut file = open_with_mode(&tmp, mode).map_err(io("create", &tmp))?;
        file.write_all(bytes).map_err(io("write", &tmp))?;
        file.sync_all().map_err(io("fsync", &tmp))?;
        drop(file);
        std::fs::rename(&tmp, &path).map_err(io("rename", &tmp))?;
        let dir = path.parent().unwrap_or(&self.root);
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("fsync directory", dir))
    }
}

#[cfg(unix)]
fn open_with_mode(path: &Path, mode: u32) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(mode)
        .open(path)?;
    // The mode above applies only to a newly created file; a leftover temporary keeps its own.
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    Ok(file)
}

#[cfg(not(unix))]
fn open_with_mode(path: &Path, _mode: u32) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<(), PersistError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|source| {
        PersistError::Io {
            op: "chmod",
            path: path.to_owned(),
            source,
        }
    })
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> Result<(), PersistError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_creates_and_changes_a_document() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(&dir.path().join("s")).unwrap();
        assert_eq!(state.read_json::<Vec<u32>>("a.json").unwrap(), None);
        state
            .update_json("a.json", |v: &mut Vec<u32>| {
                v.push(1);
                Ok::<_, PersistError>(())
            })
            .unwrap();
        let n = state
            .update_json("a.json", |v: &mut Vec<u32>| {
                v.push(2);
                Ok::<_, PersistError>(v.len())
            })
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(
            state.read_json::<Vec<u32>>("a.json").unwrap(),
            Some(vec![1, 2])
        );
        assert!(!state.file("a.json.tmp").exists());
    }

    #[test]
    fn failed_update_leaves_the_file_alone() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        state.write_json("a.json", &vec![7]).unwrap();
        let r = state.update_json("a.json", |v: &mut Vec<u32>| {
            v.clear();
            Err::<(), _>(PersistError::Io {
                op: "test",
                path: PathBuf::new(),
                source: std::io::Error::other("no"),
            })
        });
        assert!(r.is_err());
        assert_eq!(
            state.read_json::<Vec<u32>>("a.json").unwrap(),
            Some(vec![7])
        );
    }

    #[test]
    fn corrupt_file_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        std::fs::write(state.file("a.json"), b"{").unwrap();
        let err = state.read_json::<Vec<u32>>("a.json").unwrap_err();
        assert!(err.to_string().contains("a.json"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn secrets_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        state.write_secret("k.pem", b"secret").unwrap();
        let mode = std::fs::metadata(state.file("k.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(&**state.read_secret("k.pem").unwrap().unwrap(), b"secret");
    }
}
