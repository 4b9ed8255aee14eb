//! Prometheus metrics and the activation event log, served over plain HTTP on
//! `EDG_COORDINATOR_PROMETHEUS_ADDR` (listener name `prometheus`): `GET /metrics` in the
//! Prometheus text format, `GET /events` as a JSON array of activations since start.
//!
//! Metric names follow MarbleRun where its reference confirms them:
//!
//! | name | type | meaning |
//! |---|---|---|
//! | `coordinator_version_info{version,commit}` | gauge (0) | the build |
//! | `coordinator_state` | gauge | the state number of `/api/v2/status` |
//! | `coordinator_marble_activations_total{type,uuid}` | counter | activation attempts |
//! | `coordinator_marble_activations_success_total{type,uuid}` | counter | successful activations |
//!
//! and Quarry's own:
//!
//! | name | type | meaning |
//! |---|---|---|
//! | `quarry_coordinator_marble_activations_unlabelled_total` | counter | attempts without a series of their own |
//! | `quarry_coordinator_user_operations_total{operation}` | counter | state changes made by users |
//! | `quarry_hsm_key_releases_total` | counter | successful HSM key releases |
//! | `quarry_hsm_key_release_failures_total{class}` | counter | failed releases by class |
//! | `quarry_hsm_last_key_release_seconds` | gauge | duration of the last release attempt |
//!
//! With the listener enabled, MarbleRun's per-path Client API metrics ([`http`]) and the
//! Marble API's gRPC server metrics ([`grpc`]) are collected too; without it their layers are
//! not installed.
//!
//! The Marble API reports activations through [`global`]; the core's user operations count
//! themselves the same way. Nothing here holds secret values.
//!
//! Bounds (MarbleRun has none): an activation attempt's type and UUID are whatever any client of
//! the Marble API sends, before anything is verified, so they get a series of their own only if
//! the UUID parses, the type has at most [`MAX_TYPE_LABEL_BYTES`] bytes, and fewer than
//! [`MAX_ATTEMPT_SERIES`] pairs that never activated have series; every other attempt counts in
//! `quarry_coordinator_marble_activations_unlabelled_total`. A pair that activated successfully
//! always has its series (the attempt that first succeeded may have counted as unlabelled).
//! `/events` keeps the [`MAX_EVENTS`] most recent activations.

pub mod grpc;
pub mod http;

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus::{
    Encoder, Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use serde::Serialize;
use tokio::net::TcpListener;

use crate::core::Core;

/// The most (type, UUID) pairs without a successful activation that get series of their own in
/// `coordinator_marble_activations_total`.
pub const MAX_ATTEMPT_SERIES: usize = 1000;

/// The longest Marble type, in bytes, that an attempt's series may carry as its label.
pub const MAX_TYPE_LABEL_BYTES: usize = 256;

/// The most activations `/events` keeps (the most recent ones).
pub const MAX_EVENTS: usize = 1000;

/// One successful activation, as `/events` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct ActivationEvent {
    /// RFC 3339 time.
    pub time: String,
    /// What was activated.
    pub activation: Activation,
}

/// The activation part of an [`ActivationEvent`].
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Activation {
    /// The Marble type.
    pub marble_type: String,
    /// The Marble's UUID.
    pub uuid: String,
    /// The quote the Marble presented, base64.
    pub quote: String,
}

/// The Coordinator's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    state: IntGauge,
    activations: IntCounterVec,
    activations_success: IntCounterVec,
    unlabelled_attempts: IntCounter,
    pairs: Mutex<Pairs>,
    user_operations: IntCounterVec,
    releases: IntCounter,
    release_failures: IntCounterVec,
    last_release: Gauge,
    seen: Mutex<crate::hsm::ReleaseStats>,
    events: Mutex<VecDeque<ActivationEvent>>,
    http: http::HttpMetrics,
    grpc: grpc::GrpcMetrics,
}

/// The (type, UUID) pairs with series in `coordinator_marble_activations_total`.
#[derive(Debug, Default)]
struct Pairs {
    /// Pairs that activated successfully (no limit: each took a verified activation).
    activated: HashSet<(String, String)>,
    /// Pairs only attempted, at most [`MAX_ATTEMPT_SERIES`].
    attempted: HashSet<(String, String)>,
}

impl Pairs {
    /// Whether an attempt of (`marble_type`, `uuid`) is counted in its own series.
    fn admit_attempt(&mut self, marble_type: &str, uuid: &str) -> bool {
        let pair = (marble_type.to_owned(), uuid.to_owned());
        if self.activated.contains(&pair) || self.attempted.contains(&pair) {
            return true;
        }
        let well_formed =
            marble_type.len() <= MAX_TYPE_LABEL_BYTES && uuid::Uuid::parse_str(uuid).is_ok();
        if well_formed && self.attempted.len() < MAX_ATTEMPT_SERIES {
            self.attempted.insert(pair);
            return true;
        }
        false
    }

    /// Records that (`marble_type`, `uuid`) activated; it keeps its series from now on.
    fn activated(&mut self, marble_type: &str, uuid: &str) {
        let pair = (marble_type.to_owned(), uuid.to_owned());
        self.attempted.remove(&pair);
        self.activated.insert(pair);
    }
}

/// The classes of failed releases, in the order of [`crate::hsm::ReleaseStats::failed`].
const FAILURE_CLASSES: [&str; 3] = ["transient", "needs_operator", "definite"];

impl Metrics {
    /// A fresh set of metrics in its own registry (no process or runtime collectors).
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let version = IntGaugeVec::new(
            Opts::new("coordinator_version_info", "Version of the Coordinator"),
            &["version", "commit"],
        )?;
        version
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                option_env!("QUARRY_COMMIT").unwrap_or(""),
            ])
            .set(0);
        let state = IntGauge::new("coordinator_state", "State of the Coordinator")?;
        let activations = IntCounterVec::new(
            Opts::new(
                "coordinator_marble_activations_total",
                "Number of Marble activation attempts",
            ),
            &["type", "uuid"],
        )?;
        let activations_success = IntCounterVec::new(
            Opts::new(
                "coordinator_marble_activations_success_total",
                "Number of successful Marble activations",
            ),
            &["type", "uuid"],
        )?;
        let unlabelled_attempts = IntCounter::new(
            "quarry_coordinator_marble_activations_unlabelled_total",
            "Marble activation attempts counted without a series of their own (malformed or too \
             many distinct type and uuid labels)",
        )?;
        let user_operations = IntCounterVec::new(
            Opts::new(
                "quarry_coordinator_user_operations_total",
                "State changes made by users of the Client API",
            ),
            &["operation"],
        )?;
        let releases = IntCounter::new(
            "quarry_hsm_key_releases_total",
            "Successful HSM key releases since start",
        )?;
        let release_failures = IntCounterVec::new(
            Opts::new(
                "quarry_hsm_key_release_failures_total",
                "Failed HSM key releases since start, by class",
            ),
            &["class"],
        )?;
        let last_release = Gauge::new(
            "quarry_hsm_last_key_release_seconds",
            "Duration of the last HSM key release attempt",
        )?;
        registry.register(Box::new(version))?;
        registry.register(Box::new(state.clone()))?;
        registry.register(Box::new(activations.clone()))?;
        registry.register(Box::new(activations_success.clone()))?;
        registry.register(Box::new(unlabelled_attempts.clone()))?;
        registry.register(Box::new(user_operations.clone()))?;
        registry.register(Box::new(releases.clone()))?;
        registry.register(Box::new(release_failures.clone()))?;
        registry.register(Box::new(last_release.clone()))?;
        for class in FAILURE_CLASSES {
            release_failures.with_label_values(&[class]);
        }
        let http = http::HttpMetrics::new(&registry)?;
        let grpc = grpc::GrpcMetrics::new(&registry)?;
        Ok(Self {
            registry,
            state,
            activations,
            activations_success,
            unlabelled_attempts,
            pairs: Mutex::new(Pairs::default()),
            user_operations,
            releases,
            release_failures,
            last_release,
            seen: Mutex::new(crate::hsm::ReleaseStats::default()),
            events: Mutex::new(VecDeque::new()),
            http,
            grpc,
        })
    }

    /// The Client API's per-path HTTP metrics.
    pub fn http(&self) -> &http::HttpMetrics {
        &self.http
    }

    /// The Marble API's gRPC server metrics.
    pub fn grpc(&self) -> &grpc::GrpcMetrics {
        &self.grpc
    }

    /// Counts an activation attempt (`marble_type` and `uuid` as the client sent them): in its
    /// own series if the pair is admitted (see the module documentation), otherwise unlabelled.
    pub fn activation_attempt(&self, marble_type: &str, uuid: &str) {
        let admitted = self
            .pairs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit_attempt(marble_type, uuid);
        if admitted {
            self.activations
                .with_label_values(&[marble_type, uuid])
                .inc();
        } else {
            self.unlabelled_attempts.inc();
        }
    }

    /// Counts a successful activation and records its event (the oldest event goes when
    /// [`MAX_EVENTS`] are kept).
    pub fn activation_success(&self, marble_type: &str, uuid: &str, quote: &[u8]) {
        use base64::Engine;
        self.pairs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .activated(marble_type, uuid);
        self.activations_success
            .with_label_values(&[marble_type, uuid])
            .inc();
        let time = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let mut events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        if events.len() >= MAX_EVENTS {
            events.pop_front();
        }
        events.push_back(ActivationEvent {
            time,
            activation: Activation {
                marble_type: marble_type.to_owned(),
                uuid: uuid.to_owned(),
                quote: base64::engine::general_purpose::STANDARD.encode(quote),
            },
        });
    }

    /// Counts a state change made by a user (`operation` is a fixed name such as
    /// `secrets_set`).
    pub fn user_operation(&self, operation: &str) {
        self.user_operations.with_label_values(&[operation]).inc();
    }

    /// The activation events kept, oldest first.
    pub fn events(&self) -> Vec<ActivationEvent> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// The metrics in the Prometheus text format, with the gauges read from `core` now.
    pub fn render(&self, core: &Core) -> Result<String, prometheus::Error> {
        self.state.set(i64::from(core.state().code()));
        let stats = core.hsm().stats();
        {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            self.releases
                .inc_by(stats.released.saturating_sub(seen.released));
            for (i, class) in FAILURE_CLASSES.iter().enumerate() {
                self.release_failures
                    .with_label_values(&[class])
                    .inc_by(stats.failed[i].saturating_sub(seen.failed[i]));
            }
            *seen = stats.clone();
        }
        self.last_release.set(stats.last_duration.as_secs_f64());
        let mut out = Vec::new();
        prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        String::from_utf8(out).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

/// The process's metrics (created on first use).
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        // Registering distinct, valid names in a fresh registry cannot fail.
        Metrics::new().unwrap_or_else(|e| panic!("metrics registry: {e}"))
    })
}

/// Serves `/metrics` and `/events` over plain HTTP on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, core: Arc<Core>) -> std::io::Result<()> {
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/events", get(events))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .with_state(core);
    axum::serve(listener, router).await
}

async fn metrics(State(core): State<Arc<Core>>) -> Response {
    match global().render(&core) {
        Ok(text) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response(),
        Err(error) => {
            tracing::error!(%error, "rendering metrics failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn events() -> Response {
    axum::Json(global().events()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";

    fn text(metrics: &Metrics) -> String {
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&metrics.registry.gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    fn attempt_series(metrics: &Metrics) -> usize {
        text(metrics)
            .lines()
            .filter(|l| l.starts_with("coordinator_marble_activations_total{"))
            .count()
    }

    #[test]
    fn invented_activation_labels_cannot_add_series_without_bound() {
        let metrics = Metrics::new().unwrap();
        // A client invents a new (type, uuid) pair with every attempt.
        let total = MAX_ATTEMPT_SERIES + 500;
        for i in 0..total {
            let uuid = uuid::Uuid::from_u128(i as u128 + 1).to_string();
            metrics.activation_attempt(&format!("type{i}"), &uuid);
        }
        assert_eq!(attempt_series(&metrics), MAX_ATTEMPT_SERIES);
        assert_eq!(metrics.unlabelled_attempts.get(), 500);
        // Malformed labels never get a series, even below the limit.
        let fresh = Metrics::new().unwrap();
        fresh.activation_attempt("web", "not-a-uuid");
        fresh.activation_attempt(&"t".repeat(MAX_TYPE_LABEL_BYTES + 1), UUID);
        fresh.activation_attempt(&"t".repeat(MAX_TYPE_LABEL_BYTES), UUID);
        assert_eq!(attempt_series(&fresh), 1);
        assert_eq!(fresh.unlabelled_attempts.get(), 2);
        assert!(!text(&fresh).contains("not-a-uuid"));

        // A pair that activates keeps its series although the limit is reached, and its
        // later attempts count there.
        metrics.activation_attempt("web", UUID);
        assert_eq!(metrics.unlabelled_attempts.get(), 501);
        metrics.activation_success("web", UUID, b"quote");
        metrics.activation_attempt("web", UUID);
        assert_eq!(metrics.unlabelled_attempts.get(), 501);
        assert_eq!(
            metrics.activations.with_label_values(&["web", UUID]).get(),
            1
        );
        assert_eq!(
            metrics
                .activations_success
                .with_label_values(&["web", UUID])
                .get(),
            1
        );
        // Pairs already counted keep counting.
        let first = uuid::Uuid::from_u128(1).to_string();
        metrics.activation_attempt("type0", &first);
        assert_eq!(
            metrics
                .activations
                .with_label_values(&["type0", &first])
                .get(),
            2
        );
        assert_eq!(metrics.unlabelled_attempts.get(), 501);
    }

    #[test]
    fn events_keep_the_most_recent_activations() {
        let metrics = Metrics::new().unwrap();
        for i in 0..MAX_EVENTS + 10 {
            metrics.activation_success("web", &format!("{i}"), b"q");
        }
        let events = metrics.events();
        assert_eq!(events.len(), MAX_EVENTS);
        assert_eq!(events[0].activation.uuid, "10");
        assert_eq!(
            events[MAX_EVENTS - 1].activation.uuid,
            format!("{}", MAX_EVENTS + 9)
        );
    }
}
