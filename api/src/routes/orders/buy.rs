//! `POST /api/v1/rooms/{id}/gifts`: a `pending` order, once per `Idempotency-Key`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;

use livegate_core::db::idempotency::{self as stored_answers, Stored};
use livegate_core::db::orders::{self, NewOrder};
use livegate_core::db::{gifts, now_ms};

use super::OrderView;
use crate::auth::{random_hex, Caller};
use crate::error::{parse_json, ApiError, Path, RawBody};
use crate::payments::idempotency;
use crate::routes::rooms::read::{room_id, visible_room};
use crate::state::AppState;

/// The purchase body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Purchase {
    /// A gift on sale.
    #[schema(minimum = 1)]
    gift_id: i64,
}

/// Creates a `pending` order for a gift in a room; 201 with the order and its payment
/// reference. The answer is stored under the `Idempotency-Key` and replayed for it.
pub async fn buy(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
    headers: HeaderMap,
    RawBody(body): RawBody,
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
    let purchase: Purchase = parse_json(body)?;
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
