//! Test support: a private CA made with rcgen, release responses built and signed by the tests
//! themselves (independent of the emulator), a test enclave, and a small HTTPS mock of Entra ID,
//! MAA and Managed HSM on 127.0.0.1.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use aws_lc_rs::key_wrap::{AES_256, AesKek, KeyWrapPadded};
use aws_lc_rs::rsa::{
    OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OAEP_SHA384_MGF1SHA384, OaepPublicEncryptingKey,
    PublicEncryptingKey,
};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use axum::Router;
use axum::extract::Query;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use quarry_azure::{
    ClientOptions, ClientSecret, CredentialConfig, Pipeline, RetryPolicy, SkrConfig, TrustStore,
    WrapAlgorithm, WrappingKeySize,
};
use quarry_enclave::{Enclave, EnclaveError, Identity, SealKey, SealPolicy};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256, RsaKeySize,
};
use reqwest::Url;
use serde_json::{Value, json};

pub(crate) const KEY_NAME: &str = "quarry-key";
pub(crate) const VERSION_1: &str = "0f5e6d2c9a8b47c1b2d3e4f5a6b7c8d9";
pub(crate) const VERSION_2: &str = "1a2b3c4d5e6f40718293a4b5c6d7e8f9";
pub(crate) const TENANT: &str = "00000000-0000-0000-0000-000000000001";
pub(crate) const CLIENT_ID: &str = "quarry-test-app";
pub(crate) const SECRET: &str = "test-client-secret-value";

/// Which key signs a test JWS.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeafAlg {
    Rs256,
    Es256,
}

/// A root CA, an intermediate, and leaves for host names.
pub(crate) struct TestCa {
    pub(crate) root_der: Vec<u8>,
    pub(crate) root_pem: String,
    intermediate_der: Vec<u8>,
    intermediate: Issuer<'static, KeyPair>,
}

/// A leaf certificate with its chain and key.
pub(crate) struct Leaf {
    pub(crate) chain: Vec<Vec<u8>>,
    pub pkcs8: Vec<u8>,
    pub(crate) alg: LeafAlg,
}

impl TestCa {
    pub(crate) fn new(name: &str) -> Self {
        let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut root_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        root_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root_params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} root"));
        root_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let root = root_params.self_signed(&root_key).unwrap();
        let root_issuer = Issuer::new(root_params, root_key);

        let int_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut int_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        int_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        int_params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} issuing"));
        int_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let intermediate = int_params.signed_by(&int_key, &root_issuer).unwrap();

        Self {
            root_der: root.der().to_vec(),
            root_pem: root.pem(),
            intermediate_der: intermediate.der().to_vec(),
            intermediate: Issuer::new(int_params, int_key),
        }
    }

    pub(crate) fn leaf(&self, hosts: &[&str], alg: LeafAlg) -> Leaf {
        let key = match alg {
            LeafAlg::Rs256 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048),
            LeafAlg::Es256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256),
        }
        .unwrap();
        let mut params =
            CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, hosts[0]);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params.signed_by(&key, &self.intermediate).unwrap();
        Leaf {
            chain: vec![
                cert.der().to_vec(),
                self.intermediate_der.clone(),
                self.root_der.clone(),
            ],
            pkcs8: key.serialize_der(),
            alg,
        }
    }

    pub(crate) fn trust(&self) -> TrustStore {
        let mut trust = TrustStore::empty();
        trust.add_der(&self.root_der).unwrap();
        trust
    }
}

impl Leaf {
    pub(crate) fn sign(&self, message: &[u8]) -> Vec<u8> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        match self.alg {
            LeafAlg::Rs256 => {
                let key = RsaKeyPair::from_pkcs8(&self.pkcs8).unwrap();
                let mut sig = vec![0u8; key.public_modulus_len()];
                key.sign(&RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .unwrap();
                sig
            }
            LeafAlg::Es256 => {
                let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &self.pkcs8)
                    .unwrap();
                key.sign(&rng, message).unwrap().as_ref().to_vec()
            }
        }
    }

    pub(crate) fn jws_alg(&self) -> &'static str {
        match self.alg {
            LeafAlg::Rs256 => "RS256",
            LeafAlg::Es256 => "ES256",
        }
    }
}

/// DER of an RSA SubjectPublicKeyInfo from JWK `n` and `e` (base64url).
pub(crate) fn spki_from_jwk(n: &str, e: &str) -> Vec<u8> {
    fn len(out: &mut Vec<u8>, n: usize) {
        if n < 0x80 {
            out.push(n as u8);
        } else if n < 0x100 {
            out.extend_from_slice(&[0x81, n as u8]);
        } else {
            out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]);
        }
    }
    fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        len(&mut out, body.len());
        out.extend_from_slice(body);
        out
    }
    fn int(bytes: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        if bytes[0] & 0x80 != 0 {
            body.push(0);
        }
        body.extend_from_slice(bytes);
        tlv(0x02, &body)
    }
    let n = URL_SAFE_NO_PAD.decode(n).unwrap();
    let e = URL_SAFE_NO_PAD.decode(e).unwrap();
    let rsa_key = tlv(0x30, &[int(&n), int(&e)].concat());
    let algorithm = tlv(
        0x30,
        &[
            tlv(
                0x06,
                &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01],
            ),
            vec![0x05, 0x00],
        ]
        .concat(),
    );
    let bits = tlv(0x03, &[&[0u8][..], &rsa_key].concat());
    tlv(0x30, &[algorithm, bits].concat())
}

/// `RSA-OAEP(K) || AES-KWP(K, secret)` for the wrapping key `(n, e)`.
pub(crate) fn wrap_for(n: &str, e: &str, enc: WrapAlgorithm, secret: &[u8]) -> Vec<u8> {
    let public = PublicEncryptingKey::from_der(&spki_from_jwk(n, e)).unwrap();
    let public = OaepPublicEncryptingKey::new(public).unwrap();
    let mut transport = [0u8; 32];
    aws_lc_rs::rand::fill(&mut transport).unwrap();
    let oaep = match enc {
        WrapAlgorithm::CkmRsaAesKeyWrap => &OAEP_SHA1_MGF1SHA1,
        WrapAlgorithm::RsaAesKeyWrap256 => &OAEP_SHA256_MGF1SHA256,
        WrapAlgorithm::RsaAesKeyWrap384 => &OAEP_SHA384_MGF1SHA384,
    };
    let mut rsa = vec![0u8; public.ciphertext_size()];
    let rsa = public
        .encrypt(oaep, &transport, &mut rsa, None)
        .unwrap()
        .to_vec();
    let kek = AesKek::new(&AES_256, &transport).unwrap();
    let mut wrapped = vec![0u8; secret.len() + 16];
    let wrapped = kek
        .wrap_with_padding(secret, &mut wrapped)
        .unwrap()
        .to_vec();
    [rsa, wrapped].concat()
}

/// Everything a release response says, so tests can tamper with any one field.
#[derive(Clone)]
pub(crate) struct ReleaseResponse {
    pub(crate) alg: String,
    pub x5c: Vec<Vec<u8>>,
    pub(crate) kid: String,
    pub(crate) kty: String,
    pub(crate) request_enc: Option<String>,
    pub(crate) header_enc: Option<String>,
    pub(crate) nonce: Option<String>,
    pub(crate) wrapping_kid: String,
    pub(crate) ciphertext: Vec<u8>,
}

impl ReleaseResponse {
    /// A correct response for `host` releasing `secret` to the wrapping key `(n, e, kid)`.
    pub(crate) fn new(
        leaf: &Leaf,
        host_port: &str,
        version: &str,
        nonce: Option<&str>,
        (n, e, wrapping_kid): (&str, &str, &str),
        secret: &[u8],
    ) -> Self {
        let enc = WrapAlgorithm::RsaAesKeyWrap384;
        Self {
            alg: leaf.jws_alg().into(),
            x5c: leaf.chain.clone(),
            kid: format!("https://{host_port}/keys/{KEY_NAME}/{version}"),
            kty: "oct-HSM".into(),
            request_enc: Some(enc.as_str().into()),
            header_enc: Some(enc.as_str().into()),
            nonce: nonce.map(str::to_owned),
            wrapping_kid: wrapping_kid.into(),
            ciphertext: wrap_for(n, e, enc, secret),
        }
    }

    pub(crate) fn payload(&self) -> Value {
        let key_hsm = json!({
            "ciphertext": URL_SAFE_NO_PAD.encode(&self.ciphertext),
            "header": {"alg": "dir", "enc": self.header_enc, "kid": self.wrapping_kid},
            "schema_version": "1.0",
        });
        let mut request = json!({"api-version": "7.4", "kid": self.kid});
        if let Some(enc) = &self.request_enc {
            request["enc"] = json!(enc);
        }
        if let Some(nonce) = &self.nonce {
            request["nonce"] = json!(nonce);
        }
        json!({
            "request": request,
            "response": {"key": {
                "attributes": {"enabled": true, "exportable": true},
                "key": {
                    "kid": self.kid,
                    "kty": self.kty,
                    "key_ops": ["wrapKey", "unwrapKey"],
                    "key_hsm": URL_SAFE_NO_PAD.encode(key_hsm.to_string()),
                },
                "release_policy": {"contentType": "application/json; charset=utf-8", "data": "e30"},
            }},
        })
    }

    /// The compact JWS signed by `leaf`.
    pub(crate) fn sign(&self, leaf: &Leaf) -> String {
        let x5c: Vec<String> = self.x5c.iter().map(|c| STANDARD.encode(c)).collect();
        let header = json!({"alg": self.alg, "kid": "test", "x5c": x5c});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(self.payload().to_string())
        );
        let signature = leaf.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

/// An enclave whose quote is a marker followed by the report data.
#[derive(Debug)]
pub(crate) struct TestEnclave {
    identity: Identity,
}

pub(crate) const QUOTE_MARKER: &[u8; 16] = b"QUARRY-TEST-QUOT";

impl TestEnclave {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            identity: Identity {
                mrenclave: [1; 32],
                mrsigner: [2; 32],
                isv_prod_id: 1,
                isv_svn: 1,
                debug: false,
            },
        })
    }
}

impl Enclave for TestEnclave {
    fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, EnclaveError> {
        Ok([&QUOTE_MARKER[..], &report_data[..]].concat())
    }

    fn seal_key(&self, _policy: SealPolicy) -> Result<SealKey, EnclaveError> {
        Ok(SealKey::new(vec![0; 16]))
    }

    fn identity(&self) -> &Identity {
        &self.identity
    }

    fn is_simulation(&self) -> bool {
        true
    }
}

/// How the mock answers a route.
#[derive(Clone, Default)]
pub(crate) struct Behaviour {
    /// Answer this status (with `body`) for the first `times` requests.
    pub(crate) fail_times: u32,
    pub(crate) fail_status: u16,
    pub(crate) fail_body: String,
}

/// Shared state of the mock.
#[derive(Default)]
pub(crate) struct MockState {
    pub(crate) behaviour: Mutex<HashMap<&'static str, Behaviour>>,
    pub(crate) hits: Mutex<HashMap<&'static str, u32>>,
    pub(crate) token_forms: Mutex<Vec<HashMap<String, String>>>,
    pub(crate) auth_headers: Mutex<Vec<Option<String>>>,
    pub(crate) attest_bodies: Mutex<Vec<Value>>,
    pub(crate) release_bodies: Mutex<Vec<Value>>,
    pub(crate) release_paths: Mutex<Vec<String>>,
    /// Tokens the vault accepts; a challenge is answered to any other.
    pub(crate) valid_tokens: Mutex<Vec<String>>,
    /// Challenge this many requests that carry a valid token (as if it had expired).
    pub(crate) challenge_times: AtomicU32,
    pub(crate) token_counter: AtomicU32,
    pub(crate) secret: Mutex<Vec<u8>>,
    /// Rewrites the response before it is signed.
    #[allow(clippy::type_complexity)]
    pub(crate) tamper: Mutex<Option<Box<dyn Fn(&mut ReleaseResponse) + Send>>>,
    pub(crate) leaf: Mutex<Option<Arc<Leaf>>>,
    pub(crate) host_port: Mutex<String>,
}

impl MockState {
    pub(crate) fn hits(&self, route: &'static str) -> u32 {
        self.hits.lock().unwrap().get(route).copied().unwrap_or(0)
    }

    pub(crate) fn fail(&self, route: &'static str, times: u32, status: u16, body: &str) {
        self.behaviour.lock().unwrap().insert(
            route,
            Behaviour {
                fail_times: times,
                fail_status: status,
                fail_body: body.into(),
            },
        );
    }

    /// Counts the hit; returns the failure to answer, if any.
    fn enter(&self, route: &'static str) -> Option<Response> {
        let n = {
            let mut hits = self.hits.lock().unwrap();
            let n = hits.entry(route).or_default();
            *n += 1;
            *n
        };
        let behaviour = self.behaviour.lock().unwrap().get(route).cloned()?;
        (n <= behaviour.fail_times).then(|| {
            (
                StatusCode::from_u16(behaviour.fail_status).unwrap(),
                [("content-type", "application/json")],
                behaviour.fail_body,
            )
                .into_response()
        })
    }
}

/// The running mock.
pub(crate) struct Mock {
    pub(crate) state: Arc<MockState>,
    pub(crate) url: Url,
    pub(crate) ca: Arc<TestCa>,
}

impl Mock {
    pub(crate) async fn start() -> Self {
        let ca = Arc::new(TestCa::new("mock"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let host_port = format!("localhost:{port}");
        let state = Arc::new(MockState::default());
        *state.secret.lock().unwrap() = vec![0x42; 32];
        *state.leaf.lock().unwrap() = Some(Arc::new(ca.leaf(&["localhost"], LeafAlg::Rs256)));
        *state.host_port.lock().unwrap() = host_port.clone();

        let app = Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .route("/attest/SgxEnclave", post(attest))
            .route("/msi/token", get(managed_identity))
            .route("/keys/{name}/release", post(release_latest))
            .route("/keys/{name}/{version}/release", post(release_version))
            .with_state(Arc::clone(&state));
        serve_tls(listener, app, &ca);
        let url = Url::parse(&format!("https://{host_port}/")).unwrap();
        Self { state, url, ca }
    }

    pub(crate) fn config(&self) -> SkrConfig {
        SkrConfig {
            vault_url: self.url.clone(),
            key_name: KEY_NAME.into(),
            key_version: None,
            maa_url: self.url.clone(),
            authority_host: self.url.clone(),
            credential: CredentialConfig::ClientSecret {
                tenant_id: TENANT.into(),
                client_id: CLIENT_ID.into(),
                secret: ClientSecret::new(SECRET.into()),
            },
            ca_file: None,
        }
    }

    pub(crate) fn options(&self) -> ClientOptions {
        ClientOptions {
            retry: RetryPolicy::immediate(3),
            wrapping_key_size: WrappingKeySize::Rsa2048,
            trust: Some(self.ca.trust()),
            pipeline: Pipeline::Overlapped,
            ..ClientOptions::default()
        }
    }
}

/// Serves `app` over TLS with a certificate for `localhost` from `ca`.
pub(crate) fn serve_tls(listener: tokio::net::TcpListener, app: Router, ca: &TestCa) {
    let leaf = ca.leaf(&["localhost"], LeafAlg::Es256);
    let chain = leaf
        .chain
        .iter()
        .take(2)
        .map(|c| rustls_pki_types::CertificateDer::from(c.clone()))
        .collect::<Vec<_>>();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(leaf.pkcs8.clone().into());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
            });
        }
    });
}

async fn token(
    State(state): State<Arc<MockState>>,
    Path(tenant): Path<String>,
    body: String,
) -> Response {
    if let Some(failure) = state.enter("token") {
        return failure;
    }
    let form: HashMap<String, String> = url_decode(&body);
    state.token_forms.lock().unwrap().push(form);
    if tenant != TENANT {
        return (StatusCode::BAD_REQUEST, r#"{"error":"invalid_tenant"}"#).into_response();
    }
    let n = state.token_counter.fetch_add(1, Ordering::SeqCst);
    let token = format!("access-token-{n}");
    state.valid_tokens.lock().unwrap().push(token.clone());
    axum::Json(json!({
        "token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token,
    }))
    .into_response()
}

async fn managed_identity(
    State(state): State<Arc<MockState>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(failure) = state.enter("msi") {
        return failure;
    }
    let mut form = query;
    form.insert(
        "metadata-header".into(),
        headers
            .get("metadata")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .into(),
    );
    state.token_forms.lock().unwrap().push(form);
    let n = state.token_counter.fetch_add(1, Ordering::SeqCst);
    let token = format!("msi-token-{n}");
    state.valid_tokens.lock().unwrap().push(token.clone());
    axum::Json(json!({
        "access_token": token, "refresh_token": "", "expires_in": "86399",
        "expires_on": "1767229199", "not_before": "1767142499",
        "resource": "https://managedhsm.azure.net", "token_type": "Bearer",
    }))
    .into_response()
}

fn url_decode(body: &str) -> HashMap<String, String> {
    Url::parse(&format!("http://x/?{body}"))
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

async fn attest(
    State(state): State<Arc<MockState>>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    if let Some(failure) = state.enter("attest") {
        return failure;
    }
    state.attest_bodies.lock().unwrap().push(body.clone());
    let quote = URL_SAFE_NO_PAD
        .decode(body["quote"].as_str().unwrap_or_default())
        .unwrap();
    let runtime = URL_SAFE_NO_PAD
        .decode(body["runtimeData"]["data"].as_str().unwrap())
        .unwrap();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &runtime);
    if quote.len() != 80 || &quote[..16] != QUOTE_MARKER || &quote[16..48] != digest.as_ref() {
        return (
            StatusCode::BAD_REQUEST,
            r#"{"error":{"code":"InvalidParameter","message":"runtime data digest mismatch"}}"#,
        )
            .into_response();
    }
    let runtime: Value = serde_json::from_slice(&runtime).unwrap();
    let claims = json!({"iss": "mock", "x-ms-runtime": runtime});
    let token = format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    axum::Json(json!({ "token": token })).into_response()
}

async fn release_latest(
    State(state): State<Arc<MockState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    release(state, name, None, headers, body)
}

async fn release_version(
    State(state): State<Arc<MockState>>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> Response {
    release(state, name, Some(version), headers, body)
}

fn release(
    state: Arc<MockState>,
    name: String,
    version: Option<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    state.auth_headers.lock().unwrap().push(auth.clone());
    let challenge = || {
        (
            StatusCode::UNAUTHORIZED,
            [(
                "www-authenticate",
                format!(
                    "Bearer authorization=\"https://login.example/{TENANT}\", \
                     resource=\"https://managedhsm.azure.net\""
                ),
            )],
        )
            .into_response()
    };
    let token = auth
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !state
        .valid_tokens
        .lock()
        .unwrap()
        .iter()
        .any(|t| t == token)
    {
        return challenge();
    }
    if state
        .challenge_times
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        state.valid_tokens.lock().unwrap().retain(|t| t != token);
        return challenge();
    }
    if let Some(failure) = state.enter("release") {
        return failure;
    }
    state
        .release_paths
        .lock()
        .unwrap()
        .push(format!("{name}/{}", version.clone().unwrap_or_default()));
    let body: Value = serde_json::from_str(&body).unwrap();
    state.release_bodies.lock().unwrap().push(body.clone());

    let target = body["target"].as_str().unwrap();
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(target.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    let jwk = &claims["x-ms-runtime"]["keys"][0];
    let leaf = state.leaf.lock().unwrap().clone().unwrap();
    let host_port = state.host_port.lock().unwrap().clone();
    let mut response = ReleaseResponse::new(
        &leaf,
        &host_port,
        version.as_deref().unwrap_or(VERSION_1),
        body["nonce"].as_str(),
        (
            jwk["n"].as_str().unwrap(),
            jwk["e"].as_str().unwrap(),
            jwk["kid"].as_str().unwrap(),
        ),
        &state.secret.lock().unwrap(),
    );
    if let Some(tamper) = state.tamper.lock().unwrap().as_ref() {
        tamper(&mut response);
    }
    axum::Json(json!({ "value": response.sign(&leaf) })).into_response()
}
