//! Idempotency keys: the first answer to a request that carried an `Idempotency-Key`, kept
//! per user so that a retry gets the same answer instead of a second order.

use super::exec::on_conn;
use super::{DbError, Executor};

/// A stored answer.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Stored {
    /// SHA-256 (hex) of what the request asked, to tell a retry from a different request.
    pub request_hash: String,
    /// The HTTP status answered.
    pub status: i32,
    /// The body answered.
    pub body: String,
    /// When it was stored, unix milliseconds.
    pub created_at: i64,
}

/// The answer stored for `user_id`'s `key`, if it was stored at or after `not_before_ms`.
pub async fn get(
    exec: impl Executor<'_>,
    user_id: i64,
    key: &str,
    not_before_ms: i64,
) -> Result<Option<Stored>, DbError> {
    const SQL: &str = "SELECT request_hash, status, body, created_at FROM idempotency_keys \
         WHERE user_id = ? AND idem_key = ? AND created_at >= ?";
    let stored = on_conn!(exec, conn => {
        sqlx::query_as::<_, Stored>(SQL)
            .bind(user_id)
            .bind(key)
            .bind(not_before_ms)
            .fetch_optional(conn)
            .await?
    });
    Ok(stored)
}

/// Stores the answer to `user_id`'s `key`. A key stored before fails with a unique
/// violation ([`is_duplicate`]): a concurrent request with the same key got there first.
pub async fn insert(
    exec: impl Executor<'_>,
    user_id: i64,
    key: &str,
    stored: &Stored,
) -> Result<(), DbError> {
    const SQL: &str = "INSERT INTO idempotency_keys (user_id, idem_key, request_hash, status, \
         body, created_at) VALUES (?, ?, ?, ?, ?, ?)";
    on_conn!(exec, conn => {
        sqlx::query(SQL)
            .bind(user_id)
            .bind(key)
            .bind(&stored.request_hash)
            .bind(stored.status)
            .bind(&stored.body)
            .bind(stored.created_at)
            .execute(conn)
            .await?
            .rows_affected()
    });
    Ok(())
}

/// Deletes `user_id`'s `key` if it was stored before `before_ms` (expired: the key may be
/// used again).
pub async fn delete_expired_key(
    exec: impl Executor<'_>,
    user_id: i64,
    key: &str,
    before_ms: i64,
) -> Result<(), DbError> {
    const SQL: &str =
        "DELETE FROM idempotency_keys WHERE user_id = ? AND idem_key = ? AND created_at < ?";
    on_conn!(exec, conn => {
        sqlx::query(SQL).bind(user_id).bind(key).bind(before_ms).execute(conn).await?
            .rows_affected()
    });
    Ok(())
}

/// Deletes keys stored before `before_ms`; returns how many.
pub async fn purge(exec: impl Executor<'_>, before_ms: i64) -> Result<u64, DbError> {
    let deleted = on_conn!(exec, conn => {
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at < ?")
            .bind(before_ms)
            .execute(conn)
            .await?
            .rows_affected()
    });
    Ok(deleted)
}

/// Whether `err` is the unique violation of [`insert`].
pub fn is_duplicate(err: &DbError) -> bool {
    super::users::is_duplicate(err)
}
