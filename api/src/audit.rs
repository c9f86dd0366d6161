//! The audit log's one layer: every state-changing request (any method but `GET`, `HEAD`
//! and `OPTIONS`) that carries a valid access token is written to `audit_log` once it is
//! answered — the actor, the matched route template as the action (`POST
//! /api/v1/rooms/{id}/kick`), its path parameters as the target, the status, and a detail:
//! the error's code and message, or the outcome a handler attached as a [`Detail`]. No
//! handler records anything itself.
//!
//! The entry is written before the answer leaves, so an answered change is in the log; when
//! the database cannot take it, the answer still goes out and the miss is logged.

use axum::extract::{FromRequestParts as _, MatchedPath, RawPathParams, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use livegate_core::db::audit::{self, NewAuditEntry};
use livegate_core::db::now_ms;

use crate::auth::MaybeCaller;
use crate::state::AppState;

/// What an answer says for the audit log beyond its status, carried as a response extension
/// (never sent to the client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detail(pub String);

impl Detail {
    /// A kick's outcome (`kicked`, `failed`, `no_control`, `not_live`).
    pub fn kicked(outcome: &str) -> Self {
        Self(format!("kicked: {outcome}"))
    }
}

fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Records the request if it changes state and its caller is logged in.
pub async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if !changes_state(request.method()) {
        return next.run(request).await;
    }
    let Some(route) = request.extensions().get::<MatchedPath>().cloned() else {
        // No route matched: nothing was changed.
        return next.run(request).await;
    };
    let (mut parts, body) = request.into_parts();
    // An invalid token is refused by the handler and changes nothing: not recorded.
    let Ok(MaybeCaller(Some(caller))) = MaybeCaller::from_request_parts(&mut parts, &state).await
    else {
        return next.run(Request::from_parts(parts, body)).await;
    };
    let params: Vec<(String, String)> = RawPathParams::from_request_parts(&mut parts, &state)
        .await
        .map(|params| {
            params
                .iter()
                .map(|(key, value)| (key.to_owned(), value.to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let action = format!("{} {}", parts.method, route.as_str());
    let response = next.run(Request::from_parts(parts, body)).await;

    let target = params
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(" ");
    let room_id = route
        .as_str()
        .starts_with("/api/v1/rooms/{id}")
        .then(|| params.iter().find(|(key, _)| key == "id"))
        .flatten()
        .and_then(|(_, value)| value.parse::<i64>().ok());
    let detail = response.extensions().get::<Detail>().map(|d| d.0.as_str());
    let entry = NewAuditEntry {
        at: now_ms(),
        actor_id: caller.user_id,
        actor_role: caller.role.as_str(),
        action: &action,
        target: &target,
        room_id,
        status: response.status().as_u16(),
        detail,
    };
    if let Err(err) = audit::record(state.db(), &entry).await {
        tracing::warn!(
            action = %action,
            user.id = caller.user_id,
            status = entry.status,
            error = %err,
            "audit entry not written"
        );
    }
    response
}
