//! gRPC server metrics of the Marble API, as a tower layer ([`GrpcMetricsLayer`]) added to the
//! tonic server only when `EDG_COORDINATOR_PROMETHEUS_ADDR` is set.
//!
//! The names and labels are those of go-grpc-middleware's Prometheus provider, which MarbleRun
//! uses; that MarbleRun exposes exactly these is UNCONFIRMED (the reference infers it from the
//! library):
//!
//! | name | labels |
//! |---|---|
//! | `grpc_server_started_total` | `grpc_type`, `grpc_service`, `grpc_method` |
//! | `grpc_server_handled_total` | the same and `grpc_code` |
//! | `grpc_server_msg_received_total` | `grpc_type`, `grpc_service`, `grpc_method` |
//! | `grpc_server_msg_sent_total` | `grpc_type`, `grpc_service`, `grpc_method` |
//!
//! All are counters. `grpc_code` is the status name as Go spells it (`OK`,
//! `FailedPrecondition`, ...). Messages are counted from the length-prefixed gRPC framing of the
//! request and response bodies. The series of the methods Quarry serves ([`METHODS`]) exist from
//! start at 0 (every code for `handled`); a call to any other path is counted under the single
//! label value [`UNKNOWN`] for type, service and method, so invented paths cannot add series.
//! A call whose response ends without a status counts as `Unknown`; one abandoned before its
//! status (the client went away) as `Canceled`.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use axum::body::Bytes;
use axum::http::{Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

/// The label value of type, service and method for paths that name no served method.
pub const UNKNOWN: &str = "unknown";

/// The methods served: (`grpc_type`, `grpc_service`, `grpc_method`).
pub const METHODS: [[&str; 3]; 1] = [["unary", "rpc.Marble", "Activate"]];

/// The gRPC status names by code number, as `grpc_code` spells them.
pub const CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// The status codes `Canceled`, `Unknown` and `Internal` by number.
const CANCELED: usize = 1;
const UNKNOWN_CODE: usize = 2;
const INTERNAL: usize = 13;

/// The Marble API's gRPC server metrics.
#[derive(Debug)]
pub struct GrpcMetrics {
    families: Families,
    /// The series of each of [`METHODS`], in its order.
    served: Vec<Counters>,
    /// The series of every other path, created with the first such call.
    unknown: OnceLock<Counters>,
}

/// The four counter families.
#[derive(Debug, Clone)]
struct Families {
    started: IntCounterVec,
    handled: IntCounterVec,
    received: IntCounterVec,
    sent: IntCounterVec,
}

/// The series of one method.
#[derive(Debug)]
struct Counters {
    started: IntCounter,
    received: IntCounter,
    sent: IntCounter,
    /// By code number, as [`CODES`].
    handled: Vec<IntCounter>,
}

impl Counters {
    fn new(families: &Families, labels: [&str; 3]) -> Result<Self, prometheus::Error> {
        let [kind, service, method] = labels;
        let handled = CODES
            .iter()
            .map(|code| {
                families
                    .handled
                    .get_metric_with_label_values(&[kind, service, method, code])
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            started: families.started.get_metric_with_label_values(&labels)?,
            received: families.received.get_metric_with_label_values(&labels)?,
            sent: families.sent.get_metric_with_label_values(&labels)?,
            handled,
        })
    }
}

impl GrpcMetrics {
    /// Creates the metrics, registers them in `registry` and creates the series of [`METHODS`].
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        const LABELS: [&str; 3] = ["grpc_type", "grpc_service", "grpc_method"];
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let counter = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(counter.clone()))?;
            Ok::<_, prometheus::Error>(counter)
        };
        let families = Families {
            started: counter(
                "grpc_server_started_total",
                "Total number of RPCs started on the server.",
                &LABELS,
            )?,
            handled: counter(
                "grpc_server_handled_total",
                "Total number of RPCs completed on the server, regardless of success or failure.",
                &["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
            )?,
            received: counter(
                "grpc_server_msg_received_total",
                "Total number of RPC stream messages received on the server.",
                &LABELS,
            )?,
            sent: counter(
                "grpc_server_msg_sent_total",
                "Total number of gRPC stream messages sent by the server.",
                &LABELS,
            )?,
        };
        let served = METHODS
            .iter()
            .map(|labels| Counters::new(&families, *labels))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            families,
            served,
            unknown: OnceLock::new(),
        })
    }

    /// The series of a call to `path`.
    fn counters(&self, path: &str) -> Option<&Counters> {
        match method_index(path) {
            Some(index) => self.served.get(index),
            None => match self.unknown.get() {
                Some(counters) => Some(counters),
                None => match Counters::new(&self.families, [UNKNOWN; 3]) {
                    Ok(counters) => Some(self.unknown.get_or_init(|| counters)),
                    Err(error) => {
                        tracing::error!(%error, "grpc metrics of unknown methods");
                        None
                    }
                },
            },
        }
    }
}

/// The index in [`METHODS`] of the method `path` names.
fn method_index(path: &str) -> Option<usize> {
    let named = path.strip_prefix('/').and_then(|rest| rest.split_once('/'));
    METHODS
        .iter()
        .position(|[_, service, method]| named == Some((*service, *method)))
}

/// The labels (`grpc_type`, `grpc_service`, `grpc_method`) of a request to `path`.
pub fn labels_of(path: &str) -> [&'static str; 3] {
    method_index(path).map_or([UNKNOWN; 3], |index| METHODS[index])
}

/// The number of the gRPC status code `value` (a `grpc-status` header value); `Unknown` for
/// anything that is not one.
fn code_number(value: &[u8]) -> usize {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.trim().parse::<usize>().ok())
        .filter(|code| *code < CODES.len())
        .unwrap_or(UNKNOWN_CODE)
}

/// The name of the gRPC status code `value` (a `grpc-status` header value).
pub fn code_name(value: &[u8]) -> &'static str {
    CODES[code_number(value)]
}

/// The tower layer counting every call in [`GrpcMetrics`].
#[derive(Debug, Clone, Copy)]
pub struct GrpcMetricsLayer {
    metrics: &'static GrpcMetrics,
}

impl GrpcMetricsLayer {
    /// A layer counting in `metrics`.
    pub fn new(metrics: &'static GrpcMetrics) -> Self {
        Self { metrics }
    }
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService {
            inner,
            metrics: self.metrics,
        }
    }
}

/// The service [`GrpcMetricsLayer`] wraps around the gRPC routes.
#[derive(Debug, Clone)]
pub struct GrpcMetricsService<S> {
    inner: S,
    metrics: &'static GrpcMetrics,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower::Service<Request<tonic::body::Body>> for GrpcMetricsService<S>
where
    S: tower::Service<Request<tonic::body::Body>, Response = Response<B>>,
    S::Future: Send + 'static,
    B: HttpBody<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<tonic::codegen::StdError>,
{
    type Response = Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<tonic::body::Body>) -> Self::Future {
        let metrics: &'static GrpcMetrics = self.metrics;
        let Some(counters) = metrics.counters(request.uri().path()) else {
            let future = self.inner.call(request);
            return Box::pin(async move { Ok(future.await?.map(tonic::body::Body::new)) });
        };
        counters.started.inc();
        let request = request
            .map(|body| tonic::body::Body::new(Counted::new(body, &counters.received, None)));
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            let (parts, body) = response.into_parts();
            let ended = body.is_end_stream();
            let mut body = Counted::new(body, &counters.sent, Some(counters.handled.as_slice()));
            // A trailers-only answer (every refusal) carries its status in the headers.
            match parts.headers.get("grpc-status") {
                Some(status) => body.status(code_number(status.as_bytes())),
                None if ended => body.status(UNKNOWN_CODE),
                None => {}
            }
            Ok(Response::from_parts(parts, tonic::body::Body::new(body)))
        })
    }
}

/// A body whose complete gRPC messages are counted, and, for a response, whose final status is
/// counted once in `handled` (by code number).
struct Counted<B> {
    inner: B,
    messages: MessageCounter,
    counter: &'static IntCounter,
    handled: Option<&'static [IntCounter]>,
}

impl<B: HttpBody<Data = Bytes> + Unpin> Counted<B> {
    fn new(inner: B, counter: &'static IntCounter, handled: Option<&'static [IntCounter]>) -> Self {
        Self {
            inner,
            messages: MessageCounter::default(),
            counter,
            handled,
        }
    }
}

impl<B> Counted<B> {
    fn status(&mut self, code: usize) {
        if let Some(handled) = self.handled.take()
            && let Some(counter) = handled.get(code)
        {
            counter.inc();
        }
    }
}

impl<B: HttpBody<Data = Bytes> + Unpin> HttpBody for Counted<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.counter.inc_by(this.messages.feed(data));
                } else if let Some(trailers) = frame.trailers_ref() {
                    let code = trailers
                        .get("grpc-status")
                        .map_or(UNKNOWN_CODE, |v| code_number(v.as_bytes()));
                    this.status(code);
                }
            }
            Poll::Ready(None) => this.status(UNKNOWN_CODE),
            Poll::Ready(Some(Err(_))) => this.status(INTERNAL),
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

impl<B> Drop for Counted<B> {
    fn drop(&mut self) {
        self.status(CANCELED);
    }
}

/// Counts complete messages in a stream of gRPC length-prefixed frames (one flag byte, a
/// four-byte big-endian length, the message).
#[derive(Debug, Default)]
struct MessageCounter {
    header: [u8; 5],
    header_len: usize,
    remaining: u64,
}

impl MessageCounter {
    /// Consumes `data` and returns how many messages it completed.
    fn feed(&mut self, mut data: &[u8]) -> u64 {
        let mut complete = 0;
        while !data.is_empty() {
            if self.remaining > 0 {
                let take =
                    usize::try_from(self.remaining).map_or(data.len(), |r| r.min(data.len()));
                data = &data[take..];
                self.remaining -= take as u64;
                if self.remaining == 0 {
                    complete += 1;
                }
                continue;
            }
            let take = (5 - self.header_len).min(data.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&data[..take]);
            self.header_len += take;
            data = &data[take..];
            if self.header_len == 5 {
                self.header_len = 0;
                let [_, a, b, c, d] = self.header;
                self.remaining = u64::from(u32::from_be_bytes([a, b, c, d]));
                if self.remaining == 0 {
                    complete += 1;
                }
            }
        }
        complete
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: u32) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&len.to_be_bytes());
        out.extend(std::iter::repeat_n(7u8, len as usize));
        out
    }

    #[test]
    fn messages_are_counted_across_any_split_of_the_stream() {
        let mut stream = frame(3);
        stream.extend(frame(0));
        stream.extend(frame(300));
        for chunk in [1, 2, 5, 7, 64, stream.len()] {
            let mut counter = MessageCounter::default();
            let total: u64 = stream.chunks(chunk).map(|c| counter.feed(c)).sum();
            assert_eq!(total, 3, "chunks of {chunk}");
        }
        let mut counter = MessageCounter::default();
        assert_eq!(counter.feed(&stream[..stream.len() - 1]), 2);
        assert_eq!(counter.feed(&stream[stream.len() - 1..]), 1);
    }

    #[test]
    fn only_served_methods_get_their_own_labels() {
        assert_eq!(
            labels_of("/rpc.Marble/Activate"),
            ["unary", "rpc.Marble", "Activate"]
        );
        for path in [
            "/rpc.Marble/Other",
            "/x/Activate",
            "/rpc.Marble/Activate/x",
            "",
            "/",
        ] {
            assert_eq!(labels_of(path), [UNKNOWN; 3], "{path}");
        }
    }

    #[test]
    fn status_codes_are_named_as_go_names_them() {
        assert_eq!(code_name(b"0"), "OK");
        assert_eq!(code_name(b"9"), "FailedPrecondition");
        assert_eq!(code_name(b"16"), "Unauthenticated");
        assert_eq!(code_name(b"17"), "Unknown");
        assert_eq!(code_name(b"x"), "Unknown");
    }
}
