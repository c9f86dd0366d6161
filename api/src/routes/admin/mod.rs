//! The operator console's routes: what is live (`/admin/live`, its feed), the health page,
//! the audit log, recordings, payment callbacks and reconciliation, and the room actions
//! the console adds (kick, history). Streamers see their own rooms only, admins everything;
//! viewers are refused.

pub mod audit;
pub mod callbacks;
pub mod health;
pub mod live;
pub mod recordings;

use axum::routing::{get, post};
use axum::Router;

use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::state::AppState;

/// The console's routes under `/api/v1`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/live", get(live::snapshot))
        .route("/admin/live/events", get(live::events))
        .route("/admin/health", get(health::get))
        .route("/admin/audit", get(audit::list))
        .route("/admin/recordings", get(recordings::list))
        .route("/admin/recordings/{id}/retry", post(recordings::retry))
        .route("/rooms/{id}/recordings", get(recordings::of_room))
        .route("/recordings/{id}/download", get(recordings::download))
        .route("/admin/payments/callbacks", get(callbacks::list))
        .route(
            "/admin/orders/{id}/reconcile",
            post(super::orders::reconcile),
        )
        .route("/rooms/{id}/kick", post(super::rooms::kick::kick))
        .route("/rooms/{id}/history", get(super::rooms::history::get))
}

/// Admins only.
pub(crate) fn admin_only(caller: &Caller) -> Result<(), ApiError> {
    if caller.role == Role::Admin {
        Ok(())
    } else {
        Err(ApiError::forbidden("only admins may see this"))
    }
}

/// Whose rooms `caller` sees: `None` for an admin (all), their own for a streamer; viewers
/// are refused.
pub(crate) fn owner_scope(caller: &Caller) -> Result<Option<i64>, ApiError> {
    match caller.role {
        Role::Admin => Ok(None),
        Role::Streamer => Ok(Some(caller.user_id)),
        Role::Viewer => Err(ApiError::forbidden(
            "only streamers (their own rooms) and admins may see this",
        )),
    }
}

/// A listing's cursor: the id after which the next page starts, as the listing handed out.
pub(crate) fn id_cursor(cursor: Option<&str>) -> Result<Option<i64>, ApiError> {
    cursor
        .map(|cursor| {
            cursor
                .parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| {
                    ApiError::invalid("cursor", "is not a cursor this listing handed out")
                })
        })
        .transpose()
}

/// The page of `found` (fetched with one more than `limit`), its cursor the last id shown.
pub(crate) fn page_of<T, V>(
    mut found: Vec<T>,
    limit: u32,
    id: impl Fn(&T) -> i64,
    view: impl FnMut(T) -> V,
) -> super::rooms::view::Page<V> {
    let more = found.len() > limit as usize;
    found.truncate(limit as usize);
    let next_cursor = more
        .then(|| found.last().map(|last| id(last).to_string()))
        .flatten();
    super::rooms::view::Page {
        items: found.into_iter().map(view).collect(),
        next_cursor,
    }
}
