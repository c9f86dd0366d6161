//! Reading the job table for people (the console's recordings list, a live room's recording
//! state) and sending a failed job round again.

use super::{RecordingJobRow, COLUMNS};
use crate::db::exec::on_conn;
use crate::db::{DbError, Executor};

/// Which jobs [`page`] lists.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordingFilter<'a> {
    /// Only jobs in this state.
    pub state: Option<&'a str>,
    /// Only this room's.
    pub room_id: Option<i64>,
    /// Only jobs of rooms this user owns.
    pub owner_id: Option<i64>,
}

/// Jobs matching `filter`, newest first, with ids below `before` when given.
pub async fn page(
    exec: impl Executor<'_>,
    filter: RecordingFilter<'_>,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<RecordingJobRow>, DbError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM recording_jobs WHERE (? IS NULL OR state = ?) \
         AND (? IS NULL OR room_id = ?) \
         AND (? IS NULL OR room_id IN (SELECT id FROM rooms WHERE owner_id = ?)) \
         AND (? IS NULL OR id < ?) ORDER BY id DESC LIMIT ?"
    );
    let rows = on_conn!(exec, conn => {
        sqlx::query_as::<_, RecordingJobRow>(&sql)
            .bind(filter.state)
            .bind(filter.state)
            .bind(filter.room_id)
            .bind(filter.room_id)
            .bind(filter.owner_id)
            .bind(filter.owner_id)
            .bind(before)
            .bind(before)
            .bind(limit)
            .fetch_all(conn)
            .await?
    });
    Ok(rows)
}

/// The state of the newest job of each of `stream_ids` that has one: (stream id, state).
pub async fn latest_of_streams(
    exec: impl Executor<'_>,
    stream_ids: &[i64],
) -> Result<Vec<(i64, String)>, DbError> {
    if stream_ids.is_empty() {
        return Ok(Vec::new());
    }
    let marks = vec!["?"; stream_ids.len()].join(", ");
    let sql = format!(
        "SELECT j.stream_id, j.state FROM recording_jobs j WHERE j.id IN \
         (SELECT MAX(id) FROM recording_jobs WHERE stream_id IN ({marks}) GROUP BY stream_id)"
    );
    let rows = on_conn!(exec, conn => {
        let mut query = sqlx::query_as::<_, (i64, String)>(&sql);
        for id in stream_ids {
            query = query.bind(*id);
        }
        query.fetch_all(conn).await?
    });
    Ok(rows)
}

/// Sends failed job `id` round again: back to `discovered`, due now, its attempts and error
/// cleared, so that the next free worker takes it as it takes any due job. `false` when the
/// job does not exist or is not failed.
pub async fn requeue_failed(
    exec: impl Executor<'_>,
    id: i64,
    now_ms: i64,
) -> Result<bool, DbError> {
    let changed = on_conn!(exec, conn => {
        sqlx::query(
            "UPDATE recording_jobs SET state = 'discovered', attempts = 0, error = NULL, \
             next_attempt_at = ?, lease_owner = NULL, lease_until = NULL, updated_at = ? \
             WHERE id = ? AND state = 'failed'",
        )
        .bind(now_ms)
        .bind(now_ms)
        .bind(id)
        .execute(conn)
        .await?
        .rows_affected()
    });
    Ok(changed == 1)
}
