//! The player model that turns arrivals into what a viewer sees: when playback starts, when
//! the buffer runs dry (a stall) and when it plays again.
//!
//! Media is played at real-time speed from the moment playback starts. Arrivals extend the
//! buffer by the media time they carry (FLV timestamps, HLS segment durations). When the
//! playout position reaches the end of what has arrived, the player stalls; it resumes once
//! [`Playout::rebuffer`] worth of media is there again, as mpegts.js and hls.js do. Stall time
//! counts from the moment the buffer ran dry to the moment playback resumes. Playback starts
//! the same way, once that much media is there; the wait before it is start-up, not a stall.

use std::time::Duration;

use tokio::time::Instant;

/// Where the player is.
#[derive(Debug, Clone, Copy)]
enum State {
    /// Nothing arrived yet.
    Idle,
    /// Filling the buffer before playback starts (not a stall), `held` so far.
    Starting { held: Duration },
    /// Playing; the buffer runs dry at `dry_at`.
    Playing { dry_at: Instant },
    /// Stalled since `since`, holding `held` of media so far.
    Stalled { since: Instant, held: Duration },
}

/// One viewer's player.
#[derive(Debug)]
pub(crate) struct Playout {
    state: State,
    rebuffer: Duration,
    started: Option<Instant>,
    stalled: Duration,
    stalls: u32,
}

impl Playout {
    /// A player that needs `rebuffer` of media to resume after a stall.
    pub(crate) fn new(rebuffer: Duration) -> Self {
        Playout {
            state: State::Idle,
            rebuffer,
            started: None,
            stalled: Duration::ZERO,
            stalls: 0,
        }
    }

    /// `media` more arrived at `now`. Returns the wall time at which the arrival's first media
    /// plays (for latency), and the stall that just ended, if any.
    pub(crate) fn arrive(&mut self, now: Instant, media: Duration) -> (Instant, Option<Duration>) {
        match self.state {
            State::Idle => {
                self.started = Some(now);
                self.state = State::Starting {
                    held: Duration::ZERO,
                };
                self.arrive(now, media)
            }
            State::Starting { held } => {
                let held = held + media;
                if held < self.rebuffer {
                    self.state = State::Starting { held };
                    return (now + (self.rebuffer - held), None);
                }
                self.state = State::Playing { dry_at: now + held };
                (now + held - media, None)
            }
            State::Playing { dry_at } if now < dry_at => {
                self.state = State::Playing {
                    dry_at: dry_at + media,
                };
                (dry_at, None)
            }
            State::Playing { dry_at } => {
                self.state = State::Stalled {
                    since: dry_at,
                    held: Duration::ZERO,
                };
                self.arrive(now, media)
            }
            State::Stalled { since, held } => {
                let held = held + media;
                if held < self.rebuffer {
                    self.state = State::Stalled { since, held };
                    return (now + (self.rebuffer - held), None);
                }
                let stall = now.saturating_duration_since(since);
                self.stalled += stall;
                self.stalls += 1;
                self.state = State::Playing { dry_at: now + held };
                (now + held - media, Some(stall))
            }
        }
    }

    /// Whether media is playing — neither starting up nor stalled. Only then is the play time
    /// [`Playout::arrive`] gives exact: before, it is a guess that the rest of the buffer comes
    /// in real time, and a joiner handed a whole GOP at once starts far sooner than that.
    pub(crate) fn playing(&self) -> bool {
        matches!(self.state, State::Playing { .. })
    }

    /// Closes the books at `end`: a stall still going on counts up to `end`. Returns the watch
    /// time (from the start of playback), the stall time and the number of stalls.
    pub(crate) fn finish(&mut self, end: Instant) -> (Duration, Duration, u32) {
        let Some(started) = self.started else {
            return (Duration::ZERO, Duration::ZERO, 0);
        };
        match self.state {
            State::Playing { dry_at } if end > dry_at => {
                self.stalls += 1;
                self.stalled += end - dry_at;
            }
            State::Stalled { since, .. } => {
                self.stalls += 1;
                self.stalled += end.saturating_duration_since(since);
            }
            _ => {}
        }
        self.state = State::Idle;
        (
            end.saturating_duration_since(started),
            self.stalled,
            self.stalls,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_arrivals_never_stall_and_a_gap_counts_until_playback_resumes() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut player = Playout::new(ms(500));
        player.arrive(t0, ms(1000));
        for i in 1..10 {
            let (_, stall) = player.arrive(t0 + ms(i * 100), ms(100));
            assert_eq!(stall, None);
        }
        // Media through 1.9 s; nothing until 3 s, then 200 ms chunks every 100 ms.
        assert_eq!(player.arrive(t0 + ms(3000), ms(200)).1, None);
        assert_eq!(player.arrive(t0 + ms(3100), ms(200)).1, None);
        let (_, stall) = player.arrive(t0 + ms(3200), ms(200));
        assert_eq!(stall, Some(ms(1300)));
        let (watched, stalled, stalls) = player.finish(t0 + ms(3400));
        assert_eq!((watched, stalled, stalls), (ms(3400), ms(1300), 1));
    }

    #[test]
    fn play_times_are_known_once_playback_starts() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // A joiner gets a keyframe, then the rest of its GOP in the same instant.
        let mut player = Playout::new(ms(500));
        player.arrive(t0, ms(40));
        assert!(!player.playing());
        // Playback starts now; this arrival plays after the 40 ms before it.
        let (plays_at, _) = player.arrive(t0, ms(480));
        assert!(player.playing());
        assert_eq!(plays_at, t0 + ms(40));
        // Dry at t0 + 520 ms: stalled, and playing again once 500 ms are back.
        player.arrive(t0 + ms(900), ms(300));
        assert!(!player.playing());
        player.arrive(t0 + ms(1000), ms(300));
        assert!(player.playing());
    }

    #[test]
    fn a_stream_that_dries_up_stalls_until_the_end() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut player = Playout::new(ms(500));
        player.arrive(t0, ms(2000));
        assert_eq!(player.finish(t0 + ms(5000)), (ms(5000), ms(3000), 1));
        assert_eq!(Playout::new(ms(1)).finish(t0), (ms(0), ms(0), 0));
        // Start-up: frames of 40 ms until 520 ms are held, then playback.
        let mut player = Playout::new(ms(500));
        for i in 0..13 {
            assert_eq!(player.arrive(t0 + ms(i * 40), ms(40)).1, None);
        }
        assert_eq!(player.finish(t0 + ms(1000)), (ms(1000), ms(0), 0));
    }
}
