//! Payment provider callbacks: the inbox of authentic events (one row per provider and
//! event id, so a redelivery is a no-op), the refusals of callbacks that could not be
//! trusted, and the gift outbox written in the same transaction as the payment.

use super::exec::on_conn;
use super::{DbError, Executor, Tx};

/// A row of `payment_inbox`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct InboxEvent {
    /// Row id (0 before insertion).
    pub id: i64,
    /// The provider that sent it.
    pub provider: String,
    /// The provider's event id.
    pub event_id: String,
    /// `payment.succeeded` or `payment.failed`.
    pub event_type: String,
    /// The payment reference it names.
    pub payment_ref: String,
    /// The order it named, when one exists.
    pub order_id: Option<i64>,
    /// The amount it reported.
    pub amount: i64,
    /// The currency it reported.
    pub currency: String,
    /// `paid`, `failed`, `refused` or `ignored`.
    pub outcome: String,
    /// Why, for `refused` and `ignored`.
    pub reason: Option<String>,
    /// When it arrived, unix milliseconds.
    pub received_at: i64,
}

// `event_id` is binary on MySQL (compared byte for byte): read back as text.
const INBOX_COLUMNS: &str =
    "id, provider, CAST(event_id AS CHAR) AS event_id, event_type, payment_ref, order_id, amount, \
     currency, outcome, reason, received_at";

/// Records `event` unless (provider, event id) is already there; returns whether it was
/// recorded. Inside the transaction that acts on it: the act and the record commit together.
pub async fn record_event(tx: &mut Tx<'_>, event: &InboxEvent) -> Result<bool, DbError> {
    const COLUMNS: &str = "(provider, event_id, event_type, payment_ref, order_id, amount, \
         currency, outcome, reason, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    let inserted = on_conn!(&mut *tx, conn, insert_ignore => {
        let sql = format!("{insert_ignore} INTO payment_inbox {COLUMNS}");
        bind_event(sqlx::query(&sql), event)
            .execute(conn)
            .await?
            .rows_affected()
    });
    Ok(inserted == 1)
}

fn bind_event<'q, DB>(
    query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    event: &'q InboxEvent,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    query
        .bind(event.provider.clone())
        .bind(event.event_id.clone())
        .bind(event.event_type.clone())
        .bind(event.payment_ref.clone())
        .bind(event.order_id)
        .bind(event.amount)
        .bind(event.currency.clone())
        .bind(event.outcome.clone())
        .bind(event.reason.clone())
        .bind(event.received_at)
}

/// The recorded event (provider, event id), if any.
pub async fn event(
    exec: impl Executor<'_>,
    provider: &str,
    event_id: &str,
) -> Result<Option<InboxEvent>, DbError> {
    let sql =
        format!("SELECT {INBOX_COLUMNS} FROM payment_inbox WHERE provider = ? AND event_id = ?");
    let found = on_conn!(exec, conn => {
        sqlx::query_as::<_, InboxEvent>(&sql)
            .bind(provider)
            .bind(event_id)
            .fetch_optional(conn)
            .await?
    });
    Ok(found)
}

/// Recorded events with ids above `after`, in id order.
pub async fn events(
    exec: impl Executor<'_>,
    after: i64,
    limit: u32,
) -> Result<Vec<InboxEvent>, DbError> {
    let sql = format!("SELECT {INBOX_COLUMNS} FROM payment_inbox WHERE id > ? ORDER BY id LIMIT ?");
    let found = on_conn!(exec, conn => {
        sqlx::query_as::<_, InboxEvent>(&sql).bind(after).bind(limit).fetch_all(conn).await?
    });
    Ok(found)
}

/// Recorded events newest first, with ids below `before` when given: the callbacks page.
pub async fn events_newest(
    exec: impl Executor<'_>,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<InboxEvent>, DbError> {
    let sql = format!(
        "SELECT {INBOX_COLUMNS} FROM payment_inbox WHERE (? IS NULL OR id < ?)          ORDER BY id DESC LIMIT ?"
    );
    let found = on_conn!(exec, conn => {
        sqlx::query_as::<_, InboxEvent>(&sql)
            .bind(before)
            .bind(before)
            .bind(limit)
            .fetch_all(conn)
            .await?
    });
    Ok(found)
}

/// The recorded events about one order (naming its id or its payment reference), oldest
/// first.
pub async fn events_of_order(
    exec: impl Executor<'_>,
    order_id: i64,
    payment_ref: Option<&str>,
) -> Result<Vec<InboxEvent>, DbError> {
    let sql = format!(
        "SELECT {INBOX_COLUMNS} FROM payment_inbox WHERE order_id = ? OR payment_ref = ?          ORDER BY id LIMIT 100"
    );
    let found = on_conn!(exec, conn => {
        sqlx::query_as::<_, InboxEvent>(&sql)
            .bind(order_id)
            .bind(payment_ref.unwrap_or(""))
            .fetch_all(conn)
            .await?
    });
    Ok(found)
}

/// Whether order `order_id`'s gift event is in the outbox (`None`: it has none) and, if so,
/// whether it was relayed.
pub async fn gift_relayed(exec: impl Executor<'_>, order_id: i64) -> Result<Option<bool>, DbError> {
    let found = on_conn!(exec, conn => {
        sqlx::query_as::<_, (Option<i64>,)>(
            "SELECT relayed_at FROM gift_outbox WHERE order_id = ?",
        )
        .bind(order_id)
        .fetch_optional(conn)
        .await?
    });
    Ok(found.map(|(relayed_at,)| relayed_at.is_some()))
}

/// A row of `payment_refusals`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Refusal {
    /// Row id.
    pub id: i64,
    /// `missing_signature`, `malformed_signature`, `stale_signature`, `bad_signature`,
    /// `malformed_event`.
    pub reason: String,
    /// The event id the body claimed, when it had one (untrusted).
    pub event_id: Option<String>,
    /// When it arrived, unix milliseconds.
    pub received_at: i64,
}

/// Records a callback refused before it could be trusted.
pub async fn record_refusal(
    exec: impl Executor<'_>,
    reason: &str,
    event_id: Option<&str>,
    now_ms: i64,
) -> Result<(), DbError> {
    const SQL: &str =
        "INSERT INTO payment_refusals (reason, event_id, received_at) VALUES (?, ?, ?)";
    on_conn!(exec, conn => {
        sqlx::query(SQL).bind(reason).bind(event_id).bind(now_ms).execute(conn).await?
            .rows_affected()
    });
    Ok(())
}

/// Refusals with ids above `after`, in id order.
pub async fn refusals(
    exec: impl Executor<'_>,
    after: i64,
    limit: u32,
) -> Result<Vec<Refusal>, DbError> {
    const SQL: &str = "SELECT id, reason, event_id, received_at FROM payment_refusals \
         WHERE id > ? ORDER BY id LIMIT ?";
    let found = on_conn!(exec, conn => {
        sqlx::query_as::<_, Refusal>(SQL).bind(after).bind(limit).fetch_all(conn).await?
    });
    Ok(found)
}

/// A row of `gift_outbox` not yet relayed.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OutboxEntry {
    /// Row id: the relay order.
    pub id: i64,
    /// The paid order (one entry per order).
    pub order_id: i64,
    /// The room it goes to.
    pub room_id: i64,
    /// The gift event, JSON.
    pub payload: String,
}

/// Adds the gift event of `order_id` to the outbox, in the payment's transaction.
pub async fn enqueue_gift(
    tx: &mut Tx<'_>,
    order_id: i64,
    room_id: i64,
    payload: &str,
    now_ms: i64,
) -> Result<(), DbError> {
    const SQL: &str = "INSERT INTO gift_outbox (order_id, room_id, payload, created_at) \
         VALUES (?, ?, ?, ?)";
    on_conn!(&mut *tx, conn => {
        sqlx::query(SQL).bind(order_id).bind(room_id).bind(payload).bind(now_ms).execute(conn).await?
            .rows_affected()
    });
    Ok(())
}

/// The oldest `limit` entries not yet relayed.
pub async fn unrelayed(exec: impl Executor<'_>, limit: u32) -> Result<Vec<OutboxEntry>, DbError> {
    const SQL: &str = "SELECT id, order_id, room_id, payload FROM gift_outbox \
         WHERE relayed_at IS NULL ORDER BY id LIMIT ?";
    let found = on_conn!(exec, conn => {
        sqlx::query_as::<_, OutboxEntry>(SQL).bind(limit).fetch_all(conn).await?
    });
    Ok(found)
}

/// How many entries are not yet relayed.
pub async fn unrelayed_count(exec: impl Executor<'_>) -> Result<i64, DbError> {
    let count = on_conn!(exec, conn => {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM gift_outbox WHERE relayed_at IS NULL")
            .fetch_one(conn)
            .await?
    });
    Ok(count)
}

/// Marks entry `id` relayed.
pub async fn mark_relayed(exec: impl Executor<'_>, id: i64, now_ms: i64) -> Result<(), DbError> {
    on_conn!(exec, conn => {
        sqlx::query("UPDATE gift_outbox SET relayed_at = ? WHERE id = ?")
            .bind(now_ms)
            .bind(id)
            .execute(conn)
            .await?
            .rows_affected()
    });
    Ok(())
}
