//! `POST /api/v1/payments/callback` (the provider's signed webhook) and
//! `GET /api/v1/rooms/{id}/leaderboard`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use livegate_core::db::{now_ms, payments};

use crate::auth::MaybeCaller;
use crate::error::{parse_json, ApiError, Path, Query, RawBody};
use crate::metrics::CallbackLabels;
use crate::payments::callback::{self, ApplyError, Event, Outcome};
use crate::payments::{leaderboard, signature};
use crate::routes::rooms::read::{room_id, visible_room};
use crate::state::AppState;
use crate::validate;

/// The answer to an accepted callback.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CallbackAccepted)]
pub struct Accepted {
    status: Applied,
    /// Why an `ignored` event was: `order_paid`, `order_failed` or `order_expired`.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

/// What became of an accepted event.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Applied {
    /// The order is paid.
    Paid,
    /// The order failed.
    Failed,
    /// The order is no longer pending: recorded, nothing changed.
    Ignored,
    /// Seen before: nothing done.
    Duplicate,
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
    RawBody(body): RawBody,
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
    let event: Event = match parse_json(&body) {
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
                status: Applied::Paid,
                reason: None,
            }
        }
        Outcome::Failed { .. } => Accepted {
            status: Applied::Failed,
            reason: None,
        },
        Outcome::Ignored(reason) => Accepted {
            status: Applied::Ignored,
            reason: Some(reason),
        },
        Outcome::Duplicate => Accepted {
            status: Applied::Duplicate,
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
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BoardQuery {
    /// ISO 4217 (`payments.default_currency`).
    #[param(pattern = "^[A-Z]{3}$")]
    currency: Option<String>,
    /// Givers listed (10).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

/// One giver.
#[derive(Debug, Serialize, ToSchema)]
pub struct Giver {
    user_id: i64,
    username: String,
    /// In the smallest unit of the currency.
    total: i64,
}

/// The leaderboard: the top givers, most first.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Leaderboard)]
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
