//! The service's Prometheus metrics, registered into a registry the caller owns.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use livegate_core::telemetry::Registry;

/// Labels of a handled callback.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct HookLabels {
    /// `srs`, `zlmediakit`, `nginx-rtmp` or `unknown`.
    pub dialect: &'static str,
    /// The model event: `publish_start`, `publish_stop`, `play_start`, …
    pub event: &'static str,
    /// `accepted`, `refused`, `bad_request`, `forbidden` or `unavailable`.
    pub outcome: &'static str,
}

/// Labels of a refused publish or play.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why it was refused.
    pub reason: &'static str,
}

/// Every metric of the hooks service.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Callbacks handled, by dialect, event and outcome.
    pub hooks: Family<HookLabels, Counter>,
    /// Time to answer a callback, in seconds.
    pub hook_duration: Histogram,
    /// Publishes refused, by reason.
    pub publish_refused: Family<ReasonLabels, Counter>,
    /// Plays refused, by reason.
    pub play_refused: Family<ReasonLabels, Counter>,
    /// Bus writes that failed and will be retried.
    pub bus_retries: Counter,
    /// Bus writes dropped because the outbox was full or shutting down.
    pub bus_dropped: Counter,
    /// Bus writes waiting in the outbox.
    pub outbox_depth: Gauge,
    /// Live keys repaired by the resync from the database.
    pub bus_resynced: Counter,
    /// Streams closed by reconciliation (origin dropped them or restarted).
    pub reconcile_closed: Counter,
    /// Reconciliation passes that failed to reach the origin's API.
    pub reconcile_errors: Counter,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry` (`livegate_hooks_…`).
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            hooks: Family::default(),
            hook_duration: Histogram::new([
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            publish_refused: Family::default(),
            play_refused: Family::default(),
            bus_retries: Counter::default(),
            bus_dropped: Counter::default(),
            outbox_depth: Gauge::default(),
            bus_resynced: Counter::default(),
            reconcile_closed: Counter::default(),
            reconcile_errors: Counter::default(),
        };
        registry.register(
            "callbacks",
            "Callbacks handled, by dialect, event and outcome",
            metrics.hooks.clone(),
        );
        registry.register(
            "callback_duration_seconds",
            "Time to answer a callback",
            metrics.hook_duration.clone(),
        );
        registry.register(
            "publish_refused",
            "Publishes refused, by reason",
            metrics.publish_refused.clone(),
        );
        registry.register(
            "play_refused",
            "Plays refused, by reason",
            metrics.play_refused.clone(),
        );
        registry.register(
            "bus_retries",
            "Bus writes that failed and will be retried",
            metrics.bus_retries.clone(),
        );
        registry.register(
            "bus_dropped",
            "Bus writes dropped because the outbox was full or shutting down",
            metrics.bus_dropped.clone(),
        );
        registry.register(
            "outbox_depth",
            "Bus writes waiting in the outbox",
            metrics.outbox_depth.clone(),
        );
        registry.register(
            "bus_resynced",
            "Live keys repaired by the resync from the database",
            metrics.bus_resynced.clone(),
        );
        registry.register(
            "reconcile_closed_streams",
            "Streams closed by reconciliation",
            metrics.reconcile_closed.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciliation passes that failed to reach the origin's API",
            metrics.reconcile_errors.clone(),
        );
        metrics
    }
}
