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

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{MatchedPath, Request};
use axum::http::{Method, Version, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};

/// The `path` label of requests no route matches.
pub const UNKNOWN_PATH: &str = "unknown";

/// The `method` label of methods outside the standard ones.
pub const OTHER_METHOD: &str = "other";

/// Buckets of the duration histogram, in seconds.
pub const DURATION_BUCKETS: [f64; 7] = [0.005, 0.025, 0.1, 0.5, 1.0, 2.5, 5.0];

/// Buckets of the request and response size histograms, in bytes.
pub const SIZE_BUCKETS: [f64; 5] = [100.0, 1000.0, 2000.0, 5000.0, 10000.0];

/// The Client API's HTTP metrics.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    request_size: HistogramVec,
    response_size: HistogramVec,
    in_flight: IntGaugeVec,
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
        })
    }

    async fn track(&self, request: Request, next: Next) -> Response {
        let matched = request.extensions().get::<MatchedPath>().cloned();
        let path = matched.as_ref().map_or(UNKNOWN_PATH, MatchedPath::as_str);
        let method = method_label(request.method());
        self.request_size
            .with_label_values(&[path])
            .observe(approximate_request_size(&request) as f64);
        let in_flight = InFlight::enter(&self.in_flight, path);
        let start = Instant::now();
        let response = next.run(request).await;
        let elapsed = start.elapsed().as_secs_f64();
        drop(in_flight);
        self.duration
            .with_label_values(&[method, path])
            .observe(elapsed);
        self.requests
            .with_label_values(&[response.status().as_str(), method, path])
            .inc();
        let histogram = self.response_size.with_label_values(&[path]);
        response.map(|body| Body::new(CountedBody::new(body, histogram)))
    }
}

/// `router` with every request (routed, fallback and wrong-method alike) counted in `metrics`.
pub fn instrument<S>(router: Router<S>, metrics: &'static HttpMetrics) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router.layer(axum::middleware::from_fn(
        move |request: Request, next: Next| metrics.track(request, next),
    ))
}

/// The `method` label of `method`.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "get",
        Method::POST => "post",
        Method::PUT => "put",
        Method::DELETE => "delete",
        Method::HEAD => "head",
        Method::OPTIONS => "options",
        Method::PATCH => "patch",
        Method::CONNECT => "connect",
        Method::TRACE => "trace",
        _ => OTHER_METHOD,
    }
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

/// Decrements the in-flight gauge when the request is done or abandoned.
struct InFlight(prometheus::IntGauge);

impl InFlight {
    fn enter(gauges: &IntGaugeVec, path: &str) -> Self {
        let gauge = gauges.with_label_values(&[path]);
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
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
