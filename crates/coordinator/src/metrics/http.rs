//! MarbleRun's per-path metrics of the Client API, as an axum layer ([`instrument`]) added to
//! the Client API router only when `EDG_COORDINATOR_PROMETHEUS_ADDR` is set.
//!
//! | name | type | labels |
//! |---|---|---|
//! | `server_client_api_http_request_total` | counter | `code`, `method`, `path` |
//! | `server_client_api_http_request_duration_histogram_seconds` | histogram | `method`, `path` |
//! | `server_client_api_http_request_size_histogram_bytes` | histogram | `path` |
//! | `server_client_api_http_response_size_histogram_bytes` | histogram | `path` |
//! | `server_client_api_http_in_flight_requests` | gauge | `path` |
//!
//! `path` is the registered route pattern (`/api/v2/status`); a request to a path no route
//! matches is labelled [`UNKNOWN_PATH`], so the number of series does not grow with the paths
//! clients invent. `method` is the lower-case method for the nine methods of RFC 9110 and
//! RFC 5789, [`OTHER_METHOD`] for any other. `code` is the status code the server answered.
//!
//! The duration runs until the handler has produced the response; the response size counts the
//! body bytes handed to the connection and is recorded when the body ends. The request size is
//! the approximation Prometheus's Go instrumentation makes (MarbleRun's): the lengths of the
//! request target, method, protocol version, header names and values and host, plus the
//! declared `Content-Length`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{MatchedPath, Request};
use axum::http::{Method, Version, header};
use axum::response::Response;
use http_body::{Frame, SizeHint};
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// The `path` label of requests no route matches.
pub const UNKNOWN_PATH: &str = "unknown";

/// The `method` label of methods outside the standard ones.
pub const OTHER_METHOD: &str = "other";

/// Buckets of the duration histogram, in seconds.
pub const DURATION_BUCKETS: [f64; 7] = [0.005, 0.025, 0.1, 0.5, 1.0, 2.5, 5.0];

/// Buckets of the request and response size histograms, in bytes.
pub const SIZE_BUCKETS: [f64; 5] = [100.0, 1000.0, 2000.0, 5000.0, 10000.0];

/// The `method` labels, in the order [`method_index`] numbers them.
const METHOD_LABELS: [&str; 10] = [
    "get",
    "post",
    "put",
    "delete",
    "head",
    "options",
    "patch",
    "connect",
    "trace",
    OTHER_METHOD,
];

/// The Client API's HTTP metrics.
#[derive(Debug)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    request_size: HistogramVec,
    response_size: HistogramVec,
    in_flight: IntGaugeVec,
    /// The series of each path label seen so far (route patterns and [`UNKNOWN_PATH`], so a
    /// bounded set), resolved once instead of at every request.
    paths: RwLock<HashMap<String, Arc<PathSeries>>>,
}

/// The series of one path label.
#[derive(Debug)]
struct PathSeries {
    request_size: Histogram,
    response_size: Histogram,
    in_flight: IntGauge,
    /// By [`method_index`], created with the first request of that method.
    duration: [OnceLock<Histogram>; METHOD_LABELS.len()],
}

impl HttpMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "server_client_api_http_request_total",
                "Client API requests by status code and method",
            ),
            &["code", "method", "path"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "server_client_api_http_request_duration_histogram_seconds",
                "Client API request durations",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["method", "path"],
        )?;
        let request_size = HistogramVec::new(
            HistogramOpts::new(
                "server_client_api_http_request_size_histogram_bytes",
                "Approximate Client API request sizes",
            )
            .buckets(SIZE_BUCKETS.to_vec()),
            &["path"],
        )?;
        let response_size = HistogramVec::new(
            HistogramOpts::new(
                "server_client_api_http_response_size_histogram_bytes",
                "Client API response body sizes",
            )
            .buckets(SIZE_BUCKETS.to_vec()),
            &["path"],
        )?;
        let in_flight = IntGaugeVec::new(
            Opts::new(
                "server_client_api_http_in_flight_requests",
                "Client API requests being handled",
            ),
            &["path"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(request_size.clone()))?;
        registry.register(Box::new(response_size.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        Ok(Self {
            requests,
            duration,
            request_size,
            response_size,
            in_flight,
            paths: RwLock::new(HashMap::new()),
        })
    }

    /// The series of `path` (a route pattern or [`UNKNOWN_PATH`]).
    fn path(&self, path: &str) -> Arc<PathSeries> {
        if let Some(series) = self
            .paths
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(path)
        {
            return Arc::clone(series);
        }
        let mut paths = self.paths.write().unwrap_or_else(PoisonError::into_inner);
        let series = paths.entry(path.to_owned()).or_insert_with(|| {
            Arc::new(PathSeries {
                request_size: self.request_size.with_label_values(&[path]),
                response_size: self.response_size.with_label_values(&[path]),
                in_flight: self.in_flight.with_label_values(&[path]),
                duration: Default::default(),
            })
        });
        Arc::clone(series)
    }

    /// Counts `request` in the series of its path before it is handled; the returned record
    /// completes the count with the response.
    fn begin(&'static self, request: &Request) -> Begun {
        let matched = request.extensions().get::<MatchedPath>();
        let label = matched.map_or(UNKNOWN_PATH, MatchedPath::as_str);
        let series = self.path(label);
        series
            .request_size
            .observe(approximate_request_size(request) as f64);
        series.in_flight.inc();
        Begun {
            metrics: self,
            path: matched.cloned(),
            method: method_index(request.method()),
            series,
            start: Instant::now(),
        }
    }
}

/// A request counted as begun; [`Begun::end`] counts its response. Dropped without it (the
/// client went away), it leaves the in-flight gauge as it found it.
struct Begun {
    metrics: &'static HttpMetrics,
    path: Option<MatchedPath>,
    method: usize,
    series: Arc<PathSeries>,
    start: Instant,
}

impl Begun {
    fn end(self, response: Response) -> Response {
        let elapsed = self.start.elapsed().as_secs_f64();
        let path = self.path.as_ref().map_or(UNKNOWN_PATH, MatchedPath::as_str);
        let method = METHOD_LABELS[self.method];
        self.series.duration[self.method]
            .get_or_init(|| self.metrics.duration.with_label_values(&[method, path]))
            .observe(elapsed);
        self.metrics
            .requests
            .with_label_values(&[response.status().as_str(), method, path])
            .inc();
        let histogram = self.series.response_size.clone();
        response.map(|body| Body::new(CountedBody::new(body, histogram)))
    }
}

impl Drop for Begun {
    fn drop(&mut self) {
        self.series.in_flight.dec();
    }
}

/// `router` with every request (routed, fallback and wrong-method alike) counted in `metrics`.
pub fn instrument<S>(router: Router<S>, metrics: &'static HttpMetrics) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router.layer(HttpMetricsLayer { metrics })
}

/// The layer [`instrument`] adds to every route and fallback.
#[derive(Debug, Clone, Copy)]
struct HttpMetricsLayer {
    metrics: &'static HttpMetrics,
}

impl<S> tower::Layer<S> for HttpMetricsLayer {
    type Service = HttpMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpMetricsService {
            inner,
            metrics: self.metrics,
        }
    }
}

/// A route (or fallback) whose requests are counted.
#[derive(Debug, Clone)]
struct HttpMetricsService<S> {
    inner: S,
    metrics: &'static HttpMetrics,
}

impl<S> tower::Service<Request> for HttpMetricsService<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let begun = self.metrics.begin(&request);
        let future = self.inner.call(request);
        Box::pin(async move { Ok(begun.end(future.await?)) })
    }
}

/// The index of `method`'s label in the `method` labels.
fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::POST => 1,
        Method::PUT => 2,
        Method::DELETE => 3,
        Method::HEAD => 4,
        Method::OPTIONS => 5,
        Method::PATCH => 6,
        Method::CONNECT => 7,
        Method::TRACE => 8,
        _ => 9,
    }
}

/// The `method` label of `method`.
pub fn method_label(method: &Method) -> &'static str {
    METHOD_LABELS[method_index(method)]
}

/// The approximate size of `request` as Prometheus's Go instrumentation computes it (see the
/// module documentation).
pub fn approximate_request_size<B>(request: &axum::http::Request<B>) -> u64 {
    let target = request
        .uri()
        .path_and_query()
        .map_or(request.uri().path().len(), |p| p.as_str().len());
    let version = match request.version() {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "",
    };
    let mut size = target + request.method().as_str().len() + version.len();
    let mut host = None;
    for (name, value) in request.headers() {
        if name == header::HOST {
            host = Some(value.len());
        } else {
            size += name.as_str().len() + value.len();
        }
    }
    size += host.unwrap_or_else(|| request.uri().authority().map_or(0, |a| a.as_str().len()));
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    (size as u64).saturating_add(declared)
}

/// A response body that records its size once, when its last frame is handed out (or when it is
/// dropped early, with the bytes sent so far).
struct CountedBody {
    inner: Body,
    bytes: u64,
    histogram: Option<Histogram>,
}

impl CountedBody {
    fn new(inner: Body, histogram: Histogram) -> Self {
        let mut body = Self {
            inner,
            bytes: 0,
            histogram: Some(histogram),
        };
        // An empty body may never be polled.
        if body.inner.is_end_stream() {
            body.finish();
        }
        body
    }

    fn finish(&mut self) {
        if let Some(histogram) = self.histogram.take() {
            histogram.observe(self.bytes as f64);
        }
    }
}

impl HttpBody for CountedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                }
                if this.inner.is_end_stream() {
                    this.finish();
                }
            }
            Poll::Ready(None | Some(Err(_))) => this.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for CountedBody {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_the_standard_ones_share_one_label() {
        assert_eq!(method_label(&Method::GET), "get");
        assert_eq!(method_label(&Method::PATCH), "patch");
        let invented = Method::from_bytes(b"FROBNICATE").unwrap();
        assert_eq!(method_label(&invented), OTHER_METHOD);
    }

    #[test]
    fn request_size_counts_target_method_version_headers_host_and_length() {
        let request = axum::http::Request::builder()
            .method(Method::POST)
            .uri("/api/v2/manifest?x=1")
            .header(header::HOST, "localhost:4433")
            .header(header::CONTENT_LENGTH, "120")
            .body(())
            .unwrap();
        let expected = "/api/v2/manifest?x=1".len()
            + "POST".len()
            + "HTTP/1.1".len()
            + "content-length".len()
            + "120".len()
            + "localhost:4433".len()
            + 120;
        assert_eq!(approximate_request_size(&request), expected as u64);
    }

    #[test]
    fn the_host_of_an_http2_request_comes_from_its_authority() {
        let request = axum::http::Request::builder()
            .version(Version::HTTP_2)
            .uri("https://coordinator:4433/api/v2/status")
            .body(())
            .unwrap();
        let expected = "/api/v2/status".len() + "GET".len() + "HTTP/2.0".len() + 16;
        assert_eq!(approximate_request_size(&request), expected as u64);
    }
}
