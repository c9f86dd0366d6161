//! `GET /api/v1/admin/audit` (admins): the audit log, newest first, `?room=` and `?actor=`
//! narrowing it.

use axum::extract::State;
use livegate_core::db::audit::{self, AuditEntry, AuditFilter};
use serde::{Deserialize, Serialize};

use super::{admin_only, id_cursor, page_of};
use crate::auth::Caller;
use crate::error::{ApiError, Query};
use crate::routes::rooms::view::{page_size, Page};
use crate::state::AppState;

/// The query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    cursor: Option<String>,
    limit: Option<u32>,
    room: Option<i64>,
    actor: Option<i64>,
}

/// Who did it.
#[derive(Debug, Serialize)]
pub struct Actor {
    id: i64,
    /// Empty when the account is gone.
    username: String,
    /// The role their token carried.
    role: String,
}

/// One entry.
#[derive(Debug, Serialize)]
pub struct AuditView {
    id: i64,
    /// Unix milliseconds.
    at: i64,
    actor: Actor,
    /// `METHOD /api/v1/route/{template}`.
    action: String,
    /// The path parameters, `id=42 user_id=7`.
    target: String,
    /// The room the route names, if any.
    room_id: Option<i64>,
    /// The answer's HTTP status.
    status: i32,
    /// The error's code and message, or the outcome (`kicked: failed`).
    detail: Option<String>,
}

impl From<AuditEntry> for AuditView {
    fn from(entry: AuditEntry) -> Self {
        Self {
            id: entry.id,
            at: entry.at,
            actor: Actor {
                id: entry.actor_id,
                username: entry.actor_username.unwrap_or_default(),
                role: entry.actor_role,
            },
            action: entry.action,
            target: entry.target,
            room_id: entry.room_id,
            status: entry.status,
            detail: entry.detail,
        }
    }
}

fn positive(value: Option<i64>, field: &str) -> Result<Option<i64>, ApiError> {
    match value {
        Some(id) if id <= 0 => Err(ApiError::invalid(field, "must be a positive id")),
        other => Ok(other),
    }
}

/// The audit log.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<AuditQuery>,
) -> Result<axum::Json<Page<AuditView>>, ApiError> {
    admin_only(&caller)?;
    let limit = page_size(query.limit)?;
    let filter = AuditFilter {
        room_id: positive(query.room, "room")?,
        actor_id: positive(query.actor, "actor")?,
    };
    let before = id_cursor(query.cursor.as_deref())?;
    let found = audit::page(state.db(), filter, before, limit + 1).await?;
    Ok(axum::Json(page_of(found, limit, |e| e.id, AuditView::from)))
}
