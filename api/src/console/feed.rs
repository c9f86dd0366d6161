//! The live feed behind `GET /admin/live/events`: one task per instance takes the snapshot
//! when a room goes live or offline (the hooks' events on the bus) and every
//! `console.live_refresh_ms` for the numbers, and hands it to every open feed through a
//! `watch` (one slot: a slow reader skips to the newest). It works only while someone reads.

use std::sync::Arc;
use std::time::Duration;

use livegate_core::bus::{Received, RoomEvent, Subscriber};
use livegate_core::service::CancellationToken;
use tokio::sync::{watch, Notify};

use super::snapshot::{self, LiveSnapshot};
use crate::state::AppState;

/// The newest snapshot, shared by the open feeds.
#[derive(Debug)]
pub struct LiveFeed {
    latest: watch::Sender<Option<Arc<LiveSnapshot>>>,
    /// Told when a reader arrives, so that an idle task starts at once.
    wake: Notify,
    /// Cancelled when the feed task stops (shutdown): every open feed ends.
    closed: CancellationToken,
}

impl Default for LiveFeed {
    fn default() -> Self {
        Self {
            latest: watch::Sender::new(None),
            wake: Notify::new(),
            closed: CancellationToken::new(),
        }
    }
}

impl LiveFeed {
    /// A reader of the snapshots, unless `max` are open already.
    pub fn subscribe(&self, max: usize) -> Option<watch::Receiver<Option<Arc<LiveSnapshot>>>> {
        if self.latest.receiver_count() >= max || self.closed.is_cancelled() {
            return None;
        }
        let reader = self.latest.subscribe();
        self.wake.notify_one();
        Some(reader)
    }

    /// Cancelled when the feed stops for good.
    pub fn closed(&self) -> &CancellationToken {
        &self.closed
    }
}

/// Why the feed task woke up.
enum Woke {
    Tick,
    Event,
    EventsLost,
    Stop,
}

async fn next_event(events: &mut Option<Subscriber<RoomEvent>>) -> Woke {
    match events {
        Some(subscriber) => match subscriber.recv().await {
            Some(Received::Message(_) | Received::Lagged(_) | Received::Reconnected) => Woke::Event,
            None => Woke::EventsLost,
        },
        None => std::future::pending().await,
    }
}

/// Feeds the open readers until `stop`, then closes the feed.
pub async fn run(state: AppState, stop: CancellationToken) {
    let feed = state.console().feed();
    let refresh = Duration::from_millis(state.config().console.live_refresh_ms);
    let mut events: Option<Subscriber<RoomEvent>> = None;
    loop {
        if feed.latest.receiver_count() == 0 {
            // Nobody reads: forget the room events until someone does.
            events = None;
            tokio::select! {
                () = feed.wake.notified() => continue,
                () = stop.cancelled() => break,
            }
        }
        if events.is_none() {
            match state.bus().events().subscribe().await {
                Ok(subscriber) => events = Some(subscriber),
                // The tick still refreshes; the next round tries again.
                Err(err) => tracing::debug!(error = %err, "live feed cannot follow room events"),
            }
        }
        match snapshot::build(&state, None).await {
            Ok(taken) => {
                feed.latest.send_replace(Some(Arc::new(taken)));
            }
            Err(err) => tracing::warn!(error = %err, "live snapshot failed"),
        }
        let woke = tokio::select! {
            () = tokio::time::sleep(refresh) => Woke::Tick,
            woke = next_event(&mut events) => woke,
            () = stop.cancelled() => Woke::Stop,
        };
        match woke {
            Woke::Tick | Woke::Event => {}
            Woke::EventsLost => events = None,
            Woke::Stop => break,
        }
    }
    feed.closed.cancel();
}
