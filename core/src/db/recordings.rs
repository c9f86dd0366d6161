//! Recordings an origin left unfinished (`interrupted_recordings`): noted when a stream that
//! was recording is closed by a restart, a reconciliation or lost keepalives, for a recorder
//! to find and judge.

use super::exec::on_conn;
use super::{Database, DbError};

/// A row of `interrupted_recordings`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct InterruptedRecording {
    /// Row id.
    pub id: i64,
    /// The stream that was recording.
    pub stream_id: i64,
    /// Its room.
    pub room_id: i64,
    /// `srs`, `zlmediakit` or `nginx-rtmp`.
    pub origin_kind: String,
    /// The origin server.
    pub origin_server_id: String,
    /// The stream's record directory, as the origin names it.
    pub directory: String,
    /// Why the stream was closed (`origin_restarted`, `origin_dropped`, `origin_silent`).
    pub reason: String,
    /// When it was noted, unix milliseconds.
    pub created_at: i64,
}

/// What [`Database::note_interrupted_recording`] needs.
#[derive(Debug, Clone, Copy)]
pub struct NewInterruptedRecording<'a> {
    /// The stream that was recording.
    pub stream_id: i64,
    /// Its room.
    pub room_id: i64,
    /// The origin's kind.
    pub origin_kind: &'a str,
    /// The origin server.
    pub origin_server_id: &'a str,
    /// The stream's record directory.
    pub directory: &'a str,
    /// Why the stream was closed.
    pub reason: &'a str,
}

const COLUMNS: &str =
    "id, stream_id, room_id, origin_kind, origin_server_id, directory, reason, created_at";

impl Database {
    /// Notes a stream's unfinished recording; a second note for the same stream changes
    /// nothing. Returns whether a row was written.
    pub async fn note_interrupted_recording(
        &self,
        note: &NewInterruptedRecording<'_>,
        now_ms: i64,
    ) -> Result<bool, DbError> {
        let written = on_conn!(self, pool, insert_ignore => {
            sqlx::query(&format!(
                "{insert_ignore} INTO interrupted_recordings (stream_id, room_id, origin_kind, \
                 origin_server_id, directory, reason, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
            ))
                .bind(note.stream_id)
                .bind(note.room_id)
                .bind(note.origin_kind)
                .bind(note.origin_server_id)
                .bind(note.directory)
                .bind(note.reason)
                .bind(now_ms)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(written == 1)
    }

    /// Unfinished recordings noted since `since_ms`, oldest first, at most `limit`.
    pub async fn interrupted_recordings(
        &self,
        since_ms: i64,
        limit: u32,
    ) -> Result<Vec<InterruptedRecording>, DbError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM interrupted_recordings WHERE created_at >= ? \
             ORDER BY id LIMIT ?"
        );
        let rows = on_conn!(self, pool => {
            sqlx::query_as::<_, InterruptedRecording>(&sql)
                .bind(since_ms)
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        Ok(rows)
    }
}
