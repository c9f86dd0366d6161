//! The protocol's JSON frames: what a room's log holds, what goes to clients, what clients
//! send. Written down for clients in `docs/chat.md`.

use axum::extract::ws::Utf8Bytes;
use livegate_core::bus::Position;
use serde::{Deserialize, Serialize};

/// The kinds of room messages (those with an offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A user's text.
    Chat,
    /// A paid gift.
    Gift,
    /// A notice from the service.
    System,
    /// The room went live.
    Live,
    /// The room went offline.
    Offline,
    /// A moderator deleted the message at `target`.
    Delete,
    /// A moderator cleared the room: clients drop everything before this offset.
    Clear,
}

/// Who sent a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sender {
    /// The user id.
    pub id: i64,
    /// The username.
    pub name: String,
    /// `viewer`, `streamer` or `admin`; `owner` and `moderator` in rooms they hold.
    pub role: String,
}

/// A room message as the log stores it: everything but its offset and epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// What it is.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// A unique id the server gives it.
    pub id: String,
    /// The room.
    pub room: i64,
    /// The sender (none for service messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Sender>,
    /// The text (chat, gift, system).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The offset a `delete` removes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<u64>,
    /// When the server accepted it, unix milliseconds.
    pub at: i64,
}

/// What instances publish to each other: a message with the place the log gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// The offset in the room's log.
    pub offset: u64,
    /// The epoch of that offset.
    pub epoch: String,
    /// The message.
    pub message: Message,
}

#[derive(Serialize)]
struct Wire<'a> {
    #[serde(flatten)]
    message: &'a Message,
    offset: u64,
    epoch: &'a str,
}

/// A frame serialized once, shared by every socket that sends it.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The room offset it carries, for frames from the log; sockets skip offsets they sent.
    pub offset: Option<u64>,
    /// The JSON text (text once, however many sockets send it: no check per socket).
    pub text: Utf8Bytes,
}

impl Outgoing {
    /// A room message as clients see it.
    pub fn message(offset: u64, epoch: &str, message: &Message) -> Outgoing {
        Outgoing {
            offset: Some(offset),
            text: to_bytes(&Wire {
                message,
                offset,
                epoch,
            }),
        }
    }

    /// A frame for one connection only (welcome, errors, recovery state).
    pub fn direct(frame: &Direct<'_>) -> Outgoing {
        Outgoing {
            offset: None,
            text: to_bytes(frame),
        }
    }

    /// Its size in the outbound queue.
    pub fn len(&self) -> usize {
        self.text.as_str().len()
    }

    /// Whether the frame is empty (never: every frame is a JSON object).
    pub fn is_empty(&self) -> bool {
        self.text.as_str().is_empty()
    }
}

fn to_bytes(value: &impl Serialize) -> Utf8Bytes {
    // Serializing these types cannot fail: no maps with non-string keys, no foreign types.
    Utf8Bytes::from(serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned()))
}

/// Frames for one connection.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Direct<'a> {
    /// The first frame: who the client is and where the room's history stands.
    Welcome {
        /// The room.
        room: i64,
        /// The connection's user, when logged in.
        #[serde(skip_serializing_if = "Option::is_none")]
        user: Option<&'a Sender>,
        /// Whether it may send.
        can_send: bool,
        /// The room's newest offset and epoch when the client joined.
        position: &'a Position,
        /// Whether the history asked for with `since` follows in full (`None` without
        /// `since`).
        #[serde(skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
        /// Messages after `since` sent before live ones.
        #[serde(skip_serializing_if = "Option::is_none")]
        replayed: Option<usize>,
    },
    /// A refused send; `warning` frames are the same with a disconnect ahead.
    Error {
        /// What went wrong: see `docs/chat.md`.
        code: &'a str,
        /// For people.
        message: &'a str,
        /// The `ref` of the client frame it answers, if it had one.
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a str>,
    },
    /// The connection's user as their messages now show them: the room's moderator role
    /// was given or taken back while connected.
    Role {
        /// The user, with the role they have now.
        user: &'a Sender,
    },
    /// The client's message is in the log at `offset`.
    Ack {
        /// The client frame's `ref`.
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a str>,
        /// Where the message went.
        offset: u64,
        /// The server's id of it.
        id: &'a str,
    },
}

/// A user in a room's presence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PresentUser {
    /// The user id.
    pub id: i64,
    /// The username.
    pub name: String,
}

impl PresentUser {
    /// As the bus stores it: `id:name` (the id has no colon).
    pub fn to_member(&self) -> String {
        format!("{}:{}", self.id, self.name)
    }

    /// From the bus's `id:name`.
    pub fn from_member(member: &str) -> Option<Self> {
        let (id, name) = member.split_once(':')?;
        Some(Self {
            id: id.parse().ok()?,
            name: name.to_owned(),
        })
    }
}

#[derive(Serialize)]
struct PresenceFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    joined: &'a [PresentUser],
    left: &'a [PresentUser],
    count: u64,
}

impl Outgoing {
    /// A `presence` frame.
    pub fn presence(joined: &[PresentUser], left: &[PresentUser], count: u64) -> Outgoing {
        Outgoing {
            offset: None,
            text: to_bytes(&PresenceFrame {
                kind: "presence",
                joined,
                left,
                count,
            }),
        }
    }
}

/// What a client sends.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Incoming {
    /// Send a text to the room.
    Chat {
        /// The text.
        text: String,
        /// An id of the client's choosing, echoed in the `ack` or `error`.
        #[serde(default, rename = "ref")]
        reference: Option<String>,
    },
    /// Delete the message at `offset` (owner, moderators, admins).
    Delete {
        /// The message's offset.
        offset: u64,
        /// Echoed in the answer.
        #[serde(default, rename = "ref")]
        reference: Option<String>,
    },
    /// Clear the room (owner, moderators, admins).
    Clear {
        /// Echoed in the answer.
        #[serde(default, rename = "ref")]
        reference: Option<String>,
    },
}

/// What a room's channel carries between instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Broadcast {
    /// A message appended to the room's log.
    Message(Published),
    /// A user was banned: their connections close.
    Banned {
        /// The user.
        user: i64,
    },
    /// The room was disabled: every connection closes.
    RoomDisabled,
    /// The room's slow mode changed (0: off).
    SlowMode {
        /// Seconds between two messages of one user.
        seconds: u32,
    },
    /// Users came or went (coalesced: a reconnect is neither).
    Presence {
        /// Newly present.
        joined: Vec<PresentUser>,
        /// No longer present.
        left: Vec<PresentUser>,
        /// How many users are present.
        count: u64,
    },
    /// A user was given the room's moderator role (`holds`) or lost it.
    Moderator {
        /// The user.
        user: i64,
        /// Whether they hold it now.
        holds: bool,
    },
    /// A user was muted until `until_ms` (0 lifts it).
    Muted {
        /// The user.
        user: i64,
        /// Unix milliseconds.
        until_ms: i64,
    },
}
