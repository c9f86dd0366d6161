//! Removing messages: a moderator deletes one message or clears the room, over the
//! WebSocket (`delete` and `clear` frames) or over REST (`POST
//! /rooms/{id}/chat/messages/{offset}/delete`, `POST /rooms/{id}/chat/clear`), through this
//! one path: a `delete` or `clear` message appended to the room's log (every client drops
//! what it names), and for a clear, the stored history emptied.

use livegate_core::bus::{BusError, Position};
use livegate_core::db::{chat, users, Room};

use super::frame::{Kind, Message, Sender};
use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::state::AppState;

/// What to remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// The message at this offset.
    Delete(u64),
    /// Everything before the clear.
    Clear,
}

/// Appends the removal to `room`'s log as `by`; returns where it went and its id.
pub async fn remove(
    state: &AppState,
    room: i64,
    by: Option<Sender>,
    removal: Removal,
) -> Result<(Position, String), BusError> {
    let (kind, target) = match removal {
        Removal::Delete(offset) => (Kind::Delete, Some(offset)),
        Removal::Clear => (Kind::Clear, None),
    };
    let message = Message {
        kind,
        id: crate::auth::random_token(12),
        room,
        user: by,
        text: None,
        target,
        at: livegate_core::db::now_ms(),
    };
    let id = message.id.clone();
    let position = match state.chat().rooms().send(message).await {
        Ok(position) => position,
        Err(err) => {
            tracing::warn!(room.id = room, error = %err, "chat removal not appended");
            return Err(err);
        }
    };
    state.chat().metrics().messages.inc();
    if removal == Removal::Clear {
        state.chat().store().clear(room).await;
    }
    Ok((position, id))
}

/// `caller` as the sender of a removal in `room` over REST, named as chat names them
/// (`owner`, `moderator`, or their account's role).
pub async fn sender_of(state: &AppState, room: &Room, caller: &Caller) -> Result<Sender, ApiError> {
    let user = users::get(state.db(), caller.user_id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("invalid_token", "the user no longer exists"))?;
    let role = if room.owner_id == caller.user_id {
        "owner"
    } else if caller.role != Role::Admin
        && chat::is_moderator(state.db(), room.id, caller.user_id).await?
    {
        "moderator"
    } else {
        caller.role.as_str()
    };
    Ok(Sender {
        id: user.id,
        name: user.username,
        role: role.to_owned(),
    })
}
