//! Starting the emulator and talking to it.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use quarry_testkit::process::{Service, binary};
use serde_json::Value;

/// A running emulator with its state directory and a client that trusts its CA.
pub(crate) struct Emu {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) service: Service,
    pub(crate) client: reqwest::Client,
    pub(crate) base: String,
    pub(crate) tenant: String,
}

impl Emu {
    /// Starts `serve` on a fresh state directory.
    pub(crate) fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, extra)
    }

    /// Starts `serve` on an existing state directory.
    pub(crate) fn start_in(dir: tempfile::TempDir, extra: &[&str]) -> Self {
        let state = dir.path().join("state");
        let state = state.to_str().unwrap();
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--state-dir", state];
        args.extend_from_slice(extra);
        let service = Service::start("quarry-azure-emulator", &args, &[], dir.path()).unwrap();
        let port = service.addr("https").port();
        let ca = std::fs::read(dir.path().join("state/ca.pem")).unwrap();
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
            .build()
            .unwrap();
        let mut emu = Self {
            dir,
            service,
            client,
            base: format!("https://localhost:{port}"),
            tenant: String::new(),
        };
        emu.tenant = emu.cli(&["tenant"])["tenantId"]
            .as_str()
            .unwrap()
            .to_owned();
        emu
    }

    pub(crate) fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Runs an operator subcommand on the state directory and parses its JSON output.
    pub(crate) fn cli(&self, args: &[&str]) -> Value {
        let out = self.cli_raw(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub(crate) fn cli_raw(&self, args: &[&str]) -> std::process::Output {
        run_cli(&self.state_dir(), args)
    }

    /// Stops the server and returns its state directory.
    pub(crate) fn stop(mut self) -> tempfile::TempDir {
        self.service.kill();
        self.dir
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Creates a service principal; returns (appId, password, objectId).
    pub(crate) fn create_sp(&self, name: &str) -> (String, String, String) {
        let sp = self.cli(&["sp", "create", "--name", name]);
        let app = sp["appId"].as_str().unwrap().to_owned();
        let list = self.cli(&["sp", "list", "--display-name", name]);
        let oid = list[0]["id"].as_str().unwrap().to_owned();
        (app, sp["password"].as_str().unwrap().to_owned(), oid)
    }

    /// POSTs a form to the token endpoint.
    pub(crate) async fn token_request(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let r = self
            .client
            .post(self.url(&format!("/{}/oauth2/v2.0/token", self.tenant)))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(form))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    /// POSTs a JSON body to attest/SgxEnclave.
    pub(crate) async fn attest(&self, body: &Value) -> (u16, Value) {
        self.attest_raw("?api-version=2022-08-01", body.to_string())
            .await
    }

    pub(crate) async fn attest_raw(&self, query: &str, body: String) -> (u16, Value) {
        let r = self
            .client
            .post(self.url(&format!("/attest/SgxEnclave{query}")))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    pub(crate) async fn get_json(&self, path: &str) -> Value {
        let r = self.client.get(self.url(path)).send().await.unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap()
    }
}

pub(crate) fn run_cli(state_dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(binary("quarry-azure-emulator").unwrap())
        .arg("--state-dir")
        .arg(state_dir)
        .args(args)
        .output()
        .unwrap()
}

pub(crate) fn testdata(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(path)
}

pub(crate) fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Header and claims of a compact JWT, signature unchecked.
pub(crate) fn jwt_parts(
    token: &str,
) -> (
    serde_json::Map<String, Value>,
    serde_json::Map<String, Value>,
) {
    let mut parts = token.split('.');
    let mut next = || {
        let bytes = URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap();
        match serde_json::from_slice(&bytes).unwrap() {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    };
    let header = next();
    let claims = next();
    (header, claims)
}

/// An `application/x-www-form-urlencoded` body.
pub(crate) fn form_body(form: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(form).unwrap()
}

/// Borrows owned form pairs.
pub(crate) fn pairs(form: &[(String, String)]) -> Vec<(&str, &str)> {
    form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}
