//! The other services' numbers for the health page, scraped from their admin `/metrics`
//! (Prometheus text, parsed by `prometheus-parse`) at the URLs `[console]` names.
//!
//! Rates and latency quantiles are over the time since this instance's previous scrape of
//! the same service (the page polls), and over the service's lifetime on the first one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use prometheus_parse::{Sample, Scrape, Value};
use serde::Serialize;

use super::config::ConsoleConfig;

/// Which service a scrape is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// The proxy (`livegate_proxy_…`).
    Proxy,
    /// The hooks service (`livegate_hooks_…`).
    Hooks,
    /// The recorder (`livegate_recorder_…`).
    Recorder,
}

impl Service {
    /// Its name in checks.
    pub fn name(self) -> &'static str {
        match self {
            Service::Proxy => "proxy",
            Service::Hooks => "hooks",
            Service::Recorder => "recorder",
        }
    }
}

/// The proxy's numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProxyNumbers {
    /// Requests answered per second.
    pub requests_per_s: Option<f64>,
    /// Play tokens refused per second.
    pub token_rejections_per_s: Option<f64>,
    /// Median time to the origin's first byte, milliseconds.
    pub upstream_latency_ms_p50: Option<f64>,
    /// Its 95th percentile.
    pub upstream_latency_ms_p95: Option<f64>,
    /// FLV viewers connected.
    pub flv_sessions_active: Option<f64>,
    /// FLV pulls from the origin.
    pub flv_pulls_active: Option<f64>,
}

/// The hooks service's numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HooksNumbers {
    /// Callbacks answered per second.
    pub callbacks_per_s: Option<f64>,
    /// Publishes refused per second.
    pub publish_refused_per_s: Option<f64>,
    /// Median time to answer a callback, milliseconds.
    pub latency_ms_p50: Option<f64>,
    /// Its 95th percentile.
    pub latency_ms_p95: Option<f64>,
    /// Bus writes waiting in its outbox.
    pub outbox_depth: Option<f64>,
}

/// The recorder's numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecorderNumbers {
    /// Jobs not yet done (neither cleaned nor failed).
    pub backlog: Option<f64>,
    /// Jobs given up on.
    pub failed: Option<f64>,
    /// Recording jobs waiting on the bus.
    pub queue_depth: Option<f64>,
    /// Age of the oldest job not yet done, seconds.
    pub oldest_age_s: Option<f64>,
}

/// What one scrape found.
#[derive(Debug, Clone, PartialEq)]
pub struct Scraped {
    /// Of which service.
    pub service: Service,
    /// Whether `/metrics` answered with metrics.
    pub ok: bool,
    /// What went wrong, or how many samples came.
    pub detail: String,
    /// How long it took.
    pub latency_ms: u64,
    /// The numbers, when it answered.
    pub numbers: Option<Numbers>,
}

/// A service's numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Numbers {
    /// The proxy's.
    Proxy(ProxyNumbers),
    /// The hooks service's.
    Hooks(HooksNumbers),
    /// The recorder's.
    Recorder(RecorderNumbers),
}

#[derive(Debug)]
struct Taken {
    at: Instant,
    samples: Vec<Sample>,
}

/// The configured targets and what each said last.
#[derive(Debug)]
pub struct Scrapes {
    client: Option<reqwest::Client>,
    targets: Vec<(Service, String)>,
    // A std mutex: held to swap a scrape, never across an await.
    previous: Mutex<HashMap<Service, Taken>>,
}

/// Largest `/metrics` answer read.
const MAX_BODY: usize = 4 * 1024 * 1024;

impl Scrapes {
    /// The targets `config` names.
    pub fn new(config: &ConsoleConfig) -> Self {
        let targets: Vec<(Service, String)> = [
            (Service::Proxy, &config.proxy_metrics_url),
            (Service::Hooks, &config.hooks_metrics_url),
            (Service::Recorder, &config.recorder_metrics_url),
        ]
        .into_iter()
        .filter_map(|(service, url)| url.clone().map(|url| (service, url)))
        .collect();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.check_timeout_ms))
            .build()
            .map_err(|err| tracing::warn!(error = %err, "metrics scrapes disabled: no HTTP client"))
            .ok();
        Self {
            client,
            targets,
            previous: Mutex::new(HashMap::new()),
        }
    }

    /// Scrapes every configured service at once.
    pub async fn all(&self) -> Vec<Scraped> {
        join_all(
            self.targets
                .iter()
                .map(|(service, url)| self.one(*service, url)),
        )
        .await
    }

    async fn fetch(&self, url: &str) -> Result<Vec<Sample>, String> {
        let client = self.client.as_ref().ok_or("no HTTP client")?;
        let response = client
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|err| format!("cannot read /metrics: {}", err.without_url()))?;
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BODY as u64)
        {
            return Err("the /metrics answer is too large".to_owned());
        }
        let text = response
            .text()
            .await
            .map_err(|err| format!("cannot read /metrics: {}", err.without_url()))?;
        if text.len() > MAX_BODY {
            return Err("the /metrics answer is too large".to_owned());
        }
        let scrape = Scrape::parse(text.lines().map(|line| Ok(line.to_owned())))
            .map_err(|err| format!("not Prometheus text: {err}"))?;
        Ok(scrape.samples)
    }

    async fn one(&self, service: Service, url: &str) -> Scraped {
        let started = Instant::now();
        let fetched = self.fetch(url).await;
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let samples = match fetched {
            Ok(samples) if !samples.is_empty() => samples,
            Ok(_) => {
                return Scraped {
                    service,
                    ok: false,
                    detail: "/metrics answered without metrics".to_owned(),
                    latency_ms,
                    numbers: None,
                }
            }
            Err(detail) => {
                return Scraped {
                    service,
                    ok: false,
                    detail,
                    latency_ms,
                    numbers: None,
                }
            }
        };
        let now = Instant::now();
        let previous = {
            let mut held = self
                .previous
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            held.insert(
                service,
                Taken {
                    at: now,
                    samples: samples.clone(),
                },
            )
        };
        let window = Window {
            now: &samples,
            before: previous
                .as_ref()
                .filter(|taken| now.duration_since(taken.at) >= Duration::from_millis(500))
                .map(|taken| (taken.samples.as_slice(), now.duration_since(taken.at))),
        };
        let numbers = match service {
            Service::Proxy => Numbers::Proxy(ProxyNumbers {
                requests_per_s: window.rate("livegate_proxy_requests_total"),
                token_rejections_per_s: window.rate("livegate_proxy_token_rejections_total"),
                upstream_latency_ms_p50: window
                    .quantile_ms("livegate_proxy_upstream_latency_seconds", 0.5),
                upstream_latency_ms_p95: window
                    .quantile_ms("livegate_proxy_upstream_latency_seconds", 0.95),
                flv_sessions_active: sum(&samples, "livegate_proxy_flv_sessions_active", |_| true),
                flv_pulls_active: sum(&samples, "livegate_proxy_flv_pulls_active", |_| true),
            }),
            Service::Hooks => Numbers::Hooks(HooksNumbers {
                callbacks_per_s: window.rate("livegate_hooks_callbacks_total"),
                publish_refused_per_s: window.rate("livegate_hooks_publish_refused_total"),
                latency_ms_p50: window.quantile_ms("livegate_hooks_callback_duration_seconds", 0.5),
                latency_ms_p95: window
                    .quantile_ms("livegate_hooks_callback_duration_seconds", 0.95),
                outbox_depth: sum(&samples, "livegate_hooks_outbox_depth", |_| true),
            }),
            Service::Recorder => Numbers::Recorder(RecorderNumbers {
                backlog: sum(&samples, "livegate_recorder_jobs", |sample| {
                    !matches!(sample.labels.get("state"), Some("cleaned" | "failed"))
                }),
                failed: sum(&samples, "livegate_recorder_jobs", |sample| {
                    sample.labels.get("state") == Some("failed")
                }),
                queue_depth: sum(&samples, "livegate_recorder_queue_depth", |_| true),
                oldest_age_s: sum(&samples, "livegate_recorder_oldest_job_age_seconds", |_| {
                    true
                }),
            }),
        };
        Scraped {
            service,
            ok: true,
            detail: format!("{} samples", samples.len()),
            latency_ms,
            numbers: Some(numbers),
        }
    }
}

fn scalar(value: &Value) -> Option<f64> {
    match value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(*v),
        Value::Histogram(_) | Value::Summary(_) => None,
    }
}

/// The sum of the scalar samples named `name` that `keep` keeps; `None` when there is none.
fn sum(samples: &[Sample], name: &str, keep: impl Fn(&Sample) -> bool) -> Option<f64> {
    samples
        .iter()
        .filter(|sample| sample.metric == name && keep(sample))
        .filter_map(|sample| scalar(&sample.value))
        .fold(None, |total, value| Some(total.unwrap_or(0.0) + value))
}

/// The buckets of histogram `name` added up over its label sets: (upper bound, cumulative
/// count), by bound.
fn buckets(samples: &[Sample], name: &str) -> Vec<(f64, f64)> {
    let mut total: Vec<(f64, f64)> = Vec::new();
    for sample in samples.iter().filter(|sample| sample.metric == name) {
        let Value::Histogram(counts) = &sample.value else {
            continue;
        };
        for count in counts {
            match total
                .iter_mut()
                .find(|(bound, _)| *bound == count.less_than)
            {
                Some((_, n)) => *n += count.count,
                None => total.push((count.less_than, count.count)),
            }
        }
    }
    total.sort_by(|a, b| a.0.total_cmp(&b.0));
    total
}

/// The `q` quantile of cumulative `buckets`, interpolated within its bucket as Prometheus's
/// `histogram_quantile` does; `None` without observations.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                return Some(lower.0);
            }
            let within = count - lower.1;
            let fraction = if within > 0.0 {
                (rank - lower.1) / within
            } else {
                1.0
            };
            return Some(lower.0 + (bound - lower.0) * fraction);
        }
        lower = (bound, count);
    }
    Some(lower.0)
}

/// This scrape and, when there is one, the previous with the time between them.
struct Window<'a> {
    now: &'a [Sample],
    before: Option<(&'a [Sample], Duration)>,
}

impl Window<'_> {
    /// Per second between the two scrapes of counter `name` (all its label sets); `None` on
    /// the first scrape. A counter that went down restarted with its service: counted from 0.
    fn rate(&self, name: &str) -> Option<f64> {
        let (before, elapsed) = self.before?;
        let now = sum(self.now, name, |_| true)?;
        let then = sum(before, name, |_| true).unwrap_or(0.0);
        let delta = if now >= then { now - then } else { now };
        Some(delta / elapsed.as_secs_f64())
    }

    /// The `q` quantile of histogram `name` in milliseconds, over the observations between
    /// the two scrapes when there were some, else over every observation.
    fn quantile_ms(&self, name: &str, q: f64) -> Option<f64> {
        let now = buckets(self.now, name);
        if let Some((before, _)) = self.before {
            let then = buckets(before, name);
            let delta: Vec<(f64, f64)> = now
                .iter()
                .map(|&(bound, count)| {
                    let old = then
                        .iter()
                        .find(|(b, _)| *b == bound)
                        .map_or(0.0, |(_, c)| *c);
                    (bound, (count - old).max(0.0))
                })
                .collect();
            if let Some(value) = quantile(q, &delta) {
                return Some(value * 1000.0);
            }
        }
        quantile(q, &now).map(|value| value * 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<Sample> {
        Scrape::parse(text.lines().map(|line| Ok(line.to_owned())))
            .map(|scrape| scrape.samples)
            .unwrap_or_default()
    }

    const FIRST: &str = "# HELP livegate_proxy_token_rejections Play tokens refused.\n\
        # TYPE livegate_proxy_token_rejections counter\n\
        livegate_proxy_token_rejections_total{reason=\"expired\"} 4\n\
        livegate_proxy_token_rejections_total{reason=\"revoked\"} 6\n\
        # TYPE livegate_proxy_upstream_latency_seconds histogram\n\
        livegate_proxy_upstream_latency_seconds_sum{kind=\"flv\"} 0.3\n\
        livegate_proxy_upstream_latency_seconds_count{kind=\"flv\"} 10\n\
        livegate_proxy_upstream_latency_seconds_bucket{le=\"0.01\",kind=\"flv\"} 5\n\
        livegate_proxy_upstream_latency_seconds_bucket{le=\"0.1\",kind=\"flv\"} 10\n\
        livegate_proxy_upstream_latency_seconds_bucket{le=\"+Inf\",kind=\"flv\"} 10\n\
        # EOF\n";

    #[test]
    fn rates_and_quantiles_come_from_two_scrapes() {
        let first = parse(FIRST);
        let second = parse(
            &FIRST
                .replace("} 4\n", "} 24\n")
                .replace("le=\"0.1\",kind=\"flv\"} 10", "le=\"0.1\",kind=\"flv\"} 20")
                .replace(
                    "le=\"+Inf\",kind=\"flv\"} 10",
                    "le=\"+Inf\",kind=\"flv\"} 20",
                ),
        );
        let alone = Window {
            now: &first,
            before: None,
        };
        assert_eq!(alone.rate("livegate_proxy_token_rejections_total"), None);
        // Lifetime: 5 of 10 below 10 ms, the median is at the bucket's top.
        let p50 = alone
            .quantile_ms("livegate_proxy_upstream_latency_seconds", 0.5)
            .unwrap_or_default();
        assert!((p50 - 10.0).abs() < 1e-9, "{p50}");
        let window = Window {
            now: &second,
            before: Some((&first, Duration::from_secs(10))),
        };
        let rate = window
            .rate("livegate_proxy_token_rejections_total")
            .unwrap_or_default();
        assert!((rate - 2.0).abs() < 1e-9, "{rate}");
        // Between the scrapes all ten took 10 to 100 ms: the median is halfway.
        let p50 = window
            .quantile_ms("livegate_proxy_upstream_latency_seconds", 0.5)
            .unwrap_or_default();
        assert!((p50 - 55.0).abs() < 1e-6, "{p50}");
    }

    #[test]
    fn a_quantile_needs_observations() {
        assert_eq!(quantile(0.5, &[]), None);
        assert_eq!(quantile(0.5, &[(0.1, 0.0), (f64::INFINITY, 0.0)]), None);
        assert_eq!(
            quantile(0.99, &[(0.1, 1.0), (f64::INFINITY, 2.0)]),
            Some(0.1)
        );
    }
}
