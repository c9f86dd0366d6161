//! What viewers report: the live counters the sampler reads every second, and each viewer's
//! final report.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

/// Latency samples kept between two samplings at most (each viewer adds about one a second).
const MAX_PENDING_LATENCIES: usize = 100_000;

/// Counters every viewer adds to while it runs.
#[derive(Debug, Default)]
pub(crate) struct Live {
    /// Media bytes received by all viewers.
    pub(crate) bytes: AtomicU64,
    /// Viewers playing (past their first frame, not yet ended).
    pub(crate) playing: AtomicU64,
    /// Stall time, ms, added when a stall ends.
    pub(crate) stall_ms: AtomicU64,
    /// Viewers that ended with an error.
    pub(crate) errors: AtomicU64,
    /// Bad-token requests answered, and of those refused.
    pub(crate) bad_answered: AtomicU64,
    pub(crate) bad_refused: AtomicU64,
    latencies: Mutex<Vec<f64>>,
}

impl Live {
    /// Adds an end-to-end latency sample, ms.
    pub(crate) fn latency(&self, ms: f64) {
        if let Ok(mut pending) = self.latencies.lock() {
            if pending.len() < MAX_PENDING_LATENCIES {
                pending.push(ms);
            }
        }
    }

    /// The latency samples since the last call.
    pub(crate) fn take_latencies(&self) -> Vec<f64> {
        self.latencies
            .lock()
            .map(|mut pending| std::mem::take(&mut *pending))
            .unwrap_or_default()
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn sub(counter: &AtomicU64, n: u64) {
        counter.fetch_sub(n, Ordering::Relaxed);
    }

    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Which protocol a viewer plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP-FLV.
    Flv,
    /// HLS.
    Hls,
}

/// How a viewer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Watched until the end of the run.
    Watched,
    /// Could not connect (or the connection broke before an answer).
    Connect,
    /// Answered with a status other than 200.
    Status,
    /// The answer is not the media it should be.
    BadMedia,
    /// The stream ended, broke or went silent before the run did.
    EndedEarly,
    /// A bad token, refused (401/403): what should happen.
    Refused,
    /// A bad token, let in: a hole.
    BadTokenAccepted,
}

impl Outcome {
    /// Errors of a viewer with a good token.
    pub(crate) fn is_error(self) -> bool {
        matches!(
            self,
            Outcome::Connect | Outcome::Status | Outcome::BadMedia | Outcome::EndedEarly
        )
    }
}

/// What a bad-token viewer carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BadToken {
    /// Signed with the right key, expired a day ago.
    Expired,
    /// Signed with a key the proxy does not know.
    Forged,
}

/// One viewer's account of its run.
#[derive(Debug, Clone)]
pub(crate) struct ViewerReport {
    pub(crate) protocol: Protocol,
    pub(crate) bad_token: Option<BadToken>,
    pub(crate) outcome: Outcome,
    /// What went wrong, for the error samples.
    pub(crate) detail: Option<String>,
    /// Request to first keyframe (FLV) or first segment byte (HLS).
    pub(crate) first_frame: Option<Duration>,
    pub(crate) watched: Duration,
    pub(crate) stalled: Duration,
    pub(crate) stalls: u32,
    pub(crate) bytes: u64,
    /// End-to-end latency samples, ms (about one a second).
    pub(crate) latencies: Vec<f64>,
}

impl ViewerReport {
    pub(crate) fn new(protocol: Protocol, bad_token: Option<BadToken>) -> Self {
        ViewerReport {
            protocol,
            bad_token,
            outcome: Outcome::Watched,
            detail: None,
            first_frame: None,
            watched: Duration::ZERO,
            stalled: Duration::ZERO,
            stalls: 0,
            bytes: 0,
            latencies: Vec::new(),
        }
    }

    /// Ends the report with `outcome` (the first error wins).
    pub(crate) fn fail(&mut self, outcome: Outcome, detail: impl Into<String>) {
        if self.outcome == Outcome::Watched {
            self.outcome = outcome;
            self.detail = Some(detail.into());
        }
    }
}

/// p50/p95/p99 of a set of samples.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
    /// Smallest.
    pub min: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles; `None` without samples.
    pub(crate) fn of(mut samples: Vec<f64>) -> Option<Percentiles> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let index = ((p / 100.0) * samples.len() as f64).ceil() as usize;
            samples[index.clamp(1, samples.len()) - 1]
        };
        Some(Percentiles {
            count: samples.len(),
            p50: rank(50.0),
            p95: rank(95.0),
            p99: rank(99.0),
            max: samples[samples.len() - 1],
            min: samples[0],
        })
    }
}

/// Unix time now, ms.
pub(crate) fn now_ms() -> u64 {
    u64::try_from(livegate_core::unix_now_ms()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let p = Percentiles::of((1..=100).map(f64::from).collect()).unwrap();
        assert_eq!(
            (p.count, p.p50, p.p95, p.p99, p.max),
            (100, 50.0, 95.0, 99.0, 100.0)
        );
        let one = Percentiles::of(vec![7.0]).unwrap();
        assert_eq!((one.p50, one.p99), (7.0, 7.0));
        assert!(Percentiles::of(Vec::new()).is_none());
    }
}
