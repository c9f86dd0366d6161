//! Why a service's process ended with an error: the same few ways for every service, around
//! the service's own start error.

use super::BindError;

/// Why a service process ended with an error; `S` is the service's own start error.
#[derive(Debug, thiserror::Error)]
pub enum RunError<S: std::error::Error + 'static> {
    /// The async runtime could not be started.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// A listener could not be opened.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The service could not be built.
    #[error(transparent)]
    Start(S),
    /// The signal handlers could not be installed.
    #[error("cannot listen for signals: {0}")]
    Signals(#[source] std::io::Error),
    /// The service failed while running.
    #[error("failed while serving: {0}")]
    Serve(#[source] std::io::Error),
}
