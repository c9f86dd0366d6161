//! Before the viewers: waiting until every room plays through the proxy, and keeping the
//! warm-up's FLV connections open through the ramp.

use std::time::Duration;

use livegate_core::service::{CancellationToken, Shutdown};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::args::Plan;
use super::flvtags::FlvReader;
use super::hls_viewer;
use super::metrics::Protocol;
use super::publisher::PublisherReport;
use super::run::play_url;
use super::viewer::transport_error;

/// Waits until every room plays through the proxy (on FLV a keyframe and then a second of
/// media no faster than real time; on HLS a playlist with a segment), so that the viewers
/// measure a live stream rather than its start-up.
pub(super) async fn warm_up(
    plan: &Plan,
    shutdown: &Shutdown,
    publishers: &[JoinHandle<PublisherReport>],
) -> Result<Vec<reqwest::Response>, String> {
    let deadline = Instant::now() + plan.warmup_timeout;
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .build()
        .map_err(|err| err.to_string())?;
    let protocol = if plan.flv_viewers > 0 {
        Protocol::Flv
    } else {
        Protocol::Hls
    };
    let mut held = Vec::new();
    for room in &plan.rooms {
        let token = plan.token_keys.mint(*room, livegate_core::unix_now() + 600);
        let url = play_url(plan, protocol, *room, &token);
        loop {
            let last = match probe(&client, protocol, &url).await {
                Ok(response) => {
                    held.extend(response);
                    break;
                }
                Err(why) => why,
            };
            if publishers.iter().all(JoinHandle::is_finished) && plan.publish {
                return Err(format!("room {room}: the publishers stopped ({last})"));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "room {room} did not become playable in {:.0} s: {last}",
                    plan.warmup_timeout.as_secs_f64()
                ));
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
                () = shutdown.token().cancelled() => return Err("stopped".to_owned()),
            }
        }
    }
    Ok(held)
}

/// Media running ahead of the clock by more than this is a start-up burst, not a live stream.
const BURST: Duration = Duration::from_millis(250);
/// How long media must arrive no faster than real time to be at the live edge.
const STEADY: Duration = Duration::from_secs(1);

/// Whether an FLV stream has reached its live edge. An origin's first answer can hold seconds
/// of media that arrive in a burst (an encoder's or a relay's start-up buffer): a viewer that
/// joins then fills its buffer with them and watches that much behind for the whole run. The
/// edge is reached once media has come no faster than the clock for [`STEADY`].
#[derive(Debug, Default)]
struct LiveEdge {
    /// Where the current steady stretch began: wall time and media time.
    since: Option<(Instant, u32)>,
}

impl LiveEdge {
    /// A video frame with timestamp `timestamp_ms` arrived at `now`: whether the edge is
    /// reached.
    fn video(&mut self, timestamp_ms: u32, now: Instant) -> bool {
        let Some((wall, media)) = self.since else {
            self.since = Some((now, timestamp_ms));
            return false;
        };
        let media_ms = u64::from(timestamp_ms.wrapping_sub(media));
        let wall_ms = now.duration_since(wall).as_millis() as u64;
        if media_ms > wall_ms + BURST.as_millis() as u64 {
            // Still catching up: start again from here.
            self.since = Some((now, timestamp_ms));
            return false;
        }
        wall_ms >= STEADY.as_millis() as u64
    }
}

/// Reads `responses` until `until` (or a stop), discarding what comes.
pub(super) async fn hold(
    responses: Vec<reqwest::Response>,
    until: Instant,
    stop: CancellationToken,
) {
    let mut reads = tokio::task::JoinSet::new();
    for mut response in responses {
        reads.spawn(async move { while let Ok(Some(_)) = response.chunk().await {} });
    }
    tokio::select! {
        () = tokio::time::sleep_until(until) => {}
        () = stop.cancelled() => {}
    }
    reads.shutdown().await;
}

/// Whether `url` plays: a playlist with a segment, or FLV from a keyframe to the live edge
/// (the FLV response is handed back, still open).
async fn probe(
    client: &reqwest::Client,
    protocol: Protocol,
    url: &str,
) -> Result<Option<reqwest::Response>, String> {
    let limit = Duration::from_secs(5);
    let response = tokio::time::timeout(limit, client.get(url).send())
        .await
        .map_err(|_| "no answer".to_owned())?
        .map_err(|err| transport_error(&err))?;
    if response.status().as_u16() != 200 {
        return Err(format!("status {}", response.status().as_u16()));
    }
    match protocol {
        Protocol::Hls => {
            let text = tokio::time::timeout(limit, response.text())
                .await
                .map_err(|_| "playlist too slow".to_owned())?
                .map_err(|err| transport_error(&err))?;
            match hls_viewer::parse(&text) {
                Some(p) if !p.segments.is_empty() || p.variant.is_some() => Ok(None),
                Some(_) => Err("playlist has no segment yet".to_owned()),
                None => Err("not a playlist".to_owned()),
            }
        }
        Protocol::Flv => {
            let mut response = response;
            let mut reader = FlvReader::default();
            let until = Instant::now() + limit;
            let mut keyframe = false;
            let mut edge = LiveEdge::default();
            loop {
                let chunk = match tokio::time::timeout_at(until, response.chunk()).await {
                    Ok(chunk) => chunk,
                    // It plays; it may still be catching up, which the limit leaves to the run.
                    Err(_) if keyframe => return Ok(Some(response)),
                    Err(_) => return Err("no keyframe within 5 s".to_owned()),
                };
                let chunk = chunk
                    .map_err(|err| transport_error(&err))?
                    .ok_or_else(|| "the stream ended".to_owned())?;
                let now = Instant::now();
                let mut at_edge = false;
                reader
                    .feed(&chunk, |tag| {
                        keyframe |= tag.is_keyframe();
                        if keyframe && tag.kind == 9 {
                            at_edge = edge.video(tag.timestamp_ms, now);
                        }
                    })
                    .map_err(|err| err.to_string())?;
                if at_edge {
                    return Ok(Some(response));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_up_burst_is_not_the_live_edge() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut edge = LiveEdge::default();
        // Two seconds of media in 200 ms, then 25 frames a second in real time.
        for i in 0..50u32 {
            assert!(!edge.video(i * 40, t0 + ms(u64::from(i) * 4)), "frame {i}");
        }
        let live = |i: u32| t0 + ms(200 + u64::from(i) * 40);
        for i in 0..25u32 {
            assert!(!edge.video(2000 + i * 40, live(i)), "live frame {i}");
        }
        assert!(edge.video(3000, live(25)));
        // Without a burst, a steady second is enough.
        let mut edge = LiveEdge::default();
        assert!(!edge.video(0, t0));
        assert!(edge.video(1000, t0 + ms(1000)));
    }
}
