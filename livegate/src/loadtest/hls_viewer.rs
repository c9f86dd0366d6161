//! An HLS viewer that behaves like a live player: it loads the playlist, starts three
//! segments from the live edge, fetches each new segment once, and reloads the playlist every
//! target duration (half of it when nothing changed, as RFC 8216 §6.3.4 asks). Segment
//! arrivals feed the player model; first frame is the first byte of the first segment.

use std::time::Duration;

use tokio::time::Instant;
use url::Url;

use super::metrics::{Live, Outcome, Protocol, ViewerReport};
use super::playout::Playout;
use super::stamp;
use super::viewer::{close_report, latency_ms, transport_error, ViewerSpec, REBUFFER};

/// Segments from the live edge a player starts at (hls.js's `liveSyncDurationCount`).
const START_FROM_EDGE: usize = 3;
/// Playlist reloads without a new segment before the stream counts as stopped.
const STUCK_RELOADS: u32 = 8;
/// Longest segment read into memory.
const MAX_SEGMENT: usize = 64 * 1024 * 1024;

/// A media playlist, or a master playlist's first variant.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Playlist {
    pub(crate) target: Duration,
    pub(crate) sequence: u64,
    /// (duration, URI) in order.
    pub(crate) segments: Vec<(Duration, String)>,
    pub(crate) ended: bool,
    /// A master playlist's first variant URI.
    pub(crate) variant: Option<String>,
}

/// Parses a playlist; `None` when it is not one.
pub(crate) fn parse(text: &str) -> Option<Playlist> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    if lines.next() != Some("#EXTM3U") {
        return None;
    }
    let mut playlist = Playlist {
        target: Duration::from_secs(2),
        sequence: 0,
        segments: Vec::new(),
        ended: false,
        variant: None,
    };
    let mut duration = None;
    let mut variant_next = false;
    for line in lines {
        if let Some(value) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            playlist.target = Duration::from_secs_f64(value.parse::<f64>().ok()?.clamp(0.1, 60.0));
        } else if let Some(value) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            playlist.sequence = value.parse().ok()?;
        } else if let Some(value) = line.strip_prefix("#EXTINF:") {
            let seconds: f64 = value.split(',').next()?.trim().parse().ok()?;
            duration = Some(Duration::from_secs_f64(seconds.clamp(0.0, 600.0)));
        } else if line == "#EXT-X-ENDLIST" {
            playlist.ended = true;
        } else if line.starts_with("#EXT-X-STREAM-INF") {
            variant_next = true;
        } else if !line.starts_with('#') {
            if variant_next && playlist.variant.is_none() {
                playlist.variant = Some(line.to_owned());
            } else if let Some(duration) = duration.take() {
                playlist.segments.push((duration, line.to_owned()));
            }
            variant_next = false;
        }
    }
    Some(playlist)
}

/// Watches until the run ends or the stream fails.
pub(crate) async fn run(spec: ViewerSpec) -> ViewerReport {
    let mut report = ViewerReport::new(Protocol::Hls, spec.bad_token);
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
    let Ok(url) = Url::parse(&spec.url) else {
        report.fail(Outcome::Connect, "not a URL");
        return report;
    };
    let mut player = Player {
        spec: &spec,
        client,
        url,
        report,
        requested,
        playout: Playout::new(REBUFFER),
        next: None,
        stall_reported: Duration::ZERO,
    };
    let ended_at = player.watch(response).await;
    let Player {
        report,
        mut playout,
        stall_reported,
        ..
    } = player;
    close_report(
        &spec,
        report,
        &mut playout,
        stall_reported,
        ended_at,
        "no segment",
    )
}

struct Player<'a> {
    spec: &'a ViewerSpec,
    client: reqwest::Client,
    url: Url,
    report: ViewerReport,
    requested: Instant,
    playout: Playout,
    /// Media sequence number of the next segment to fetch.
    next: Option<u64>,
    stall_reported: Duration,
}

enum Fetch {
    Done,
    Over,
    Failed,
}

impl Player<'_> {
    async fn watch(&mut self, first: reqwest::Response) -> Instant {
        let mut response = Some(first);
        let mut stuck = 0;
        loop {
            let text = match response.take() {
                Some(response) => self.text(response).await,
                None => match self.get(self.url.clone()).await {
                    Answer::Response(response) => self.text(response).await,
                    Answer::Over => return self.spec.end.min(Instant::now()),
                    Answer::Failed => return Instant::now(),
                },
            };
            let Some(text) = text else {
                return Instant::now();
            };
            let Some(playlist) = parse(&text) else {
                self.report.fail(Outcome::BadMedia, "not a playlist");
                return Instant::now();
            };
            if let Some(variant) = playlist
                .variant
                .as_deref()
                .filter(|_| playlist.segments.is_empty())
            {
                match self.url.join(variant) {
                    Ok(url) => self.url = url,
                    Err(_) => {
                        self.report.fail(Outcome::BadMedia, "bad variant URI");
                        return Instant::now();
                    }
                }
                continue;
            }
            let count = playlist.segments.len() as u64;
            let next = *self.next.get_or_insert_with(|| {
                playlist.sequence + count.saturating_sub(START_FROM_EDGE as u64)
            });
            // Fallen behind the window: carry on from its start.
            let mut next = next.max(playlist.sequence);
            let mut fresh = false;
            for (index, (duration, uri)) in playlist.segments.iter().enumerate() {
                let number = playlist.sequence + index as u64;
                if number < next {
                    continue;
                }
                match self.segment(uri, *duration).await {
                    Fetch::Done => {}
                    Fetch::Over => return self.spec.end.min(Instant::now()),
                    Fetch::Failed => return Instant::now(),
                }
                next = number + 1;
                fresh = true;
            }
            self.next = Some(next);
            if playlist.ended {
                self.report.fail(Outcome::EndedEarly, "the playlist ended");
                return Instant::now();
            }
            stuck = if fresh { 0 } else { stuck + 1 };
            if stuck >= STUCK_RELOADS {
                self.report
                    .fail(Outcome::EndedEarly, "the playlist stopped growing");
                return Instant::now();
            }
            let wait = if fresh {
                playlist.target
            } else {
                playlist.target / 2
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.spec.over() => return self.spec.end.min(Instant::now()),
            }
        }
    }

    async fn get(&mut self, url: Url) -> Answer {
        let sent = tokio::select! {
            sent = tokio::time::timeout(super::viewer::READ_TIMEOUT, self.client.get(url).send()) => sent,
            () = self.spec.over() => return Answer::Over,
        };
        match sent {
            Err(_) => self.report.fail(Outcome::EndedEarly, "no answer in 10 s"),
            Ok(Err(err)) if err.is_connect() => {
                self.report.fail(Outcome::Connect, transport_error(&err));
            }
            Ok(Err(err)) => self.report.fail(Outcome::EndedEarly, transport_error(&err)),
            Ok(Ok(response)) if response.status().as_u16() == 200 => {
                return Answer::Response(response)
            }
            Ok(Ok(response)) => self.report.fail(
                Outcome::Status,
                format!("status {}", response.status().as_u16()),
            ),
        }
        Answer::Failed
    }

    async fn text(&mut self, response: reqwest::Response) -> Option<String> {
        match tokio::time::timeout(super::viewer::READ_TIMEOUT, response.text()).await {
            Ok(Ok(text)) => {
                Live::add(&self.spec.live.bytes, text.len() as u64);
                self.report.bytes += text.len() as u64;
                Some(text)
            }
            Ok(Err(err)) => {
                self.report.fail(Outcome::EndedEarly, transport_error(&err));
                None
            }
            Err(_) => {
                self.report
                    .fail(Outcome::EndedEarly, "playlist body too slow");
                None
            }
        }
    }

    async fn segment(&mut self, uri: &str, duration: Duration) -> Fetch {
        let Ok(url) = self.url.join(uri) else {
            self.report.fail(Outcome::BadMedia, "bad segment URI");
            return Fetch::Failed;
        };
        let is_ts = url.path().ends_with(".ts");
        let mut response = match self.get(url).await {
            Answer::Response(response) => response,
            Answer::Over => return Fetch::Over,
            Answer::Failed => return Fetch::Failed,
        };
        let mut body = Vec::new();
        loop {
            let chunk = tokio::select! {
                chunk = tokio::time::timeout(super::viewer::READ_TIMEOUT, response.chunk()) => chunk,
                () = self.spec.over() => return Fetch::Over,
            };
            let bytes = match chunk {
                Ok(Ok(Some(bytes))) => bytes,
                Ok(Ok(None)) => break,
                Ok(Err(err)) => {
                    self.report.fail(Outcome::EndedEarly, transport_error(&err));
                    return Fetch::Failed;
                }
                Err(_) => {
                    self.report
                        .fail(Outcome::EndedEarly, "segment body too slow");
                    return Fetch::Failed;
                }
            };
            if body.is_empty() && !bytes.is_empty() {
                if is_ts && bytes[0] != 0x47 {
                    self.report
                        .fail(Outcome::BadMedia, "segment is not MPEG-TS");
                    return Fetch::Failed;
                }
                if self.report.first_frame.is_none() {
                    self.report.first_frame = Some(self.requested.elapsed());
                    Live::add(&self.spec.live.playing, 1);
                }
            }
            Live::add(&self.spec.live.bytes, bytes.len() as u64);
            self.report.bytes += bytes.len() as u64;
            if body.len() + bytes.len() > MAX_SEGMENT {
                self.report.fail(Outcome::BadMedia, "segment too large");
                return Fetch::Failed;
            }
            body.extend_from_slice(&bytes);
        }
        if body.is_empty() {
            self.report.fail(Outcome::BadMedia, "empty segment");
            return Fetch::Failed;
        }
        let now = Instant::now();
        let (plays_at, stall) = self.playout.arrive(now, duration);
        if let Some(stall) = stall {
            Live::add(&self.spec.live.stall_ms, stall.as_millis() as u64);
            self.stall_reported += stall;
        }
        if let Some(stamp_ms) = stamp::find(&body) {
            let latency = latency_ms(stamp_ms, plays_at, now);
            self.report.latencies.push(latency);
            self.spec.live.latency(latency);
        }
        Fetch::Done
    }
}

enum Answer {
    Response(reqwest::Response),
    Over,
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_and_master_playlists_parse() {
        let media = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:7\n#EXT-X-TARGETDURATION:2\n\
                     #EXTINF:2.002,\n42-7.ts?token=t\n#EXTINF:1.5,\n42-8.ts?token=t\n";
        let playlist = parse(media).unwrap();
        assert_eq!(playlist.sequence, 7);
        assert_eq!(playlist.target, Duration::from_secs(2));
        assert_eq!(
            playlist.segments,
            [
                (Duration::from_secs_f64(2.002), "42-7.ts?token=t".to_owned()),
                (Duration::from_secs_f64(1.5), "42-8.ts?token=t".to_owned())
            ]
        );
        assert!(!playlist.ended);
        let master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000\nlow/index.m3u8\n";
        assert_eq!(
            parse(master).unwrap().variant.as_deref(),
            Some("low/index.m3u8")
        );
        assert!(parse("forbidden\n").is_none());
        assert!(parse("#EXTM3U\n#EXT-X-ENDLIST\n").unwrap().ended);
    }
}
