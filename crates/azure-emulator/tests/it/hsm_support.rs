//! Shared setup of the Managed HSM tests: a provisioned emulator, access tokens, simulated
//! enclaves with a wrapping key, MAA tokens, and an unwrap of release responses written for the
//! tests (independent of the emulator's wrapping code and of Quarry's SKR client).

use std::path::PathBuf;

use aws_lc_rs::digest;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::key_wrap::{AES_256, AesKek, KeyWrapPadded};
use aws_lc_rs::rsa::{
    KeyPair, KeySize, OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OAEP_SHA384_MGF1SHA384,
    OaepPrivateDecryptingKey, PrivateDecryptingKey,
};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use quarry_common::EnvFile;
use quarry_enclave::simulation::{Simulation, SimulationSettings};
use quarry_enclave::{Enclave, Identity};
use serde_json::{Value, json};

use crate::common::{Emu, b64url, jwt_parts};

/// The guide's `policy.json`, byte for byte.
pub(crate) const SEED_POLICY: &str = r#"{
    "version": "1.0.0",
    "anyOf": [
        {
            "authority": "https://shareduks.uks.attest.azure.net",
            "allOf": [
                {
                    "claim": "x-ms-sgx-mrsigner",
                    "equals": "43361affedeb75affee9baec7e054a5e14883213e5a121b67d74a0e12e9d2b7a"
                },
                {
                    "claim": "x-ms-sgx-svn",
                    "greaterOrEquals": 2
                },
                {
                    "claim": "x-ms-sgx-product-id",
                    "greaterOrEquals": 3
                },
                {
                    "claim": "x-ms-sgx-is-debuggable",
                    "equals": false
                }
            ]
        }
    ]
}"#;

/// The MRSIGNER the seed policy names.
pub(crate) const SEED_MRSIGNER: &str =
    "43361affedeb75affee9baec7e054a5e14883213e5a121b67d74a0e12e9d2b7a";

/// The Managed HSM's resource, the scope of its access tokens.
pub(crate) const HSM_SCOPE: &str = "https://managedhsm.azure.net/.default";

/// The identity the seed policy releases to.
pub(crate) fn seed_identity() -> Identity {
    let mut mrsigner = [0u8; 32];
    mrsigner.copy_from_slice(&hex::decode(SEED_MRSIGNER).unwrap());
    Identity {
        mrenclave: [0x11; 32],
        mrsigner,
        isv_prod_id: 3,
        isv_svn: 2,
        debug: false,
    }
}

/// An emulator provisioned like the guide (`hsm provision`), plus a second service principal
/// with "Managed HSM Crypto User" at `/` for key management over HTTP.
pub(crate) struct Provisioned {
    pub(crate) emu: Emu,
    pub(crate) env: EnvFile,
    pub(crate) admin: (String, String),
    pub(crate) policy_file: PathBuf,
}

impl Provisioned {
    pub(crate) fn start() -> Self {
        let emu = Emu::start(&[]);
        let policy_file = emu.dir.path().join("policy.json");
        std::fs::write(&policy_file, SEED_POLICY).unwrap();
        let env_file = emu.dir.path().join("coordinator.env");
        let out = emu.hsm(&[
            "provision",
            "--policy",
            policy_file.to_str().unwrap(),
            "--env-file",
            env_file.to_str().unwrap(),
        ]);
        assert_eq!(out["maaIssuer"], "https://shareduks.uks.attest.azure.net");
        let env = EnvFile::parse_isolated(&std::fs::read_to_string(&env_file).unwrap()).unwrap();

        let (app, password, oid) = emu.create_sp("hsm-admin");
        emu.hsm(&[
            "role-assign",
            "--assignee",
            &oid,
            "--role",
            "Managed HSM Crypto User",
            "--scope",
            "/",
        ]);
        Self {
            emu,
            env,
            admin: (app, password),
            policy_file,
        }
    }

    /// The Coordinator's credentials from the env file.
    pub(crate) fn coordinator(&self) -> (String, String) {
        (
            self.env.get("EDG_AZURE_CLIENT_ID").unwrap().to_owned(),
            self.env.get("EDG_AZURE_CLIENT_SECRET").unwrap().to_owned(),
        )
    }

    pub(crate) fn key_name(&self) -> &str {
        self.env.get("EDG_AZURE_HSM_KEY_NAME").unwrap()
    }

    /// An access token for the Managed HSM.
    pub(crate) async fn token(&self, (app, secret): &(String, String)) -> String {
        let (status, body) = self
            .emu
            .token_request(&[
                ("client_id", app),
                ("client_secret", secret),
                ("grant_type", "client_credentials"),
                ("scope", HSM_SCOPE),
            ])
            .await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// Sends a request to the HSM with `token` (none if empty); returns status and JSON body
    /// (`null` for an empty body).
    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let (status, _, body) = self
            .call_raw(method, path, token, body.map(Value::to_string))
            .await;
        (status, body)
    }

    pub(crate) async fn call_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<String>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut request = self.emu.client.request(method, self.emu.url(path));
        if !token.is_empty() {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, headers, body)
    }
}

impl Emu {
    /// Runs `hsm --emulator-url BASE ARGS...`.
    pub(crate) fn hsm(&self, args: &[&str]) -> Value {
        let mut all = vec!["hsm", "--emulator-url", &self.base];
        all.extend_from_slice(args);
        self.cli(&all)
    }
}

/// An enclave's RSA wrapping key and its JWK set (the runtime data).
pub(crate) struct Kek {
    pub(crate) private: PrivateDecryptingKey,
    pub(crate) pkcs8: Vec<u8>,
    pub(crate) runtime_data: Vec<u8>,
}

impl Kek {
    pub(crate) fn generate() -> Self {
        let pair = KeyPair::generate(KeySize::Rsa2048).unwrap();
        Self::from_pkcs8(pair.as_der().unwrap().as_ref())
    }

    /// A wrapping key from a PKCS#8 RSA private key.
    pub(crate) fn from_pkcs8(pkcs8: &[u8]) -> Self {
        let pair = KeyPair::from_pkcs8(pkcs8).unwrap();
        let public = pair.public_key();
        let jwks = json!({"keys": [{
            "kid": "quarry-test-kek",
            "kty": "RSA",
            "key_ops": ["encrypt"],
            "e": b64url(public.exponent().big_endian_without_leading_zero()),
            "n": b64url(public.modulus().big_endian_without_leading_zero()),
        }]});
        Self {
            private: PrivateDecryptingKey::from_pkcs8(pkcs8).unwrap(),
            pkcs8: pkcs8.to_vec(),
            runtime_data: jwks.to_string().into_bytes(),
        }
    }

    /// Undoes a release's wrapping: RSA-OAEP with the hash `enc` names, then AES-KWP.
    pub(crate) fn unwrap(&self, enc: &str, ciphertext: &[u8]) -> Vec<u8> {
        let oaep = match enc {
            "CKM_RSA_AES_KEY_WRAP" => &OAEP_SHA1_MGF1SHA1,
            "RSA_AES_KEY_WRAP_256" => &OAEP_SHA256_MGF1SHA256,
            "RSA_AES_KEY_WRAP_384" => &OAEP_SHA384_MGF1SHA384,
            other => panic!("unknown enc {other}"),
        };
        let k = self.private.key_size_bytes();
        let decrypting = OaepPrivateDecryptingKey::new(self.private.clone()).unwrap();
        let mut aes = vec![0u8; k];
        let aes = decrypting
            .decrypt(oaep, &ciphertext[..k], &mut aes, None)
            .unwrap()
            .to_vec();
        let mut out = vec![0u8; ciphertext.len()];
        AesKek::new(&AES_256, &aes)
            .unwrap()
            .unwrap_with_padding(&ciphertext[k..], &mut out)
            .unwrap()
            .to_vec()
    }
}

/// A simulated quote for `identity` binding `runtime_data`, attested by the emulator's MAA with
/// JSON runtime data; returns the token.
pub(crate) async fn maa_token(emu: &Emu, identity: &Identity, runtime_data: &[u8]) -> String {
    let seal = tempfile::tempdir().unwrap();
    let mut settings = SimulationSettings::new(seal.path());
    settings.identity = identity.clone();
    let enclave = Simulation::new(settings).unwrap();
    let mut report_data = [0u8; 64];
    report_data[..32].copy_from_slice(digest::digest(&digest::SHA256, runtime_data).as_ref());
    let quote = enclave.quote(&report_data).unwrap();
    let (status, body) = emu
        .attest(&json!({
            "quote": b64url(&quote),
            "runtimeData": {"data": b64url(runtime_data), "dataType": "JSON"},
        }))
        .await;
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

/// A decoded release response.
pub(crate) struct Released {
    pub(crate) header: serde_json::Map<String, Value>,
    pub(crate) payload: serde_json::Map<String, Value>,
    pub(crate) key_hsm: Value,
    pub(crate) ciphertext: Vec<u8>,
}

/// Splits a release JWS and decodes `key_hsm` (signature checked separately).
pub(crate) fn decode_release(jws: &str) -> Released {
    let (header, payload) = jwt_parts(jws);
    let key_hsm = payload["response"]["key"]["key"]["key_hsm"]
        .as_str()
        .unwrap();
    let key_hsm: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(key_hsm).unwrap()).unwrap();
    let ciphertext = URL_SAFE_NO_PAD
        .decode(key_hsm["ciphertext"].as_str().unwrap())
        .unwrap();
    Released {
        header,
        payload,
        key_hsm,
        ciphertext,
    }
}

/// The DER certificates of a JWS header's `x5c`.
pub(crate) fn x5c(header: &serde_json::Map<String, Value>) -> Vec<Vec<u8>> {
    header["x5c"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| STANDARD.decode(c.as_str().unwrap()).unwrap())
        .collect()
}

/// Checks a release JWS like a careful client: signature with `x5c[0]`, chain `x5c[0]` ←
/// `x5c[1]` ← the emulator's root (`ca.pem`), leaf valid for `host`, and the header's `kid`.
pub(crate) fn verify_release(jws: &str, ca_pem: &[u8], host: &str) {
    let released = decode_release(jws);
    let chain = x5c(&released.header);
    assert_eq!(chain.len(), 3);
    let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
    let (_, issuing) = x509_parser::parse_x509_certificate(&chain[1]).unwrap();
    let root_der = pem::parse(ca_pem).unwrap().into_contents();
    assert_eq!(chain[2], root_der, "x5c ends with the emulator's root");
    let (_, root) = x509_parser::parse_x509_certificate(&root_der).unwrap();
    leaf.verify_signature(Some(issuing.public_key())).unwrap();
    issuing.verify_signature(Some(root.public_key())).unwrap();
    let names: Vec<String> = leaf
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|n| format!("{n}"))
        .collect();
    assert!(
        names.iter().any(|n| n.contains(host)),
        "{names:?} lacks {host}"
    );

    let thumb = b64url(digest::digest(&digest::SHA256, &chain[0]).as_ref());
    assert_eq!(released.header["kid"], thumb.as_str());
    assert_eq!(released.header["x5t#S256"], thumb.as_str());
    let (signing_input, signature) = jws.rsplit_once('.').unwrap();
    let spki = leaf.public_key().subject_public_key.data.to_vec();
    aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
        spki,
    )
    .verify(
        signing_input.as_bytes(),
        &URL_SAFE_NO_PAD.decode(signature).unwrap(),
    )
    .expect("the release signature verifies with x5c[0]");
}
