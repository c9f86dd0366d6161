//! Each live room's viewers and bitrate over the last hour: a sampler task of every instance
//! takes the live snapshot every `console.history_interval_s` and writes one point per room
//! into a bus [`Series`] keyed by room, in slots aligned to the interval. Instances sampling
//! the same slot write one point between them (the first stays), and every instance reads
//! the same history.

use std::time::Duration;

use livegate_core::bus::{Bus, Series, SeriesOptions};
use livegate_core::db::now_ms;
use livegate_core::service::CancellationToken;
use serde::{Deserialize, Serialize};

use super::config::ConsoleConfig;
use super::snapshot;
use crate::state::AppState;

/// One sample of a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryPoint {
    /// Viewers, counted as the room's details count them.
    pub viewers: u64,
    /// What the publisher sent, when the origin said.
    pub bitrate_kbps: Option<u64>,
}

/// The series of `config` on `bus`.
pub fn series(bus: &Bus, config: &ConsoleConfig) -> Series<HistoryPoint> {
    let interval = config.history_interval_s.max(1);
    bus.series(SeriesOptions {
        name: "console:history".to_owned(),
        retention: Duration::from_secs(config.history_retention_s),
        // One more than fits the retention: a slot on the edge is not cut early.
        capacity: usize::try_from(config.history_retention_s / interval + 1).unwrap_or(usize::MAX),
    })
}

/// The start of the slot `now_ms` falls in.
pub fn slot_of(now_ms: i64, interval_ms: i64) -> i64 {
    now_ms - now_ms.rem_euclid(interval_ms.max(1))
}

/// Samples every live room once.
async fn sample(state: &AppState, interval_ms: i64) {
    let taken = match snapshot::build(state, None).await {
        Ok(taken) => taken,
        Err(err) => {
            tracing::warn!(error = %err, "history sample skipped: live rooms unavailable");
            return;
        }
    };
    let slot = slot_of(taken.at, interval_ms);
    let series = state.console().history();
    for room in &taken.rooms {
        let point = HistoryPoint {
            viewers: room.viewers.total(),
            bitrate_kbps: room.bitrate_kbps,
        };
        if let Err(err) = series.record(&room.room_id.to_string(), slot, &point).await {
            // The bus is down: this slot of every room is lost, the next one is tried.
            tracing::warn!(error = %err, "history sample not stored");
            return;
        }
    }
}

/// Samples until `stop`, once per slot.
pub async fn run(state: AppState, stop: CancellationToken) {
    // A chat-only instance serves no console: the others sample.
    if state.config().chat.only {
        return;
    }
    let interval_ms =
        i64::try_from(state.config().console.history_interval_s.max(1) * 1000).unwrap_or(10_000);
    loop {
        sample(&state, interval_ms).await;
        let now = now_ms();
        let next = slot_of(now, interval_ms) + interval_ms;
        let wait = Duration::from_millis(u64::try_from(next - now).unwrap_or(0));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_aligned_to_the_interval() {
        assert_eq!(slot_of(25_300, 10_000), 20_000);
        assert_eq!(slot_of(20_000, 10_000), 20_000);
    }
}
