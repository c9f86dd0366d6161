//! The Redis bus: a lazily connected, self-healing `ConnectionManager` for commands, a
//! dedicated connection per subscription, and a stream with a consumer group as the job queue.
//!
//! Keys (all under the configured prefix `P`): `P:live:{room}` (hash), `P:viewers:{room}`
//! (set), `P:rate:{key}` (counter with expiry), `P:jobs:recordings` (stream, group
//! `recorders`), and the channel `P:events`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubStream};
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::{AsyncCommands as _, Script};

use super::{BusConfig, BusError, Delivery, LiveState, RecordingJob, RoomEvent};

const GROUP: &str = "recorders";
/// Between polls of the job stream while [`RedisBus::claim`] waits (a blocking read would hold
/// up every other command on the shared multiplexed connection).
const CLAIM_POLL: Duration = Duration::from_millis(50);

/// Clears the live hash only if it still names the given stream.
const CLEAR_LIVE: &str = r"
if redis.call('HGET', KEYS[1], 'stream_id') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// One hit in a fixed window: the first hit starts the window's expiry.
const RATE_HIT: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n";

/// Appends a job unless the stream already holds the capacity (acknowledged jobs are deleted,
/// so the stream's length is the number of outstanding jobs).
const ENQUEUE: &str = r"
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return false end
return redis.call('XADD', KEYS[1], '*', 'job', ARGV[2])";

/// The Redis backend. Clones share the connection.
#[derive(Clone)]
pub struct RedisBus {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: Arc<str>,
    jobs_capacity: usize,
    queue: Arc<QueueState>,
    scripts: Arc<Scripts>,
}

/// What the job queue's clients share.
#[derive(Default)]
struct QueueState {
    /// The consumer group is known to exist.
    group_ready: AtomicBool,
    /// Undecodable entries acknowledged and deleted.
    discarded: AtomicU64,
}

struct Scripts {
    clear_live: Script,
    rate_hit: Script,
    enqueue: Script,
}

impl std::fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client's connection info may hold a password.
        f.debug_struct("RedisBus")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// A subscription on its own Redis connection.
pub struct RedisSubscription {
    stream: PubSubStream,
}

impl std::fmt::Debug for RedisSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSubscription").finish_non_exhaustive()
    }
}

impl RedisSubscription {
    pub(super) async fn next(&mut self) -> Option<RoomEvent> {
        loop {
            let message = self.stream.next().await?;
            let Ok(payload) = message.get_payload::<String>() else {
                continue;
            };
            match serde_json::from_str(&payload) {
                Ok(event) => return Some(event),
                Err(err) => tracing::warn!(error = %err, "skipping undecodable room event"),
            }
        }
    }
}

impl RedisBus {
    /// Prepares a lazily connecting backend; no connection is made yet.
    pub fn new(config: &BusConfig) -> Result<Self, BusError> {
        let client = redis::Client::open(config.url.expose())?;
        let timeout = Duration::from_millis(config.timeout_ms);
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(timeout);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)?;
        Ok(Self {
            client,
            conn,
            prefix: Arc::from(config.key_prefix.as_str()),
            jobs_capacity: config.jobs_capacity,
            queue: Arc::new(QueueState::default()),
            scripts: Arc::new(Scripts {
                clear_live: Script::new(CLEAR_LIVE),
                rate_hit: Script::new(RATE_HIT),
                enqueue: Script::new(ENQUEUE),
            }),
        })
    }

    fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.prefix)
    }

    fn jobs_key(&self) -> String {
        self.key("jobs:recordings")
    }

    fn events_channel(&self) -> String {
        self.key("events")
    }

    pub(super) async fn ping(&self) -> Result<(), BusError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING").query_async::<()>(&mut conn).await?;
        Ok(())
    }

    pub(super) async fn set_live(&self, room_id: i64, state: &LiveState) -> Result<(), BusError> {
        let mut conn = self.conn.clone();
        let key = self.key(&format!("live:{room_id}"));
        let fields = [
            ("stream_id", state.stream_id.to_string()),
            ("started_at_ms", state.started_at_ms.to_string()),
            ("origin_server_id", state.origin_server_id.clone()),
        ];
        // Replace, not merge: a stale field from an older session must not survive.
        redis::pipe()
            .atomic()
            .del(&key)
            .hset_multiple(&key, &fields)
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    pub(super) async fn clear_live(&self, room_id: i64, stream_id: i64) -> Result<bool, BusError> {
        let mut conn = self.conn.clone();
        let removed: i64 = self
            .scripts
            .clear_live
            .key(self.key(&format!("live:{room_id}")))
            .arg(stream_id.to_string())
            .invoke_async(&mut conn)
            .await?;
        Ok(removed == 1)
    }

    pub(super) async fn live(&self, room_id: i64) -> Result<Option<LiveState>, BusError> {
        let mut conn = self.conn.clone();
        let fields: HashMap<String, String> =
            conn.hgetall(self.key(&format!("live:{room_id}"))).await?;
        let parse = |name: &str| fields.get(name).and_then(|v| v.parse::<i64>().ok());
        match (parse("stream_id"), parse("started_at_ms")) {
            (Some(stream_id), Some(started_at_ms)) => Ok(Some(LiveState {
                stream_id,
                started_at_ms,
                origin_server_id: fields.get("origin_server_id").cloned().unwrap_or_default(),
            })),
            _ => Ok(None),
        }
    }

    pub(super) async fn live_rooms(&self, max: usize) -> Result<Vec<i64>, BusError> {
        let mut conn = self.conn.clone();
        let prefix = self.key("live:");
        let pattern = format!("{prefix}*");
        let mut rooms = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(500)
                .query_async(&mut conn)
                .await?;
            rooms.extend(
                keys.iter()
                    .filter_map(|key| key.strip_prefix(&prefix)?.parse::<i64>().ok()),
            );
            if next == 0 || rooms.len() >= max {
                rooms.truncate(max);
                return Ok(rooms);
            }
            cursor = next;
        }
    }

    pub(super) async fn publish(&self, event: &RoomEvent) -> Result<(), BusError> {
        let mut conn = self.conn.clone();
        let payload = serde_json::to_string(event)?;
        conn.publish::<_, _, ()>(self.events_channel(), payload)
            .await?;
        Ok(())
    }

    pub(super) async fn subscribe(&self) -> Result<RedisSubscription, BusError> {
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub.subscribe(self.events_channel()).await?;
        Ok(RedisSubscription {
            stream: pubsub.into_on_message(),
        })
    }

    pub(super) async fn viewer_join(&self, room_id: i64, session: &str) -> Result<u64, BusError> {
        self.change_viewers(room_id, session, true).await
    }

    pub(super) async fn viewer_leave(&self, room_id: i64, session: &str) -> Result<u64, BusError> {
        self.change_viewers(room_id, session, false).await
    }

    /// Adds or removes a viewer session and returns the new count, atomically.
    async fn change_viewers(
        &self,
        room_id: i64,
        session: &str,
        join: bool,
    ) -> Result<u64, BusError> {
        let mut conn = self.conn.clone();
        let key = self.key(&format!("viewers:{room_id}"));
        let mut pipe = redis::pipe();
        pipe.atomic();
        if join {
            pipe.sadd(&key, session).ignore();
        } else {
            pipe.srem(&key, session).ignore();
        }
        let (count,): (u64,) = pipe.scard(&key).query_async(&mut conn).await?;
        Ok(count)
    }

    pub(super) async fn viewers(&self, room_id: i64) -> Result<u64, BusError> {
        let mut conn = self.conn.clone();
        Ok(conn.scard(self.key(&format!("viewers:{room_id}"))).await?)
    }

    pub(super) async fn rate_limit(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> Result<bool, BusError> {
        let mut conn = self.conn.clone();
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
        let hits: u64 = self
            .scripts
            .rate_hit
            .key(self.key(&format!("rate:{key}")))
            .arg(window_ms)
            .invoke_async(&mut conn)
            .await?;
        Ok(hits <= u64::from(limit))
    }

    pub(super) async fn enqueue(&self, job: &RecordingJob) -> Result<String, BusError> {
        let mut conn = self.conn.clone();
        let payload = serde_json::to_string(job)?;
        let id: Option<String> = self
            .scripts
            .enqueue
            .key(self.jobs_key())
            .arg(self.jobs_capacity)
            .arg(payload)
            .invoke_async(&mut conn)
            .await?;
        id.ok_or(BusError::QueueFull)
    }

    /// Creates the consumer group (reading from the stream's start, so jobs queued before any
    /// consumer existed are delivered). Also run after Redis lost its data.
    async fn ensure_group(&self, force: bool) -> Result<(), BusError> {
        if !force && self.queue.group_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.jobs_key())
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match created {
            Ok(()) => {}
            Err(err) if err.code() == Some("BUSYGROUP") => {}
            Err(err) => return Err(err.into()),
        }
        self.queue.group_ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Decodes delivered entries. An entry that is not a job (no `job` field, or a payload that
    /// does not decode) could never be processed: it is acknowledged and deleted, logged once
    /// and counted, instead of being redelivered to every consumer forever.
    async fn deliveries(&self, entries: Vec<StreamId>) -> Result<Vec<Delivery>, BusError> {
        let mut jobs = Vec::with_capacity(entries.len());
        let mut undecodable = Vec::new();
        for entry in entries {
            let decoded = entry
                .get::<String>("job")
                .ok_or_else(|| "no `job` field".to_owned())
                .and_then(|payload| {
                    serde_json::from_str::<RecordingJob>(&payload).map_err(|err| err.to_string())
                });
            match decoded {
                Ok(job) => jobs.push(Delivery { id: entry.id, job }),
                Err(error) => {
                    tracing::warn!(job.id = %entry.id, error = %error, "undecodable recording job, discarding it");
                    undecodable.push(entry.id);
                }
            }
        }
        if !undecodable.is_empty() {
            let mut conn = self.conn.clone();
            let key = self.jobs_key();
            redis::pipe()
                .atomic()
                .xack(&key, GROUP, &undecodable)
                .ignore()
                .xdel(&key, &undecodable)
                .ignore()
                .query_async::<()>(&mut conn)
                .await?;
            self.queue
                .discarded
                .fetch_add(undecodable.len() as u64, Ordering::Relaxed);
        }
        Ok(jobs)
    }

    /// How many undecodable jobs were discarded by this process.
    pub(super) fn discarded_jobs(&self) -> u64 {
        self.queue.discarded.load(Ordering::Relaxed)
    }

    async fn read_new(&self, consumer: &str, max: usize) -> Result<Vec<Delivery>, BusError> {
        let mut conn = self.conn.clone();
        let mut command = redis::cmd("XREADGROUP");
        command
            .arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(max.max(1))
            .arg("STREAMS")
            .arg(self.jobs_key())
            .arg(">");
        let reply: redis::RedisResult<Option<StreamReadReply>> =
            command.query_async(&mut conn).await;
        let reply = match reply {
            Err(err) if err.code() == Some("NOGROUP") => {
                self.ensure_group(true).await?;
                command.query_async(&mut conn).await?
            }
            other => other?,
        };
        let entries = reply
            .map(|reply| reply.keys.into_iter().flat_map(|key| key.ids).collect())
            .unwrap_or_default();
        self.deliveries(entries).await
    }

    pub(super) async fn claim(
        &self,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, BusError> {
        self.ensure_group(false).await?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let taken = self.read_new(consumer, max).await?;
            if !taken.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(taken);
            }
            tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + CLAIM_POLL)).await;
        }
    }

    pub(super) async fn claim_stale(
        &self,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<Delivery>, BusError> {
        self.ensure_group(false).await?;
        let max = max.max(1);
        let mut conn = self.conn.clone();
        let min_idle_ms = u64::try_from(min_idle.as_millis()).unwrap_or(u64::MAX);
        let mut claimed = Vec::new();
        // XAUTOCLAIM looks at a bounded slice of the pending list per call (COUNT × 10
        // entries): follow its cursor through the whole list until it wraps to 0-0.
        let mut cursor = "0-0".to_owned();
        loop {
            let mut command = redis::cmd("XAUTOCLAIM");
            command
                .arg(self.jobs_key())
                .arg(GROUP)
                .arg(consumer)
                .arg(min_idle_ms)
                .arg(&cursor)
                .arg("COUNT")
                .arg(max - claimed.len());
            let reply: redis::RedisResult<StreamAutoClaimReply> =
                command.query_async(&mut conn).await;
            let reply = match reply {
                // The stream or group vanished (Redis lost its data): nothing is pending.
                Err(err) if err.code() == Some("NOGROUP") => {
                    self.ensure_group(true).await?;
                    return Ok(claimed);
                }
                other => other?,
            };
            claimed.extend(self.deliveries(reply.claimed).await?);
            if reply.next_stream_id == "0-0" || claimed.len() >= max {
                return Ok(claimed);
            }
            cursor = reply.next_stream_id;
        }
    }

    pub(super) async fn ack(&self, id: &str) -> Result<(), BusError> {
        let mut conn = self.conn.clone();
        let key = self.jobs_key();
        redis::pipe()
            .atomic()
            .xack(&key, GROUP, &[id])
            .ignore()
            .xdel(&key, &[id])
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    pub(super) async fn clear(&self) -> Result<(), BusError> {
        let mut conn = self.conn.clone();
        let pattern = format!("{}:*", self.prefix);
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(500)
                .query_async(&mut conn)
                .await?;
            if !keys.is_empty() {
                redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async::<()>(&mut conn)
                    .await?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        self.queue.group_ready.store(false, Ordering::Release);
        Ok(())
    }

    pub(super) async fn jobs_outstanding(&self) -> Result<u64, BusError> {
        let mut conn = self.conn.clone();
        Ok(conn.xlen(self.jobs_key()).await?)
    }
}
