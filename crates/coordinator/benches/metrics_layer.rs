//! The cost of the metrics layers, reported as ratios: requests through the Client API's
//! per-path HTTP metrics layer against the same router without it, and calls through the gRPC
//! server metrics layer against the same service without it.
//!
//! Both are measured in process (no TLS, no sockets) on the cheapest possible handler, so the
//! ratios are an upper bound: a real request adds TLS and the handler's own work, which the
//! layer does not touch. The summary line gives each pair's time per request and the ratio
//! (with layer / without).

#![allow(clippy::print_stdout)] // the summary line is what this benchmark reports

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, Response};
use axum::routing::get;
use criterion::Criterion;
use http_body_util::{BodyExt, Full};
use quarry_coordinator::metrics::global;
use quarry_coordinator::metrics::grpc::GrpcMetricsLayer;
use tower::{Layer, Service, ServiceExt};

/// Requests per iteration.
const BATCH: u64 = 64;

/// Total time and count of each measurement, for the summary.
static TOTALS: Mutex<BTreeMap<&'static str, (Duration, u64)>> = Mutex::new(BTreeMap::new());

fn record(name: &'static str, elapsed: Duration, count: u64) {
    let mut totals = TOTALS.lock().unwrap();
    let entry = totals.entry(name).or_insert((Duration::ZERO, 0));
    entry.0 += elapsed;
    entry.1 += count;
}

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
                let elapsed = start.elapsed();
                record(name, elapsed, iters * BATCH);
                elapsed
            })
        });
    }
    group.bench_function("grpc_without", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                runtime.block_on(grpc_batch(&bare));
            }
            let elapsed = start.elapsed();
            record("grpc_without", elapsed, iters * BATCH);
            elapsed
        })
    });
    group.bench_function("grpc_with", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                runtime.block_on(grpc_batch(&layered));
            }
            let elapsed = start.elapsed();
            record("grpc_with", elapsed, iters * BATCH);
            elapsed
        })
    });
    group.finish();
    criterion.final_summary();

    let totals = TOTALS.lock().unwrap();
    let per_request = |name: &str| {
        totals
            .get(name)
            .filter(|(_, count)| *count > 0)
            .map(|(time, count)| time.as_secs_f64() / *count as f64)
    };
    for kind in ["http", "grpc"] {
        let (Some(without), Some(with)) = (
            per_request(&format!("{kind}_without")),
            per_request(&format!("{kind}_with")),
        ) else {
            continue;
        };
        println!(
            "summary: {kind} metrics layer: {:.2} us per request without, {:.2} us with, \
             ratio {:.2}",
            without * 1e6,
            with * 1e6,
            with / without
        );
    }
}
