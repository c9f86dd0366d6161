//! Periodic resync of the bus's live keys from the database, which is the truth: a live or
//! offline write lost on the way (outbox full, shutdown while Redis was down, Redis losing
//! its data) is repaired within one interval instead of lasting forever.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use livegate_core::bus::{BusError, LiveState};
use livegate_core::db::{streams, DbError};
use tokio_util::sync::CancellationToken;

use crate::outbox::BusOp;
use crate::state::AppState;

/// Most rooms looked at per pass, on each side.
const MAX_ROOMS: u32 = 100_000;

/// Why a resync pass failed.
#[derive(Debug, thiserror::Error)]
pub enum ResyncError {
    /// The database failed.
    #[error("database failed")]
    Db(#[from] DbError),
    /// The bus failed.
    #[error("bus failed")]
    Bus(#[from] BusError),
}

/// One pass: queues the writes that make the live keys match the open streams; returns how
/// many keys were repaired. The writes go through the outbox, in order with the callbacks'.
pub async fn resync_once(state: &AppState) -> Result<usize, ResyncError> {
    let open: HashMap<i64, LiveState> = streams::open_all(state.db(), MAX_ROOMS)
        .await?
        .into_iter()
        .map(|stream| {
            (
                stream.room_id,
                LiveState {
                    stream_id: stream.id,
                    started_at_ms: stream.start_at,
                    origin_server_id: stream.origin_server_id,
                },
            )
        })
        .collect();
    let mut repaired = 0;
    let mut keyed = HashSet::new();
    for room_id in state.bus().live_rooms(MAX_ROOMS as usize).await? {
        let Some(live) = state.bus().live(room_id).await? else {
            continue;
        };
        keyed.insert(room_id);
        match open.get(&room_id) {
            Some(truth) if truth.stream_id == live.stream_id => {}
            Some(truth) => {
                repaired += 1;
                state.outbox().push(BusOp::SetLive {
                    room_id,
                    state: truth.clone(),
                });
            }
            None => {
                repaired += 1;
                state.outbox().push(BusOp::ClearLive {
                    room_id,
                    stream_id: live.stream_id,
                });
            }
        }
    }
    for (room_id, truth) in open {
        if !keyed.contains(&room_id) {
            repaired += 1;
            state.outbox().push(BusOp::SetLive {
                room_id,
                state: truth,
            });
        }
    }
    if repaired > 0 {
        state.metrics().bus_resynced.inc_by(repaired as u64);
        tracing::info!(
            keys.repaired = repaired,
            "resynced the bus's live keys from the database"
        );
    }
    Ok(repaired)
}

/// Runs passes every `outbox.resync_interval_ms` until `shutdown`.
pub async fn run(state: AppState, shutdown: CancellationToken) {
    let interval = Duration::from_millis(state.config().outbox.resync_interval_ms);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate: let the service settle first.
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let pass = tokio::select! {
            pass = resync_once(&state) => pass,
            () = shutdown.cancelled() => return,
        };
        if let Err(err) = pass {
            tracing::warn!(error = %err, cause = ?std::error::Error::source(&err), "resync of the bus's live keys failed");
        }
    }
}
