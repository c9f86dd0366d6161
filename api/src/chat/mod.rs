//! Room chat over WebSocket (`GET /ws`), documented for clients in `docs/chat.md`.
//!
//! Each room's messages go through the bus: appended to the `chat` [`Log`](livegate_core::bus::Log)
//! (which gives the offset and epoch), then published on the room's channel, which every
//! instance with sockets in the room follows through its one subscriber connection. A pump
//! per room and instance puts them in offset order, serializes each once and hands the bytes
//! to every local socket's byte-bounded outbox.
//!
//! - [`access`]: who may read or send, decided at the upgrade;
//! - [`upgrade`]: the `/ws` handler and the replay of missed messages;
//! - [`socket`]: one connection (writer, reader, pings, idle and expiry);
//! - [`send`]: what a client's frame does;
//! - [`rooms`], `pump`: a room's members, and its ordered fan-out;
//! - [`outbox`], [`frame`], [`close`]: the queue, the frames and the close codes;
//! - [`store`], [`history`]: batched writes to `messages` and reading them back;
//! - [`moderation`]: moderators, mutes, bans and slow mode, and deletes and clears over REST;
//! - [`removal`]: deleting a message or clearing a room, for both the socket and REST;
//! - [`presence`]: who is in a room, across instances;
//! - [`events`]: live/offline frames from the hooks service.

pub mod access;
pub mod close;
pub mod config;
pub mod events;
pub mod frame;
pub mod history;
pub mod metrics;
pub mod moderation;
pub mod outbox;
pub mod presence;
mod pump;
pub mod removal;
pub mod rooms;
pub mod send;
pub mod socket;
pub mod store;
pub mod upgrade;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use livegate_core::bus::Bus;
use livegate_core::db::Database;
use livegate_core::service::Shutdown;
use tokio_util::sync::CancellationToken;

use self::config::ChatConfig;
use self::metrics::ChatMetrics;
use self::rooms::Rooms;
use self::store::Store;

/// The chat of one instance.
#[derive(Debug)]
pub struct Chat {
    rooms: Arc<Rooms>,
    store: Arc<Store>,
    store_stop: CancellationToken,
    metrics: ChatMetrics,
    // Set when the service runs: connections and pumps are its tasks.
    shutdown: OnceLock<Shutdown>,
}

impl Chat {
    /// Chat on `bus`, storing to `db`.
    pub fn new(config: &ChatConfig, bus: Bus, db: Database, metrics: ChatMetrics) -> Self {
        Self {
            rooms: Arc::new(Rooms::new(bus, config.history_len)),
            store: Arc::new(Store::new(
                db,
                config.store_queue,
                metrics.not_stored.clone(),
            )),
            store_stop: CancellationToken::new(),
            metrics,
            shutdown: OnceLock::new(),
        }
    }

    /// Starts the store writer and the room event follower as tasks of `shutdown`; returns
    /// the writer, for the drain to wait on.
    pub fn start(
        &self,
        config: &ChatConfig,
        bus: Bus,
        shutdown: &Shutdown,
    ) -> tokio::task::JoinHandle<()> {
        let _ = self.shutdown.set(shutdown.clone());
        let (rooms, stop) = (self.rooms.clone(), shutdown.token().clone());
        shutdown.spawn(events::follow(bus.clone(), rooms.clone(), stop.clone()));
        shutdown.spawn(presence::refresh(config.clone(), bus, rooms, stop));
        let store = self.store.clone();
        let interval = Duration::from_millis(config.store_interval_ms);
        // Its own token: the writer flushes after the connections have closed.
        let stop = self.store_stop.clone();
        shutdown.spawn(async move { store.run(interval, stop).await })
    }

    /// Tells the store writer to write what is queued and end (after the connections).
    pub fn stop_store(&self) {
        self.store_stop.cancel();
    }

    /// The shutdown handle, once running.
    pub fn shutdown(&self) -> Option<Shutdown> {
        self.shutdown.get().cloned()
    }

    /// Cancelled when the service stops.
    pub fn stop_token(&self) -> CancellationToken {
        self.shutdown
            .get()
            .map_or_else(CancellationToken::new, |shutdown| shutdown.token().clone())
    }

    /// The rooms of this instance.
    pub fn rooms(&self) -> &Arc<Rooms> {
        &self.rooms
    }

    /// Posts a paid gift to the room's chat (for the payment flow, once per paid order): a
    /// `gift` frame on every instance, stored like a chat message.
    pub async fn gift(
        &self,
        room: i64,
        sender: frame::Sender,
        text: String,
    ) -> Result<livegate_core::bus::Position, livegate_core::bus::BusError> {
        let now = livegate_core::db::now_ms();
        let stored = livegate_core::db::messages::NewMessage {
            room_id: room,
            user_id: sender.id,
            kind: "gift".to_owned(),
            content: text.clone(),
            created_at: now,
        };
        let message = frame::Message {
            kind: frame::Kind::Gift,
            id: crate::auth::random_token(12),
            room,
            user: Some(sender),
            text: Some(text),
            target: None,
            at: now,
        };
        let position = self.rooms.send(message).await?;
        self.metrics.messages.inc();
        self.store.enqueue(stored);
        Ok(position)
    }

    /// Closes every chat connection of a room that was just disabled, on every instance.
    pub async fn room_disabled(&self, room: i64) {
        if let Err(err) = self
            .rooms
            .broadcast(room, &frame::Broadcast::RoomDisabled)
            .await
        {
            tracing::warn!(room.id = room, error = %err, "chat of a disabled room not closed");
        }
    }

    /// Chat's metrics.
    pub fn metrics(&self) -> &ChatMetrics {
        &self.metrics
    }

    /// The database writer.
    pub fn store(&self) -> &Store {
        &self.store
    }
}
