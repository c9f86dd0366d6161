//! `Log<T>`: an append-only history per key (a chat room is one key), for recovery after a
//! reconnect.
//!
//! The bus assigns each entry an **offset**, increasing by one per key. The history of a key
//! has an **epoch**, a string that changes whenever the history is lost (the key deleted,
//! Redis flushed or restarted empty, the in-process log evicted): offsets are only comparable
//! within one epoch. A reader remembers the [`Position`] of the last entry it saw and asks
//! for everything after it; [`History::complete`] tells whether the answer is all of it, or
//! whether something was trimmed, cut by the limit, or lost with an old epoch (then reload
//! from the database).
//!
//! Each key keeps about [`LogOptions::max_len`] entries (Redis `XADD … MAXLEN ~ N`, an
//! in-process ring). On Redis the history of `key` is the stream `{prefix}:log:{name}:{key}`,
//! with its epoch and last offset in the hash `{prefix}:log:{name}:{key}:meta`.

pub(crate) mod memory;
pub(crate) mod redis;

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::BusError;

/// Default number of entries kept per key.
pub const DEFAULT_MAX_LEN: usize = 1000;
/// Most entries one read returns.
pub const MAX_READ: usize = 1000;

/// The settings of one log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOptions {
    /// The log's name, part of its keys.
    pub name: String,
    /// About how many entries each key keeps (the oldest are trimmed).
    pub max_len: usize,
}

impl LogOptions {
    /// A log named `name` keeping [`DEFAULT_MAX_LEN`] entries per key.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            max_len: DEFAULT_MAX_LEN,
        }
    }
}

/// Where a reader is in a key's history.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
pub struct Position {
    /// The offset of the last entry seen; 0 before the first.
    pub offset: u64,
    /// The epoch that offset belongs to; empty while the key has no history.
    pub epoch: String,
}

/// One entry of a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<T> {
    /// Its offset in the key's epoch.
    pub offset: u64,
    /// What was appended.
    pub value: T,
}

/// The answer to [`Log::read`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History<T> {
    /// The key's current epoch (empty when the key has no history).
    pub epoch: String,
    /// The offset of the key's newest entry (0 when none).
    pub latest: u64,
    /// Entries in offset order.
    pub entries: Vec<Entry<T>>,
    /// Whether `entries` are everything after the reader's position: the same epoch, nothing
    /// trimmed in between, nothing left out by the limit. Without a position: whether they
    /// are the whole history of the epoch.
    pub complete: bool,
}

impl<T> History<T> {
    /// The position after the last entry returned (or the latest, when none was).
    pub fn position(&self) -> Position {
        Position {
            offset: self
                .entries
                .last()
                .map_or(self.latest, |entry| entry.offset),
            epoch: self.epoch.clone(),
        }
    }
}

/// What a backend read: the key's state and a slice of its entries.
#[derive(Debug)]
pub(crate) struct RawHistory {
    pub(crate) epoch: String,
    pub(crate) latest: u64,
    /// The oldest retained offset (0 when none is).
    pub(crate) oldest: u64,
    /// Entries after the reader's offset (when `after` is true), else the newest ones.
    pub(crate) entries: Vec<(u64, String)>,
    pub(crate) after: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum Backend {
    Redis(redis::RedisLog),
    Memory(memory::MemoryLog),
}

/// An append-only history of `T`s per key. Clones share it.
#[derive(Debug)]
pub struct Log<T> {
    backend: Backend,
    _entries: PhantomData<fn() -> T>,
}

impl<T> Clone for Log<T> {
    fn clone(&self) -> Self {
        Self {
            backend: self.backend.clone(),
            _entries: PhantomData,
        }
    }
}

/// A fresh epoch: unique per process start, time and call.
pub(crate) fn new_epoch() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{nanos:x}-{:x}-{:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

impl<T> Log<T>
where
    T: Serialize + DeserializeOwned,
{
    pub(crate) fn from_backend(backend: Backend) -> Self {
        Self {
            backend,
            _entries: PhantomData,
        }
    }

    /// Appends `value` to the history of `key`; returns its position (offset and epoch).
    pub async fn append(&self, key: &str, value: &T) -> Result<Position, BusError> {
        let payload = serde_json::to_string(value)?;
        match &self.backend {
            Backend::Redis(log) => log.append(key, &payload).await,
            Backend::Memory(log) => Ok(log.append(key, payload)),
        }
    }

    /// Appends `value` to the history of `key` unless an entry with the same `id` is already
    /// in it (in the current epoch); returns its position and whether it was appended. A
    /// writer that cannot know whether its last append landed (it died before recording
    /// that) appends again with the same id and the history still holds the entry once. The
    /// ids are kept with the key (on Redis the hash `{stream}:ids`) until it is deleted.
    pub async fn append_once(
        &self,
        key: &str,
        id: &str,
        value: &T,
    ) -> Result<(Position, bool), BusError> {
        let payload = serde_json::to_string(value)?;
        match &self.backend {
            Backend::Redis(log) => log.append_once(key, id, &payload).await,
            Backend::Memory(log) => Ok(log.append_once(key, id, payload)),
        }
    }

    /// Up to `limit` (at most [`MAX_READ`]) entries of `key` after `since`, or the newest
    /// ones when `since` is `None`, from another epoch, or ahead of the history. See
    /// [`History::complete`].
    pub async fn read(
        &self,
        key: &str,
        since: Option<&Position>,
        limit: usize,
    ) -> Result<History<T>, BusError> {
        let limit = limit.clamp(1, MAX_READ);
        // A reader that has seen nothing asks for everything: the same as no position.
        let since = since.filter(|since| !(since.offset == 0 && since.epoch.is_empty()));
        let raw = match &self.backend {
            Backend::Redis(log) => log.read(key, since, limit).await?,
            Backend::Memory(log) => log.read(key, since, limit),
        };
        let mut entries = Vec::with_capacity(raw.entries.len());
        for (offset, payload) in &raw.entries {
            match serde_json::from_str(payload) {
                Ok(value) => entries.push(Entry {
                    offset: *offset,
                    value,
                }),
                Err(err) => {
                    tracing::warn!(log.key = %key, log.offset = offset, error = %err, "skipping an undecodable log entry");
                }
            }
        }
        let decoded_all = entries.len() == raw.entries.len();
        let last = raw.entries.last().map(|(offset, _)| *offset);
        let complete = decoded_all
            && match since {
                Some(since) if raw.after => {
                    // Nothing trimmed between the reader and what came back, and the answer
                    // reaches the newest entry.
                    let start_kept = since.offset >= raw.latest || since.offset + 1 >= raw.oldest;
                    start_kept && last.unwrap_or(since.offset) == raw.latest
                }
                Some(since) => {
                    // A reader with no history yet, on a key that has none either.
                    since.offset == 0 && raw.latest == 0
                }
                None => {
                    raw.latest == 0
                        || (raw.entries.first().map(|(offset, _)| *offset) == Some(1)
                            && last == Some(raw.latest))
                }
            };
        Ok(History {
            epoch: raw.epoch,
            latest: raw.latest,
            entries,
            complete,
        })
    }

    /// The position of the newest entry of `key` (offset 0, empty epoch when it has none).
    pub async fn position(&self, key: &str) -> Result<Position, BusError> {
        match &self.backend {
            Backend::Redis(log) => log.position(key).await,
            Backend::Memory(log) => Ok(log.position(key)),
        }
    }

    /// Deletes the history of `key`; the next append starts a new epoch.
    pub async fn delete(&self, key: &str) -> Result<(), BusError> {
        match &self.backend {
            Backend::Redis(log) => log.delete(key).await,
            Backend::Memory(log) => {
                log.delete(key);
                Ok(())
            }
        }
    }
}

/// Whether a reader at `since` reads entries after its offset (same epoch, not ahead) rather
/// than the newest ones.
pub(crate) fn reads_after(since: Option<&Position>, epoch: &str, latest: u64) -> Option<u64> {
    let since = since?;
    (!epoch.is_empty() && since.epoch == epoch && since.offset <= latest).then_some(since.offset)
}
