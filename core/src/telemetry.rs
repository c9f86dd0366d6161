//! Logging and metrics plumbing shared by the services.

use std::io::IsTerminal as _;

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::{Metric, Registry as PromRegistry};
use serde::Deserialize;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The `[log]` section every service shares.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `livegate_proxy=debug,info`.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: "info".to_owned(),
        }
    }
}

impl LogConfig {
    /// Checks that the filter parses.
    pub fn validate(&self, problems: &mut crate::config::Problems) {
        if let Err(err) = EnvFilter::try_new(&self.filter) {
            problems.add("log.filter", format!("not a valid filter: {err}"));
        }
    }
}

/// Installs the global `tracing` subscriber. `RUST_LOG`, when set, overrides the configured filter.
pub fn init_logging(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only help a person at a terminal; files and log shippers get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // A second initialisation (tests starting several services in one process) is harmless.
    let _ = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Content type of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A service's one metrics registry, whose every metric is named `livegate_<service>_…`.
///
/// ```
/// use prometheus_client::metrics::counter::Counter;
/// let mut registry = livegate_core::telemetry::Registry::with_prefix("recorder");
/// let uploads = Counter::<u64>::default();
/// registry.register("uploads", "Recordings uploaded", uploads.clone());
/// assert!(registry.render().contains("livegate_recorder_uploads_total"));
/// ```
#[derive(Debug)]
pub struct Registry {
    prefix: String,
    inner: PromRegistry,
}

impl Registry {
    /// A registry for `service` (`hooks`, `api`, …): metrics are named
    /// `livegate_<service>_<name>`. Characters other than ASCII letters, digits and `_` in
    /// the service name become `_`.
    pub fn with_prefix(service: &str) -> Self {
        let service: String = service
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        let prefix = format!("livegate_{service}");
        Self {
            inner: PromRegistry::with_prefix(prefix.clone()),
            prefix,
        }
    }

    /// The prefix of every metric: `livegate_<service>`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Registers `metric` as `livegate_<service>_<name>` (counters get `_total`).
    pub fn register(&mut self, name: &str, help: &str, metric: impl Metric) {
        self.inner.register(name, help, metric);
    }

    /// A part of the registry whose metrics are named `livegate_<service>_<part>_…` (for a
    /// component's own metrics: the bus, the database pool).
    pub fn part(&mut self, part: &str) -> &mut PromRegistry {
        self.inner.sub_registry_with_prefix(part)
    }

    /// The underlying registry, for code written against `prometheus_client`.
    pub fn inner_mut(&mut self) -> &mut PromRegistry {
        &mut self.inner
    }

    /// Everything in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.inner);
        out
    }
}
