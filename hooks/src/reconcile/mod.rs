//! Reconciliation against the origins' HTTP APIs and ZLMediaKit's keepalives, and kicking a
//! room's publisher.
//!
//! Hooks get lost: SRS does not retry and sends nothing for sessions alive when it dies;
//! ZLMediaKit reports no viewer stops and nothing at all when it is killed. So a background
//! pass compares the open streams of each origin with what its API lists ([`srs`], [`zlm`])
//! and closes what the origin no longer has, and the streams of a ZLMediaKit whose keepalives
//! stopped are closed too.

pub mod srs;
pub mod zlm;

use std::time::Duration;

use livegate_core::db::{streams, DbError};
use livegate_core::origin::{OriginError, StreamRef};
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// Why a reconciliation pass or a kick failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The origin's API failed.
    #[error("origin API failed")]
    Api(#[from] OriginError),
    /// The database failed.
    #[error("database failed")]
    Db(#[from] DbError),
    /// No API is configured for the origin concerned.
    #[error("no API is configured for this origin (reconcile.srs_api_url, zlmediakit.api_url)")]
    NotConfigured,
}

/// Whether the service has anything to reconcile.
pub fn wanted(state: &AppState) -> bool {
    state.srs_api().is_some()
        || state.zlm_api().is_some()
        || state.config().zlmediakit.keepalive_misses > 0
}

/// One pass over every configured origin API: returns how many streams were closed.
pub async fn reconcile_once(state: &AppState) -> Result<usize, ReconcileError> {
    if state.srs_api().is_none() && state.zlm_api().is_none() {
        return Err(ReconcileError::NotConfigured);
    }
    let mut closed = 0;
    if let Some(api) = state.srs_api() {
        closed += srs::pass(state, api.as_ref()).await?;
    }
    if let Some(api) = state.zlm_api() {
        closed += zlm::pass(state, api.as_ref()).await?;
    }
    Ok(closed)
}

/// Runs passes every `reconcile.interval_ms` until `shutdown`: the APIs' and the keepalive
/// watch.
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
        if state.srs_api().is_some() || state.zlm_api().is_some() {
            if let Err(err) = reconcile_once(&state).await {
                state.metrics().reconcile_errors.inc();
                tracing::warn!(error = %err, cause = ?std::error::Error::source(&err), "reconciliation pass failed");
            }
        }
        if state.config().zlmediakit.keepalive_misses > 0 {
            if let Err(err) = zlm::watch_keepalives(&state).await {
                tracing::warn!(error = %err, cause = ?std::error::Error::source(&err), "keepalive watch failed");
            }
        }
    }
}

/// What [`kick`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KickOutcome {
    /// The publisher with this connection id (or, lacking one, of this origin stream) was
    /// disconnected.
    Kicked(String),
    /// The room has no open stream on an origin with an API.
    NotLive,
}

/// Disconnects the publisher of `room_id` through its origin's API (SRS `DELETE
/// /api/v1/clients/{id}`, ZLMediaKit `close_streams`). Its stop callback then closes the
/// stream as usual.
pub async fn kick(state: &AppState, room_id: i64) -> Result<KickOutcome, ReconcileError> {
    let Some(stream) = streams::open(state.db(), room_id).await? else {
        return Ok(KickOutcome::NotLive);
    };
    let api = match stream.origin_kind.as_str() {
        "srs" => state.srs_api(),
        "zlmediakit" => state.zlm_api(),
        _ => None,
    };
    let Some(api) = api else {
        return match stream.origin_kind.as_str() {
            "srs" | "zlmediakit" => Err(ReconcileError::NotConfigured),
            _ => Ok(KickOutcome::NotLive),
        };
    };
    let source = zlm::SourceId::of(&stream);
    let name = room_id.to_string();
    let target = StreamRef {
        vhost: source.as_ref().map(|s| s.vhost.as_str()),
        app: source.as_ref().map(|s| s.app.as_str()),
        name: source.as_ref().map_or(name.as_str(), |s| s.stream.as_str()),
        publisher: stream.origin_client_id.as_deref(),
    };
    api.kick(&target).await?;
    let kicked = stream
        .origin_client_id
        .clone()
        .or(stream.origin_stream_id.clone())
        .unwrap_or(name);
    tracing::info!(room.id = room_id, client.id = %kicked, "publisher kicked");
    Ok(KickOutcome::Kicked(kicked))
}
