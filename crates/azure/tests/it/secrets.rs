//! Secrets stay secret: `Debug` output prints type names only, and a whole release logged at
//! `trace` level (including the HTTP stack's own logs) contains no secret, token or key.

use std::io::Write;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use quarry_azure::{AccessToken, ClientSecret, MaaToken, SkrClient, SkrConfig};

use crate::support::{Mock, SECRET, TestEnclave};

#[test]
fn debug_output_names_types_only() {
    assert_eq!(
        format!("{:?}", ClientSecret::new(SECRET.into())),
        "ClientSecret(..)"
    );
    assert_eq!(
        format!("{:?}", AccessToken::new("eyJhbGciOi.secret".into())),
        "AccessToken(..)"
    );
    assert_eq!(
        format!("{:?}", MaaToken::new("eyJhbGciOi.secret.x".into())),
        "MaaToken(..)"
    );

    let vars = [
        ("EDG_AZURE_CLIENT_ID", "app"),
        ("EDG_AZURE_CLIENT_SECRET", SECRET),
        ("EDG_AZURE_TENANT_ID", "tenant"),
        ("EDG_AZURE_HSM_KEY_NAME", "k"),
        ("EDG_AZURE_HSM_VAULT_URL", "https://h.managedhsm.azure.net/"),
        ("EDG_MAA_URL", "https://m.attest.azure.net"),
    ];
    let config = SkrConfig::from_lookup(|k| {
        vars.iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.to_string())
    })
    .unwrap();
    assert!(!format!("{config:?}").contains(SECRET));
}

#[test]
fn configuration_reads_an_env_file() {
    let file = quarry_common::EnvFile::parse_isolated(
        "export EDG_AZURE_CLIENT_ID=app\n\
         export EDG_AZURE_CLIENT_SECRET='s e c'\n\
         export EDG_AZURE_TENANT_ID=tenant\n\
         export EDG_AZURE_HSM_KEY_NAME=\"marblerun-skr-key\"\n\
         export EDG_AZURE_HSM_KEY_VERSION=\"\" # optional\n\
         export EDG_AZURE_HSM_VAULT_URL=https://localhost:8443/\n\
         export EDG_MAA_URL=https://localhost:8443\n\
         export EDG_AZURE_AUTHORITY_HOST=https://localhost:8443/\n\
         export QUARRY_AZURE_CA_FILE=/etc/quarry/emulator-ca.pem\n",
    )
    .unwrap();
    let config = SkrConfig::from_lookup(|k| file.get(k).map(str::to_owned)).unwrap();
    assert_eq!(config.vault_host(), "localhost");
    assert_eq!(config.scope(), "https://managedhsm.azure.net/.default");
    assert_eq!(config.key_version, None);
    assert_eq!(config.authority_host.as_str(), "https://localhost:8443/");
    assert!(config.ca_file.is_some());
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every event of this test binary, at every level, in one buffer. A process-wide subscriber is
/// used because a thread-local one misses events whose callsites another test thread registered
/// first (tracing caches a callsite's interest globally).
fn capture() -> &'static Captured {
    static CAPTURE: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    CAPTURE.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in this test binary");
        captured
    })
}

#[tokio::test]
async fn a_release_logged_at_trace_level_leaks_nothing() {
    let captured = capture();

    let mock = Mock::start().await;
    mock.state
        .challenge_times
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let client =
        SkrClient::with_options(mock.config(), TestEnclave::new(), mock.options()).unwrap();
    let key = client.release(None).await.unwrap();
    tracing::debug!(?key, ?client, "released");

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("requesting key release"),
        "the capture works: {log}"
    );
    let target = mock.state.release_bodies.lock().unwrap()[0]["target"]
        .as_str()
        .unwrap()
        .to_owned();
    let tokens = mock.state.valid_tokens.lock().unwrap().clone();
    let forbidden = [
        SECRET.to_owned(),
        "access-token-".to_owned(),
        target,
        hex(key.key()),
        STANDARD.encode(key.key()),
        URL_SAFE_NO_PAD.encode(key.key()),
    ];
    for needle in forbidden.iter().chain(tokens.iter()) {
        assert!(!log.contains(needle.as_str()), "log contains {needle:?}");
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
