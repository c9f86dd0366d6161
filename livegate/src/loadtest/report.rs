//! The run's result: `result.json` and the summary printed at the end.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::lateness::{Generator, STOP};
use super::metrics::{Outcome, Percentiles, Protocol, ViewerReport};
use super::publisher::PublisherReport;
use super::sampler::{round, Point};

/// Error samples kept per kind (the counts are complete).
const SAMPLES: usize = 5;

/// What was asked for.
#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    /// The proxy's base URL.
    pub url_base: String,
    /// The rooms played (and published, unless `published` is false).
    pub rooms: Vec<u64>,
    /// Whether this run published the streams.
    pub published: bool,
    /// Publishers' total bitrate, kbit/s.
    pub bitrate_kbps: u32,
    /// FLV viewers, bad tokens included.
    pub flv_viewers: u32,
    /// HLS viewers, bad tokens included.
    pub hls_viewers: u32,
    /// Share of viewers with a bad token.
    pub bad_token_share: f64,
    /// Seconds every viewer watches at least.
    pub duration_s: f64,
    /// Seconds over which viewers start.
    pub ramp_s: f64,
    /// Unix ms when the first viewer started.
    pub started_at_unix_ms: u64,
    /// From the publishers' start to every room playing through the proxy (a cold start).
    pub warmup_ms: u64,
}

/// One protocol's viewers with good tokens.
#[derive(Debug, Clone, Serialize)]
pub struct Viewers {
    /// Started.
    pub started: usize,
    /// Got a first frame.
    pub played: usize,
    /// Watched to the end without an error.
    pub watched_to_end: usize,
    /// Request to first keyframe (FLV) or first segment byte (HLS), ms.
    pub first_frame_ms: Option<Percentiles>,
    /// Stall time over watch time, percent, of all these viewers together.
    pub stall_percent: f64,
    /// Viewers that stalled at least once.
    pub viewers_with_stalls: usize,
    /// Media delivered per viewer (bytes over watch time), kbit/s.
    pub bitrate_kbps: Option<Percentiles>,
    /// End-to-end latency (capture to playout), ms; absent when the stream carries no stamps.
    pub latency_ms: Option<Percentiles>,
    /// Errors by kind.
    pub errors: BTreeMap<String, usize>,
    /// A few of the errors, as `kind: detail`.
    pub error_samples: Vec<String>,
}

/// Viewers that carried a bad token.
#[derive(Debug, Clone, Serialize)]
pub struct BadTokens {
    /// Sent.
    pub sent: usize,
    /// Refused with 401/403.
    pub refused: usize,
    /// Let in: a hole.
    pub accepted: usize,
    /// No answer, or another status.
    pub other: usize,
    /// refused / sent.
    pub refusal_rate: Option<f64>,
}

/// A watched process over the run.
#[derive(Debug, Clone, Serialize)]
pub struct Process {
    /// Its pid.
    pub pid: u32,
    /// Its name.
    pub name: String,
    /// CPU, percent of one core: mean and max of the samples.
    pub cpu_percent_mean: f64,
    /// Highest CPU sample.
    pub cpu_percent_max: f64,
    /// Highest resident memory, MiB.
    pub rss_mib_max: f64,
    /// Samples.
    pub samples: usize,
}

/// Everything `result.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What was asked for.
    pub setup: Setup,
    /// FLV viewers with good tokens.
    pub flv: Viewers,
    /// HLS viewers with good tokens.
    pub hls: Viewers,
    /// Viewers with bad tokens.
    pub bad_tokens: BadTokens,
    /// Errors of good-token viewers, all protocols.
    pub unexpected_errors: usize,
    /// Most FLV origin pulls the proxy ran at once (with `--proxy-metrics`).
    pub origin_pulls_max: Option<u64>,
    /// Publishers.
    pub publishers: Vec<PublisherReport>,
    /// Watched processes.
    pub processes: Vec<Process>,
    /// The load generator's own lateness: while it could not run, its viewers stalled with it.
    pub generator: Generator,
    /// One point a second.
    pub timeline: Vec<Point>,
}

fn kind_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Watched => "none",
        Outcome::Connect => "connect",
        Outcome::Status => "status",
        Outcome::BadMedia => "bad_media",
        Outcome::EndedEarly => "ended_early",
        Outcome::Refused => "refused",
        Outcome::BadTokenAccepted => "bad_token_accepted",
    }
}

fn viewers(reports: &[ViewerReport], protocol: Protocol) -> Viewers {
    let mine: Vec<&ViewerReport> = reports
        .iter()
        .filter(|r| r.protocol == protocol && r.bad_token.is_none())
        .collect();
    let played: Vec<&&ViewerReport> = mine.iter().filter(|r| r.first_frame.is_some()).collect();
    let watched: Duration = played.iter().map(|r| r.watched).sum();
    let stalled: Duration = played.iter().map(|r| r.stalled).sum();
    let mut errors = BTreeMap::new();
    let mut error_samples = Vec::new();
    for report in mine.iter().filter(|r| r.outcome.is_error()) {
        let kind = kind_name(report.outcome);
        *errors.entry(kind.to_owned()).or_insert(0) += 1;
        if error_samples.len() < SAMPLES {
            error_samples.push(format!(
                "{kind}: {}",
                report.detail.as_deref().unwrap_or("")
            ));
        }
    }
    let rounded = |p: Option<Percentiles>| {
        p.map(|p| Percentiles {
            p50: round(p.p50, 1),
            p95: round(p.p95, 1),
            p99: round(p.p99, 1),
            max: round(p.max, 1),
            min: round(p.min, 1),
            ..p
        })
    };
    Viewers {
        started: mine.len(),
        played: played.len(),
        watched_to_end: mine
            .iter()
            .filter(|r| r.outcome == Outcome::Watched)
            .count(),
        first_frame_ms: rounded(Percentiles::of(
            played
                .iter()
                .filter_map(|r| r.first_frame)
                .map(|d| d.as_secs_f64() * 1000.0)
                .collect(),
        )),
        stall_percent: if watched.is_zero() {
            0.0
        } else {
            round(stalled.as_secs_f64() / watched.as_secs_f64() * 100.0, 3)
        },
        viewers_with_stalls: played.iter().filter(|r| r.stalls > 0).count(),
        bitrate_kbps: rounded(Percentiles::of(
            played
                .iter()
                .filter(|r| r.watched >= Duration::from_secs(1))
                .map(|r| r.bytes as f64 * 8.0 / 1000.0 / r.watched.as_secs_f64())
                .collect(),
        )),
        latency_ms: rounded(Percentiles::of(
            played
                .iter()
                .flat_map(|r| r.latencies.iter().copied())
                .collect(),
        )),
        errors,
        error_samples,
    }
}

impl Report {
    /// Puts the pieces together.
    pub(crate) fn build(
        setup: Setup,
        reports: &[ViewerReport],
        publishers: Vec<PublisherReport>,
        processes: Vec<Process>,
        generator: Generator,
        timeline: Vec<Point>,
    ) -> Report {
        let bad: Vec<&ViewerReport> = reports.iter().filter(|r| r.bad_token.is_some()).collect();
        let refused = bad.iter().filter(|r| r.outcome == Outcome::Refused).count();
        let accepted = bad
            .iter()
            .filter(|r| r.outcome == Outcome::BadTokenAccepted)
            .count();
        let (flv, hls) = (
            viewers(reports, Protocol::Flv),
            viewers(reports, Protocol::Hls),
        );
        let unexpected_errors =
            flv.errors.values().sum::<usize>() + hls.errors.values().sum::<usize>();
        Report {
            setup,
            flv,
            hls,
            bad_tokens: BadTokens {
                sent: bad.len(),
                refused,
                accepted,
                other: bad.len() - refused - accepted,
                refusal_rate: (!bad.is_empty())
                    .then(|| round(refused as f64 / bad.len() as f64, 4)),
            },
            unexpected_errors,
            origin_pulls_max: timeline.iter().filter_map(|p| p.origin_pulls).max(),
            publishers,
            processes,
            generator,
            timeline,
        }
    }

    /// The human summary.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let s = &self.setup;
        let _ = writeln!(
            out,
            "livegate loadtest: rooms {:?} via {}, {} FLV + {} HLS viewers for {:.0} s (ramp {:.0} s){}",
            s.rooms,
            s.url_base,
            s.flv_viewers,
            s.hls_viewers,
            s.duration_s,
            s.ramp_s,
            if s.published {
                format!(", published at {} kbit/s", s.bitrate_kbps)
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            out,
            "  warm-up: playable through the proxy after {} ms",
            s.warmup_ms
        );
        for (name, v) in [("FLV", &self.flv), ("HLS", &self.hls)] {
            if v.started == 0 {
                continue;
            }
            let ms = |p: &Option<Percentiles>| {
                p.map_or_else(
                    || "not measured".to_owned(),
                    |p| format!("p50 {:.0} / p95 {:.0} / p99 {:.0} ms", p.p50, p.p95, p.p99),
                )
            };
            let _ = writeln!(
                out,
                "  {name}: {} started, {} played, {} watched to the end",
                v.started, v.played, v.watched_to_end
            );
            let _ = writeln!(out, "    first frame  {}", ms(&v.first_frame_ms));
            let _ = writeln!(
                out,
                "    stalls       {:.2}% of watch time ({} viewers stalled)",
                v.stall_percent, v.viewers_with_stalls
            );
            let _ = writeln!(
                out,
                "    bitrate      {}",
                v.bitrate_kbps.map_or_else(
                    || "-".to_owned(),
                    |p| format!("per viewer p50 {:.0} kbit/s, lowest {:.0}", p.p50, p.min)
                )
            );
            let _ = writeln!(out, "    latency      {}", ms(&v.latency_ms));
            let errors: Vec<String> = v.errors.iter().map(|(k, n)| format!("{k} {n}")).collect();
            let _ = writeln!(
                out,
                "    errors       {}",
                if errors.is_empty() {
                    "none".to_owned()
                } else {
                    errors.join(", ")
                }
            );
            for sample in &v.error_samples {
                let _ = writeln!(out, "      {sample}");
            }
        }
        let b = &self.bad_tokens;
        if b.sent > 0 {
            let _ = writeln!(
                out,
                "  bad tokens: {} sent, {} refused, {} accepted, {} other (refusal rate {:.1}%)",
                b.sent,
                b.refused,
                b.accepted,
                b.other,
                b.refusal_rate.unwrap_or(0.0) * 100.0
            );
        }
        if let Some(pulls) = self.origin_pulls_max {
            let _ = writeln!(out, "  proxy: at most {pulls} FLV origin pull(s) at once");
        }
        for p in &self.publishers {
            let _ = writeln!(
                out,
                "  publisher {}: {} frames, {:.1} MB{}",
                p.stream,
                p.frames,
                p.bytes as f64 / 1e6,
                p.error
                    .as_deref()
                    .map_or_else(String::new, |e| format!(", error: {e}"))
            );
        }
        let g = &self.generator;
        let _ = writeln!(
            out,
            "  load generator: {}",
            if g.stopped_ms == 0 {
                format!(
                    "never more than {} ms late (latest wake {} ms)",
                    STOP.as_millis(),
                    g.longest_ms
                )
            } else {
                format!(
                    "could not run for {:.1} s in all (longest {} ms): its viewers read late then, whatever the stream did",
                    g.stopped_ms as f64 / 1000.0,
                    g.longest_ms
                )
            }
        );
        for p in &self.processes {
            let _ = writeln!(
                out,
                "  process {} ({}): CPU mean {:.1}% max {:.1}% of a core, RSS max {:.1} MiB",
                p.pid, p.name, p.cpu_percent_mean, p.cpu_percent_max, p.rss_mib_max
            );
        }
        out
    }
}
