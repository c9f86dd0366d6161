//! What a moderator's `clear` or `delete` takes out of the database, on every instance.
//!
//! Rows reach the database late (the [`store`](super::store) writes them in batches), and each
//! instance queues the rows of the messages it accepted. So a clear or a delete is a
//! [`Cut`]: the instance where it happened applies it to its own queue, tells every other
//! instance on the bus channel [`CHANNEL`] (which every instance follows, whether it has
//! sockets in the room or not: a gift may be queued anywhere), and deletes the rows already
//! stored.

use std::sync::Arc;
use std::time::Duration;

use livegate_core::bus::{Bus, Position, Received};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::frame::{Kind, Message};
use super::rooms::Rooms;
use super::store::{Queued, Store};

/// The bus channel of cuts, shared by every instance (room channels are `chat:{id}`).
pub const CHANNEL: &str = "chat:cuts";

/// Rows of one room to take out of the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cut {
    /// The room.
    pub room: i64,
    /// The epoch of the offsets below.
    pub epoch: String,
    /// What goes.
    pub what: CutKind,
}

/// What a cut takes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CutKind {
    /// A clear at this offset: every message before it.
    Clear {
        /// The `clear` frame's offset.
        before: u64,
    },
    /// The message at this offset.
    Delete {
        /// The deleted message's offset.
        offset: u64,
    },
}

impl Cut {
    /// Whether the cut takes out `queued`; `heard_at` is the store's queue position when
    /// the cut was heard (rows of another epoch are cleared if they were queued before).
    pub fn covers(&self, queued: &Queued, heard_at: u64) -> bool {
        if queued.row.room_id != self.room {
            return false;
        }
        let same_epoch = queued.position.epoch == self.epoch;
        match self.what {
            CutKind::Clear { before } if same_epoch => queued.position.offset < before,
            CutKind::Clear { .. } => queued.seq < heard_at,
            CutKind::Delete { offset } => same_epoch && queued.position.offset == offset,
        }
    }
}

/// Applies `cut`, made on this instance: its queue, every other instance's, and the rows
/// stored already.
pub async fn make(bus: &Bus, rooms: &Rooms, store: &Store, cut: Cut) {
    // First here: a batch being written finishes before the stored rows are deleted.
    store.cut(&cut).await;
    if let Err(err) = bus.channel::<Cut>(CHANNEL).publish(&cut).await {
        tracing::warn!(room.id = cut.room, error = %err, "chat cut not sent to the other instances; their queued rows stay");
    }
    match cut.what {
        CutKind::Clear { .. } => store.clear_stored(cut.room).await,
        CutKind::Delete { offset } => {
            if let Some(row) = stored_row(rooms, &cut, offset).await {
                store.delete_stored(&row).await;
            }
        }
    }
}

/// The row the message at `offset` was stored as, read back from the room's log (gone
/// from the log: too old to be targeted by a client).
async fn stored_row(
    rooms: &Rooms,
    cut: &Cut,
    offset: u64,
) -> Option<livegate_core::db::messages::NewMessage> {
    let before = Position {
        offset: offset.checked_sub(1)?,
        epoch: cut.epoch.clone(),
    };
    let history = match rooms
        .log()
        .read(&cut.room.to_string(), Some(&before), 1)
        .await
    {
        Ok(history) => history,
        Err(err) => {
            tracing::warn!(room.id = cut.room, error = %err, "deleted chat message not looked up");
            return None;
        }
    };
    let entry = history
        .entries
        .into_iter()
        .find(|entry| entry.offset == offset && history.epoch == cut.epoch)?;
    row_of(&entry.value)
}

/// The row a message is stored as (chat messages and gifts are; the rest are not).
pub fn row_of(message: &Message) -> Option<livegate_core::db::messages::NewMessage> {
    let kind = match message.kind {
        Kind::Chat => "chat",
        Kind::Gift => "gift",
        _ => return None,
    };
    Some(livegate_core::db::messages::NewMessage {
        room_id: message.room,
        user_id: message.user.as_ref()?.id,
        kind: kind.to_owned(),
        content: message.text.clone()?,
        created_at: message.at,
    })
}

/// Follows the other instances' cuts until `stop`.
pub async fn follow(bus: Bus, store: Arc<Store>, stop: CancellationToken) {
    let channel = bus.channel::<Cut>(CHANNEL);
    let mut retry = Duration::from_millis(200);
    loop {
        let subscribed = tokio::select! {
            () = stop.cancelled() => return,
            subscribed = channel.subscribe() => subscribed,
        };
        let mut subscriber = match subscribed {
            Ok(subscriber) => subscriber,
            Err(err) => {
                tracing::warn!(error = %err, "chat cannot follow clears and deletes; retrying");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(retry) => {}
                }
                retry = (retry * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        store.set_follows_cuts(true);
        loop {
            let received = tokio::select! {
                () = stop.cancelled() => return,
                received = subscriber.recv() => received,
            };
            match received {
                Some(Received::Message(cut)) => store.cut(&cut).await,
                Some(Received::Lagged(missed)) => {
                    tracing::warn!(missed, "chat missed clears or deletes of other instances");
                }
                Some(Received::Reconnected) => {}
                None => {
                    store.set_follows_cuts(false);
                    return;
                }
            }
        }
    }
}
