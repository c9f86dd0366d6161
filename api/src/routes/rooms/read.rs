//! `GET /api/v1/rooms`, `GET /api/v1/rooms/{id}` and `GET /api/v1/rooms/{id}/streams`.

use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;

use livegate_core::db::{covers, rooms, streams, Room};

use super::view::{self, Page, RoomView, StreamView};
use crate::auth::{Caller, MaybeCaller};
use crate::error::{ApiError, Path, Query};
use crate::state::AppState;

/// A room the caller may see: disabled rooms exist only for their owner and admins.
pub(crate) async fn visible_room(
    state: &AppState,
    id: i64,
    caller: Option<&Caller>,
) -> Result<Room, ApiError> {
    let room = rooms::get(state.db(), id)
        .await?
        .ok_or_else(|| ApiError::not_found("room"))?;
    if room.disabled && !caller.is_some_and(|c| c.may_manage(room.owner_id)) {
        return Err(ApiError::not_found("room"));
    }
    Ok(room)
}

/// A room id from the path: positive.
pub(crate) fn room_id(id: i64) -> Result<i64, ApiError> {
    if id > 0 {
        Ok(id)
    } else {
        Err(ApiError::invalid("id", "must be a positive integer id"))
    }
}

/// One room.
pub async fn get(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    Path(id): Path<i64>,
) -> Result<axum::Json<RoomView>, ApiError> {
    let room = visible_room(&state, room_id(id)?, caller.as_ref()).await?;
    let cover = covers::of_room(state.db(), room.id).await?;
    let view = RoomView::new(&room, &state, caller.as_ref())
        .with_cover(cover.as_ref(), state.console().storage());
    // Without the bus, the details still answer, without the chat count.
    let view = match crate::chat::presence::online(&state, room.id).await {
        Some(online) => view.with_chat_online(online),
        None => view,
    };
    Ok(axum::Json(view))
}

/// The listing's query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this user's rooms.
    #[param(minimum = 1)]
    owner: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(max_length = 64)]
    cursor: Option<String>,
    /// Rooms per page (20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

/// Enabled rooms, live first, then newest first; `?owner=` narrows to one owner's.
pub async fn list(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    Query(query): Query<ListQuery>,
) -> Result<axum::Json<Page<RoomView>>, ApiError> {
    let limit = view::page_size(query.limit)?;
    if query.owner.is_some_and(|owner| owner <= 0) {
        return Err(ApiError::invalid("owner", "must be a positive user id"));
    }
    let after = query
        .cursor
        .as_deref()
        .map(view::parse_room_cursor)
        .transpose()?;
    let mut found = rooms::list(state.db(), query.owner, after, limit + 1).await?;
    let more = found.len() > limit as usize;
    found.truncate(limit as usize);
    let next_cursor = more.then(|| found.last().map(view::room_cursor)).flatten();
    Ok(axum::Json(Page {
        items: found
            .iter()
            .map(|room| RoomView::new(room, &state, caller.as_ref()))
            .collect(),
        next_cursor,
    }))
}

/// The streams query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamsQuery {
    /// The `next_cursor` of the previous page.
    #[param(max_length = 64)]
    cursor: Option<String>,
    /// Streams per page (20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

/// A room's streams, newest first.
pub async fn streams(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    Path(id): Path<i64>,
    Query(query): Query<StreamsQuery>,
) -> Result<axum::Json<Page<StreamView>>, ApiError> {
    let room = visible_room(&state, room_id(id)?, caller.as_ref()).await?;
    let limit = view::page_size(query.limit)?;
    let before = query
        .cursor
        .as_deref()
        .map(view::parse_stream_cursor)
        .transpose()?;
    let mut found = streams::page_of_room(state.db(), room.id, before, limit + 1).await?;
    let more = found.len() > limit as usize;
    found.truncate(limit as usize);
    let next_cursor = more
        .then(|| found.last().map(view::stream_cursor))
        .flatten();
    let private = caller.is_some_and(|c| c.may_manage(room.owner_id));
    Ok(axum::Json(Page {
        items: found
            .iter()
            .map(|stream| StreamView::new(stream, private))
            .collect(),
        next_cursor,
    }))
}
