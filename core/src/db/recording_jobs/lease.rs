//! Taking a job and holding it: claims under a lease, and the progress writes that succeed
//! only while the writer still holds it.

use super::{JobState, RecordingJobRow, Remuxed, COLUMNS};
use crate::db::exec::on_conn;
use crate::db::{DbError, Executor};

/// Takes job `id` for `owner` until `lease_until` if it is not final and nobody else holds
/// an unexpired lease on it. Returns the row when taken.
pub async fn claim(
    exec: impl Executor<'_>,
    id: i64,
    owner: &str,
    lease_until: i64,
    now_ms: i64,
) -> Result<Option<RecordingJobRow>, DbError> {
    let select = format!("SELECT {COLUMNS} FROM recording_jobs WHERE id = ?");
    let row = on_conn!(exec, conn => {
        let taken = sqlx::query(
            "UPDATE recording_jobs SET lease_owner = ?, lease_until = ?, updated_at = ? \
             WHERE id = ? AND state NOT IN ('cleaned', 'failed') \
             AND (lease_until IS NULL OR lease_until < ? OR lease_owner = ?)",
        )
        .bind(owner)
        .bind(lease_until)
        .bind(now_ms)
        .bind(id)
        .bind(now_ms)
        .bind(owner)
        .execute(&mut *conn)
        .await?
        .rows_affected()
            == 1;
        if taken {
            sqlx::query_as::<_, RecordingJobRow>(&select)
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?
        } else {
            None
        }
    });
    Ok(row)
}

/// Takes the job that is due first (not final, its retry time passed, no live lease of
/// another owner: a worker restarted under the same name takes its own jobs back at once).
pub async fn claim_next(
    exec: impl Executor<'_>,
    owner: &str,
    lease_until: i64,
    now_ms: i64,
) -> Result<Option<RecordingJobRow>, DbError> {
    let select = format!(
        "SELECT {COLUMNS} FROM recording_jobs WHERE state NOT IN ('cleaned', 'failed') \
         AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until < ? OR lease_owner = ?) \
         ORDER BY next_attempt_at, id LIMIT 4"
    );
    let row = on_conn!(exec, conn => {
        let candidates = sqlx::query_as::<_, RecordingJobRow>(&select)
            .bind(now_ms)
            .bind(now_ms)
            .bind(owner)
            .fetch_all(&mut *conn)
            .await?;
        let mut taken = None;
        // Another worker may take a candidate between the select and the update: the
        // conditional update decides, and the next candidate is tried.
        for candidate in candidates {
            let won = sqlx::query(
                "UPDATE recording_jobs SET lease_owner = ?, lease_until = ?, updated_at = ? \
                 WHERE id = ? AND state NOT IN ('cleaned', 'failed') \
                 AND (lease_until IS NULL OR lease_until < ? OR lease_owner = ?)",
            )
            .bind(owner)
            .bind(lease_until)
            .bind(now_ms)
            .bind(candidate.id)
            .bind(now_ms)
            .bind(owner)
            .execute(&mut *conn)
            .await?
            .rows_affected()
                == 1;
            if won {
                taken = Some(RecordingJobRow {
                    lease_owner: Some(owner.to_owned()),
                    lease_until: Some(lease_until),
                    ..candidate
                });
                break;
            }
        }
        taken
    });
    Ok(row)
}

/// Runs a conditional update of job `id` held by `owner`; `false` when the lease is gone.
macro_rules! held_update {
    ($exec:expr, $sql:expr, $id:expr, $owner:expr, $($bind:expr),*) => {{
        let updated = on_conn!($exec, conn => {
            sqlx::query($sql)
                $(.bind($bind))*
                .bind($id)
                .bind($owner)
                .execute(conn)
                .await?
                .rows_affected()
        });
        Ok(updated == 1)
    }};
}

/// Extends `owner`'s lease on job `id`; `false` when it no longer holds it.
pub async fn extend(
    exec: impl Executor<'_>,
    id: i64,
    owner: &str,
    lease_until: i64,
) -> Result<bool, DbError> {
    held_update!(
        exec,
        "UPDATE recording_jobs SET lease_until = ? WHERE id = ? AND lease_owner = ?",
        id,
        owner,
        lease_until
    )
}

/// Gives job `id` back without changing it (shutdown): another worker may take it at once.
pub async fn release(exec: impl Executor<'_>, id: i64, owner: &str) -> Result<bool, DbError> {
    held_update!(
        exec,
        "UPDATE recording_jobs SET lease_owner = NULL, lease_until = NULL WHERE id = ? \
         AND lease_owner = ?",
        id,
        owner,
    )
}

/// Moves job `id` to `state`.
pub async fn set_state(
    exec: impl Executor<'_>,
    id: i64,
    owner: &str,
    state: JobState,
    now_ms: i64,
) -> Result<bool, DbError> {
    held_update!(
        exec,
        "UPDATE recording_jobs SET state = ?, updated_at = ? WHERE id = ? AND lease_owner = ?",
        id,
        owner,
        state.as_str(),
        now_ms
    )
}

/// Records the remuxed MP4 and moves the job to `uploading`. A previous upload's id is kept:
/// the storage decides whether it still fits.
pub async fn set_remuxed(
    exec: impl Executor<'_>,
    id: i64,
    owner: &str,
    remuxed: &Remuxed<'_>,
    now_ms: i64,
) -> Result<bool, DbError> {
    held_update!(
        exec,
        "UPDATE recording_jobs SET state = 'uploading', work_path = ?, size_bytes = ?, \
         checksum = ?, object_key = ?, part_size = ?, updated_at = ? \
         WHERE id = ? AND lease_owner = ?",
        id,
        owner,
        remuxed.work_path,
        remuxed.size_bytes,
        remuxed.checksum,
        remuxed.object_key,
        remuxed.part_size,
        now_ms
    )
}

/// Records the MP4's media duration.
pub async fn set_duration(
    exec: impl Executor<'_>,
    id: i64,
    owner: &str,
    duration_ms: i64,
) -> Result<bool, DbError> {
    held_update!(
        exec,
        "UPDATE recording_jobs SET duration_ms = ? WHERE id = ? AND lease_owner = ?",
        id,
        owner,
        duration_ms
    )
}

/// Records the multipart upload under way (`None`: none) and how many parts it has.
pub async fn set_upload(
    exec: impl Executor<'_>,
    id: i64,
    owner: &str,
    upload_id: Option<&str>,
    parts_done: i32,
    now_ms: i64,
) -> Result<bool, DbError> {
    held_update!(
        exec,
        "UPDATE recording_jobs SET upload_id = ?, parts_done = ?, updated_at = ? \
         WHERE id = ? AND lease_owner = ?",
        id,
        owner,
        upload_id,
        parts_done,
        now_ms
    )
}

/// Records that the object is stored and verified at `object_url`.
pub async fn set_uploaded(
    exec: impl Executor<'_>,
    id: i64,
    owner: &str,
    object_url: &str,
    now_ms: i64,
) -> Result<bool, DbError> {
    held_update!(
        exec,
        "UPDATE recording_jobs SET state = 'uploaded', object_url = ?, updated_at = ? \
         WHERE id = ? AND lease_owner = ?",
        id,
        owner,
        object_url,
        now_ms
    )
}

/// Counts a failed attempt and gives the job back until `next_attempt_at`.
pub async fn retry_later(
    exec: impl Executor<'_>,
    id: i64,
    owner: &str,
    error: &str,
    next_attempt_at: i64,
    now_ms: i64,
) -> Result<bool, DbError> {
    held_update!(
        exec,
        "UPDATE recording_jobs SET attempts = attempts + 1, error = ?, next_attempt_at = ?, \
         lease_owner = NULL, lease_until = NULL, updated_at = ? WHERE id = ? AND lease_owner = ?",
        id,
        owner,
        error,
        next_attempt_at,
        now_ms
    )
}

/// Gives up on job `id` for good with `reason`, releasing it.
pub async fn fail(
    exec: impl Executor<'_>,
    id: i64,
    owner: &str,
    reason: &str,
    now_ms: i64,
) -> Result<bool, DbError> {
    held_update!(
        exec,
        "UPDATE recording_jobs SET state = 'failed', error = ?, lease_owner = NULL, \
         lease_until = NULL, updated_at = ? WHERE id = ? AND lease_owner = ?",
        id,
        owner,
        reason,
        now_ms
    )
}
