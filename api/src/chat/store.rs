//! Writes chat messages to the database in batches, off the path that delivers them: a send
//! only queues its row, a task writes what queued every `chat.store_interval_ms`.
//!
//! What a crash can lose is what was queued but not written (at most one interval's worth,
//! and never more than `chat.store_queue` rows); those messages are still in the room's bus
//! log, which keeps the last `chat.history_len`.
//!
//! A moderator's clear or delete reaches the rows still queued, on every instance (see
//! [`cuts`](super::cuts)): each row keeps its place in the room's log, the writer drops the
//! rows a recent cut covers, and a cut that arrives while covered rows were being written
//! deletes them again once they are in.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use livegate_core::bus::Position;
use livegate_core::db::messages::{self, NewMessage};
use livegate_core::db::Database;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::cuts::Cut;

/// Rows written per statement at most.
const BATCH: usize = messages::MAX_BATCH;
/// How long a cut is kept to drop the rows it covers, and a written row to be deleted
/// again by a cut that arrives late: far longer than a row waits in the queue (one
/// interval) or a cut takes to reach every instance.
const MIN_KEEP: Duration = Duration::from_secs(30);

/// A row waiting to be written, with its place in the room's log.
#[derive(Debug, Clone)]
pub struct Queued {
    /// The row.
    pub row: NewMessage,
    /// Where the message is in its room's log.
    pub position: Position,
    /// The order in which rows were queued here: a clear covers rows of an older epoch
    /// only if they were queued before it was heard.
    pub seq: u64,
}

/// The queue of rows to write.
#[derive(Debug)]
pub struct Store {
    db: Database,
    queue: mpsc::Sender<Queued>,
    // Taken once by the writer task.
    pending: Mutex<Option<mpsc::Receiver<Queued>>>,
    next_seq: AtomicU64,
    keep: Duration,
    // Held while a batch is filtered and written, and while a cut is recorded: a cut is
    // either heard before a covered row is filtered out, or after the row is in the
    // database (and then it is deleted again).
    written: tokio::sync::Mutex<Written>,
    follows_cuts: AtomicBool,
    not_stored: Counter,
    cuts_applied: Counter,
}

#[derive(Debug, Default)]
struct Written {
    /// Cuts heard recently, with when and at which queue position.
    cuts: VecDeque<(Instant, u64, Cut)>,
    /// Rows written recently, with when.
    rows: VecDeque<(Instant, Queued)>,
}

impl Written {
    fn prune(&mut self, keep: Duration, most_rows: usize) {
        let now = Instant::now();
        let old = |at: &Instant| now.duration_since(*at) > keep;
        while self.cuts.front().is_some_and(|(at, _, _)| old(at)) {
            self.cuts.pop_front();
        }
        while self.rows.front().is_some_and(|(at, _)| old(at)) || self.rows.len() > most_rows {
            self.rows.pop_front();
        }
    }

    fn covered(&self, row: &Queued) -> bool {
        self.cuts
            .iter()
            .any(|(_, heard_at, cut)| cut.covers(row, *heard_at))
    }
}

impl Store {
    /// A queue of at most `capacity` rows for `db`, written every `interval`.
    pub fn new(
        db: Database,
        capacity: usize,
        interval: Duration,
        not_stored: Counter,
        cuts_applied: Counter,
    ) -> Self {
        let (queue, pending) = mpsc::channel(capacity.max(1));
        Self {
            db,
            queue,
            pending: Mutex::new(Some(pending)),
            next_seq: AtomicU64::new(0),
            keep: MIN_KEEP.max(interval.saturating_mul(4)),
            written: tokio::sync::Mutex::new(Written::default()),
            follows_cuts: AtomicBool::new(false),
            not_stored,
            cuts_applied,
        }
    }

    /// Queues the row of the message at `position`; when the queue is full the message
    /// stays only in the bus log.
    pub fn enqueue(&self, row: NewMessage, position: Position) {
        let queued = Queued {
            row,
            position,
            seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
        };
        if let Err(err) = self.queue.try_send(queued) {
            self.not_stored.inc();
            let room = match &err {
                mpsc::error::TrySendError::Full(q) | mpsc::error::TrySendError::Closed(q) => {
                    q.row.room_id
                }
            };
            tracing::warn!(
                room.id = room,
                "chat message not stored: the store queue is full"
            );
        }
    }

    /// Applies `cut` to the rows of this instance: queued ones are not written, and ones
    /// written meanwhile are deleted. Waits for a batch being written.
    pub async fn cut(&self, cut: &Cut) {
        let mut written = self.written.lock().await;
        written.prune(self.keep, self.queue.max_capacity());
        if !written.cuts.iter().any(|(_, _, known)| known == cut) {
            let heard_at = self.next_seq.load(Ordering::Relaxed);
            written
                .cuts
                .push_back((Instant::now(), heard_at, cut.clone()));
            self.cuts_applied.inc();
        }
        let heard_at = self.next_seq.load(Ordering::Relaxed);
        let (hit, kept): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut written.rows)
            .into_iter()
            .partition(|(_, row)| cut.covers(row, heard_at));
        written.rows = kept;
        for (_, row) in hit {
            self.delete_stored(&row.row).await;
        }
    }

    /// Deletes a room's stored messages.
    pub async fn clear_stored(&self, room: i64) {
        if let Err(err) = messages::clear_room(&self.db, room).await {
            tracing::warn!(room.id = room, error = %err, "stored chat messages not cleared");
        }
    }

    /// Deletes the stored row of one message.
    pub async fn delete_stored(&self, row: &NewMessage) {
        if let Err(err) = messages::delete_matching(&self.db, row).await {
            tracing::warn!(room.id = row.room_id, error = %err, "stored chat message not deleted");
        }
    }

    /// Marks that this instance hears the cuts of the others (or stopped hearing them).
    pub fn set_follows_cuts(&self, follows: bool) {
        self.follows_cuts.store(follows, Ordering::Release);
    }

    /// Whether this instance hears the other instances' clears and deletes now.
    pub fn follows_cuts(&self) -> bool {
        self.follows_cuts.load(Ordering::Acquire)
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

    async fn write(&self, batch: &mut Vec<Queued>) {
        let mut written = self.written.lock().await;
        written.prune(self.keep, self.queue.max_capacity());
        batch.retain(|row| !written.covered(row));
        let rows: Vec<NewMessage> = batch.iter().map(|queued| queued.row.clone()).collect();
        match messages::insert_batch(&self.db, &rows).await {
            Ok(()) => {
                let now = Instant::now();
                written
                    .rows
                    .extend(batch.drain(..).map(|queued| (now, queued)));
            }
            Err(err) => {
                // Still in the bus log for recovery; the database misses them.
                self.not_stored
                    .inc_by(u64::try_from(rows.len()).unwrap_or(u64::MAX));
                tracing::warn!(count = rows.len(), error = %err, "chat messages not stored");
            }
        }
        batch.clear();
    }
}
