//! The recorder's durable jobs (`recording_jobs`): one row per recorded file.
//!
//! A file is known by its path: whichever input sees it first (a bus job, the start-up scan,
//! the watcher) creates the row with [`discover`], the others find it there. A worker takes a
//! row with [`claim_next`] (or [`claim`]) and holds it by a lease it extends while it works;
//! every progress write is conditional on still holding that lease, so a worker that lost
//! its row to another (it stalled, the other took over) cannot overwrite the other's progress.

mod lease;
mod listing;

use sha2::{Digest, Sha256};

use super::exec::on_conn;
use super::{DbError, Executor};

pub use lease::{
    claim, claim_next, extend, fail, release, retry_later, set_duration, set_remuxed, set_state,
    set_upload, set_uploaded,
};
pub use listing::{latest_of_streams, page, requeue_failed, RecordingFilter};

/// Where a recording is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Found, nothing done yet.
    Discovered,
    /// Being remuxed to MP4.
    Remuxing,
    /// The MP4 exists and is being stored.
    Uploading,
    /// Stored and verified; the stream is not yet updated.
    Uploaded,
    /// The stream points at the stored object; local files may still be there.
    Recorded,
    /// Done: local files removed (or kept by retention).
    Cleaned,
    /// Given up on, with the reason in `error`; not retried.
    Failed,
}

impl JobState {
    /// Every state, for metrics.
    pub const ALL: [JobState; 7] = [
        JobState::Discovered,
        JobState::Remuxing,
        JobState::Uploading,
        JobState::Uploaded,
        JobState::Recorded,
        JobState::Cleaned,
        JobState::Failed,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Discovered => "discovered",
            JobState::Remuxing => "remuxing",
            JobState::Uploading => "uploading",
            JobState::Uploaded => "uploaded",
            JobState::Recorded => "recorded",
            JobState::Cleaned => "cleaned",
            JobState::Failed => "failed",
        }
    }

    /// The state of a stored name.
    pub fn parse(name: &str) -> Option<JobState> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str() == name)
    }

    /// Whether nothing more happens to a job in this state.
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Cleaned | JobState::Failed)
    }
}

/// A row of `recording_jobs`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RecordingJobRow {
    /// Row id.
    pub id: i64,
    /// The recorded file as the origin left it.
    pub source_path: String,
    /// The room that was recorded.
    pub room_id: i64,
    /// The stream the recording belongs to, when known.
    pub stream_id: Option<i64>,
    /// `srs`, `zlmediakit`, `nginx-rtmp`, or `unknown` for a file found on disk.
    pub origin_kind: String,
    /// When the recording started, unix milliseconds (part of the object key).
    pub started_at: i64,
    /// The state's stored name (see [`RecordingJobRow::job_state`]).
    pub state: String,
    /// Attempts that failed and were retried.
    pub attempts: i32,
    /// Not before this time (unix milliseconds) is the job tried again.
    pub next_attempt_at: i64,
    /// The worker holding the job.
    pub lease_owner: Option<String>,
    /// Until when it holds it, unix milliseconds.
    pub lease_until: Option<i64>,
    /// The remuxed MP4, once it exists.
    pub work_path: Option<String>,
    /// The object's key in storage.
    pub object_key: Option<String>,
    /// The multipart upload under way, if any.
    pub upload_id: Option<String>,
    /// The part size of that upload, bytes.
    pub part_size: Option<i64>,
    /// Parts of it known to be stored.
    pub parts_done: i32,
    /// The MP4's size, bytes.
    pub size_bytes: Option<i64>,
    /// The MP4's identity: its CRC-64/NVME, hex.
    pub checksum: Option<String>,
    /// Where the stored object is (`s3://bucket/key` or a local path).
    pub object_url: Option<String>,
    /// Where the recording's poster (one JPEG of it) is stored, when it has one.
    pub poster_url: Option<String>,
    /// Why the job failed last (or for good, in state `failed`).
    pub error: Option<String>,
    /// Creation time, unix milliseconds.
    pub created_at: i64,
    /// Last change, unix milliseconds.
    pub updated_at: i64,
    /// The MP4's media duration, once remuxed, milliseconds.
    pub duration_ms: Option<i64>,
}

impl RecordingJobRow {
    /// The state (`Failed` for a name this version does not know, so it is never worked on).
    pub fn job_state(&self) -> JobState {
        JobState::parse(&self.state).unwrap_or(JobState::Failed)
    }
}

/// What [`discover`] needs.
#[derive(Debug, Clone, Copy)]
pub struct NewRecordingJob<'a> {
    /// The file.
    pub source_path: &'a str,
    /// Its room.
    pub room_id: i64,
    /// Its stream, when known.
    pub stream_id: Option<i64>,
    /// The origin's kind, or `unknown`.
    pub origin_kind: &'a str,
    /// When the recording started.
    pub started_at: i64,
}

/// What a remux produced, for [`set_remuxed`].
#[derive(Debug, Clone, Copy)]
pub struct Remuxed<'a> {
    /// The MP4.
    pub work_path: &'a str,
    /// Its size.
    pub size_bytes: i64,
    /// Its identity: its CRC-64/NVME, hex.
    pub checksum: &'a str,
    /// The object key it is stored under.
    pub object_key: &'a str,
    /// The multipart part size it is uploaded in.
    pub part_size: i64,
}

const COLUMNS: &str = "id, source_path, room_id, stream_id, origin_kind, started_at, state, \
     attempts, next_attempt_at, lease_owner, lease_until, work_path, object_key, upload_id, \
     part_size, parts_done, size_bytes, checksum, object_url, poster_url, error, created_at, \
     updated_at, duration_ms";

/// The hash the unique index is on.
fn source_hash(path: &str) -> String {
    hex::encode(Sha256::digest(path.as_bytes()))
}

/// Creates the job of a file unless it exists; returns the row and whether it was created. A
/// row found without a stream gets `new.stream_id` (the bus job knows it, the watcher not).
pub async fn discover(
    exec: impl Executor<'_>,
    new: &NewRecordingJob<'_>,
    now_ms: i64,
) -> Result<(RecordingJobRow, bool), DbError> {
    let hash = source_hash(new.source_path);
    let select = format!("SELECT {COLUMNS} FROM recording_jobs WHERE source_hash = ?");
    let (row, created) = on_conn!(exec, conn => {
        let insert = format!(
            "{} INTO recording_jobs (source_hash, source_path, \
                 room_id, stream_id, origin_kind, started_at, state, next_attempt_at, created_at, \
                 updated_at) VALUES (?, ?, ?, ?, ?, ?, 'discovered', ?, ?, ?)",
            insert_ignore(&*conn)
        );
        let created = sqlx::query(&insert)
            .bind(&hash)
            .bind(new.source_path)
            .bind(new.room_id)
            .bind(new.stream_id)
            .bind(new.origin_kind)
            .bind(new.started_at)
            .bind(now_ms)
            .bind(now_ms)
            .bind(now_ms)
            .execute(&mut *conn)
            .await?
            .rows_affected()
            == 1;
        if !created {
            if let Some(stream_id) = new.stream_id {
                sqlx::query(
                    "UPDATE recording_jobs SET stream_id = ?, origin_kind = ?, updated_at = ? \
                     WHERE source_hash = ? AND stream_id IS NULL",
                )
                .bind(stream_id)
                .bind(new.origin_kind)
                .bind(now_ms)
                .bind(&hash)
                .execute(&mut *conn)
                .await?;
            }
        }
        let row = sqlx::query_as::<_, RecordingJobRow>(&select)
            .bind(&hash)
            .fetch_one(&mut *conn)
            .await?;
        (row, created)
    });
    Ok((row, created))
}

/// The job with id `id`.
pub async fn get(exec: impl Executor<'_>, id: i64) -> Result<Option<RecordingJobRow>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM recording_jobs WHERE id = ?");
    let row = on_conn!(exec, conn => {
        sqlx::query_as::<_, RecordingJobRow>(&sql).bind(id).fetch_optional(conn).await?
    });
    Ok(row)
}

/// The job of the file at `path`.
pub async fn by_source(
    exec: impl Executor<'_>,
    path: &str,
) -> Result<Option<RecordingJobRow>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM recording_jobs WHERE source_hash = ?");
    let row = on_conn!(exec, conn => {
        sqlx::query_as::<_, RecordingJobRow>(&sql)
            .bind(source_hash(path))
            .fetch_optional(conn)
            .await?
    });
    Ok(row)
}

/// The newest job of stream `stream_id`.
pub async fn latest_of_stream(
    exec: impl Executor<'_>,
    stream_id: i64,
) -> Result<Option<RecordingJobRow>, DbError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM recording_jobs WHERE stream_id = ? ORDER BY id DESC LIMIT 1"
    );
    let row = on_conn!(exec, conn => {
        sqlx::query_as::<_, RecordingJobRow>(&sql)
            .bind(stream_id)
            .fetch_optional(conn)
            .await?
    });
    Ok(row)
}

/// All jobs, oldest first, at most `limit` (for inspection and tests).
pub async fn list(exec: impl Executor<'_>, limit: u32) -> Result<Vec<RecordingJobRow>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM recording_jobs ORDER BY id LIMIT ?");
    let rows = on_conn!(exec, conn => {
        sqlx::query_as::<_, RecordingJobRow>(&sql).bind(limit).fetch_all(conn).await?
    });
    Ok(rows)
}

/// Parks a file that never gets a job of its own worth working on (a `.tmp` or hidden file an
/// origin left behind) as failed with `reason`, unless it has a row already. Returns whether a
/// row was written.
pub async fn park(
    exec: impl Executor<'_>,
    new: &NewRecordingJob<'_>,
    reason: &str,
    now_ms: i64,
) -> Result<bool, DbError> {
    let hash = source_hash(new.source_path);
    let written = on_conn!(exec, conn => {
        let insert = format!(
            "{} INTO recording_jobs (source_hash, source_path, \
                 room_id, stream_id, origin_kind, started_at, state, next_attempt_at, error, \
                 created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'failed', ?, ?, ?, ?)",
            insert_ignore(&*conn)
        );
        sqlx::query(&insert)
            .bind(&hash)
            .bind(new.source_path)
            .bind(new.room_id)
            .bind(new.stream_id)
            .bind(new.origin_kind)
            .bind(new.started_at)
            .bind(now_ms)
            .bind(reason)
            .bind(now_ms)
            .bind(now_ms)
            .execute(conn)
            .await?
            .rows_affected()
    });
    Ok(written == 1)
}

/// How many jobs are in each state.
pub async fn count_by_state(exec: impl Executor<'_>) -> Result<Vec<(String, i64)>, DbError> {
    let rows = on_conn!(exec, conn => {
        sqlx::query_as::<_, (String, i64)>(
            "SELECT state, COUNT(*) FROM recording_jobs GROUP BY state",
        )
        .fetch_all(conn)
        .await?
    });
    Ok(rows)
}

/// The oldest job not yet final: its creation time, if there is one.
pub async fn oldest_open(exec: impl Executor<'_>) -> Result<Option<i64>, DbError> {
    let oldest = on_conn!(exec, conn => {
        sqlx::query_as::<_, (Option<i64>,)>(
            "SELECT MIN(created_at) FROM recording_jobs WHERE state NOT IN ('cleaned', 'failed')",
        )
        .fetch_one(conn)
        .await?
        .0
    });
    Ok(oldest)
}

/// Failed jobs that still name a multipart upload, older than `before_ms`: uploads to abort.
pub async fn abandoned_uploads(
    exec: impl Executor<'_>,
    before_ms: i64,
    limit: u32,
) -> Result<Vec<RecordingJobRow>, DbError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM recording_jobs WHERE state = 'failed' AND upload_id IS NOT NULL \
         AND updated_at < ? ORDER BY id LIMIT ?"
    );
    let rows = on_conn!(exec, conn => {
        sqlx::query_as::<_, RecordingJobRow>(&sql)
            .bind(before_ms)
            .bind(limit)
            .fetch_all(conn)
            .await?
    });
    Ok(rows)
}

/// Which of `upload_ids` a job names: multipart uploads that are not orphans, whatever their
/// age (a job may resume one; a failed job's is aborted by [`abandoned_uploads`]' rule).
pub async fn known_uploads(
    exec: impl Executor<'_>,
    upload_ids: &[String],
) -> Result<Vec<String>, DbError> {
    if upload_ids.is_empty() {
        return Ok(Vec::new());
    }
    let marks = vec!["?"; upload_ids.len()].join(", ");
    let sql = format!("SELECT DISTINCT upload_id FROM recording_jobs WHERE upload_id IN ({marks})");
    let known = on_conn!(exec, conn => {
        let mut query = sqlx::query_as::<_, (String,)>(&sql);
        for id in upload_ids {
            query = query.bind(id);
        }
        query.fetch_all(conn).await?
    });
    Ok(known.into_iter().map(|(id,)| id).collect())
}

/// Forgets the multipart upload of a failed job once it is aborted.
pub async fn clear_upload(exec: impl Executor<'_>, id: i64) -> Result<(), DbError> {
    on_conn!(exec, conn => {
        sqlx::query("UPDATE recording_jobs SET upload_id = NULL WHERE id = ? AND state = 'failed'")
            .bind(id)
            .execute(conn)
            .await
            .map(drop)?
    });
    Ok(())
}

/// How each dialect says "insert unless the unique key exists".
trait InsertIgnore {
    const INSERT_IGNORE: &'static str;
}

impl InsertIgnore for sqlx::MySqlConnection {
    const INSERT_IGNORE: &'static str = "INSERT IGNORE";
}

impl InsertIgnore for sqlx::SqliteConnection {
    const INSERT_IGNORE: &'static str = "INSERT OR IGNORE";
}

fn insert_ignore<C: InsertIgnore>(_conn: &C) -> &'static str {
    C::INSERT_IGNORE
}
