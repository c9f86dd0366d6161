//! Recordings from the recorder's job table: `GET /api/v1/admin/recordings` (every room's for
//! admins, their own rooms' for streamers), `GET /api/v1/rooms/{id}/recordings` (the room's
//! owner and admins), `POST /api/v1/admin/recordings/{id}/retry` (a failed one, again), and
//! `GET /api/v1/recordings/{id}/download`, which serves a local store's file to the holder of
//! a signed link.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use livegate_core::db::recording_jobs::{self, RecordingFilter};
use livegate_core::db::{now_ms, rooms, JobState, RecordingJobRow};
use serde::{Deserialize, Serialize};
use tower::ServiceExt as _;
use tower_http::services::ServeFile;
use utoipa::{IntoParams, ToSchema};

use super::{id_cursor, owner_scope, page_of};
use crate::auth::Caller;
use crate::error::{ApiError, Path, Query};
use crate::routes::rooms::read::room_id;
use crate::routes::rooms::view::{page_size, Page};
use crate::state::AppState;

/// The listing's query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RecordingsQuery {
    /// Only recordings in this state.
    #[param(pattern = "^(discovered|remuxing|uploading|uploaded|recorded|cleaned|failed)$")]
    state: Option<String>,
    /// Only this room's (one the caller may see).
    #[param(minimum = 1)]
    room: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^[1-9][0-9]{0,17}$")]
    cursor: Option<String>,
    /// Items per page (20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

/// A room's listing's query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RoomRecordingsQuery {
    /// Only recordings in this state.
    #[param(pattern = "^(discovered|remuxing|uploading|uploaded|recorded|cleaned|failed)$")]
    state: Option<String>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^[1-9][0-9]{0,17}$")]
    cursor: Option<String>,
    /// Items per page (20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

/// One recording.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Recording)]
pub struct RecordingView {
    id: i64,
    room_id: i64,
    stream_id: Option<i64>,
    /// `discovered`, `remuxing`, `uploading`, `uploaded`, `recorded`, `cleaned` or `failed`.
    state: String,
    /// Why the last attempt failed (or why it was given up on).
    error: Option<String>,
    /// Failed attempts retried so far.
    attempts: i32,
    size_bytes: Option<i64>,
    duration_ms: Option<i64>,
    /// When the recording started, unix milliseconds.
    started_at: i64,
    created_at: i64,
    updated_at: i64,
    /// Its key in storage, once remuxed.
    object_key: Option<String>,
    /// A presigned (S3) or signed local link, once stored and when `[recordings]` is set.
    download_url: Option<String>,
}

fn is_stored(row: &RecordingJobRow) -> bool {
    matches!(
        row.job_state(),
        JobState::Uploaded | JobState::Recorded | JobState::Cleaned
    )
}

async fn view(state: &AppState, row: RecordingJobRow) -> RecordingView {
    let download_url = match (state.console().storage(), &row.object_key) {
        (Some(store), Some(key)) if is_stored(&row) => {
            store.download_url(row.id, key, crate::unix_now()).await
        }
        _ => None,
    };
    RecordingView {
        id: row.id,
        room_id: row.room_id,
        stream_id: row.stream_id,
        state: row.state,
        error: row.error,
        attempts: row.attempts,
        size_bytes: row.size_bytes,
        duration_ms: row.duration_ms,
        started_at: row.started_at,
        created_at: row.created_at,
        updated_at: row.updated_at,
        object_key: row.object_key,
        download_url,
    }
}

fn state_filter(state: Option<&str>) -> Result<Option<&str>, ApiError> {
    match state {
        Some(name) if JobState::parse(name).is_none() => Err(ApiError::invalid(
            "state",
            "must be discovered, remuxing, uploading, uploaded, recorded, cleaned or failed",
        )),
        other => Ok(other),
    }
}

/// The room `id` if `caller` may see its recordings: 404 when it does not exist, 403 when
/// they do not own it.
async fn owned_room(state: &AppState, caller: &Caller, id: i64) -> Result<i64, ApiError> {
    let room = rooms::get(state.db(), room_id(id)?)
        .await?
        .ok_or_else(|| ApiError::not_found("room"))?;
    if caller.may_manage(room.owner_id) {
        Ok(room.id)
    } else {
        Err(ApiError::forbidden(
            "only the room's owner and admins see its recordings",
        ))
    }
}

async fn listing(
    state: &AppState,
    filter: RecordingFilter<'_>,
    cursor: Option<&str>,
    limit: Option<u32>,
) -> Result<Page<RecordingView>, ApiError> {
    let limit = page_size(limit)?;
    let before = id_cursor(cursor)?;
    let found = recording_jobs::page(state.db(), filter, before, limit + 1).await?;
    let page = page_of(found, limit, |row| row.id, |row| row);
    let mut items = Vec::with_capacity(page.items.len());
    for row in page.items {
        items.push(view(state, row).await);
    }
    Ok(Page {
        items,
        next_cursor: page.next_cursor,
    })
}

/// Every recording an admin may see, or a streamer's rooms' ones; newest first.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<RecordingsQuery>,
) -> Result<axum::Json<Page<RecordingView>>, ApiError> {
    let owner = owner_scope(&caller)?;
    let job_state = state_filter(query.state.as_deref())?;
    let room = match query.room {
        Some(id) if id <= 0 => return Err(ApiError::invalid("room", "must be a positive id")),
        Some(id) => Some(owned_room(&state, &caller, id).await?),
        None => None,
    };
    let filter = RecordingFilter {
        state: job_state,
        room_id: room,
        owner_id: owner,
    };
    let page = listing(&state, filter, query.cursor.as_deref(), query.limit).await?;
    Ok(axum::Json(page))
}

/// One room's recordings, newest first.
pub async fn of_room(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
    Query(query): Query<RoomRecordingsQuery>,
) -> Result<axum::Json<Page<RecordingView>>, ApiError> {
    let room = owned_room(&state, &caller, id).await?;
    let filter = RecordingFilter {
        state: state_filter(query.state.as_deref())?,
        room_id: Some(room),
        owner_id: None,
    };
    let page = listing(&state, filter, query.cursor.as_deref(), query.limit).await?;
    Ok(axum::Json(page))
}

/// The answer to a retry.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = RecordingRetried)]
pub struct Retried {
    id: i64,
    /// `discovered`: due now, for the next free recorder worker.
    #[schema(value_type = String)]
    state: &'static str,
}

/// Sends a failed recording round again (its room's owner, admins): 202, a recorder takes it
/// on its next look at the job table; 409 when it has not failed.
pub async fn retry(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<(StatusCode, axum::Json<Retried>), ApiError> {
    owner_scope(&caller)?;
    if id <= 0 {
        return Err(ApiError::invalid("id", "must be a positive integer id"));
    }
    let job = recording_jobs::get(state.db(), id)
        .await?
        .ok_or_else(|| ApiError::not_found("recording"))?;
    owned_room(&state, &caller, job.room_id).await?;
    if !recording_jobs::requeue_failed(state.db(), id, now_ms()).await? {
        return Err(ApiError::conflict(format!(
            "the recording is {}, only a failed one is retried",
            job.state
        )));
    }
    tracing::info!(
        job.id = id,
        room.id = job.room_id,
        user.id = caller.user_id,
        "recording retried"
    );
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(Retried {
            id,
            state: JobState::Discovered.as_str(),
        }),
    ))
}

/// A signed link's query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DownloadQuery {
    /// When the link stops working, unix seconds.
    expires: u64,
    /// The link's signature.
    #[param(max_length = 128)]
    sig: String,
}

/// Serves a stored recording of a local store to the holder of a link a listing handed out.
pub async fn download(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Query(query): Query<DownloadQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    let store = state
        .console()
        .storage()
        .ok_or_else(|| ApiError::not_found("recording"))?;
    if !store.verify_link(id, query.expires, &query.sig, crate::unix_now()) {
        return Err(ApiError::forbidden(
            "the link is not valid, or it expired: list the recordings again for a new one",
        ));
    }
    let job = recording_jobs::get(state.db(), id)
        .await?
        .filter(is_stored)
        .ok_or_else(|| ApiError::not_found("recording"))?;
    let path = job
        .object_key
        .as_deref()
        .and_then(|key| store.local_path(key))
        .ok_or_else(|| ApiError::not_found("recording"))?;
    if let Err(err) = tokio::fs::metadata(&path).await {
        if err.kind() == std::io::ErrorKind::NotFound {
            return Err(ApiError::not_found("recording file"));
        }
        tracing::error!(job.id = id, error = %err, "cannot open a stored recording");
        return Err(ApiError::internal());
    }
    // Ranges (a player seeking), conditional requests and HEAD, as a file server answers them
    // (the type from the key's `.mp4`).
    let served = ServeFile::new(&path)
        .oneshot(request)
        .await
        .map_err(|err| {
            tracing::error!(job.id = id, error = %err, "cannot read a stored recording");
            ApiError::internal()
        })?;
    let mut response = served.map(Body::new);
    if let Ok(disposition) =
        HeaderValue::from_str(&format!("attachment; filename=\"recording-{id}.mp4\""))
    {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, disposition);
    }
    Ok(response)
}
