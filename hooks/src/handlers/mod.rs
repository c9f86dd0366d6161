//! The hook routes: one per event the three origins send, all feeding one pipeline —
//! caller check, dialect detection, processing within the deadline, reply in the dialect.

mod play;
mod publish;
mod recording;
mod server;

use std::net::SocketAddr;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, RawQuery, State};
use axum::response::Response;
use axum::routing::{on, MethodFilter};
use axum::Router;
use livegate_core::db::DbError;

use crate::config::DbDownPolicy;
use crate::dialect::{self, query_param, Dialect, Event, Hook, ParseOptions};
use crate::metrics::HookLabels;
use crate::reply::{self, Decision, Refusal};
use crate::state::AppState;

pub use publish::close_streams;
pub(crate) use publish::{announce_closed, close_stream};

/// Every route, `/api/v1/hook/<event>`: SRS (`on_publish` … `on_hls`), ZLMediaKit
/// (`on_publish` … `on_server_keepalive`), nginx-rtmp (`on_publish` … `on_record_done`), and the
/// design's generic `on_close` (publish stop in any dialect).
pub const EVENTS: &[&str] = &[
    // Shared by several origins.
    "on_publish",
    "on_play",
    "on_close",
    // SRS.
    "on_connect",
    "on_unpublish",
    "on_stop",
    "on_dvr",
    "on_hls",
    // ZLMediaKit.
    "on_stream_changed",
    "on_stream_none_reader",
    "on_stream_not_found",
    "on_record_mp4",
    "on_record_ts",
    "on_flow_report",
    "on_server_started",
    "on_server_keepalive",
    "on_server_exited",
    "on_http_access",
    "on_rtsp_realm",
    "on_rtsp_auth",
    "on_shell_login",
    "on_send_rtp_stopped",
    "on_rtp_server_timeout",
    // nginx-rtmp.
    "on_disconnect",
    "on_publish_done",
    "on_play_done",
    "on_done",
    "on_record_done",
    "on_update",
];

/// The hook router.
pub fn router(state: AppState) -> Router {
    let limit = state.config().server.max_body_bytes;
    let mut router = Router::new();
    for event in EVENTS {
        let route: &'static str = event;
        router = router.route(
            &format!("/api/v1/hook/{route}"),
            // nginx-rtmp's `notify_method get` sends GET with its fields in the query.
            on(
                MethodFilter::POST.or(MethodFilter::GET),
                move |state: State<AppState>,
                      peer: ConnectInfo<SocketAddr>,
                      query: RawQuery,
                      body: Bytes| handle(state, peer, query, body, route),
            ),
        );
    }
    router.layer(DefaultBodyLimit::max(limit)).with_state(state)
}

async fn handle(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    body: Bytes,
    route: &'static str,
) -> Response {
    let started = Instant::now();
    let metrics = state.metrics().clone();
    let count = |dialect: &'static str, event: &'static str, outcome: &'static str| {
        metrics
            .hooks
            .get_or_create(&HookLabels {
                dialect,
                event,
                outcome,
            })
            .inc();
        metrics
            .hook_duration
            .observe(started.elapsed().as_secs_f64());
    };

    let (hook_query, fields_query) = split_query(query.as_deref());
    let secret = hook_query.and_then(|q| query_param(q, "secret"));
    if !state.caller_allowed(peer.ip(), secret.as_deref()) {
        tracing::warn!(peer.ip = %peer.ip(), route, "callback from a caller that is not allowed");
        count("unknown", "unknown", "forbidden");
        return reply::forbidden_caller();
    }

    let origin = hook_query.and_then(|q| query_param(q, "origin"));
    let config = state.config();
    let options = ParseOptions {
        key_param: &config.publish.key_param,
        token_param: &config.play.token_param,
        nginx_server: origin.as_deref().unwrap_or(&config.nginx_rtmp.server_id),
    };
    let hook = match dialect::parse(route, &body, fields_query, &options) {
        Ok(hook) => hook,
        Err(err) => {
            tracing::info!(route, error = %err, "callback body not understood");
            count("unknown", "unknown", "bad_request");
            return reply::bad_request(&err.to_string());
        }
    };

    let outcome = match &hook.event {
        Event::PublishStart(start) => {
            publish::start_within(&state, hook.dialect, start, config.deadline()).await
        }
        _ => tokio::time::timeout(config.deadline(), process(&state, &hook))
            .await
            .ok(),
    };
    let decision = match outcome {
        Some(Ok(decision)) => decision,
        Some(Err(err)) => {
            tracing::error!(dialect = hook.dialect.as_str(), hook = %hook.name, error = %err, cause = ?std::error::Error::source(&err), "database failed while handling a callback");
            on_database_failure(&state, &hook, err.is_unavailable())
        }
        None => {
            tracing::error!(dialect = hook.dialect.as_str(), hook = %hook.name, deadline_ms = config.server.deadline_ms, "callback not handled within the deadline");
            // Too slow to answer in time counts as unreachable.
            on_database_failure(&state, &hook, true)
        }
    };

    let outcome = match &decision {
        Decision::Accept | Decision::Granted { .. } => "accepted",
        Decision::Refuse(_) => "refused",
        Decision::Unavailable => "unavailable",
    };
    let duration_us = started.elapsed().as_micros() as u64;
    match &decision {
        Decision::Refuse(refusal) => tracing::info!(
            dialect = hook.dialect.as_str(),
            hook = %hook.name,
            outcome,
            reason = refusal.label(),
            duration_us,
            "callback refused"
        ),
        _ => tracing::debug!(
            dialect = hook.dialect.as_str(),
            hook = %hook.name,
            outcome,
            duration_us,
            "callback handled"
        ),
    }
    count(hook.dialect.as_str(), hook.event.label(), outcome);
    match hook.event {
        Event::HttpAccess(_) => reply::render_http_access(&decision),
        Event::RtspRealm if decision == Decision::Accept => reply::rtsp_realm(),
        Event::NoneReader if decision == Decision::Accept => reply::keep_stream(),
        _ => reply::render(hook.dialect, &decision),
    }
}

/// Splits a request's query into the hook URL's own query (`secret`, `origin`) and the
/// callback's fields. nginx-rtmp with `notify_method get` always inserts `?` before its
/// fields, so a hook URL that already has a query arrives as
/// `/on_publish?secret=X?app=live&…`. The module's fields always begin with `app=`, and the
/// publisher's own query follows them verbatim, `?` and all: the split is at the `?` before
/// the first `app=`, never at a `?` the publisher wrote (which would let a publisher supply
/// every field, `call` included). A query that starts with the fields has no hook query;
/// one without an embedded `?` is both.
fn split_query(query: Option<&str>) -> (Option<&str>, Option<&str>) {
    const FIELDS_START: &str = "app=";
    let Some(query) = query else {
        return (None, None);
    };
    if query.starts_with(FIELDS_START) {
        return (None, Some(query));
    }
    match query
        .find(&format!("?{FIELDS_START}"))
        .map(|at| (&query[..at], &query[at + 1..]))
        .or_else(|| query.split_once('?'))
    {
        Some((hook, fields)) => (Some(hook), Some(fields)),
        None => (Some(query), Some(query)),
    }
}

/// The failure policy: a publish follows `publish.when_db_down` when the database cannot be
/// reached (or not in time); a query that failed is refused whatever the policy, since
/// letting the publisher through would leave it live and unrecorded for a fault that is not
/// an outage. Every other callback is a notification or a play (which needs no database) and
/// is answered "unavailable".
fn on_database_failure(state: &AppState, hook: &Hook, unreachable: bool) -> Decision {
    match hook.event {
        Event::PublishStart(_)
            if unreachable && state.config().publish.when_db_down == DbDownPolicy::Allow =>
        {
            tracing::warn!(hook = %hook.name, "database down: publish let through unrecorded (publish.when_db_down = allow)");
            Decision::Accept
        }
        _ => Decision::Unavailable,
    }
}

async fn process(state: &AppState, hook: &Hook) -> Result<Decision, DbError> {
    match &hook.event {
        Event::PublishStart(start) => {
            publish::start_within(state, hook.dialect, start, state.config().deadline())
                .await
                .unwrap_or(Ok(Decision::Unavailable))
        }
        Event::PublishStop(stop) => publish::stop(state, stop).await,
        Event::ServerStarted(started) => server::started(state, started).await,
        Event::Keepalive(keepalive) => server::keepalive(state, keepalive).await,
        // ZLMediaKit reports no viewer stops below `flowThreshold`: its viewers are counted
        // from its API's reader counts instead (reconcile::zlm).
        Event::PlayStart(play) => Ok(play::start(state, play, hook.dialect != Dialect::Zlm)),
        Event::PlayStop(_) if hook.dialect == Dialect::Zlm => Ok(Decision::Accept),
        Event::PlayStop(play) => Ok(play::stop(state, play)),
        Event::HttpAccess(play) => Ok(play::http_access(state, play)),
        Event::Recording(recording) => recording::finished(state, hook.dialect, recording).await,
        Event::RtspRealm | Event::NoneReader | Event::Acknowledge => Ok(Decision::Accept),
        Event::Deny => Ok(Decision::Refuse(Refusal::NotSupported)),
    }
}

/// A stream name as a room id: canonical decimal that fits the database's id type.
fn room_id(stream: &str) -> Option<i64> {
    livegate_core::token::parse_room_id(stream).and_then(|id| i64::try_from(id).ok())
}

#[cfg(test)]
mod tests {
    use super::split_query;

    #[test]
    fn an_embedded_question_mark_separates_the_hook_query_from_nginx_fields() {
        assert_eq!(
            split_query(Some("secret=s?app=live&call=publish")),
            (Some("secret=s"), Some("app=live&call=publish"))
        );
        assert_eq!(
            split_query(Some("origin=a")),
            (Some("origin=a"), Some("origin=a"))
        );
        assert_eq!(split_query(None), (None, None));
    }

    #[test]
    fn a_question_mark_in_the_publishers_query_does_not_split_the_fields() {
        // A hook URL without a query: nothing before the fields, whatever the publisher sent.
        let fields = "app=live&addr=1.2.3.4&clientid=1&call=publish&name=3&type=live\
                      &x?call=play_done&name=3&clientid=1";
        assert_eq!(split_query(Some(fields)), (None, Some(fields)));
        // With a hook query: the split is before the module's fields, not the publisher's.
        let with_hook = format!("origin=a&secret=s?{fields}");
        assert_eq!(
            split_query(Some(&with_hook)),
            (Some("origin=a&secret=s"), Some(fields))
        );
        let forged = format!("origin=a?{fields}&y?app=evil&call=play");
        assert_eq!(split_query(Some(&forged)).0, Some("origin=a"));
    }
}
