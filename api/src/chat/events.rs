//! Live/offline frames from the hooks service's room events: every instance hears each
//! event, and the first to claim it on the bus appends it, so a room shows it once.

use std::sync::Arc;
use std::time::Duration;

use livegate_core::bus::{Bus, Received, RoomEvent, RoomEventKind};
use tokio_util::sync::CancellationToken;

use super::frame::{Kind, Message};
use super::rooms::Rooms;

/// How long an event's claim is kept: far longer than any event takes to reach every
/// instance.
const CLAIM_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Follows `bus.events()` until `stop`.
pub async fn follow(bus: Bus, rooms: Arc<Rooms>, stop: CancellationToken) {
    let channel = bus.events();
    let mut retry = Duration::from_millis(200);
    loop {
        let subscribed = tokio::select! {
            () = stop.cancelled() => return,
            subscribed = channel.subscribe() => subscribed,
        };
        let mut subscriber = match subscribed {
            Ok(subscriber) => subscriber,
            Err(err) => {
                tracing::warn!(error = %err, "chat cannot follow room events; retrying");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(retry) => {}
                }
                retry = (retry * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        loop {
            let received = tokio::select! {
                () = stop.cancelled() => return,
                received = subscriber.recv() => received,
            };
            match received {
                Some(Received::Message(event)) => post(&bus, &rooms, &event).await,
                Some(Received::Lagged(missed)) => {
                    tracing::warn!(missed, "chat missed room events");
                }
                Some(Received::Reconnected) => {}
                None => return,
            }
        }
    }
}

async fn post(bus: &Bus, rooms: &Rooms, event: &RoomEvent) {
    let (kind, label) = match event.kind {
        RoomEventKind::Live => (Kind::Live, "live"),
        RoomEventKind::Offline => (Kind::Offline, "offline"),
    };
    let claim = format!("chat:event:{}:{}:{label}", event.room_id, event.stream_id);
    match bus.rate_limit(&claim, 1, CLAIM_WINDOW).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(err) => {
            tracing::warn!(room.id = event.room_id, error = %err, "room event not posted to chat");
            return;
        }
    }
    let message = Message {
        kind,
        id: crate::auth::random_token(12),
        room: event.room_id,
        user: None,
        text: None,
        target: None,
        at: event.at_ms,
    };
    if let Err(err) = rooms.send(message).await {
        tracing::warn!(room.id = event.room_id, error = %err, "room event not posted to chat");
    }
}
