//! `Queue<T>`: durable jobs for workers.
//!
//! - A job is delivered to one consumer and stays pending until acknowledged.
//! - Its consumer holds a **lease**: a job whose consumer has not touched it for the queue's
//!   lease is taken over by another consumer's sweep ([`Consumer::reclaim`]). A worker that
//!   needs longer (a ten-minute remux and upload) extends its lease while it works
//!   ([`Queue::extend`], or [`Queue::hold`] alongside the work).
//! - Every delivery is counted. A job that failed ([`Queue::fail`]) or whose lease ran out
//!   [`QueueOptions::max_deliveries`] times goes to the **dead-letter queue**, where it can be
//!   inspected ([`Queue::dead_letters`]) and sent back ([`Queue::redrive`]).
//! - Waiting for a job blocks on the backend (a blocking `XREADGROUP` on a connection of its
//!   own, or an in-process notification), it does not poll.
//!
//! On Redis a queue is a stream with a consumer group (`{prefix}:jobs:{name}`, dead letters
//! in `{prefix}:jobs:{name}:dead`); in process it is a map behind a mutex. Jobs should be
//! idempotent: a worker that dies after finishing but before acknowledging is redone.

pub(crate) mod memory;
pub(crate) mod redis;
mod scripts;

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::BusError;

/// Default most jobs waiting or in progress in one queue.
pub const DEFAULT_CAPACITY: usize = 100_000;
/// Default lease: how long a consumer may go without touching a job before another takes it.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);
/// Default most deliveries of one job before it is dead-lettered.
pub const DEFAULT_MAX_DELIVERIES: u32 = 5;
/// Default most dead letters kept per queue (the oldest go first).
pub const DEFAULT_DEAD_LETTER_CAPACITY: usize = 10_000;

/// The settings of one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueOptions {
    /// The queue's name, part of its keys.
    pub name: String,
    /// The consumer group all consumers of this queue share.
    pub group: String,
    /// Most jobs waiting or in progress; pushing beyond fails with [`BusError::QueueFull`].
    pub capacity: usize,
    /// How long a consumer may go without touching a job before another takes it over.
    pub lease: Duration,
    /// Most deliveries of one job; a job failing (or timing out) on its last goes to the
    /// dead-letter queue.
    pub max_deliveries: u32,
    /// Most dead letters kept; past it the oldest are trimmed.
    pub dead_letter_capacity: usize,
}

impl QueueOptions {
    /// A queue named `name` with the defaults above, consumer group `workers`.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            group: "workers".to_owned(),
            capacity: DEFAULT_CAPACITY,
            lease: DEFAULT_LEASE,
            max_deliveries: DEFAULT_MAX_DELIVERIES,
            dead_letter_capacity: DEFAULT_DEAD_LETTER_CAPACITY,
        }
    }
}

/// A job handed to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job<T> {
    /// The job's id in the queue (it changes when a failed job is queued again).
    pub id: String,
    /// What to do.
    pub payload: T,
    /// Which delivery of this job this is: 1 the first time.
    pub delivery: u32,
    /// The consumer holding the lease.
    pub consumer: Arc<str>,
}

/// What [`Queue::fail`] did with a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// Queued again for another delivery.
    Retrying,
    /// It had its last delivery: now in the dead-letter queue.
    DeadLettered,
    /// The consumer no longer held the job (its lease ran out and another consumer has it).
    LeaseLost,
}

/// A job that will not be delivered again unless sent back with [`Queue::redrive`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter<T> {
    /// Its id in the dead-letter queue, for [`Queue::redrive`].
    pub id: String,
    /// The job, when it decodes.
    pub payload: Option<T>,
    /// The stored job as text (JSON), also when it does not decode.
    pub raw: String,
    /// How many times it was delivered.
    pub deliveries: u32,
    /// Why it ended here: the last failure's reason, an expired lease, or a payload that does
    /// not decode.
    pub reason: String,
    /// When, unix milliseconds.
    pub failed_at_ms: i64,
}

#[derive(Debug, Clone)]
pub(crate) enum Backend {
    Redis(redis::RedisQueue),
    /// Jobs kept as JSON, like on Redis, so that both backends decode (and dead-letter what
    /// does not decode) in one place.
    Memory(memory::MemoryQueue),
}

/// A durable job queue of `T`s. Clones share the queue.
#[derive(Debug)]
pub struct Queue<T> {
    backend: Backend,
    _jobs: PhantomData<fn() -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Self {
            backend: self.backend.clone(),
            _jobs: PhantomData,
        }
    }
}

/// A named consumer of a queue: takes new jobs and sweeps up those whose lease ran out.
#[derive(Debug)]
pub struct Consumer<T> {
    queue: Queue<T>,
    name: Arc<str>,
}

impl<T> Clone for Consumer<T> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
            name: self.name.clone(),
        }
    }
}

/// A delivered entry before decoding.
#[derive(Debug)]
pub(crate) struct RawJob {
    pub(crate) id: String,
    pub(crate) payload: String,
    pub(crate) delivery: u32,
}

/// A dead letter before decoding.
#[derive(Debug, Clone)]
pub(crate) struct RawDeadLetter {
    pub(crate) id: String,
    pub(crate) raw: String,
    pub(crate) deliveries: u32,
    pub(crate) reason: String,
    pub(crate) failed_at_ms: i64,
}

impl<T> Queue<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    pub(crate) fn from_backend(backend: Backend) -> Self {
        Self {
            backend,
            _jobs: PhantomData,
        }
    }

    /// The queue's settings.
    pub fn options(&self) -> &QueueOptions {
        match &self.backend {
            Backend::Redis(queue) => queue.options(),
            Backend::Memory(queue) => queue.options(),
        }
    }

    /// Queues a job; returns its id. Fails with [`BusError::QueueFull`] at capacity.
    pub async fn push(&self, job: &T) -> Result<String, BusError> {
        let payload = serde_json::to_string(job)?;
        match &self.backend {
            Backend::Redis(queue) => queue.push(&payload).await,
            Backend::Memory(queue) => queue.push(payload),
        }
    }

    /// A consumer named `name` (unique per worker, e.g. host and process id).
    pub fn consumer(&self, name: &str) -> Consumer<T> {
        Consumer {
            queue: self.clone(),
            name: Arc::from(name),
        }
    }

    /// Acknowledges a job: it is done and leaves the queue. Twice is harmless.
    pub async fn ack(&self, job: &Job<T>) -> Result<(), BusError> {
        self.ack_id(&job.id).await
    }

    /// Acknowledges the job with queue id `id`.
    pub async fn ack_id(&self, id: &str) -> Result<(), BusError> {
        match &self.backend {
            Backend::Redis(queue) => queue.ack(id).await,
            Backend::Memory(queue) => {
                queue.ack(id);
                Ok(())
            }
        }
    }

    /// Renews the lease on `job` for another [`QueueOptions::lease`]. `false` when the
    /// consumer no longer holds it (another consumer took it over): stop working on it.
    pub async fn extend(&self, job: &Job<T>) -> Result<bool, BusError> {
        match &self.backend {
            Backend::Redis(queue) => queue.extend(&job.id, &job.consumer).await,
            Backend::Memory(queue) => Ok(queue.extend(&job.id, &job.consumer)),
        }
    }

    /// Extends the lease on `job` every third of the lease until the lease is lost or the
    /// backend fails, and returns why. Run it beside the work and stop at whichever ends
    /// first: `select! { done = work => …, lost = queue.hold(&job) => … }`.
    pub async fn hold(&self, job: &Job<T>) -> BusError {
        let every = (self.options().lease / 3).max(Duration::from_millis(1));
        loop {
            tokio::time::sleep(every).await;
            match self.extend(job).await {
                Ok(true) => {}
                Ok(false) => return BusError::LeaseLost,
                Err(err) => return err,
            }
        }
    }

    /// Gives a job back after a failed attempt: queued again, or dead-lettered with `reason`
    /// when this was its last delivery.
    pub async fn fail(&self, job: &Job<T>, reason: &str) -> Result<Failed, BusError> {
        match &self.backend {
            Backend::Redis(queue) => {
                queue
                    .fail(&job.id, &job.consumer, job.delivery, reason)
                    .await
            }
            Backend::Memory(queue) => Ok(queue.fail(&job.id, &job.consumer, reason)),
        }
    }

    /// How many jobs are waiting or in progress.
    pub async fn outstanding(&self) -> Result<u64, BusError> {
        match &self.backend {
            Backend::Redis(queue) => queue.outstanding().await,
            Backend::Memory(queue) => Ok(queue.outstanding()),
        }
    }

    /// The oldest `max` dead letters.
    pub async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter<T>>, BusError> {
        let raw = match &self.backend {
            Backend::Redis(queue) => queue.dead_letters(max).await?,
            Backend::Memory(queue) => queue.dead_letters(max),
        };
        Ok(raw
            .into_iter()
            .map(|dead| DeadLetter {
                payload: serde_json::from_str(&dead.raw).ok(),
                id: dead.id,
                raw: dead.raw,
                deliveries: dead.deliveries,
                reason: dead.reason,
                failed_at_ms: dead.failed_at_ms,
            })
            .collect())
    }

    /// How many dead letters the queue keeps.
    pub async fn dead_letter_count(&self) -> Result<u64, BusError> {
        match &self.backend {
            Backend::Redis(queue) => queue.dead_letter_count().await,
            Backend::Memory(queue) => Ok(queue.dead_letter_count()),
        }
    }

    /// Sends dead letter `id` back to the queue with a fresh count of deliveries. `false`
    /// when there is no such dead letter.
    pub async fn redrive(&self, id: &str) -> Result<bool, BusError> {
        let redriven = match &self.backend {
            Backend::Redis(queue) => queue.redrive(id).await,
            Backend::Memory(queue) => queue.redrive(id),
        };
        if let Ok(true) = redriven {
            tracing::info!(queue = %self.options().name, dead_letter.id = %id, "dead letter sent back to its queue");
        }
        redriven
    }

    /// How many undecodable jobs this handle's process moved to the dead-letter queue.
    pub fn undecodable(&self) -> u64 {
        match &self.backend {
            Backend::Redis(queue) => queue.undecodable(),
            Backend::Memory(queue) => queue.undecodable(),
        }
    }

    /// Decodes deliveries; one that does not decode could never be processed, so it is
    /// dead-lettered (and counted) instead of redelivered forever.
    async fn decode(&self, consumer: &Arc<str>, raw: Vec<RawJob>) -> Result<Vec<Job<T>>, BusError> {
        let mut jobs = Vec::with_capacity(raw.len());
        for entry in raw {
            match serde_json::from_str::<T>(&entry.payload) {
                Ok(payload) => jobs.push(Job {
                    id: entry.id,
                    payload,
                    delivery: entry.delivery,
                    consumer: consumer.clone(),
                }),
                Err(err) => {
                    tracing::warn!(job.id = %entry.id, queue = %self.options().name, error = %err, "undecodable job, dead-lettering it");
                    let reason = format!("undecodable: {err}");
                    match &self.backend {
                        Backend::Redis(queue) => queue.bury(&entry, &reason).await?,
                        Backend::Memory(queue) => queue.bury(&entry.id, &reason),
                    }
                }
            }
        }
        Ok(jobs)
    }
}

impl<T> Consumer<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// This consumer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Up to `max` new jobs, waiting up to `wait` for the first to arrive (`Duration::ZERO`:
    /// only what is there now).
    pub async fn next(&self, max: usize, wait: Duration) -> Result<Vec<Job<T>>, BusError> {
        let max = max.max(1);
        let raw = match &self.queue.backend {
            Backend::Redis(queue) => queue.read_new(&self.name, max, wait).await?,
            Backend::Memory(queue) => queue.next(&self.name, max, wait).await,
        };
        self.queue.decode(&self.name, raw).await
    }

    /// The stale sweep: takes over up to `max` jobs whose lease ran out (not touched for
    /// [`QueueOptions::lease`]). A job past its last delivery goes to the dead-letter queue.
    pub async fn reclaim(&self, max: usize) -> Result<Vec<Job<T>>, BusError> {
        self.reclaim_idle(self.queue.options().lease, max).await
    }

    /// [`Consumer::reclaim`] with another idle time than the lease.
    pub async fn reclaim_idle(
        &self,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<Job<T>>, BusError> {
        let max = max.max(1);
        let raw = match &self.queue.backend {
            Backend::Redis(queue) => queue.reclaim(&self.name, min_idle, max).await?,
            Backend::Memory(queue) => queue.reclaim(&self.name, min_idle, max),
        };
        self.queue.decode(&self.name, raw).await
    }
}
