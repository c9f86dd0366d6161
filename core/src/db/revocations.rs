//! Room revocations (`room_revocations`): for each room, the latest play-token expiry the
//! edges must refuse. The bus carries them to the edges; this table keeps them for as long as
//! they matter, so that the room API can publish them again after a restart (an in-process
//! bus starts empty).

use super::exec::on_conn;
use super::{DbError, Executor};

/// A room's revocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct RoomRevocation {
    /// The room.
    pub room_id: i64,
    /// Play tokens of the room expiring at or before this unix second are refused.
    pub tokens_expiring_by: i64,
}

/// Records that the room's tokens expiring by `tokens_expiring_by` are refused (an earlier
/// expiry than the one recorded changes nothing).
pub async fn record(
    exec: impl Executor<'_>,
    room_id: i64,
    tokens_expiring_by: i64,
) -> Result<(), DbError> {
    on_conn!(exec, conn, insert_ignore => {
        sqlx::query(&format!(
            "{insert_ignore} INTO room_revocations (room_id, tokens_expiring_by) VALUES (?, ?)"
        ))
        .bind(room_id)
        .bind(tokens_expiring_by)
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "UPDATE room_revocations SET tokens_expiring_by = ? \
             WHERE room_id = ? AND tokens_expiring_by < ?",
        )
        .bind(tokens_expiring_by)
        .bind(room_id)
        .bind(tokens_expiring_by)
        .execute(&mut *conn)
        .await?;
    });
    Ok(())
}

/// The revocations still in force at unix second `since` (naming an expiry at or after it),
/// after dropping the others.
pub async fn in_force(exec: impl Executor<'_>, since: i64) -> Result<Vec<RoomRevocation>, DbError> {
    let rows = on_conn!(exec, conn => {
        sqlx::query("DELETE FROM room_revocations WHERE tokens_expiring_by < ?")
            .bind(since)
            .execute(&mut *conn)
            .await?;
        sqlx::query_as::<_, RoomRevocation>(
            "SELECT room_id, tokens_expiring_by FROM room_revocations ORDER BY room_id",
        )
        .fetch_all(&mut *conn)
        .await?
    });
    Ok(rows)
}
