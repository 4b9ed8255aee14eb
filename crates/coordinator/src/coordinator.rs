//! Start-up and serving: [`Coordinator::start`] opens the core (unseal, recovery or fresh
//! start), applies `EDG_STARTUP_MANIFEST`, and binds every listener; [`Coordinator::serve`]
//! serves the Client API until a listener fails.
//!
//! Listener names (for `--ready-file`): `client_api`, `marble_api`, and `prometheus` when
//! `EDG_COORDINATOR_PROMETHEUS_ADDR` is set. Every address accepts port 0.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use quarry_enclave::Enclave;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::core::{Core, CoreError};
use crate::tls::server_config;

/// Why the Coordinator could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The core could not be opened.
    #[error("opening the coordinator state")]
    Core(#[source] CoreError),
    /// The startup manifest could not be read.
    #[error("reading EDG_STARTUP_MANIFEST {path}")]
    StartupManifestRead {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The startup manifest was refused.
    #[error("setting EDG_STARTUP_MANIFEST {path}")]
    StartupManifest {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: CoreError,
    },
    /// A listener could not be bound.
    #[error("binding {name} on {addr}")]
    Bind {
        /// The listener.
        name: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// TLS could not be configured.
    #[error("tls configuration")]
    Tls(#[source] rustls::Error),
    /// The Marble API could not be set up or failed.
    #[error("marble api")]
    MarbleApi(#[source] crate::marble::MarbleApiError),
}

/// A started Coordinator: its core and bound listeners.
#[derive(Debug)]
pub struct Coordinator {
    core: Arc<Core>,
    client: TcpListener,
    marble: TcpListener,
    marble_api: Arc<crate::marble::MarbleApi>,
    prometheus: Option<TcpListener>,
}

impl Coordinator {
    /// Opens the core and binds the listeners. `env` holds the `EDG_*` variables for the
    /// manifest checks.
    pub async fn start(
        config: Config,
        enclave: Arc<dyn Enclave>,
        env: BTreeMap<String, String>,
    ) -> Result<Self, StartError> {
        let startup_manifest = config.startup_manifest.clone();
        let client_addr = config.client_addr;
        let mesh_addr = config.mesh_addr;
        let prometheus_addr = config.prometheus_addr;

        let core = tokio::task::spawn_blocking(move || Core::open(config, enclave, env))
            .await
            .map_err(|e| StartError::Core(CoreError::Internal(e.to_string())))?
            .map_err(StartError::Core)?;
        let core = Arc::new(core);

        if let Some(path) = startup_manifest {
            let shown = path.display().to_string();
            let raw = std::fs::read(&path).map_err(|source| StartError::StartupManifestRead {
                path: shown.clone(),
                source,
            })?;
            let c = Arc::clone(&core);
            tokio::task::spawn_blocking(move || c.apply_startup_manifest(raw))
                .await
                .map_err(|e| StartError::Core(CoreError::Internal(e.to_string())))?
                .map_err(|source| StartError::StartupManifest {
                    path: shown,
                    source,
                })?;
        }

        let marble_api =
            crate::marble::MarbleApi::from_env(Arc::clone(&core), &|k| std::env::var(k).ok())
                .map_err(StartError::MarbleApi)?;
        let client = bind("client_api", client_addr).await?;
        let marble = bind("marble_api", mesh_addr).await?;
        let prometheus = match prometheus_addr {
            Some(addr) => Some(bind("prometheus", addr).await?),
            None => None,
        };
        Ok(Self {
            core,
            client,
            marble,
            marble_api: Arc::new(marble_api),
            prometheus,
        })
    }

    /// The core.
    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// The bound addresses by listener name.
    pub fn addrs(&self) -> Vec<(String, SocketAddr)> {
        let mut addrs = Vec::new();
        for (name, listener) in [
            ("client_api", Some(&self.client)),
            ("marble_api", Some(&self.marble)),
            ("prometheus", self.prometheus.as_ref()),
        ] {
            if let Some(addr) = listener.and_then(|l| l.local_addr().ok()) {
                addrs.push((name.to_owned(), addr));
            }
        }
        addrs
    }

    /// Starts the background task of HSM sealing ([`crate::hsm::startup::spawn`]): the
    /// key-release loop while waiting for a key release, and persisting a recovered state.
    pub fn start_hsm(&self) -> tokio::task::JoinHandle<()> {
        crate::hsm::startup::spawn(&self.core)
    }

    /// Serves the Client API over HTTPS (HTTP/1.1 and HTTP/2) and the Marble API (gRPC) until
    /// the task is dropped or the Marble API fails.
    pub async fn serve(self) -> Result<(), StartError> {
        let tls = server_config(
            Arc::clone(self.core.client_cert()),
            false,
            &[b"h2", b"http/1.1"],
        )
        .map_err(StartError::Tls)?;
        let router = crate::api::router(Arc::clone(&self.core));
        // Metrics (plain HTTP) run beside the APIs; see `crate::metrics`.
        let _metrics = self
            .prometheus
            .map(|listener| tokio::spawn(crate::metrics::serve(listener, Arc::clone(&self.core))));
        let marble = crate::marble::serve(self.marble, self.marble_api);
        tokio::select! {
            () = crate::server::serve(self.client, Arc::new(tls), router) => Ok(()),
            result = marble => result.map_err(StartError::MarbleApi),
        }
    }
}

async fn bind(name: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    let listener = listen(addr).map_err(|source| StartError::Bind { name, addr, source })?;
    tracing::info!(listener = name, addr = %listener.local_addr().unwrap_or(addr), "listening");
    Ok(listener)
}

/// Listens on `addr`. The unspecified IPv6 address (`:PORT`, MarbleRun's default) means every
/// interface as in Go: a dual-stack socket that also accepts IPv4, whatever the system's
/// `bindv6only` says, or an IPv4 socket on `0.0.0.0` where the kernel has no IPv6 at all.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let (socket, addr) = socket_for(addr)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(std::net::TcpListener::from(socket))
}

/// The unbound, non-blocking socket for listening on `addr`, and the address to bind it to.
fn socket_for(addr: SocketAddr) -> std::io::Result<(socket2::Socket, SocketAddr)> {
    use socket2::{Domain, Protocol, Socket, Type};

    let dual_stack = addr.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED);
    let socket = match Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)) {
        Ok(socket) => socket,
        Err(error) if dual_stack && ipv6_unsupported(&error) => {
            let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), addr.port());
            tracing::info!(%addr, %v4, "no IPv6 on this system, listening on IPv4 only");
            return socket_for(v4);
        }
        Err(error) => return Err(error),
    };
    if dual_stack {
        socket.set_only_v6(false)?;
    }
    // As tokio and Go do: a restarted Coordinator can listen again while old connections of its
    // predecessor are in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    Ok((socket, addr))
}

/// Whether `error` says that the system cannot make IPv6 sockets (the kernel runs without it).
fn ipv6_unsupported(error: &std::io::Error) -> bool {
    // EAFNOSUPPORT on Linux.
    const ADDRESS_FAMILY_NOT_SUPPORTED: i32 = 97;
    error.kind() == std::io::ErrorKind::Unsupported
        || error.raw_os_error() == Some(ADDRESS_FAMILY_NOT_SUPPORTED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_address_is_dual_stack_whatever_the_system_default() {
        // Not bound: tests listen on loopback only.
        let (socket, addr) = socket_for("[::]:4433".parse().unwrap()).unwrap();
        assert_eq!(addr, "[::]:4433".parse().unwrap());
        assert!(!socket.only_v6().unwrap());
        let (socket, _) = socket_for("[::1]:4433".parse().unwrap()).unwrap();
        assert!(socket.domain().unwrap() == socket2::Domain::IPV6);
        let (socket, _) = socket_for("127.0.0.1:4433".parse().unwrap()).unwrap();
        assert!(socket.domain().unwrap() == socket2::Domain::IPV4);
    }

    #[tokio::test]
    async fn specific_addresses_are_used_as_given() {
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_eq!(listener.local_addr().unwrap().ip(), Ipv4Addr::LOCALHOST);
        let port = listener.local_addr().unwrap().port();
        let (connected, accepted) = tokio::join!(
            tokio::net::TcpStream::connect(("127.0.0.1", port)),
            listener.accept()
        );
        connected.unwrap();
        accepted.unwrap();
    }

    #[test]
    fn ipv6_is_unsupported_only_for_the_address_family_error() {
        assert!(ipv6_unsupported(&std::io::Error::from_raw_os_error(97)));
        assert!(!ipv6_unsupported(&std::io::Error::from_raw_os_error(98)));
        assert!(!ipv6_unsupported(&std::io::Error::from(
            std::io::ErrorKind::PermissionDenied
        )));
    }
}
