//! An HTTP-FLV viewer: one long response, read tag by tag. First frame is the first video
//! keyframe; video timestamps drive the player model; stamped frames give the latency.

use std::time::Duration;

use tokio::time::Instant;

use super::flvtags::{FlvReader, Tag};
use super::metrics::{Live, Outcome, Protocol, ViewerReport};
use super::playout::Playout;
use super::stamp;
use super::viewer::{
    close_report, latency_ms, transport_error, ViewerSpec, READ_TIMEOUT, REBUFFER,
};

/// Media time credited to a frame when its timestamp cannot say (the first, or after a jump).
const FRAME: Duration = Duration::from_millis(40);
/// A timestamp step larger than this is a discontinuity, not media time.
const MAX_STEP_MS: u32 = 10_000;

/// Watches until the run ends or the stream fails.
pub(crate) async fn run(spec: ViewerSpec) -> ViewerReport {
    let mut report = ViewerReport::new(Protocol::Flv, spec.bad_token);
    let client = match spec.client() {
        Ok(client) => client,
        Err(err) => {
            report.fail(Outcome::Connect, transport_error(&err));
            return report;
        }
    };
    let requested = Instant::now();
    let Some(response) = spec.first_request(&client, &spec.url, &mut report).await else {
        return report;
    };
    let mut watch = Watch {
        spec: &spec,
        report,
        requested,
        playout: Playout::new(REBUFFER),
        last_video_ms: None,
        last_latency: None,
        stall_reported: Duration::ZERO,
    };
    let ended_at = watch.read(response).await;
    let Watch {
        report,
        mut playout,
        stall_reported,
        ..
    } = watch;
    close_report(
        &spec,
        report,
        &mut playout,
        stall_reported,
        ended_at,
        "no video keyframe",
    )
}

struct Watch<'a> {
    spec: &'a ViewerSpec,
    report: ViewerReport,
    requested: Instant,
    playout: Playout,
    last_video_ms: Option<u32>,
    last_latency: Option<Instant>,
    stall_reported: Duration,
}

impl Watch<'_> {
    /// Reads the body until the run ends; returns when watching stopped.
    async fn read(&mut self, mut response: reqwest::Response) -> Instant {
        let mut reader = FlvReader::default();
        let mut tags = Vec::new();
        loop {
            let chunk = tokio::select! {
                chunk = tokio::time::timeout(READ_TIMEOUT, response.chunk()) => chunk,
                () = self.spec.over() => return Instant::now().min(self.spec.end),
            };
            let now = Instant::now();
            let bytes = match chunk {
                Err(_) => {
                    self.report.fail(Outcome::EndedEarly, "silent for 10 s");
                    return now;
                }
                Ok(Err(err)) => {
                    self.report.fail(Outcome::EndedEarly, transport_error(&err));
                    return now;
                }
                Ok(Ok(None)) => {
                    self.report.fail(Outcome::EndedEarly, "the stream ended");
                    return now;
                }
                Ok(Ok(Some(bytes))) => bytes,
            };
            self.report.bytes += bytes.len() as u64;
            Live::add(&self.spec.live.bytes, bytes.len() as u64);
            if let Err(err) = reader.feed(&bytes, |tag| tags.push(tag)) {
                self.report.fail(Outcome::BadMedia, err.to_string());
                return now;
            }
            for tag in tags.drain(..) {
                self.video(tag, now);
            }
        }
    }

    fn video(&mut self, tag: Tag, now: Instant) {
        let is_avc = tag.head.first().is_some_and(|b| b & 0x0f == 7);
        if tag.kind != 9 || (is_avc && tag.head.get(1) != Some(&1)) {
            return;
        }
        let media = match self.last_video_ms {
            None if !tag.is_keyframe() => return,
            None => {
                self.report.first_frame = Some(now - self.requested);
                Live::add(&self.spec.live.playing, 1);
                FRAME
            }
            Some(last) => match tag.timestamp_ms.wrapping_sub(last) {
                step if step <= MAX_STEP_MS => Duration::from_millis(u64::from(step)),
                _ => FRAME,
            },
        };
        self.last_video_ms = Some(tag.timestamp_ms);
        let (plays_at, stall) = self.playout.arrive(now, media);
        if let Some(stall) = stall {
            Live::add(&self.spec.live.stall_ms, stall.as_millis() as u64);
            self.stall_reported += stall;
        }
        // Sampled while playing, when the play time is known rather than guessed.
        let due = self.playout.playing()
            && self
                .last_latency
                .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1));
        if due {
            if let Some(stamp_ms) = stamp::find(&tag.head) {
                let latency = latency_ms(stamp_ms, plays_at, now);
                self.report.latencies.push(latency);
                self.spec.live.latency(latency);
                self.last_latency = Some(now);
            }
        }
    }
}
