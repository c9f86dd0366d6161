//! The admin listener every service runs beside its main one:
//!
//! - `GET /metrics`: the service's [`Registry`] in the Prometheus text format;
//! - `GET /healthz`: 200 while the process answers;
//! - `GET /readyz`: each named check of a [`Readiness`], in a JSON body such as
//!   `{"ready":false,"checks":{"database":"ok","bus":"unavailable: …"}}`, 200 when every
//!   deciding check passed and 503 otherwise.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{HttpLimits, Readiness};
use crate::telemetry::{Registry, METRICS_CONTENT_TYPE};

#[derive(Clone)]
struct Admin {
    registry: Arc<Registry>,
    readiness: Arc<Readiness>,
}

/// The admin router (for tests with `oneshot`, or to add routes to).
pub fn router(registry: Arc<Registry>, readiness: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(Admin {
            registry,
            readiness: Arc::new(readiness),
        })
}

/// Serves `router` on `listener` with the default [`HttpLimits`] until `stop` is cancelled
/// (then finishes the requests in flight; bound the wait with a [`Drain`](super::Drain)
/// step).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    stop: CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, router, HttpLimits::default(), stop).await
}

/// [`serve`] with the service's own limits (those of its `[server]`).
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    stop: CancellationToken,
) -> std::io::Result<()> {
    super::http::serve(listener, router, limits, stop).await
}

async fn metrics(State(admin): State<Admin>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        admin.registry.render(),
    )
}

async fn ready(State(admin): State<Admin>) -> impl IntoResponse {
    let report = admin.readiness.evaluate().await;
    let status =
        StatusCode::from_u16(report.status_code()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        report.to_json(),
    )
}
