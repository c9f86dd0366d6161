//! The bus: shared, fast-changing state next to the database, with two backends behind one API.
//!
//! - live state per room (`live:{room}`), set on publish and cleared on stop;
//! - room events (went live / went offline) over publish/subscribe;
//! - viewer counters per room (a set of viewer sessions, so joins and leaves are idempotent);
//! - fixed-window rate limits;
//! - a durable job queue for finished recordings: a job stays pending until a consumer
//!   acknowledges it, and a job whose consumer died is claimed by another after it has been
//!   idle long enough.
//!
//! [`Bus::Redis`] is the production backend (Redis Streams with a consumer group for the
//! queue); [`Bus::Memory`] is the embedded default with the same semantics within one process.
//! Every queue is bounded: event fan-out by [`BusConfig::events_capacity`], the job queue by
//! [`BusConfig::jobs_capacity`].

mod memory;
mod redis;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Problems;
use crate::secret::Secret;

pub use self::memory::MemoryBus;
pub use self::redis::RedisBus;

/// The `[bus]` section shared by the services.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusConfig {
    /// `memory:` for the in-process bus, or `redis://[user:pass@]host:port[/db]`. May be
    /// `env:NAME` or `file:PATH`. Default: `memory:`.
    pub url: Secret,
    /// Prefix of every Redis key and channel, so that several deployments can share a server.
    /// Default: `livegate`.
    pub key_prefix: String,
    /// How many events a slow in-process subscriber may fall behind before it misses some.
    /// Default: 1024.
    pub events_capacity: usize,
    /// Most recording jobs that may wait in the queue (pending plus unacknowledged); enqueueing
    /// beyond that fails. Default: 100000.
    pub jobs_capacity: usize,
    /// How long one Redis command may take before it counts as failed, in milliseconds.
    /// Default: 500.
    pub timeout_ms: u64,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            url: Secret::new("memory:"),
            key_prefix: "livegate".to_owned(),
            events_capacity: 1024,
            jobs_capacity: 100_000,
            timeout_ms: 500,
        }
    }
}

impl BusConfig {
    /// Records problems under `section` (e.g. `bus`).
    pub fn validate(&self, section: &str, problems: &mut Problems) {
        let url = self.url.expose();
        if url != "memory:" && !url.starts_with("redis://") && !url.starts_with("rediss://") {
            problems.add(
                format!("{section}.url"),
                "must be `memory:` or a `redis://` URL",
            );
        }
        problems.check(
            !self.key_prefix.is_empty() && !self.key_prefix.contains(char::is_whitespace),
            &format!("{section}.key_prefix"),
            "must be non-empty and contain no whitespace",
        );
        problems.check(
            self.events_capacity > 0,
            &format!("{section}.events_capacity"),
            "must be at least 1",
        );
        problems.check(
            self.jobs_capacity > 0,
            &format!("{section}.jobs_capacity"),
            "must be at least 1",
        );
        problems.check(
            self.timeout_ms > 0,
            &format!("{section}.timeout_ms"),
            "must be at least 1",
        );
    }
}

/// Why a bus operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Redis could not be reached or answered with an error.
    #[error("redis unavailable or failed")]
    Redis(#[from] ::redis::RedisError),
    /// The job queue holds [`BusConfig::jobs_capacity`] jobs already.
    #[error("job queue is full")]
    QueueFull,
    /// A stored value could not be decoded.
    #[error("cannot decode a value stored on the bus")]
    Codec(#[from] serde_json::Error),
    /// The URL names no supported backend.
    #[error("unsupported bus URL: expected `memory:` or `redis://`")]
    UnsupportedUrl,
}

/// What the live key of a room holds while it is live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveState {
    /// The open stream row.
    pub stream_id: i64,
    /// Publish start, unix milliseconds.
    pub started_at_ms: i64,
    /// The origin server that carries the stream.
    pub origin_server_id: String,
}

/// A room went live or offline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomEvent {
    /// What happened.
    pub kind: RoomEventKind,
    /// The room.
    pub room_id: i64,
    /// The stream that started or stopped.
    pub stream_id: i64,
    /// When, unix milliseconds.
    pub at_ms: i64,
}

/// The kinds of [`RoomEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoomEventKind {
    /// A publisher started.
    Live,
    /// The publisher stopped.
    Offline,
}

/// A finished recording, for the recorder to process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingJob {
    /// The room that was recorded.
    pub room_id: i64,
    /// The stream row the recording belongs to, when known.
    pub stream_id: Option<i64>,
    /// Absolute path of the closed file on the origin's file system.
    pub path: String,
    /// `srs`, `zlmediakit` or `nginx-rtmp`.
    pub origin_kind: String,
    /// The origin server that wrote the file.
    pub origin_server_id: String,
    /// File size in bytes, when the origin reports it.
    pub size_bytes: Option<u64>,
    /// Media duration in milliseconds, when the origin reports it.
    pub duration_ms: Option<u64>,
    /// When the job was queued, unix milliseconds.
    pub enqueued_at_ms: i64,
}

/// A job handed to a consumer; it stays pending until [`Bus::ack`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Queue id, for [`Bus::ack`].
    pub id: String,
    /// The job.
    pub job: RecordingJob,
}

/// A bus backend.
#[derive(Debug, Clone)]
pub enum Bus {
    /// Redis (production).
    Redis(RedisBus),
    /// In-process (embedded default, tests).
    Memory(MemoryBus),
}

/// A subscription to room events.
#[derive(Debug)]
pub enum Subscription {
    /// From Redis pub/sub.
    Redis(self::redis::RedisSubscription),
    /// From the in-process fan-out.
    Memory(self::memory::MemorySubscription),
}

impl Subscription {
    /// The next event; `None` when the bus is gone. Undecodable messages are skipped, and an
    /// in-process subscriber that fell behind skips what it missed.
    pub async fn next(&mut self) -> Option<RoomEvent> {
        match self {
            Subscription::Redis(sub) => sub.next().await,
            Subscription::Memory(sub) => sub.next().await,
        }
    }
}

macro_rules! dispatch {
    ($self:expr, $bus:ident => $body:expr) => {
        match $self {
            Bus::Redis($bus) => $body,
            Bus::Memory($bus) => $body,
        }
    };
}

impl Bus {
    /// Builds the backend `config` names. Redis is connected lazily: the service starts while
    /// Redis is down, and operations fail (to be retried) until it is back.
    pub fn connect(config: &BusConfig) -> Result<Bus, BusError> {
        let url = config.url.expose();
        if url == "memory:" {
            Ok(Bus::Memory(MemoryBus::new(config)))
        } else if url.starts_with("redis://") || url.starts_with("rediss://") {
            Ok(Bus::Redis(RedisBus::new(config)?))
        } else {
            Err(BusError::UnsupportedUrl)
        }
    }

    /// Checks that the backend answers.
    pub async fn ping(&self) -> Result<(), BusError> {
        dispatch!(self, bus => bus.ping().await)
    }

    /// Sets the live state of a room.
    pub async fn set_live(&self, room_id: i64, state: &LiveState) -> Result<(), BusError> {
        dispatch!(self, bus => bus.set_live(room_id, state).await)
    }

    /// Clears the live state of a room if it still belongs to `stream_id` (a late stop of an
    /// older session leaves a newer session's state alone). Returns whether it was cleared.
    pub async fn clear_live(&self, room_id: i64, stream_id: i64) -> Result<bool, BusError> {
        dispatch!(self, bus => bus.clear_live(room_id, stream_id).await)
    }

    /// The live state of a room, if it is live.
    pub async fn live(&self, room_id: i64) -> Result<Option<LiveState>, BusError> {
        dispatch!(self, bus => bus.live(room_id).await)
    }

    /// The rooms that have a live key, at most `max` of them (in no particular order).
    pub async fn live_rooms(&self, max: usize) -> Result<Vec<i64>, BusError> {
        dispatch!(self, bus => bus.live_rooms(max).await)
    }

    /// Publishes a room event to every current subscriber.
    pub async fn publish(&self, event: &RoomEvent) -> Result<(), BusError> {
        dispatch!(self, bus => bus.publish(event).await)
    }

    /// Subscribes to room events published from now on.
    pub async fn subscribe(&self) -> Result<Subscription, BusError> {
        Ok(match self {
            Bus::Redis(bus) => Subscription::Redis(bus.subscribe().await?),
            Bus::Memory(bus) => Subscription::Memory(bus.subscribe()),
        })
    }

    /// Records that viewer `session` watches `room_id`; returns the room's viewer count.
    /// Joining twice counts once.
    pub async fn viewer_join(&self, room_id: i64, session: &str) -> Result<u64, BusError> {
        dispatch!(self, bus => bus.viewer_join(room_id, session).await)
    }

    /// Records that viewer `session` left `room_id`; returns the room's viewer count.
    /// Leaving twice, or without joining, changes nothing.
    pub async fn viewer_leave(&self, room_id: i64, session: &str) -> Result<u64, BusError> {
        dispatch!(self, bus => bus.viewer_leave(room_id, session).await)
    }

    /// The number of viewers of `room_id`.
    pub async fn viewers(&self, room_id: i64) -> Result<u64, BusError> {
        dispatch!(self, bus => bus.viewers(room_id).await)
    }

    /// Counts one hit on `key` and tells whether it is within `limit` hits per `window`
    /// (a fixed window that starts with the first hit).
    pub async fn rate_limit(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> Result<bool, BusError> {
        dispatch!(self, bus => bus.rate_limit(key, limit, window).await)
    }

    /// Queues a recording job; returns its queue id. Fails with [`BusError::QueueFull`] when
    /// [`BusConfig::jobs_capacity`] jobs are waiting.
    pub async fn enqueue(&self, job: &RecordingJob) -> Result<String, BusError> {
        dispatch!(self, bus => bus.enqueue(job).await)
    }

    /// Hands up to `max` new jobs to `consumer`, waiting up to `wait` for one to arrive.
    pub async fn claim(
        &self,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, BusError> {
        dispatch!(self, bus => bus.claim(consumer, max, wait).await)
    }

    /// Takes over up to `max` jobs that another consumer received but has not acknowledged for
    /// at least `min_idle` (it probably crashed).
    pub async fn claim_stale(
        &self,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<Delivery>, BusError> {
        dispatch!(self, bus => bus.claim_stale(consumer, min_idle, max).await)
    }

    /// Acknowledges a job: it is done and leaves the queue. Acknowledging twice is harmless.
    pub async fn ack(&self, id: &str) -> Result<(), BusError> {
        dispatch!(self, bus => bus.ack(id).await)
    }

    /// Deletes everything this bus holds (every key under the Redis prefix). For tests and for
    /// retiring a deployment's prefix; never called by the services.
    pub async fn clear(&self) -> Result<(), BusError> {
        dispatch!(self, bus => bus.clear().await)
    }

    /// How many undecodable jobs this process acknowledged and deleted (Redis only: the
    /// in-process queue holds typed jobs).
    pub fn discarded_jobs(&self) -> u64 {
        match self {
            Bus::Redis(bus) => bus.discarded_jobs(),
            Bus::Memory(_) => 0,
        }
    }

    /// How many jobs are queued or unacknowledged.
    pub async fn jobs_outstanding(&self) -> Result<u64, BusError> {
        dispatch!(self, bus => bus.jobs_outstanding().await)
    }
}
