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
            // Opened after the question: the answer, from whichever process, says nothing
            // about it.
            if stream.start_at > asked_at_ms {
                return false;
            }
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

#[cfg(test)]
mod tests {
    use livegate_core::origin::OriginStream;

    use super::*;

    fn stream(id: i64, start_at: i64, service: &str, client: &str) -> Stream {
        Stream {
            id,
            room_id: id,
            start_at,
            stop_at: None,
            record_url: None,
            origin_kind: "srs".to_owned(),
            origin_server_id: "vid-1".to_owned(),
            origin_service_id: Some(service.to_owned()),
            origin_client_id: Some(client.to_owned()),
            origin_stream_id: None,
            publisher_ip: None,
            created_at: start_at,
            origin_schema: None,
            origin_hook_index: None,
        }
    }

    #[test]
    fn only_streams_opened_before_the_question_are_judged_by_its_answer() {
        // The answer came from the process that ran when SRS was asked at 1000, which has
        // since restarted as "new".
        let answer = OriginStreams {
            server_id: "vid-1".to_owned(),
            process_id: Some("old".to_owned()),
            streams: vec![OriginStream {
                name: "1".to_owned(),
                publisher: Some("c1".to_owned()),
                ..OriginStream::default()
            }],
        };
        let open = [
            stream(1, 500, "old", "c1"),
            stream(2, 500, "old", "c2"),
            stream(3, 400, "older", "c3"),
            stream(4, 1200, "new", "c4"),
        ];
        let ids = |grace_ms| -> Vec<i64> {
            dropped_streams(&open, &answer, 1000, grace_ms)
                .into_iter()
                .map(|s| s.id)
                .collect()
        };
        assert_eq!(ids(0), [2, 3]);
        // Within the grace period only a restart counts.
        assert_eq!(ids(600), [3]);
    }
}
