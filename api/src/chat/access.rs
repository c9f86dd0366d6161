//! Who opens a chat connection, decided at the upgrade: a user's access token may read and
//! send, a play token for the room may only read, anything else is refused.

use std::time::Duration;

use livegate_core::db::{chat, rooms, users, Room};

use super::frame::Sender;
use crate::auth::Role;
use crate::error::ApiError;
use crate::state::AppState;
use crate::unix_now;

/// What a connection may do, and until when.
#[derive(Debug, Clone)]
pub struct Access {
    /// The logged-in user (none for a play token), with the role they have outside the
    /// room's moderator list: `owner` in their own room, else their account's role. The
    /// moderator role is the member's (it may change while connected).
    pub sender: Option<Sender>,
    /// Whether it may send.
    pub can_send: bool,
    /// The room's owner or an admin: exempt from rate limits, may moderate, whatever the
    /// moderator list says.
    pub manages: bool,
    /// The unix second after which the token is no longer valid.
    pub expires_at: u64,
    /// Unix milliseconds until which the user may not send (0: not muted).
    pub muted_until: u64,
}

impl Access {
    /// The user id, when logged in.
    pub fn user_id(&self) -> Option<i64> {
        self.sender.as_ref().map(|sender| sender.id)
    }
}

/// The room named by `room`, enabled; 404 or 403 otherwise.
pub async fn open_room(state: &AppState, room: Option<&str>) -> Result<Room, ApiError> {
    let id = room
        .and_then(livegate_core::token::parse_room_id)
        .and_then(|id| i64::try_from(id).ok())
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::invalid("room", "must be a room id"))?;
    let room = rooms::get(state.db(), id)
        .await?
        .ok_or_else(|| ApiError::not_found("room"))?;
    if room.disabled {
        return Err(ApiError::forbidden("the room is disabled"));
    }
    Ok(room)
}

/// Checks `token` for `room`: a JWT (three dot-separated parts) as a user's access token,
/// anything else as a play token v1.
pub async fn check(state: &AppState, token: Option<&str>, room: &Room) -> Result<Access, ApiError> {
    let token = token.filter(|token| !token.is_empty()).ok_or_else(|| {
        ApiError::unauthorized("invalid_request", "chat needs a token (?token=…)")
    })?;
    if token.split('.').count() == 3 {
        let claims = state
            .jwt()
            .verify(token)
            .map_err(|err| ApiError::unauthorized("invalid_token", err.to_string()))?;
        let user_id = claims.sub.parse::<i64>().map_err(|_| {
            ApiError::unauthorized("invalid_token", "the access token is malformed")
        })?;
        let user = users::get(state.db(), user_id)
            .await?
            .ok_or_else(|| ApiError::unauthorized("invalid_token", "the user no longer exists"))?;
        let now = livegate_core::db::now_ms();
        let standing = chat::standing(state.db(), room.id, user_id, now).await?;
        if standing.banned {
            return Err(ApiError::forbidden("you are banned from this room's chat"));
        }
        let owner = room.owner_id == user_id;
        let role = if owner { "owner" } else { claims.role.as_str() };
        return Ok(Access {
            sender: Some(Sender {
                id: user_id,
                name: user.username,
                role: role.to_owned(),
            }),
            can_send: true,
            manages: owner || claims.role == Role::Admin,
            expires_at: claims.exp,
            muted_until: standing
                .muted_until
                .map_or(0, |until| u64::try_from(until).unwrap_or(0)),
        });
    }
    let room_id = u64::try_from(room.id).map_err(|_| ApiError::internal())?;
    let grant = state
        .play_keys()
        .verify(token, unix_now(), Duration::ZERO)
        .map_err(|rejection| {
            ApiError::unauthorized(
                "invalid_token",
                format!("the play token is not valid ({})", rejection.as_str()),
            )
        })?;
    if grant.room_id != room_id {
        return Err(ApiError::forbidden("the play token is for another room"));
    }
    Ok(Access {
        sender: None,
        can_send: false,
        manages: false,
        expires_at: grant.expires_at,
        muted_until: 0,
    })
}
