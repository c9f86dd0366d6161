//! Moderation over REST: the owner (or an admin) grants and takes back the moderator role;
//! owners, moderators and admins mute, ban, set slow mode, delete a message and clear the
//! room (the socket's `delete` and `clear` frames, through the same [`super::removal`]).
//! Every change reaches the room's open connections on every instance through the room's
//! channel.

use axum::extract::State;
use axum::http::StatusCode;
use livegate_core::db::chat::{self, SanctionKind};
use livegate_core::db::{rooms, users, Room};
use serde::{Deserialize, Serialize};

use super::frame::Broadcast;
use super::removal::{self, Removal};
use crate::auth::{Caller, Role};
use crate::error::{ApiError, Json, Path};
use crate::routes::rooms::read::room_id;
use crate::state::AppState;

/// The longest timed mute or ban, in seconds (30 days); longer ones are until lifted.
const MAX_DURATION_S: u64 = 30 * 24 * 3600;
/// The longest slow mode, in seconds.
const MAX_SLOW_MODE_S: u32 = 3600;

async fn room_of(state: &AppState, id: i64) -> Result<Room, ApiError> {
    rooms::get(state.db(), room_id(id)?)
        .await?
        .ok_or_else(|| ApiError::not_found("room"))
}

/// The room, if `caller` moderates it (owner, moderator or admin).
async fn moderated(state: &AppState, caller: &Caller, id: i64) -> Result<Room, ApiError> {
    let room = room_of(state, id).await?;
    if caller.may_manage(room.owner_id)
        || chat::is_moderator(state.db(), room.id, caller.user_id).await?
    {
        Ok(room)
    } else {
        Err(ApiError::forbidden(
            "only the room's owner, its moderators and admins may do this",
        ))
    }
}

/// The room, if `caller` manages it (owner or admin): who may name its moderators.
async fn managed(state: &AppState, caller: &Caller, id: i64) -> Result<Room, ApiError> {
    let room = room_of(state, id).await?;
    if caller.may_manage(room.owner_id) {
        Ok(room)
    } else {
        Err(ApiError::forbidden(
            "only the room's owner and admins may do this",
        ))
    }
}

async fn target_user(state: &AppState, room: &Room, user_id: i64) -> Result<(), ApiError> {
    let Some(user) = users::get(state.db(), user_id).await? else {
        return Err(ApiError::not_found("user"));
    };
    if user_id == room.owner_id {
        return Err(ApiError::conflict(
            "the room's owner cannot be muted or banned",
        ));
    }
    // A room's moderators are picked by its owner, often among viewers: they answer to the
    // platform's admins, not the other way round.
    if user.role == Role::Admin.as_str() {
        return Err(ApiError::conflict("an admin cannot be muted or banned"));
    }
    Ok(())
}

async fn tell(state: &AppState, room: i64, broadcast: &Broadcast) {
    if let Err(err) = state.chat().rooms().broadcast(room, broadcast).await {
        // Stored: new connections see it; open ones learn it when they reconnect.
        tracing::warn!(room.id = room, error = %err, "moderation not sent to open chat connections");
    }
}

/// `PUT /rooms/{id}/moderators/{user_id}`: owner or admin.
pub async fn add_moderator(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, user_id)): Path<(i64, i64)>,
) -> Result<StatusCode, ApiError> {
    let room = managed(&state, &caller, id).await?;
    if users::get(state.db(), user_id).await?.is_none() {
        return Err(ApiError::not_found("user"));
    }
    chat::add_moderator(state.db(), room.id, user_id, livegate_core::db::now_ms()).await?;
    tracing::info!(
        room.id = room.id,
        user.id = user_id,
        by = caller.user_id,
        "chat moderator added"
    );
    let broadcast = Broadcast::Moderator {
        user: user_id,
        holds: true,
    };
    tell(&state, room.id, &broadcast).await;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /rooms/{id}/moderators/{user_id}`: owner or admin.
pub async fn remove_moderator(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, user_id)): Path<(i64, i64)>,
) -> Result<StatusCode, ApiError> {
    let room = managed(&state, &caller, id).await?;
    if !chat::remove_moderator(state.db(), room.id, user_id).await? {
        return Err(ApiError::not_found("moderator"));
    }
    tracing::info!(
        room.id = room.id,
        user.id = user_id,
        by = caller.user_id,
        "chat moderator removed"
    );
    let broadcast = Broadcast::Moderator {
        user: user_id,
        holds: false,
    };
    tell(&state, room.id, &broadcast).await;
    Ok(StatusCode::NO_CONTENT)
}

/// The body of a mute or ban.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Sanction)]
pub struct SanctionBody {
    /// Who; not the room's owner.
    #[schema(minimum = 1)]
    user_id: i64,
    /// Seconds, at most 30 days; absent: until lifted.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 2_592_000)]
    duration_s: Option<u64>,
}

async fn impose(
    state: &AppState,
    caller: &Caller,
    id: i64,
    body: &SanctionBody,
    kind: SanctionKind,
) -> Result<(Room, Option<i64>), ApiError> {
    let room = moderated(state, caller, id).await?;
    target_user(state, &room, body.user_id).await?;
    if body
        .duration_s
        .is_some_and(|d| d == 0 || d > MAX_DURATION_S)
    {
        return Err(ApiError::invalid(
            "duration_s",
            "must be between 1 and 2592000 (30 days), or absent for until lifted",
        ));
    }
    let now = livegate_core::db::now_ms();
    let until = body
        .duration_s
        .map(|d| now.saturating_add(i64::try_from(d * 1000).unwrap_or(i64::MAX)));
    chat::sanction(
        state.db(),
        room.id,
        body.user_id,
        kind,
        until,
        caller.user_id,
        now,
    )
    .await?;
    tracing::info!(
        room.id = room.id,
        user.id = body.user_id,
        by = caller.user_id,
        kind = kind.as_str(),
        "chat sanction"
    );
    Ok((room, until))
}

/// `POST /rooms/{id}/mutes`: the user may read, not send.
pub async fn mute(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
    Json(body): Json<SanctionBody>,
) -> Result<StatusCode, ApiError> {
    let (room, until) = impose(&state, &caller, id, &body, SanctionKind::Mute).await?;
    let broadcast = Broadcast::Muted {
        user: body.user_id,
        until_ms: until.unwrap_or(i64::MAX),
    };
    tell(&state, room.id, &broadcast).await;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /rooms/{id}/bans`: the user's connections close and new ones are refused.
pub async fn ban(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
    Json(body): Json<SanctionBody>,
) -> Result<StatusCode, ApiError> {
    let (room, _) = impose(&state, &caller, id, &body, SanctionKind::Ban).await?;
    tell(&state, room.id, &Broadcast::Banned { user: body.user_id }).await;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /rooms/{id}/mutes/{user_id}`.
pub async fn unmute(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, user_id)): Path<(i64, i64)>,
) -> Result<StatusCode, ApiError> {
    let room = moderated(&state, &caller, id).await?;
    if !chat::lift(state.db(), room.id, user_id, SanctionKind::Mute).await? {
        return Err(ApiError::not_found("mute"));
    }
    let broadcast = Broadcast::Muted {
        user: user_id,
        until_ms: 0,
    };
    tell(&state, room.id, &broadcast).await;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /rooms/{id}/bans/{user_id}`.
pub async fn unban(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, user_id)): Path<(i64, i64)>,
) -> Result<StatusCode, ApiError> {
    let room = moderated(&state, &caller, id).await?;
    if !chat::lift(state.db(), room.id, user_id, SanctionKind::Ban).await? {
        return Err(ApiError::not_found("ban"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The body of `PUT /rooms/{id}/chat/slow-mode`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SlowMode)]
pub struct SlowModeBody {
    /// One message per this many seconds per user; 0: off.
    #[schema(minimum = 0, maximum = 3600)]
    seconds: u32,
}

/// `PUT /rooms/{id}/chat/slow-mode`: one message per `seconds` per user (0: off).
pub async fn slow_mode(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
    Json(body): Json<SlowModeBody>,
) -> Result<StatusCode, ApiError> {
    let room = moderated(&state, &caller, id).await?;
    if body.seconds > MAX_SLOW_MODE_S {
        return Err(ApiError::invalid("seconds", "must be between 0 and 3600"));
    }
    chat::set_slow_mode(state.db(), room.id, body.seconds).await?;
    let broadcast = Broadcast::SlowMode {
        seconds: body.seconds,
    };
    tell(&state, room.id, &broadcast).await;
    Ok(StatusCode::NO_CONTENT)
}

/// The answer to a delete or a clear: where the removal went in the room's log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ChatRemoval)]
pub struct Removed {
    /// Its offset.
    offset: u64,
    /// Its epoch.
    epoch: String,
    /// The server's id of it.
    id: String,
}

async fn remove_as(
    state: &AppState,
    caller: &Caller,
    id: i64,
    what: Removal,
) -> Result<axum::Json<Removed>, ApiError> {
    let room = moderated(state, caller, id).await?;
    let sender = removal::sender_of(state, &room, caller).await?;
    let (position, message_id) = removal::remove(state, room.id, Some(sender), what).await?;
    tracing::info!(
        room.id = room.id,
        by = caller.user_id,
        offset = position.offset,
        "chat removal"
    );
    Ok(axum::Json(Removed {
        offset: position.offset,
        epoch: position.epoch,
        id: message_id,
    }))
}

/// The path of a message, by name: a bad part is named in the refusal.
#[derive(Debug, Deserialize)]
pub struct MessagePath {
    id: i64,
    offset: u64,
}

/// `POST /rooms/{id}/chat/messages/{offset}/delete`: the `delete` frame over REST.
pub async fn delete_message(
    State(state): State<AppState>,
    caller: Caller,
    Path(MessagePath { id, offset }): Path<MessagePath>,
) -> Result<axum::Json<Removed>, ApiError> {
    // Offsets are int64 in the API's document, as every path id is.
    if offset == 0 || i64::try_from(offset).is_err() {
        return Err(ApiError::invalid(
            "offset",
            "must be a message offset (1 to 2^63 - 1)",
        ));
    }
    remove_as(&state, &caller, id, Removal::Delete(offset)).await
}

/// `POST /rooms/{id}/chat/clear`: the `clear` frame over REST.
pub async fn clear(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<axum::Json<Removed>, ApiError> {
    remove_as(&state, &caller, id, Removal::Clear).await
}
