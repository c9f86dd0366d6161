//! Orders: a viewer buying a gift for a room. Payment moves an order's status exactly once,
//! inside a transaction that first takes the order with [`lock`].

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
    /// `created`, `paid`, … (the payment flow owns the vocabulary).
    pub status: String,
    /// Creation time, unix milliseconds.
    pub created_at: i64,
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
    /// The initial status.
    pub status: &'a str,
}

const ORDER_COLUMNS: &str = "id, user_id, room_id, gift_id, amount, status, created_at";

/// Creates an order and returns its id.
pub async fn create(
    exec: impl Executor<'_>,
    order: &NewOrder<'_>,
    now_ms: i64,
) -> Result<i64, DbError> {
    const SQL: &str = "INSERT INTO orders (user_id, room_id, gift_id, amount, status, \
         created_at) VALUES (?, ?, ?, ?, ?, ?)";
    let mut handle = exec.connection().await?;
    match handle.target() {
        Target::Mysql(conn) => {
            let done = sqlx::query(SQL)
                .bind(order.user_id)
                .bind(order.room_id)
                .bind(order.gift_id)
                .bind(order.amount)
                .bind(order.status)
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
                .bind(order.status)
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

/// Reads order `id` and keeps it from changing under the transaction until it ends: a second
/// transaction locking the same order waits for this one (MySQL/MariaDB row lock; SQLite's
/// transactions hold the write lock from their start). Read, decide, write, commit.
pub async fn lock(tx: &mut Tx<'_>, id: i64) -> Result<Option<Order>, DbError> {
    let mut handle = super::Executor::connection(&mut *tx).await?;
    let order = match handle.target() {
        Target::Mysql(conn) => {
            let sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = ? FOR UPDATE");
            sqlx::query_as::<_, Order>(&sql)
                .bind(id)
                .fetch_optional(conn)
                .await?
        }
        Target::Sqlite(conn) => {
            let sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = ?");
            sqlx::query_as::<_, Order>(&sql)
                .bind(id)
                .fetch_optional(conn)
                .await?
        }
    };
    Ok(order)
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
