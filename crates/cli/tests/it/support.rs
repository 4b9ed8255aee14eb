//! Helpers shared by the CLI's integration tests: the binary with a clean environment whose
//! configuration directory is a temporary one, RSA keys, and files.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeySize, PrivateDecryptingKey};

/// `quarry` with an empty environment, its configuration under `dir`.
pub(crate) fn quarry_in(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("quarry").unwrap();
    cmd.env_clear();
    cmd.env("XDG_CONFIG_HOME", dir.join("config"));
    cmd.current_dir(dir);
    cmd
}

/// Writes `contents` to `dir/name`.
pub(crate) fn file(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// A fresh RSA-2048 key: (PKCS#8 PEM private key path, PKIX PEM public key).
pub(crate) fn rsa_key(dir: &Path, name: &str) -> (PathBuf, String, PrivateDecryptingKey) {
    let key = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
    let pkcs8 = key.as_der().unwrap();
    let private = pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref().to_vec()));
    let public_der = key.public_key().as_der().unwrap();
    let public = pem::encode(&pem::Pem::new("PUBLIC KEY", public_der.as_ref().to_vec()));
    (file(dir, &format!("{name}.pem"), private), public, key)
}

/// A loopback port with nothing listening on it.
pub(crate) fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The testdata directory of the repository.
pub(crate) fn testdata(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(path)
}
