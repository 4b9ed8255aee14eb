//! The Marble API: gRPC `/rpc.Marble/Activate` over TLS with ALPN `h2`, wire-compatible with
//! MarbleRun's mesh server.
//!
//! Transport: the server presents the Marble root certificate followed by the intermediate
//! (MarbleRun sends the Marble root alone; the intermediate lets a Marble that pins the
//! Coordinator root verify the server, and MarbleRun's Marbles ignore it). A client certificate
//! is mandatory and may be self-signed; its handshake signature is verified ([`crate::tls`]).
//! Only the leaf certificate — the one whose key the handshake proved — reaches the activation,
//! whose quote must be bound to its SHA-256.
//!
//! [`activate`] holds the steps and status codes, [`verify`] the quote checks, [`params`] what
//! the Marble receives. [`serve`] runs the listener: TLS handshakes run concurrently (with
//! [`crate::server::HANDSHAKE_TIMEOUT`]), each finished one is handed to tonic.
//!
//! Collateral for DCAP verification (outside simulation) comes from `QUARRY_PCCS_URL` (with
//! `QUARRY_PCCS_CA_FILE`, cached under the seal directory) or from a JSON file named by
//! `QUARRY_COLLATERAL_FILE`.

pub mod activate;
pub mod params;
pub mod verify;

use std::sync::{Arc, Mutex};

use quarry_enclave::pccs::CollateralSource;
use quarry_enclave::verify::Verifier;
use quarry_manifest::Manifest;
use quarry_marble_api::rpc::marble_server::{Marble, MarbleServer};
use quarry_marble_api::{ActivationReq, ActivationResp};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use crate::core::Core;
use crate::tls::server_config;

pub use quarry_enclave::pccs::ENV_COLLATERAL_FILE;

/// The largest activation request accepted (quote, CSR, type and UUID).
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// Why the Marble API could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MarbleApiError {
    /// The collateral configuration is invalid.
    #[error("dcap collateral configuration")]
    Collateral(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// TLS could not be configured.
    #[error("marble api tls configuration")]
    Tls(#[source] rustls::Error),
    /// The gRPC server failed.
    #[error("marble api server")]
    Serve(#[source] tonic::transport::Error),
}

/// The Marble API's state: the core, the collateral source and the verifier.
pub struct MarbleApi {
    core: Arc<Core>,
    collateral: Option<CollateralSource>,
    verifier: Verifier,
    manifest_cache: Mutex<Option<(Vec<u8>, Arc<Manifest>)>>,
}

impl std::fmt::Debug for MarbleApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MarbleApi")
            .field("collateral", &self.collateral.is_some())
            .finish_non_exhaustive()
    }
}

impl MarbleApi {
    /// The API over `core` with the collateral source `env` describes (`QUARRY_PCCS_URL`,
    /// `QUARRY_PCCS_CA_FILE`, `QUARRY_COLLATERAL_FILE`).
    pub fn from_env(
        core: Arc<Core>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, MarbleApiError> {
        let cache = core.config().seal_dir.join("pccs-cache");
        let collateral = CollateralSource::from_env(env, &cache)
            .map_err(|e| MarbleApiError::Collateral(Box::new(e)))?;
        Ok(Self::new(core, collateral, Verifier::default()))
    }

    /// The API with an explicit collateral source and verifier.
    pub fn new(core: Arc<Core>, collateral: Option<CollateralSource>, verifier: Verifier) -> Self {
        if collateral.is_none() && !core.enclave().is_simulation() {
            tracing::warn!(
                "no dcap collateral configured (QUARRY_PCCS_URL or QUARRY_COLLATERAL_FILE): \
                 marble quotes cannot be verified and activations will be refused"
            );
        }
        Self {
            core,
            collateral,
            verifier,
            manifest_cache: Mutex::new(None),
        }
    }

    async fn handle(
        &self,
        request: tonic::Request<ActivationReq>,
    ) -> tonic::Result<ActivationResp> {
        let peer = request
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(|info| info.peer_certs())
            .and_then(|certs| certs.first().map(|c| c.as_ref().to_vec()));
        let remote = request
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(|info| info.get_ref().remote_addr());
        let request = request.into_inner();
        let marble_type = request.marble_type.clone();
        let uuid = request.uuid.clone();
        let quote = request.quote.clone();
        let metrics = crate::metrics::global();
        metrics.activation_attempt(&marble_type, &uuid);
        match self.activate(peer, request).await {
            Ok(parameters) => {
                metrics.activation_success(&marble_type, &uuid, &quote);
                // Debug formatting quotes and escapes what the unauthenticated request chose, so a type or
                // UUID with a line break cannot forge log lines.
                tracing::info!(marble_type = ?marble_type, uuid = ?uuid, "marble activated");
                Ok(ActivationResp {
                    parameters: Some(parameters),
                })
            }
            Err(refusal) => {
                let remote = remote.map(|a| a.to_string()).unwrap_or_default();
                if refusal.code == tonic::Code::Internal {
                    tracing::error!(
                        marble_type = ?marble_type, uuid = ?uuid, %remote,
                        code = ?refusal.code, reason = ?refusal.detail,
                        "marble activation failed"
                    );
                } else {
                    tracing::warn!(
                        marble_type = ?marble_type, uuid = ?uuid, %remote,
                        code = ?refusal.code, reason = ?refusal.detail,
                        "marble activation refused"
                    );
                }
                Err(tonic::Status::new(refusal.code, refusal.message))
            }
        }
    }
}

/// The tonic service around a shared [`MarbleApi`].
#[derive(Debug, Clone)]
struct Service(Arc<MarbleApi>);

#[tonic::async_trait]
impl Marble for Service {
    async fn activate(
        &self,
        request: tonic::Request<ActivationReq>,
    ) -> tonic::Result<tonic::Response<ActivationResp>> {
        self.0.handle(request).await.map(tonic::Response::new)
    }
}

/// Serves the Marble API on `listener` until the task is dropped or the server fails.
pub async fn serve(listener: TcpListener, api: Arc<MarbleApi>) -> Result<(), MarbleApiError> {
    let tls = server_config(Arc::clone(api.core.marble_cert()), true, &[b"h2"])
        .map_err(MarbleApiError::Tls)?;
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let (sender, receiver) =
        tokio::sync::mpsc::channel::<std::io::Result<TlsStream<TcpStream>>>(64);
    let accept_loop = tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(conn) => conn,
                Err(error) => {
                    tracing::warn!(%error, "marble api accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let sender = sender.clone();
            tokio::spawn(async move {
                let timeout = crate::server::HANDSHAKE_TIMEOUT;
                match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = sender.send(Ok(stream)).await;
                    }
                    Ok(Err(error)) => tracing::debug!(%peer, %error, "marble tls handshake failed"),
                    Err(_) => tracing::debug!(%peer, "marble tls handshake timed out"),
                }
            });
        }
    });
    // gRPC server metrics only with the Prometheus listener (see `crate::metrics::grpc`).
    let metrics = api.core.config().prometheus_addr.is_some();
    let service = MarbleServer::new(Service(api)).max_decoding_message_size(MAX_REQUEST_BYTES);
    let incoming = tokio_stream::wrappers::ReceiverStream::new(receiver);
    let result = if metrics {
        let layer = crate::metrics::grpc::GrpcMetricsLayer::new(crate::metrics::global().grpc());
        tonic::transport::Server::builder()
            .layer(layer)
            .add_service(service)
            .serve_with_incoming(incoming)
            .await
    } else {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await
    };
    accept_loop.abort();
    result.map_err(MarbleApiError::Serve)
}
