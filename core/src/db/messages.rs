//! Chat messages: the durable history behind a room's short bus log.

use super::exec::on_conn;
use super::{DbError, Executor};

/// A row of `messages`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredMessage {
    /// Row id, increasing in insertion order; the cursor of [`before`].
    pub id: i64,
    /// The room.
    pub room_id: i64,
    /// The sender.
    pub user_id: i64,
    /// The frame type (`chat`, `gift`).
    #[sqlx(rename = "type")]
    pub kind: String,
    /// The text.
    pub content: String,
    /// When it was sent, unix milliseconds.
    pub created_at: i64,
}

/// What [`insert_batch`] stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The room.
    pub room_id: i64,
    /// The sender.
    pub user_id: i64,
    /// The frame type (`chat`, `gift`).
    pub kind: String,
    /// The text.
    pub content: String,
    /// When it was sent, unix milliseconds.
    pub created_at: i64,
}

/// Most rows one statement inserts: keeps the statement far below either backend's limit on
/// bound parameters (SQLite's is 32766, five per row).
pub const MAX_BATCH: usize = 500;

/// Stores `messages` in order with as few statements as possible (one per [`MAX_BATCH`]).
pub async fn insert_batch(exec: impl Executor<'_>, messages: &[NewMessage]) -> Result<(), DbError> {
    if messages.is_empty() {
        return Ok(());
    }
    let mut handle = exec.connection().await?;
    for chunk in messages.chunks(MAX_BATCH) {
        let values = vec!["(?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        let sql = format!(
            "INSERT INTO messages (room_id, user_id, type, content, created_at) VALUES {values}"
        );
        match handle.target() {
            super::exec::Target::Mysql(conn) => {
                let mut query = sqlx::query(&sql);
                for m in chunk {
                    query = query
                        .bind(m.room_id)
                        .bind(m.user_id)
                        .bind(&m.kind)
                        .bind(&m.content)
                        .bind(m.created_at);
                }
                query.execute(conn).await?;
            }
            super::exec::Target::Sqlite(conn) => {
                let mut query = sqlx::query(&sql);
                for m in chunk {
                    query = query
                        .bind(m.room_id)
                        .bind(m.user_id)
                        .bind(&m.kind)
                        .bind(&m.content)
                        .bind(m.created_at);
                }
                query.execute(conn).await?;
            }
        }
    }
    Ok(())
}

/// Up to `limit` messages of `room_id` older than row `before` (the newest when `None`),
/// newest first.
pub async fn before(
    exec: impl Executor<'_>,
    room_id: i64,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<StoredMessage>, DbError> {
    const SQL: &str = "SELECT id, room_id, user_id, type, content, created_at FROM messages \
         WHERE room_id = ? AND id < ? ORDER BY id DESC LIMIT ?";
    let rows = on_conn!(exec, conn => {
        sqlx::query_as::<_, StoredMessage>(SQL)
            .bind(room_id)
            .bind(before.unwrap_or(i64::MAX))
            .bind(limit)
            .fetch_all(conn)
            .await?
    });
    Ok(rows)
}

/// Deletes every stored message of `room_id` (a moderator cleared the room); returns how
/// many.
pub async fn clear_room(exec: impl Executor<'_>, room_id: i64) -> Result<u64, DbError> {
    let done = on_conn!(exec, conn => {
        sqlx::query("DELETE FROM messages WHERE room_id = ?")
            .bind(room_id)
            .execute(conn)
            .await?
            .rows_affected()
    });
    Ok(done)
}

/// Deletes the stored row of one message (a moderator deleted it), found by everything it
/// holds: the table keeps no log offset. Identical rows (the same sender, type, text and
/// millisecond) go together. Returns how many went.
pub async fn delete_matching(
    exec: impl Executor<'_>,
    message: &NewMessage,
) -> Result<u64, DbError> {
    const SQL: &str = "DELETE FROM messages WHERE room_id = ? AND user_id = ? AND type = ? \
         AND created_at = ? AND content = ?";
    let done = on_conn!(exec, conn => {
        sqlx::query(SQL)
            .bind(message.room_id)
            .bind(message.user_id)
            .bind(&message.kind)
            .bind(message.created_at)
            .bind(&message.content)
            .execute(conn)
            .await?
            .rows_affected()
    });
    Ok(done)
}
