//! `POST /api/v1/admin/orders/{id}/reconcile` (admins): the order with everything known about
//! its payment — the provider's events the inbox recorded for it, whether its gift reached
//! the room — and what that means. A paid order whose gift is not relayed yet wakes the
//! relay. The order's status changes only through the provider's callbacks and
//! `…/expire`.

use axum::extract::State;
use livegate_core::db::orders::{self, Order};
use livegate_core::db::payments::{self, InboxEvent};
use serde::Serialize;

use super::OrderView;
use crate::auth::{Caller, Role};
use crate::error::{ApiError, Path};
use crate::routes::admin::callbacks::CallbackView;
use crate::state::AppState;

/// The answer: the order's fields, and what is known about it.
#[derive(Debug, Serialize)]
pub struct Reconciled {
    #[serde(flatten)]
    order: OrderView,
    /// The provider's events about it, oldest first.
    callbacks: Vec<CallbackView>,
    /// Whether its gift event reached the bus (`null`: it has none, not being paid).
    gift_relayed: Option<bool>,
    /// `paid`, `paid_relay_pending` (the relay was woken), `awaiting_provider` (no event yet:
    /// ask the provider, then wait or expire it), `events_refused` (the provider's events
    /// contradicted the order: see `callbacks`), `failed` or `expired`.
    finding: &'static str,
}

fn finding(order: &Order, events: &[InboxEvent], relayed: Option<bool>) -> &'static str {
    match order.status.as_str() {
        "paid" if relayed == Some(false) => "paid_relay_pending",
        "paid" => "paid",
        "failed" => "failed",
        "expired" => "expired",
        _ if events.iter().any(|event| event.outcome == "refused") => "events_refused",
        _ => "awaiting_provider",
    }
}

/// Reconciles one order.
pub async fn reconcile(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<axum::Json<Reconciled>, ApiError> {
    if caller.role != Role::Admin {
        return Err(ApiError::forbidden("only admins reconcile orders"));
    }
    if id <= 0 {
        return Err(ApiError::invalid("id", "must be a positive integer id"));
    }
    let order = orders::get(state.db(), id)
        .await?
        .ok_or_else(|| ApiError::not_found("order"))?;
    let events =
        payments::events_of_order(state.db(), order.id, order.payment_ref.as_deref()).await?;
    let relayed = payments::gift_relayed(state.db(), order.id).await?;
    let finding = finding(&order, &events, relayed);
    if finding == "paid_relay_pending" {
        state.relay_wake().wake();
    }
    tracing::info!(
        order.id = id,
        user.id = caller.user_id,
        finding,
        "order reconciled"
    );
    Ok(axum::Json(Reconciled {
        order: OrderView::from(&order),
        callbacks: events.into_iter().map(CallbackView::from).collect(),
        gift_relayed: relayed,
        finding,
    }))
}
