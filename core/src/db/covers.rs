//! Rooms' covers (`room_covers`): the recorder's latest live snapshot of each room and the
//! poster of its newest recording; the room API shows one of them as the room's cover.

use super::exec::on_conn;
use super::{DbError, Executor};

/// A row of `room_covers`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RoomCover {
    /// The room.
    pub room_id: i64,
    /// URL of the latest snapshot of the live stream.
    pub snapshot_url: Option<String>,
    /// When it was taken, unix milliseconds.
    pub snapshot_at: Option<i64>,
    /// URL of the poster of the room's newest recording.
    pub poster_url: Option<String>,
    /// When that recording started, unix milliseconds.
    pub poster_at: Option<i64>,
    /// Last change, unix milliseconds.
    pub updated_at: i64,
}

impl RoomCover {
    /// The cover to show: while live the snapshot, else the newest recording's poster; either
    /// one when the other is missing.
    pub fn url(&self, is_live: bool) -> Option<&str> {
        let (first, second) = if is_live {
            (&self.snapshot_url, &self.poster_url)
        } else {
            (&self.poster_url, &self.snapshot_url)
        };
        first.as_deref().or(second.as_deref())
    }
}

/// Makes sure the room has a row, then runs `update`, which binds `url`, `at`, the time, the
/// room id and, when `at_twice`, `at` again. Returns whether it changed the row.
async fn upsert(
    exec: impl Executor<'_>,
    room_id: i64,
    update: &str,
    (url, at, at_twice): (&str, i64, bool),
    now_ms: i64,
) -> Result<bool, DbError> {
    let updated = on_conn!(exec, conn, insert_ignore => {
        sqlx::query(&format!(
            "{insert_ignore} INTO room_covers (room_id, updated_at) VALUES (?, ?)"
        ))
        .bind(room_id)
        .bind(now_ms)
        .execute(&mut *conn)
        .await?;
        let query = sqlx::query(update)
            .bind(url)
            .bind(at)
            .bind(now_ms)
            .bind(room_id);
        let query = if at_twice { query.bind(at) } else { query };
        query.execute(&mut *conn).await?.rows_affected()
    });
    Ok(updated == 1)
}

/// Records the room's latest snapshot, taken at `taken_at`.
pub async fn set_snapshot(
    exec: impl Executor<'_>,
    room_id: i64,
    url: &str,
    taken_at: i64,
    now_ms: i64,
) -> Result<(), DbError> {
    upsert(
        exec,
        room_id,
        "UPDATE room_covers SET snapshot_url = ?, snapshot_at = ?, updated_at = ? \
         WHERE room_id = ?",
        (url, taken_at, false),
        now_ms,
    )
    .await
    .map(drop)
}

/// Records the poster of a recording of the room that started at `recording_started_at`,
/// unless a newer recording's poster is there already. Returns whether it became the cover's
/// poster.
pub async fn set_poster(
    exec: impl Executor<'_>,
    room_id: i64,
    url: &str,
    recording_started_at: i64,
    now_ms: i64,
) -> Result<bool, DbError> {
    upsert(
        exec,
        room_id,
        "UPDATE room_covers SET poster_url = ?, poster_at = ?, updated_at = ? \
         WHERE room_id = ? AND (poster_at IS NULL OR poster_at <= ?)",
        (url, recording_started_at, true),
        now_ms,
    )
    .await
}

/// The room's cover, if the recorder made one.
pub async fn of_room(exec: impl Executor<'_>, room_id: i64) -> Result<Option<RoomCover>, DbError> {
    let row = on_conn!(exec, conn => {
        sqlx::query_as::<_, RoomCover>(
            "SELECT room_id, snapshot_url, snapshot_at, poster_url, poster_at, updated_at \
             FROM room_covers WHERE room_id = ?",
        )
        .bind(room_id)
        .fetch_optional(conn)
        .await?
    });
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cover(snapshot: Option<&str>, poster: Option<&str>) -> RoomCover {
        RoomCover {
            room_id: 1,
            snapshot_url: snapshot.map(str::to_owned),
            snapshot_at: None,
            poster_url: poster.map(str::to_owned),
            poster_at: None,
            updated_at: 0,
        }
    }

    #[test]
    fn a_live_room_shows_its_snapshot_and_an_offline_one_its_poster() {
        let both = cover(Some("s"), Some("p"));
        assert_eq!(both.url(true), Some("s"));
        assert_eq!(both.url(false), Some("p"));
        assert_eq!(cover(None, Some("p")).url(true), Some("p"));
        assert_eq!(cover(Some("s"), None).url(false), Some("s"));
        assert_eq!(cover(None, None).url(true), None);
    }
}
