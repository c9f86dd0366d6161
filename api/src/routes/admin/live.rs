//! `GET /api/v1/admin/live` (the rooms on air now) and `GET /api/v1/admin/live/events`, the
//! same as a server-sent event stream: a `snapshot` event first and on every change (a room
//! going live or offline) or refresh, keep-alive comments between. It ends when the service
//! shuts down.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use livegate_core::service::CancellationToken;
use tokio::sync::watch;

use super::owner_scope;
use crate::auth::Caller;
use crate::console::snapshot::{self, LiveSnapshot};
use crate::error::ApiError;
use crate::state::AppState;

/// Between two keep-alive comments.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The rooms on air now: every room for an admin, their own for a streamer.
pub async fn snapshot(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<LiveSnapshot>, ApiError> {
    let owner = owner_scope(&caller)?;
    Ok(axum::Json(snapshot::build(&state, owner).await?))
}

type Latest = watch::Receiver<Option<Arc<LiveSnapshot>>>;

/// The next snapshot to send: the current one first (once there is one), then each new one;
/// `None` when the feed closes.
async fn next_snapshot(
    latest: &mut Latest,
    closed: &CancellationToken,
    first: bool,
) -> Option<Arc<LiveSnapshot>> {
    if first {
        if let Some(taken) = latest.borrow_and_update().clone() {
            return Some(taken);
        }
    }
    loop {
        tokio::select! {
            changed = latest.changed() => changed.ok()?,
            () = closed.cancelled() => return None,
        }
        if let Some(taken) = latest.borrow_and_update().clone() {
            return Some(taken);
        }
    }
}

/// The feed of the rooms on air.
pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let owner = owner_scope(&caller)?;
    let feed = state.console().feed();
    let latest = feed
        .subscribe(state.config().console.live_max_subscribers)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "too many live feeds are open on this instance, try again later",
            )
        })?;
    let closed = feed.closed().clone();
    let events = futures_util::stream::unfold(
        (latest, closed, true),
        move |(mut latest, closed, first)| async move {
            let taken = next_snapshot(&mut latest, &closed, first).await?;
            let event = Event::default()
                .event("snapshot")
                .json_data(taken.of_owner(owner))
                .unwrap_or_else(|_| Event::default().comment("snapshot not encoded"));
            Some((Ok(event), (latest, closed, false)))
        },
    );
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}
