//! The admin listener: Prometheus metrics and health, kept off the viewer-facing port.

use std::sync::Arc;

use async_trait::async_trait;
use http::{header, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::lb::selection::Consistent;
use pingora::lb::LoadBalancer;
use pingora::protocols::http::ServerSession;
use prometheus_client::registry::Registry;

use livegate_core::telemetry::{render_metrics, METRICS_CONTENT_TYPE};

/// Serves `/metrics`, `/healthz` (the process answers) and `/readyz` (an origin is healthy).
pub struct AdminApp {
    registry: Arc<Registry>,
    origins: Arc<LoadBalancer<Consistent>>,
}

impl AdminApp {
    /// Serves `registry` and reports readiness from `origins`.
    pub fn new(registry: Arc<Registry>, origins: Arc<LoadBalancer<Consistent>>) -> AdminApp {
        AdminApp { registry, origins }
    }

    fn any_origin_healthy(&self) -> bool {
        let backends = self.origins.backends();
        backends
            .get_backend()
            .iter()
            .any(|backend| backends.ready(backend))
    }
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
        match session.req_header().uri.path() {
            "/metrics" => text(
                StatusCode::OK,
                METRICS_CONTENT_TYPE,
                render_metrics(&self.registry),
            ),
            "/healthz" => text(StatusCode::OK, "text/plain", "ok\n"),
            "/readyz" if self.any_origin_healthy() => text(StatusCode::OK, "text/plain", "ready\n"),
            "/readyz" => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "no healthy origin\n",
            ),
            _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
        }
    }
}
