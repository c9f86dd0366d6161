//! Once a second: what the viewers did in that second (a timeline point), the watched
//! processes' CPU and memory, and the progress line on standard error.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use livegate_core::service::CancellationToken;
use serde::Serialize;
use tokio::time::Instant;

use super::lateness::Lateness;
use super::metrics::{Live, Percentiles};
use super::procstat::Watched;

/// One second of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// Seconds since the first viewer started.
    pub t_s: f64,
    /// Viewers playing.
    pub viewers: u64,
    /// Media delivered to all viewers in this second, Mbit/s.
    pub mbit_s: f64,
    /// Stall time ended in this second over viewer time, percent.
    pub stall_percent: f64,
    /// Median end-to-end latency of this second's samples, ms.
    pub latency_p50_ms: Option<f64>,
    /// Viewers ended with an error so far.
    pub errors: u64,
    /// The load generator's latest wake in this second, ms (see `Generator`).
    pub generator_late_ms: u64,
    /// The proxy's FLV origin pulls running (`livegate_proxy_flv_pulls_active`), when
    /// `--proxy-metrics` is given.
    pub origin_pulls: Option<u64>,
    /// The watched processes, in `--watch-pid` order.
    pub processes: Vec<ProcessPoint>,
}

/// A watched process in one second.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessPoint {
    /// Its pid.
    pub pid: u32,
    /// CPU, percent of one core.
    pub cpu_percent: f64,
    /// Resident memory, MiB.
    pub rss_mib: f64,
}

/// What the sampler needs.
pub(crate) struct Sampler {
    pub(crate) live: Arc<Live>,
    pub(crate) lateness: Arc<Lateness>,
    pub(crate) watched: Vec<Watched>,
    pub(crate) started: Instant,
    pub(crate) end: Instant,
    pub(crate) stop: CancellationToken,
    /// Viewers with good tokens, for the progress line.
    pub(crate) viewers: u64,
    /// The proxy's metrics endpoint.
    pub(crate) proxy_metrics: Option<String>,
}

impl Sampler {
    /// Samples until the end of the run; returns the timeline.
    pub(crate) async fn run(mut self) -> (Vec<Point>, Vec<Watched>) {
        let mut points = Vec::new();
        let mut tick = tokio::time::interval_at(
            self.started + Duration::from_secs(1),
            Duration::from_secs(1),
        );
        let (mut bytes, mut stall_ms) = (0u64, 0u64);
        let mut last = self.started;
        let terminal = std::io::stderr().is_terminal();
        let client = reqwest::Client::new();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.stop.cancelled() => break,
            }
            let now = Instant::now();
            let seconds = now.duration_since(last).as_secs_f64().max(1e-3);
            last = now;
            let origin_pulls = match &self.proxy_metrics {
                Some(url) => pulls(&client, url).await,
                None => None,
            };
            let live = &self.live;
            let (b, s) = (Live::get(&live.bytes), Live::get(&live.stall_ms));
            let viewers = Live::get(&live.playing);
            let point = Point {
                t_s: round(now.duration_since(self.started).as_secs_f64(), 1),
                viewers,
                mbit_s: round((b - bytes) as f64 * 8.0 / 1e6 / seconds, 3),
                stall_percent: if viewers == 0 {
                    0.0
                } else {
                    round(
                        (s - stall_ms) as f64 / (viewers as f64 * seconds * 1000.0) * 100.0,
                        2,
                    )
                },
                latency_p50_ms: Percentiles::of(live.take_latencies()).map(|p| round(p.p50, 0)),
                errors: Live::get(&live.errors),
                generator_late_ms: self.lateness.take_worst_ms(),
                origin_pulls,
                processes: self
                    .watched
                    .iter_mut()
                    .filter_map(|w| {
                        let pid = w.pid;
                        w.read().map(|r| ProcessPoint {
                            pid,
                            cpu_percent: round(r.cpu_percent, 1),
                            rss_mib: round(r.rss_mib, 1),
                        })
                    })
                    .collect(),
            };
            (bytes, stall_ms) = (b, s);
            self.progress(&point, terminal);
            points.push(point);
            if now >= self.end {
                break;
            }
        }
        if terminal {
            eprintln!();
        }
        (points, self.watched)
    }

    fn progress(&self, point: &Point, terminal: bool) {
        let total = self.end.duration_since(self.started).as_secs();
        let bad = Live::get(&self.live.bad_answered);
        let line = format!(
            "[{:>4.0}/{total} s] playing {}/{}  {:.2} Mbit/s  stalls {:.2}%  latency {}  errors {}  bad tokens refused {}/{}",
            point.t_s,
            point.viewers,
            self.viewers,
            point.mbit_s,
            point.stall_percent,
            point
                .latency_p50_ms
                .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.0} ms")),
            point.errors,
            Live::get(&self.live.bad_refused),
            bad,
        );
        let mut stderr = std::io::stderr().lock();
        // A terminal gets one line rewritten in place; a log gets a line every 5 s.
        if terminal {
            let _ = write!(stderr, "\r{line}\x1b[K");
            let _ = stderr.flush();
        } else if (point.t_s as u64).is_multiple_of(5) {
            let _ = writeln!(stderr, "{line}");
        }
    }
}

/// The proxy's `livegate_proxy_flv_pulls_active` gauge; `None` if it cannot be read at once.
async fn pulls(client: &reqwest::Client, url: &str) -> Option<u64> {
    let read = async { client.get(url).send().await?.text().await };
    let text = tokio::time::timeout(Duration::from_millis(300), read)
        .await
        .ok()?
        .ok()?;
    gauge(&text, "livegate_proxy_flv_pulls_active")
}

/// An unlabelled gauge's value in Prometheus text format.
fn gauge(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse::<f64>().ok().map(|v| v as u64)
    })
}

/// `value` rounded to `digits` decimals (for readable JSON).
pub(crate) fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gauge_is_read_from_prometheus_text() {
        let text = "# TYPE livegate_proxy_flv_pulls_active gauge\n\
                    livegate_proxy_flv_pulls_active_total 9\n\
                    livegate_proxy_flv_pulls_active 3\n";
        assert_eq!(gauge(text, "livegate_proxy_flv_pulls_active"), Some(3));
        assert_eq!(gauge("", "livegate_proxy_flv_pulls_active"), None);
    }
}
