//! Reconciliation against the SRS HTTP API, and kicking a room's publisher.
//!
//! Hooks get lost: SRS does not retry, sends nothing for sessions alive when it dies, and
//! sometimes pairs starts and stops badly. So a background pass compares the open streams of
//! that SRS server with `GET /api/v1/streams` and closes what SRS no longer has; a changed
//! `service_id` means SRS restarted and every stream opened before is over.

use std::time::Duration;

use livegate_core::db::{now_ms, DbError};
use tokio_util::sync::CancellationToken;

use crate::handlers::close_streams;
use crate::srs_api::{SrsApiError, SrsStreams};
use crate::state::AppState;

/// Why a reconciliation pass or a kick failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The SRS API failed.
    #[error("SRS API failed")]
    Api(#[from] SrsApiError),
    /// The database failed.
    #[error("database failed")]
    Db(#[from] DbError),
    /// No SRS API is configured.
    #[error("no SRS API is configured (reconcile.srs_api_url)")]
    NotConfigured,
}

/// Which of `open` streams SRS no longer carries: opened under another `service_id` (SRS
/// restarted), or with no active publisher of that client id, once older than `grace_ms`.
pub fn dropped_streams<'a>(
    open: &'a [livegate_core::db::Stream],
    api: &SrsStreams,
    now_ms: i64,
    grace_ms: i64,
) -> Vec<&'a livegate_core::db::Stream> {
    open.iter()
        .filter(|stream| {
            let restarted = stream
                .origin_service_id
                .as_deref()
                .is_some_and(|service| service != api.service);
            if restarted {
                return true;
            }
            if now_ms - stream.start_at < grace_ms {
                return false;
            }
            !api.streams.iter().any(|s| {
                s.publish.active
                    && s.publish.cid.is_some()
                    && s.publish.cid == stream.origin_client_id
            })
        })
        .collect()
}

/// One pass: returns how many streams were closed.
pub async fn reconcile_once(state: &AppState) -> Result<usize, ReconcileError> {
    let api = state.srs_api().ok_or(ReconcileError::NotConfigured)?;
    let listed = api.streams().await?;
    let open = state.db().open_streams_of_server(&listed.server).await?;
    let grace = i64::try_from(state.config().reconcile.grace_ms).unwrap_or(i64::MAX);
    let dropped: Vec<_> = dropped_streams(&open, &listed, now_ms(), grace)
        .into_iter()
        .cloned()
        .collect();
    let closed = close_streams(state, &dropped).await?;
    if closed > 0 {
        state.metrics().reconcile_closed.inc_by(closed as u64);
        tracing::info!(origin = %listed.server, streams.closed = closed, "reconciliation closed streams the origin dropped");
    }
    Ok(closed)
}

/// Runs passes every `reconcile.interval_ms` until `shutdown`.
pub async fn run(state: AppState, shutdown: CancellationToken) {
    let interval = Duration::from_millis(state.config().reconcile.interval_ms);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => return,
        }
        // A pass is bounded by the API timeout and the pool's acquire timeout.
        if let Err(err) = reconcile_once(&state).await {
            state.metrics().reconcile_errors.inc();
            tracing::warn!(error = %err, cause = ?std::error::Error::source(&err), "reconciliation pass failed");
        }
    }
}

/// What [`kick`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KickOutcome {
    /// The publisher with this client id was disconnected.
    Kicked(String),
    /// The room has no open stream carrying an SRS client id.
    NotLive,
}

/// Disconnects the publisher of `room_id` through the SRS API (`DELETE
/// /api/v1/clients/{id}`). Its `on_unpublish` then closes the stream as usual.
pub async fn kick(state: &AppState, room_id: i64) -> Result<KickOutcome, ReconcileError> {
    let api = state.srs_api().ok_or(ReconcileError::NotConfigured)?;
    let Some(client_id) = state
        .db()
        .open_stream(room_id)
        .await?
        .filter(|s| s.origin_kind == "srs")
        .and_then(|s| s.origin_client_id)
    else {
        return Ok(KickOutcome::NotLive);
    };
    api.kick(&client_id).await?;
    tracing::info!(room.id = room_id, client.id = %client_id, "publisher kicked");
    Ok(KickOutcome::Kicked(client_id))
}
