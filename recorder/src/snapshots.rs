//! Snapshots of live rooms: while a room is live, one keyframe of its stream is pulled from
//! the origin every `pictures.snapshots.interval_ms` and stored as `{prefix}{room}.jpg`
//! (replacing the previous one), and the room's cover points at it.
//!
//! Which rooms are live comes from the bus: the room events the hooks service publishes
//! (went live, went offline), and the live keys, read at start-up, every
//! `resync_interval_ms` and whenever events may have been missed (a lagging subscriber, a
//! reconnected bus). At most `concurrency` pulls run at once, each within `timeout_ms`; a
//! room that goes offline has its pull stopped (its ffmpeg killed) and gets no more.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use livegate_core::bus::{Received, RoomEvent, RoomEventKind, Subscriber};
use livegate_core::db::{covers, now_ms};
use livegate_core::service::CancellationToken;
use livegate_core::token::TokenKeys;
use tokio::task::{AbortHandle, JoinSet};

use crate::config::SnapshotsConfig;
use crate::media::MediaError;
use crate::pipeline::Context;
use crate::storage::picture_link;

/// How long a minted play token is valid, in seconds: one pull.
const TOKEN_TTL_S: u64 = 300;

/// A live room's schedule.
#[derive(Debug)]
struct Room {
    /// When its next pull is due.
    due: Instant,
    /// Its pull under way, if any.
    pulling: Option<AbortHandle>,
}

/// The live rooms and their pulls.
struct Snapshots {
    ctx: Context,
    rooms: HashMap<i64, Room>,
    pulls: JoinSet<i64>,
    keys: Option<TokenKeys>,
}

/// The play URL of `room`, with a fresh token when the template asks for one.
fn play_url(config: &SnapshotsConfig, keys: Option<&TokenKeys>, room: i64) -> String {
    let url = config.play_url.replace("{room}", &room.to_string());
    match keys {
        Some(keys) if url.contains("{token}") => {
            let expires = livegate_core::unix_now() + TOKEN_TTL_S;
            let token = keys.mint(u64::try_from(room).unwrap_or(0), expires);
            url.replace("{token}", &token)
        }
        _ => url,
    }
}

/// `text` with `url`'s query (where a token would be) left out, for logs and errors.
fn redact(text: &str, url: &str) -> String {
    match url.split_once('?') {
        Some((bare, _)) => text.replace(url, &format!("{bare}?…")),
        None => text.to_owned(),
    }
}

/// Pulls, stores and records one snapshot of `room`.
async fn snapshot(ctx: Context, keys: Option<TokenKeys>, room: i64) {
    let config = &ctx.config.pictures.snapshots;
    let url = play_url(config, keys.as_ref(), room);
    let started = Instant::now();
    let limit = Duration::from_millis(config.timeout_ms);
    let jpeg = match ctx.tools.snapshot(&url, limit, ctx.picture_options()).await {
        Ok(jpeg) => jpeg,
        Err(err) => {
            let outcome = match err {
                MediaError::TimedOut { .. } => "timed_out",
                _ => "failed",
            };
            ctx.metrics.picture("snapshot", outcome);
            let error = redact(&err.to_string(), &url);
            tracing::warn!(room.id = room, error = %error, "no snapshot of the live room");
            return;
        }
    };
    let key = format!("{}{room}.jpg", config.key_prefix);
    let stored = async {
        let stored_url = ctx
            .storage
            .put_picture(&key, jpeg)
            .await
            .map_err(|err| err.to_string())?;
        let at = now_ms();
        let link = picture_link(&ctx.config.pictures, &key, &stored_url, at);
        covers::set_snapshot(&ctx.db, room, &link, at, at)
            .await
            .map_err(|err| format!("database: {err}"))
    }
    .await;
    match stored {
        Ok(()) => {
            ctx.metrics.picture("snapshot", "stored");
            tracing::debug!(
                room.id = room,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "snapshot stored"
            );
        }
        Err(err) => {
            ctx.metrics.picture("snapshot", "failed");
            tracing::warn!(room.id = room, error = %err, "cannot store the snapshot");
        }
    }
}

impl Snapshots {
    fn config(&self) -> &SnapshotsConfig {
        &self.ctx.config.pictures.snapshots
    }

    fn went_live(&mut self, room: i64) {
        if self.rooms.len() >= self.config().max_rooms && !self.rooms.contains_key(&room) {
            tracing::warn!(
                room.id = room,
                max_rooms = self.config().max_rooms,
                "too many live rooms to snapshot, skipping one"
            );
            return;
        }
        self.rooms.entry(room).or_insert_with(|| {
            tracing::debug!(room.id = room, "snapshotting a live room");
            Room {
                due: Instant::now(),
                pulling: None,
            }
        });
    }

    fn went_offline(&mut self, room: i64) {
        if let Some(gone) = self.rooms.remove(&room) {
            if let Some(pull) = gone.pulling {
                // Dropping the pull kills its ffmpeg.
                pull.abort();
            }
            tracing::debug!(room.id = room, "room offline, snapshots stopped");
        }
    }

    /// Makes the rooms those with a live key on the bus.
    async fn resync(&mut self) {
        let max = self.config().max_rooms;
        match self.ctx.bus.live_rooms(max).await {
            Ok(live) => {
                let gone: Vec<i64> = self
                    .rooms
                    .keys()
                    .filter(|room| !live.contains(room))
                    .copied()
                    .collect();
                for room in gone {
                    self.went_offline(room);
                }
                for room in live {
                    self.went_live(room);
                }
            }
            Err(err) => tracing::warn!(error = %err, "cannot read the live rooms"),
        }
    }

    async fn event(&mut self, event: RoomEvent) {
        match event.kind {
            RoomEventKind::Live => self.went_live(event.room_id),
            RoomEventKind::Offline => {
                // A newer session of the room may be live already.
                let newer = match self.ctx.bus.live(event.room_id).await {
                    Ok(Some(state)) => state.stream_id != event.stream_id,
                    Ok(None) | Err(_) => false,
                };
                if !newer {
                    self.went_offline(event.room_id);
                }
            }
        }
    }

    /// Starts the pulls that are due while slots are free; returns when the next one is due.
    fn start_due(&mut self) -> Option<Instant> {
        let now = Instant::now();
        let interval = Duration::from_millis(self.config().interval_ms);
        let concurrency = self.config().concurrency;
        loop {
            let next = self
                .rooms
                .iter()
                .filter(|(_, room)| room.pulling.is_none())
                .min_by_key(|(_, room)| room.due)
                .map(|(id, room)| (*id, room.due));
            let (id, due) = next?;
            if due > now || self.pulls.len() >= concurrency {
                return Some(due);
            }
            let task = snapshot(self.ctx.clone(), self.keys.clone(), id);
            let handle = self.pulls.spawn(async move {
                task.await;
                id
            });
            if let Some(room) = self.rooms.get_mut(&id) {
                room.pulling = Some(handle);
                room.due = now + interval;
            }
        }
    }

    fn pulled(&mut self, room: i64) {
        if let Some(room) = self.rooms.get_mut(&room) {
            room.pulling = None;
        }
    }
}

async fn subscribe(ctx: &Context) -> Option<Subscriber<RoomEvent>> {
    match ctx.bus.events().subscribe().await {
        Ok(subscriber) => Some(subscriber),
        Err(err) => {
            tracing::warn!(error = %err, "cannot follow the room events; reading live rooms meanwhile");
            None
        }
    }
}

async fn next_event(events: &mut Option<Subscriber<RoomEvent>>) -> Option<Received<RoomEvent>> {
    match events {
        Some(subscriber) => subscriber.recv().await,
        None => std::future::pending().await,
    }
}

/// Snapshots live rooms until `stop` (or returns at once when snapshots are off).
pub(crate) async fn run(ctx: Context, stop: CancellationToken) {
    let config = ctx.config.pictures.snapshots.clone();
    if !config.enabled {
        return;
    }
    let keys = match config.token_key.as_ref().map(|key| TokenKeys::new([key])) {
        Some(Ok(keys)) => Some(keys),
        Some(Err(err)) => {
            tracing::error!(error = %err, "pictures.snapshots.token_key is unusable; snapshots are off");
            return;
        }
        None => None,
    };
    let mut snapshots = Snapshots {
        ctx: ctx.clone(),
        rooms: HashMap::new(),
        pulls: JoinSet::new(),
        keys,
    };
    let mut events = subscribe(&ctx).await;
    let mut resync = tokio::time::interval(Duration::from_millis(config.resync_interval_ms));
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(
        concurrency = config.concurrency,
        interval_ms = config.interval_ms,
        "snapshots of live rooms on"
    );
    loop {
        let next_due = snapshots.start_due();
        ctx.metrics
            .snapshot_rooms
            .set(i64::try_from(snapshots.rooms.len()).unwrap_or(i64::MAX));
        let wake = next_due.map_or_else(
            || tokio::time::Instant::now() + Duration::from_secs(3600),
            tokio::time::Instant::from_std,
        );
        let slot_free = snapshots.pulls.len() < config.concurrency;
        tokio::select! {
            () = stop.cancelled() => break,
            _ = resync.tick() => {
                if events.is_none() {
                    events = subscribe(&ctx).await;
                }
                snapshots.resync().await;
            }
            received = next_event(&mut events) => match received {
                Some(Received::Message(event)) => snapshots.event(event).await,
                Some(Received::Lagged(_) | Received::Reconnected) => snapshots.resync().await,
                None => events = None,
            },
            Some(done) = snapshots.pulls.join_next(), if !snapshots.pulls.is_empty() => {
                if let Ok(room) = done {
                    snapshots.pulled(room);
                }
            }
            () = tokio::time::sleep_until(wake), if slot_free => {}
        }
    }
    snapshots.pulls.shutdown().await;
    ctx.metrics.snapshot_rooms.set(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use livegate_core::Secret;

    #[test]
    fn the_play_url_names_the_room_and_carries_a_token_when_asked() {
        let mut config = SnapshotsConfig::default();
        assert_eq!(play_url(&config, None, 42), "rtmp://127.0.0.1:1935/live/42");
        config.play_url = "http://origin:8080/live/{room}.flv?token={token}".to_owned();
        let keys = TokenKeys::new([&Secret::new("snapshot-test-key-0123456789abcdef")]).unwrap();
        let url = play_url(&config, Some(&keys), 42);
        assert!(
            url.starts_with("http://origin:8080/live/42.flv?token="),
            "{url}"
        );
        assert!(!url.contains("{token}"));
        let text = format!("{url}: Connection refused");
        assert_eq!(
            redact(&text, &url),
            "http://origin:8080/live/42.flv?…: Connection refused"
        );
    }
}
