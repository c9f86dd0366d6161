//! ZLMediaKit's server notices: a process started, a process is alive.

use livegate_core::db::{now_ms, DbError};

use crate::dialect::{Keepalive, ServerStarted};
use crate::reconcile;
use crate::reply::Decision;
use crate::state::AppState;

/// A process announced itself (before binding its ports): remember its layout, then close
/// what its API confirms is gone.
pub(super) async fn started(
    state: &AppState,
    started: &ServerStarted,
) -> Result<Decision, DbError> {
    let now = now_ms();
    state
        .zlm_servers()
        .started(&started.server_id, started.layout.clone(), now);
    reconcile::zlm::server_started(state, &started.server_id, now).await?;
    Ok(Decision::Accept)
}

/// A process is alive: note it, and close what an earlier process left open.
pub(super) async fn keepalive(
    state: &AppState,
    keepalive: &Keepalive,
) -> Result<Decision, DbError> {
    reconcile::zlm::keepalive(state, keepalive).await?;
    Ok(Decision::Accept)
}
