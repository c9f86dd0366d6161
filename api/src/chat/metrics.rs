//! Chat's metrics (`livegate_api_chat_…`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use livegate_core::telemetry::Registry;

/// Labels of a closed connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CloseLabels {
    /// The close reason (`too_slow`, `idle`, `token_expired`, …, `client` when the client
    /// closed).
    pub reason: &'static str,
}

/// Chat's metrics.
#[derive(Debug, Clone, Default)]
pub struct ChatMetrics {
    /// Open connections.
    pub connections: Gauge,
    /// Connections closed, by reason.
    pub closed: Family<CloseLabels, Counter>,
    /// Messages this instance appended to room logs.
    pub messages: Counter,
    /// Messages not written to the database (queue full or the database failed).
    pub not_stored: Counter,
    /// Clears and deletes (from any instance) applied to this instance's queued rows.
    pub store_cuts: Counter,
}

impl ChatMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "chat_connections",
            "Open chat connections",
            metrics.connections.clone(),
        );
        registry.register(
            "chat_closed",
            "Chat connections closed, by reason",
            metrics.closed.clone(),
        );
        registry.register(
            "chat_messages",
            "Chat messages appended by this instance",
            metrics.messages.clone(),
        );
        registry.register(
            "chat_messages_not_stored",
            "Chat messages not written to the database",
            metrics.not_stored.clone(),
        );
        registry.register(
            "chat_store_cuts",
            "Chat clears and deletes applied to the rows this instance queued",
            metrics.store_cuts.clone(),
        );
        metrics
    }
}
