//! Users: accounts that own rooms, watch and pay.

use super::exec::Target;
use super::{mysql_insert_id, sqlite_insert_id, DbError, Executor};

/// Creates a user and returns its id. Usernames are unique.
pub async fn create(
    exec: impl Executor<'_>,
    username: &str,
    password_hash: &str,
    role: &str,
    now_ms: i64,
) -> Result<i64, DbError> {
    const SQL: &str =
        "INSERT INTO users (username, password_hash, role, created_at) VALUES (?, ?, ?, ?)";
    let mut handle = exec.connection().await?;
    match handle.target() {
        Target::Mysql(conn) => {
            let done = sqlx::query(SQL)
                .bind(username)
                .bind(password_hash)
                .bind(role)
                .bind(now_ms)
                .execute(conn)
                .await?;
            mysql_insert_id(done.last_insert_id())
        }
        Target::Sqlite(conn) => {
            let done = sqlx::query(SQL)
                .bind(username)
                .bind(password_hash)
                .bind(role)
                .bind(now_ms)
                .execute(conn)
                .await?;
            sqlite_insert_id(done.last_insert_rowid())
        }
    }
}
