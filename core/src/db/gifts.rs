//! Gifts: the catalogue viewers buy from.

use super::exec::Target;
use super::{mysql_insert_id, sqlite_insert_id, DbError, Executor};

/// Adds a gift to the catalogue and returns its id. Names are unique; `price` is in the
/// smallest unit of the currency.
pub async fn create(
    exec: impl Executor<'_>,
    name: &str,
    price: i64,
    now_ms: i64,
) -> Result<i64, DbError> {
    const SQL: &str = "INSERT INTO gifts (name, price, created_at) VALUES (?, ?, ?)";
    let mut handle = exec.connection().await?;
    match handle.target() {
        Target::Mysql(conn) => {
            let done = sqlx::query(SQL)
                .bind(name)
                .bind(price)
                .bind(now_ms)
                .execute(conn)
                .await?;
            mysql_insert_id(done.last_insert_id())
        }
        Target::Sqlite(conn) => {
            let done = sqlx::query(SQL)
                .bind(name)
                .bind(price)
                .bind(now_ms)
                .execute(conn)
                .await?;
            sqlite_insert_id(done.last_insert_rowid())
        }
    }
}
