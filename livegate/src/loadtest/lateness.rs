//! The load generator's own lateness. Every viewer is a task of this one process: while the
//! process cannot run (the machine gave its CPU to other work, or the viewers' work outgrew
//! it), every viewer reads late at once and its player model sees the buffer run dry, whatever
//! the stream did. A clock task that asks to wake every [`TICK`] measures how late it wakes;
//! the run reports that beside the stalls, so that a stall of all viewers together can be told
//! apart from a stall of the stream.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use livegate_core::service::CancellationToken;
use serde::Serialize;
use tokio::time::Instant;

/// How often the clock asks to wake.
const TICK: Duration = Duration::from_millis(10);
/// Lateness up to this is timer and scheduling jitter, not a stop.
pub(crate) const STOP: Duration = Duration::from_millis(50);

/// What the clock saw: per second for the timeline, in all for the report.
#[derive(Debug, Default)]
pub(crate) struct Lateness {
    /// Latest wake since the last [`Lateness::take_worst_ms`].
    worst_ms: AtomicU64,
    /// Lateness of the wakes later than [`STOP`], added up.
    stopped_ms: AtomicU64,
    /// Latest wake of the run.
    longest_ms: AtomicU64,
}

/// The generator's lateness over a run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Generator {
    /// Time the generator could not run for, ms: the lateness of each wake later than 50 ms,
    /// added up.
    pub stopped_ms: u64,
    /// Its latest wake, ms.
    pub longest_ms: u64,
}

impl Lateness {
    fn record(&self, late: Duration) {
        let ms = late.as_millis() as u64;
        self.worst_ms.fetch_max(ms, Ordering::Relaxed);
        self.longest_ms.fetch_max(ms, Ordering::Relaxed);
        if late > STOP {
            self.stopped_ms.fetch_add(ms, Ordering::Relaxed);
        }
    }

    /// The latest wake since the last call, ms.
    pub(crate) fn take_worst_ms(&self) -> u64 {
        self.worst_ms.swap(0, Ordering::Relaxed)
    }

    /// The run so far.
    pub(crate) fn total(&self) -> Generator {
        Generator {
            stopped_ms: self.stopped_ms.load(Ordering::Relaxed),
            longest_ms: self.longest_ms.load(Ordering::Relaxed),
        }
    }
}

/// Wakes every [`TICK`] until `end` (or a stop), recording how late each wake came.
pub(crate) async fn clock(lateness: Arc<Lateness>, end: Instant, stop: CancellationToken) {
    let mut asked = Instant::now() + TICK;
    while asked < end {
        tokio::select! {
            () = tokio::time::sleep_until(asked) => {}
            () = stop.cancelled() => return,
        }
        let now = Instant::now();
        lateness.record(now.saturating_duration_since(asked));
        asked = now + TICK;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_wakes_later_than_a_stop_add_up() {
        let lateness = Lateness::default();
        let ms = Duration::from_millis;
        lateness.record(ms(2));
        lateness.record(ms(40));
        assert_eq!(lateness.take_worst_ms(), 40);
        lateness.record(ms(300));
        lateness.record(ms(120));
        assert_eq!(lateness.take_worst_ms(), 300);
        assert_eq!(lateness.take_worst_ms(), 0);
        let total = lateness.total();
        assert_eq!((total.stopped_ms, total.longest_ms), (420, 300));
    }
}
