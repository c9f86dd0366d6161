//! Readiness: named checks of what a service depends on (the database answers, the bus
//! answers, an origin is healthy), run together, each bounded by one timeout, and reported
//! as `{"ready":false,"checks":{"database":"ok","bus":"unavailable: …"}}`. The kit's admin
//! router serves the report on `/readyz`; a server on another runtime (the proxy's Pingora
//! admin service) serves the same report with [`ReadyReport::status_code`] and
//! [`ReadyReport::to_json`].

use std::collections::BTreeMap;
use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

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

impl ReadyReport {
    /// The HTTP status of the report: 200 when ready, 503 otherwise.
    pub fn status_code(&self) -> u16 {
        if self.ready {
            200
        } else {
            503
        }
    }

    /// The report as the JSON body of `/readyz`.
    pub fn to_json(&self) -> String {
        // Strings and booleans only: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| format!("{{\"ready\":{}}}", self.ready))
    }
}
