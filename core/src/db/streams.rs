//! Streams: one row per publish session, opened on publish start and closed on stop.
//!
//! Invariant: a room is live exactly while it has an open stream (`stop_at IS NULL`). Both
//! change together inside one transaction, and the schema allows one open stream per room.

use super::exec::{on_conn, Target};
use super::{mysql_insert_id, sqlite_insert_id, DbError, Executor, Tx};

/// A row of `streams`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Stream {
    /// Stream id.
    pub id: i64,
    /// The room that published.
    pub room_id: i64,
    /// Publish start, unix milliseconds.
    pub start_at: i64,
    /// Publish stop, unix milliseconds; `None` while live.
    pub stop_at: Option<i64>,
    /// Where the latest recording of this stream is.
    pub record_url: Option<String>,
    /// Which origin software reported it: `srs`, `zlmediakit` or `nginx-rtmp`.
    pub origin_kind: String,
    /// The origin server's id (SRS `server_id`, ZLMediaKit `mediaServerId`, or a configured name).
    pub origin_server_id: String,
    /// The origin process's id (SRS `service_id`), which changes when it restarts.
    pub origin_service_id: Option<String>,
    /// The publisher's connection id at the origin.
    pub origin_client_id: Option<String>,
    /// The origin's id of the stream (SRS `stream_id`).
    pub origin_stream_id: Option<String>,
    /// The publisher's address as the origin saw it.
    pub publisher_ip: Option<String>,
    /// Creation time, unix milliseconds.
    pub created_at: i64,
    /// The schema the publish came with (ZLMediaKit `schema`), when it names one of the
    /// schemas the origin reports stops for.
    pub origin_schema: Option<String>,
    /// The origin's hook counter at publish time (ZLMediaKit `hook_index`).
    pub origin_hook_index: Option<i64>,
}

/// The origin's identifiers of a publish session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginIds {
    /// `srs`, `zlmediakit` or `nginx-rtmp`.
    pub kind: String,
    /// Origin server id.
    pub server_id: String,
    /// Origin process id (SRS `service_id`).
    pub service_id: Option<String>,
    /// Publisher connection id.
    pub client_id: Option<String>,
    /// Origin stream id.
    pub stream_id: Option<String>,
    /// The schema whose unregistration ends the session (ZLMediaKit).
    pub schema: Option<String>,
    /// The origin's process-wide hook counter of the publish callback (ZLMediaKit).
    pub hook_index: Option<i64>,
}

/// What [`start`] needs.
#[derive(Debug, Clone)]
pub struct NewStream<'a> {
    /// The room going live.
    pub room_id: i64,
    /// The origin's ids of the session.
    pub origin: &'a OriginIds,
    /// The publisher's address.
    pub publisher_ip: Option<&'a str>,
}

/// The result of [`start`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOutcome {
    /// The room is now live with this stream id.
    Started(i64),
    /// The room already has an open stream, is disabled, or does not exist; the transaction
    /// changed nothing.
    Refused,
}

const STREAM_COLUMNS: &str = "id, room_id, start_at, stop_at, record_url, origin_kind, \
     origin_server_id, origin_service_id, origin_client_id, origin_stream_id, publisher_ip, \
     created_at, origin_schema, origin_hook_index";

const TAKE_ROOM: &str =
    "UPDATE rooms SET is_live = TRUE WHERE id = ? AND is_live = FALSE AND disabled = FALSE";
const GIVE_BACK_ROOM: &str = "UPDATE rooms SET is_live = FALSE WHERE id = ?";
const INSERT_STREAM: &str = "INSERT INTO streams (room_id, start_at, origin_kind, \
     origin_server_id, origin_service_id, origin_client_id, origin_stream_id, publisher_ip, \
     created_at, origin_schema, origin_hook_index) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
const CLOSE_STREAM: &str = "UPDATE streams SET stop_at = ? WHERE id = ? AND stop_at IS NULL";
const RELEASE_ROOM: &str = "UPDATE rooms SET is_live = FALSE WHERE id = ? AND NOT EXISTS \
     (SELECT 1 FROM streams WHERE room_id = ? AND stop_at IS NULL)";

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Marks the room live and opens a stream row, inside `tx`: the caller commits (the publish
/// goes ahead) or drops the transaction (it does not, e.g. its deadline passed). Refused when
/// the room is already live, disabled or unknown: the conditional update makes two
/// concurrent publishers race safely, exactly one wins.
pub async fn start(
    tx: &mut Tx<'_>,
    new: &NewStream<'_>,
    now_ms: i64,
) -> Result<StartOutcome, DbError> {
    let origin = new.origin;
    macro_rules! insert {
        ($conn:expr) => {
            sqlx::query(INSERT_STREAM)
                .bind(new.room_id)
                .bind(now_ms)
                .bind(&origin.kind)
                .bind(&origin.server_id)
                .bind(origin.service_id.as_deref())
                .bind(origin.client_id.as_deref())
                .bind(origin.stream_id.as_deref())
                .bind(new.publisher_ip)
                .bind(now_ms)
                .bind(origin.schema.as_deref())
                .bind(origin.hook_index)
                .execute(&mut *$conn)
                .await
        };
    }
    // The same statements on either backend; only how the new row's id is read differs.
    macro_rules! start {
        ($conn:expr, $new_id:expr) => {{
            let taken = sqlx::query(TAKE_ROOM)
                .bind(new.room_id)
                .execute(&mut *$conn)
                .await?
                .rows_affected();
            if taken != 1 {
                return Ok(StartOutcome::Refused);
            }
            match insert!($conn) {
                Ok(done) => StartOutcome::Started(($new_id)(&done)?),
                Err(err) if is_unique_violation(&err) => {
                    // An open stream exists although the room was not live: put the flag back,
                    // so that even a caller that commits has changed nothing.
                    sqlx::query(GIVE_BACK_ROOM)
                        .bind(new.room_id)
                        .execute(&mut *$conn)
                        .await?;
                    StartOutcome::Refused
                }
                Err(err) => return Err(err.into()),
            }
        }};
    }
    let mut handle = Executor::connection(&mut *tx).await?;
    let outcome = match handle.target() {
        Target::Mysql(conn) => start!(conn, |done: &sqlx::mysql::MySqlQueryResult| {
            mysql_insert_id(done.last_insert_id())
        }),
        Target::Sqlite(conn) => start!(conn, |done: &sqlx::sqlite::SqliteQueryResult| {
            sqlite_insert_id(done.last_insert_rowid())
        }),
    };
    Ok(outcome)
}

/// Closes stream `id` if it is open and marks its room offline (unless another stream of the
/// room is open), inside `tx`. Returns the closed row, or `None` when it was already closed
/// (or never existed).
pub async fn close(tx: &mut Tx<'_>, id: i64, now_ms: i64) -> Result<Option<Stream>, DbError> {
    let select = format!("SELECT {STREAM_COLUMNS} FROM streams WHERE id = ?");
    let closed = on_conn!(&mut *tx, conn => {
        let changed = sqlx::query(CLOSE_STREAM)
            .bind(now_ms)
            .bind(id)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        if changed == 1 {
            let stream = sqlx::query_as::<_, Stream>(&select)
                .bind(id)
                .fetch_one(&mut *conn)
                .await?;
            sqlx::query(RELEASE_ROOM)
                .bind(stream.room_id)
                .bind(stream.room_id)
                .execute(&mut *conn)
                .await?;
            Some(stream)
        } else {
            None
        }
    });
    Ok(closed)
}

/// Closes the open stream of `room_id` that the origin `server_id` reported for `client_id`
/// (any client when `None`), and marks the room offline, inside `tx`. Idempotent: a duplicate
/// stop, a stop without a start, or a stale stop arriving after a new session (another client
/// id) started finds nothing to close and returns `None`.
pub async fn stop(
    tx: &mut Tx<'_>,
    room_id: i64,
    server_id: &str,
    client_id: Option<&str>,
    now_ms: i64,
) -> Result<Option<Stream>, DbError> {
    let sql = "SELECT id FROM streams WHERE room_id = ? AND origin_server_id = ? \
         AND stop_at IS NULL AND (? IS NULL OR origin_client_id = ?) \
         ORDER BY id DESC LIMIT 1";
    let id: Option<i64> = on_conn!(&mut *tx, conn => {
        sqlx::query_scalar(sql)
            .bind(room_id)
            .bind(server_id)
            .bind(client_id)
            .bind(client_id)
            .fetch_optional(conn)
            .await?
    });
    match id {
        Some(id) => close(tx, id, now_ms).await,
        None => Ok(None),
    }
}

/// Closes the open stream of `room_id` from origin `server_id` that an unregistration
/// (ZLMediaKit `regist:false`, which names no connection) ends, inside `tx`: only a stop of
/// the stream's own schema counts, and only one sent after the publish (`hook_index`, the
/// origin's process-wide callback counter, is higher than the publish's). So the per-schema
/// duplicates and the late stops of an earlier session change nothing.
pub async fn stop_unregistered(
    tx: &mut Tx<'_>,
    room_id: i64,
    server_id: &str,
    schema: Option<&str>,
    hook_index: Option<i64>,
    now_ms: i64,
) -> Result<Option<Stream>, DbError> {
    let sql = "SELECT id FROM streams WHERE room_id = ? AND origin_server_id = ? \
         AND stop_at IS NULL \
         AND (origin_schema IS NULL OR ? IS NULL OR origin_schema = ?) \
         AND (origin_hook_index IS NULL OR ? IS NULL OR origin_hook_index < ?) \
         ORDER BY id DESC LIMIT 1";
    let id: Option<i64> = on_conn!(&mut *tx, conn => {
        sqlx::query_scalar(sql)
            .bind(room_id)
            .bind(server_id)
            .bind(schema)
            .bind(schema)
            .bind(hook_index)
            .bind(hook_index)
            .fetch_optional(conn)
            .await?
    });
    match id {
        Some(id) => close(tx, id, now_ms).await,
        None => Ok(None),
    }
}

/// The open stream of a room, if it is live.
pub async fn open(exec: impl Executor<'_>, room_id: i64) -> Result<Option<Stream>, DbError> {
    let sql = format!(
        "SELECT {STREAM_COLUMNS} FROM streams WHERE room_id = ? AND stop_at IS NULL \
         ORDER BY id DESC LIMIT 1"
    );
    let stream = on_conn!(exec, conn => {
        sqlx::query_as::<_, Stream>(&sql).bind(room_id).fetch_optional(conn).await?
    });
    Ok(stream)
}

/// Open streams, at most `limit`, by room: what the bus's live keys must show. Reads the
/// one-open-stream-per-room index of each backend, not the whole table.
pub async fn open_all(exec: impl Executor<'_>, limit: u32) -> Result<Vec<Stream>, DbError> {
    let mut handle = exec.connection().await?;
    let streams = match handle.target() {
        Target::Mysql(conn) => {
            let sql = format!(
                "SELECT {STREAM_COLUMNS} FROM streams WHERE open_room_id IS NOT NULL \
                 ORDER BY open_room_id LIMIT ?"
            );
            sqlx::query_as::<_, Stream>(&sql)
                .bind(limit)
                .fetch_all(conn)
                .await?
        }
        Target::Sqlite(conn) => {
            let sql = format!(
                "SELECT {STREAM_COLUMNS} FROM streams WHERE stop_at IS NULL \
                 ORDER BY room_id LIMIT ?"
            );
            sqlx::query_as::<_, Stream>(&sql)
                .bind(limit)
                .fetch_all(conn)
                .await?
        }
    };
    Ok(streams)
}

/// Every stream of a room, oldest first.
pub async fn of_room(exec: impl Executor<'_>, room_id: i64) -> Result<Vec<Stream>, DbError> {
    let sql = format!("SELECT {STREAM_COLUMNS} FROM streams WHERE room_id = ? ORDER BY id");
    let streams = on_conn!(exec, conn => {
        sqlx::query_as::<_, Stream>(&sql).bind(room_id).fetch_all(conn).await?
    });
    Ok(streams)
}

/// The open streams that origin `server_id` reported, for reconciliation.
pub async fn open_of_server(
    exec: impl Executor<'_>,
    server_id: &str,
) -> Result<Vec<Stream>, DbError> {
    let sql = format!(
        "SELECT {STREAM_COLUMNS} FROM streams WHERE origin_server_id = ? AND stop_at IS NULL \
         ORDER BY id"
    );
    let streams = on_conn!(exec, conn => {
        sqlx::query_as::<_, Stream>(&sql).bind(server_id).fetch_all(conn).await?
    });
    Ok(streams)
}

/// The open streams that origin `server_id` reported under another process id than
/// `service_id`: sessions of a previous run of a restarted origin.
pub async fn open_of_other_service(
    exec: impl Executor<'_>,
    server_id: &str,
    service_id: &str,
) -> Result<Vec<Stream>, DbError> {
    let sql = format!(
        "SELECT {STREAM_COLUMNS} FROM streams WHERE origin_server_id = ? AND stop_at IS NULL \
         AND origin_service_id <> ? ORDER BY id"
    );
    let streams = on_conn!(exec, conn => {
        sqlx::query_as::<_, Stream>(&sql)
            .bind(server_id)
            .bind(service_id)
            .fetch_all(conn)
            .await?
    });
    Ok(streams)
}

/// The newest stream (open or closed) of `room_id` from origin `server_id` and, when given,
/// publisher `client_id`: the session a recording belongs to.
pub async fn latest(
    exec: impl Executor<'_>,
    room_id: i64,
    server_id: &str,
    client_id: Option<&str>,
) -> Result<Option<Stream>, DbError> {
    let sql = format!(
        "SELECT {STREAM_COLUMNS} FROM streams WHERE room_id = ? AND origin_server_id = ? \
         AND (? IS NULL OR origin_client_id = ?) ORDER BY id DESC LIMIT 1"
    );
    let stream = on_conn!(exec, conn => {
        sqlx::query_as::<_, Stream>(&sql)
            .bind(room_id)
            .bind(server_id)
            .bind(client_id)
            .bind(client_id)
            .fetch_optional(conn)
            .await?
    });
    Ok(stream)
}

/// Records where a stream's latest recording is.
pub async fn set_record_url(
    exec: impl Executor<'_>,
    stream_id: i64,
    url: &str,
) -> Result<(), DbError> {
    on_conn!(exec, conn => {
        sqlx::query("UPDATE streams SET record_url = ? WHERE id = ?")
            .bind(url)
            .bind(stream_id)
            .execute(conn)
            .await
            .map(drop)?
    });
    Ok(())
}

/// Up to `limit` streams of a room, newest first, with ids below `before` when given.
pub async fn page_of_room(
    exec: impl Executor<'_>,
    room_id: i64,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<Stream>, DbError> {
    let sql = format!(
        "SELECT {STREAM_COLUMNS} FROM streams WHERE room_id = ? AND (? IS NULL OR id < ?) \
         ORDER BY id DESC LIMIT ?"
    );
    let streams = on_conn!(exec, conn => {
        sqlx::query_as::<_, Stream>(&sql)
            .bind(room_id)
            .bind(before)
            .bind(before)
            .bind(limit)
            .fetch_all(conn)
            .await?
    });
    Ok(streams)
}
