//! `GET /api/v1/admin/health` (admins): the database, the bus, every configured origin and
//! the recordings storage, each checked now with its latency; and the proxy's, the hooks
//! service's and the recorder's numbers from their `/metrics` where `[console]` names them
//! (a service that does not answer is a failed check).

use std::future::Future;
use std::time::{Duration, Instant};

use axum::extract::State;
use futures_util::future::join_all;
use livegate_core::origin::OriginError;
use serde::Serialize;

use super::admin_only;
use crate::auth::Caller;
use crate::console::scrape::{HooksNumbers, Numbers, ProxyNumbers, RecorderNumbers};
use crate::error::ApiError;
use crate::state::AppState;

/// One check.
#[derive(Debug, Serialize)]
pub struct Check {
    /// `database`, `bus`, `origin srs srs-1`, `storage`, `proxy`, `hooks`, `recorder`.
    name: String,
    /// Whether it answered as it should.
    ok: bool,
    /// What it said, or why it failed.
    detail: String,
    /// How long it took.
    latency_ms: u64,
}

/// The health page.
#[derive(Debug, Serialize)]
pub struct Health {
    /// Whether every check passed.
    ok: bool,
    /// The checks.
    checks: Vec<Check>,
    /// The proxy's numbers, when its metrics URL is configured and it answered.
    proxy: Option<ProxyNumbers>,
    /// The hooks service's numbers.
    hooks: Option<HooksNumbers>,
    /// The recorder's numbers.
    recorder: Option<RecorderNumbers>,
}

/// Runs `probe` within `timeout`, timed.
async fn timed<F, E>(name: String, timeout: Duration, probe: F, ok_detail: &str) -> Check
where
    F: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let started = Instant::now();
    let outcome = tokio::time::timeout(timeout, probe).await;
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (ok, detail) = match outcome {
        Ok(Ok(())) => (true, ok_detail.to_owned()),
        Ok(Err(err)) => (false, err.to_string()),
        Err(_) => (
            false,
            format!("no answer within {} ms", timeout.as_millis()),
        ),
    };
    Check {
        name,
        ok,
        detail,
        latency_ms,
    }
}

async fn origin_checks(state: &AppState, timeout: Duration) -> Vec<Check> {
    let entries = state.origins().entries();
    join_all(entries.iter().map(|entry| async move {
        let name = match &entry.server_id {
            Some(server) => format!("origin {} {server}", entry.kind.as_str()),
            None => format!("origin {}", entry.kind.as_str()),
        };
        let started = Instant::now();
        let outcome = tokio::time::timeout(timeout, entry.control.stats()).await;
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (ok, detail) = match outcome {
            Ok(Ok(stats)) => (
                true,
                format!("its API answered ({} streams)", stats.streams.len()),
            ),
            // nginx-rtmp without a stat URL has nothing to ask: not checked, not failed.
            Ok(Err(OriginError::Unsupported(what))) => {
                (true, format!("not checked: its API has no {what}"))
            }
            Ok(Err(err)) => (false, err.to_string()),
            Err(_) => (
                false,
                format!("no answer within {} ms", timeout.as_millis()),
            ),
        };
        Check {
            name,
            ok,
            detail,
            latency_ms,
        }
    }))
    .await
}

/// The health page.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<Health>, ApiError> {
    admin_only(&caller)?;
    let timeout = Duration::from_millis(state.config().console.check_timeout_ms);
    let database = timed(
        "database".to_owned(),
        timeout,
        state.db().ping(),
        "answered",
    );
    let bus = timed("bus".to_owned(), timeout, state.bus().ping(), "answered");
    let storage = async {
        match state.console().storage() {
            Some(store) => Some(
                timed(
                    "storage".to_owned(),
                    timeout,
                    store.check(),
                    &format!("{} storage answered", store.kind()),
                )
                .await,
            ),
            None => None,
        }
    };
    let (database, bus, origins, storage, scraped) = tokio::join!(
        database,
        bus,
        origin_checks(&state, timeout),
        storage,
        state.console().scrapes().all()
    );
    let mut checks = vec![database, bus];
    checks.extend(origins);
    checks.extend(storage);
    let (mut proxy, mut hooks, mut recorder) = (None, None, None);
    for scrape in scraped {
        checks.push(Check {
            name: scrape.service.name().to_owned(),
            ok: scrape.ok,
            detail: scrape.detail,
            latency_ms: scrape.latency_ms,
        });
        match scrape.numbers {
            Some(Numbers::Proxy(numbers)) => proxy = Some(numbers),
            Some(Numbers::Hooks(numbers)) => hooks = Some(numbers),
            Some(Numbers::Recorder(numbers)) => recorder = Some(numbers),
            None => {}
        }
    }
    Ok(axum::Json(Health {
        ok: checks.iter().all(|check| check.ok),
        checks,
        proxy,
        hooks,
        recorder,
    }))
}
