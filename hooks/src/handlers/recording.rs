//! Finished recordings (SRS `on_dvr`, ZLMediaKit `on_record_mp4`, nginx-rtmp
//! `on_record_done`): queued for the recorder, which sets the stream's `record_url` once the
//! MP4 is confirmed in storage (the origin's local file is no recording anyone can play).

use std::time::Duration;

use livegate_core::bus::RecordingJob;
use livegate_core::db::{now_ms, streams, DbError};

use super::room_id;
use crate::dialect::{Dialect, Recording};
use crate::outbox::BusOp;
use crate::reply::Decision;
use crate::state::AppState;

/// Queues a recording job for a closed file.
pub(super) async fn finished(
    state: &AppState,
    dialect: Dialect,
    recording: &Recording,
) -> Result<Decision, DbError> {
    let Some(room_id) = room_id(&recording.stream) else {
        tracing::warn!(path = %recording.path, "recording of a stream that is not a room, ignored");
        return Ok(Decision::Accept);
    };
    // nginx-rtmp reports the last file after the publish stopped: the newest stream of that
    // publisher (open or closed) is the one it belongs to.
    let stream = streams::latest(
        state.db(),
        room_id,
        &recording.server_id,
        recording.client_id.as_deref(),
    )
    .await?;
    let job = RecordingJob {
        room_id,
        stream_id: stream.as_ref().map(|s| s.id),
        path: recording.path.clone(),
        origin_kind: dialect.as_str().to_owned(),
        origin_server_id: recording.server_id.clone(),
        size_bytes: recording.size_bytes,
        duration_ms: recording.duration_ms,
        enqueued_at_ms: now_ms(),
    };
    // Straight onto the bus within the request: the origin does not resend a finished
    // recording, so the job must not depend on this process living on. Only if the bus cannot
    // take it in time does it wait in the outbox; if that is full too the origin hears an
    // error (it only logs it, but the loss is in its log and in ours).
    let budget =
        Duration::from_millis(state.config().bus.timeout_ms).min(state.config().deadline() / 2);
    let queued = match tokio::time::timeout(budget, state.bus().recordings().push(&job)).await {
        Ok(Ok(id)) => {
            tracing::info!(room.id = room_id, stream.id = job.stream_id.unwrap_or(0), job.id = %id, path = %job.path, "recording job queued");
            return Ok(Decision::Accept);
        }
        Ok(Err(err)) => err.to_string(),
        Err(_) => "timed out".to_owned(),
    };
    tracing::warn!(room.id = room_id, stream.id = job.stream_id.unwrap_or(0), error = %queued, "bus did not take the recording job, queueing it in the outbox");
    if state.outbox().push(BusOp::Job(job)) {
        Ok(Decision::Accept)
    } else {
        tracing::error!(room.id = room_id, path = %recording.path, "recording job lost: bus and outbox both unavailable");
        Ok(Decision::Unavailable)
    }
}
