//! Token-signing identities: an RSA-2048 key and a self-signed certificate for it, kept in the
//! state directory so that tokens issued before a restart still verify after it.
//!
//! Entra ID, MAA and the built-in federated issuer each have one. Their published key ids are
//! derived from the certificate the way each real service derives them (see
//! [`TokenSigner::sha1_thumbprint`] and [`TokenSigner::sha256_thumbprint`]).

use std::fmt;

use aws_lc_rs::digest;
use zeroize::Zeroizing;

use crate::ca::{CaError, self_signed_for_key};
use crate::jose::{RsaSigningKey, b64std, b64url};
use crate::persist::StateDir;

/// A signing key with its self-signed certificate. `Debug` hides the key.
pub struct TokenSigner {
    key: RsaSigningKey,
    cert_der: Vec<u8>,
}

impl fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSigner")
            .field("x5t", &self.sha1_thumbprint())
            .finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// Loads `key_file` and `cert_file` from the state directory, or creates them with a
    /// certificate for `CN=common_name`. The caller holds the state lock.
    pub fn load_or_create(
        state: &StateDir,
        key_file: &'static str,
        cert_file: &'static str,
        common_name: &str,
    ) -> Result<Self, CaError> {
        if let (Some(key_pem), Some(cert_pem)) =
            (state.read_secret(key_file)?, state.read_secret(cert_file)?)
        {
            let bad = |file: &'static str| move |detail: String| CaError::BadFile { file, detail };
            let key = pem::parse(&**key_pem).map_err(|e| bad(key_file)(e.to_string()))?;
            let key_der = Zeroizing::new(key.into_contents());
            let key =
                RsaSigningKey::from_pkcs8(&key_der).map_err(|e| bad(key_file)(e.to_string()))?;
            let cert = pem::parse(&**cert_pem).map_err(|e| bad(cert_file)(e.to_string()))?;
            return Ok(Self {
                key,
                cert_der: cert.into_contents(),
            });
        }

        let key = RsaSigningKey::generate().map_err(|e| CaError::Generate(e.to_string()))?;
        let cert_der = self_signed_for_key(common_name, &key)?;
        let key_pem = Zeroizing::new(pem::encode(&pem::Pem::new("PRIVATE KEY", key.pkcs8())));
        state.write_secret(key_file, key_pem.as_bytes())?;
        let cert_pem = pem::encode(&pem::Pem::new("CERTIFICATE", cert_der.clone()));
        state.write_public(cert_file, cert_pem.as_bytes())?;
        Ok(Self { key, cert_der })
    }

    /// The private key.
    pub fn key(&self) -> &RsaSigningKey {
        &self.key
    }

    /// The certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// Base64url of the SHA-1 of the certificate: Entra ID's `kid` and `x5t`.
    pub fn sha1_thumbprint(&self) -> String {
        b64url(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &self.cert_der).as_ref())
    }

    /// Standard base64 (with padding) of the SHA-256 of the certificate: the 44-character form
    /// of MAA's `kid`.
    pub fn sha256_thumbprint(&self) -> String {
        b64std(digest::digest(&digest::SHA256, &self.cert_der).as_ref())
    }
}
