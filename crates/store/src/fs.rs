//! The file operations the store performs, behind a small trait so that tests can inject faults
//! and simulate power loss.
//!
//! [`StdFs`] is the real implementation. Every step of the commit protocol is one call of this
//! trait, so a test implementation can stop the world after any of them and decide which of the
//! writes that were not yet made durable survive.

use std::any::Any;
use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::path::Path;

/// A guard that holds an exclusive lock until it is dropped.
pub type LockGuard = Box<dyn Any + Send + Sync>;

/// A file opened for writing by [`FileSystem::create`].
pub trait WriteFile: Send {
    /// Writes all of `buf` at the current position.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;

    /// Makes the file's content durable (`fsync`).
    fn sync(&mut self) -> io::Result<()>;
}

/// The file-system operations the store uses.
pub trait FileSystem: Send + Sync + fmt::Debug {
    /// Creates `dir` and its parents if they are missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;

    /// Takes an exclusive, non-blocking lock on the file `path` (created if missing). `Ok(None)`
    /// means that someone else holds it.
    fn try_lock(&self, path: &Path) -> io::Result<Option<LockGuard>>;

    /// Reads the whole file, or `Ok(None)` if it does not exist. A file larger than `limit`
    /// bytes is an error of kind [`io::ErrorKind::FileTooLarge`], found without reading it.
    fn read(&self, path: &Path, limit: u64) -> io::Result<Option<Vec<u8>>>;

    /// Creates `path` (or truncates it) with mode 0600 for writing.
    fn create(&self, path: &Path) -> io::Result<Box<dyn WriteFile>>;

    /// Renames `from` to `to`, replacing `to` atomically.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;

    /// Whether `path` exists.
    fn exists(&self, path: &Path) -> io::Result<bool>;

    /// Makes the directory's entries durable (`fsync` on the directory).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The real file system through `std::fs`.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

struct StdFile(File);

impl WriteFile for StdFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.0.sync_all()
    }
}

impl FileSystem for StdFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<LockGuard>> {
        let file = private_options()
            .read(true)
            .write(true)
            .create(true)
            .open(path)?;
        match file.try_lock() {
            // The lock lives as long as the open file description.
            Ok(()) => Ok(Some(Box::new(file))),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(err)) => Err(err),
        }
    }

    fn read(&self, path: &Path, limit: u64) -> io::Result<Option<Vec<u8>>> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err),
        };
        let too_large = || io::Error::from(io::ErrorKind::FileTooLarge);
        if file.metadata()?.len() > limit {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        // The file may have grown since `metadata`.
        file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > limit {
            return Err(too_large());
        }
        Ok(Some(bytes))
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        let file = private_options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Box::new(StdFile(file)))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// Open options for files only the Coordinator may read (mode 0600 on Unix).
fn private_options() -> OpenOptions {
    #[allow(unused_mut)] // `mut` is only needed on Unix
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_on_the_same_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let first = StdFs.try_lock(&path).unwrap();
        assert!(first.is_some());
        assert!(StdFs.try_lock(&path).unwrap().is_none());
        drop(first);
        assert!(StdFs.try_lock(&path).unwrap().is_some());
    }

    #[test]
    fn read_refuses_files_over_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        fs::write(&path, vec![7u8; 100]).unwrap();
        let error = StdFs.read(&path, 99).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(StdFs.read(&path, 100).unwrap().unwrap().len(), 100);
        assert!(
            StdFs
                .read(&dir.path().join("missing"), 10)
                .unwrap()
                .is_none()
        );
    }

    #[cfg(unix)]
    #[test]
    fn created_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let mut file = StdFs.create(&path).unwrap();
        file.write_all(b"x").unwrap();
        file.sync().unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
