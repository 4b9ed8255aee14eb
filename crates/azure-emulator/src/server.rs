//! The HTTPS listener: one TCP socket, TLS with a leaf from the emulator's CA for `localhost`,
//! `127.0.0.1` and `::1`, HTTP/1.1 and HTTP/2, and a hand-written accept loop that applies
//! fault injection before a request reaches the router (an outage must be able to drop the
//! connection, which a router cannot do).
//!
//! Every response carries `x-ms-request-id`. Once the socket listens, the `--ready-file` is
//! written with the listener name `https`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ServerConfig;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use quarry_common::ready::Ready;

use crate::ca::{Ca, LeafKeyType};
use crate::faults::{Fault, TokenLifetime, forced_response};
use crate::http_util::request_id;
use crate::state::{Config, Emulator, OpenError};

/// How long a client may take for the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Options of `serve`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// The state directory.
    pub state_dir: PathBuf,
    /// Where to write the ready record once listening.
    pub ready_file: Option<PathBuf>,
    /// Faults active from the start.
    pub faults: Vec<Fault>,
    /// Lifetime of Entra ID access tokens, seconds.
    pub access_token_lifetime_secs: u64,
    /// Lifetime of MAA tokens, seconds.
    pub maa_token_lifetime_secs: u64,
    /// Allow a non-loopback listen address.
    pub insecure_non_loopback: bool,
    /// DCAP collateral file for quote verification.
    pub dcap_collateral: Option<PathBuf>,
    /// Fixed time for DCAP verification.
    pub dcap_fixed_time: Option<i64>,
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The listen address is not loopback and that was not allowed.
    #[error(
        "listen address {0} is not a loopback address; the emulator is for development and \
         tests (pass --insecure-non-loopback to override)"
    )]
    NotLoopback(SocketAddr),
    /// Binding the socket failed.
    #[error("binding {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The state could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The TLS configuration could not be built.
    #[error("tls configuration: {0}")]
    Tls(String),
    /// The ready file could not be written.
    #[error("writing the ready file {path}")]
    ReadyFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Builds the router of every emulated service, with `extra` (the Managed HSM's routes)
/// merged at the root.
pub fn router(emulator: Arc<Emulator>, extra: Router<Arc<Emulator>>) -> Router {
    Router::new()
        .merge(crate::entra::routes())
        .merge(crate::maa::routes())
        .merge(crate::faults::routes())
        .merge(extra)
        .with_state(emulator)
}

/// The TLS server configuration: a fresh ECDSA leaf for the loopback names, ALPN `h2` and
/// `http/1.1`, aws-lc-rs as the provider.
pub fn tls_config(ca: &Ca) -> Result<ServerConfig, ServeError> {
    let names = ["localhost", "127.0.0.1", "::1"].map(str::to_owned);
    let leaf = ca
        .issue_leaf(&names, LeafKeyType::EcdsaP256)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    let chain = leaf.chain[..2].to_vec();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key_pkcs8.to_vec()));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// An injected outage: returned to hyper so that it drops the connection.
#[derive(Debug, thiserror::Error)]
#[error("injected outage")]
struct Outage;

/// Handles one request: faults first, then the router.
async fn handle(
    emulator: Arc<Emulator>,
    router: Router,
    mut request: Request<Incoming>,
) -> Result<Response, Outage> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    if let Some(applied) = emulator.faults.take(&method, &path) {
        tracing::debug!(%method, %path, ?applied, "fault injected");
        if let Some(latency) = applied.latency {
            tokio::time::sleep(latency).await;
        }
        if applied.outage {
            return Err(Outage);
        }
        if let Some((status, body)) = applied.status {
            return Ok(with_request_id(forced_response(status, body)));
        }
        if let Some(secs) = applied.token_lifetime_secs {
            request.extensions_mut().insert(TokenLifetime(secs));
        }
    }
    let response = match router.oneshot(request.map(Body::new)).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    tracing::debug!(%method, %path, status = response.status().as_u16(), "request");
    Ok(with_request_id(response))
}

fn with_request_id(mut response: Response) -> Response {
    response
        .headers_mut()
        .entry("x-ms-request-id")
        .or_insert_with(request_id);
    response
}

/// Runs the emulator until `shutdown` completes. `hsm_routes` are merged into the router.
pub async fn serve(
    options: ServeOptions,
    hsm_routes: impl FnOnce(&Arc<Emulator>) -> Result<Router<Arc<Emulator>>, OpenError>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    if !options.listen.ip().is_loopback() {
        if !options.insecure_non_loopback {
            return Err(ServeError::NotLoopback(options.listen));
        }
        tracing::warn!(addr = %options.listen, "listening on a non-loopback address");
    }
    let listener = TcpListener::bind(options.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: options.listen,
            source,
        })?;
    let local = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: options.listen,
        source,
    })?;

    let config = Config {
        state_dir: options.state_dir.clone(),
        base_url: format!("https://localhost:{}", local.port()),
        access_token_lifetime_secs: options.access_token_lifetime_secs,
        maa_token_lifetime_secs: options.maa_token_lifetime_secs,
        dcap_collateral: options.dcap_collateral.clone(),
        dcap_fixed_time: options.dcap_fixed_time,
    };
    let emulator = Arc::new(Emulator::open(config, options.faults.clone())?);
    let extra = hsm_routes(&emulator)?;
    let acceptor = TlsAcceptor::from(Arc::new(tls_config(&emulator.ca)?));
    let router = router(emulator.clone(), extra);

    if let Some(path) = &options.ready_file {
        Ready::for_this_process([("https".to_owned(), local)])
            .write(path)
            .map_err(|source| ServeError::ReadyFile {
                path: path.clone(),
                source,
            })?;
    }
    tracing::info!(
        addr = %local,
        url = %emulator.config.base_url,
        tenant = %emulator.entra.tenant_id(),
        state_dir = %options.state_dir.display(),
        "listening"
    );

    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let acceptor = acceptor.clone();
        let emulator = emulator.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "tls handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "tls handshake timed out");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |request| {
                handle(emulator.clone(), router.clone(), request)
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    tracing::info!("shutting down");
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
