//! A room's pump: the room's one channel subscription in this process. It puts messages in
//! offset order (dropping duplicates, filling gaps from the log), serializes each once and
//! hands the bytes to every local socket's outbox.

use std::sync::Arc;
use std::time::Duration;

use livegate_core::bus::{Position, Received};

use super::close::Close;
use super::frame::{Broadcast, Outgoing, Published};
use super::rooms::{Readiness, Room, Rooms};

/// A room's pump: subscribed while the room has local sockets.
pub(super) async fn run(rooms: Arc<Rooms>, room: Arc<Room>) {
    let key = room.id.to_string();
    let mut subscriber = match rooms.channel(room.id).subscribe().await {
        Ok(subscriber) => subscriber,
        Err(err) => {
            tracing::warn!(room.id = room.id, error = %err, "chat room cannot subscribe");
            rooms.forget(&room);
            room.ready.send_replace(Readiness::Failed);
            return;
        }
    };
    // After subscribing: whatever is appended later arrives on the channel.
    let mut at = match rooms.log.position(&key).await {
        Ok(position) => position,
        Err(err) => {
            tracing::warn!(room.id = room.id, error = %err, "chat room cannot read its log");
            rooms.forget(&room);
            room.ready.send_replace(Readiness::Failed);
            return;
        }
    };
    room.ready.send_replace(Readiness::Ready);
    loop {
        let received = tokio::select! {
            () = room.stop.cancelled() => break,
            received = subscriber.recv() => received,
        };
        match received {
            Some(Received::Message(Broadcast::Message(published))) => {
                accept(&rooms, &room, &key, &mut at, published).await;
            }
            Some(Received::Message(other)) => room.apply(&other),
            Some(Received::Lagged(_) | Received::Reconnected) => {
                catch_up(&rooms, &room, &key, &mut at).await;
            }
            None => break,
        }
    }
    if room.stop.is_cancelled() && !room.members().is_empty() {
        room.close_all(Close::GoingAway);
    }
}

/// Delivers `published` in offset order: duplicates are dropped, gaps filled from the log.
async fn accept(rooms: &Rooms, room: &Room, key: &str, at: &mut Position, published: Published) {
    if published.epoch != at.epoch {
        if at.epoch.is_empty() {
            // The room had no history when the pump started: this epoch is the first.
            *at = Position {
                offset: 0,
                epoch: published.epoch.clone(),
            };
        } else {
            tracing::info!(room.id = room.id, "chat history epoch changed");
            room.close_all(Close::Resync);
            *at = Position {
                offset: published.offset,
                epoch: published.epoch,
            };
            return;
        }
    }
    if published.offset <= at.offset {
        return;
    }
    if published.offset == at.offset + 1 {
        at.offset = published.offset;
        room.deliver(&Outgoing::message(
            published.offset,
            &published.epoch,
            &published.message,
        ));
        return;
    }
    catch_up(rooms, room, key, at).await;
}

/// Reads of the log tried before a gap counts as unfillable, and the pause before each
/// retry: a bus slow for a moment should not send every socket of the room to reconnect.
const GAP_RETRIES: [Duration; 3] = [
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(200),
];

/// Delivers everything the log holds after `at`; closes every socket for a resync when the
/// log cannot give it back without a hole.
async fn catch_up(rooms: &Rooms, room: &Room, key: &str, at: &mut Position) {
    loop {
        let mut retries = GAP_RETRIES.iter();
        let history = loop {
            let read = rooms
                .log
                .read(key, Some(at), livegate_core::bus::log::MAX_READ)
                .await;
            match (read, retries.next()) {
                (Ok(history), _) => break history,
                (Err(err), Some(pause)) => {
                    tracing::debug!(room.id = room.id, error = %err, "chat room retries filling a gap");
                    tokio::select! {
                        () = room.stop.cancelled() => return,
                        () = tokio::time::sleep(*pause) => {}
                    }
                }
                (Err(err), None) => {
                    tracing::warn!(room.id = room.id, error = %err, "chat room cannot fill a gap");
                    room.close_all(Close::Resync);
                    return;
                }
            }
        };
        let continues = history.epoch == at.epoch
            && history
                .entries
                .first()
                .is_none_or(|entry| entry.offset == at.offset + 1);
        // A pump that has seen nothing yet takes the history as it finds it.
        let fresh = at.epoch.is_empty() && at.offset == 0;
        if !(continues || fresh) {
            room.close_all(Close::Resync);
            *at = Position {
                offset: history.latest,
                epoch: history.epoch,
            };
            return;
        }
        at.epoch.clone_from(&history.epoch);
        for entry in &history.entries {
            if entry.offset > at.offset {
                at.offset = entry.offset;
                room.deliver(&Outgoing::message(
                    entry.offset,
                    &history.epoch,
                    &entry.value,
                ));
            }
        }
        if history.complete || history.entries.is_empty() {
            return;
        }
    }
}
