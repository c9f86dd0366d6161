//! Gifts: the catalogue viewers buy from. Prices are integers in the smallest unit of the
//! gift's currency (cents for EUR); no float is ever near money.

use super::exec::{on_conn, Target};
use super::{mysql_insert_id, sqlite_insert_id, DbError, Executor};

/// A row of `gifts`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Gift {
    /// Gift id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Price in the smallest unit of `currency`.
    pub price: i64,
    /// ISO 4217 code (`EUR`).
    pub currency: String,
    /// Whether it can be bought.
    pub active: bool,
    /// Creation time, unix milliseconds.
    pub created_at: i64,
}

/// What [`update`] changes.
#[derive(Debug, Clone, Default)]
pub struct GiftChanges<'a> {
    /// A new name.
    pub name: Option<&'a str>,
    /// A new price.
    pub price: Option<i64>,
    /// A new currency.
    pub currency: Option<&'a str>,
    /// Whether it can be bought.
    pub active: Option<bool>,
}

const GIFT_COLUMNS: &str = "id, name, price, currency, active, created_at";

/// Adds a gift priced in the default currency (EUR) and returns its id. Names are unique;
/// `price` is in the smallest unit of the currency.
pub async fn create(
    exec: impl Executor<'_>,
    name: &str,
    price: i64,
    now_ms: i64,
) -> Result<i64, DbError> {
    create_gift(exec, name, price, "EUR", true, now_ms).await
}

/// Adds a gift and returns its id.
pub async fn create_gift(
    exec: impl Executor<'_>,
    name: &str,
    price: i64,
    currency: &str,
    active: bool,
    now_ms: i64,
) -> Result<i64, DbError> {
    const SQL: &str =
        "INSERT INTO gifts (name, price, currency, active, created_at) VALUES (?, ?, ?, ?, ?)";
    let mut handle = exec.connection().await?;
    match handle.target() {
        Target::Mysql(conn) => {
            let done = sqlx::query(SQL)
                .bind(name)
                .bind(price)
                .bind(currency)
                .bind(active)
                .bind(now_ms)
                .execute(conn)
                .await?;
            mysql_insert_id(done.last_insert_id())
        }
        Target::Sqlite(conn) => {
            let done = sqlx::query(SQL)
                .bind(name)
                .bind(price)
                .bind(currency)
                .bind(active)
                .bind(now_ms)
                .execute(conn)
                .await?;
            sqlite_insert_id(done.last_insert_rowid())
        }
    }
}

/// The gift with `id`, if any (active or not).
pub async fn get(exec: impl Executor<'_>, id: i64) -> Result<Option<Gift>, DbError> {
    let sql = format!("SELECT {GIFT_COLUMNS} FROM gifts WHERE id = ?");
    let gift = on_conn!(exec, conn => {
        sqlx::query_as::<_, Gift>(&sql).bind(id).fetch_optional(conn).await?
    });
    Ok(gift)
}

/// The catalogue, by price then id; only active gifts unless `all`.
pub async fn list(exec: impl Executor<'_>, all: bool) -> Result<Vec<Gift>, DbError> {
    let filter = if all { "" } else { "WHERE active = TRUE" };
    let sql = format!("SELECT {GIFT_COLUMNS} FROM gifts {filter} ORDER BY price, id LIMIT 1000");
    let gifts = on_conn!(exec, conn => {
        sqlx::query_as::<_, Gift>(&sql).fetch_all(conn).await?
    });
    Ok(gifts)
}

/// Applies `changes` to gift `id` (nothing when there is no such gift: read it back with
/// [`get`], since MySQL counts changed rows, not matched ones).
pub async fn update(
    exec: impl Executor<'_>,
    id: i64,
    changes: &GiftChanges<'_>,
) -> Result<(), DbError> {
    const SQL: &str = "UPDATE gifts SET name = COALESCE(?, name), price = COALESCE(?, price), \
         currency = COALESCE(?, currency), active = COALESCE(?, active) WHERE id = ?";
    on_conn!(exec, conn => {
        sqlx::query(SQL)
            .bind(changes.name)
            .bind(changes.price)
            .bind(changes.currency)
            .bind(changes.active)
            .bind(id)
            .execute(conn)
            .await?
            .rows_affected()
    });
    Ok(())
}

/// Whether `err` is the unique-name violation of [`create_gift`] or [`update`].
pub fn is_duplicate(err: &DbError) -> bool {
    super::users::is_duplicate(err)
}
