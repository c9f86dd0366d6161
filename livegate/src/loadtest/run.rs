//! One run: publishers up, streams playable, viewers ramped in, sampled every second until
//! the end, then everything stopped and the results written.

use std::sync::Arc;
use std::time::Duration;

use livegate_core::service::{CancellationToken, Shutdown};
use livegate_core::token::TokenKeys;
use livegate_core::Secret;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::args::Plan;
use super::lateness::{self, Lateness};
use super::metrics::{now_ms, BadToken, Live, Protocol, ViewerReport};
use super::procstat::Watched;
use super::publisher::{self, PublisherReport, PublisherSpec};
use super::report::{Process, Report, Setup};
use super::sampler::{round, Point, Sampler};
use super::viewer::ViewerSpec;
use super::{chart, flv_viewer, hls_viewer, LoadError};

/// Runs the plan until its end (or until `shutdown` is asked to stop), then writes
/// `result.json` and `chart.svg` into the output directory.
pub async fn run(plan: Plan, shutdown: Shutdown) -> Result<Report, LoadError> {
    std::fs::create_dir_all(&plan.out).map_err(|source| LoadError::Io {
        path: plan.out.clone(),
        source,
    })?;
    let mut watched = vec![Watched::new(std::process::id(), Some("livegate loadtest"))
        .ok_or_else(|| LoadError::Usage("cannot read /proc for this process".to_owned()))?];
    for pid in &plan.watch {
        watched.push(
            Watched::new(*pid, None)
                .ok_or_else(|| LoadError::Usage(format!("--watch-pid {pid}: no such process")))?,
        );
    }
    let publish_stop = shutdown.token().child_token();
    let viewer_stop = shutdown.token().child_token();
    let publishers = start_publishers(&plan, &shutdown, &publish_stop);

    let warm_started = Instant::now();
    let warm = super::warmup::warm_up(&plan, &shutdown, &publishers).await;
    let warmup_ms = warm_started.elapsed().as_millis() as u64;
    let held = match warm {
        Ok(held) => held,
        Err(err) => {
            publish_stop.cancel();
            let mut why = err.to_string();
            for handle in publishers {
                if let Ok(report) = handle.await {
                    if let Some(error) = report.error {
                        why.push_str(&format!("\n  publisher {}: {error}", report.stream));
                    }
                }
            }
            return Err(LoadError::NotPlayable(why));
        }
    };

    let live = Arc::new(Live::default());
    let started = Instant::now();
    let started_unix_ms = now_ms();
    let end = started + plan.ramp + plan.duration;
    let specs = viewer_specs(&plan, &live, end, &viewer_stop)?;
    let good = specs.iter().filter(|s| s.bad_token.is_none()).count() as u64;
    // The warm-up's FLV connections stay (read and discarded) through the ramp, so that the
    // viewers join running pulls as viewers of a live stream do; the cold start is the
    // warm-up's, reported as `warmup_ms`.
    let holder = shutdown.spawn(super::warmup::hold(
        held,
        started + plan.ramp + Duration::from_secs(1),
        viewer_stop.clone(),
    ));
    let lateness = Arc::new(Lateness::default());
    let clock = shutdown.spawn(lateness::clock(lateness.clone(), end, viewer_stop.clone()));
    let sampler = shutdown.spawn(
        Sampler {
            live: live.clone(),
            lateness: lateness.clone(),
            watched,
            started,
            end,
            stop: viewer_stop.clone(),
            viewers: good,
            proxy_metrics: plan.proxy_metrics.clone(),
        }
        .run(),
    );
    let total = specs.len().max(1) as u32;
    let mut viewers = Vec::with_capacity(specs.len());
    for (index, spec) in specs.into_iter().enumerate() {
        let at = started + plan.ramp * index as u32 / total;
        viewers.push(shutdown.spawn(async move {
            tokio::select! {
                () = tokio::time::sleep_until(at) => {}
                () = spec.stop.cancelled() => return None,
            }
            let live = spec.live.clone();
            let report = match spec.protocol {
                Protocol::Flv => flv_viewer::run(spec).await,
                Protocol::Hls => hls_viewer::run(spec).await,
            };
            if report.outcome.is_error() {
                Live::add(&live.errors, 1);
            }
            Some(report)
        }));
    }
    // Ctrl-C ends the run early; the results are still written.
    let interrupted = CancellationToken::new();
    let watcher = {
        let (stop, done) = (viewer_stop.clone(), interrupted.clone());
        shutdown.spawn(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => stop.cancel(),
                () = done.cancelled() => {}
            }
        })
    };
    let mut reports: Vec<ViewerReport> = Vec::with_capacity(viewers.len());
    for handle in viewers {
        if let Ok(Some(report)) = handle.await {
            reports.push(report);
        }
    }
    interrupted.cancel();
    let _ = watcher.await;
    let _ = holder.await;
    let _ = clock.await;
    let (timeline, watched) = sampler.await.unwrap_or_default();
    publish_stop.cancel();
    let mut publisher_reports = Vec::new();
    for handle in publishers {
        if let Ok(report) = handle.await {
            publisher_reports.push(report);
        }
    }

    let setup = Setup {
        url_base: plan.url_base.clone(),
        rooms: plan.rooms.clone(),
        published: plan.publish,
        bitrate_kbps: plan.bitrate_kbps,
        flv_viewers: plan.flv_viewers,
        hls_viewers: plan.hls_viewers,
        bad_token_share: plan.bad_token_share,
        duration_s: plan.duration.as_secs_f64(),
        ramp_s: plan.ramp.as_secs_f64(),
        started_at_unix_ms: started_unix_ms,
        warmup_ms,
    };
    let processes = process_summaries(&watched, &timeline);
    let report = Report::build(
        setup,
        &reports,
        publisher_reports,
        processes,
        lateness.total(),
        timeline,
    );
    let json_path = plan.out.join("result.json");
    let json = serde_json::to_vec_pretty(&report).map_err(|err| LoadError::Io {
        path: json_path.clone(),
        source: std::io::Error::other(err),
    })?;
    std::fs::write(&json_path, json).map_err(|source| LoadError::Io {
        path: json_path,
        source,
    })?;
    chart::render(&plan.out.join("chart.svg"), &report.timeline).map_err(LoadError::Chart)?;
    Ok(report)
}

fn start_publishers(
    plan: &Plan,
    shutdown: &Shutdown,
    stop: &CancellationToken,
) -> Vec<JoinHandle<PublisherReport>> {
    if !plan.publish {
        return Vec::new();
    }
    let key = plan.publish_key.as_ref().map(|k| k.expose().to_owned());
    plan.rooms
        .iter()
        .map(|room| {
            let query = key
                .as_deref()
                .map(|k| format!("?key={}", form_encode(k)))
                .unwrap_or_default();
            let spec = PublisherSpec {
                stream: room.to_string(),
                url: format!("{}/{room}{query}", plan.rtmp),
                key: key.clone(),
                bitrate_kbps: plan.bitrate_kbps,
            };
            shutdown.spawn(publisher::run(spec, stop.clone()))
        })
        .collect()
}

fn form_encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

pub(super) fn play_url(plan: &Plan, protocol: Protocol, room: u64, token: &str) -> String {
    let ext = match protocol {
        Protocol::Flv => "flv",
        Protocol::Hls => "m3u8",
    };
    format!(
        "{}/{}/{room}.{ext}?token={}",
        plan.url_base,
        plan.app,
        form_encode(token)
    )
}

/// Every viewer, in start order: protocols interleaved, bad tokens spread evenly, rooms
/// round-robin, each with a token of its own (distinct expiries).
fn viewer_specs(
    plan: &Plan,
    live: &Arc<Live>,
    end: Instant,
    stop: &CancellationToken,
) -> Result<Vec<ViewerSpec>, LoadError> {
    let forged_key =
        crate::data::random_hex(16).map_err(|err| LoadError::Usage(err.to_string()))?;
    let forged = TokenKeys::new([&Secret::new(forged_key)])
        .map_err(|err| LoadError::Usage(err.to_string()))?;
    let now = livegate_core::unix_now();
    let valid_until = now + (plan.ramp + plan.duration).as_secs() + 3600;
    let mut ordered = Vec::new();
    let mut serial = 0u64;
    for (protocol, count) in [
        (Protocol::Flv, plan.flv_viewers),
        (Protocol::Hls, plan.hls_viewers),
    ] {
        let count = u64::from(count);
        let bad = (count as f64 * plan.bad_token_share).round() as u64;
        for i in 0..count {
            serial += 1;
            let room = plan.rooms[(i % plan.rooms.len() as u64) as usize];
            // Viewer i is the n-th bad one when ⌊(i+1)·bad/count⌋ steps up.
            let is_bad = (i + 1) * bad / count > i * bad / count;
            let bad_token = is_bad.then(|| {
                if (i * bad / count).is_multiple_of(2) {
                    BadToken::Expired
                } else {
                    BadToken::Forged
                }
            });
            let token = match bad_token {
                None => plan.token_keys.mint(room, valid_until + serial),
                Some(BadToken::Expired) => plan.token_keys.mint(room, now - 86_400 - serial),
                Some(BadToken::Forged) => forged.mint(room, valid_until + serial),
            };
            let spec = ViewerSpec {
                protocol,
                url: play_url(plan, protocol, room, &token),
                bad_token,
                end,
                stop: stop.clone(),
                live: live.clone(),
            };
            // Interleave protocols by their position within their own kind.
            ordered.push(((i as f64 + 0.5) / count as f64, spec));
        }
    }
    ordered.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(ordered.into_iter().map(|(_, spec)| spec).collect())
}

fn process_summaries(watched: &[Watched], timeline: &[Point]) -> Vec<Process> {
    watched
        .iter()
        .map(|w| {
            let samples: Vec<(f64, f64)> = timeline
                .iter()
                .filter_map(|p| p.processes.iter().find(|q| q.pid == w.pid))
                .map(|q| (q.cpu_percent, q.rss_mib))
                .collect();
            let n = samples.len().max(1) as f64;
            Process {
                pid: w.pid,
                name: w.name.clone(),
                cpu_percent_mean: round(samples.iter().map(|s| s.0).sum::<f64>() / n, 1),
                cpu_percent_max: samples.iter().map(|s| s.0).fold(0.0, f64::max),
                rss_mib_max: samples.iter().map(|s| s.1).fold(0.0, f64::max),
                samples: samples.len(),
            }
        })
        .collect()
}
