//! The outbox relay: brings each paid gift from the database outbox to the room's gift log
//! on the bus, once. It appends with `append_once` under the order id before marking the row
//! relayed, so a relay that dies in between appends again on restart and the log keeps one
//! copy. After a batch it rebuilds the leaderboards of the rooms it relayed gifts for. Woken
//! by the callback that paid an order, and every `payments.relay_interval_ms` for rows an
//! earlier process left.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use livegate_core::bus::{gifts, GiftEvent};
use livegate_core::db::{idempotency, now_ms, orders, payments};
use livegate_core::service::CancellationToken;
use tokio::sync::Notify;

use crate::error::ApiError;
use crate::state::AppState;

/// Wakes the relay. Clones share it.
#[derive(Debug, Clone, Default)]
pub struct RelayWake(Arc<Notify>);

impl RelayWake {
    /// Asks the relay to look at the outbox now.
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// How often the orders are counted by status for the metrics.
const COUNT_EVERY: Duration = Duration::from_secs(15);

/// Sets `livegate_api_orders{status}`.
async fn count_orders(state: &AppState) {
    match orders::count_by_status(state.db()).await {
        Ok(counts) => {
            // A status no order has any more reads 0, not its last count.
            for status in ["pending", "paid", "failed", "expired"] {
                let count = counts
                    .iter()
                    .find(|(s, _)| s == status)
                    .map_or(0, |(_, n)| *n);
                state
                    .metrics()
                    .orders
                    .get_or_create(&crate::metrics::OrderLabels {
                        status: status.to_owned(),
                    })
                    .set(count);
            }
            for (status, count) in counts {
                state
                    .metrics()
                    .orders
                    .get_or_create(&crate::metrics::OrderLabels { status })
                    .set(count);
            }
        }
        Err(err) => tracing::warn!(error = %err, "counting orders failed"),
    }
}

/// How often expired `Idempotency-Key` answers are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(600);

/// Deletes the `Idempotency-Key` answers past `payments.idempotency_ttl_s` (lookups ignore
/// them already: this only keeps the table from growing).
async fn purge_idempotency_keys(state: &AppState) {
    let before = super::idempotency::not_before(state, now_ms());
    match idempotency::purge(state.db(), before).await {
        Ok(0) => {}
        Ok(deleted) => tracing::info!(deleted, "expired idempotency keys deleted"),
        Err(err) => tracing::warn!(error = %err, "deleting expired idempotency keys failed"),
    }
}

/// Runs the relay (and the idempotency key purge and the order count, as small jobs) until
/// `stop`.
pub async fn run(state: AppState, stop: CancellationToken) {
    let interval = Duration::from_millis(state.config().payments.relay_interval_ms);
    let batch = state.config().payments.relay_batch;
    let wake = state.relay_wake().0.clone();
    let mut next_purge = tokio::time::Instant::now();
    let mut next_count = tokio::time::Instant::now();
    loop {
        if tokio::time::Instant::now() >= next_count {
            count_orders(&state).await;
            next_count = tokio::time::Instant::now() + COUNT_EVERY;
        }
        if tokio::time::Instant::now() >= next_purge {
            purge_idempotency_keys(&state).await;
            next_purge = tokio::time::Instant::now() + PURGE_EVERY;
        }
        let full = match relay_batch(&state, batch).await {
            Ok(relayed) => relayed == batch as usize,
            Err(_) => false, // logged where it failed; retried on the next round
        };
        if full {
            continue;
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// Relays up to `batch` outbox rows; returns how many.
pub async fn relay_batch(state: &AppState, batch: u32) -> Result<usize, ApiError> {
    let pending = payments::unrelayed(state.db(), batch).await?;
    let log = state.bus().gift_events();
    let mut boards = BTreeSet::new();
    let mut appended_rows = Vec::with_capacity(pending.len());
    for entry in &pending {
        let event: GiftEvent = match serde_json::from_str(&entry.payload) {
            Ok(event) => event,
            Err(err) => {
                // Written by this service: undecodable means a bug, not bad input. Marked so
                // that one bad row does not stop every gift after it.
                tracing::error!(order.id = entry.order_id, error = %err, "undecodable gift event in the outbox");
                payments::mark_relayed(state.db(), entry.id, now_ms()).await?;
                continue;
            }
        };
        let (position, appended) = log
            .append_once(
                &gifts::room_key(entry.room_id),
                &entry.order_id.to_string(),
                &event,
            )
            .await?;
        boards.insert((event.room_id, event.currency));
        appended_rows.push(entry.id);
        tracing::debug!(
            order.id = entry.order_id,
            room.id = entry.room_id,
            log.offset = position.offset,
            appended,
            "gift relayed"
        );
    }
    // The orders are paid before their outbox rows exist, so these rebuilds count every gift
    // just appended. The rows are marked only after them: a relay killed (or a bus failing)
    // before then finds the rows again, appends nothing new, and rebuilds again.
    for (room_id, currency) in boards {
        super::leaderboard::rebuild(state, room_id, &currency).await?;
    }
    for id in appended_rows {
        payments::mark_relayed(state.db(), id, now_ms()).await?;
        state.metrics().gifts_relayed.inc();
    }
    Ok(pending.len())
}
