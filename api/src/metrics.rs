//! The service's Prometheus metrics, registered into a registry the caller owns, and the
//! middleware that counts and times every request.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

use livegate_core::telemetry::Registry;

use crate::error::ApiError;
use crate::state::AppState;

/// Labels of a handled request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    /// `METHOD /route/{pattern}` (`unmatched` for no route: the raw path is unbounded).
    pub route: String,
    /// The status code.
    pub status: u16,
}

/// Labels of a route's latency.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RouteLabels {
    /// As in [`RequestLabels::route`].
    pub route: String,
}

/// Labels of a publisher kick.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct KickLabels {
    /// `srs`, `zlmediakit`, `nginx-rtmp` or `unknown`.
    pub origin: String,
    /// `kicked`, `failed` or `no_control` (no `[[origins]]` entry for the stream's origin).
    pub outcome: &'static str,
}

/// Labels of a refused login.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct LoginLabels {
    /// `ok`, `bad_credentials` or `rate_limited`.
    pub outcome: &'static str,
}

/// Labels of a payment callback.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CallbackLabels {
    /// `paid`, `failed`, `refused`, `ignored`, `duplicate` or `rejected` (not trusted:
    /// signature or format).
    pub outcome: &'static str,
}

/// Labels of the order count.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OrderLabels {
    /// `pending`, `paid`, `failed` or `expired`.
    pub status: String,
}

/// Every metric of the API.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Requests answered, by route and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Time to answer, by route, in seconds.
    pub request_duration: Family<RouteLabels, Histogram>,
    /// Play tokens issued.
    pub play_tokens: Counter,
    /// Logins, by outcome.
    pub logins: Family<LoginLabels, Counter>,
    /// Publisher kicks, by origin kind and outcome.
    pub kicks: Family<KickLabels, Counter>,
    /// Payment callbacks, by outcome.
    pub callbacks: Family<CallbackLabels, Counter>,
    /// Gift events relayed from the outbox to the bus.
    pub gifts_relayed: Counter,
    /// Orders by status, as last counted.
    pub orders: Family<OrderLabels, prometheus_client::metrics::gauge::Gauge>,
    /// Audit entries the database did not take.
    pub audit_unwritten: Counter,
    /// Live feeds (`GET /admin/live/events`) open on this instance.
    pub live_feeds: prometheus_client::metrics::gauge::Gauge,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry` (`livegate_api_…`).
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(|| {
                Histogram::new([
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
                ])
            }),
            play_tokens: Counter::default(),
            logins: Family::default(),
            kicks: Family::default(),
            callbacks: Family::default(),
            gifts_relayed: Counter::default(),
            orders: Family::default(),
            audit_unwritten: Counter::default(),
            live_feeds: prometheus_client::metrics::gauge::Gauge::default(),
        };
        registry.register(
            "requests",
            "Requests answered, by route and status",
            metrics.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to answer a request, by route",
            metrics.request_duration.clone(),
        );
        registry.register(
            "play_tokens_issued",
            "Play tokens issued",
            metrics.play_tokens.clone(),
        );
        registry.register("logins", "Logins, by outcome", metrics.logins.clone());
        registry.register(
            "kicks",
            "Publisher kicks, by origin kind and outcome",
            metrics.kicks.clone(),
        );
        registry.register(
            "payment_callbacks",
            "Payment callbacks, by outcome",
            metrics.callbacks.clone(),
        );
        registry.register(
            "orders",
            "Orders by status, counted every 15 seconds",
            metrics.orders.clone(),
        );
        registry.register(
            "gifts_relayed",
            "Gift events relayed from the outbox to the bus",
            metrics.gifts_relayed.clone(),
        );
        registry.register(
            "audit_unwritten",
            "Audit entries the database did not take",
            metrics.audit_unwritten.clone(),
        );
        registry.register(
            "live_feeds",
            "Live feeds open on this instance",
            metrics.live_feeds.clone(),
        );
        metrics
    }
}

/// Counts and times every request, and answers 503 past `server.request_timeout_ms`.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = match request.extensions().get::<MatchedPath>() {
        Some(path) => format!("{} {}", request.method(), path.as_str()),
        None => "unmatched".to_owned(),
    };
    let started = Instant::now();
    let timeout = Duration::from_millis(state.config().server.request_timeout_ms);
    let response = match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(route = %route, timeout_ms = timeout.as_millis(), "request timed out");
            ApiError::unavailable().into_response()
        }
    };
    let metrics = state.metrics();
    metrics
        .requests
        .get_or_create(&RequestLabels {
            route: route.clone(),
            status: response.status().as_u16(),
        })
        .inc();
    metrics
        .request_duration
        .get_or_create(&RouteLabels { route })
        .observe(started.elapsed().as_secs_f64());
    response
}
