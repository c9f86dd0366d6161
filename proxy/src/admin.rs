//! The admin listener: Prometheus metrics and health, kept off the viewer-facing port. It is
//! a Pingora service (the proxy runs on Pingora's runtime), answering like the kit's admin
//! router: `/metrics` from the kit's [`Registry`], `/healthz`, and `/readyz` with the kit's
//! [`Readiness`] report, here one named check: `origin` (at least one origin is healthy); and
//! `POST /cache/purge` (`?room=ID` for one room) to drop cached HLS answers, and
//! `/revocations` to refuse a room's tokens in this process, and `/viewers` with each room's
//! viewers here.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{header, Method, Response, StatusCode};
use livegate_core::service::Readiness;
use livegate_core::telemetry::{Registry, METRICS_CONTENT_TYPE};
use pingora::apps::http_app::ServeHttp;
use pingora::lb::selection::Consistent;
use pingora::lb::LoadBalancer;
use pingora::protocols::http::ServerSession;
use tracing::info;

use livegate_core::bus::Revocation;
use livegate_core::unix_now;

use crate::cache::HlsCache;
use crate::metrics::Metrics;
use crate::revocation::RevocationList;
use crate::viewers::ViewerCounts;

/// How far ahead an admin revocation without a time reaches: the API's default play-token
/// lifetime. Every token issued so far (with that lifetime) expires by then and every later one
/// after, so viewers who fetch a new token play again at once; a longer reach would refuse
/// those too until it passed.
const DEFAULT_REVOCATION_S: u64 = 3600;

/// Longest a readiness check may take; the origin check only reads the health checks' results.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves `/metrics`, `/healthz` (the process answers), `/readyz` (an origin is healthy) and
/// the cache purge.
pub struct AdminApp {
    registry: Arc<Registry>,
    readiness: Readiness,
    cache: Option<Arc<HlsCache>>,
    revocations: Arc<RevocationList>,
    viewers: Arc<ViewerCounts>,
    metrics: Arc<Metrics>,
}

impl AdminApp {
    /// Serves `registry`, reports readiness from `origins` and purges `cache`.
    pub fn new(
        registry: Arc<Registry>,
        origins: Arc<LoadBalancer<Consistent>>,
        cache: Option<Arc<HlsCache>>,
        revocations: Arc<RevocationList>,
        viewers: Arc<ViewerCounts>,
        metrics: Arc<Metrics>,
    ) -> AdminApp {
        let readiness = Readiness::new(CHECK_TIMEOUT).check("origin", move || {
            let healthy = any_origin_healthy(&origins);
            std::future::ready(if healthy {
                Ok(())
            } else {
                Err("no healthy origin")
            })
        });
        AdminApp {
            registry,
            readiness,
            cache,
            revocations,
            viewers,
            metrics,
        }
    }

    /// `GET /viewers`: each room's viewers on this edge.
    fn viewers(&self) -> Response<Vec<u8>> {
        let rooms: Vec<String> = self
            .viewers
            .snapshot()
            .iter()
            .map(|room| {
                format!(
                    "{{\"room_id\":{},\"flv\":{},\"hls\":{}}}",
                    room.room_id, room.flv, room.hls
                )
            })
            .collect();
        text(
            StatusCode::OK,
            "application/json",
            format!("[{}]\n", rooms.join(",")),
        )
    }

    /// `POST /revocations?room=ID[&tokens_expiring_by=UNIX]`: refuses the room's tokens that
    /// expire by then (default: an hour from now, the API's token lifetime) in this process;
    /// `GET /revocations` lists the entries in force.
    fn revocations(&self, method: &Method, query: Option<&str>) -> Response<Vec<u8>> {
        if method == Method::GET {
            let entries: Vec<String> = self
                .revocations
                .entries()
                .iter()
                .map(|entry| {
                    format!(
                        "{{\"room_id\":{},\"tokens_expiring_by\":{}}}",
                        entry.room_id, entry.tokens_expiring_by
                    )
                })
                .collect();
            return text(
                StatusCode::OK,
                "application/json",
                format!("[{}]\n", entries.join(",")),
            );
        }
        if method != Method::POST {
            return text(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "use GET or POST\n",
            );
        }
        let (mut room, mut until) = (None, None);
        for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            let slot = match name.as_ref() {
                "room" => &mut room,
                "tokens_expiring_by" => &mut until,
                _ => continue,
            };
            match value.parse::<u64>() {
                Ok(number) => *slot = Some(number),
                Err(_) => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        "text/plain",
                        format!("{name}: must be an unsigned integer\n"),
                    )
                }
            }
        }
        let Some(room_id) = room else {
            return text(StatusCode::BAD_REQUEST, "text/plain", "room: required\n");
        };
        let tokens_expiring_by = until.unwrap_or_else(|| unix_now() + DEFAULT_REVOCATION_S);
        let applied = self.revocations.apply(Revocation {
            room_id,
            tokens_expiring_by,
        });
        info!(
            room = room_id,
            tokens_expiring_by, applied, "room revoked from the admin port"
        );
        text(
            StatusCode::OK,
            "application/json",
            format!(
                "{{\"room_id\":{room_id},\"tokens_expiring_by\":{tokens_expiring_by},\"applied\":{applied}}}\n"
            ),
        )
    }

    /// `POST /cache/purge[?room=ID]`: drops the room's cached answers, or every one.
    fn purge(&self, method: &Method, query: Option<&str>) -> Response<Vec<u8>> {
        if method != Method::POST {
            return text(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "use POST\n");
        }
        let mut room = None;
        for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match (name.as_ref(), value.parse::<u64>()) {
                ("room", Ok(id)) => room = Some(id),
                ("room", Err(_)) => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        "text/plain",
                        "room: must be a room id (an unsigned integer)\n",
                    )
                }
                _ => {}
            }
        }
        let purged = self.cache.as_ref().map_or(0, |cache| cache.purge(room));
        self.metrics.cache_purged.inc_by(purged as u64);
        info!(room, purged, "cache purged");
        text(
            StatusCode::OK,
            "application/json",
            format!("{{\"purged\":{purged}}}\n"),
        )
    }
}

fn any_origin_healthy(origins: &LoadBalancer<Consistent>) -> bool {
    let backends = origins.backends();
    backends
        .get_backend()
        .iter()
        .any(|backend| backends.ready(backend))
}

fn text(status: StatusCode, content_type: &str, body: impl Into<Vec<u8>>) -> Response<Vec<u8>> {
    let body = body.into();
    let length = body.len();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Ok(value) = content_type.parse() {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(header::CONTENT_LENGTH, length.into());
    response
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        // A request pipelined behind this one is answered after it (RFC 9112 §9.3.2), not
        // dropped with the connection.
        session.set_pipelining_enabled(true);
        let request = session.req_header();
        match request.uri.path() {
            "/cache/purge" => return self.purge(&request.method, request.uri.query()),
            "/revocations" => return self.revocations(&request.method, request.uri.query()),
            "/viewers" => return self.viewers(),
            _ => {}
        }
        match session.req_header().uri.path() {
            "/metrics" => text(StatusCode::OK, METRICS_CONTENT_TYPE, self.registry.render()),
            "/healthz" => text(StatusCode::OK, "text/plain", "ok\n"),
            "/readyz" => {
                let report = self.readiness.evaluate().await;
                let status = StatusCode::from_u16(report.status_code())
                    .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                text(status, "application/json", report.to_json())
            }
            _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
        }
    }
}
