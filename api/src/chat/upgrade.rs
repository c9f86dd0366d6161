//! `GET /ws?token=…&room=…[&since=OFFSET:EPOCH]`: every check happens before the upgrade, so
//! a refusal is an HTTP answer with the error envelope, never a socket closed later.

use std::sync::Arc;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use livegate_core::bus::Position;
use serde::Deserialize;

use super::access;
use super::config::MAX_FRAME_BYTES;

/// The largest frame the WebSocket layer reads.
const LAYER_LIMIT_BYTES: usize = 4 * MAX_FRAME_BYTES;
use super::frame::{Direct, Outgoing, PresentUser};
use super::outbox::Outbox;
use super::socket::Connection;
use crate::error::{ApiError, Query};
use crate::state::AppState;

/// What a connection reads from its socket at once. Small: the connection's reader is
/// polled whenever its task wakes (for every frame it sends too), and the WebSocket layer
/// clears this much of its buffer at each poll. Client frames are few and small; a larger
/// one takes a few more reads.
const READ_BUFFER_BYTES: usize = 512;
/// Frames gathered before they are written (a flush writes them anyway).
const WRITE_BUFFER_BYTES: usize = 8192;

/// The query of `/ws`.
#[derive(Debug, Deserialize)]
pub struct WsQuery {
    token: Option<String>,
    room: Option<String>,
    since: Option<String>,
}

/// The upgrade handler.
pub async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<WsQuery>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let chat = state.chat();
    let config = &state.config().chat;
    if let Some(origin) = headers.get(header::ORIGIN) {
        let allowed = origin
            .to_str()
            .is_ok_and(|origin| config.origin_allowed(origin));
        if !allowed {
            return Err(ApiError::forbidden(
                "chat may not be opened from this page's origin",
            ));
        }
    }
    let since = query
        .since
        .as_deref()
        .map(parse_since)
        .transpose()
        .map_err(|message| ApiError::invalid("since", message))?;
    let room = access::open_room(&state, query.room.as_deref()).await?;
    let access = access::check(&state, query.token.as_deref(), &room).await?;
    let ws = ws.map_err(|rejection| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("not a WebSocket upgrade: {rejection}"),
        )
    })?;
    let shutdown = chat.shutdown().ok_or_else(ApiError::unavailable)?;
    let outbox = Arc::new(Outbox::new(config.max_outbound_bytes));
    let present = access.sender.as_ref().map(|sender| PresentUser {
        id: sender.id,
        name: sender.name.clone(),
    });
    let membership = chat
        .rooms()
        .join(&shutdown, room.id, access.sender.clone(), outbox)
        .await
        .map_err(ApiError::from)?;
    let member = membership.member();
    member
        .muted_until
        .store(access.muted_until, std::sync::atomic::Ordering::Relaxed);
    // After joining, so that a grant or revocation from here on reaches the member, and
    // one made before is in the database.
    if let Some(sender) = access.sender.as_ref().filter(|s| s.role != "owner") {
        let seen = member.role_seen();
        let holds = livegate_core::db::chat::is_moderator(state.db(), room.id, sender.id).await?;
        member.set_moderator_from_db(seen, holds);
    }
    membership.set_slow_mode_s(livegate_core::db::chat::slow_mode(state.db(), room.id).await?);
    if let Some(present) = &present {
        super::presence::arrive(&state, room.id, present).await;
    }
    // After joining: anything appended from here on is in the outbox as well, and the
    // socket drops what the replay already sent.
    let key = room.id.to_string();
    let log = chat.rooms().log();
    let (position, recovered, replay) = match &since {
        None => (log.position(&key).await?, None, Vec::new()),
        Some(since) => {
            let history = log.read(&key, Some(since), config.recover_limit).await?;
            let fresh = since.offset == 0 && since.epoch.is_empty();
            if history.complete && (history.epoch == since.epoch || fresh) {
                let replay = history
                    .entries
                    .iter()
                    .map(|entry| Outgoing::message(entry.offset, &history.epoch, &entry.value))
                    .collect::<Vec<_>>();
                (history.position(), Some(true), replay)
            } else {
                let latest = Position {
                    offset: history.latest,
                    epoch: history.epoch,
                };
                (latest, Some(false), Vec::new())
            }
        }
    };
    let user = membership.member().current_sender();
    let welcome = Outgoing::direct(&Direct::Welcome {
        room: room.id,
        user: user.as_ref(),
        can_send: access.can_send,
        position: &position,
        recovered,
        replayed: recovered.map(|_| replay.len()),
    });
    let connection = Connection {
        state: state.clone(),
        room,
        access,
        membership,
        welcome,
        replay,
        last_offset: position.offset,
    };
    // Small socket buffers: an idle connection costs what it holds, and the defaults
    // (128 KiB each) are filled on the first read. The read buffer grows for a larger
    // frame; the write buffer gathers a burst into few writes.
    // The WebSocket layer takes frames a few times the chat's limit, so that a frame a
    // little over the limit is not read to its end before it is refused; past the layer's
    // own limit the layer refuses it, and the connection closes with 1009 either way.
    let response = ws
        .max_message_size(LAYER_LIMIT_BYTES)
        .max_frame_size(LAYER_LIMIT_BYTES)
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .on_upgrade(move |socket| async move {
            // Tracked, so that shutdown waits for the connection to close.
            let task = shutdown.spawn(connection.run(socket));
            if let Err(err) = task.await {
                tracing::warn!(error = %err, "chat connection task failed");
            }
        });
    Ok(response.into_response())
}

/// `OFFSET:EPOCH`, as the last frame's `offset` and `epoch`.
fn parse_since(value: &str) -> Result<Position, &'static str> {
    let (offset, epoch) = value
        .split_once(':')
        .ok_or("must be OFFSET:EPOCH from the last frame received")?;
    let offset = offset
        .parse::<u64>()
        .map_err(|_| "the offset must be a number")?;
    if epoch.len() > 128 {
        return Err("the epoch is too long");
    }
    Ok(Position {
        offset,
        epoch: epoch.to_owned(),
    })
}
