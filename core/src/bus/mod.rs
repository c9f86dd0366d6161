//! The bus: what services share next to the database, with two backends behind one API.
//!
//! Building blocks, each on Redis and in process with the same semantics:
//! - [`Queue<T>`]: durable jobs with leases, delivery counts and a dead-letter queue;
//! - [`Channel<T>`]: publish/subscribe with one Redis subscription per process, fanned out to
//!   local subscribers through bounded queues;
//! - [`Log<T>`]: an append-only history per key with offsets and epochs, for recovery.
//!
//! And the state hooks keeps, expressed on them where it fits:
//! - live state per room (`live:{room}`), set on publish and cleared on stop;
//! - room events (went live / went offline): [`Bus::events`], a `Channel<RoomEvent>`;
//! - viewer counters per room (a set of viewer sessions, so joins and leaves are idempotent);
//! - fixed-window rate limits and token buckets;
//! - presence per key (members that expire unless refreshed);
//! - short time series per key ([`Series`]: a room's viewers over the last hour);
//! - finished recordings: [`Bus::recordings`], a `Queue<RecordingJob>`, and stored ones:
//!   [`Bus::recordings_ready`], a `Channel<RecordingReady>`.
//!
//! [`Bus::Redis`] is the production backend (Redis Streams and pub/sub); [`Bus::Memory`] is
//! the embedded default. Everything is bounded: channel fan-out by
//! [`BusConfig::events_capacity`], the recording queue by [`BusConfig::jobs_capacity`], other
//! queues and logs by their options.

pub mod channel;
pub mod gifts;
pub mod leaderboard;
pub mod log;
mod memory;
pub mod queue;
mod redis;
pub mod revocation;
pub mod series;
pub mod viewers;

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::Problems;
use crate::secret::Secret;

pub use self::channel::{Channel, Received, Subscriber};
pub use self::gifts::{GiftEvent, GiftLog};
pub use self::leaderboard::Leaderboard;
pub use self::log::{Entry, History, Log, LogOptions, Position};
pub use self::memory::MemoryBus;
pub use self::queue::{Consumer, DeadLetter, Failed, Job, Queue, QueueOptions};
pub use self::redis::RedisBus;
pub use self::revocation::{Revocation, Revocations};
pub use self::series::{Series, SeriesOptions};
pub use self::viewers::{EdgeViewers, RoomViewers, ViewerTally};

/// The channel of room events.
const EVENTS_CHANNEL: &str = "events";
/// The channel of stored recordings.
const RECORDINGS_READY_CHANNEL: &str = "recordings:ready";

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
    /// How many messages a slow local subscriber of a channel may fall behind before it
    /// misses some (and is told how many). Default: 1024.
    pub events_capacity: usize,
    /// Most recording jobs that may wait in the queue (pending plus unacknowledged); enqueueing
    /// beyond that fails. Default: 100000.
    pub jobs_capacity: usize,
    /// How long a recorder may go without extending its lease on a recording job before
    /// another recorder takes it over, in milliseconds. Default: 60000.
    pub jobs_lease_ms: u64,
    /// Most deliveries of one recording job before it goes to the dead-letter queue.
    /// Default: 5.
    pub jobs_max_deliveries: u32,
    /// Most dead recording jobs kept for inspection (the oldest are trimmed). Default: 10000.
    pub jobs_dead_letter_capacity: usize,
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
            jobs_capacity: queue::DEFAULT_CAPACITY,
            jobs_lease_ms: 60_000,
            jobs_max_deliveries: queue::DEFAULT_MAX_DELIVERIES,
            jobs_dead_letter_capacity: queue::DEFAULT_DEAD_LETTER_CAPACITY,
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
        for (key, ok) in [
            ("jobs_lease_ms", self.jobs_lease_ms > 0),
            ("jobs_max_deliveries", self.jobs_max_deliveries > 0),
            (
                "jobs_dead_letter_capacity",
                self.jobs_dead_letter_capacity > 0,
            ),
            ("timeout_ms", self.timeout_ms > 0),
        ] {
            problems.check(ok, &format!("{section}.{key}"), "must be at least 1");
        }
    }

    /// The settings of the recording queue.
    pub(crate) fn recordings_queue(&self) -> QueueOptions {
        QueueOptions {
            name: "recordings".to_owned(),
            group: "recorders".to_owned(),
            capacity: self.jobs_capacity,
            lease: Duration::from_millis(self.jobs_lease_ms),
            max_deliveries: self.jobs_max_deliveries,
            dead_letter_capacity: self.jobs_dead_letter_capacity,
        }
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
    /// Redis did not answer in time.
    #[error("redis did not answer in time")]
    Timeout,
    /// The bus was shut down.
    #[error("the bus is closed")]
    Closed,
    /// The consumer no longer holds the job: its lease ran out and another consumer took it.
    #[error("the job's lease was lost to another consumer")]
    LeaseLost,
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

/// A recording is stored and its stream points at it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingReady {
    /// The room that was recorded.
    pub room_id: i64,
    /// The stream whose `record_url` now names the object, when known.
    pub stream_id: Option<i64>,
    /// The recorder's job id.
    pub job_id: i64,
    /// Where the object is (`s3://bucket/key` or a local path); never a presigned URL.
    pub object_url: String,
    /// The object's size in bytes.
    pub size_bytes: u64,
    /// When the recording started, unix milliseconds.
    pub started_at_ms: i64,
}

/// A bus backend.
#[derive(Debug, Clone)]
pub enum Bus {
    /// Redis (production).
    Redis(RedisBus),
    /// In-process (embedded default, tests).
    Memory(MemoryBus),
}

/// Milliseconds since the unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
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

    /// Marks `members` present under `key` for `ttl` (refreshing those already there); returns
    /// the ones that were not present (new, or expired).
    pub async fn presence_touch(
        &self,
        key: &str,
        members: &[String],
        ttl: Duration,
    ) -> Result<Vec<String>, BusError> {
        dispatch!(self, bus => bus.presence_touch(key, members, ttl).await)
    }

    /// Removes the members of `key` whose presence expired and returns them; each expired
    /// member is returned to one caller only, whatever the number of processes asking.
    pub async fn presence_expire(&self, key: &str) -> Result<Vec<String>, BusError> {
        dispatch!(self, bus => bus.presence_expire(key).await)
    }

    /// How many members are present under `key`, and up to `max` of them.
    pub async fn presence(&self, key: &str, max: usize) -> Result<(u64, Vec<String>), BusError> {
        dispatch!(self, bus => bus.presence(key, max).await)
    }

    /// Takes a token from the bucket `key` if it has one: a bucket holds at most `capacity`
    /// tokens (a burst) and gains one every `per_token`. Shared by every process on the bus.
    pub async fn take_token(
        &self,
        key: &str,
        capacity: u32,
        per_token: Duration,
    ) -> Result<bool, BusError> {
        dispatch!(self, bus => bus.take_token(key, capacity, per_token).await)
    }

    /// The hits [`Bus::rate_limit`] has counted on `key` in its current window, without
    /// counting one: for limits on failures, which are checked before an attempt and hit only
    /// when it fails.
    pub async fn rate_hits(&self, key: &str, window: Duration) -> Result<u64, BusError> {
        dispatch!(self, bus => bus.rate_hits(key, window).await)
    }

    /// Deletes everything this bus holds (every key under the Redis prefix). For tests and for
    /// retiring a deployment's prefix; never called by the services.
    pub async fn clear(&self) -> Result<(), BusError> {
        dispatch!(self, bus => bus.clear().await)
    }

    /// The recording job queue.
    pub fn recordings(&self) -> Queue<RecordingJob> {
        Queue::from_backend(match self {
            Bus::Redis(bus) => queue::Backend::Redis(bus.recordings().clone()),
            Bus::Memory(bus) => queue::Backend::Memory(bus.recordings().clone()),
        })
    }

    /// The room events channel.
    pub fn events(&self) -> Channel<RoomEvent> {
        self.channel(EVENTS_CHANNEL)
    }

    /// The channel edges publish their viewer counts on.
    pub fn edge_viewers(&self) -> Channel<EdgeViewers> {
        self.channel(viewers::EDGE_VIEWERS)
    }

    /// The channel of stored recordings.
    pub fn recordings_ready(&self) -> Channel<RecordingReady> {
        self.channel(RECORDINGS_READY_CHANNEL)
    }

    /// The room revocation feed.
    pub fn revocations(&self) -> Revocations {
        Revocations::new(
            self.channel(revocation::REVOCATIONS),
            self.log(LogOptions::new(revocation::REVOCATIONS)),
        )
    }

    /// The history of paid gifts per room (see [`gifts`]).
    pub fn gift_events(&self) -> GiftLog {
        self.log(LogOptions::new(gifts::GIFT_EVENTS))
    }

    /// The gift totals per room and currency (see [`gifts::GIFT_BOARD`]).
    pub fn gift_board(&self) -> Leaderboard {
        self.leaderboard(gifts::GIFT_BOARD)
    }

    /// The leaderboard `name`.
    pub fn leaderboard(&self, name: &str) -> Leaderboard {
        match self {
            Bus::Redis(bus) => Leaderboard::redis(bus.link().clone(), name),
            Bus::Memory(bus) => Leaderboard::memory(bus.boards().clone(), name),
        }
    }

    /// The time series `options.name` (see [`series`]).
    pub fn series<T>(&self, options: SeriesOptions) -> Series<T>
    where
        T: Serialize + DeserializeOwned,
    {
        match self {
            Bus::Redis(bus) => Series::redis(bus.link().clone(), options),
            Bus::Memory(bus) => Series::memory(bus.series().clone(), options),
        }
    }

    /// The queue `options.name`. Every handle to one name shares the queue (in process, the
    /// first handle's options win).
    pub fn queue<T>(&self, options: QueueOptions) -> Queue<T>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        Queue::from_backend(match self {
            Bus::Redis(bus) => queue::Backend::Redis(bus.queue(options)),
            Bus::Memory(bus) => queue::Backend::Memory(bus.queue(options)),
        })
    }

    /// The channel `name` (on Redis: `{prefix}:{name}`).
    pub fn channel<T>(&self, name: &str) -> Channel<T>
    where
        T: Serialize + DeserializeOwned,
    {
        match self {
            Bus::Redis(bus) => Channel::new(
                channel::Backend::Redis {
                    hub: bus.hub().clone(),
                    link: bus.link().clone(),
                },
                bus.link().key(name),
            ),
            Bus::Memory(bus) => Channel::new(
                channel::Backend::Memory(bus.fanout().clone()),
                name.to_owned(),
            ),
        }
    }

    /// The log `options.name`. Every handle to one name shares the log (in process, the
    /// first handle's options win).
    pub fn log<T>(&self, options: LogOptions) -> Log<T>
    where
        T: Serialize + DeserializeOwned,
    {
        Log::from_backend(match self {
            Bus::Redis(bus) => {
                log::Backend::Redis(log::redis::RedisLog::new(bus.link().clone(), options))
            }
            Bus::Memory(bus) => log::Backend::Memory(bus.log(options)),
        })
    }
}
