//! Viewer counts from the edge: every proxy publishes each room's viewers on the bus every few
//! seconds; the API keeps the latest report of each proxy and adds them up for room details.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use livegate_core::bus::{Bus, Received, RoomViewers, ViewerTally};
use livegate_core::service::CancellationToken;
use livegate_core::unix_now_ms;

/// Pause before subscribing again when the bus fails.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The edges' latest reports.
#[derive(Debug, Default)]
pub struct EdgeViewers {
    // A std mutex: held to apply a report or add up a room, never across an await.
    tally: Mutex<ViewerTally>,
}

impl EdgeViewers {
    /// Viewers of `room_id` on every edge that reported lately (FLV and HLS together).
    pub fn room(&self, room_id: i64) -> i64 {
        let room = self.split(room_id);
        i64::try_from(room.flv + room.hls).unwrap_or(i64::MAX)
    }

    /// Viewers of `room_id` on every edge that reported lately, FLV and HLS apart.
    pub fn split(&self, room_id: i64) -> RoomViewers {
        let tally = self.tally.lock().unwrap_or_else(PoisonError::into_inner);
        tally.room(room_id.unsigned_abs(), unix_now_ms())
    }

    /// Follows the edges' reports on `bus` until `stop`.
    pub async fn follow(&self, bus: Bus, stop: CancellationToken) {
        let channel = bus.edge_viewers();
        loop {
            let subscribed = tokio::select! {
                subscribed = channel.subscribe() => subscribed,
                () = stop.cancelled() => return,
            };
            let mut reports = match subscribed {
                Ok(reports) => reports,
                Err(err) => {
                    tracing::debug!(error = %err, "cannot follow edge viewer counts yet");
                    tokio::select! {
                        () = tokio::time::sleep(RETRY_AFTER) => continue,
                        () = stop.cancelled() => return,
                    }
                }
            };
            loop {
                let received = tokio::select! {
                    received = reports.recv() => received,
                    () = stop.cancelled() => return,
                };
                match received {
                    Some(Received::Message(report)) => {
                        let mut tally = self.tally.lock().unwrap_or_else(PoisonError::into_inner);
                        tally.expire(unix_now_ms());
                        tally.apply(report);
                    }
                    // Reports repeat every few seconds: a missed one is replaced by the next.
                    Some(Received::Lagged(_) | Received::Reconnected) => {}
                    None => break,
                }
            }
        }
    }
}
