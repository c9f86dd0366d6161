//! Rooms: who may publish where, and whether a room is live.

use std::fmt;

use super::exec::{on_conn, Target};
use super::{mysql_insert_id, sqlite_insert_id, DbError, Executor, Tx};

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
    /// Whether only logged-in viewers may get a play token.
    pub login_required: bool,
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
            .field("login_required", &self.login_required)
            .finish()
    }
}

/// What [`create`] needs.
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
     stream_key_expires_at, publish_allow_cidrs, is_live, disabled, viewers_count, created_at, \
     login_required";

/// Creates a room and returns its id.
pub async fn create(
    exec: impl Executor<'_>,
    room: &NewRoom<'_>,
    now_ms: i64,
) -> Result<i64, DbError> {
    const SQL: &str = "INSERT INTO rooms (owner_id, title, stream_key, stream_key_expires_at, \
         publish_allow_cidrs, created_at) VALUES (?, ?, ?, ?, ?, ?)";
    let mut handle = exec.connection().await?;
    match handle.target() {
        Target::Mysql(conn) => {
            let done = sqlx::query(SQL)
                .bind(room.owner_id)
                .bind(room.title)
                .bind(room.stream_key)
                .bind(room.stream_key_expires_at)
                .bind(room.publish_allow_cidrs)
                .bind(now_ms)
                .execute(conn)
                .await?;
            mysql_insert_id(done.last_insert_id())
        }
        Target::Sqlite(conn) => {
            let done = sqlx::query(SQL)
                .bind(room.owner_id)
                .bind(room.title)
                .bind(room.stream_key)
                .bind(room.stream_key_expires_at)
                .bind(room.publish_allow_cidrs)
                .bind(now_ms)
                .execute(conn)
                .await?;
            sqlite_insert_id(done.last_insert_rowid())
        }
    }
}

/// The room with `id`, if it exists.
pub async fn get(exec: impl Executor<'_>, id: i64) -> Result<Option<Room>, DbError> {
    let sql = format!("SELECT {ROOM_COLUMNS} FROM rooms WHERE id = ?");
    let room = on_conn!(exec, conn => {
        sqlx::query_as::<_, Room>(&sql).bind(id).fetch_optional(conn).await?
    });
    Ok(room)
}

/// Enables or disables a room; `false` when the room does not exist.
pub async fn set_disabled(
    exec: impl Executor<'_>,
    id: i64,
    disabled: bool,
) -> Result<bool, DbError> {
    let matched = on_conn!(exec, conn => {
        sqlx::query("UPDATE rooms SET disabled = ? WHERE id = ?")
            .bind(disabled)
            .bind(id)
            .execute(conn)
            .await?
            .rows_affected()
    });
    Ok(matched == 1)
}

/// Replaces a room's stream key and its expiry; `false` when the room does not exist.
pub async fn set_stream_key(
    exec: impl Executor<'_>,
    id: i64,
    stream_key: &str,
    expires_at: Option<i64>,
) -> Result<bool, DbError> {
    let matched = on_conn!(exec, conn => {
        sqlx::query("UPDATE rooms SET stream_key = ?, stream_key_expires_at = ? WHERE id = ?")
            .bind(stream_key)
            .bind(expires_at)
            .bind(id)
            .execute(conn)
            .await?
            .rows_affected()
    });
    Ok(matched == 1)
}

/// Records the room's current number of viewers.
pub async fn set_viewers_count(
    exec: impl Executor<'_>,
    id: i64,
    viewers: i64,
) -> Result<(), DbError> {
    on_conn!(exec, conn => {
        sqlx::query("UPDATE rooms SET viewers_count = ? WHERE id = ?")
            .bind(viewers)
            .bind(id)
            .execute(conn)
            .await
            .map(drop)?
    });
    Ok(())
}

/// Reads room `id` inside `tx`, locking its row until the transaction ends (MySQL `FOR
/// UPDATE`; SQLite transactions hold the write lock from their start).
pub async fn lock(tx: &mut Tx<'_>, id: i64) -> Result<Option<Room>, DbError> {
    let mut handle = super::Executor::connection(&mut *tx).await?;
    let room = match handle.target() {
        Target::Mysql(conn) => {
            let sql = format!("SELECT {ROOM_COLUMNS} FROM rooms WHERE id = ? FOR UPDATE");
            sqlx::query_as::<_, Room>(&sql)
                .bind(id)
                .fetch_optional(conn)
                .await?
        }
        Target::Sqlite(conn) => {
            let sql = format!("SELECT {ROOM_COLUMNS} FROM rooms WHERE id = ?");
            sqlx::query_as::<_, Room>(&sql)
                .bind(id)
                .fetch_optional(conn)
                .await?
        }
    };
    Ok(room)
}

/// The settings of a room its owner may change, all written at once by [`update`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomChanges<'a> {
    /// Display title.
    pub title: &'a str,
    /// Whether only logged-in viewers may watch.
    pub login_required: bool,
    /// Comma-separated CIDRs a publisher must come from; `None` = anywhere.
    pub publish_allow_cidrs: Option<&'a str>,
    /// Unix milliseconds after which the stream key is refused; `None` = no expiry.
    pub stream_key_expires_at: Option<i64>,
}

/// Writes a room's settings; `false` when the room does not exist. Callers read the room
/// with [`lock`] in the same transaction, so that two changes do not undo each other.
pub async fn update(
    exec: impl Executor<'_>,
    id: i64,
    changes: &RoomChanges<'_>,
) -> Result<bool, DbError> {
    const SQL: &str = "UPDATE rooms SET title = ?, login_required = ?, publish_allow_cidrs = ?, \
         stream_key_expires_at = ? WHERE id = ?";
    let matched = on_conn!(exec, conn => {
        sqlx::query(SQL)
            .bind(changes.title)
            .bind(changes.login_required)
            .bind(changes.publish_allow_cidrs)
            .bind(changes.stream_key_expires_at)
            .bind(id)
            .execute(conn)
            .await?
            .rows_affected()
    });
    Ok(matched == 1)
}

/// Where a page of [`list`] continues: after the room with this liveness and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomCursor {
    /// The last listed room's `is_live`.
    pub is_live: bool,
    /// The last listed room's id.
    pub id: i64,
}

/// Up to `limit` enabled rooms, live ones first, then newest first; only `owner_id`'s when
/// given; after `after` when given.
pub async fn list(
    exec: impl Executor<'_>,
    owner_id: Option<i64>,
    after: Option<RoomCursor>,
    limit: u32,
) -> Result<Vec<Room>, DbError> {
    // (is_live, id) descending: after a live room come the live rooms with a smaller id and
    // then every offline room; after an offline room, the offline rooms with a smaller id.
    let sql = format!(
        "SELECT {ROOM_COLUMNS} FROM rooms WHERE disabled = FALSE \
         AND (? IS NULL OR owner_id = ?) \
         AND (? IS NULL OR is_live < ? OR (is_live = ? AND id < ?)) \
         ORDER BY is_live DESC, id DESC LIMIT ?"
    );
    let live = after.map(|cursor| cursor.is_live);
    let id = after.map(|cursor| cursor.id);
    let rooms = on_conn!(exec, conn => {
        sqlx::query_as::<_, Room>(&sql)
            .bind(owner_id)
            .bind(owner_id)
            .bind(id)
            .bind(live)
            .bind(live)
            .bind(id)
            .bind(limit)
            .fetch_all(conn)
            .await?
    });
    Ok(rooms)
}

/// Whether `err` is the unique violation of a stream key already in use.
pub fn is_duplicate_key(err: &DbError) -> bool {
    matches!(err, DbError::Query(sqlx::Error::Database(db)) if db.is_unique_violation())
}

/// How many rooms `owner_id` owns, disabled ones included.
pub async fn count_of_owner(exec: impl Executor<'_>, owner_id: i64) -> Result<i64, DbError> {
    let count: i64 = on_conn!(exec, conn => {
        sqlx::query_scalar("SELECT COUNT(*) FROM rooms WHERE owner_id = ?")
            .bind(owner_id)
            .fetch_one(conn)
            .await?
    });
    Ok(count)
}
