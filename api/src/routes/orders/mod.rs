//! Orders: `POST /api/v1/rooms/{id}/gifts` (buy a gift, with an `Idempotency-Key`),
//! `GET /api/v1/users/me/orders`, and for admins `GET /api/v1/admin/orders` (reconciliation),
//! `POST /api/v1/admin/orders/{id}/expire` and `POST /api/v1/admin/orders/{id}/reconcile`.

mod admin;
mod buy;
mod reconcile;

use axum::extract::State;
use serde::{Deserialize, Serialize};

use livegate_core::db::orders::{self, Order};

use crate::auth::Caller;
use crate::error::{ApiError, Query};
use crate::state::AppState;

pub use admin::{expire, list};
pub use buy::buy;
pub use reconcile::reconcile;

/// An order as the API shows it.
#[derive(Debug, Serialize)]
pub struct OrderView {
    id: i64,
    user_id: i64,
    room_id: i64,
    gift_id: i64,
    /// In the smallest unit of `currency`.
    amount: i64,
    currency: String,
    /// `pending`, `paid`, `failed` or `expired`.
    status: String,
    /// What the payment provider is told, and echoes in its callbacks.
    payment_reference: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl From<&Order> for OrderView {
    fn from(order: &Order) -> Self {
        Self {
            id: order.id,
            user_id: order.user_id,
            room_id: order.room_id,
            gift_id: order.gift_id,
            amount: order.amount,
            currency: order.currency.clone(),
            status: order.status.clone(),
            payment_reference: order.payment_ref.clone(),
            created_at: order.created_at,
            updated_at: order.updated_at,
        }
    }
}

/// A page of orders.
#[derive(Debug, Serialize)]
pub struct OrderPage {
    items: Vec<OrderView>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// A listing's query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MineQuery {
    cursor: Option<String>,
    limit: Option<u32>,
}

pub(crate) fn page_size(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit.unwrap_or(50) {
        limit @ 1..=200 => Ok(limit),
        _ => Err(ApiError::invalid("limit", "must be between 1 and 200")),
    }
}

pub(crate) fn cursor(cursor: Option<&str>) -> Result<Option<i64>, ApiError> {
    cursor
        .map(|c| {
            c.parse::<i64>()
                .ok()
                .filter(|id| *id >= 0)
                .ok_or_else(|| ApiError::invalid("cursor", "is not a cursor this API handed out"))
        })
        .transpose()
}

pub(crate) fn page(mut found: Vec<Order>, limit: u32) -> OrderPage {
    let more = found.len() > limit as usize;
    found.truncate(limit as usize);
    OrderPage {
        next_cursor: more
            .then(|| found.last().map(|o| o.id.to_string()))
            .flatten(),
        items: found.iter().map(OrderView::from).collect(),
    }
}

/// The caller's orders, newest first.
pub async fn mine(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<MineQuery>,
) -> Result<axum::Json<OrderPage>, ApiError> {
    let limit = page_size(query.limit)?;
    let before = cursor(query.cursor.as_deref())?;
    let found = orders::of_user(state.db(), caller.user_id, before, limit + 1).await?;
    Ok(axum::Json(page(found, limit)))
}
