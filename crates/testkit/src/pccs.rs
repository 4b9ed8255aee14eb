//! A fake PCCS that serves one collateral set over the PCCS API v4, on loopback.
//!
//! It loads collateral JSON in dcap-qvl's shape (`testdata/sgx/dcap-qvl-sample.collateral.json`)
//! and answers exactly what a PCCS would for that platform:
//!
//! - `GET /sgx/certification/v4/pckcrl?ca=<ca>&encoding=der`: the PCK CRL as DER (hex text
//!   without `encoding=der`, like Intel's PCCS), chain in `SGX-PCK-CRL-Issuer-Chain`;
//! - `GET /sgx/certification/v4/tcb?fmspc=<fmspc>`: `{"tcbInfo":…,"signature":"…"}` with the
//!   signed TCB info verbatim, chain in `TCB-Info-Issuer-Chain` (or the v3 name);
//! - `GET /sgx/certification/v4/qe/identity`: `{"enclaveIdentity":…,"signature":"…"}`, chain
//!   in `SGX-Enclave-Identity-Issuer-Chain`;
//! - `GET /sgx/certification/v4/rootcacrl`: the root CA CRL as hex text;
//! - anything else, another FMSPC or CA: 404.
//!
//! Issuer chains are percent-encoded (every byte outside `A-Z a-z 0-9 - _ . ~`). Over HTTPS it
//! presents a certificate for `localhost`, `127.0.0.1` and `::1` from a CA it generates; give
//! [`FakePccs::ca_pem`] to the client. [`Behaviour`] injects the faults a client must handle,
//! and can be changed while the server runs. Every request's path and query is recorded.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Why the fake PCCS could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FakePccsError {
    /// The collateral JSON lacks a field or has a malformed one.
    #[error("collateral json: {0}")]
    Collateral(String),
    /// Binding the listener failed.
    #[error("bind 127.0.0.1:0")]
    Bind(#[source] std::io::Error),
    /// Generating the TLS certificate failed.
    #[error("tls setup: {0}")]
    Tls(String),
}

/// Faults and variants the fake PCCS can show.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Behaviour {
    /// Answer every request with this status and a short text body.
    pub fail_with: Option<u16>,
    /// Send the TCB info chain under the v3 name `SGX-TCB-Info-Issuer-Chain` only.
    pub v3_tcb_header: bool,
    /// Leave out every issuer-chain header.
    pub omit_issuer_chains: bool,
    /// Flip one byte inside the signed TCB info.
    pub tamper_tcb_info: bool,
}

/// The collateral parts as served.
#[derive(Debug)]
struct Parts {
    fmspc: String,
    ca: String,
    pck_crl: Vec<u8>,
    pck_crl_chain: String,
    root_ca_crl_hex: String,
    tcb_info: String,
    tcb_info_signature_hex: String,
    tcb_chain: String,
    qe_identity: String,
    qe_identity_signature_hex: String,
    qe_chain: String,
}

#[derive(Debug)]
struct Shared {
    parts: Parts,
    behaviour: Mutex<Behaviour>,
    requests: Mutex<Vec<String>>,
}

/// A running fake PCCS; stops when dropped.
#[derive(Debug)]
pub struct FakePccs {
    addr: SocketAddr,
    tls: bool,
    ca_pem: Option<String>,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FakePccs {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakePccs {
    /// Starts serving `collateral_json` for the PCK CA `ca` (`processor` for the sample) on
    /// `127.0.0.1:0`, over HTTPS when `tls` is set. Must run inside a tokio runtime.
    pub async fn start(
        collateral_json: &[u8],
        ca: &str,
        tls: bool,
    ) -> Result<FakePccs, FakePccsError> {
        let parts = parse_collateral(collateral_json, ca)?;
        let shared = Arc::new(Shared {
            parts,
            behaviour: Mutex::new(Behaviour::default()),
            requests: Mutex::new(Vec::new()),
        });
        let router = Router::new()
            .route("/sgx/certification/v4/pckcrl", get(pck_crl))
            .route("/sgx/certification/v4/tcb", get(tcb))
            .route("/sgx/certification/v4/qe/identity", get(qe_identity))
            .route("/sgx/certification/v4/rootcacrl", get(root_ca_crl))
            .fallback(not_found)
            .layer(axum::middleware::from_fn_with_state(
                shared.clone(),
                record_and_fail,
            ))
            .with_state(shared.clone());

        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(FakePccsError::Bind)?;
        let addr = listener.local_addr().map_err(FakePccsError::Bind)?;
        let (task, ca_pem) = if tls {
            let (acceptor, ca_pem) = tls_acceptor()?;
            (
                tokio::spawn(serve_tls(listener, acceptor, router)),
                Some(ca_pem),
            )
        } else {
            let task = tokio::spawn(async move {
                // The server ends only when the task is aborted; an accept error ends it early
                // and the test sees connection failures.
                let _ = axum::serve(listener, router).await;
            });
            (task, None)
        };
        Ok(FakePccs {
            addr,
            tls,
            ca_pem,
            shared,
            task,
        })
    }

    /// The base URL clients are configured with:
    /// `http(s)://127.0.0.1:PORT/sgx/certification/v4/`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}/sgx/certification/v4/", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The PEM of the CA that issued the HTTPS certificate (`None` over plain HTTP).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// Path and query of every request so far, in order.
    pub fn requests(&self) -> Vec<String> {
        lock(&self.shared.requests).clone()
    }

    /// Changes the behaviour for the following requests.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        *lock(&self.shared.behaviour) = behaviour;
    }
}

/// Locks a mutex, ignoring poisoning (a panicking test thread leaves consistent data here).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn parse_collateral(json: &[u8], ca: &str) -> Result<Parts, FakePccsError> {
    let value: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| FakePccsError::Collateral(e.to_string()))?;
    let text = |name: &str| {
        value[name]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| FakePccsError::Collateral(format!("{name} is not a string")))
    };
    let tcb_info = text("tcb_info")?;
    let tcb: serde_json::Value = serde_json::from_str(&tcb_info)
        .map_err(|e| FakePccsError::Collateral(format!("tcb_info: {e}")))?;
    let fmspc = tcb["fmspc"]
        .as_str()
        .ok_or_else(|| FakePccsError::Collateral("tcb_info has no fmspc".into()))?
        .to_ascii_uppercase();
    let pck_crl = hex::decode(text("pck_crl")?)
        .map_err(|e| FakePccsError::Collateral(format!("pck_crl: {e}")))?;
    Ok(Parts {
        fmspc,
        ca: ca.to_owned(),
        pck_crl,
        pck_crl_chain: text("pck_crl_issuer_chain")?,
        root_ca_crl_hex: text("root_ca_crl")?,
        tcb_info,
        tcb_info_signature_hex: text("tcb_info_signature")?,
        tcb_chain: text("tcb_info_issuer_chain")?,
        qe_identity: text("qe_identity")?,
        qe_identity_signature_hex: text("qe_identity_signature")?,
        qe_chain: text("qe_identity_issuer_chain")?,
    })
}

async fn record_and_fail(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    lock(&shared.requests).push(path);
    let fail_with = lock(&shared.behaviour).fail_with;
    if let Some(code) = fail_with {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (status, "injected failure").into_response();
    }
    next.run(request).await
}

/// Every byte outside the unreserved set percent-encoded, as PCS and PCCS send chains.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn chain_header(
    shared: &Shared,
    headers: &mut HeaderMap,
    name: &'static str,
    chain: &str,
) -> Result<(), StatusCode> {
    if lock(&shared.behaviour).omit_issuer_chains {
        return Ok(());
    }
    let value = HeaderValue::from_str(&percent_encode(chain))
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    headers.insert(HeaderName::from_static(name), value);
    Ok(())
}

type Params = Query<std::collections::HashMap<String, String>>;

async fn pck_crl(State(shared): State<Arc<Shared>>, Query(q): Params) -> Response {
    if q.get("ca").map(|c| c.to_ascii_lowercase()) != Some(shared.parts.ca.clone()) {
        return (StatusCode::NOT_FOUND, "No cache data for this platform").into_response();
    }
    let mut headers = HeaderMap::new();
    if let Err(status) = chain_header(
        &shared,
        &mut headers,
        "sgx-pck-crl-issuer-chain",
        &shared.parts.pck_crl_chain,
    ) {
        return status.into_response();
    }
    if q.get("encoding").map(String::as_str) == Some("der") {
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/pkix-crl"),
        );
        (headers, shared.parts.pck_crl.clone()).into_response()
    } else {
        (headers, hex::encode(&shared.parts.pck_crl)).into_response()
    }
}

async fn tcb(State(shared): State<Arc<Shared>>, Query(q): Params) -> Response {
    if q.get("fmspc").map(|f| f.to_ascii_uppercase()) != Some(shared.parts.fmspc.clone()) {
        return (StatusCode::NOT_FOUND, "No cache data for this platform").into_response();
    }
    let behaviour = lock(&shared.behaviour).clone();
    let mut tcb_info = shared.parts.tcb_info.clone();
    if behaviour.tamper_tcb_info {
        tcb_info = tcb_info.replacen("\"version\":3", "\"version\":4", 1);
    }
    let name = if behaviour.v3_tcb_header {
        "sgx-tcb-info-issuer-chain"
    } else {
        "tcb-info-issuer-chain"
    };
    let mut headers = HeaderMap::new();
    if let Err(status) = chain_header(&shared, &mut headers, name, &shared.parts.tcb_chain) {
        return status.into_response();
    }
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let body = format!(
        "{{\"tcbInfo\":{tcb_info},\"signature\":\"{}\"}}",
        shared.parts.tcb_info_signature_hex
    );
    (headers, body).into_response()
}

async fn qe_identity(State(shared): State<Arc<Shared>>) -> Response {
    let mut headers = HeaderMap::new();
    if let Err(status) = chain_header(
        &shared,
        &mut headers,
        "sgx-enclave-identity-issuer-chain",
        &shared.parts.qe_chain,
    ) {
        return status.into_response();
    }
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let body = format!(
        "{{\"enclaveIdentity\":{},\"signature\":\"{}\"}}",
        shared.parts.qe_identity, shared.parts.qe_identity_signature_hex
    );
    (headers, body).into_response()
}

async fn root_ca_crl(State(shared): State<Arc<Shared>>) -> Response {
    shared.parts.root_ca_crl_hex.clone().into_response()
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found").into_response()
}

/// A TLS acceptor with a fresh CA and a certificate for the loopback names, and the CA's PEM.
fn tls_acceptor() -> Result<(tokio_rustls::TlsAcceptor, String), FakePccsError> {
    let tls_error = |e: &dyn std::fmt::Display| FakePccsError::Tls(e.to_string());
    let mut ca_params =
        rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| tls_error(&e))?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Quarry test PCCS CA");
    let ca_key = rcgen::KeyPair::generate().map_err(|e| tls_error(&e))?;
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).map_err(|e| tls_error(&e))?;

    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let leaf_params = rcgen::CertificateParams::new(names).map_err(|e| tls_error(&e))?;
    let leaf_key = rcgen::KeyPair::generate().map_err(|e| tls_error(&e))?;
    let leaf = leaf_params
        .signed_by(&leaf_key, &ca)
        .map_err(|e| tls_error(&e))?;

    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls_error(&e))?
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key)
    .map_err(|e| tls_error(&e))?;
    Ok((tokio_rustls::TlsAcceptor::from(Arc::new(config)), ca.pem()))
}

async fn serve_tls(listener: TcpListener, acceptor: tokio_rustls::TlsAcceptor, router: Router) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            // A failed handshake or connection concerns only that client.
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            let service = TowerToHyperService::new(router);
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encodes_pem() {
        assert_eq!(
            percent_encode("-----BEGIN CERTIFICATE-----\nab+/="),
            "-----BEGIN%20CERTIFICATE-----%0Aab%2B%2F%3D"
        );
    }
}
