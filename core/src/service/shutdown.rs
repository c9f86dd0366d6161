//! Stopping: what asks for it, and the one bounded sequence that follows.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How a stop was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Finish what is in flight, within the grace period (SIGTERM).
    Drain,
    /// Stop at once, abandoning what is in flight (SIGINT, or a second SIGTERM).
    Now,
}

/// The process's stop switch and the tracker of its tasks. Clones share them; `livegate up`
/// hands one to every service it runs.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// Cancelled on any stop request: the one token every loop and server watches.
    stop: CancellationToken,
    /// Cancelled on an immediate stop: cuts a drain short.
    now: CancellationToken,
    tasks: TaskTracker,
}

impl Shutdown {
    /// A switch nobody has pulled yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The token cancelled when a stop is requested (of either kind). Hand clones (or child
    /// tokens) to servers (`with_graceful_shutdown(token.cancelled_owned())`) and loops.
    pub fn token(&self) -> &CancellationToken {
        &self.stop
    }

    /// The tracker of the process's tasks: every task is spawned on it, so that the drain
    /// can wait for them. No task is detached.
    pub fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    /// Spawns `task` on the tracker.
    pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn(task)
    }

    /// Asks for a stop. An immediate stop also counts as a stop request.
    pub fn request(&self, stop: Stop) {
        if stop == Stop::Now {
            self.now.cancel();
        }
        self.stop.cancel();
    }

    /// Waits for a stop request and says which kind it is (so far).
    pub async fn requested(&self) -> Stop {
        self.stop.cancelled().await;
        self.kind()
    }

    /// The kind of stop requested so far (`Drain` when only a drain, or nothing, was asked).
    pub fn kind(&self) -> Stop {
        if self.now.is_cancelled() {
            Stop::Now
        } else {
            Stop::Drain
        }
    }

    /// Starts the shutdown sequence: no new tracked tasks are expected, and the steps that
    /// follow share `grace` (nothing at all after an immediate stop).
    pub fn drain(&self, grace: Duration) -> Drain {
        self.tasks.close();
        let grace = if self.now.is_cancelled() {
            Duration::ZERO
        } else {
            grace
        };
        Drain {
            started: Instant::now(),
            deadline: Instant::now() + grace,
            now: self.now.clone(),
            tasks: self.tasks.clone(),
            overran: Vec::new(),
        }
    }

    /// Serves until a stop is requested, then starts the drain with the requests in flight as
    /// its first step: `serve` is a server that ends its connections when the stop token is
    /// cancelled (axum's `with_graceful_shutdown(token.cancelled_owned())`). A server that
    /// fails first asks the rest of the process to stop too. Returns the drain, for the steps
    /// that follow, and what the server ended with.
    pub async fn serve_then_drain<F>(&self, serve: F, grace: Duration) -> (Drain, F::Output)
    where
        F: Future<Output = std::io::Result<()>>,
    {
        let mut serve = std::pin::pin!(serve);
        let ended = tokio::select! {
            result = &mut serve => Some(result),
            _ = self.requested() => None,
        };
        if ended.is_some() {
            self.request(Stop::Drain);
        }
        let mut drain = self.drain(grace);
        let served = match ended {
            Some(result) => result,
            None => drain.step("requests", serve).await.unwrap_or(Ok(())),
        };
        (drain, served)
    }

    /// Runs `run` while turning signals into stop requests: SIGTERM asks for a drain, SIGINT
    /// or a second SIGTERM for an immediate stop. Returns what `run` returns.
    pub async fn run_with_signals<F: Future>(&self, mut signals: Signals, run: F) -> F::Output {
        let mut run = std::pin::pin!(run);
        loop {
            tokio::select! {
                output = &mut run => return output,
                stop = signals.next(), if !self.now.is_cancelled() => {
                    let stop = match stop {
                        Stop::Drain if self.stop.is_cancelled() => Stop::Now,
                        stop => stop,
                    };
                    tracing::info!(stop = ?stop, "stop requested by signal");
                    self.request(stop);
                }
            }
        }
    }
}

/// SIGTERM and SIGINT, listened to from the moment they are installed (so a signal that
/// arrives before the runtime polls anything is not lost).
#[derive(Debug)]
pub struct Signals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers (inside a Tokio runtime).
    pub fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                terminate: signal(SignalKind::terminate())?,
                interrupt: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    /// The next signal, as the stop it asks for.
    async fn next(&mut self) -> Stop {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.terminate.recv() => Stop::Drain,
                _ = self.interrupt.recv() => Stop::Now,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Stop::Now
        }
    }
}

/// The shutdown sequence: steps run one after the other and share one deadline, so the
/// whole drain takes at most the grace period however many steps there are. An immediate
/// stop requested meanwhile cuts the current step short and leaves nothing to the rest.
#[derive(Debug)]
pub struct Drain {
    started: Instant,
    deadline: Instant,
    now: CancellationToken,
    tasks: TaskTracker,
    overran: Vec<&'static str>,
}

impl Drain {
    /// The time left.
    pub fn remaining(&self) -> Duration {
        if self.now.is_cancelled() {
            return Duration::ZERO;
        }
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// When the drain ends.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Runs `step` within the time left: its output, or `None` (logged, and listed by
    /// [`Drain::finish`]) when the time ran out first and it was abandoned.
    pub async fn step<F: Future>(&mut self, what: &'static str, step: F) -> Option<F::Output> {
        let outcome = tokio::select! {
            biased;
            output = step => Some(output),
            () = tokio::time::sleep_until(self.deadline) => None,
            () = self.now.cancelled() => None,
        };
        if outcome.is_none() {
            tracing::warn!(
                step = what,
                "shutdown step still running at the end of the grace period, abandoning it"
            );
            self.overran.push(what);
        }
        outcome
    }

    /// Waits, within the time left, for every task spawned on the [`Shutdown`]'s tracker;
    /// `true` if they all finished.
    pub async fn tasks(&mut self) -> bool {
        let tasks = self.tasks.clone();
        self.step("tracked tasks", tasks.wait()).await.is_some()
    }

    /// Ends the sequence: the steps that had to be abandoned, in order.
    pub fn finish(self) -> Vec<&'static str> {
        tracing::info!(
            drain_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            abandoned = self.overran.len(),
            "shutdown finished"
        );
        self.overran
    }
}
