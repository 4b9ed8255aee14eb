//! Conformance with the official Azure SDK for Python: `azure-identity` and
//! `azure-keyvault-keys` drive a running emulator through Secure Key Release, and
//! `cryptography` verifies and unwraps what it releases (`conformance/skr_conformance.py`).
//!
//! The virtual environment lives under the target directory and is reused between runs. If
//! Python, `venv` or pip is missing, the test fails with what to install: it never skips.

use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::Method;
use serde_json::{Value, json};

use crate::hsm_support::{Kek, Provisioned, decode_release, maa_token, seed_identity};

const REQUIREMENTS: [&str; 3] = [
    "azure-identity==1.27.0",
    "azure-keyvault-keys==4.11.3",
    "cryptography",
];

fn conformance_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance")
}

fn run(cmd: &mut Command, what: &str) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "{what}: cannot run {:?}: {e}; install Python 3 with venv and pip",
            cmd.get_program()
        )
    });
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The venv's Python with the pinned SDK installed, creating or completing the venv if needed.
fn python() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-conformance-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        run(
            Command::new("python3").arg("-m").arg("venv").arg(&venv),
            "creating the python venv",
        );
    }
    let check = "import importlib.metadata as m; \
                 assert m.version('azure-identity') == '1.27.0'; \
                 assert m.version('azure-keyvault-keys') == '4.11.3'; \
                 import cryptography";
    let installed = Command::new(&python)
        .args(["-c", check])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        run(
            Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "--quiet",
                ])
                .args(REQUIREMENTS),
            "installing the Azure SDK with pip",
        );
    }
    python
}

#[tokio::test]
async fn the_official_python_sdk_creates_reads_and_releases_a_key() {
    let python = python();
    let p = Provisioned::start();
    let key_name = "sdk-skr-key";
    let coordinator = p.coordinator();
    p.emu.hsm(&[
        "role-assign",
        "--assignee",
        &coordinator.0,
        "--role",
        "Managed HSM Crypto Service Release User",
        "--scope",
        &format!("/keys/{key_name}"),
    ]);

    let kek = Kek::generate();
    let maa = maa_token(&p.emu, &seed_identity(), &kek.runtime_data).await;
    let kek_file = p.emu.dir.path().join("kek.der");
    std::fs::write(&kek_file, &kek.pkcs8).unwrap();
    let config = json!({
        "url": p.emu.base,
        "tenant": p.emu.tenant,
        "ca_file": p.emu.state_dir().join("ca.pem"),
        "admin": [p.admin.0, p.admin.1],
        "coordinator": [coordinator.0, coordinator.1],
        "key_name": key_name,
        "policy_file": p.policy_file,
        "kek_file": kek_file,
        "maa_token": maa,
    });
    let config_file = p.emu.dir.path().join("conformance.json");
    std::fs::write(&config_file, config.to_string()).unwrap();

    let out = run(
        Command::new(&python)
            .arg(conformance_dir().join("skr_conformance.py"))
            .arg(&config_file)
            .env_remove("REQUESTS_CA_BUNDLE")
            .env_remove("AZURE_AUTHORITY_HOST"),
        "the Python SDK conformance script",
    );
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));

    assert_eq!(report["created_kty"], "oct-HSM", "{report}");
    assert_eq!(report["exportable"], true);
    assert_eq!(report["fetched_kid"], report["created_kid"]);
    let created_kid = report["created_kid"].as_str().unwrap();
    assert!(
        created_kid.starts_with(&format!("{}/keys/{key_name}/", p.emu.base)),
        "{created_kid}"
    );
    let seed: Value = serde_json::from_str(crate::hsm_support::SEED_POLICY).unwrap();
    assert_eq!(
        report["stored_policy"]["anyOf"], seed["anyOf"],
        "the policy reads back"
    );
    assert_eq!(report["stored_policy"]["version"], "1.0.0");
    assert_eq!(
        report["release_user_get"], 403,
        "the release user cannot read the key"
    );

    let releases = report["releases"].as_array().unwrap();
    let encs: Vec<&str> = releases
        .iter()
        .map(|r| r["enc"].as_str().unwrap())
        .collect();
    assert_eq!(
        encs,
        [
            "CKM_RSA_AES_KEY_WRAP",
            "RSA_AES_KEY_WRAP_256",
            "RSA_AES_KEY_WRAP_384"
        ]
    );
    assert_eq!(releases[1]["nonce"], "n1");
    assert_eq!(releases[0]["nonce"], Value::Null);
    let key_hex = releases[0]["key_hex"].as_str().unwrap();
    assert_eq!(key_hex.len(), 64, "a 256-bit key");
    for r in releases {
        assert_eq!(r["key_hex"], key_hex, "every release opens to the same key");
        assert_eq!(r["kty"], "oct");
        assert_eq!(r["kid"], created_kid);
        assert_eq!(r["request_kid"], format!("{}/keys/{key_name}", p.emu.base));
        assert_eq!(r["kek_kid"], "quarry-test-kek");
        assert!(
            r["dns_names"]
                .as_array()
                .unwrap()
                .contains(&json!("localhost")),
            "{r}"
        );
    }

    // The same key, released to this test and unwrapped by its own code.
    let token = p.token(&coordinator).await;
    let (status, body) = p
        .call(
            Method::POST,
            &format!("/keys/{key_name}/release?api-version=2025-07-01"),
            &token,
            Some(&json!({"target": maa, "enc": "RSA_AES_KEY_WRAP_256"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let released = decode_release(body["value"].as_str().unwrap());
    assert_eq!(
        hex::encode(kek.unwrap("RSA_AES_KEY_WRAP_256", &released.ciphertext)),
        key_hex
    );
}
