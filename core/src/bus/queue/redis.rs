//! The Redis queue: a stream with a consumer group. The pending entries list is the lease
//! table: an entry's idle time is the time since its delivery or its last extension
//! (`XCLAIM … JUSTID` by its own consumer), and the stale sweep is `XAUTOCLAIM` with the lease
//! as minimum idle time. Deliveries are Redis's delivery counter plus the deliveries an entry
//! had before it was queued again (field `deliveries`). Each step that reads and then writes
//! is one Lua script, so two consumers never both act on one entry.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::streams::StreamReadReply;
use redis::{AsyncConnectionConfig, Script, Value};
use tokio::sync::Semaphore;

use super::scripts::{extend_script, fail_script, PUSH, RECLAIM, REDRIVE};
use super::{Failed, QueueOptions, RawDeadLetter, RawJob};
use crate::bus::redis::Link;
use crate::bus::{now_ms, BusError};

/// Most blocking reads waiting at once per queue (each holds a connection of its own);
/// further readers wait for one to finish.
const MAX_BLOCKING_READERS: usize = 64;
/// Blocking connections kept open between reads.
const MAX_IDLE_BLOCKING: usize = 4;
/// Longest single blocking read; a longer wait is several reads.
const MAX_BLOCK: Duration = Duration::from_secs(10);

/// What [`RECLAIM`] answers: the next cursor and `(id, payload, delivery)` per entry.
type ReclaimReply = (String, Vec<(String, String, u32)>);

#[derive(Debug, Clone)]
pub(crate) struct RedisQueue {
    inner: Arc<Inner>,
}

struct Inner {
    link: Link,
    options: QueueOptions,
    key: String,
    dead_key: String,
    /// The consumer group is known to exist.
    group_ready: AtomicBool,
    /// Undecodable entries dead-lettered by this process.
    undecodable: AtomicU64,
    /// Connections for blocking reads (a blocking read would stall every other command on
    /// the shared multiplexed connection). A std mutex: held only to push or pop.
    idle_blocking: Mutex<Vec<MultiplexedConnection>>,
    blocking_readers: Semaphore,
    scripts: Scripts,
}

struct Scripts {
    reclaim: Script,
    extend: Script,
    fail: Script,
    push: Script,
    redrive: Script,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

fn is_nogroup(err: &redis::RedisError) -> bool {
    err.code() == Some("NOGROUP") || err.to_string().contains("NOGROUP")
}

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl RedisQueue {
    pub(crate) fn new(link: Link, options: QueueOptions) -> Self {
        let key = link.key(&format!("jobs:{}", options.name));
        let dead_key = format!("{key}:dead");
        Self {
            inner: Arc::new(Inner {
                link,
                options,
                key,
                dead_key,
                group_ready: AtomicBool::new(false),
                undecodable: AtomicU64::new(0),
                idle_blocking: Mutex::new(Vec::new()),
                blocking_readers: Semaphore::new(MAX_BLOCKING_READERS),
                scripts: Scripts {
                    reclaim: Script::new(RECLAIM),
                    extend: Script::new(&extend_script()),
                    fail: Script::new(&fail_script()),
                    push: Script::new(PUSH),
                    redrive: Script::new(REDRIVE),
                },
            }),
        }
    }

    pub(crate) fn options(&self) -> &QueueOptions {
        &self.inner.options
    }

    pub(crate) fn undecodable(&self) -> u64 {
        self.inner.undecodable.load(Ordering::Relaxed)
    }

    /// Forgets that the group exists (after the keys were deleted).
    pub(crate) fn forget_group(&self) {
        self.inner.group_ready.store(false, Ordering::Release);
    }

    /// Creates the consumer group (reading from the stream's start, so jobs queued before any
    /// consumer existed are delivered). Also run after Redis lost its data.
    async fn ensure_group(&self, force: bool) -> Result<(), BusError> {
        if !force && self.inner.group_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut conn = self.inner.link.conn();
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.inner.key)
            .arg(&self.inner.options.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match created {
            Ok(()) => {}
            Err(err) if err.code() == Some("BUSYGROUP") => {}
            Err(err) => return Err(err.into()),
        }
        self.inner.group_ready.store(true, Ordering::Release);
        Ok(())
    }

    pub(crate) async fn push(&self, payload: &str) -> Result<String, BusError> {
        let mut conn = self.inner.link.conn();
        let id: Option<String> = self
            .inner
            .scripts
            .push
            .key(&self.inner.key)
            .arg(self.inner.options.capacity)
            .arg(payload)
            .invoke_async(&mut conn)
            .await?;
        id.ok_or(BusError::QueueFull)
    }

    pub(crate) async fn read_new(
        &self,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<RawJob>, BusError> {
        self.ensure_group(false).await?;
        if wait.is_zero() {
            let mut conn = self.inner.link.conn();
            return self.read_once(&mut conn, consumer, max, None).await;
        }
        let deadline = tokio::time::Instant::now() + wait;
        let _reader = self
            .inner
            .blocking_readers
            .acquire()
            .await
            .map_err(|_| BusError::Closed)?;
        let mut conn = self.blocking_connection().await?;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let block = left.min(MAX_BLOCK).max(Duration::from_millis(1));
            // The server answers by the end of the block; past that plus the command timeout,
            // the connection is broken and is not kept.
            let limit = block + self.inner.link.timeout();
            let read =
                tokio::time::timeout(limit, self.read_once(&mut conn, consumer, max, Some(block)));
            match read.await {
                Ok(Ok(jobs)) => {
                    if !jobs.is_empty() || tokio::time::Instant::now() >= deadline {
                        self.return_blocking(conn);
                        return Ok(jobs);
                    }
                }
                Ok(Err(err)) => return Err(err),
                Err(_) => return Err(BusError::Timeout),
            }
        }
    }

    async fn blocking_connection(&self) -> Result<MultiplexedConnection, BusError> {
        let idle = self
            .inner
            .idle_blocking
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        if let Some(conn) = idle {
            return Ok(conn);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.inner.link.timeout()))
            .set_response_timeout(None);
        Ok(self
            .inner
            .link
            .client()
            .get_multiplexed_async_connection_with_config(&config)
            .await?)
    }

    fn return_blocking(&self, conn: MultiplexedConnection) {
        let mut idle = self
            .inner
            .idle_blocking
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < MAX_IDLE_BLOCKING {
            idle.push(conn);
        }
    }

    async fn read_once<C: redis::aio::ConnectionLike + Send>(
        &self,
        conn: &mut C,
        consumer: &str,
        max: usize,
        block: Option<Duration>,
    ) -> Result<Vec<RawJob>, BusError> {
        let mut command = redis::cmd("XREADGROUP");
        command
            .arg("GROUP")
            .arg(&self.inner.options.group)
            .arg(consumer)
            .arg("COUNT")
            .arg(max);
        if let Some(block) = block {
            command.arg("BLOCK").arg(ms(block).max(1));
        }
        command.arg("STREAMS").arg(&self.inner.key).arg(">");
        let reply: redis::RedisResult<Option<StreamReadReply>> = command.query_async(conn).await;
        let reply = match reply {
            Err(err) if is_nogroup(&err) => {
                self.ensure_group(true).await?;
                command.query_async(conn).await?
            }
            other => other?,
        };
        let entries = reply
            .map(|reply| {
                reply
                    .keys
                    .into_iter()
                    .flat_map(|key| key.ids)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        Ok(entries
            .into_iter()
            .map(|entry| {
                let prior = entry
                    .get::<String>("deliveries")
                    .and_then(|n| n.parse::<u32>().ok())
                    .unwrap_or(0);
                RawJob {
                    payload: entry.get::<String>("job").unwrap_or_default(),
                    id: entry.id,
                    delivery: prior + 1,
                }
            })
            .collect())
    }

    pub(crate) async fn reclaim(
        &self,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<RawJob>, BusError> {
        self.ensure_group(false).await?;
        let mut conn = self.inner.link.conn();
        let mut claimed = Vec::new();
        // XAUTOCLAIM looks at a bounded slice of the pending list per call (COUNT × 10
        // entries): follow its cursor through the whole list until it wraps to 0-0.
        let mut cursor = "0-0".to_owned();
        loop {
            let reply: redis::RedisResult<ReclaimReply> = self
                .inner
                .scripts
                .reclaim
                .key(&self.inner.key)
                .key(&self.inner.dead_key)
                .arg(&self.inner.options.group)
                .arg(consumer)
                .arg(ms(min_idle))
                .arg(&cursor)
                .arg(max - claimed.len())
                .arg(self.inner.options.max_deliveries)
                .arg(self.inner.options.dead_letter_capacity)
                .arg(now_ms())
                .invoke_async(&mut conn)
                .await;
            let (next, entries) = match reply {
                // The stream or group vanished (Redis lost its data): nothing is pending.
                Err(err) if is_nogroup(&err) => {
                    self.ensure_group(true).await?;
                    return Ok(claimed);
                }
                other => other?,
            };
            claimed.extend(entries.into_iter().map(|(id, payload, delivery)| RawJob {
                id,
                payload,
                delivery,
            }));
            if next == "0-0" || claimed.len() >= max {
                return Ok(claimed);
            }
            cursor = next;
        }
    }

    pub(crate) async fn extend(&self, id: &str, consumer: &str) -> Result<bool, BusError> {
        let mut conn = self.inner.link.conn();
        let extended: redis::RedisResult<i64> = self
            .inner
            .scripts
            .extend
            .key(&self.inner.key)
            .arg(&self.inner.options.group)
            .arg(consumer)
            .arg(id)
            .invoke_async(&mut conn)
            .await;
        match extended {
            Ok(extended) => Ok(extended == 1),
            Err(err) if is_nogroup(&err) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    pub(crate) async fn fail(
        &self,
        id: &str,
        consumer: &str,
        delivery: u32,
        reason: &str,
    ) -> Result<Failed, BusError> {
        let mut conn = self.inner.link.conn();
        let outcome: redis::RedisResult<String> = self
            .inner
            .scripts
            .fail
            .key(&self.inner.key)
            .key(&self.inner.dead_key)
            .arg(&self.inner.options.group)
            .arg(consumer)
            .arg(id)
            .arg(delivery)
            .arg(self.inner.options.max_deliveries)
            .arg(self.inner.options.dead_letter_capacity)
            .arg(reason)
            .arg(now_ms())
            .invoke_async(&mut conn)
            .await;
        match outcome {
            Ok(outcome) => Ok(match outcome.as_str() {
                "dead" => Failed::DeadLettered,
                "retry" => Failed::Retrying,
                _ => Failed::LeaseLost,
            }),
            Err(err) if is_nogroup(&err) => Ok(Failed::LeaseLost),
            Err(err) => Err(err.into()),
        }
    }

    /// Dead-letters an entry whose payload does not decode, and counts it.
    pub(crate) async fn bury(&self, entry: &RawJob, reason: &str) -> Result<(), BusError> {
        let mut conn = self.inner.link.conn();
        redis::pipe()
            .atomic()
            .cmd("XADD")
            .arg(&self.inner.dead_key)
            .arg("MAXLEN")
            .arg("~")
            .arg(self.inner.options.dead_letter_capacity)
            .arg("*")
            .arg("job")
            .arg(&entry.payload)
            .arg("deliveries")
            .arg(entry.delivery)
            .arg("reason")
            .arg(reason)
            .arg("failed_at_ms")
            .arg(now_ms())
            .ignore()
            .xack(&self.inner.key, &self.inner.options.group, &[&entry.id])
            .ignore()
            .xdel(&self.inner.key, &[&entry.id])
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        self.inner.undecodable.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    pub(crate) async fn ack(&self, id: &str) -> Result<(), BusError> {
        let mut conn = self.inner.link.conn();
        redis::pipe()
            .atomic()
            .xack(&self.inner.key, &self.inner.options.group, &[id])
            .ignore()
            .xdel(&self.inner.key, &[id])
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    pub(crate) async fn outstanding(&self) -> Result<u64, BusError> {
        let mut conn = self.inner.link.conn();
        Ok(redis::cmd("XLEN")
            .arg(&self.inner.key)
            .query_async(&mut conn)
            .await?)
    }

    pub(crate) async fn dead_letter_count(&self) -> Result<u64, BusError> {
        let mut conn = self.inner.link.conn();
        Ok(redis::cmd("XLEN")
            .arg(&self.inner.dead_key)
            .query_async(&mut conn)
            .await?)
    }

    pub(crate) async fn dead_letters(&self, max: usize) -> Result<Vec<RawDeadLetter>, BusError> {
        let mut conn = self.inner.link.conn();
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(&self.inner.dead_key)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(max.max(1))
            .query_async(&mut conn)
            .await?;
        Ok(reply
            .ids
            .into_iter()
            .map(|entry| RawDeadLetter {
                raw: entry.get::<String>("job").unwrap_or_default(),
                deliveries: entry
                    .get::<String>("deliveries")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0),
                reason: entry.get::<String>("reason").unwrap_or_default(),
                failed_at_ms: entry
                    .get::<String>("failed_at_ms")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0),
                id: entry.id,
            })
            .collect())
    }

    pub(crate) async fn redrive(&self, id: &str) -> Result<bool, BusError> {
        let mut conn = self.inner.link.conn();
        let moved: Value = self
            .inner
            .scripts
            .redrive
            .key(&self.inner.key)
            .key(&self.inner.dead_key)
            .arg(id)
            .arg(self.inner.options.capacity)
            .invoke_async(&mut conn)
            .await?;
        match moved {
            Value::Int(1) => Ok(true),
            Value::Nil | Value::Boolean(false) => Err(BusError::QueueFull),
            _ => Ok(false),
        }
    }
}
