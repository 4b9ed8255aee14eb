//! The `--ready-file` handshake: once a server listens, it writes its process id and the
//! addresses it bound to a JSON file, atomically, so that a test or `quarry dev` that started it
//! with `127.0.0.1:0` learns the real ports without parsing logs or polling sockets.
//!
//! The file is written to a temporary name beside the target and renamed into place, so a reader
//! never sees a partial document.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The content of a ready file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    /// Process id of the server.
    pub pid: u32,
    /// Bound addresses by listener name (`"client_api"`, `"marble_api"`, `"https"`, ...).
    pub addrs: BTreeMap<String, SocketAddr>,
}

impl Ready {
    /// A ready record for the current process.
    pub fn for_this_process(addrs: impl IntoIterator<Item = (String, SocketAddr)>) -> Self {
        Self {
            pid: std::process::id(),
            addrs: addrs.into_iter().collect(),
        }
    }

    /// Writes the record to `path` atomically (temporary file, fsync, rename).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp = Path::new(&tmp_name);
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        let mut file = std::fs::File::create(tmp)?;
        file.write_all(&json)?;
        file.sync_all()?;
        std::fs::rename(tmp, path)
    }

    /// Reads a ready file; `Ok(None)` while it does not exist yet.
    pub fn read(path: &Path) -> std::io::Result<Option<Self>> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The address of the listener `name`, if the server reported one.
    pub fn addr(&self, name: &str) -> Option<SocketAddr> {
        self.addrs.get(name).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ready.json");
        assert_eq!(Ready::read(&path).unwrap(), None);
        let ready =
            Ready::for_this_process([("https".to_owned(), "127.0.0.1:4433".parse().unwrap())]);
        ready.write(&path).unwrap();
        let back = Ready::read(&path).unwrap().unwrap();
        assert_eq!(back, ready);
        assert_eq!(back.addr("https"), Some("127.0.0.1:4433".parse().unwrap()));
        assert!(!dir.path().join("ready.json.tmp").exists());
    }
}
