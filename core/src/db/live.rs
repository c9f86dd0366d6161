//! What is live now, for people: the open publish sessions with their rooms and owners.

use super::exec::Target;
use super::{DbError, Executor};

/// An open publish session, its room and its owner.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LiveSession {
    /// The open stream.
    pub stream_id: i64,
    /// Its room.
    pub room_id: i64,
    /// The room's title.
    pub title: String,
    /// The room's owner.
    pub owner_id: i64,
    /// The owner's username (`None` when the account is gone).
    pub owner_username: Option<String>,
    /// Publish start, unix milliseconds.
    pub start_at: i64,
    /// `srs`, `zlmediakit` or `nginx-rtmp`.
    pub origin_kind: String,
    /// The origin server.
    pub origin_server_id: String,
    /// The publisher's connection id at the origin.
    pub origin_client_id: Option<String>,
    /// The publisher's address as the publish callback named it.
    pub publisher_ip: Option<String>,
    /// Where the stream's latest recording is, once the origin reported one.
    pub record_url: Option<String>,
}

const SELECT: &str = "SELECT s.id AS stream_id, s.room_id, r.title, r.owner_id, \
     u.username AS owner_username, s.start_at, s.origin_kind, s.origin_server_id, \
     s.origin_client_id, s.publisher_ip, s.record_url \
     FROM streams s JOIN rooms r ON r.id = s.room_id LEFT JOIN users u ON u.id = r.owner_id";

/// The open sessions, of rooms `owner_id` owns when given, longest running first, at most
/// `limit`.
pub async fn sessions(
    exec: impl Executor<'_>,
    owner_id: Option<i64>,
    limit: u32,
) -> Result<Vec<LiveSession>, DbError> {
    let mut handle = exec.connection().await?;
    let sessions = match handle.target() {
        // MySQL indexes open streams by `open_room_id`, SQLite by `stop_at IS NULL`.
        Target::Mysql(conn) => {
            let sql = format!(
                "{SELECT} WHERE s.open_room_id IS NOT NULL AND (? IS NULL OR r.owner_id = ?) \
                 ORDER BY s.start_at, s.id LIMIT ?"
            );
            sqlx::query_as::<_, LiveSession>(&sql)
                .bind(owner_id)
                .bind(owner_id)
                .bind(limit)
                .fetch_all(conn)
                .await?
        }
        Target::Sqlite(conn) => {
            let sql = format!(
                "{SELECT} WHERE s.stop_at IS NULL AND (? IS NULL OR r.owner_id = ?) \
                 ORDER BY s.start_at, s.id LIMIT ?"
            );
            sqlx::query_as::<_, LiveSession>(&sql)
                .bind(owner_id)
                .bind(owner_id)
                .bind(limit)
                .fetch_all(conn)
                .await?
        }
    };
    Ok(sessions)
}
