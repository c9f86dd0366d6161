//! Chat moderation: room moderators, mutes and bans, slow mode.

use super::exec::{on_conn, Target};
use super::{DbError, Executor};

/// A mute or a ban.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SanctionKind {
    /// May read, not send.
    Mute,
    /// May not open the room's chat.
    Ban,
}

impl SanctionKind {
    /// The `chat_sanctions.kind` value.
    pub fn as_str(self) -> &'static str {
        match self {
            SanctionKind::Mute => "mute",
            SanctionKind::Ban => "ban",
        }
    }
}

/// What holds for a user in a room now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Standing {
    /// Banned (until lifted or expired).
    pub banned: bool,
    /// Muted until this unix millisecond (`i64::MAX`: until lifted); `None` when not muted.
    pub muted_until: Option<i64>,
}

/// Makes `user_id` a moderator of `room_id` (again is fine).
pub async fn add_moderator(
    exec: impl Executor<'_>,
    room_id: i64,
    user_id: i64,
    now_ms: i64,
) -> Result<(), DbError> {
    on_conn!(exec, conn, insert_ignore => {
        sqlx::query(&format!(
            "{insert_ignore} INTO room_moderators (room_id, user_id, created_at) VALUES (?, ?, ?)"
        ))
        .bind(room_id)
        .bind(user_id)
        .bind(now_ms)
        .execute(conn)
        .await
        .map(drop)?
    });
    Ok(())
}

/// Takes the moderator role back; `false` when the user did not have it.
pub async fn remove_moderator(
    exec: impl Executor<'_>,
    room_id: i64,
    user_id: i64,
) -> Result<bool, DbError> {
    let removed = on_conn!(exec, conn => {
        sqlx::query("DELETE FROM room_moderators WHERE room_id = ? AND user_id = ?")
            .bind(room_id)
            .bind(user_id)
            .execute(conn)
            .await?
            .rows_affected()
    });
    Ok(removed > 0)
}

/// Whether `user_id` moderates `room_id`.
pub async fn is_moderator(
    exec: impl Executor<'_>,
    room_id: i64,
    user_id: i64,
) -> Result<bool, DbError> {
    let found: Option<i64> = on_conn!(exec, conn => {
        sqlx::query_scalar("SELECT user_id FROM room_moderators WHERE room_id = ? AND user_id = ?")
            .bind(room_id)
            .bind(user_id)
            .fetch_optional(conn)
            .await?
    });
    Ok(found.is_some())
}

/// Mutes or bans `user_id` in `room_id` until `until_ms` (`None`: until lifted), replacing a
/// sanction of the same kind.
pub async fn sanction(
    exec: impl Executor<'_>,
    room_id: i64,
    user_id: i64,
    kind: SanctionKind,
    until_ms: Option<i64>,
    by: i64,
    now_ms: i64,
) -> Result<(), DbError> {
    let mut handle = exec.connection().await?;
    match handle.target() {
        Target::Mysql(conn) => {
            sqlx::query(
                "INSERT INTO chat_sanctions (room_id, user_id, kind, until_ms, created_by, \
                 created_at) VALUES (?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE \
                 until_ms = VALUES(until_ms), created_by = VALUES(created_by), \
                 created_at = VALUES(created_at)",
            )
            .bind(room_id)
            .bind(user_id)
            .bind(kind.as_str())
            .bind(until_ms)
            .bind(by)
            .bind(now_ms)
            .execute(conn)
            .await?;
        }
        Target::Sqlite(conn) => {
            sqlx::query(
                "INSERT INTO chat_sanctions (room_id, user_id, kind, until_ms, created_by, \
                 created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (room_id, user_id, kind) \
                 DO UPDATE SET until_ms = excluded.until_ms, created_by = excluded.created_by, \
                 created_at = excluded.created_at",
            )
            .bind(room_id)
            .bind(user_id)
            .bind(kind.as_str())
            .bind(until_ms)
            .bind(by)
            .bind(now_ms)
            .execute(conn)
            .await?;
        }
    }
    Ok(())
}

/// Lifts a mute or ban; `false` when there was none.
pub async fn lift(
    exec: impl Executor<'_>,
    room_id: i64,
    user_id: i64,
    kind: SanctionKind,
) -> Result<bool, DbError> {
    let removed = on_conn!(exec, conn => {
        sqlx::query("DELETE FROM chat_sanctions WHERE room_id = ? AND user_id = ? AND kind = ?")
            .bind(room_id)
            .bind(user_id)
            .bind(kind.as_str())
            .execute(conn)
            .await?
            .rows_affected()
    });
    Ok(removed > 0)
}

/// The mutes and bans of `user_id` in `room_id` that hold at `now_ms`.
pub async fn standing(
    exec: impl Executor<'_>,
    room_id: i64,
    user_id: i64,
    now_ms: i64,
) -> Result<Standing, DbError> {
    let rows: Vec<(String, Option<i64>)> = on_conn!(exec, conn => {
        sqlx::query_as(
            "SELECT kind, until_ms FROM chat_sanctions WHERE room_id = ? AND user_id = ? \
             AND (until_ms IS NULL OR until_ms > ?)",
        )
        .bind(room_id)
        .bind(user_id)
        .bind(now_ms)
        .fetch_all(conn)
        .await?
    });
    let mut standing = Standing::default();
    for (kind, until) in rows {
        match kind.as_str() {
            "ban" => standing.banned = true,
            "mute" => standing.muted_until = Some(until.unwrap_or(i64::MAX)),
            _ => {}
        }
    }
    Ok(standing)
}

/// The room's slow mode: seconds between two messages of one user (0: off).
pub async fn slow_mode(exec: impl Executor<'_>, room_id: i64) -> Result<u32, DbError> {
    let seconds: Option<i64> = on_conn!(exec, conn => {
        sqlx::query_scalar("SELECT slow_mode_s FROM chat_settings WHERE room_id = ?")
            .bind(room_id)
            .fetch_optional(conn)
            .await?
    });
    Ok(seconds.and_then(|s| u32::try_from(s).ok()).unwrap_or(0))
}

/// Sets the room's slow mode (0 turns it off).
pub async fn set_slow_mode(
    exec: impl Executor<'_>,
    room_id: i64,
    seconds: u32,
) -> Result<(), DbError> {
    let mut handle = exec.connection().await?;
    match handle.target() {
        Target::Mysql(conn) => {
            sqlx::query(
                "INSERT INTO chat_settings (room_id, slow_mode_s) VALUES (?, ?) \
                 ON DUPLICATE KEY UPDATE slow_mode_s = VALUES(slow_mode_s)",
            )
            .bind(room_id)
            .bind(seconds)
            .execute(conn)
            .await?;
        }
        Target::Sqlite(conn) => {
            sqlx::query(
                "INSERT INTO chat_settings (room_id, slow_mode_s) VALUES (?, ?) \
                 ON CONFLICT (room_id) DO UPDATE SET slow_mode_s = excluded.slow_mode_s",
            )
            .bind(room_id)
            .bind(seconds)
            .execute(conn)
            .await?;
        }
    }
    Ok(())
}
