//! Orders: a viewer buying a gift for a room. Payment moves an order's status exactly once,
//! inside a transaction that first takes the order with [`lock`] (or [`lock_by_ref`]).
//!
//! Statuses: `pending` (created, awaiting the provider), `paid`, `failed` (the provider said
//! so), `expired` (given up on by reconciliation). Only `pending` ever changes.

use super::exec::{on_conn, Target};
use super::{mysql_insert_id, sqlite_insert_id, DbError, Executor, Tx};

/// A row of `orders`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Order {
    /// Order id.
    pub id: i64,
    /// The buyer.
    pub user_id: i64,
    /// The room the gift is for.
    pub room_id: i64,
    /// The gift bought.
    pub gift_id: i64,
    /// What it costs, in the smallest unit of the currency.
    pub amount: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// `pending`, `paid`, `failed` or `expired`.
    pub status: String,
    /// The reference the payment provider echoes in its callbacks.
    pub payment_ref: Option<String>,
    /// Creation time, unix milliseconds.
    pub created_at: i64,
    /// Last status change, unix milliseconds (0 before the first).
    pub updated_at: i64,
}

/// What [`create`] needs.
#[derive(Debug, Clone)]
pub struct NewOrder<'a> {
    /// The buyer.
    pub user_id: i64,
    /// The room the gift is for.
    pub room_id: i64,
    /// The gift bought.
    pub gift_id: i64,
    /// What it costs.
    pub amount: i64,
    /// ISO 4217 code.
    pub currency: &'a str,
    /// The initial status.
    pub status: &'a str,
    /// The payment reference (unique).
    pub payment_ref: Option<&'a str>,
}

const ORDER_COLUMNS: &str =
    "id, user_id, room_id, gift_id, amount, currency, status, payment_ref, created_at, updated_at";

/// Creates an order and returns its id.
pub async fn create(
    exec: impl Executor<'_>,
    order: &NewOrder<'_>,
    now_ms: i64,
) -> Result<i64, DbError> {
    const SQL: &str = "INSERT INTO orders (user_id, room_id, gift_id, amount, currency, status, \
         payment_ref, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)";
    let mut handle = exec.connection().await?;
    match handle.target() {
        Target::Mysql(conn) => {
            let done = sqlx::query(SQL)
                .bind(order.user_id)
                .bind(order.room_id)
                .bind(order.gift_id)
                .bind(order.amount)
                .bind(order.currency)
                .bind(order.status)
                .bind(order.payment_ref)
                .bind(now_ms)
                .execute(conn)
                .await?;
            mysql_insert_id(done.last_insert_id())
        }
        Target::Sqlite(conn) => {
            let done = sqlx::query(SQL)
                .bind(order.user_id)
                .bind(order.room_id)
                .bind(order.gift_id)
                .bind(order.amount)
                .bind(order.currency)
                .bind(order.status)
                .bind(order.payment_ref)
                .bind(now_ms)
                .execute(conn)
                .await?;
            sqlite_insert_id(done.last_insert_rowid())
        }
    }
}

/// The order with `id`, if it exists (a plain read: see [`lock`] before changing it).
pub async fn get(exec: impl Executor<'_>, id: i64) -> Result<Option<Order>, DbError> {
    let sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = ?");
    let order = on_conn!(exec, conn => {
        sqlx::query_as::<_, Order>(&sql).bind(id).fetch_optional(conn).await?
    });
    Ok(order)
}

async fn lock_where(
    tx: &mut Tx<'_>,
    column: &str,
    value: Value<'_>,
) -> Result<Option<Order>, DbError> {
    let mut handle = super::Executor::connection(&mut *tx).await?;
    // SQLite's transactions hold the write lock from their start: no row lock to take.
    let (sql_mysql, sql_sqlite) = (
        format!("SELECT {ORDER_COLUMNS} FROM orders WHERE {column} = ? FOR UPDATE"),
        format!("SELECT {ORDER_COLUMNS} FROM orders WHERE {column} = ?"),
    );
    let order = match (handle.target(), value) {
        (Target::Mysql(conn), Value::Id(id)) => {
            sqlx::query_as::<_, Order>(&sql_mysql)
                .bind(id)
                .fetch_optional(conn)
                .await?
        }
        (Target::Mysql(conn), Value::Text(text)) => {
            sqlx::query_as::<_, Order>(&sql_mysql)
                .bind(text)
                .fetch_optional(conn)
                .await?
        }
        (Target::Sqlite(conn), Value::Id(id)) => {
            sqlx::query_as::<_, Order>(&sql_sqlite)
                .bind(id)
                .fetch_optional(conn)
                .await?
        }
        (Target::Sqlite(conn), Value::Text(text)) => {
            sqlx::query_as::<_, Order>(&sql_sqlite)
                .bind(text)
                .fetch_optional(conn)
                .await?
        }
    };
    Ok(order)
}

#[derive(Clone, Copy)]
enum Value<'a> {
    Id(i64),
    Text(&'a str),
}

/// Reads order `id` and keeps it from changing under the transaction until it ends: a second
/// transaction locking the same order waits for this one (MySQL/MariaDB row lock; SQLite's
/// transactions hold the write lock from their start). Read, decide, write, commit.
pub async fn lock(tx: &mut Tx<'_>, id: i64) -> Result<Option<Order>, DbError> {
    lock_where(tx, "id", Value::Id(id)).await
}

/// [`lock`] by payment reference.
pub async fn lock_by_ref(tx: &mut Tx<'_>, payment_ref: &str) -> Result<Option<Order>, DbError> {
    lock_where(tx, "payment_ref", Value::Text(payment_ref)).await
}

/// Sets the status of order `id` (taken with [`lock`] in the same transaction); `false` when
/// nothing changed (no such order, or it already had that status).
pub async fn set_status(tx: &mut Tx<'_>, id: i64, status: &str) -> Result<bool, DbError> {
    let changed = on_conn!(&mut *tx, conn => {
        sqlx::query("UPDATE orders SET status = ? WHERE id = ?")
            .bind(status)
            .bind(id)
            .execute(conn)
            .await?
            .rows_affected()
    });
    Ok(changed == 1)
}

/// Moves order `id` from `from` to `to`; `false` when it was not in `from` (so that a
/// transition happens once even without a lock).
pub async fn transition(
    exec: impl Executor<'_>,
    id: i64,
    from: &str,
    to: &str,
    now_ms: i64,
) -> Result<bool, DbError> {
    let changed = on_conn!(exec, conn => {
        sqlx::query("UPDATE orders SET status = ?, updated_at = ? WHERE id = ? AND status = ?")
            .bind(to)
            .bind(now_ms)
            .bind(id)
            .bind(from)
            .execute(conn)
            .await?
            .rows_affected()
    });
    Ok(changed == 1)
}

/// A user's orders, newest first, with ids below `before` when given.
pub async fn of_user(
    exec: impl Executor<'_>,
    user_id: i64,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<Order>, DbError> {
    let sql = format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE user_id = ? AND id < ? ORDER BY id DESC LIMIT ?"
    );
    let orders = on_conn!(exec, conn => {
        sqlx::query_as::<_, Order>(&sql)
            .bind(user_id)
            .bind(before.unwrap_or(i64::MAX))
            .bind(limit)
            .fetch_all(conn)
            .await?
    });
    Ok(orders)
}

/// Orders in `status` created before `created_before_ms`, oldest first, with ids above
/// `after` when given: the reconciliation listing.
pub async fn by_status(
    exec: impl Executor<'_>,
    status: &str,
    created_before_ms: i64,
    after: Option<i64>,
    limit: u32,
) -> Result<Vec<Order>, DbError> {
    let sql = format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE status = ? AND created_at < ? AND id > ? \
         ORDER BY id LIMIT ?"
    );
    let orders = on_conn!(exec, conn => {
        sqlx::query_as::<_, Order>(&sql)
            .bind(status)
            .bind(created_before_ms)
            .bind(after.unwrap_or(0))
            .bind(limit)
            .fetch_all(conn)
            .await?
    });
    Ok(orders)
}

/// How many orders are in each status.
pub async fn count_by_status(exec: impl Executor<'_>) -> Result<Vec<(String, i64)>, DbError> {
    const SQL: &str = "SELECT status, COUNT(*) FROM orders GROUP BY status ORDER BY status";
    let counts = on_conn!(exec, conn => {
        sqlx::query_as::<_, (String, i64)>(SQL).fetch_all(conn).await?
    });
    Ok(counts)
}

/// What each user has paid for gifts in `room_id` in `currency`, and how many paid orders
/// that is (one snapshot): the source the gift leaderboard is rebuilt from, the count being
/// the board's version (a paid order stays paid, so it only grows).
pub async fn room_totals(
    exec: impl Executor<'_>,
    room_id: i64,
    currency: &str,
) -> Result<RoomTotals, DbError> {
    // CAST: MySQL sums BIGINTs as DECIMAL.
    const SQL: &str = "SELECT user_id, CAST(SUM(amount) AS SIGNED), COUNT(*) FROM orders \
         WHERE room_id = ? AND currency = ? AND status = 'paid' GROUP BY user_id";
    const SQL_SQLITE: &str = "SELECT user_id, SUM(amount), COUNT(*) FROM orders \
         WHERE room_id = ? AND currency = ? AND status = 'paid' GROUP BY user_id";
    let mut handle = exec.connection().await?;
    let rows = match handle.target() {
        Target::Mysql(conn) => {
            sqlx::query_as::<_, (i64, i64, i64)>(SQL)
                .bind(room_id)
                .bind(currency)
                .fetch_all(conn)
                .await?
        }
        Target::Sqlite(conn) => {
            sqlx::query_as::<_, (i64, i64, i64)>(SQL_SQLITE)
                .bind(room_id)
                .bind(currency)
                .fetch_all(conn)
                .await?
        }
    };
    Ok(RoomTotals {
        paid_orders: rows.iter().map(|(_, _, count)| count).sum(),
        by_user: rows
            .into_iter()
            .map(|(user, total, _)| (user, total))
            .collect(),
    })
}

/// A room's gift totals in one currency, as [`room_totals`] read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomTotals {
    /// (user id, amount paid).
    pub by_user: Vec<(i64, i64)>,
    /// How many paid orders the totals sum.
    pub paid_orders: i64,
}
