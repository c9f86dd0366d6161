//! The audit log (`audit_log`): one row per state-changing request of a logged-in user —
//! who, which route, on what, when, and how it ended. Written by the room API's audit layer,
//! read by its console.

use super::columns::check_text;
use super::exec::on_conn;
use super::{DbError, Executor};

/// `audit_log.actor_role`.
pub const ROLE_WIDTH: usize = 16;
/// `audit_log.action`.
pub const ACTION_WIDTH: usize = 160;
/// `audit_log.target`.
pub const TARGET_WIDTH: usize = 255;
/// `audit_log.detail`.
pub const DETAIL_WIDTH: usize = 512;

/// What [`record`] writes.
#[derive(Debug, Clone, Copy)]
pub struct NewAuditEntry<'a> {
    /// When the request was answered, unix milliseconds.
    pub at: i64,
    /// The user who made it.
    pub actor_id: i64,
    /// The role their token carried.
    pub actor_role: &'a str,
    /// `METHOD /route/{template}`.
    pub action: &'a str,
    /// The path parameters, `id=42` or `id=42 user_id=7`.
    pub target: &'a str,
    /// The room the route is about, when it names one.
    pub room_id: Option<i64>,
    /// The answer's status.
    pub status: u16,
    /// What the answer said: the error, or an outcome the handler reported.
    pub detail: Option<&'a str>,
}

/// A row of `audit_log`, with the actor's current username.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditEntry {
    /// Row id.
    pub id: i64,
    /// When, unix milliseconds.
    pub at: i64,
    /// The actor.
    pub actor_id: i64,
    /// Their username (`None` when the account is gone).
    pub actor_username: Option<String>,
    /// The role their token carried.
    pub actor_role: String,
    /// `METHOD /route/{template}`.
    pub action: String,
    /// The path parameters.
    pub target: String,
    /// The room, when the route names one.
    pub room_id: Option<i64>,
    /// The answer's status.
    pub status: i32,
    /// What the answer said.
    pub detail: Option<String>,
}

/// Which entries [`page`] lists.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuditFilter {
    /// Only this room's.
    pub room_id: Option<i64>,
    /// Only this actor's.
    pub actor_id: Option<i64>,
}

/// `value` cut to `width` characters, control characters replaced: what a request carried
/// must fit its column and never fail the write.
fn fit(value: &str, width: usize) -> String {
    let clean: String = value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(width)
        .collect();
    debug_assert!(check_text(&clean, width).is_ok());
    clean
}

/// Appends an entry.
pub async fn record(exec: impl Executor<'_>, entry: &NewAuditEntry<'_>) -> Result<(), DbError> {
    const SQL: &str = "INSERT INTO audit_log (at, actor_id, actor_role, action, target, room_id, \
         status, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
    let role = fit(entry.actor_role, ROLE_WIDTH);
    let action = fit(entry.action, ACTION_WIDTH);
    let target = fit(entry.target, TARGET_WIDTH);
    let detail = entry.detail.map(|detail| fit(detail, DETAIL_WIDTH));
    on_conn!(exec, conn => {
        sqlx::query(SQL)
            .bind(entry.at)
            .bind(entry.actor_id)
            .bind(&role)
            .bind(&action)
            .bind(&target)
            .bind(entry.room_id)
            .bind(i32::from(entry.status))
            .bind(detail.as_deref())
            .execute(conn)
            .await?
            .rows_affected()
    });
    Ok(())
}

/// Entries matching `filter`, newest first, with ids below `before` when given.
pub async fn page(
    exec: impl Executor<'_>,
    filter: AuditFilter,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<AuditEntry>, DbError> {
    const SQL: &str = "SELECT a.id, a.at, a.actor_id, u.username AS actor_username, \
         a.actor_role, a.action, a.target, a.room_id, a.status, a.detail \
         FROM audit_log a LEFT JOIN users u ON u.id = a.actor_id \
         WHERE (? IS NULL OR a.room_id = ?) AND (? IS NULL OR a.actor_id = ?) \
         AND (? IS NULL OR a.id < ?) ORDER BY a.id DESC LIMIT ?";
    let entries = on_conn!(exec, conn => {
        sqlx::query_as::<_, AuditEntry>(SQL)
            .bind(filter.room_id)
            .bind(filter.room_id)
            .bind(filter.actor_id)
            .bind(filter.actor_id)
            .bind(before)
            .bind(before)
            .bind(limit)
            .fetch_all(conn)
            .await?
    });
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_cut_to_their_columns() {
        assert_eq!(fit("a\nb", 10), "a b");
        assert_eq!(fit(&"é".repeat(300), TARGET_WIDTH).chars().count(), 255);
    }
}
