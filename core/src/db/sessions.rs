//! Login sessions: refresh tokens, stored as their SHA-256 only, grouped in families. Each
//! refresh replaces the presented token by a new one of its family; a replaced token presented
//! again means it leaked, and the caller revokes the whole family.

use super::exec::on_conn;
use super::{DbError, Executor, Tx};

/// A row of `refresh_tokens`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RefreshToken {
    /// Row id.
    pub id: i64,
    /// The session's user.
    pub user_id: i64,
    /// The login this token descends from (hex).
    pub family: String,
    /// Unix milliseconds after which it is refused.
    pub expires_at: i64,
    /// When a refresh replaced it; `None` while it is the family's current token.
    pub replaced_at: Option<i64>,
    /// When its family was revoked (logout, or reuse of a replaced token).
    pub revoked_at: Option<i64>,
}

/// What [`insert`] stores.
#[derive(Debug, Clone, Copy)]
pub struct NewRefreshToken<'a> {
    /// The session's user.
    pub user_id: i64,
    /// The family (a fresh one per login).
    pub family: &'a str,
    /// SHA-256 of the token, lowercase hex.
    pub token_hash: &'a str,
    /// Unix milliseconds after which it is refused.
    pub expires_at: i64,
}

/// Stores a new refresh token.
pub async fn insert(
    exec: impl Executor<'_>,
    token: &NewRefreshToken<'_>,
    now_ms: i64,
) -> Result<(), DbError> {
    const SQL: &str = "INSERT INTO refresh_tokens (user_id, family, token_hash, expires_at, \
         created_at) VALUES (?, ?, ?, ?, ?)";
    on_conn!(exec, conn => {
        sqlx::query(SQL)
            .bind(token.user_id)
            .bind(token.family)
            .bind(token.token_hash)
            .bind(token.expires_at)
            .bind(now_ms)
            .execute(conn)
            .await
            .map(drop)?
    });
    Ok(())
}

/// The token whose hash is `token_hash`, if any.
pub async fn by_hash(
    exec: impl Executor<'_>,
    token_hash: &str,
) -> Result<Option<RefreshToken>, DbError> {
    const SQL: &str = "SELECT id, user_id, family, expires_at, replaced_at, revoked_at \
         FROM refresh_tokens WHERE token_hash = ?";
    let token = on_conn!(exec, conn => {
        sqlx::query_as::<_, RefreshToken>(SQL).bind(token_hash).fetch_optional(conn).await?
    });
    Ok(token)
}

/// Marks token `id` replaced, inside the refresh's transaction. `false` when it already was
/// (a concurrent refresh with the same token won): the caller treats that as reuse.
pub async fn mark_replaced(tx: &mut Tx<'_>, id: i64, now_ms: i64) -> Result<bool, DbError> {
    const SQL: &str = "UPDATE refresh_tokens SET replaced_at = ? \
         WHERE id = ? AND replaced_at IS NULL AND revoked_at IS NULL";
    let changed = on_conn!(&mut *tx, conn => {
        sqlx::query(SQL).bind(now_ms).bind(id).execute(conn).await?.rows_affected()
    });
    Ok(changed == 1)
}

/// Revokes every token of `family`; returns how many were still unrevoked.
pub async fn revoke_family(
    exec: impl Executor<'_>,
    family: &str,
    now_ms: i64,
) -> Result<u64, DbError> {
    const SQL: &str =
        "UPDATE refresh_tokens SET revoked_at = ? WHERE family = ? AND revoked_at IS NULL";
    let changed = on_conn!(exec, conn => {
        sqlx::query(SQL).bind(now_ms).bind(family).execute(conn).await?.rows_affected()
    });
    Ok(changed)
}
