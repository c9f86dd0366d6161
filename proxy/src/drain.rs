//! Graceful shutdown that ends as soon as the last response does.
//!
//! On SIGTERM (and after an upgrade hands its listeners over) Pingora stops accepting and then
//! sleeps for the whole grace period, whether or not any request is still running: 60 s with no
//! viewer at all, past Kubernetes' 30 s default. [`InFlight`] counts the requests being served,
//! and [`when_drained`] ends the process (or tells whoever runs the proxy) once the grace
//! period has begun and the count is zero.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use pingora::server::ExecutionPhase;
use tokio::sync::broadcast;

/// The number of requests being served.
#[derive(Debug, Default)]
pub struct InFlight {
    // A std mutex and condvar: the waiter is a plain thread, and the critical sections are
    // a counter update.
    count: Mutex<usize>,
    drained: Condvar,
}

impl InFlight {
    /// Counts a request as running until the guard is dropped.
    pub fn start(self: &Arc<Self>) -> InFlightGuard {
        *self.lock() += 1;
        InFlightGuard(self.clone())
    }

    /// Requests running now.
    pub fn running(&self) -> usize {
        *self.lock()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, usize> {
        self.count.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until no request runs, or `deadline`; returns whether it drained.
    fn wait_drained(&self, deadline: Instant) -> bool {
        let mut count = self.lock();
        while *count > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            count = self
                .drained
                .wait_timeout(count, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

/// One running request; see [`InFlight::start`].
#[derive(Debug)]
pub struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut count = self.0.lock();
        *count = count.saturating_sub(1);
        if *count == 0 {
            self.0.drained.notify_all();
        }
    }
}

/// Starts a thread that calls `drained` once Pingora's grace period has begun and no request
/// is running (the proxy's own binary ends the process there). If `grace` runs out first,
/// Pingora's own shutdown proceeds as before.
pub fn when_drained(
    mut phases: broadcast::Receiver<ExecutionPhase>,
    in_flight: Arc<InFlight>,
    grace: Duration,
    drained: Box<dyn Fn() + Send + Sync>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("livegate-drain".to_owned())
        .spawn(move || loop {
            match phases.blocking_recv() {
                Ok(ExecutionPhase::ShutdownGracePeriod) => {
                    let running = in_flight.running();
                    if in_flight.wait_drained(Instant::now() + grace) {
                        tracing::info!(requests.drained = running, "every response has ended");
                        drained();
                    }
                    return;
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
        })
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_follows_the_guards() {
        let in_flight = Arc::new(InFlight::default());
        let first = in_flight.start();
        let second = in_flight.start();
        assert_eq!(in_flight.running(), 2);
        drop(first);
        assert!(!in_flight.wait_drained(Instant::now()));
        let waiter = {
            let in_flight = in_flight.clone();
            std::thread::spawn(move || {
                in_flight.wait_drained(Instant::now() + Duration::from_secs(60))
            })
        };
        drop(second);
        assert!(waiter.join().unwrap());
        assert_eq!(in_flight.running(), 0);
    }
}
