//! The in-process bus: the embedded default, with the Redis backend's semantics within one
//! process (a job survives the loss of a consumer task, not of the process).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::channel::Fanout;
use super::log::memory::MemoryLog;
use super::log::LogOptions;
use super::queue::memory::MemoryQueue;
use super::queue::QueueOptions;
use super::{BusConfig, BusError, LiveState};

/// Rate-limit windows kept before expired ones are swept.
const MAX_RATE_KEYS: usize = 100_000;

/// The in-process backend. Clones share state.
#[derive(Debug, Clone)]
pub struct MemoryBus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    // A std mutex: every critical section is short and never awaits.
    state: Mutex<State>,
    fanout: Arc<Fanout>,
    recordings: MemoryQueue,
    /// Queues and logs by name, so that every handle to one name shares it. Std mutexes,
    /// held for a lookup.
    queues: Mutex<HashMap<String, MemoryQueue>>,
    logs: Mutex<HashMap<String, MemoryLog>>,
    boards: super::leaderboard::MemoryBoards,
    series: super::series::SharedMemorySeries,
}

#[derive(Debug, Default)]
struct State {
    live: HashMap<i64, LiveState>,
    viewers: HashMap<i64, HashSet<String>>,
    rates: HashMap<String, (Instant, u32)>,
    /// Token buckets: tokens left and when they were counted.
    buckets: HashMap<String, (f64, Instant)>,
    /// Presence: member -> when it expires, per key.
    presence: HashMap<String, HashMap<String, Instant>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the maps half-updated in a way that
    // matters more than losing the bus, so a poisoned lock is used as is.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl MemoryBus {
    /// A fresh, empty bus.
    pub fn new(config: &BusConfig) -> Self {
        let recordings = MemoryQueue::new(config.recordings_queue());
        let queues = HashMap::from([(recordings.options().name.clone(), recordings.clone())]);
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                fanout: Arc::new(Fanout::new(config.events_capacity)),
                recordings,
                queues: Mutex::new(queues),
                logs: Mutex::new(HashMap::new()),
                boards: super::leaderboard::MemoryBoards::default(),
                series: super::series::SharedMemorySeries::default(),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.inner.state)
    }

    pub(crate) fn fanout(&self) -> &Arc<Fanout> {
        &self.inner.fanout
    }

    pub(crate) fn boards(&self) -> &super::leaderboard::MemoryBoards {
        &self.inner.boards
    }

    pub(crate) fn series(&self) -> &super::series::SharedMemorySeries {
        &self.inner.series
    }

    pub(crate) fn recordings(&self) -> &MemoryQueue {
        &self.inner.recordings
    }

    /// The queue named `options.name`, created with `options` on first use.
    pub(crate) fn queue(&self, options: QueueOptions) -> MemoryQueue {
        lock(&self.inner.queues)
            .entry(options.name.clone())
            .or_insert_with(|| MemoryQueue::new(options))
            .clone()
    }

    /// The log named `options.name`, created with `options` on first use.
    pub(crate) fn log(&self, options: LogOptions) -> MemoryLog {
        lock(&self.inner.logs)
            .entry(options.name.clone())
            .or_insert_with(|| MemoryLog::new(options))
            .clone()
    }

    pub(super) async fn ping(&self) -> Result<(), BusError> {
        Ok(())
    }

    pub(super) async fn set_live(&self, room_id: i64, state: &LiveState) -> Result<(), BusError> {
        self.state().live.insert(room_id, state.clone());
        Ok(())
    }

    pub(super) async fn clear_live(&self, room_id: i64, stream_id: i64) -> Result<bool, BusError> {
        let mut state = self.state();
        if state
            .live
            .get(&room_id)
            .is_some_and(|live| live.stream_id == stream_id)
        {
            state.live.remove(&room_id);
            return Ok(true);
        }
        Ok(false)
    }

    pub(super) async fn live(&self, room_id: i64) -> Result<Option<LiveState>, BusError> {
        Ok(self.state().live.get(&room_id).cloned())
    }

    pub(super) async fn live_rooms(&self, max: usize) -> Result<Vec<i64>, BusError> {
        Ok(self.state().live.keys().copied().take(max).collect())
    }

    pub(super) async fn viewer_join(&self, room_id: i64, session: &str) -> Result<u64, BusError> {
        let mut state = self.state();
        let set = state.viewers.entry(room_id).or_default();
        set.insert(session.to_owned());
        Ok(set.len() as u64)
    }

    pub(super) async fn viewer_leave(&self, room_id: i64, session: &str) -> Result<u64, BusError> {
        let mut state = self.state();
        let Some(set) = state.viewers.get_mut(&room_id) else {
            return Ok(0);
        };
        set.remove(session);
        let count = set.len() as u64;
        if count == 0 {
            state.viewers.remove(&room_id);
        }
        Ok(count)
    }

    pub(super) async fn viewers(&self, room_id: i64) -> Result<u64, BusError> {
        Ok(self
            .state()
            .viewers
            .get(&room_id)
            .map_or(0, |set| set.len() as u64))
    }

    pub(super) async fn rate_limit(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> Result<bool, BusError> {
        let now = Instant::now();
        let mut state = self.state();
        if state.rates.len() >= MAX_RATE_KEYS {
            state
                .rates
                .retain(|_, (started, _)| now.duration_since(*started) < window);
        }
        let entry = state.rates.entry(key.to_owned()).or_insert((now, 0));
        if now.duration_since(entry.0) >= window {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        Ok(entry.1 <= limit)
    }

    pub(super) async fn presence_touch(
        &self,
        key: &str,
        members: &[String],
        ttl: Duration,
    ) -> Result<Vec<String>, BusError> {
        let now = Instant::now();
        let mut state = self.state();
        let set = state.presence.entry(key.to_owned()).or_default();
        let mut fresh = Vec::new();
        for member in members {
            if set.get(member).is_none_or(|expires| *expires <= now) {
                fresh.push(member.clone());
            }
            set.insert(member.clone(), now + ttl);
        }
        Ok(fresh)
    }

    pub(super) async fn presence_expire(&self, key: &str) -> Result<Vec<String>, BusError> {
        let now = Instant::now();
        let mut state = self.state();
        let Some(set) = state.presence.get_mut(key) else {
            return Ok(Vec::new());
        };
        let gone: Vec<String> = set
            .iter()
            .filter(|(_, expires)| **expires <= now)
            .map(|(member, _)| member.clone())
            .collect();
        for member in &gone {
            set.remove(member);
        }
        if set.is_empty() {
            state.presence.remove(key);
        }
        Ok(gone)
    }

    pub(super) async fn presence(
        &self,
        key: &str,
        max: usize,
    ) -> Result<(u64, Vec<String>), BusError> {
        let now = Instant::now();
        let state = self.state();
        let mut members: Vec<String> = state
            .presence
            .get(key)
            .into_iter()
            .flatten()
            .filter(|(_, expires)| **expires > now)
            .map(|(member, _)| member.clone())
            .collect();
        let count = members.len() as u64;
        members.sort();
        members.truncate(max);
        Ok((count, members))
    }

    pub(super) async fn take_token(
        &self,
        key: &str,
        capacity: u32,
        per_token: Duration,
    ) -> Result<bool, BusError> {
        let now = Instant::now();
        let capacity = f64::from(capacity.max(1));
        let per_s = per_token.as_secs_f64().max(0.001);
        let mut state = self.state();
        if state.buckets.len() >= MAX_RATE_KEYS {
            // Full buckets hold nothing a fresh one would not.
            state.buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() / per_s < capacity
            });
        }
        let (tokens, at) = state
            .buckets
            .entry(key.to_owned())
            .or_insert((capacity, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() / per_s).min(capacity);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    pub(super) async fn rate_hits(&self, key: &str, window: Duration) -> Result<u64, BusError> {
        let now = Instant::now();
        Ok(match self.state().rates.get(key) {
            Some((started, hits)) if now.duration_since(*started) < window => u64::from(*hits),
            _ => 0,
        })
    }

    pub(super) async fn clear(&self) -> Result<(), BusError> {
        *self.state() = State::default();
        for queue in lock(&self.inner.queues).values() {
            queue.clear();
        }
        for log in lock(&self.inner.logs).values() {
            log.clear();
        }
        lock(&self.inner.boards).clear();
        Ok(())
    }
}
