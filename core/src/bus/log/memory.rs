//! The in-process log: a ring per key, with the Redis log's offsets and epochs.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::{new_epoch, reads_after, LogOptions, Position, RawHistory};

/// Most keys one in-process log keeps; past it the key appended to longest ago is evicted
/// (its history is lost, so its next append starts a new epoch).
pub(crate) const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone)]
pub(crate) struct MemoryLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    options: LogOptions,
    // A std mutex: every critical section is short and never awaits.
    keys: Mutex<HashMap<String, Ring>>,
}

#[derive(Debug)]
struct Ring {
    epoch: String,
    latest: u64,
    entries: VecDeque<(u64, String)>,
    /// Ids given to `append_once`, with their offsets.
    ids: HashMap<String, u64>,
    appended: Instant,
}

impl MemoryLog {
    pub(crate) fn new(options: LogOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                options,
                keys: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn keys(&self) -> MutexGuard<'_, HashMap<String, Ring>> {
        self.inner
            .keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn append(&self, key: &str, payload: String) -> Position {
        self.append_inner(key, None, payload).0
    }

    pub(crate) fn append_once(&self, key: &str, id: &str, payload: String) -> (Position, bool) {
        self.append_inner(key, Some(id), payload)
    }

    fn append_inner(&self, key: &str, id: Option<&str>, payload: String) -> (Position, bool) {
        let mut keys = self.keys();
        if !keys.contains_key(key) && keys.len() >= MAX_KEYS {
            let oldest = keys
                .iter()
                .min_by_key(|(_, ring)| ring.appended)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                keys.remove(&oldest);
            }
        }
        let ring = keys.entry(key.to_owned()).or_insert_with(|| Ring {
            epoch: new_epoch(),
            latest: 0,
            entries: VecDeque::new(),
            ids: HashMap::new(),
            appended: Instant::now(),
        });
        if let Some(seen) = id.and_then(|id| ring.ids.get(id)) {
            let position = Position {
                offset: *seen,
                epoch: ring.epoch.clone(),
            };
            return (position, false);
        }
        ring.latest += 1;
        if let Some(id) = id {
            ring.ids.insert(id.to_owned(), ring.latest);
        }
        ring.appended = Instant::now();
        ring.entries.push_back((ring.latest, payload));
        while ring.entries.len() > self.inner.options.max_len.max(1) {
            ring.entries.pop_front();
        }
        let position = Position {
            offset: ring.latest,
            epoch: ring.epoch.clone(),
        };
        (position, true)
    }

    pub(crate) fn read(&self, key: &str, since: Option<&Position>, limit: usize) -> RawHistory {
        let keys = self.keys();
        let Some(ring) = keys.get(key) else {
            return RawHistory {
                epoch: String::new(),
                latest: 0,
                oldest: 0,
                entries: Vec::new(),
                after: false,
            };
        };
        let oldest = ring.entries.front().map_or(0, |(offset, _)| *offset);
        let (entries, after) = match reads_after(since, &ring.epoch, ring.latest) {
            Some(after) => (
                ring.entries
                    .iter()
                    .filter(|(offset, _)| *offset > after)
                    .take(limit)
                    .cloned()
                    .collect(),
                true,
            ),
            None => {
                let skip = ring.entries.len().saturating_sub(limit);
                (ring.entries.iter().skip(skip).cloned().collect(), false)
            }
        };
        RawHistory {
            epoch: ring.epoch.clone(),
            latest: ring.latest,
            oldest,
            entries,
            after,
        }
    }

    pub(crate) fn position(&self, key: &str) -> Position {
        self.keys().get(key).map_or(
            Position {
                offset: 0,
                epoch: String::new(),
            },
            |ring| Position {
                offset: ring.latest,
                epoch: ring.epoch.clone(),
            },
        )
    }

    pub(crate) fn delete(&self, key: &str) {
        self.keys().remove(key);
    }

    pub(crate) fn clear(&self) {
        self.keys().clear();
    }
}
