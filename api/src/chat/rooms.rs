//! The rooms this instance has sockets in, their members, and sending to a room. Each room
//! has one channel subscription and one pump (the `pump` module).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use livegate_core::bus::{Bus, BusError, Channel, Log, Position};
use livegate_core::service::Shutdown;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::close::Close;
use super::frame::{Broadcast, Message, Outgoing, Published, Sender};
use super::member::Member;
use super::outbox::Outbox;

/// Pauses before publishing a logged message again when the channel failed: without it the
/// pumps learn of the message only with the next one.
const PUBLISH_RETRIES: [std::time::Duration; 2] = [
    std::time::Duration::from_millis(50),
    std::time::Duration::from_millis(200),
];

/// The log's name: room histories are its keys.
pub const LOG_NAME: &str = "chat";

/// A room's channel name.
pub fn channel_name(room: i64) -> String {
    format!("chat:{room}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Readiness {
    Starting,
    Ready,
    Failed,
}

/// One room's local fan-out.
#[derive(Debug)]
pub(super) struct Room {
    pub(super) id: i64,
    // A std mutex: held while handing a frame to each outbox, never across an await.
    members: Mutex<HashMap<u64, Arc<Member>>>,
    pub(super) ready: watch::Sender<Readiness>,
    pub(super) stop: CancellationToken,
    slow_mode_s: AtomicU64,
}

impl Room {
    pub(super) fn members(&self) -> MutexGuard<'_, HashMap<u64, Arc<Member>>> {
        self.members
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn deliver(&self, frame: &Outgoing) {
        for member in self.members().values() {
            member.outbox.push(frame.clone());
        }
    }

    pub(super) fn close_all(&self, close: Close) {
        for member in self.members().values() {
            member.outbox.close(close);
        }
    }

    pub(super) fn apply(&self, broadcast: &Broadcast) {
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
                    if member.user() == Some(*user) {
                        member.outbox.close(Close::Banned);
                    }
                }
            }
            Broadcast::Moderator { user, holds } => {
                for member in self.members().values() {
                    if member.user() == Some(*user) {
                        member.set_moderator(*holds);
                    }
                }
            }
            Broadcast::Muted { user, until_ms } => {
                for member in self.members().values() {
                    if member.user() == Some(*user) {
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
    pub(super) log: Log<Message>,
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
        sender: Option<Sender>,
        outbox: Arc<Outbox>,
    ) -> Result<Membership, BusError> {
        let id = self.next_member.fetch_add(1, Ordering::Relaxed);
        let member = Arc::new(Member::new(id, sender, outbox));
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
                    shutdown.spawn(super::pump::run(self.clone(), room.clone()));
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

    pub(super) fn forget(&self, room: &Arc<Room>) {
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
        let channel = self.channel(room);
        let mut retries = PUBLISH_RETRIES.iter();
        loop {
            let Err(err) = channel.publish(&published).await else {
                break;
            };
            // Publishing again is harmless: pumps drop an offset they have delivered.
            if let Some(pause) = retries.next() {
                tokio::time::sleep(*pause).await;
                continue;
            }
            // The message is in the log: every pump fills the gap with the next message.
            tracing::warn!(room.id = room, error = %err, "chat message logged but not published");
            break;
        }
        Ok(position)
    }

    /// Tells every instance's connections of `room` about a moderation change.
    pub async fn broadcast(&self, room: i64, broadcast: &Broadcast) -> Result<(), BusError> {
        self.channel(room).publish(broadcast).await
    }
}
