//! Who is in a room: per-user presence on the bus (several tabs, on any instances, count
//! once), refreshed by every instance with sockets for the user and expiring after
//! `chat.presence_ttl_ms` without one. Join and leave frames are coalesced: a reconnect
//! within the expiry is neither, and a leave is reported only when the presence expires.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use livegate_core::bus::Bus;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::config::ChatConfig;
use super::frame::{Broadcast, PresentUser};
use super::rooms::Rooms;
use crate::auth::MaybeCaller;
use crate::error::{ApiError, Path};
use crate::routes::rooms::read::{room_id, visible_room};
use crate::state::AppState;

/// Most users `GET /rooms/{id}/presence` lists.
const MAX_LISTED: usize = 100;

/// The bus presence key of `room`'s chat.
pub(crate) fn key(room: i64) -> String {
    format!("chat:{room}")
}

fn users(members: &[String]) -> Vec<PresentUser> {
    members
        .iter()
        .filter_map(|member| PresentUser::from_member(member))
        .collect()
}

/// Marks `user` present in `room` as their connection opens; a user who was not present
/// yet is announced.
pub async fn arrive(state: &AppState, room: i64, user: &PresentUser) {
    let config = &state.config().chat;
    let ttl = Duration::from_millis(config.presence_ttl_ms);
    let bus = state.bus();
    match bus
        .presence_touch(&key(room), &[user.to_member()], ttl)
        .await
    {
        Ok(fresh) if !fresh.is_empty() => {
            announce(
                config,
                bus,
                state.chat().rooms(),
                room,
                users(&fresh),
                Vec::new(),
            )
            .await;
        }
        Ok(_) => {}
        Err(err) => tracing::warn!(room.id = room, error = %err, "chat presence not recorded"),
    }
}

async fn announce(
    config: &ChatConfig,
    bus: &Bus,
    rooms: &Rooms,
    room: i64,
    joined: Vec<PresentUser>,
    left: Vec<PresentUser>,
) {
    if config.presence_events_max == 0 || (joined.is_empty() && left.is_empty()) {
        return;
    }
    let count = match bus.presence(&key(room), 0).await {
        Ok((count, _)) => count,
        Err(err) => {
            tracing::warn!(room.id = room, error = %err, "chat presence not counted");
            return;
        }
    };
    if count > config.presence_events_max {
        return;
    }
    let broadcast = Broadcast::Presence {
        joined,
        left,
        count,
    };
    if let Err(err) = rooms.broadcast(room, &broadcast).await {
        tracing::warn!(room.id = room, error = %err, "chat presence not announced");
    }
}

/// Every `chat.presence_refresh_ms` until `stop`: refreshes the users this instance has
/// sockets for, and reports those whose presence expired (each to one instance only).
pub async fn refresh(config: ChatConfig, bus: Bus, rooms: Arc<Rooms>, stop: CancellationToken) {
    let ttl = Duration::from_millis(config.presence_ttl_ms);
    let mut tick = tokio::time::interval(Duration::from_millis(config.presence_refresh_ms));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        for (room, members) in rooms.present() {
            let fresh = match bus.presence_touch(&key(room), &members, ttl).await {
                Ok(fresh) => fresh,
                Err(err) => {
                    tracing::warn!(room.id = room, error = %err, "chat presence not refreshed");
                    continue;
                }
            };
            let gone = bus.presence_expire(&key(room)).await.unwrap_or_default();
            announce(&config, &bus, &rooms, room, users(&fresh), users(&gone)).await;
        }
    }
}

/// How many users are present in `room`; `None` when the bus cannot say.
pub async fn online(state: &AppState, room: i64) -> Option<u64> {
    match state.bus().presence(&key(room), 0).await {
        Ok((count, _)) => Some(count),
        Err(err) => {
            tracing::warn!(room.id = room, error = %err, "chat presence not counted");
            None
        }
    }
}

/// The answer of `GET /rooms/{id}/presence`.
#[derive(Debug, Serialize)]
pub struct Presence {
    count: u64,
    /// Up to 100 of them.
    users: Vec<PresentUser>,
}

/// `GET /api/v1/rooms/{id}/presence`.
pub async fn get(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    Path(id): Path<i64>,
) -> Result<axum::Json<Presence>, ApiError> {
    let room = visible_room(&state, room_id(id)?, caller.as_ref()).await?;
    let (count, members) = state.bus().presence(&key(room.id), MAX_LISTED).await?;
    Ok(axum::Json(Presence {
        count,
        users: users(&members),
    }))
}
