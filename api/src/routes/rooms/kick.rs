//! `POST /api/v1/rooms/{id}/kick` (owner, admin): drops the live publisher through its
//! origin's control API, without touching the key — a publisher that reconnects with it is
//! let in again (rotate the key to keep it out).

use axum::extract::State;
use axum::response::{IntoResponse as _, Response};
use livegate_core::db::{rooms, streams};
use serde::Serialize;

use super::read::room_id;
use crate::audit::Detail;
use crate::auth::Caller;
use crate::error::{ApiError, Path};
use crate::kick::{self, Kicked};
use crate::state::AppState;

/// The answer.
#[derive(Debug, Serialize)]
pub struct KickAnswer {
    /// Whether the origin dropped the publisher.
    kicked: bool,
    /// `kicked`, `failed` (the origin's API did not), `no_control` (no `[[origins]]` entry
    /// for the stream's origin) or `not_live`.
    outcome: &'static str,
}

/// Kicks the room's publisher.
pub async fn kick(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let room = rooms::get(state.db(), room_id(id)?)
        .await?
        .ok_or_else(|| ApiError::not_found("room"))?;
    if !caller.may_manage(room.owner_id) {
        return Err(ApiError::forbidden(
            "only the room's owner or an admin may kick its publisher",
        ));
    }
    let outcome = match streams::open(state.db(), room.id).await? {
        Some(stream) => kick::kick(state.origins(), state.metrics(), &stream)
            .await
            .as_str(),
        None => "not_live",
    };
    tracing::info!(
        room.id = room.id,
        user.id = caller.user_id,
        outcome,
        "publisher kick asked"
    );
    let mut response = axum::Json(KickAnswer {
        kicked: outcome == Kicked::Kicked.as_str(),
        outcome,
    })
    .into_response();
    response.extensions_mut().insert(Detail::kicked(outcome));
    Ok(response)
}
