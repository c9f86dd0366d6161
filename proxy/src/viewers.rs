//! Who is watching what on this edge: FLV responses running per room, and HLS viewers as
//! distinct tokens that fetched a playlist within a sliding window (a player reloads its
//! playlist every target duration; a token is one viewer). Reported on the admin port and,
//! with a bus, published every few seconds for the API and the console.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use livegate_core::bus::{Bus, EdgeViewers, RoomViewers};
use pingora::server::ShutdownWatch;
use serde::Deserialize;
use tracing::{debug, warn};

/// `[viewers]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ViewersConfig {
    /// How often counts are published to the bus, in milliseconds. Default 5000.
    pub report_interval_ms: u64,
    /// How long an HLS token counts as a viewer after its last playlist fetch, in seconds.
    /// Default 30.
    pub hls_window_s: u64,
    /// Most HLS tokens tracked at once (past it, new ones are not counted). Default 1000000.
    pub max_hls_viewers: usize,
}

impl Default for ViewersConfig {
    fn default() -> Self {
        Self {
            report_interval_ms: 5000,
            hls_window_s: 30,
            max_hls_viewers: 1_000_000,
        }
    }
}

impl ViewersConfig {
    /// Records problems under `viewers`.
    pub fn validate(&self, problems: &mut livegate_core::config::Problems) {
        problems.check(
            self.report_interval_ms >= 100,
            "viewers.report_interval_ms",
            "must be at least 100",
        );
        problems.check(
            self.hls_window_s >= 1,
            "viewers.hls_window_s",
            "must be at least 1",
        );
    }
}

#[derive(Debug, Default)]
struct Counts {
    flv: HashMap<u64, u64>,
    /// Room → token hash → last playlist fetch.
    hls: HashMap<u64, HashMap<u64, Instant>>,
    hls_tracked: usize,
}

/// The edge's viewer counts.
#[derive(Debug)]
pub struct ViewerCounts {
    counts: Mutex<Counts>,
    // Tokens are kept only as keyed hashes: never the token itself.
    hasher: RandomState,
    window: Duration,
    max_hls: usize,
}

fn lock(counts: &Mutex<Counts>) -> MutexGuard<'_, Counts> {
    counts.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ViewerCounts {
    /// Empty counts with the configured window.
    pub fn new(config: &ViewersConfig) -> ViewerCounts {
        ViewerCounts {
            counts: Mutex::new(Counts::default()),
            hasher: RandomState::new(),
            window: Duration::from_secs(config.hls_window_s),
            max_hls: config.max_hls_viewers,
        }
    }

    /// Counts an FLV viewer of `room` until the guard is dropped.
    pub fn flv_viewer(self: &Arc<Self>, room: u64) -> FlvViewer {
        *lock(&self.counts).flv.entry(room).or_insert(0) += 1;
        FlvViewer {
            counts: self.clone(),
            room,
        }
    }

    /// Notes a playlist fetch by the viewer holding `token` in `room`.
    pub fn hls_seen(&self, room: u64, token: &str) {
        let id = self.hasher.hash_one(token);
        let now = Instant::now();
        let mut counts = lock(&self.counts);
        let full = counts.hls_tracked >= self.max_hls;
        let viewers = counts.hls.entry(room).or_default();
        let known = viewers.contains_key(&id);
        if known || !full {
            viewers.insert(id, now);
        }
        if !known && !full {
            counts.hls_tracked += 1;
        }
    }

    /// Every room with viewers now (HLS tokens past the window are forgotten).
    pub fn snapshot(&self) -> Vec<RoomViewers> {
        let now = Instant::now();
        let window = self.window;
        let mut counts = lock(&self.counts);
        let mut forgotten = 0;
        counts.hls.retain(|_, viewers| {
            let before = viewers.len();
            viewers.retain(|_, seen| now.duration_since(*seen) <= window);
            forgotten += before - viewers.len();
            !viewers.is_empty()
        });
        counts.hls_tracked -= forgotten;
        let mut rooms: HashMap<u64, RoomViewers> = HashMap::new();
        for (room, flv) in &counts.flv {
            rooms
                .entry(*room)
                .or_insert(RoomViewers {
                    room_id: *room,
                    flv: 0,
                    hls: 0,
                })
                .flv = *flv;
        }
        for (room, viewers) in &counts.hls {
            rooms
                .entry(*room)
                .or_insert(RoomViewers {
                    room_id: *room,
                    flv: 0,
                    hls: 0,
                })
                .hls = viewers.len() as u64;
        }
        let mut rooms: Vec<RoomViewers> = rooms.into_values().collect();
        rooms.sort_by_key(|room| room.room_id);
        rooms
    }
}

/// An FLV viewer being counted.
#[derive(Debug)]
pub struct FlvViewer {
    counts: Arc<ViewerCounts>,
    room: u64,
}

impl Drop for FlvViewer {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts.counts);
        if let Some(count) = counts.flv.get_mut(&self.room) {
            *count -= 1;
            if *count == 0 {
                counts.flv.remove(&self.room);
            }
        }
    }
}

/// Publishes the counts to the bus every interval.
pub struct ViewerReporter {
    counts: Arc<ViewerCounts>,
    edge: String,
    interval: Duration,
}

impl ViewerReporter {
    /// Reports `counts` as edge `edge`.
    pub fn new(counts: Arc<ViewerCounts>, edge: String, interval: Duration) -> ViewerReporter {
        ViewerReporter {
            counts,
            edge,
            interval,
        }
    }

    fn report(&self) -> EdgeViewers {
        let interval_ms = i64::try_from(self.interval.as_millis()).unwrap_or(i64::MAX);
        EdgeViewers {
            edge: self.edge.clone(),
            at_ms: livegate_core::unix_now_ms(),
            // Three missed reports and readers forget this edge.
            valid_ms: interval_ms.saturating_mul(3),
            rooms: self.counts.snapshot(),
        }
    }
}

impl ViewerReporter {
    /// Publishes on `bus` every interval until shutdown.
    pub async fn publish(&self, bus: &Bus, mut shutdown: ShutdownWatch) {
        let channel = bus.edge_viewers();
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let report = self.report();
            match channel.publish(&report).await {
                Ok(()) => {
                    failing = false;
                    debug!(rooms = report.rooms.len(), "viewer counts published");
                }
                // Once per outage, not once per report.
                Err(err) if !failing => {
                    failing = true;
                    warn!(error = %err, "cannot publish viewer counts");
                }
                Err(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flv_viewers_count_while_they_watch_and_hls_tokens_once() {
        let counts = Arc::new(ViewerCounts::new(&ViewersConfig::default()));
        let first = counts.flv_viewer(42);
        let second = counts.flv_viewer(42);
        counts.hls_seen(42, "token-a");
        counts.hls_seen(42, "token-a");
        counts.hls_seen(42, "token-b");
        counts.hls_seen(43, "token-c");
        assert_eq!(
            counts.snapshot(),
            vec![
                RoomViewers {
                    room_id: 42,
                    flv: 2,
                    hls: 2
                },
                RoomViewers {
                    room_id: 43,
                    flv: 0,
                    hls: 1
                },
            ]
        );
        drop((first, second));
        assert_eq!(
            counts.snapshot()[0],
            RoomViewers {
                room_id: 42,
                flv: 0,
                hls: 2
            }
        );
    }

    #[test]
    fn hls_tokens_past_the_cap_are_not_counted() {
        let counts = ViewerCounts::new(&ViewersConfig {
            max_hls_viewers: 2,
            ..ViewersConfig::default()
        });
        for token in ["a", "b", "c"] {
            counts.hls_seen(42, token);
        }
        assert_eq!(counts.snapshot()[0].hls, 2);
    }
}
