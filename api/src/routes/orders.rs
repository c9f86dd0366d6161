//! Orders: `POST /api/v1/rooms/{id}/gifts` (buy a gift, with an `Idempotency-Key`),
//! `GET /api/v1/users/me/orders`, and for admins `GET /api/v1/admin/orders` (reconciliation)
//! and `POST /api/v1/admin/orders/{id}/expire`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use livegate_core::db::idempotency::{self as stored_answers, Stored};
use livegate_core::db::orders::{self, NewOrder, Order};
use livegate_core::db::{gifts, now_ms};

use crate::auth::{random_hex, Caller, Role};
use crate::error::{ApiError, Path, Query};
use crate::payments::idempotency;
use crate::routes::rooms::read::{room_id, visible_room};
use crate::state::AppState;

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

/// The purchase body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Purchase {
    gift_id: i64,
}

/// Creates a `pending` order for a gift in a room; 201 with the order and its payment
/// reference. The answer is stored under the `Idempotency-Key` and replayed for it.
pub async fn buy(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = idempotency::key(&headers)?;
    let now = now_ms();
    let hash = idempotency::request_hash(&format!("POST /rooms/{id}/gifts"), &body);
    if let Some(stored) = idempotency::lookup(&state, caller.user_id, &key, now).await? {
        return idempotency::replay(&stored, &hash);
    }
    // An expired answer frees its key.
    stored_answers::delete_expired_key(
        state.db(),
        caller.user_id,
        &key,
        idempotency::not_before(&state, now),
    )
    .await?;
    let checked = check_purchase(&state, &caller, id, &body).await;
    let mut tx = state.db().begin().await?;
    let (status, answer) = match checked {
        Ok(new) => {
            let order_id = orders::create(&mut tx, &new.as_new(caller.user_id), now).await?;
            let order = orders::get(&mut tx, order_id)
                .await?
                .ok_or_else(ApiError::internal)?;
            let answer = serde_json::to_string(&OrderView::from(&order))
                .map_err(|_| ApiError::internal())?;
            (StatusCode::CREATED, answer)
        }
        // A refusal is an answer too: the same request gets it again. Failures of ours
        // (5xx) are not stored, so a retry may succeed.
        Err(err) if err.status().is_client_error() => {
            let response = err.into_response();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024)
                .await
                .map_err(|_| ApiError::internal())?;
            (status, String::from_utf8_lossy(&bytes).into_owned())
        }
        Err(err) => return Err(err),
    };
    let stored = Stored {
        request_hash: hash.clone(),
        status: i32::from(status.as_u16()),
        body: answer,
        created_at: now,
    };
    match stored_answers::insert(&mut tx, caller.user_id, &key, &stored).await {
        Ok(()) => {}
        Err(err) if stored_answers::is_duplicate(&err) => {
            // A concurrent request with the same key stored its answer first: this one's
            // order is rolled back, and that answer is the one.
            drop(tx);
            let stored = idempotency::lookup(&state, caller.user_id, &key, now)
                .await?
                .ok_or_else(ApiError::unavailable)?;
            return idempotency::replay(&stored, &hash);
        }
        Err(err) => return Err(err.into()),
    }
    tx.commit().await?;
    if status == StatusCode::CREATED {
        tracing::info!(user.id = caller.user_id, room.id = id, "order created");
    }
    let mut response = (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        stored.body,
    )
        .into_response();
    response.headers_mut().remove(idempotency::REPLAYED);
    Ok(response)
}

/// A purchase that passed its checks.
struct Checked {
    room_id: i64,
    gift_id: i64,
    amount: i64,
    currency: String,
    payment_ref: String,
}

impl Checked {
    fn as_new(&self, user_id: i64) -> NewOrder<'_> {
        NewOrder {
            user_id,
            room_id: self.room_id,
            gift_id: self.gift_id,
            amount: self.amount,
            currency: &self.currency,
            status: "pending",
            payment_ref: Some(&self.payment_ref),
        }
    }
}

async fn check_purchase(
    state: &AppState,
    caller: &Caller,
    id: i64,
    body: &Bytes,
) -> Result<Checked, ApiError> {
    let purchase: Purchase = serde_json::from_slice(body).map_err(|err| {
        let error = ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", err.to_string());
        if err.is_data() {
            error.field("gift_id")
        } else {
            error
        }
    })?;
    let room = visible_room(state, room_id(id)?, Some(caller)).await?;
    if room.disabled {
        return Err(ApiError::conflict("the room is disabled"));
    }
    if purchase.gift_id <= 0 {
        return Err(ApiError::invalid(
            "gift_id",
            "must be a positive integer id",
        ));
    }
    let gift = gifts::get(state.db(), purchase.gift_id)
        .await?
        .ok_or_else(|| ApiError::not_found("gift").field("gift_id"))?;
    if !gift.active {
        return Err(ApiError::conflict("this gift is not on sale").field("gift_id"));
    }
    Ok(Checked {
        room_id: room.id,
        gift_id: gift.id,
        amount: gift.price,
        currency: gift.currency,
        payment_ref: format!("pay_{}", random_hex(16)),
    })
}

/// A listing's query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MineQuery {
    cursor: Option<String>,
    limit: Option<u32>,
}

fn page_size(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit.unwrap_or(50) {
        limit @ 1..=200 => Ok(limit),
        _ => Err(ApiError::invalid("limit", "must be between 1 and 200")),
    }
}

fn cursor(cursor: Option<&str>) -> Result<Option<i64>, ApiError> {
    cursor
        .map(|c| {
            c.parse::<i64>()
                .ok()
                .filter(|id| *id >= 0)
                .ok_or_else(|| ApiError::invalid("cursor", "is not a cursor this API handed out"))
        })
        .transpose()
}

fn page(mut found: Vec<Order>, limit: u32) -> OrderPage {
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

/// The reconciliation query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminQuery {
    status: Option<String>,
    /// Seconds: only orders created at least this long ago.
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
