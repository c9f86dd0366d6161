//! The in-process queue: the Redis queue's semantics within one process (a job survives the
//! loss of a worker task, not of the process). Jobs are kept as JSON text, as on Redis.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::{Failed, QueueOptions, RawDeadLetter, RawJob};
use crate::bus::{now_ms, BusError};

#[derive(Debug, Clone)]
pub(crate) struct MemoryQueue {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    options: QueueOptions,
    // A std mutex: every critical section is short and never awaits.
    state: Mutex<State>,
    arrived: Notify,
    undecodable: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    ready: VecDeque<Ready>,
    in_flight: BTreeMap<String, InFlight>,
    dead: VecDeque<RawDeadLetter>,
    next_id: u64,
}

#[derive(Debug)]
struct Ready {
    id: String,
    payload: String,
    /// Deliveries before it was queued again.
    prior: u32,
}

#[derive(Debug)]
struct InFlight {
    payload: String,
    consumer: Arc<str>,
    /// Delivery or last lease extension: what the sweep measures idleness from.
    touched: Instant,
    delivery: u32,
}

impl MemoryQueue {
    pub(crate) fn new(options: QueueOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                options,
                state: Mutex::new(State::default()),
                arrived: Notify::new(),
                undecodable: AtomicU64::new(0),
            }),
        }
    }

    pub(crate) fn options(&self) -> &QueueOptions {
        &self.inner.options
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every update completes before the lock is released; a poisoned lock holds consistent
        // maps, so it is used as is.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Zero-padded, so that ids sort in queue order like Redis stream ids.
    fn new_id(state: &mut State) -> String {
        state.next_id += 1;
        format!("{:020}", state.next_id)
    }

    fn full(&self, state: &State) -> bool {
        state.ready.len() + state.in_flight.len() >= self.inner.options.capacity
    }

    pub(crate) fn push(&self, payload: String) -> Result<String, BusError> {
        let id = {
            let mut state = self.state();
            if self.full(&state) {
                return Err(BusError::QueueFull);
            }
            let id = Self::new_id(&mut state);
            state.ready.push_back(Ready {
                id: id.clone(),
                payload,
                prior: 0,
            });
            id
        };
        self.inner.arrived.notify_waiters();
        Ok(id)
    }

    fn take(&self, consumer: &Arc<str>, max: usize) -> Vec<RawJob> {
        let mut state = self.state();
        let mut taken = Vec::new();
        while taken.len() < max {
            let Some(ready) = state.ready.pop_front() else {
                break;
            };
            let delivery = ready.prior + 1;
            state.in_flight.insert(
                ready.id.clone(),
                InFlight {
                    payload: ready.payload.clone(),
                    consumer: consumer.clone(),
                    touched: Instant::now(),
                    delivery,
                },
            );
            taken.push(RawJob {
                id: ready.id,
                payload: ready.payload,
                delivery,
            });
        }
        taken
    }

    pub(crate) async fn next(
        &self,
        consumer: &Arc<str>,
        max: usize,
        wait: Duration,
    ) -> Vec<RawJob> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register interest before looking, so a push in between is not missed.
            let arrived = self.inner.arrived.notified();
            let taken = self.take(consumer, max);
            if !taken.is_empty() {
                return taken;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return Vec::new();
            }
        }
    }

    pub(crate) fn reclaim(
        &self,
        consumer: &Arc<str>,
        min_idle: Duration,
        max: usize,
    ) -> Vec<RawJob> {
        let now = Instant::now();
        let mut state = self.state();
        let stale: Vec<String> = state
            .in_flight
            .iter()
            .filter(|(_, job)| now.duration_since(job.touched) >= min_idle)
            .map(|(id, _)| id.clone())
            .collect();
        let mut taken = Vec::new();
        for id in stale {
            if taken.len() >= max {
                break;
            }
            let Some(job) = state.in_flight.get_mut(&id) else {
                continue;
            };
            if job.delivery >= self.inner.options.max_deliveries {
                if let Some(job) = state.in_flight.remove(&id) {
                    self.bury_locked(
                        &mut state,
                        job.payload,
                        job.delivery,
                        "lease expired on the last delivery",
                    );
                }
                continue;
            }
            job.delivery += 1;
            job.touched = now;
            job.consumer = consumer.clone();
            taken.push(RawJob {
                id,
                payload: job.payload.clone(),
                delivery: job.delivery,
            });
        }
        taken
    }

    fn bury_locked(&self, state: &mut State, payload: String, deliveries: u32, reason: &str) {
        let id = Self::new_id(state);
        if state.dead.len() >= self.inner.options.dead_letter_capacity.max(1) {
            state.dead.pop_front();
        }
        state.dead.push_back(RawDeadLetter {
            id,
            raw: payload,
            deliveries,
            reason: reason.to_owned(),
            failed_at_ms: now_ms(),
        });
    }

    /// Dead-letters an in-flight job that does not decode, and counts it.
    pub(crate) fn bury(&self, id: &str, reason: &str) {
        let mut state = self.state();
        if let Some(job) = state.in_flight.remove(id) {
            self.bury_locked(&mut state, job.payload, job.delivery, reason);
            self.inner.undecodable.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn undecodable(&self) -> u64 {
        self.inner.undecodable.load(Ordering::Relaxed)
    }

    pub(crate) fn extend(&self, id: &str, consumer: &str) -> bool {
        let mut state = self.state();
        match state.in_flight.get_mut(id) {
            Some(job) if &*job.consumer == consumer => {
                job.touched = Instant::now();
                true
            }
            _ => false,
        }
    }

    pub(crate) fn fail(&self, id: &str, consumer: &str, reason: &str) -> Failed {
        let outcome = {
            let mut state = self.state();
            let owned = state
                .in_flight
                .get(id)
                .is_some_and(|job| &*job.consumer == consumer);
            let Some(job) = owned.then(|| state.in_flight.remove(id)).flatten() else {
                return Failed::LeaseLost;
            };
            if job.delivery >= self.inner.options.max_deliveries {
                self.bury_locked(&mut state, job.payload, job.delivery, reason);
                Failed::DeadLettered
            } else {
                let id = Self::new_id(&mut state);
                state.ready.push_back(Ready {
                    id,
                    payload: job.payload,
                    prior: job.delivery,
                });
                Failed::Retrying
            }
        };
        if outcome == Failed::Retrying {
            self.inner.arrived.notify_waiters();
        }
        outcome
    }

    pub(crate) fn ack(&self, id: &str) {
        self.state().in_flight.remove(id);
    }

    pub(crate) fn outstanding(&self) -> u64 {
        let state = self.state();
        (state.ready.len() + state.in_flight.len()) as u64
    }

    pub(crate) fn dead_letters(&self, max: usize) -> Vec<RawDeadLetter> {
        self.state().dead.iter().take(max).cloned().collect()
    }

    pub(crate) fn dead_letter_count(&self) -> u64 {
        self.state().dead.len() as u64
    }

    pub(crate) fn redrive(&self, id: &str) -> Result<bool, BusError> {
        {
            let mut state = self.state();
            let Some(at) = state.dead.iter().position(|dead| dead.id == id) else {
                return Ok(false);
            };
            if self.full(&state) {
                return Err(BusError::QueueFull);
            }
            let Some(dead) = state.dead.remove(at) else {
                return Ok(false);
            };
            let id = Self::new_id(&mut state);
            state.ready.push_back(Ready {
                id,
                payload: dead.raw,
                prior: 0,
            });
        }
        self.inner.arrived.notify_waiters();
        Ok(true)
    }

    /// Forgets every job (ids keep counting up).
    pub(crate) fn clear(&self) {
        let mut state = self.state();
        state.ready.clear();
        state.in_flight.clear();
        state.dead.clear();
    }
}
