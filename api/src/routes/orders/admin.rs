//! Reconciliation, for admins: `GET /api/v1/admin/orders` and
//! `POST /api/v1/admin/orders/{id}/expire`.

use axum::extract::State;
use serde::Deserialize;

use livegate_core::db::{now_ms, orders};

use super::{cursor, page, page_size, OrderPage, OrderView};
use crate::auth::{Caller, Role};
use crate::error::{ApiError, Path, Query};
use crate::state::AppState;

/// The reconciliation query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminQuery {
    /// Also spelled `state`.
    #[serde(alias = "state")]
    status: Option<String>,
    /// Seconds: only orders created at least this long ago (also spelled `older_than_s`).
    #[serde(alias = "older_than_s")]
    older_than: Option<u64>,
    cursor: Option<String>,
    limit: Option<u32>,
}

const STATUSES: [&str; 4] = ["pending", "paid", "failed", "expired"];

fn admin(caller: &Caller) -> Result<(), ApiError> {
    if caller.role == Role::Admin {
        Ok(())
    } else {
        Err(ApiError::forbidden("only admins see every order"))
    }
}

/// Orders in a status (default `pending`) created more than `older_than` seconds ago
/// (default 0), oldest first.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<AdminQuery>,
) -> Result<axum::Json<OrderPage>, ApiError> {
    admin(&caller)?;
    let status = query.status.as_deref().unwrap_or("pending");
    if !STATUSES.contains(&status) {
        return Err(ApiError::invalid(
            "status",
            "must be pending, paid, failed or expired",
        ));
    }
    let older_than = query.older_than.unwrap_or(0);
    if older_than > 10 * 365 * 86_400 {
        return Err(ApiError::invalid(
            "older_than",
            "must be at most ten years, in seconds",
        ));
    }
    let limit = page_size(query.limit)?;
    let after = cursor(query.cursor.as_deref())?;
    let before_ms = now_ms().saturating_sub(i64::try_from(older_than * 1000).unwrap_or(i64::MAX));
    let found = orders::by_status(state.db(), status, before_ms, after, limit + 1).await?;
    Ok(axum::Json(page(found, limit)))
}

/// Gives up on a `pending` order: it becomes `expired`, and a late payment callback for it is
/// ignored (and recorded). 409 when it is not pending.
pub async fn expire(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<axum::Json<OrderView>, ApiError> {
    admin(&caller)?;
    if id <= 0 {
        return Err(ApiError::invalid("id", "must be a positive integer id"));
    }
    let mut tx = state.db().begin().await?;
    let order = orders::lock(&mut tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found("order"))?;
    if order.status != "pending" {
        return Err(ApiError::conflict(format!(
            "the order is {}, only a pending order expires",
            order.status
        )));
    }
    orders::transition(&mut tx, id, "pending", "expired", now_ms()).await?;
    let order = orders::get(&mut tx, id)
        .await?
        .ok_or_else(ApiError::internal)?;
    tx.commit().await?;
    tracing::info!(order.id = id, user.id = caller.user_id, "order expired");
    Ok(axum::Json(OrderView::from(&order)))
}
