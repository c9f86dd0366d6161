//! What a client's frame does: a chat message checked against the limits, or a moderator's
//! delete or clear ([`super::removal`]), each appended to the room's log.

use std::sync::atomic::Ordering;
use std::time::Duration;

use livegate_core::bus::Position;
use livegate_core::db::messages::NewMessage;

use super::frame::{Direct, Incoming, Kind, Message, Outgoing};
use super::removal::{self, Removal};
use super::socket::Connection;

/// The frame that answers a client frame.
#[derive(Debug)]
pub enum Answer {
    /// Done (an `ack`), or failed through no fault of the client.
    Done(Outgoing),
    /// Refused: counts toward the abuse limit.
    Refused(Outgoing),
}

fn error(code: &str, message: &str, reference: Option<&str>) -> Outgoing {
    Outgoing::direct(&Direct::Error {
        code,
        message,
        reference,
    })
}

fn refused(code: &str, message: &str, reference: Option<&str>) -> Answer {
    Answer::Refused(error(code, message, reference))
}

/// Handles one client frame.
pub async fn handle(conn: &Connection, incoming: Incoming) -> Answer {
    match incoming {
        Incoming::Chat { text, reference } => chat(conn, text, reference.as_deref()).await,
        Incoming::Delete { offset, reference } => {
            moderate(conn, Removal::Delete(offset), reference.as_deref()).await
        }
        Incoming::Clear { reference } => moderate(conn, Removal::Clear, reference.as_deref()).await,
    }
}

async fn chat(conn: &Connection, text: String, reference: Option<&str>) -> Answer {
    let config = &conn.state.config().chat;
    let Some(sender) = conn.access.sender.as_ref().filter(|_| conn.access.can_send) else {
        return refused(
            "read_only",
            "a play token may read chat, not send",
            reference,
        );
    };
    let muted_until = conn.membership.member().muted_until.load(Ordering::Relaxed);
    let now = livegate_core::db::now_ms();
    if u64::try_from(now).is_ok_and(|now| now < muted_until) {
        return refused("muted", "you are muted in this room for now", reference);
    }
    let text = text.trim();
    if text.is_empty() {
        return refused("empty", "the message has no text", reference);
    }
    if text.chars().count() > config.max_message_chars {
        let message = format!("at most {} characters", config.max_message_chars);
        return refused("too_long", &message, reference);
    }
    if !conn.access.moderates && config.rate_messages > 0 {
        let key = format!("chat:rate:{}:{}", conn.room.id, sender.id);
        // A bucket of `rate_messages` that refills completely over `rate_window_ms`.
        let per_token = Duration::from_millis(config.rate_window_ms) / config.rate_messages.max(1);
        match conn
            .state
            .bus()
            .take_token(&key, config.rate_messages, per_token)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                return refused(
                    "rate_limited",
                    "too many messages; slow down or you will be disconnected",
                    reference,
                )
            }
            Err(err) => {
                tracing::warn!(room.id = conn.room.id, error = %err, "chat rate limit unavailable");
                return Answer::Done(unavailable(reference));
            }
        }
    }
    let slow_mode_s = conn.membership.slow_mode_s();
    if !conn.access.moderates && slow_mode_s > 0 {
        let key = format!("chat:slow:{}:{}", conn.room.id, sender.id);
        let within = conn
            .state
            .bus()
            .rate_limit(&key, 1, Duration::from_secs(slow_mode_s))
            .await;
        match within {
            Ok(true) => {}
            Ok(false) => {
                let message = format!("slow mode: one message every {slow_mode_s} s");
                return refused("slow_mode", &message, reference);
            }
            Err(err) => {
                tracing::warn!(room.id = conn.room.id, error = %err, "chat slow mode unavailable");
                return Answer::Done(unavailable(reference));
            }
        }
    }
    let message = Message {
        kind: Kind::Chat,
        id: crate::auth::random_token(12),
        room: conn.room.id,
        user: Some(sender.clone()),
        text: Some(text.to_owned()),
        target: None,
        at: now,
    };
    let stored = NewMessage {
        room_id: conn.room.id,
        user_id: sender.id,
        kind: "chat".to_owned(),
        content: text.to_owned(),
        created_at: now,
    };
    let id = message.id.clone();
    match append(conn, message).await {
        Some(position) => {
            conn.state.chat().store().enqueue(stored);
            Answer::Done(ack(reference, &position, &id))
        }
        None => Answer::Done(unavailable(reference)),
    }
}

async fn moderate(conn: &Connection, removal: Removal, reference: Option<&str>) -> Answer {
    if !conn.access.moderates {
        return refused(
            "forbidden",
            "only the room's owner, its moderators and admins may do this",
            reference,
        );
    }
    match removal::remove(
        &conn.state,
        conn.room.id,
        conn.access.sender.clone(),
        removal,
    )
    .await
    {
        Ok((position, id)) => Answer::Done(ack(reference, &position, &id)),
        Err(_) => Answer::Done(unavailable(reference)),
    }
}

async fn append(conn: &Connection, message: Message) -> Option<Position> {
    match conn.state.chat().rooms().send(message).await {
        Ok(position) => {
            conn.state.chat().metrics().messages.inc();
            Some(position)
        }
        Err(err) => {
            tracing::warn!(room.id = conn.room.id, error = %err, "chat message not appended");
            None
        }
    }
}

fn ack(reference: Option<&str>, position: &Position, id: &str) -> Outgoing {
    Outgoing::direct(&Direct::Ack {
        reference,
        offset: position.offset,
        id,
    })
}

fn unavailable(reference: Option<&str>) -> Outgoing {
    error(
        "unavailable",
        "chat is temporarily unavailable, try again",
        reference,
    )
}
