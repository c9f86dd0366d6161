//! The Redis bus: a lazily connected, self-healing `ConnectionManager` for commands (shared
//! by every queue, channel and log of the bus), the hub's one subscriber connection, and the
//! key-value state: live keys, viewer sets and rate-limit counters.
//!
//! Keys (all under the configured prefix `P`): `P:live:{room}` (hash), `P:viewers:{room}`
//! (set), `P:rate:{key}` (counter with expiry), `P:jobs:{queue}` (streams, see
//! [`super::queue`]), `P:log:{log}:{key}` (see [`super::log`]); channels are `P:{name}` (room
//! events: `P:events`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands as _, Script};

use super::channel::redis::Hub;
use super::queue::redis::RedisQueue;
use super::queue::QueueOptions;
use super::{BusConfig, BusError, LiveState};

/// Clears the live hash only if it still names the given stream.
const CLEAR_LIVE: &str = r"
if redis.call('HGET', KEYS[1], 'stream_id') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// One hit in a fixed window: the first hit starts the window's expiry.
/// A token bucket: KEYS[1] a hash {tokens, at}; ARGV[1] capacity, ARGV[2] milliseconds per
/// token. On the server's clock, so that every instance refills the same bucket alike.
const TAKE_TOKEN: &str = r"
local capacity = tonumber(ARGV[1])
local per = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = capacity
  at = now
end
tokens = math.min(capacity, tokens + math.max(0, now - at) / per)
local taken = 0
if tokens >= 1 then
  tokens = tokens - 1
  taken = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity * per) + 1000)
return taken";

/// Presence: KEYS[1] a sorted set member -> expiry (unix ms); ARGV[1] the expiry, ARGV[2]
/// the key's own lifetime, ARGV[3..] members. Returns the members that were not present.
const PRESENCE_TOUCH: &str = r"
local fresh = {}
for i = 3, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if not score or tonumber(score) <= tonumber(ARGV[1]) - tonumber(ARGV[2]) then
    table.insert(fresh, ARGV[i])
  end
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[i])
end
-- The key outlives its longest presence twice over, so that expired members are still
-- there for the sweep that reports them.
if redis.call('PTTL', KEYS[1]) < 2 * tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[2]))
end
return fresh";

/// Presence: removes and returns the members expired at ARGV[1] (one caller gets each).
const PRESENCE_EXPIRE: &str = r"
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if #gone > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1]) end
return gone";

const RATE_HIT: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n";

/// What every Redis part of one bus shares: the client, the command connection (multiplexed:
/// never for blocking commands), the key prefix and the command timeout. Clones share it.
#[derive(Clone)]
pub(crate) struct Link {
    inner: Arc<LinkInner>,
}

struct LinkInner {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client's connection info may hold a password.
        f.debug_struct("Link")
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

impl Link {
    fn new(config: &BusConfig) -> Result<Self, BusError> {
        let client = redis::Client::open(config.url.expose())?;
        let timeout = Duration::from_millis(config.timeout_ms);
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(timeout);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)?;
        Ok(Self {
            inner: Arc::new(LinkInner {
                client,
                conn,
                prefix: config.key_prefix.clone(),
                timeout,
            }),
        })
    }

    /// `rest` under the bus's prefix.
    pub(crate) fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.inner.prefix)
    }

    /// The shared command connection.
    pub(crate) fn conn(&self) -> ConnectionManager {
        self.inner.conn.clone()
    }

    pub(crate) fn client(&self) -> &redis::Client {
        &self.inner.client
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    pub(crate) async fn publish(&self, topic: &str, payload: &str) -> Result<(), BusError> {
        let mut conn = self.conn();
        conn.publish::<_, _, ()>(topic, payload).await?;
        Ok(())
    }
}

/// The Redis backend. Clones share the connections.
#[derive(Clone)]
pub struct RedisBus {
    link: Link,
    hub: Arc<Hub>,
    recordings: RedisQueue,
    scripts: Arc<Scripts>,
}

struct Scripts {
    clear_live: Script,
    rate_hit: Script,
    take_token: Script,
    presence_touch: Script,
    presence_expire: Script,
}

impl std::fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBus")
            .field("link", &self.link)
            .finish_non_exhaustive()
    }
}

impl RedisBus {
    /// Prepares a lazily connecting backend; no connection is made yet.
    pub fn new(config: &BusConfig) -> Result<Self, BusError> {
        let link = Link::new(config)?;
        let hub = Hub::new(
            link.client(),
            link.key("subscriber"),
            config.events_capacity,
            link.timeout(),
        )?;
        let recordings = RedisQueue::new(link.clone(), config.recordings_queue());
        Ok(Self {
            link,
            hub: Arc::new(hub),
            recordings,
            scripts: Arc::new(Scripts {
                clear_live: Script::new(CLEAR_LIVE),
                rate_hit: Script::new(RATE_HIT),
                take_token: Script::new(TAKE_TOKEN),
                presence_touch: Script::new(PRESENCE_TOUCH),
                presence_expire: Script::new(PRESENCE_EXPIRE),
            }),
        })
    }

    pub(crate) fn link(&self) -> &Link {
        &self.link
    }

    pub(crate) fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    pub(crate) fn recordings(&self) -> &RedisQueue {
        &self.recordings
    }

    pub(crate) fn queue(&self, options: QueueOptions) -> RedisQueue {
        if options == *self.recordings.options() {
            return self.recordings.clone();
        }
        RedisQueue::new(self.link.clone(), options)
    }

    fn key(&self, rest: &str) -> String {
        self.link.key(rest)
    }

    pub(super) async fn ping(&self) -> Result<(), BusError> {
        let mut conn = self.link.conn();
        redis::cmd("PING").query_async::<()>(&mut conn).await?;
        Ok(())
    }

    pub(super) async fn set_live(&self, room_id: i64, state: &LiveState) -> Result<(), BusError> {
        let mut conn = self.link.conn();
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
        let mut conn = self.link.conn();
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
        let mut conn = self.link.conn();
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
        let mut conn = self.link.conn();
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
        let mut conn = self.link.conn();
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
        let mut conn = self.link.conn();
        Ok(conn.scard(self.key(&format!("viewers:{room_id}"))).await?)
    }

    pub(super) async fn rate_limit(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> Result<bool, BusError> {
        let mut conn = self.link.conn();
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

    pub(super) async fn presence_touch(
        &self,
        key: &str,
        members: &[String],
        ttl: Duration,
    ) -> Result<Vec<String>, BusError> {
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.link.conn();
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
        let mut invocation = self
            .scripts
            .presence_touch
            .key(self.key(&format!("presence:{key}")));
        invocation
            .arg(super::now_ms().saturating_add(ttl_ms))
            .arg(ttl_ms);
        for member in members {
            invocation.arg(member);
        }
        Ok(invocation.invoke_async(&mut conn).await?)
    }

    pub(super) async fn presence_expire(&self, key: &str) -> Result<Vec<String>, BusError> {
        let mut conn = self.link.conn();
        Ok(self
            .scripts
            .presence_expire
            .key(self.key(&format!("presence:{key}")))
            .arg(super::now_ms())
            .invoke_async(&mut conn)
            .await?)
    }

    pub(super) async fn presence(
        &self,
        key: &str,
        max: usize,
    ) -> Result<(u64, Vec<String>), BusError> {
        let mut conn = self.link.conn();
        let key = self.key(&format!("presence:{key}"));
        let now = super::now_ms();
        let count: u64 = redis::cmd("ZCOUNT")
            .arg(&key)
            .arg(format!("({now}"))
            .arg("+inf")
            .query_async(&mut conn)
            .await?;
        let members: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(&key)
            .arg(format!("({now}"))
            .arg("+inf")
            .arg("LIMIT")
            .arg(0)
            .arg(max)
            .query_async(&mut conn)
            .await?;
        Ok((count, members))
    }

    pub(super) async fn take_token(
        &self,
        key: &str,
        capacity: u32,
        per_token: Duration,
    ) -> Result<bool, BusError> {
        let mut conn = self.link.conn();
        let per_ms = u64::try_from(per_token.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let taken: u64 = self
            .scripts
            .take_token
            .key(self.key(&format!("bucket:{key}")))
            .arg(capacity.max(1))
            .arg(per_ms)
            .invoke_async(&mut conn)
            .await?;
        Ok(taken == 1)
    }

    pub(super) async fn rate_hits(&self, key: &str, _window: Duration) -> Result<u64, BusError> {
        // The key expires with its window, so whatever is there counts.
        let mut conn = self.link.conn();
        let hits: Option<u64> = conn.get(self.key(&format!("rate:{key}"))).await?;
        Ok(hits.unwrap_or(0))
    }

    pub(super) async fn clear(&self) -> Result<(), BusError> {
        let mut conn = self.link.conn();
        let pattern = self.key("*");
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
        self.recordings.forget_group();
        Ok(())
    }
}
