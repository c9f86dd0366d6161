//! The Redis log: a stream per key whose entry ids are `{offset}-0`, and a hash beside it
//! holding the epoch and the last offset. A stream missing while its hash exists (or the
//! reverse) means the history was lost: the next append starts a new epoch at offset 1.
//! Appends and reads are Lua scripts, so each sees the hash and the stream together.

use redis::Script;
use std::sync::Arc;

use super::{new_epoch, LogOptions, Position, RawHistory};
use crate::bus::redis::Link;
use crate::bus::BusError;

/// Appends one entry; returns `{epoch, offset}`.
const APPEND: &str = r"
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if (not epoch) or redis.call('EXISTS', KEYS[1]) == 0 then
  epoch = ARGV[3]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'epoch', epoch, 'offset', 0)
end
local offset = redis.call('HINCRBY', KEYS[2], 'offset', 1)
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], offset .. '-0', 'v', ARGV[2])
return {epoch, offset}";

/// Appends one entry unless an entry with the same id (`ARGV[4]`) is in the current epoch;
/// returns `{epoch, offset, appended}` (the earlier entry's offset when not appended). The ids
/// live in the hash `KEYS[3]`, reset with the epoch.
const APPEND_ONCE: &str = r"
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if (not epoch) or redis.call('EXISTS', KEYS[1]) == 0 then
  epoch = ARGV[3]
  redis.call('DEL', KEYS[1], KEYS[3])
  redis.call('HSET', KEYS[2], 'epoch', epoch, 'offset', 0)
end
local seen = redis.call('HGET', KEYS[3], ARGV[4])
if seen then return {epoch, tonumber(seen), 0} end
local offset = redis.call('HINCRBY', KEYS[2], 'offset', 1)
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], offset .. '-0', 'v', ARGV[2])
redis.call('HSET', KEYS[3], ARGV[4], offset)
return {epoch, offset, 1}";

/// Reads `{epoch, latest, oldest, after?, entries}`: the entries after the reader's offset
/// when it is in the current epoch and not ahead, else the newest ones (newest first).
const READ: &str = r"
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if (not epoch) or redis.call('EXISTS', KEYS[1]) == 0 then return {'', 0, 0, 0, {}} end
local latest = tonumber(redis.call('HGET', KEYS[2], 'offset')) or 0
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
local oldest = 0
if first[1] then oldest = tonumber(string.match(first[1][1], '^(%d+)')) or 0 end
local since = tonumber(ARGV[2]) or 0
if ARGV[4] == '1' and ARGV[1] == epoch and since <= latest then
  local entries = redis.call('XRANGE', KEYS[1], string.format('%d-0', since + 1), '+', 'COUNT', ARGV[3])
  return {epoch, latest, oldest, 1, entries}
end
return {epoch, latest, oldest, 0, redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', ARGV[3])}";

/// Returns `{epoch, offset}` of the newest entry, or `{'', 0}`.
const POSITION: &str = r"
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if (not epoch) or redis.call('EXISTS', KEYS[1]) == 0 then return {'', 0} end
return {epoch, tonumber(redis.call('HGET', KEYS[2], 'offset')) or 0}";

#[derive(Debug, Clone)]
pub(crate) struct RedisLog {
    inner: Arc<Inner>,
}

struct Inner {
    link: Link,
    options: LogOptions,
    append: Script,
    append_once: Script,
    read: Script,
    position: Script,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLog")
            .field("name", &self.options.name)
            .finish_non_exhaustive()
    }
}

type Entries = Vec<(String, Vec<String>)>;

impl RedisLog {
    pub(crate) fn new(link: Link, options: LogOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                link,
                options,
                append: Script::new(APPEND),
                append_once: Script::new(APPEND_ONCE),
                read: Script::new(READ),
                position: Script::new(POSITION),
            }),
        }
    }

    /// The stream and the hash of `key`.
    pub(crate) fn keys(&self, key: &str) -> (String, String) {
        let stream = self
            .inner
            .link
            .key(&format!("log:{}:{key}", self.inner.options.name));
        let meta = format!("{stream}:meta");
        (stream, meta)
    }

    pub(crate) async fn append(&self, key: &str, payload: &str) -> Result<Position, BusError> {
        let (stream, meta) = self.keys(key);
        let mut conn = self.inner.link.conn();
        let (epoch, offset): (String, u64) = self
            .inner
            .append
            .key(stream)
            .key(meta)
            .arg(self.inner.options.max_len.max(1))
            .arg(payload)
            .arg(new_epoch())
            .invoke_async(&mut conn)
            .await?;
        Ok(Position { offset, epoch })
    }

    pub(crate) async fn append_once(
        &self,
        key: &str,
        id: &str,
        payload: &str,
    ) -> Result<(Position, bool), BusError> {
        let (stream, meta) = self.keys(key);
        let ids = format!("{stream}:ids");
        let mut conn = self.inner.link.conn();
        let (epoch, offset, appended): (String, u64, i64) = self
            .inner
            .append_once
            .key(stream)
            .key(meta)
            .key(ids)
            .arg(self.inner.options.max_len.max(1))
            .arg(payload)
            .arg(new_epoch())
            .arg(id)
            .invoke_async(&mut conn)
            .await?;
        Ok((Position { offset, epoch }, appended == 1))
    }

    pub(crate) async fn read(
        &self,
        key: &str,
        since: Option<&Position>,
        limit: usize,
    ) -> Result<RawHistory, BusError> {
        let (stream, meta) = self.keys(key);
        let mut conn = self.inner.link.conn();
        let (epoch, latest, oldest, after, entries): (String, u64, u64, i64, Entries) = self
            .inner
            .read
            .key(stream)
            .key(meta)
            .arg(since.map_or("", |since| since.epoch.as_str()))
            .arg(since.map_or(0, |since| since.offset))
            .arg(limit)
            .arg(if since.is_some() { "1" } else { "0" })
            .invoke_async(&mut conn)
            .await?;
        let mut entries: Vec<(u64, String)> = entries
            .into_iter()
            .filter_map(|(id, fields)| {
                let offset = id.split('-').next()?.parse().ok()?;
                let at = fields.iter().position(|field| field == "v")?;
                Some((offset, fields.get(at + 1)?.clone()))
            })
            .collect();
        let after = after == 1;
        if !after {
            entries.reverse();
        }
        Ok(RawHistory {
            epoch,
            latest,
            oldest,
            entries,
            after,
        })
    }

    pub(crate) async fn position(&self, key: &str) -> Result<Position, BusError> {
        let (stream, meta) = self.keys(key);
        let mut conn = self.inner.link.conn();
        let (epoch, offset): (String, u64) = self
            .inner
            .position
            .key(stream)
            .key(meta)
            .invoke_async(&mut conn)
            .await?;
        Ok(Position { offset, epoch })
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<(), BusError> {
        let (stream, meta) = self.keys(key);
        let mut conn = self.inner.link.conn();
        let ids = format!("{stream}:ids");
        redis::cmd("DEL")
            .arg(stream)
            .arg(meta)
            .arg(ids)
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }
}
