//! `GET /api/v1/admin/payments/callbacks` (admins): the payment provider's authentic events
//! as the inbox recorded them, newest first.

use axum::extract::State;
use livegate_core::db::payments::{self, InboxEvent};
use serde::{Deserialize, Serialize};

use super::{admin_only, id_cursor, page_of};
use crate::auth::Caller;
use crate::error::{ApiError, Query};
use crate::routes::rooms::view::{page_size, Page};
use crate::state::AppState;

/// The query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbacksQuery {
    cursor: Option<String>,
    limit: Option<u32>,
}

/// One recorded event.
#[derive(Debug, Serialize)]
pub struct CallbackView {
    id: i64,
    provider: String,
    event_id: String,
    /// `payment.succeeded` or `payment.failed`.
    event_type: String,
    order_id: Option<i64>,
    payment_reference: String,
    amount: i64,
    currency: String,
    /// `paid`, `failed`, `refused` or `ignored`.
    outcome: String,
    /// Why, for `refused` and `ignored`.
    reason: Option<String>,
    /// Unix milliseconds.
    received_at: i64,
}

impl From<InboxEvent> for CallbackView {
    fn from(event: InboxEvent) -> Self {
        Self {
            id: event.id,
            provider: event.provider,
            event_id: event.event_id,
            event_type: event.event_type,
            order_id: event.order_id,
            payment_reference: event.payment_ref,
            amount: event.amount,
            currency: event.currency,
            outcome: event.outcome,
            reason: event.reason,
            received_at: event.received_at,
        }
    }
}

/// The recorded callbacks.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<CallbacksQuery>,
) -> Result<axum::Json<Page<CallbackView>>, ApiError> {
    admin_only(&caller)?;
    let limit = page_size(query.limit)?;
    let before = id_cursor(query.cursor.as_deref())?;
    let found = payments::events_newest(state.db(), before, limit + 1).await?;
    Ok(axum::Json(page_of(
        found,
        limit,
        |e| e.id,
        CallbackView::from,
    )))
}
