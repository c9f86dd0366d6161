//! `GET /api/v1/rooms/{id}/messages?before=…&limit=…`: older chat history from the database,
//! newest first, for what the bus log no longer holds.

use axum::extract::State;
use livegate_core::db::messages;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::MaybeCaller;
use crate::error::{ApiError, Path, Query};
use crate::routes::rooms::read::{room_id, visible_room};
use crate::state::AppState;

/// The query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Messages older than this id (the `next_before` of the previous page).
    #[param(minimum = 1)]
    before: Option<i64>,
    /// Messages per page (50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
}

/// One stored message.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ChatMessage)]
pub struct StoredMessage {
    id: i64,
    /// `chat` or `gift`.
    #[serde(rename = "type")]
    kind: String,
    /// The sender.
    user_id: i64,
    text: String,
    /// Unix milliseconds.
    at: i64,
}

/// A page of history, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ChatHistory)]
pub struct Page {
    messages: Vec<StoredMessage>,
    /// `before` for the next (older) page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_before: Option<i64>,
}

/// The handler.
pub async fn list(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    Path(id): Path<i64>,
    Query(query): Query<HistoryQuery>,
) -> Result<axum::Json<Page>, ApiError> {
    let id = room_id(id)?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 200"));
    }
    if query.before.is_some_and(|before| before < 1) {
        return Err(ApiError::invalid("before", "must be a message id"));
    }
    let room = visible_room(&state, id, caller.as_ref()).await?;
    let rows = messages::before(state.db(), room.id, query.before, limit).await?;
    let full = rows.len() == usize::try_from(limit).unwrap_or(usize::MAX);
    let next_before = rows.last().filter(|_| full).map(|row| row.id);
    Ok(axum::Json(Page {
        messages: rows
            .into_iter()
            .map(|row| StoredMessage {
                id: row.id,
                kind: row.kind,
                user_id: row.user_id,
                text: row.content,
                at: row.created_at,
            })
            .collect(),
        next_before,
    }))
}
