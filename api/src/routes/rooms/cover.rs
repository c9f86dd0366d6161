//! `GET /api/v1/rooms/{id}/cover`: the room's cover picture, for a browser. Without a public
//! base URL the recorder records where a picture is stored (`s3://bucket/key` or a local
//! path), which no browser can load: the room's details link here instead, and this
//! redirects to a presigned link made now (S3) or serves the file (local). A picture with a
//! web URL is a redirect to it.

use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use livegate_core::db::covers::{self, RoomCover};
use serde::Deserialize;
use tower::ServiceExt as _;
use tower_http::services::ServeFile;
use utoipa::IntoParams;

use super::read::{room_id, visible_room};
use crate::auth::MaybeCaller;
use crate::console::storage::{Picture, RecordingStore};
use crate::error::{ApiError, Path, Query};
use crate::state::AppState;

/// How long a browser may keep a served cover: a live room's snapshot is replaced every few
/// seconds, and the details link a new one with its own version anyway. A disabled room's
/// cover is for its owner and admins, and no shared cache keeps it.
const CACHE_CONTROL: &str = "public, max-age=10";
const CACHE_CONTROL_PRIVATE: &str = "private, max-age=10";

/// Whether `url` is one a browser loads as it is.
pub(crate) fn is_web_url(url: &str) -> bool {
    ["https://", "http://"].iter().any(|scheme| {
        url.get(..scheme.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(scheme))
    })
}

/// The link the room's details show for its cover: the picture's own URL when a browser can
/// load it, else this route when `store` (the API's `[recordings]`) can serve the picture,
/// versioned by the cover's last change so that caches see a new picture as new; `None`
/// otherwise, rather than a link that cannot load.
pub(crate) fn link(
    room_id: i64,
    cover: &RoomCover,
    is_live: bool,
    store: Option<&RecordingStore>,
) -> Option<String> {
    let url = cover.url(is_live)?;
    if is_web_url(url) {
        return Some(url.to_owned());
    }
    store
        .filter(|store| store.shows(url))
        .map(|_| format!("/api/v1/rooms/{room_id}/cover?v={}", cover.updated_at))
}

/// The cover's query. Other parameters (a player's cache-buster) are let through.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CoverQuery {
    /// The version the room's details link: any value serves the current cover.
    #[serde(rename = "v")]
    #[param(max_length = 32)]
    _version: Option<String>,
}

/// The room's cover: the file from a local store, or a redirect to a link signed now (S3) or
/// to its web URL.
pub async fn get(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    Path(id): Path<i64>,
    Query(_version): Query<CoverQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    let room = visible_room(&state, room_id(id)?, caller.as_ref()).await?;
    let cover = covers::of_room(state.db(), room.id).await?;
    let url = cover
        .as_ref()
        .and_then(|cover| cover.url(room.is_live))
        .ok_or_else(|| ApiError::not_found("cover"))?;
    let cache_control = if room.disabled {
        CACHE_CONTROL_PRIVATE
    } else {
        CACHE_CONTROL
    };
    if is_web_url(url) {
        return redirect(url, cache_control);
    }
    let store = state
        .console()
        .storage()
        .ok_or_else(|| ApiError::not_found("cover"))?;
    let path = match store.picture(url, SystemTime::now()).await {
        Some(Picture::Signed(link)) => return redirect(&link, cache_control),
        Some(Picture::File(path)) => path,
        None => return Err(ApiError::not_found("cover")),
    };
    let served = ServeFile::new(&path)
        .oneshot(request)
        .await
        .map_err(|err| {
            tracing::error!(room.id = room.id, error = %err, "cannot read a room's cover");
            ApiError::internal()
        })?;
    let mut response = served.map(Body::new);
    let status = response.status();
    if status.is_success() || status == StatusCode::NOT_MODIFIED {
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(cache_control),
        );
    }
    Ok(response)
}

/// A redirect to `url`, kept by browsers no longer than the picture it leads to.
fn redirect(url: &str, cache_control: &'static str) -> Result<Response, ApiError> {
    let location = HeaderValue::from_str(url).map_err(|_| ApiError::not_found("cover"))?;
    Ok(Response::builder()
        .status(StatusCode::FOUND)
        .header(header::LOCATION, location)
        .header(header::CACHE_CONTROL, cache_control)
        .body(Body::empty())
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cover(snapshot: Option<&str>, poster: Option<&str>) -> RoomCover {
        RoomCover {
            room_id: 7,
            snapshot_url: snapshot.map(str::to_owned),
            snapshot_at: Some(2),
            poster_url: poster.map(str::to_owned),
            poster_at: Some(1),
            updated_at: 1234,
        }
    }

    #[test]
    fn the_details_link_only_what_a_browser_can_load() {
        let local_store = RecordingStore::new(
            &crate::console::config::RecordingsConfig::default(),
            b"link key",
        );
        let web = cover(Some("HTTPS://cdn.example/7.jpg"), None);
        assert_eq!(
            link(7, &web, true, None).as_deref(),
            Some("HTTPS://cdn.example/7.jpg")
        );
        let local = cover(Some("/srv/livegate/pictures/7.jpg"), None);
        assert_eq!(
            link(7, &local, true, Some(&local_store)).as_deref(),
            Some("/api/v1/rooms/7/cover?v=1234")
        );
        // Without a store that holds it, a stored picture has no link that would load.
        assert_eq!(link(7, &local, true, None), None);
        let in_s3 = cover(None, Some("s3://recordings/rec/7/1.jpg"));
        assert_eq!(link(7, &in_s3, true, Some(&local_store)), None);
        assert_eq!(link(7, &cover(None, None), false, Some(&local_store)), None);
        assert!(!is_web_url("http"));
        assert!(!is_web_url("s3://bucket/7.jpg"));
    }
}
