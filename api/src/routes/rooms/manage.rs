//! What owners and admins do to rooms: `POST /api/v1/rooms`, `PATCH` and `DELETE
//! /api/v1/rooms/{id}`, `POST /api/v1/rooms/{id}/stream-key/rotate`, `POST
//! /api/v1/rooms/{id}/kill`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use livegate_core::bus::Revocation;
use livegate_core::db::{now_ms, revocations, rooms, streams, NewRoom, Room, RoomChanges};
use livegate_core::unix_now;

use super::read::room_id;
use super::view::RoomView;
use crate::audit::Detail;
use crate::auth::{random_token, Caller, Role};
use crate::error::{ApiError, Json, Path};
use crate::kick::{self, Kicked};
use crate::state::AppState;
use crate::validate;

/// Random bytes in a stream key: 256 bits, 43 URL-safe characters.
const STREAM_KEY_BYTES: usize = 32;

/// A room with its publishing secret, for its owner only.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoomWithKey {
    room: RoomView,
    /// The secret of the publish URL.
    stream_key: String,
    /// `rtmp://{ingest host}/live/{room id}?key={stream key}`.
    publish_url: String,
    /// What became of a publisher live on the old key (absent when none was).
    #[serde(skip_serializing_if = "Option::is_none")]
    kicked: Option<Kicked>,
    /// Whether the edge was told to refuse the viewers' current tokens (absent on creation).
    #[serde(skip_serializing_if = "Option::is_none")]
    viewers_revoked: Option<bool>,
}

/// A room after a change that may have kicked its publisher.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoomAfterKick {
    room: RoomView,
    /// What became of the publisher when one was live; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    kicked: Option<Kicked>,
    /// Whether the edge was told to refuse the viewers' current tokens.
    viewers_revoked: bool,
}

/// `null` and absent differ for optional settings: `null` clears, absent keeps.
fn some_option<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// The body of `POST /api/v1/rooms`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoom {
    /// At most 255 characters, no control characters ([`validate::title`]).
    #[serde(default)]
    #[schema(max_length = 255, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    title: String,
    /// Whether only logged-in viewers get play tokens.
    #[serde(default)]
    login_required: bool,
    /// ([`validate::cidrs`])
    #[serde(default)]
    #[schema(schema_with = validate::cidrs_schema)]
    publish_allow_cidrs: Vec<String>,
    /// When the stream key stops working, unix milliseconds in the future; absent: never.
    #[serde(default)]
    stream_key_expires_at: Option<i64>,
}

/// The body of `PATCH /api/v1/rooms/{id}`: absent fields stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchRoom {
    /// At most 255 characters, no control characters.
    #[schema(max_length = 255, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    title: Option<String>,
    login_required: Option<bool>,
    #[schema(schema_with = validate::cidrs_or_null_schema)]
    publish_allow_cidrs: Option<Vec<String>>,
    /// Unix milliseconds in the future; `null`: never.
    #[serde(default, deserialize_with = "some_option")]
    #[schema(value_type = Option<i64>)]
    stream_key_expires_at: Option<Option<i64>>,
}

fn check_expiry(expires_at: Option<i64>, now: i64) -> Result<Option<i64>, ApiError> {
    match expires_at {
        Some(at) if at <= now => Err(ApiError::invalid(
            "stream_key_expires_at",
            "must be in the future (unix milliseconds)",
        )),
        other => Ok(other),
    }
}

fn publish_url(state: &AppState, room_id: i64, key: &str) -> String {
    format!(
        "rtmp://{}/live/{room_id}?key={key}",
        state.config().rooms.ingest_host
    )
}

/// Creates a room owned by the caller (a streamer or an admin); 201 with its stream key and
/// publish URL, the only answers that ever carry the key besides a rotation.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateRoom>,
) -> Result<(StatusCode, axum::Json<RoomWithKey>), ApiError> {
    if caller.role == Role::Viewer {
        return Err(ApiError::forbidden("viewers cannot create rooms"));
    }
    validate::title(&body.title).map_err(|m| ApiError::invalid("title", m))?;
    let cidrs = validate::cidrs(&body.publish_allow_cidrs)
        .map_err(|m| ApiError::invalid("publish_allow_cidrs", m))?;
    let now = now_ms();
    let expires_at = check_expiry(body.stream_key_expires_at, now)?;
    let max = state.config().rooms.max_per_owner;
    let key = random_token(STREAM_KEY_BYTES);
    let mut tx = state.db().begin().await?;
    if caller.role != Role::Admin
        && rooms::count_of_owner(&mut tx, caller.user_id).await? >= i64::from(max)
    {
        return Err(ApiError::conflict(format!(
            "a streamer may own at most {max} rooms"
        )));
    }
    let id = rooms::create(
        &mut tx,
        &NewRoom {
            owner_id: caller.user_id,
            title: &body.title,
            stream_key: &key,
            stream_key_expires_at: expires_at,
            publish_allow_cidrs: cidrs.as_deref(),
        },
        now,
    )
    .await?;
    if body.login_required {
        rooms::update(
            &mut tx,
            id,
            &RoomChanges {
                title: &body.title,
                login_required: true,
                publish_allow_cidrs: cidrs.as_deref(),
                stream_key_expires_at: expires_at,
            },
        )
        .await?;
    }
    let room = rooms::get(&mut tx, id)
        .await?
        .ok_or_else(ApiError::internal)?;
    tx.commit().await?;
    tracing::info!(room.id = id, user.id = caller.user_id, "room created");
    let publish_url = publish_url(&state, id, &key);
    Ok((
        StatusCode::CREATED,
        axum::Json(RoomWithKey {
            room: RoomView::new(&room, &state, Some(&caller)),
            stream_key: key,
            publish_url,
            kicked: None,
            viewers_revoked: None,
        }),
    ))
}

/// Reads and locks room `id` for a change by `caller`: 404 when it does not exist, 403 when
/// the caller may not manage it.
async fn lock_managed(
    tx: &mut livegate_core::db::Tx<'_>,
    id: i64,
    caller: &Caller,
) -> Result<Room, ApiError> {
    let room = rooms::lock(tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found("room"))?;
    if !caller.may_manage(room.owner_id) {
        return Err(ApiError::forbidden(
            "only the room's owner or an admin may change it",
        ));
    }
    Ok(room)
}

/// Changes a room's title, login requirement, publisher allow-list or key expiry.
pub async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
    Json(body): Json<PatchRoom>,
) -> Result<axum::Json<RoomView>, ApiError> {
    let id = room_id(id)?;
    if let Some(title) = &body.title {
        validate::title(title).map_err(|m| ApiError::invalid("title", m))?;
    }
    let cidrs = body
        .publish_allow_cidrs
        .as_deref()
        .map(validate::cidrs)
        .transpose()
        .map_err(|m| ApiError::invalid("publish_allow_cidrs", m))?;
    let expiry = body
        .stream_key_expires_at
        .map(|at| check_expiry(at, now_ms()))
        .transpose()?;
    let mut tx = state.db().begin().await?;
    let room = lock_managed(&mut tx, id, &caller).await?;
    let changes = RoomChanges {
        title: body.title.as_deref().unwrap_or(&room.title),
        login_required: body.login_required.unwrap_or(room.login_required),
        publish_allow_cidrs: match &cidrs {
            Some(new) => new.as_deref(),
            None => room.publish_allow_cidrs.as_deref(),
        },
        stream_key_expires_at: expiry.unwrap_or(room.stream_key_expires_at),
    };
    rooms::update(&mut tx, id, &changes).await?;
    let room = rooms::get(&mut tx, id)
        .await?
        .ok_or_else(ApiError::internal)?;
    tx.commit().await?;
    tracing::info!(
        room.id = id,
        user.id = caller.user_id,
        "room settings changed"
    );
    Ok(axum::Json(RoomView::new(&room, &state, Some(&caller))))
}

/// Kicks the room's publisher if it is live.
async fn kick_live(state: &AppState, room_id: i64) -> Result<Option<Kicked>, ApiError> {
    match streams::open(state.db(), room_id).await? {
        Some(stream) => Ok(Some(
            kick::kick(state.origins(), state.metrics(), &stream).await,
        )),
        None => Ok(None),
    }
}

/// Tells every edge to refuse the room's play tokens issued so far (those expiring within one
/// token lifetime from now) and to end its running FLV responses. A bus failure is logged and
/// reported, not an error: the change itself is made, and tokens run out by themselves.
///
/// The revocation is also kept in the database first, for [`republish_revocations`]: the bus
/// may be the in-process one, which a restart empties.
async fn revoke_viewers(state: &AppState, room_id: i64) -> bool {
    let revocation = Revocation {
        room_id: room_id.unsigned_abs(),
        tokens_expiring_by: unix_now().saturating_add(state.config().play_token.ttl_s),
    };
    let until = i64::try_from(revocation.tokens_expiring_by).unwrap_or(i64::MAX);
    if let Err(err) = revocations::record(state.db(), room_id, until).await {
        tracing::warn!(room.id = room_id, error = %err, "could not keep the room's revocation");
    }
    match state.bus().revocations().publish(&revocation).await {
        Ok(()) => true,
        Err(err) => {
            tracing::warn!(room.id = room_id, error = %err, "could not revoke the room's play tokens");
            false
        }
    }
}

/// How far past its expiry a kept revocation is still published at start-up: the edges
/// accept tokens a little past their expiry, and drop what is past theirs themselves.
const REPUBLISH_AFTER_EXPIRY_S: u64 = 600;

/// Publishes again the revocations still in force, for edges that learnt them from a bus
/// that has since forgotten them (the in-process one, after a restart). Failures are
/// logged: revoked tokens run out by themselves.
pub async fn republish_revocations(state: &AppState) {
    let since = unix_now().saturating_sub(REPUBLISH_AFTER_EXPIRY_S);
    let kept = match revocations::in_force(state.db(), i64::try_from(since).unwrap_or(0)).await {
        Ok(kept) => kept,
        Err(err) => {
            tracing::warn!(error = %err, "could not read the kept revocations");
            return;
        }
    };
    let feed = state.bus().revocations();
    for kept in &kept {
        let revocation = Revocation {
            room_id: kept.room_id.unsigned_abs(),
            tokens_expiring_by: u64::try_from(kept.tokens_expiring_by).unwrap_or(0),
        };
        if let Err(err) = feed.publish(&revocation).await {
            tracing::warn!(room.id = kept.room_id, error = %err, "could not publish a kept revocation");
            return;
        }
    }
    if !kept.is_empty() {
        tracing::info!(count = kept.len(), "revocations in force published again");
    }
}

/// Ends everything running in a room without disabling it (admins only): the publisher is
/// kicked and viewers' tokens are refused at the edge; new tokens play.
pub async fn kill(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let id = room_id(id)?;
    if caller.role != Role::Admin {
        return Err(ApiError::forbidden("only an admin may kill a room"));
    }
    let room = rooms::get(state.db(), id)
        .await?
        .ok_or_else(|| ApiError::not_found("room"))?;
    let viewers_revoked = revoke_viewers(&state, id).await;
    let kicked = kick_live(&state, id).await?;
    tracing::info!(room.id = id, user.id = caller.user_id, "room killed");
    Ok(with_kick_detail(
        axum::Json(RoomAfterKick {
            room: RoomView::new(&room, &state, Some(&caller)),
            kicked,
            viewers_revoked,
        }),
        kicked,
    ))
}

/// Disables a room: publishes are refused from now on (by the hooks service) and a live
/// publisher is kicked. The room and its history stay.
pub async fn disable(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let id = room_id(id)?;
    let mut tx = state.db().begin().await?;
    lock_managed(&mut tx, id, &caller).await?;
    rooms::set_disabled(&mut tx, id, true).await?;
    tx.commit().await?;
    tracing::info!(room.id = id, user.id = caller.user_id, "room disabled");
    // After the commit: a publisher that reconnects at once is already refused, and so is a
    // viewer asking for a new token.
    let viewers_revoked = revoke_viewers(&state, id).await;
    state.chat().room_disabled(id).await;
    let kicked = kick_live(&state, id).await?;
    let room = rooms::get(state.db(), id)
        .await?
        .ok_or_else(|| ApiError::not_found("room"))?;
    Ok(with_kick_detail(
        axum::Json(RoomAfterKick {
            room: RoomView::new(&room, &state, Some(&caller)),
            kicked,
            viewers_revoked,
        }),
        kicked,
    ))
}

/// Replaces the room's stream key (clearing its expiry) and kicks a publisher that is live on
/// the old one.
pub async fn rotate_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let id = room_id(id)?;
    let key = random_token(STREAM_KEY_BYTES);
    let mut tx = state.db().begin().await?;
    let room = lock_managed(&mut tx, id, &caller).await?;
    if room.disabled {
        return Err(ApiError::conflict("the room is disabled"));
    }
    rooms::set_stream_key(&mut tx, id, &key, None).await?;
    tx.commit().await?;
    tracing::info!(room.id = id, user.id = caller.user_id, "stream key rotated");
    // Any open stream was published with the old key; its viewers' tokens go with it.
    let viewers_revoked = revoke_viewers(&state, id).await;
    let kicked = kick_live(&state, id).await?;
    let room = rooms::get(state.db(), id)
        .await?
        .ok_or_else(|| ApiError::not_found("room"))?;
    let publish_url = publish_url(&state, id, &key);
    Ok(with_kick_detail(
        axum::Json(RoomWithKey {
            room: RoomView::new(&room, &state, Some(&caller)),
            stream_key: key,
            publish_url,
            kicked,
            viewers_revoked: Some(viewers_revoked),
        }),
        kicked,
    ))
}

/// The answer, telling the audit log what became of the publisher.
fn with_kick_detail(answer: impl axum::response::IntoResponse, kicked: Option<Kicked>) -> Response {
    let mut response = answer.into_response();
    response
        .extensions_mut()
        .insert(Detail::kicked(kicked.map_or("not_live", Kicked::as_str)));
    response
}
