//! The runtime every service shares, so that each tells one story:
//!
//! - [`Shutdown`]: one cancellation token and one task tracker for the whole process.
//!   SIGTERM asks for a drain, SIGINT for an immediate stop ([`Signals`]).
//! - [`Drain`]: the shutdown sequence, steps that share **one** deadline (the grace period):
//!   each step gets what the steps before it left.
//! - [`admin`]: the admin listener (`/metrics`, `/healthz`, `/readyz` with named checks).
//! - [`http`]: serving a router with deadlines for request heads and idle connections and a
//!   cap on head size ([`HttpLimits`]), each connection a tracked task.
//! - [`bind`]: listeners whose errors name the configuration key and the address.
//! - [`ConfigArgs`]: `-c/--config` and `LIVEGATE_<SERVICE>_CONFIG`, the same for every binary,
//!   with the exit code 64 (`EX_USAGE`) for an unusable configuration.
//! - [`Readiness`]: the named checks behind `/readyz`, and their [`ReadyReport`].
//! - [`RunError`]: why a service's process ended, around the service's own start error.
//!
//! With the `service-parts` feature alone (a binary whose servers run on a runtime of their
//! own, like the proxy on Pingora's) only [`ConfigArgs`], [`Readiness`] and [`bind`] are
//! here; `service` adds the rest.

#[cfg(feature = "service")]
pub mod admin;
mod cli;
#[cfg(feature = "service")]
pub mod http;
mod listen;
mod ready;
#[cfg(feature = "service")]
mod run_error;
#[cfg(feature = "service")]
mod shutdown;

pub use self::cli::{ConfigArgs, ConfigFailure, OnDefaults, EX_USAGE};
#[cfg(feature = "service")]
pub use self::http::HttpLimits;
pub use self::listen::{bind, bind_std, BindError};
pub use self::ready::{Check, CheckFuture, Readiness, ReadyReport};
#[cfg(feature = "service")]
pub use self::run_error::RunError;
#[cfg(feature = "service")]
pub use self::shutdown::{Drain, Shutdown, Signals, Stop};
#[cfg(feature = "service")]
pub use tokio_util::sync::CancellationToken;
#[cfg(feature = "service")]
pub use tokio_util::task::TaskTracker;
