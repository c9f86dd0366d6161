//! Rooms: who may publish where, and whether a room is live.

use std::fmt;

use super::{with_pool, Conn, Database, DbError};

/// A row of `rooms`.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Room {
    /// Room id; also the stream name publishers use.
    pub id: i64,
    /// The owning user.
    pub owner_id: i64,
    /// Display title.
    pub title: String,
    /// The publisher's secret key (never logged: `Debug` redacts it).
    pub stream_key: String,
    /// Unix milliseconds after which the key is refused; `None` = no expiry.
    pub stream_key_expires_at: Option<i64>,
    /// Comma-separated CIDRs a publisher must come from; `None` = anywhere.
    pub publish_allow_cidrs: Option<String>,
    /// Whether a stream is open for the room.
    pub is_live: bool,
    /// A disabled room refuses every publish.
    pub disabled: bool,
    /// Last known number of viewers.
    pub viewers_count: i64,
    /// Creation time, unix milliseconds.
    pub created_at: i64,
}

impl fmt::Debug for Room {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Room")
            .field("id", &self.id)
            .field("owner_id", &self.owner_id)
            .field("title", &self.title)
            .field("stream_key", &"***")
            .field("stream_key_expires_at", &self.stream_key_expires_at)
            .field("publish_allow_cidrs", &self.publish_allow_cidrs)
            .field("is_live", &self.is_live)
            .field("disabled", &self.disabled)
            .field("viewers_count", &self.viewers_count)
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// What [`Database::create_room`] needs.
#[derive(Clone)]
pub struct NewRoom<'a> {
    /// The owning user.
    pub owner_id: i64,
    /// Display title.
    pub title: &'a str,
    /// The publisher's secret key; unique across rooms.
    pub stream_key: &'a str,
    /// Unix milliseconds after which the key is refused.
    pub stream_key_expires_at: Option<i64>,
    /// Comma-separated CIDRs a publisher must come from.
    pub publish_allow_cidrs: Option<&'a str>,
}

// `stream_key` has a binary collation on MySQL (case-sensitive uniqueness), which its driver
// reports as binary data: the cast reads it back as text on both backends.
const ROOM_COLUMNS: &str = "id, owner_id, title, CAST(stream_key AS CHAR) AS stream_key, \
     stream_key_expires_at, publish_allow_cidrs, is_live, disabled, viewers_count, created_at";

impl Database {
    /// Creates a room and returns its id.
    pub async fn create_room(&self, room: &NewRoom<'_>, now_ms: i64) -> Result<i64, DbError> {
        const SQL: &str = "INSERT INTO rooms (owner_id, title, stream_key, stream_key_expires_at, \
             publish_allow_cidrs, created_at) VALUES (?, ?, ?, ?, ?, ?)";
        let id = match self {
            Database::Mysql(pool) => {
                let done = sqlx::query(SQL)
                    .bind(room.owner_id)
                    .bind(room.title)
                    .bind(room.stream_key)
                    .bind(room.stream_key_expires_at)
                    .bind(room.publish_allow_cidrs)
                    .bind(now_ms)
                    .execute(pool)
                    .await?;
                i64::try_from(done.last_insert_id()).unwrap_or(i64::MAX)
            }
            Database::Sqlite(pool) => sqlx::query(SQL)
                .bind(room.owner_id)
                .bind(room.title)
                .bind(room.stream_key)
                .bind(room.stream_key_expires_at)
                .bind(room.publish_allow_cidrs)
                .bind(now_ms)
                .execute(pool)
                .await?
                .last_insert_rowid(),
        };
        Ok(id)
    }

    /// The room with `id`, if it exists.
    pub async fn room(&self, id: i64) -> Result<Option<Room>, DbError> {
        let sql = format!("SELECT {ROOM_COLUMNS} FROM rooms WHERE id = ?");
        let room = with_pool!(self, pool => {
            sqlx::query_as::<_, Room>(&sql).bind(id).fetch_optional(pool).await?
        });
        Ok(room)
    }
}

impl Conn {
    /// [`Database::room`] on this connection.
    pub async fn room(&mut self, id: i64) -> Result<Option<Room>, DbError> {
        let sql = format!("SELECT {ROOM_COLUMNS} FROM rooms WHERE id = ?");
        let room = match self {
            Conn::Mysql(conn) => {
                sqlx::query_as::<_, Room>(&sql)
                    .bind(id)
                    .fetch_optional(&mut **conn)
                    .await?
            }
            Conn::Sqlite(conn) => {
                sqlx::query_as::<_, Room>(&sql)
                    .bind(id)
                    .fetch_optional(&mut **conn)
                    .await?
            }
        };
        Ok(room)
    }
}

impl Database {
    /// Enables or disables a room; `false` when the room does not exist.
    pub async fn set_room_disabled(&self, id: i64, disabled: bool) -> Result<bool, DbError> {
        let done = with_pool!(self, pool => {
            sqlx::query("UPDATE rooms SET disabled = ? WHERE id = ?")
                .bind(disabled)
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done == 1)
    }

    /// Replaces a room's stream key and its expiry.
    pub async fn set_stream_key(
        &self,
        id: i64,
        stream_key: &str,
        expires_at: Option<i64>,
    ) -> Result<bool, DbError> {
        let done = with_pool!(self, pool => {
            sqlx::query("UPDATE rooms SET stream_key = ?, stream_key_expires_at = ? WHERE id = ?")
                .bind(stream_key)
                .bind(expires_at)
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done == 1)
    }

    /// Records the room's current number of viewers.
    pub async fn set_viewers_count(&self, id: i64, viewers: i64) -> Result<(), DbError> {
        with_pool!(self, pool => {
            sqlx::query("UPDATE rooms SET viewers_count = ? WHERE id = ?")
                .bind(viewers)
                .bind(id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}
