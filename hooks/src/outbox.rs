//! Bus writes go through one ordered, bounded outbox so that a Redis outage never fails a
//! callback: the database stays the truth, and the worker retries each write with backoff
//! until the bus takes it (in order, so "offline" never overtakes "live").

use std::time::Duration;

use livegate_core::bus::{Bus, Channel, LiveState, Queue, RecordingJob, RoomEvent, RoomEventKind};
use livegate_core::db::{rooms, Database};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::OutboxConfig;
use crate::metrics::Metrics;

/// One write for the bus.
#[derive(Debug, Clone)]
pub enum BusOp {
    /// A room went live: set its live key, then announce it.
    Live {
        /// The room.
        room_id: i64,
        /// The live key's value.
        state: LiveState,
    },
    /// A room went offline: clear its live key (if still this stream's) and announce it.
    Offline {
        /// The room.
        room_id: i64,
        /// The closed stream.
        stream_id: i64,
        /// When it stopped, unix milliseconds.
        at_ms: i64,
    },
    /// Queue a recording job.
    Job(RecordingJob),
    /// Resync: set a live key the database says is missing (no event).
    SetLive {
        /// The room.
        room_id: i64,
        /// The live key's value.
        state: LiveState,
    },
    /// Resync: clear a live key whose stream the database says is over (no event).
    ClearLive {
        /// The room.
        room_id: i64,
        /// The stream the key names.
        stream_id: i64,
    },
    /// A viewer joined a room.
    ViewerJoin {
        /// The room.
        room_id: i64,
        /// The viewer's session.
        session: String,
    },
    /// A viewer left a room.
    ViewerLeave {
        /// The room.
        room_id: i64,
        /// The viewer's session.
        session: String,
    },
}

/// The sending side, held by the request handlers.
#[derive(Debug, Clone)]
pub struct Outbox {
    sender: mpsc::Sender<BusOp>,
    metrics: Metrics,
}

impl Outbox {
    /// Queues `op` without waiting; a full outbox drops it (counted and logged), since
    /// answering the origin matters more than a bus write the database already covers.
    /// Returns whether it was queued.
    pub fn push(&self, op: BusOp) -> bool {
        match self.sender.try_send(op) {
            Ok(()) => {
                self.metrics.outbox_depth.inc();
                true
            }
            Err(err) => {
                self.metrics.bus_dropped.inc();
                tracing::warn!(reason = %err, "bus outbox full, dropping a bus write");
                false
            }
        }
    }
}

/// The worker that applies queued writes.
#[derive(Debug)]
pub struct OutboxWorker {
    receiver: mpsc::Receiver<BusOp>,
    bus: Bus,
    events: Channel<RoomEvent>,
    recordings: Queue<RecordingJob>,
    db: Database,
    config: OutboxConfig,
    metrics: Metrics,
}

/// Creates the outbox and its worker.
pub fn outbox(
    bus: Bus,
    db: Database,
    config: &OutboxConfig,
    metrics: Metrics,
) -> (Outbox, OutboxWorker) {
    let (sender, receiver) = mpsc::channel(config.capacity);
    (
        Outbox {
            sender,
            metrics: metrics.clone(),
        },
        OutboxWorker {
            receiver,
            events: bus.events(),
            recordings: bus.recordings(),
            bus,
            db,
            config: config.clone(),
            metrics,
        },
    )
}

impl OutboxWorker {
    /// Applies writes in order until `stop` fires, then applies what is still queued, each
    /// with a single attempt (the caller bounds this drain with the shutdown grace period).
    pub async fn run(mut self, stop: CancellationToken) {
        loop {
            tokio::select! {
                op = self.receiver.recv() => match op {
                    Some(op) => {
                        self.metrics.outbox_depth.dec();
                        self.apply_with_retry(&op, &stop).await;
                    }
                    None => return,
                },
                () = stop.cancelled() => break,
            }
        }
        self.receiver.close();
        while let Some(op) = self.receiver.recv().await {
            self.metrics.outbox_depth.dec();
            self.apply_with_retry(&op, &stop).await;
        }
    }

    async fn apply_with_retry(&self, op: &BusOp, stop: &CancellationToken) {
        let mut delay = Duration::from_millis(self.config.retry_initial_ms);
        let max = Duration::from_millis(self.config.retry_max_ms);
        loop {
            match self.apply(op).await {
                Ok(()) => return,
                Err(err) => {
                    self.metrics.bus_retries.inc();
                    if stop.is_cancelled() {
                        self.metrics.bus_dropped.inc();
                        tracing::warn!(error = %err, "bus unreachable during shutdown, abandoning a bus write");
                        return;
                    }
                    tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "bus write failed, will retry");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = stop.cancelled() => {}
                    }
                    delay = (delay * 2).min(max);
                }
            }
        }
    }

    async fn apply(&self, op: &BusOp) -> Result<(), livegate_core::bus::BusError> {
        match op {
            BusOp::Live { room_id, state } => {
                self.bus.set_live(*room_id, state).await?;
                self.events
                    .publish(&RoomEvent {
                        kind: RoomEventKind::Live,
                        room_id: *room_id,
                        stream_id: state.stream_id,
                        at_ms: state.started_at_ms,
                    })
                    .await
            }
            BusOp::Offline {
                room_id,
                stream_id,
                at_ms,
            } => {
                self.bus.clear_live(*room_id, *stream_id).await?;
                self.events
                    .publish(&RoomEvent {
                        kind: RoomEventKind::Offline,
                        room_id: *room_id,
                        stream_id: *stream_id,
                        at_ms: *at_ms,
                    })
                    .await
            }
            BusOp::Job(job) => {
                let id = self.recordings.push(job).await?;
                tracing::info!(room.id = job.room_id, job.id = %id, "recording job queued");
                Ok(())
            }
            BusOp::SetLive { room_id, state } => self.bus.set_live(*room_id, state).await,
            BusOp::ClearLive { room_id, stream_id } => {
                self.bus.clear_live(*room_id, *stream_id).await.map(drop)
            }
            BusOp::ViewerJoin { room_id, session } => {
                let viewers = self.bus.viewer_join(*room_id, session).await?;
                self.record_viewers(*room_id, viewers).await;
                Ok(())
            }
            BusOp::ViewerLeave { room_id, session } => {
                let viewers = self.bus.viewer_leave(*room_id, session).await?;
                self.record_viewers(*room_id, viewers).await;
                Ok(())
            }
        }
    }

    /// Copies the bus's viewer count into `rooms.viewers_count` (best effort).
    async fn record_viewers(&self, room_id: i64, viewers: u64) {
        let viewers = i64::try_from(viewers).unwrap_or(i64::MAX);
        if let Err(err) = rooms::set_viewers_count(&self.db, room_id, viewers).await {
            tracing::warn!(room.id = room_id, error = %err, "could not store the viewer count");
        }
    }
}
