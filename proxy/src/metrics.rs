//! The proxy's Prometheus metrics. Every label combination is created up front, so the request
//! path only bumps atomics and never takes the registry's lock.

use livegate_core::telemetry::Registry;
use livegate_core::token::Rejection;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

use crate::route::Kind;
use crate::webrtc::sessions::EndReason;

type Labels = Vec<(&'static str, &'static str)>;

/// What a request is counted as: a routed kind, or `other` for paths that matched no route,
/// preflights and refused methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestClass {
    /// A routed request.
    Routed(Kind),
    /// Anything else.
    Other,
}

impl RequestClass {
    fn index(self) -> usize {
        match self {
            RequestClass::Routed(Kind::Flv) => 0,
            RequestClass::Routed(Kind::Playlist) => 1,
            RequestClass::Routed(Kind::Segment) => 2,
            RequestClass::Other => 3,
        }
    }

    fn label(self) -> &'static str {
        match self {
            RequestClass::Routed(kind) => kind.as_str(),
            RequestClass::Other => "other",
        }
    }

    const ALL: [RequestClass; 4] = [
        RequestClass::Routed(Kind::Flv),
        RequestClass::Routed(Kind::Playlist),
        RequestClass::Routed(Kind::Segment),
        RequestClass::Other,
    ];
}

/// Why a request head was refused before Pingora parsed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadRefusal {
    /// The request target exceeded `limits.max_path_bytes` (414).
    TargetTooLong,
    /// The head exceeded `limits.max_header_bytes` (431).
    TooLarge,
    /// The head did not arrive within `limits.header_timeout_ms` (408).
    Timeout,
}

impl HeadRefusal {
    const ALL: [HeadRefusal; 3] = [
        HeadRefusal::TargetTooLong,
        HeadRefusal::TooLarge,
        HeadRefusal::Timeout,
    ];

    fn label(self) -> &'static str {
        match self {
            HeadRefusal::TargetTooLong => "target_too_long",
            HeadRefusal::TooLarge => "too_large",
            HeadRefusal::Timeout => "timeout",
        }
    }
}

/// Why a playlist from the origin was not served (502).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaylistRefusal {
    /// Over `playlist.max_bytes` as fetched.
    InputTooLarge,
    /// Over `playlist.max_output_bytes` once rewritten.
    OutputTooLarge,
    /// A line over `playlist.max_line_bytes`.
    LineTooLong,
    /// Not UTF-8 text.
    NotUtf8,
}

impl PlaylistRefusal {
    const ALL: [PlaylistRefusal; 4] = [
        PlaylistRefusal::InputTooLarge,
        PlaylistRefusal::OutputTooLarge,
        PlaylistRefusal::LineTooLong,
        PlaylistRefusal::NotUtf8,
    ];

    /// Label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            PlaylistRefusal::InputTooLarge => "input_too_large",
            PlaylistRefusal::OutputTooLarge => "output_too_large",
            PlaylistRefusal::LineTooLong => "line_too_long",
            PlaylistRefusal::NotUtf8 => "not_utf8",
        }
    }
}

/// Status classes; `client_closed` is nginx's 499, a viewer that left before its response was
/// complete, kept apart so that closed tabs never look like server errors.
const STATUS_CLASSES: [&str; 7] = ["1xx", "2xx", "3xx", "4xx", "5xx", "client_closed", "none"];

fn status_class_index(status: u16) -> usize {
    match status {
        crate::gate::CLIENT_CLOSED => 5,
        100..=599 => usize::from(status / 100) - 1,
        _ => 6,
    }
}

/// Counters, gauges and histograms of one proxy process.
#[derive(Debug)]
pub struct Metrics {
    requests: [[Counter; STATUS_CLASSES.len()]; 4],
    rejections: [Counter; Rejection::ALL.len()],
    revoked: Counter,
    /// FLV responses ended because their room revoked the token.
    pub flv_viewers_revoked: Counter,
    upstream_latency: [Histogram; 3],
    sent_bytes: [Counter; 4],
    cut_short: [Counter; 4],
    /// Cached segments the kernel sent from their sealed files, with no copy through the proxy.
    pub segments_sent_from_file: Counter,
    /// HTTP-FLV responses currently streaming.
    pub flv_sessions_active: Gauge,
    /// HTTP-FLV origin pulls running (one per stream being watched).
    pub flv_pulls_active: Gauge,
    /// Viewers of a pull, observed as each viewer joins.
    pub flv_viewers_per_pull: Histogram,
    /// FLV tags slow viewers skipped (they resumed at the next keyframe).
    pub flv_tags_dropped: Counter,
    /// FLV viewers cut for staying behind longer than `flv.max_lag_ms`.
    pub flv_viewers_cut: Counter,
    playlist_refusals: [Counter; PlaylistRefusal::ALL.len()],
    head_refusals: [Counter; HeadRefusal::ALL.len()],
    /// Cache answers for playlists (first) and segments, by source.
    cache_lookups: [[Counter; 3]; 2],
    /// Cache entries dropped by purges.
    pub cache_purged: Counter,
    /// WHEP sessions followed for revocation and expiry.
    pub webrtc_sessions_tracked: Gauge,
    /// WHEP sessions no longer followed because `webrtc.max_tracked_sessions` was reached.
    pub webrtc_sessions_untracked: Counter,
    /// WHEP sessions the edge ended at their origin: revoked (first), expired.
    webrtc_sessions_ended: [Counter; 2],
    webrtc_session_end_failures: Counter,
}

impl Metrics {
    /// Counts an HLS answer given through the cache.
    pub fn cache_lookup(&self, kind: Kind, source: crate::cache::Source) {
        let kind = usize::from(kind == Kind::Segment);
        let source = match source {
            crate::cache::Source::Hit => 0,
            crate::cache::Source::Miss => 1,
            crate::cache::Source::Coalesced => 2,
        };
        self.cache_lookups[kind][source].inc();
    }

    /// Creates the metrics and registers them in `registry` (`livegate_proxy_…`).
    pub fn register(registry: &mut Registry) -> Metrics {
        let requests_family = Family::<Labels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by kind (flv, playlist, segment, other) and status class",
            requests_family.clone(),
        );
        let requests = RequestClass::ALL.map(|class| {
            STATUS_CLASSES.map(|status| {
                requests_family
                    .get_or_create(&vec![("kind", class.label()), ("status", status)])
                    .clone()
            })
        });

        let rejections_family = Family::<Labels, Counter>::default();
        registry.register(
            "token_rejections",
            "Requests refused for their play token, by reason",
            rejections_family.clone(),
        );
        let rejections = Rejection::ALL.map(|reason| {
            rejections_family
                .get_or_create(&vec![("reason", reason.as_str())])
                .clone()
        });

        let revoked = rejections_family
            .get_or_create(&vec![("reason", "revoked")])
            .clone();
        let flv_viewers_revoked = Counter::default();
        registry.register(
            "flv_viewers_revoked",
            "FLV responses ended because their room revoked their token",
            flv_viewers_revoked.clone(),
        );

        let latency_family = Family::<Labels, Histogram>::new_with_constructor(|| {
            // 0.5 ms … ~16 s
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "upstream_latency_seconds",
            "Time from sending a request to the origin to receiving its response header",
            latency_family.clone(),
        );
        let upstream_latency = Kind::ALL.map(|kind| {
            latency_family
                .get_or_create(&vec![("kind", kind.as_str())])
                .clone()
        });

        let sent_family = Family::<Labels, Counter>::default();
        registry.register(
            "sent_bytes",
            "Response body bytes sent to viewers, by kind",
            sent_family.clone(),
        );
        let sent_bytes = RequestClass::ALL.map(|class| {
            sent_family
                .get_or_create(&vec![("kind", class.label())])
                .clone()
        });

        let flv_sessions_active = Gauge::default();
        registry.register(
            "flv_sessions_active",
            "HTTP-FLV responses currently streaming",
            flv_sessions_active.clone(),
        );
        let flv_pulls_active = Gauge::default();
        registry.register(
            "flv_pulls_active",
            "HTTP-FLV origin pulls running, one per stream being watched",
            flv_pulls_active.clone(),
        );
        let flv_viewers_per_pull = Histogram::new(exponential_buckets(1.0, 4.0, 9));
        registry.register(
            "flv_viewers_per_pull",
            "Viewers of a pull, observed as each viewer joins",
            flv_viewers_per_pull.clone(),
        );
        let flv_tags_dropped = Counter::default();
        registry.register(
            "flv_tags_dropped",
            "FLV tags slow viewers skipped to resume at the next keyframe",
            flv_tags_dropped.clone(),
        );
        let flv_viewers_cut = Counter::default();
        registry.register(
            "flv_viewers_cut",
            "FLV viewers cut for staying behind longer than flv.max_lag_ms",
            flv_viewers_cut.clone(),
        );
        let playlist_family = Family::<Labels, Counter>::default();
        registry.register(
            "playlists_refused",
            "Origin playlists answered with 502 instead, by reason",
            playlist_family.clone(),
        );
        let playlist_refusals = PlaylistRefusal::ALL.map(|reason| {
            playlist_family
                .get_or_create(&vec![("reason", reason.label())])
                .clone()
        });

        let head_family = Family::<Labels, Counter>::default();
        registry.register(
            "request_heads_refused",
            "Request heads refused before parsing: too long a target (414), too large (431), too slow (408)",
            head_family.clone(),
        );
        let head_refusals = HeadRefusal::ALL.map(|reason| {
            head_family
                .get_or_create(&vec![("reason", reason.label())])
                .clone()
        });

        let cache_family = Family::<Labels, Counter>::default();
        registry.register(
            "cache_lookups",
            "HLS requests answered through the cache, by kind and result (hit, miss, coalesced: waited for another request's fetch)",
            cache_family.clone(),
        );
        let cache_lookups = [Kind::Playlist, Kind::Segment].map(|kind| {
            ["hit", "miss", "coalesced"].map(|result| {
                cache_family
                    .get_or_create(&vec![("kind", kind.as_str()), ("result", result)])
                    .clone()
            })
        });
        let cut_short_family = Family::<Labels, Counter>::default();
        registry.register(
            "responses_cut_short",
            "Responses whose head went out (counted under their status) but whose body the origin ended early, by kind",
            cut_short_family.clone(),
        );
        let cut_short = RequestClass::ALL.map(|class| {
            cut_short_family
                .get_or_create(&vec![("kind", class.label())])
                .clone()
        });

        let segments_sent_from_file = Counter::default();
        registry.register(
            "segments_sent_from_file",
            "Cached segments sent to viewers from their sealed files by the kernel (sendfile), not copied through the proxy",
            segments_sent_from_file.clone(),
        );

        let cache_purged = Counter::default();
        registry.register(
            "cache_purged",
            "Cache entries dropped by purges",
            cache_purged.clone(),
        );

        let webrtc_sessions_tracked = Gauge::default();
        registry.register(
            "webrtc_sessions_tracked",
            "WHEP sessions followed so that a revocation (or, when configured, the token's expiry) ends them at the origin",
            webrtc_sessions_tracked.clone(),
        );
        let webrtc_sessions_untracked = Counter::default();
        registry.register(
            "webrtc_sessions_untracked",
            "WHEP sessions no longer followed because webrtc.max_tracked_sessions was reached",
            webrtc_sessions_untracked.clone(),
        );
        let ended_family = Family::<Labels, Counter>::default();
        registry.register(
            "webrtc_sessions_ended",
            "WHEP sessions the edge ended at their origin, by reason (revoked, expired)",
            ended_family.clone(),
        );
        let webrtc_sessions_ended = [EndReason::Revoked, EndReason::Expired].map(|reason| {
            ended_family
                .get_or_create(&vec![("reason", reason.as_str())])
                .clone()
        });
        let webrtc_session_end_failures = Counter::default();
        registry.register(
            "webrtc_session_end_failures",
            "Teardowns of WHEP sessions the origin refused or could not be sent",
            webrtc_session_end_failures.clone(),
        );

        Metrics {
            webrtc_sessions_tracked,
            webrtc_sessions_untracked,
            webrtc_sessions_ended,
            webrtc_session_end_failures,
            cache_lookups,
            cache_purged,
            requests,
            rejections,
            revoked,
            flv_viewers_revoked,
            upstream_latency,
            sent_bytes,
            cut_short,
            segments_sent_from_file,
            flv_sessions_active,
            flv_pulls_active,
            flv_viewers_per_pull,
            flv_tags_dropped,
            flv_viewers_cut,
            playlist_refusals,
            head_refusals,
        }
    }

    /// Counts one refused playlist.
    pub fn playlist_refused(&self, reason: PlaylistRefusal) {
        let index = PlaylistRefusal::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or_default();
        self.playlist_refusals[index].inc();
    }

    /// Counts one refused request head.
    pub fn head_refused(&self, reason: HeadRefusal) {
        let index = HeadRefusal::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or_default();
        self.head_refusals[index].inc();
    }

    /// Counts one finished request.
    pub fn request_done(&self, class: RequestClass, status: u16, body_bytes: u64) {
        self.requests[class.index()][status_class_index(status)].inc();
        if body_bytes > 0 {
            self.sent_bytes[class.index()].inc_by(body_bytes);
        }
    }

    /// Counts a response the origin ended early, after its head had gone out: the viewer got
    /// less than the head promised (its status is counted as sent, as nginx logs it).
    pub fn cut_short(&self, class: RequestClass) {
        self.cut_short[class.index()].inc();
    }

    /// Counts a WHEP session the edge ended at its origin.
    pub fn webrtc_session_ended(&self, reason: EndReason) {
        self.webrtc_sessions_ended[usize::from(reason == EndReason::Expired)].inc();
    }

    /// Counts a teardown the origin refused or that could not reach it.
    pub fn webrtc_session_end_failed(&self) {
        self.webrtc_session_end_failures.inc();
    }

    /// Counts a request refused because its room revoked the token.
    pub fn revoked(&self) {
        self.revoked.inc();
    }

    /// Counts a request refused for its token.
    pub fn rejected(&self, reason: Rejection) {
        let index = Rejection::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or_default();
        self.rejections[index].inc();
    }

    /// Records how long the origin took to answer.
    pub fn upstream_latency(&self, kind: Kind, seconds: f64) {
        let index = Kind::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or_default();
        self.upstream_latency[index].observe(seconds);
    }
}

/// Keeps a gauge of running things right however they end: it is decremented on drop.
#[derive(Debug)]
pub struct ActiveGauge(Gauge);

impl ActiveGauge {
    /// Counts one more until the guard is dropped.
    pub fn start(gauge: &Gauge) -> ActiveGauge {
        gauge.inc();
        ActiveGauge(gauge.clone())
    }
}

impl Drop for ActiveGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_with_their_names() {
        let mut registry = Registry::with_prefix("proxy");
        let metrics = Metrics::register(&mut registry);
        metrics.request_done(RequestClass::Routed(Kind::Playlist), 200, 120);
        metrics.rejected(Rejection::Expired);
        metrics.upstream_latency(Kind::Segment, 0.002);
        metrics.cut_short(RequestClass::Routed(Kind::Segment));
        {
            let _active = ActiveGauge::start(&metrics.flv_sessions_active);
            assert_eq!(metrics.flv_sessions_active.get(), 1);
        }
        assert_eq!(metrics.flv_sessions_active.get(), 0);
        let text = registry.render();
        assert!(
            text.contains("livegate_proxy_requests_total{kind=\"playlist\",status=\"2xx\"} 1"),
            "{text}"
        );
        assert!(text.contains("livegate_proxy_token_rejections_total{reason=\"expired\"} 1"));
        assert!(text.contains("livegate_proxy_sent_bytes_total{kind=\"playlist\"} 120"));
        assert!(text.contains("livegate_proxy_upstream_latency_seconds_count{kind=\"segment\"} 1"));
        assert!(text.contains("livegate_proxy_responses_cut_short_total{kind=\"segment\"} 1"));
        assert!(text.contains("livegate_proxy_responses_cut_short_total{kind=\"flv\"} 0"));
    }
}
