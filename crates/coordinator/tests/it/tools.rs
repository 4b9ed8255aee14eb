//! The operator's tools, run as processes: `curl` for the Client API and `openssl` for keys,
//! decryption, signatures and verification. Tests drive the Coordinator only through them.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

/// Runs a command and returns its stdout; panics with stderr on failure.
pub(crate) fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `openssl` with `args`.
pub(crate) fn openssl(args: &[&str]) -> Vec<u8> {
    run(Command::new("openssl").args(args))
}

/// How curl authenticates the Coordinator.
#[derive(Debug, Clone)]
pub(crate) enum Trust {
    /// `-k`: before the root certificate is known (in real life: after verifying the quote).
    Insecure,
    /// `--cacert FILE`.
    Root(PathBuf),
}

/// An answer of the Client API.
#[derive(Debug)]
pub(crate) struct Answer {
    /// HTTP status.
    pub(crate) status: u16,
    /// The JSON body.
    pub(crate) body: Value,
    /// `Content-Type`.
    pub(crate) content_type: String,
    /// HTTP version curl used (`1.1`, `2`).
    pub(crate) http_version: String,
}

impl Answer {
    /// `data` of a success answer; panics otherwise.
    pub(crate) fn data(&self) -> &Value {
        assert_eq!(self.status, 200, "{:?}", self.body);
        assert_eq!(self.body["status"], "success", "{:?}", self.body);
        &self.body["data"]
    }

    /// `message` of a fail or error answer.
    pub(crate) fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or_default()
    }
}

/// `curl` against `url` with `method`, an optional body file, and extra args.
pub(crate) fn curl(
    trust: &Trust,
    method: &str,
    url: &str,
    body: Option<&Path>,
    extra: &[&str],
) -> Answer {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "-X",
        method,
        "-w",
        "\n%{http_code} %{http_version} %{content_type}",
    ]);
    match trust {
        Trust::Insecure => cmd.arg("-k"),
        Trust::Root(file) => cmd.arg("--cacert").arg(file),
    };
    if let Some(body) = body {
        cmd.arg("--data-binary").arg(format!("@{}", body.display()));
        cmd.args(["-H", "Content-Type: application/json"]);
    }
    cmd.args(extra).arg(url);
    let out = String::from_utf8(run(&mut cmd)).unwrap();
    let (text, meta) = out.rsplit_once('\n').unwrap();
    let mut meta = meta.splitn(3, ' ');
    let status = meta.next().unwrap().parse().unwrap();
    let http_version = meta.next().unwrap().to_owned();
    let content_type = meta.next().unwrap_or_default().to_owned();
    let body = serde_json::from_str(text).unwrap_or(Value::String(text.to_owned()));
    Answer {
        status,
        body,
        content_type,
        http_version,
    }
}

/// A file in `dir` with `content`.
pub(crate) fn file(dir: &Path, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

/// Standard base64.
pub(crate) fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes standard base64.
pub(crate) fn unb64(value: &Value) -> Vec<u8> {
    STANDARD
        .decode(value.as_str().expect("a base64 string"))
        .unwrap()
}

/// An RSA key pair made with openssl: (private key file, public PEM).
pub(crate) fn rsa_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(format!("{name}.pem"));
    openssl(&["genrsa", "-out", key.to_str().unwrap(), "2048"]);
    let public = openssl(&["rsa", "-in", key.to_str().unwrap(), "-pubout"]);
    (key, String::from_utf8(public).unwrap())
}

/// The sealed files of a seal directory with their bytes, for byte-identical comparisons.
pub(crate) fn sealed_files(seal_dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(seal_dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap())
                .filter(|e| e.file_name().to_string_lossy().starts_with("sealed_"))
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read(e.path()).unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// A manifest with one Marble, a shared and a unique secret, and `keys` as recovery keys.
pub(crate) fn manifest(keys: &[(&str, &str)], threshold: u64) -> Vec<u8> {
    let recovery: serde_json::Map<String, Value> = keys
        .iter()
        .map(|(name, pem)| ((*name).to_owned(), Value::String((*pem).to_owned())))
        .collect();
    let manifest = serde_json::json!({
        "Packages": {"backend": {"SignerID": "1111111111111111111111111111111111111111111111111111111111111111", "ProductID": 3, "SecurityVersion": 1}},
        "Marbles": {"web": {
            "Package": "backend",
            "Parameters": {
                "Env": {"KEY": "{{ hex .Secrets.shared_key }}"},
                "Files": {"/cert.pem": "{{ pem .Secrets.web_cert.Cert }}"}
            }
        }},
        "Secrets": {
            "shared_key": {"Type": "symmetric-key", "Size": 256, "Shared": true},
            "unique_key": {"Type": "symmetric-key", "Size": 128},
            "web_cert": {"Type": "cert-ecdsa", "Size": 256, "Shared": true, "Cert": {"DNSNames": ["web"]}}
        },
        "RecoveryKeys": recovery,
        "Config": {"RecoveryThreshold": threshold}
    });
    serde_json::to_vec(&manifest).unwrap()
}
