//! `quarry recover SECRET_FILE ADDR -k KEY`: upload one recovery secret.
//!
//! Everything with the operator's private key happens locally, before the Coordinator is
//! contacted: the secret (the binary ciphertext of `RecoverySecrets`, or its base64) is
//! decrypted with RSA-OAEP-SHA256 unless it is already plain (16, 32 or 33 bytes), and the
//! plain secret is signed with RSA PKCS#1 v1.5 SHA-256. Then the Coordinator is attested (its
//! identity only: in recovery mode it serves a temporary root certificate), its ephemeral
//! RSA key is fetched from `/api/v2/recover/public-key`, the plain secret is encrypted to it
//! (RSA-OAEP-SHA256) so it never crosses the wire in the clear, and both go to
//! `/api/v2/recover`.

use std::io::Write;
use std::path::{Path, PathBuf};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{
    OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    PrivateDecryptingKey, PublicEncryptingKey,
};
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use clap::Args;
use quarry_common::ExitCode;
use quarry_common::limits::{MAX_BODY_BYTES, MAX_RECOVERY_BODY_BYTES};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::shared::{report, run_async};
use crate::attest::{ConnectOptions, PinMode, attested_client, field};
use crate::client::Address;
use crate::failure::{Failure, Result, read_file};
use crate::output::{Out, OutputFormat};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// `recover`.
#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// The recovery secret: its RSA-OAEP ciphertext (binary or base64) from `RecoverySecrets`,
    /// or the plain secret.
    pub secret_file: PathBuf,
    /// The Coordinator's Client API (host:port).
    pub address: Address,
    /// The recovery private key (PEM, PKCS#8 or PKCS#1 RSA).
    #[arg(short = 'k', long, value_name = "FILE")]
    pub key: PathBuf,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub conn: ConnectOptions,
}

/// Runs `recover`.
pub fn run(
    args: RecoverArgs,
    format: OutputFormat,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> ExitCode {
    let result = {
        let mut o = Out { format, out, err };
        run_async(recover(&args, &mut o))
    };
    report(format, err, result)
}

/// The operator's recovery key: one RSA key for decrypting and for signing.
struct RecoveryKey {
    signing: RsaKeyPair,
    decrypting: PrivateDecryptingKey,
}

impl RecoveryKey {
    fn from_pem_file(path: &Path) -> Result<Self> {
        let text = Zeroizing::new(read_file(path, MAX_BODY_BYTES, "private key")?);
        let bad =
            |why: String| Failure::unreadable(format!("private key {}: {why}", path.display()));
        let block = pem::parse(&*text).map_err(|e| bad(format!("not PEM: {e}")))?;
        let der = Zeroizing::new(block.contents().to_vec());
        let signing = match block.tag() {
            "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der),
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der),
            other => {
                return Err(bad(format!(
                    "PEM block is {other:?}, expected an RSA private key"
                )));
            }
        }
        .map_err(|e| bad(format!("not an RSA private key of 2048 to 8192 bits ({e})")))?;
        let pkcs8 = signing
            .as_der()
            .map_err(|_| bad("cannot re-encode the key".into()))?;
        let decrypting = PrivateDecryptingKey::from_pkcs8(pkcs8.as_ref())
            .map_err(|e| bad(format!("not usable for RSA-OAEP ({e})")))?;
        Ok(Self {
            signing,
            decrypting,
        })
    }

    fn decrypt(&self, ciphertext: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let key = OaepPrivateDecryptingKey::new(self.decrypting.clone()).ok()?;
        let mut out = Zeroizing::new(vec![0u8; key.min_output_size()]);
        let len = key
            .decrypt(&OAEP_SHA256_MGF1SHA256, ciphertext, &mut out, None)
            .ok()?
            .len();
        out.truncate(len);
        Some(out)
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        let mut signature = vec![0u8; self.signing.public_modulus_len()];
        self.signing
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                message,
                &mut signature,
            )
            .map_err(|_| Failure::invalid("signing the recovery secret failed"))?;
        Ok(signature)
    }
}

/// Plain secret lengths: AES-128 (legacy), AES-256 DEK or XOR share, Shamir share.
fn is_plain(len: usize) -> bool {
    matches!(len, 16 | 32 | 33)
}

/// The plain recovery secret from the file's bytes.
fn plain_secret(args: &RecoverArgs, key: &RecoveryKey) -> Result<Zeroizing<Vec<u8>>> {
    let raw = Zeroizing::new(read_file(
        &args.secret_file,
        MAX_RECOVERY_BODY_BYTES,
        "recovery secret",
    )?);
    if is_plain(raw.len()) {
        return Ok(raw);
    }
    let modulus = key.signing.public_modulus_len();
    let decoded = std::str::from_utf8(&raw)
        .ok()
        .and_then(|t| B64.decode(t.trim()).ok())
        .filter(|d| d.len() == modulus || is_plain(d.len()));
    let ciphertext = Zeroizing::new(decoded.unwrap_or_else(|| raw.to_vec()));
    if is_plain(ciphertext.len()) {
        return Ok(ciphertext);
    }
    if ciphertext.len() != modulus {
        return Err(Failure::invalid(format!(
            "recovery secret {} has {} bytes: neither a plain secret (16, 32 or 33 bytes) nor a \
             ciphertext for the {}-bit key {}",
            args.secret_file.display(),
            ciphertext.len(),
            modulus * 8,
            args.key.display()
        )));
    }
    key.decrypt(&ciphertext).ok_or_else(|| {
        Failure::invalid(format!(
            "the private key {} does not decrypt the recovery secret {}: it is not the recovery \
             key the secret was encrypted to",
            args.key.display(),
            args.secret_file.display()
        ))
    })
}

async fn recover(args: &RecoverArgs, out: &mut Out<'_>) -> Result<()> {
    let key = RecoveryKey::from_pem_file(&args.key)?;
    let secret = plain_secret(args, &key)?;
    let signature = key.sign(&secret)?;

    let (client, _) =
        attested_client(&args.conn, &args.address, None, PinMode::IdentityOnly, out).await?;
    let data = client.get("/api/v2/recover/public-key").await?;
    let ephemeral = field(&data, "ephemeralPublicKey")
        .and_then(Value::as_str)
        .and_then(|s| B64.decode(s).ok())
        .ok_or_else(|| Failure::invalid("the coordinator's ephemeral key is not base64"))?;
    let encrypted = encrypt_to(&ephemeral, &secret)?;
    let body = json!({
        "recoverySecret": B64.encode(&encrypted),
        "recoverySecretSignature": B64.encode(&signature),
    });
    let bar = crate::output::spinner("uploading the recovery secret");
    let result = client.post("/api/v2/recover", Some(&body)).await;
    bar.finish_and_clear();
    let data = result?;
    let remaining = field(&data, "remaining")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let message = field(&data, "message")
        .and_then(Value::as_str)
        .unwrap_or("");
    out.result(
        message,
        json!({ "remaining": remaining, "message": message }),
    );
    Ok(())
}

fn encrypt_to(spki_der: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
    let bad = || Failure::invalid("the coordinator's ephemeral key is not an RSA public key");
    let key = PublicEncryptingKey::from_der(spki_der).map_err(|_| bad())?;
    let key = OaepPublicEncryptingKey::new(key).map_err(|_| bad())?;
    let mut out = vec![0u8; key.ciphertext_size()];
    let len = key
        .encrypt(&OAEP_SHA256_MGF1SHA256, plaintext, &mut out, None)
        .map_err(|_| bad())?
        .len();
    out.truncate(len);
    Ok(out)
}
