//! Writes chat messages to the database in batches, off the path that delivers them: a send
//! only queues its row, a task writes what queued every `chat.store_interval_ms`.
//!
//! What a crash can lose is what was queued but not written (at most one interval's worth,
//! and never more than `chat.store_queue` rows); those messages are still in the room's bus
//! log, which keeps the last `chat.history_len`.

use std::sync::Mutex;
use std::time::Duration;

use livegate_core::db::messages::{self, NewMessage};
use livegate_core::db::Database;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Rows written per statement at most.
const BATCH: usize = messages::MAX_BATCH;

/// The queue of rows to write.
#[derive(Debug)]
pub struct Store {
    db: Database,
    queue: mpsc::Sender<NewMessage>,
    // Taken once by the writer task.
    pending: Mutex<Option<mpsc::Receiver<NewMessage>>>,
    not_stored: Counter,
}

impl Store {
    /// A queue of at most `capacity` rows for `db`.
    pub fn new(db: Database, capacity: usize, not_stored: Counter) -> Self {
        let (queue, pending) = mpsc::channel(capacity.max(1));
        Self {
            db,
            queue,
            pending: Mutex::new(Some(pending)),
            not_stored,
        }
    }

    /// Queues a row; when the queue is full the message stays only in the bus log.
    pub fn enqueue(&self, message: NewMessage) {
        if let Err(err) = self.queue.try_send(message) {
            self.not_stored.inc();
            let room = match &err {
                mpsc::error::TrySendError::Full(m) | mpsc::error::TrySendError::Closed(m) => {
                    m.room_id
                }
            };
            tracing::warn!(
                room.id = room,
                "chat message not stored: the store queue is full"
            );
        }
    }

    /// Deletes a room's stored messages.
    pub async fn clear(&self, room: i64) {
        if let Err(err) = messages::clear_room(&self.db, room).await {
            tracing::warn!(room.id = room, error = %err, "stored chat messages not cleared");
        }
    }

    /// The writer: every `interval`, what is queued; on `stop`, what is left, then returns.
    pub async fn run(&self, interval: Duration, stop: CancellationToken) {
        let taken = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let Some(mut pending) = taken else {
            return;
        };
        let mut batch = Vec::with_capacity(BATCH);
        let mut tick = tokio::time::interval(interval);
        loop {
            let stopping = tokio::select! {
                _ = tick.tick() => false,
                () = stop.cancelled() => true,
            };
            // Never waits: a non-empty queue hands out what it holds at once.
            while !pending.is_empty() {
                pending.recv_many(&mut batch, BATCH).await;
                self.write(&mut batch).await;
            }
            if stopping {
                return;
            }
        }
    }

    async fn write(&self, batch: &mut Vec<NewMessage>) {
        if let Err(err) = messages::insert_batch(&self.db, batch).await {
            // Still in the bus log for recovery; the database misses them.
            self.not_stored
                .inc_by(u64::try_from(batch.len()).unwrap_or(u64::MAX));
            tracing::warn!(count = batch.len(), error = %err, "chat messages not stored");
        }
        batch.clear();
    }
}
