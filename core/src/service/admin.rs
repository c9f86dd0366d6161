//! The admin listener every service runs beside its main one:
//!
//! - `GET /metrics`: the service's [`Registry`] in the Prometheus text format;
//! - `GET /healthz`: 200 while the process answers;
//! - `GET /readyz`: each named check of a [`Readiness`], in a JSON body such as
//!   `{"ready":false,"checks":{"database":"ok","bus":"unavailable: …"}}`, 200 when every
//!   deciding check passed and 503 otherwise.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::future::{Future, IntoFuture as _};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::telemetry::{Registry, METRICS_CONTENT_TYPE};

/// What a check's future resolves to: `Err` says what is wrong.
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// One readiness check (the database answers, the bus answers, the origin answers, storage
/// is writable). Any `Fn() -> impl Future<Output = Result<(), E>>` with `E: Display` is one:
///
/// ```ignore
/// Readiness::new(timeout).check("database", move || {
///     let db = db.clone();
///     async move { db.ping().await }
/// })
/// ```
pub trait Check: Send + Sync {
    /// Runs the check once.
    fn check(&self) -> CheckFuture<'_>;
}

impl<F, Fut, E> Check for F
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Display,
{
    fn check(&self) -> CheckFuture<'_> {
        let checked = self();
        Box::pin(async move { checked.await.map_err(|err| err.to_string()) })
    }
}

/// Named checks, run together, each bounded by one timeout.
#[derive(Clone)]
pub struct Readiness {
    timeout: Duration,
    checks: Vec<Named>,
}

#[derive(Clone)]
struct Named {
    name: String,
    check: Arc<dyn Check>,
    /// Whether a failure makes the service not ready (else it is only reported).
    decides: bool,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.checks.iter().map(|c| c.name.as_str()).collect();
        f.debug_struct("Readiness")
            .field("timeout", &self.timeout)
            .field("checks", &names)
            .finish()
    }
}

/// The outcome of every check: the body of `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadyReport {
    /// Whether every deciding check passed.
    pub ready: bool,
    /// `ok`, or `unavailable: <why>`, by check name.
    pub checks: BTreeMap<String, String>,
}

impl Readiness {
    /// No checks yet; each check gets at most `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            checks: Vec::new(),
        }
    }

    /// Adds a check that must pass for the service to be ready.
    pub fn check(mut self, name: &str, check: impl Check + 'static) -> Self {
        self.checks.push(Named {
            name: name.to_owned(),
            check: Arc::new(check),
            decides: true,
        });
        self
    }

    /// Adds a check that is reported but does not decide readiness (a dependency the service
    /// works around, such as a bus whose writes it retries).
    pub fn report_only(mut self, name: &str, check: impl Check + 'static) -> Self {
        self.checks.push(Named {
            name: name.to_owned(),
            check: Arc::new(check),
            decides: false,
        });
        self
    }

    /// Runs every check at once.
    pub async fn evaluate(&self) -> ReadyReport {
        let runs = self.checks.iter().map(|named| async move {
            let outcome = match tokio::time::timeout(self.timeout, named.check.check()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(why)) => Err(why),
                Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
            };
            (named, outcome)
        });
        let outcomes = futures_util::future::join_all(runs).await;
        let mut report = ReadyReport {
            ready: true,
            checks: BTreeMap::new(),
        };
        for (named, outcome) in outcomes {
            let text = match outcome {
                Ok(()) => "ok".to_owned(),
                Err(why) => {
                    if named.decides {
                        report.ready = false;
                    }
                    format!("unavailable: {why}")
                }
            };
            report.checks.insert(named.name.clone(), text);
        }
        report
    }
}

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

/// Serves `router` on `listener` until `stop` is cancelled (then finishes the requests in
/// flight; bound the wait with a [`Drain`](super::Drain) step).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    stop: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(stop.cancelled_owned())
        .into_future()
        .await
}

async fn metrics(State(admin): State<Admin>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        admin.registry.render(),
    )
}

async fn ready(State(admin): State<Admin>) -> impl IntoResponse {
    let report = admin.readiness.evaluate().await;
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::to_string(&report).unwrap_or_else(|_| "{}".to_owned());
    (status, [(header::CONTENT_TYPE, "application/json")], body)
}
