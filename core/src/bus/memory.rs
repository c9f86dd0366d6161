//! The in-process bus: the embedded default, with the Redis backend's semantics within one
//! process (a job survives the loss of a consumer task, not of the process).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, Notify};

use super::{BusConfig, BusError, Delivery, LiveState, RecordingJob, RoomEvent};

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
    events: broadcast::Sender<RoomEvent>,
    job_arrived: Notify,
    jobs_capacity: usize,
}

#[derive(Debug, Default)]
struct State {
    live: HashMap<i64, LiveState>,
    viewers: HashMap<i64, HashSet<String>>,
    rates: HashMap<String, (Instant, u32)>,
    queue: VecDeque<(String, RecordingJob)>,
    in_flight: BTreeMap<String, InFlight>,
    next_job: u64,
}

#[derive(Debug)]
struct InFlight {
    job: RecordingJob,
    delivered_at: Instant,
}

/// A subscription to the in-process event fan-out.
#[derive(Debug)]
pub struct MemorySubscription {
    receiver: broadcast::Receiver<RoomEvent>,
}

impl MemorySubscription {
    pub(super) async fn next(&mut self) -> Option<RoomEvent> {
        loop {
            match self.receiver.recv().await {
                Ok(event) => return Some(event),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(events.missed = missed, "event subscriber fell behind");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

impl MemoryBus {
    /// A fresh, empty bus.
    pub fn new(config: &BusConfig) -> Self {
        let (events, _) = broadcast::channel(config.events_capacity.max(1));
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                events,
                job_arrived: Notify::new(),
                jobs_capacity: config.jobs_capacity,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than losing the bus, so a poisoned lock is used as is.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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

    pub(super) async fn publish(&self, event: &RoomEvent) -> Result<(), BusError> {
        // No subscriber is not an error: events are not stored.
        let _ = self.inner.events.send(event.clone());
        Ok(())
    }

    pub(super) fn subscribe(&self) -> MemorySubscription {
        MemorySubscription {
            receiver: self.inner.events.subscribe(),
        }
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

    pub(super) async fn enqueue(&self, job: &RecordingJob) -> Result<String, BusError> {
        let id = {
            let mut state = self.state();
            if state.queue.len() + state.in_flight.len() >= self.inner.jobs_capacity {
                return Err(BusError::QueueFull);
            }
            state.next_job += 1;
            // Zero-padded so that ids sort in queue order, like Redis stream ids.
            let id = format!("{:020}", state.next_job);
            state.queue.push_back((id.clone(), job.clone()));
            id
        };
        self.inner.job_arrived.notify_waiters();
        Ok(id)
    }

    fn take_new(&self, max: usize) -> Vec<Delivery> {
        let mut state = self.state();
        let mut taken = Vec::new();
        while taken.len() < max {
            let Some((id, job)) = state.queue.pop_front() else {
                break;
            };
            state.in_flight.insert(
                id.clone(),
                InFlight {
                    job: job.clone(),
                    delivered_at: Instant::now(),
                },
            );
            taken.push(Delivery { id, job });
        }
        taken
    }

    pub(super) async fn claim(
        &self,
        _consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, BusError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register interest before looking, so an enqueue in between is not missed.
            let arrived = self.inner.job_arrived.notified();
            let taken = self.take_new(max);
            if !taken.is_empty() {
                return Ok(taken);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    pub(super) async fn claim_stale(
        &self,
        _consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<Delivery>, BusError> {
        let now = Instant::now();
        let mut state = self.state();
        let mut taken = Vec::new();
        for (id, in_flight) in state.in_flight.iter_mut() {
            if taken.len() >= max {
                break;
            }
            if now.duration_since(in_flight.delivered_at) >= min_idle {
                in_flight.delivered_at = now;
                taken.push(Delivery {
                    id: id.clone(),
                    job: in_flight.job.clone(),
                });
            }
        }
        Ok(taken)
    }

    pub(super) async fn ack(&self, id: &str) -> Result<(), BusError> {
        self.state().in_flight.remove(id);
        Ok(())
    }

    pub(super) async fn clear(&self) -> Result<(), BusError> {
        let mut state = self.state();
        let next_job = state.next_job;
        *state = State {
            next_job,
            ..State::default()
        };
        Ok(())
    }

    pub(super) async fn jobs_outstanding(&self) -> Result<u64, BusError> {
        let state = self.state();
        Ok((state.queue.len() + state.in_flight.len()) as u64)
    }
}
