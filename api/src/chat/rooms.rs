//! The rooms this instance has sockets in: one channel subscription and one pump per room,
//! which puts messages in offset order (filling gaps from the log), serializes each once and
//! hands it to every local socket's outbox.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use livegate_core::bus::{Bus, BusError, Channel, Log, Position, Received};
use livegate_core::service::Shutdown;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::close::Close;
use super::frame::{Broadcast, Message, Outgoing, Published};
use super::outbox::Outbox;

/// The log's name: room histories are its keys.
pub const LOG_NAME: &str = "chat";

/// A room's channel name.
pub fn channel_name(room: i64) -> String {
    format!("chat:{room}")
}

/// One connection as the room sees it.
#[derive(Debug)]
pub struct Member {
    /// The connection's id in this process.
    pub id: u64,
    /// The logged-in user, if any.
    pub user: Option<i64>,
    /// The user's presence entry (`id:name`), if logged in.
    pub presence: Option<String>,
    /// Where its frames go.
    pub outbox: Arc<Outbox>,
    /// Unix milliseconds until which the user may not send (0: not muted).
    pub muted_until: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Readiness {
    Starting,
    Ready,
    Failed,
}

/// One room's local fan-out.
#[derive(Debug)]
struct Room {
    id: i64,
    // A std mutex: held while handing a frame to each outbox, never across an await.
    members: Mutex<HashMap<u64, Arc<Member>>>,
    ready: watch::Sender<Readiness>,
    stop: CancellationToken,
    slow_mode_s: AtomicU64,
}

impl Room {
    fn members(&self) -> MutexGuard<'_, HashMap<u64, Arc<Member>>> {
        self.members
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn deliver(&self, frame: &Outgoing) {
        for member in self.members().values() {
            member.outbox.push(frame.clone());
        }
    }

    fn close_all(&self, close: Close) {
        for member in self.members().values() {
            member.outbox.close(close);
        }
    }

    fn apply(&self, broadcast: &Broadcast) {
        match broadcast {
            Broadcast::Message(_) => {}
            Broadcast::Presence {
                joined,
                left,
                count,
            } => self.deliver(&Outgoing::presence(joined, left, *count)),
            Broadcast::RoomDisabled => self.close_all(Close::RoomDisabled),
            Broadcast::SlowMode { seconds } => {
                self.slow_mode_s
                    .store(u64::from(*seconds), Ordering::Relaxed);
            }
            Broadcast::Banned { user } => {
                for member in self.members().values() {
                    if member.user == Some(*user) {
                        member.outbox.close(Close::Banned);
                    }
                }
            }
            Broadcast::Muted { user, until_ms } => {
                for member in self.members().values() {
                    if member.user == Some(*user) {
                        let until = u64::try_from(*until_ms).unwrap_or(0);
                        member.muted_until.store(until, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

/// The rooms of this instance.
#[derive(Debug)]
pub struct Rooms {
    bus: Bus,
    log: Log<Message>,
    // A std mutex: held to find, add or drop a room, never across an await.
    rooms: Mutex<HashMap<i64, Arc<Room>>>,
    next_member: AtomicU64,
}

/// A connection's place in a room; leaving is dropping it.
#[derive(Debug)]
pub struct Membership {
    rooms: Arc<Rooms>,
    room: Arc<Room>,
    member: Arc<Member>,
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.rooms.leave(&self.room, self.member.id);
    }
}

impl Membership {
    /// The member.
    pub fn member(&self) -> &Arc<Member> {
        &self.member
    }

    /// The room's slow mode, in seconds (0: off).
    pub fn slow_mode_s(&self) -> u64 {
        self.room.slow_mode_s.load(Ordering::Relaxed)
    }

    /// Sets the room's slow mode as the database has it (each joiner refreshes it; changes
    /// while connected arrive as [`Broadcast::SlowMode`]).
    pub fn set_slow_mode_s(&self, seconds: u32) {
        self.room
            .slow_mode_s
            .store(u64::from(seconds), Ordering::Relaxed);
    }
}

impl Rooms {
    /// The rooms of a bus whose chat log keeps `history_len` entries per room.
    pub fn new(bus: Bus, history_len: usize) -> Self {
        let mut options = livegate_core::bus::LogOptions::new(LOG_NAME);
        options.max_len = history_len;
        Self {
            log: bus.log(options),
            bus,
            rooms: Mutex::new(HashMap::new()),
            next_member: AtomicU64::new(1),
        }
    }

    fn rooms(&self) -> MutexGuard<'_, HashMap<i64, Arc<Room>>> {
        self.rooms
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The chat log.
    pub fn log(&self) -> &Log<Message> {
        &self.log
    }

    /// The channel of `room`.
    pub fn channel(&self, room: i64) -> Channel<Broadcast> {
        self.bus.channel(&channel_name(room))
    }

    /// Adds a connection to `room`. Returns once the room's pump is subscribed, so that
    /// everything appended after the caller next reads the log reaches the outbox.
    pub async fn join(
        self: &Arc<Self>,
        shutdown: &Shutdown,
        room_id: i64,
        user: Option<&super::frame::PresentUser>,
        outbox: Arc<Outbox>,
    ) -> Result<Membership, BusError> {
        let member = Arc::new(Member {
            id: self.next_member.fetch_add(1, Ordering::Relaxed),
            user: user.map(|user| user.id),
            presence: user.map(super::frame::PresentUser::to_member),
            outbox,
            muted_until: AtomicU64::new(0),
        });
        let room = {
            let mut rooms = self.rooms();
            let room = rooms
                .entry(room_id)
                .or_insert_with(|| {
                    let (ready, _) = watch::channel(Readiness::Starting);
                    let room = Arc::new(Room {
                        id: room_id,
                        members: Mutex::new(HashMap::new()),
                        ready,
                        stop: shutdown.token().child_token(),
                        slow_mode_s: AtomicU64::new(0),
                    });
                    shutdown.spawn(pump(self.clone(), room.clone()));
                    room
                })
                .clone();
            room.members().insert(member.id, member.clone());
            room
        };
        let membership = Membership {
            rooms: self.clone(),
            room: room.clone(),
            member,
        };
        let mut ready = room.ready.subscribe();
        let state = *ready
            .wait_for(|state| *state != Readiness::Starting)
            .await
            .map_err(|_| BusError::Closed)?;
        if state == Readiness::Failed {
            return Err(BusError::Closed);
        }
        Ok(membership)
    }

    fn leave(&self, room: &Arc<Room>, member: u64) {
        let mut rooms = self.rooms();
        let mut members = room.members();
        members.remove(&member);
        if members.is_empty() {
            // Only the room still registered under its id: a failed one may be replaced.
            if rooms.get(&room.id).is_some_and(|r| Arc::ptr_eq(r, room)) {
                rooms.remove(&room.id);
            }
            room.stop.cancel();
        }
    }

    /// Each room with sockets here, and the distinct users in it (tabs counted once).
    pub fn present(&self) -> Vec<(i64, Vec<String>)> {
        let rooms: Vec<Arc<Room>> = self.rooms().values().cloned().collect();
        rooms
            .iter()
            .map(|room| {
                let mut users: Vec<String> = room
                    .members()
                    .values()
                    .filter_map(|member| member.presence.clone())
                    .collect();
                users.sort();
                users.dedup();
                (room.id, users)
            })
            .collect()
    }

    fn forget(&self, room: &Arc<Room>) {
        let mut rooms = self.rooms();
        if rooms.get(&room.id).is_some_and(|r| Arc::ptr_eq(r, room)) {
            rooms.remove(&room.id);
        }
    }

    /// Appends `message` to its room's log and tells every instance. Returns its place.
    pub async fn send(&self, message: Message) -> Result<Position, BusError> {
        let key = message.room.to_string();
        let position = self.log.append(&key, &message).await?;
        let room = message.room;
        let published = Broadcast::Message(Published {
            offset: position.offset,
            epoch: position.epoch.clone(),
            message,
        });
        if let Err(err) = self.channel(room).publish(&published).await {
            // The message is in the log: every pump fills the gap with the next message.
            tracing::warn!(room.id = room, error = %err, "chat message logged but not published");
        }
        Ok(position)
    }

    /// Tells every instance's connections of `room` about a ban or mute.
    pub async fn broadcast(&self, room: i64, broadcast: &Broadcast) -> Result<(), BusError> {
        self.channel(room).publish(broadcast).await
    }
}

/// A room's pump: subscribed while the room has local sockets.
async fn pump(rooms: Arc<Rooms>, room: Arc<Room>) {
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

/// Delivers everything the log holds after `at`; closes every socket for a resync when the
/// log cannot give it back without a hole.
async fn catch_up(rooms: &Rooms, room: &Room, key: &str, at: &mut Position) {
    loop {
        let history = match rooms
            .log
            .read(key, Some(at), livegate_core::bus::log::MAX_READ)
            .await
        {
            Ok(history) => history,
            Err(err) => {
                tracing::warn!(room.id = room.id, error = %err, "chat room cannot fill a gap");
                room.close_all(Close::Resync);
                return;
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
