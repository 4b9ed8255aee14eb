//! The cost of the metrics layers, reported as ratios (with layer / without):
//!
//! * in process, on the cheapest possible handler (no TLS, no sockets): requests through the
//!   Client API's per-path HTTP metrics layer against the same router without it, and calls
//!   through the gRPC server metrics layer against the same service without it. These ratios
//!   are an upper bound, since a real request adds TLS and the handler's own work;
//! * end to end: `GET /api/v2/status` over one kept-alive TLS connection (HTTP/1.1) to a real
//!   Coordinator (simulation backend, in this process) started with
//!   `EDG_COORDINATOR_PROMETHEUS_ADDR`, against one started without it.
//!
//! The summary lines give each pair's time per request and the ratio.

#![allow(clippy::print_stdout)] // the summary line is what this benchmark reports

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, Response};
use axum::routing::get;
use criterion::Criterion;
use http_body_util::{BodyExt, Full};
use quarry_coordinator::Coordinator;
use quarry_coordinator::config::Config;
use quarry_coordinator::metrics::global;
use quarry_coordinator::metrics::grpc::GrpcMetricsLayer;
use quarry_enclave::Enclave;
use quarry_enclave::simulation::{Simulation, SimulationSettings};
use quarry_premain::client::{ServerTrust, client_config};
use quarry_premain::identity::MarbleIdentity;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tower::{Layer, Service, ServiceExt};

/// Requests per iteration.
const BATCH: u64 = 64;

/// Rounds of the interleaved summary measurement.
const SUMMARY_ROUNDS: u32 = 10;

fn router() -> Router {
    Router::new()
        .route(
            "/api/v2/status",
            get(|| async { r#"{"status":"success","data":{"code":3,"message":"ok"}}"# }),
        )
        .fallback(|| async { (axum::http::StatusCode::METHOD_NOT_ALLOWED, "") })
}

async fn http_batch(router: &Router) {
    for i in 0..BATCH {
        // One in eight to an unknown path.
        let path = if i % 8 == 0 {
            "/nope"
        } else {
            "/api/v2/status"
        };
        let request = Request::builder()
            .uri(path)
            .header("host", "localhost:4433")
            .body(Body::empty())
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let body = response.into_body().collect().await.unwrap();
        std::hint::black_box(body);
    }
}

/// A gRPC-like service: reads the request, answers one framed message.
fn grpc_service() -> impl Service<
    Request<tonic::body::Body>,
    Response = Response<tonic::body::Body>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    tower::service_fn(|request: Request<tonic::body::Body>| async move {
        let body = request.into_body().collect().await.unwrap().to_bytes();
        let mut framed = vec![0, 0, 0, 0, 16];
        framed.extend_from_slice(&[body.len() as u8; 16]);
        Ok::<_, Infallible>(Response::new(tonic::body::Body::new(Full::new(
            Bytes::from(framed),
        ))))
    })
}

async fn grpc_batch<S>(service: &S)
where
    S: Service<
            Request<tonic::body::Body>,
            Response = Response<tonic::body::Body>,
            Error = Infallible,
        > + Clone,
{
    for _ in 0..BATCH {
        let request = Request::builder()
            .method("POST")
            .uri("/rpc.Marble/Activate")
            .body(tonic::body::Body::new(Full::new(Bytes::from_static(&[
                0, 0, 0, 0, 3, 1, 2, 3,
            ]))))
            .unwrap();
        let response = service.clone().oneshot(request).await.unwrap();
        let body = response.into_body().collect().await.unwrap();
        std::hint::black_box(body);
    }
}

/// Starts a Coordinator in this process; returns its Client API address and root certificate.
async fn coordinator(dir: &std::path::Path, metrics: bool) -> (std::net::SocketAddr, Vec<u8>) {
    let seal = dir.join("seal");
    std::fs::create_dir_all(&seal).unwrap();
    let mut env = BTreeMap::from([
        ("EDG_COORDINATOR_SEAL_DIR", seal.display().to_string()),
        ("EDG_COORDINATOR_CLIENT_ADDR", "127.0.0.1:0".to_owned()),
        ("EDG_COORDINATOR_MESH_ADDR", "127.0.0.1:0".to_owned()),
    ]);
    if metrics {
        env.insert("EDG_COORDINATOR_PROMETHEUS_ADDR", "127.0.0.1:0".to_owned());
    }
    let config = Config::from_lookup(|k| env.get(k).cloned(), dir.to_path_buf()).unwrap();
    let enclave: Arc<dyn Enclave> =
        Arc::new(Simulation::new(SimulationSettings::new(&seal)).unwrap());
    let coordinator = Coordinator::start(config, enclave, BTreeMap::new())
        .await
        .unwrap();
    let root = coordinator.core().ca().root_certificate_der().to_vec();
    let addr = coordinator
        .addrs()
        .into_iter()
        .find(|(name, _)| name == "client_api")
        .unwrap()
        .1;
    tokio::spawn(coordinator.serve());
    (addr, root)
}

/// A new TLS connection (HTTP/1.1, kept alive) to the Client API at `addr`.
async fn connect(addr: std::net::SocketAddr, root: &[u8]) -> BufReader<TlsStream<TcpStream>> {
    // The Coordinator's root certificate, pinned (it is a CA serving as the server's leaf).
    let identity = MarbleIdentity::generate(&["localhost".into()], &[]).unwrap();
    let trust = ServerTrust::Pinned(vec![root.to_vec().into()]);
    let mut tls = client_config(&identity, &trust).unwrap();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .unwrap();
    BufReader::new(stream)
}

/// A kept-alive HTTP/1.1 connection to a Coordinator's Client API, opened again when the
/// server has closed it (the summary reports how often that happened).
struct Client {
    addr: std::net::SocketAddr,
    root: Vec<u8>,
    connection: Option<BufReader<TlsStream<TcpStream>>>,
    line: String,
    reconnects: u32,
}

impl Client {
    fn new((addr, root): &(std::net::SocketAddr, Vec<u8>)) -> Self {
        Self {
            addr: *addr,
            root: root.clone(),
            connection: None,
            line: String::new(),
            reconnects: 0,
        }
    }

    /// `GET /api/v2/status`, reading the whole answer.
    async fn status(&mut self) {
        if self.get().await.is_err() {
            self.connection = None;
            self.reconnects += 1;
            self.get().await.unwrap();
        }
    }

    async fn get(&mut self) -> std::io::Result<()> {
        let connection = match &mut self.connection {
            Some(connection) => connection,
            None => self.connection.insert(connect(self.addr, &self.root).await),
        };
        let line = &mut self.line;
        connection
            .get_mut()
            .write_all(b"GET /api/v2/status HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await?;
        line.clear();
        if connection.read_line(line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        assert!(line.starts_with("HTTP/1.1 200"), "{line}");
        let mut length = 0;
        loop {
            line.clear();
            connection.read_line(line).await?;
            if line == "\r\n" {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(value) = lower.strip_prefix("content-length:") {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        connection.read_exact(&mut body).await?;
        std::hint::black_box(body);
        Ok(())
    }
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let plain = router();
    let instrumented = quarry_coordinator::metrics::http::instrument(router(), global().http());
    let bare = grpc_service();
    let layered = GrpcMetricsLayer::new(global().grpc()).layer(grpc_service());

    let mut group = criterion.benchmark_group("metrics_layer");
    group.throughput(criterion::Throughput::Elements(BATCH));
    for (name, router) in [("http_without", &plain), ("http_with", &instrumented)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    runtime.block_on(http_batch(router));
                }
                start.elapsed()
            })
        });
    }
    group.bench_function("grpc_without", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                runtime.block_on(grpc_batch(&bare));
            }
            start.elapsed()
        })
    });
    group.bench_function("grpc_with", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                runtime.block_on(grpc_batch(&layered));
            }
            start.elapsed()
        })
    });
    let dir = tempfile::tempdir().unwrap();
    let server = tokio::runtime::Runtime::new().unwrap();
    let coordinators = [
        (
            "e2e_without",
            server.block_on(coordinator(&dir.path().join("without"), false)),
        ),
        (
            "e2e_with",
            server.block_on(coordinator(&dir.path().join("with"), true)),
        ),
    ];
    let mut clients = coordinators
        .each_ref()
        .map(|(name, started)| (*name, Client::new(started)));
    for (name, client) in &mut clients {
        let name: &'static str = name;
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                server.block_on(async {
                    for _ in 0..iters * BATCH {
                        client.status().await;
                    }
                });
                start.elapsed()
            })
        });
    }
    group.finish();
    criterion.final_summary();

    // The summary: both sides measured in alternation (A B B A ...), so that a change in the
    // machine's load during the run falls on both alike.
    let report = |kind: &str, batches: u32, without: &mut dyn FnMut(), with: &mut dyn FnMut()| {
        let mut totals = [Duration::ZERO; 2];
        for round in 0..SUMMARY_ROUNDS {
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for side in order {
                let run: &mut dyn FnMut() = if side == 0 { &mut *without } else { &mut *with };
                let start = Instant::now();
                for _ in 0..batches {
                    run();
                }
                totals[side] += start.elapsed();
            }
        }
        let requests = f64::from(SUMMARY_ROUNDS * batches) * BATCH as f64;
        let [without, with] = totals.map(|t| t.as_secs_f64() / requests * 1e6);
        println!(
            "summary: {kind}: {without:.2} us per request without the metrics layer, \
             {with:.2} us with, ratio {:.3}",
            with / without
        );
    };
    report(
        "in-process client api router",
        50,
        &mut || runtime.block_on(http_batch(&plain)),
        &mut || runtime.block_on(http_batch(&instrumented)),
    );
    report(
        "in-process grpc service",
        50,
        &mut || runtime.block_on(grpc_batch(&bare)),
        &mut || runtime.block_on(grpc_batch(&layered)),
    );
    let [(_, without), (_, with)] = &mut clients;
    report(
        "client api over tls",
        10,
        &mut || {
            server.block_on(async {
                for _ in 0..BATCH {
                    without.status().await;
                }
            })
        },
        &mut || {
            server.block_on(async {
                for _ in 0..BATCH {
                    with.status().await;
                }
            })
        },
    );
    println!(
        "summary: connections the server closed and that were opened again: {} without, {} with",
        without.reconnects, with.reconnects
    );
}
