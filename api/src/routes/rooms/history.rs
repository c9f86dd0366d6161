//! `GET /api/v1/rooms/{id}/history?minutes=` (owner, admin): the room's viewers and bitrate
//! as the console's sampler recorded them on the bus, oldest first.

use axum::extract::State;
use livegate_core::db::{now_ms, rooms};
use serde::{Deserialize, Serialize};

use super::read::room_id;
use crate::auth::Caller;
use crate::error::{ApiError, Path, Query};
use crate::state::AppState;

/// The query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// How far back, in minutes: 1 to the retention (60 by default).
    minutes: Option<u64>,
}

/// One sample.
#[derive(Debug, Serialize)]
pub struct Point {
    /// The start of its slot, unix milliseconds.
    at: i64,
    viewers: u64,
    bitrate_kbps: Option<u64>,
}

/// The answer.
#[derive(Debug, Serialize)]
pub struct History {
    /// Seconds between two samples.
    interval_s: u64,
    points: Vec<Point>,
}

/// The room's history.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
    Query(query): Query<HistoryQuery>,
) -> Result<axum::Json<History>, ApiError> {
    let config = &state.config().console;
    let most = (config.history_retention_s / 60).max(1);
    let minutes = match query.minutes {
        None => 60.min(most),
        Some(minutes) if (1..=most).contains(&minutes) => minutes,
        Some(_) => {
            return Err(ApiError::invalid(
                "minutes",
                format!("must be between 1 and {most}"),
            ))
        }
    };
    let room = rooms::get(state.db(), room_id(id)?)
        .await?
        .ok_or_else(|| ApiError::not_found("room"))?;
    if !caller.may_manage(room.owner_id) {
        return Err(ApiError::forbidden(
            "only the room's owner and admins see its history",
        ));
    }
    let from = now_ms().saturating_sub(i64::try_from(minutes * 60_000).unwrap_or(i64::MAX));
    let points = state
        .console()
        .history()
        .since(&room.id.to_string(), from)
        .await?
        .into_iter()
        .map(|(at, point)| Point {
            at,
            viewers: point.viewers,
            bitrate_kbps: point.bitrate_kbps,
        })
        .collect();
    Ok(axum::Json(History {
        interval_s: config.history_interval_s,
        points,
    }))
}
