//! The admin listener: `/metrics`, `/healthz` (the process runs) and `/readyz` (the database
//! answers; the bus is reported but, being optional for correctness, does not fail it).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use livegate_core::telemetry::{render_metrics, METRICS_CONTENT_TYPE};
use prometheus_client::registry::Registry;

use crate::state::AppState;

#[derive(Clone)]
struct Admin {
    state: AppState,
    registry: Arc<Registry>,
}

/// The admin router.
pub fn router(state: AppState, registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(Admin { state, registry })
}

async fn metrics(State(admin): State<Admin>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        render_metrics(&admin.registry),
    )
}

async fn ready(State(admin): State<Admin>) -> impl IntoResponse {
    let deadline = admin.state.config().deadline();
    let db = matches!(
        tokio::time::timeout(deadline, admin.state.db().ping()).await,
        Ok(Ok(()))
    );
    let bus = matches!(
        tokio::time::timeout(deadline, admin.state.bus().ping()).await,
        Ok(Ok(()))
    );
    let status = if db {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = |ok: bool| if ok { "ok" } else { "down" };
    (
        status,
        format!("database {}\nbus {}\n", word(db), word(bus)),
    )
}
