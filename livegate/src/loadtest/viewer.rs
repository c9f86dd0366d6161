//! What FLV and HLS viewers share: their specification, the HTTP client each owns, the
//! answer to their first request (including what a bad token should get) and how a
//! playout instant becomes an end-to-end latency.

use std::sync::Arc;
use std::time::Duration;

use livegate_core::service::CancellationToken;
use tokio::time::Instant;

use super::metrics::{now_ms, BadToken, Live, Outcome, Protocol, ViewerReport};
use super::playout::Playout;

/// Longest wait to connect.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest silence on an FLV stream, and longest HLS request.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Media a player holds before it starts or resumes playback.
pub(crate) const REBUFFER: Duration = Duration::from_millis(500);

/// One viewer to run.
#[derive(Debug, Clone)]
pub(crate) struct ViewerSpec {
    pub(crate) protocol: Protocol,
    /// The play URL with its token.
    pub(crate) url: String,
    pub(crate) bad_token: Option<BadToken>,
    /// When the run ends.
    pub(crate) end: Instant,
    pub(crate) stop: CancellationToken,
    pub(crate) live: Arc<Live>,
}

impl ViewerSpec {
    /// A client of its own, as every player has its own connections.
    pub(crate) fn client(&self) -> Result<reqwest::Client, reqwest::Error> {
        reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_max_idle_per_host(1)
            .user_agent("livegate-loadtest")
            .build()
    }

    /// Whether the run is over (its end, or a stop).
    pub(crate) async fn over(&self) {
        tokio::select! {
            () = tokio::time::sleep_until(self.end) => {}
            () = self.stop.cancelled() => {}
        }
    }

    /// Sends the viewer's first request: a 200 answer to a good token to go on with, or
    /// `None` with `report` finished (a bad token's answer is its whole story).
    pub(crate) async fn first_request(
        &self,
        client: &reqwest::Client,
        url: &str,
        report: &mut ViewerReport,
    ) -> Option<reqwest::Response> {
        let sent = tokio::select! {
            sent = tokio::time::timeout(READ_TIMEOUT, client.get(url).send()) => sent,
            () = self.over() => return None,
        };
        let response = match sent {
            Err(_) => {
                report.fail(Outcome::Connect, "no answer in time");
                return None;
            }
            Ok(Err(err)) => {
                report.fail(Outcome::Connect, transport_error(&err));
                return None;
            }
            Ok(Ok(response)) => response,
        };
        let status = response.status().as_u16();
        if self.bad_token.is_some() {
            Live::add(&self.live.bad_answered, 1);
            match status {
                401 | 403 => {
                    Live::add(&self.live.bad_refused, 1);
                    report.outcome = Outcome::Refused;
                }
                200 => report.fail(Outcome::BadTokenAccepted, "answered 200"),
                other => report.fail(Outcome::Status, format!("status {other}")),
            }
            return None;
        }
        if status != 200 {
            report.fail(Outcome::Status, format!("status {status}"));
            return None;
        }
        Some(response)
    }
}

/// A transport error's kind, without its URL (which carries the token).
/// Closes a viewer's report once its response ended at `ended_at`: watch and stall times from
/// the playout model (a stall still going on, not yet counted live, is added to the live
/// count), or bad media — `missing` says what never came — when nothing played.
pub(crate) fn close_report(
    spec: &ViewerSpec,
    mut report: ViewerReport,
    playout: &mut Playout,
    stall_reported: Duration,
    ended_at: Instant,
    missing: &str,
) -> ViewerReport {
    if report.first_frame.is_some() {
        let (watched, stalled, stalls) = playout.finish(ended_at);
        (report.watched, report.stalled, report.stalls) = (watched, stalled, stalls);
        let tail = stalled.saturating_sub(stall_reported);
        Live::add(&spec.live.stall_ms, tail.as_millis() as u64);
        Live::sub(&spec.live.playing, 1);
    } else if report.outcome == Outcome::Watched {
        report.fail(Outcome::BadMedia, missing);
    }
    report
}

/// A transport failure, said briefly.
pub(crate) fn transport_error(err: &reqwest::Error) -> String {
    let kind = if err.is_connect() {
        "connect"
    } else if err.is_timeout() {
        "timeout"
    } else if err.is_body() || err.is_decode() {
        "body"
    } else {
        "request"
    };
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(err);
    let mut last = None;
    while let Some(cause) = source {
        last = Some(cause.to_string());
        source = cause.source();
    }
    match last {
        Some(cause) => format!("{kind}: {cause}"),
        None => kind.to_owned(),
    }
}

/// The end-to-end latency of media stamped at `stamp_ms` that plays at `plays_at`.
pub(crate) fn latency_ms(stamp_ms: u64, plays_at: Instant, now: Instant) -> f64 {
    let ahead = plays_at.saturating_duration_since(now).as_millis() as f64;
    (now_ms() as f64 + ahead) - stamp_ms as f64
}
