//! SRS: a stream whose publisher `GET /api/v1/streams` no longer lists is over, and a changed
//! `service_id` means SRS restarted and every stream opened before is over.

use livegate_core::db::{now_ms, streams, Stream};
use livegate_core::origin::{OriginControl, OriginStreams};

use super::ReconcileError;
use crate::handlers::close_streams;
use crate::state::AppState;

/// Which of `open` streams SRS no longer carries: opened under another `service_id` (SRS
/// restarted), or with no active publisher of that client id, once older than `grace_ms`
/// when SRS was asked (at `asked_at_ms`).
pub fn dropped_streams<'a>(
    open: &'a [Stream],
    api: &OriginStreams,
    asked_at_ms: i64,
    grace_ms: i64,
) -> Vec<&'a Stream> {
    open.iter()
        .filter(|stream| {
            let restarted = match (&stream.origin_service_id, &api.process_id) {
                (Some(service), Some(current)) => service != current,
                _ => false,
            };
            if restarted {
                return true;
            }
            if asked_at_ms - stream.start_at < grace_ms {
                return false;
            }
            !api.streams
                .iter()
                .any(|s| s.publisher.is_some() && s.publisher == stream.origin_client_id)
        })
        .collect()
}

/// One pass against the SRS API: returns how many streams were closed.
pub(super) async fn pass(
    state: &AppState,
    api: &dyn OriginControl,
) -> Result<usize, ReconcileError> {
    // A stream opened after SRS was asked cannot be missing from its answer: its age is
    // counted up to the question, not to the answer.
    let asked_at = now_ms();
    let listed = api.streams().await?;
    let open = streams::open_of_server(state.db(), &listed.server_id).await?;
    let grace = i64::try_from(state.config().reconcile.grace_ms).unwrap_or(i64::MAX);
    let dropped: Vec<_> = dropped_streams(&open, &listed, asked_at, grace)
        .into_iter()
        .cloned()
        .collect();
    let closed = close_streams(state, &dropped).await?;
    if closed > 0 {
        state.metrics().reconcile_closed.inc_by(closed as u64);
        tracing::info!(origin = %listed.server_id, streams.closed = closed, "reconciliation closed streams the origin dropped");
    }
    Ok(closed)
}
