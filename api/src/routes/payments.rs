//! `POST /api/v1/payments/callback` (the provider's signed webhook) and
//! `GET /api/v1/rooms/{id}/leaderboard`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use livegate_core::db::{now_ms, payments};

use crate::auth::MaybeCaller;
use crate::error::{ApiError, Path, Query};
use crate::metrics::CallbackLabels;
use crate::payments::callback::{self, ApplyError, Event, Outcome};
use crate::payments::{leaderboard, signature};
use crate::routes::rooms::read::{room_id, visible_room};
use crate::state::AppState;
use crate::validate;

/// The answer to an accepted callback.
#[derive(Debug, Serialize)]
struct Accepted {
    /// `paid`, `failed`, `ignored` or `duplicate`.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

/// The event id a body claims, to record with a refusal (untrusted, so never used as the
/// inbox key).
fn claimed_event_id(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Claim {
        id: String,
    }
    let claim: Claim = serde_json::from_slice(body).ok()?;
    livegate_core::db::columns::check_text(&claim.id, 255).ok()?;
    Some(claim.id)
}

async fn refuse(state: &AppState, reason: &'static str, body: &[u8]) -> Result<(), ApiError> {
    let claimed = claimed_event_id(body);
    payments::record_refusal(state.db(), reason, claimed.as_deref(), now_ms()).await?;
    state
        .metrics()
        .callbacks
        .get_or_create(&CallbackLabels {
            outcome: "rejected",
        })
        .inc();
    tracing::warn!(reason, "payment callback refused");
    Ok(())
}

/// Applies a provider event once. 200 for an event applied, ignored or seen before; 400 for
/// a callback that cannot be trusted (signature, format: recorded in the refusals); 422 for
/// an authentic event that contradicts its order (recorded in the inbox); 5xx (nothing
/// applied) asks the provider to deliver it again.
pub async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let config = &state.config().payments;
    let header = headers
        .get(signature::HEADER)
        .map(|value| value.to_str().unwrap_or(""));
    if let Err(err) = signature::verify(
        header,
        &body,
        &config.callback_secrets,
        config.signature_tolerance_s,
        crate::unix_now(),
    ) {
        refuse(&state, err.reason(), &body).await?;
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_signature",
            err.to_string(),
        )
        .field("Livegate-Signature"));
    }
    let event: Event = match serde_json::from_slice(&body) {
        Ok(event) => event,
        Err(err) => {
            refuse(&state, "malformed_event", &body).await?;
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                err.to_string(),
            ));
        }
    };
    if let Err(reason) = callback::check(&event) {
        refuse(&state, reason, &body).await?;
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "a field of the event is empty or too long",
        ));
    }
    let outcome = match callback::apply(state.db(), &config.provider, &event, now_ms()).await {
        Ok(outcome) => outcome,
        Err(ApplyError::Db(err)) => return Err(err.into()),
        Err(ApplyError::Encode(err)) => {
            tracing::error!(error = %err, "gift event encoding failed");
            return Err(ApiError::internal());
        }
    };
    state
        .metrics()
        .callbacks
        .get_or_create(&CallbackLabels {
            outcome: outcome.label(),
        })
        .inc();
    tracing::info!(
        event.kind = %event.kind,
        outcome = outcome.label(),
        "payment callback applied"
    );
    let accepted = match outcome {
        Outcome::Paid { .. } => {
            state.relay_wake().wake();
            Accepted {
                status: "paid",
                reason: None,
            }
        }
        Outcome::Failed { .. } => Accepted {
            status: "failed",
            reason: None,
        },
        Outcome::Ignored(reason) => Accepted {
            status: "ignored",
            reason: Some(reason),
        },
        Outcome::Duplicate => Accepted {
            status: "duplicate",
            reason: None,
        },
        Outcome::Refused(reason) => {
            let field = match reason {
                "amount_mismatch" => "data.amount",
                "currency_mismatch" => "data.currency",
                "unknown_order" => "data.reference",
                _ => "type",
            };
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                reason,
                "the event contradicts its order; it is recorded and not applied",
            )
            .field(field));
        }
    };
    Ok((StatusCode::OK, axum::Json(accepted)).into_response())
}

/// The leaderboard query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardQuery {
    currency: Option<String>,
    limit: Option<u32>,
}

/// One giver.
#[derive(Debug, Serialize)]
struct Giver {
    user_id: i64,
    username: String,
    /// In the smallest unit of the currency.
    total: i64,
}

/// The leaderboard.
#[derive(Debug, Serialize)]
pub struct Board {
    room_id: i64,
    currency: String,
    items: Vec<Giver>,
}

/// The room's top givers in a currency (default `payments.default_currency`).
pub async fn board(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    Path(id): Path<i64>,
    Query(query): Query<BoardQuery>,
) -> Result<axum::Json<Board>, ApiError> {
    let room = visible_room(&state, room_id(id)?, caller.as_ref()).await?;
    let currency = query
        .currency
        .unwrap_or_else(|| state.config().payments.default_currency.clone());
    validate::currency(&currency).map_err(|m| ApiError::invalid("currency", m))?;
    let limit = match query.limit.unwrap_or(10) {
        limit @ 1..=100 => limit as usize,
        _ => return Err(ApiError::invalid("limit", "must be between 1 and 100")),
    };
    let top = leaderboard::top(&state, room.id, &currency, limit).await?;
    Ok(axum::Json(Board {
        room_id: room.id,
        currency,
        items: top
            .into_iter()
            .map(|(user_id, username, total)| Giver {
                user_id,
                username,
                total,
            })
            .collect(),
    }))
}
