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

/// Waits until every room plays through the proxy (a keyframe on FLV, or a playlist with a
/// segment), so that the viewers measure a live stream rather than its start-up.
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

/// Whether `url` plays: a playlist with a segment, or FLV up to a keyframe (the FLV
/// response is handed back, still open).
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
            loop {
                let chunk = tokio::time::timeout_at(until, response.chunk())
                    .await
                    .map_err(|_| "no keyframe within 5 s".to_owned())?
                    .map_err(|err| transport_error(&err))?
                    .ok_or_else(|| "the stream ended".to_owned())?;
                let mut keyframe = false;
                reader
                    .feed(&chunk, |tag| keyframe |= tag.is_keyframe())
                    .map_err(|err| err.to_string())?;
                if keyframe {
                    return Ok(Some(response));
                }
            }
        }
    }
}
