//! Gift events: a paid gift, on its way to the room's chat.
//!
//! The payment service writes each one to its database outbox in the transaction that marks
//! the order paid, and relays it to [`crate::bus::Bus::gift_events`]: a [`Log`] keyed by the
//! room id (`room` as a decimal string), appended with [`Log::append_once`] under the order
//! id, so the history holds each gift once even when the relay dies and relays it again.
//! Consumers (the chat) read the room's key like its message history and may still dedupe by
//! `order_id` (an evicted or flushed history starts a new epoch).

use serde::{Deserialize, Serialize};

use super::log::Log;

/// The log gift events are relayed to.
pub const GIFT_EVENTS: &str = "gifts";
/// The leaderboard of gift totals per room and currency (`{room}:{currency}`).
pub const GIFT_BOARD: &str = "gifts";

/// One paid gift.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GiftEvent {
    /// The order that paid for it: unique per gift.
    pub order_id: i64,
    /// The room it was given in.
    pub room_id: i64,
    /// The giver.
    pub user_id: i64,
    /// The giver's username, to show.
    pub username: String,
    /// The gift.
    pub gift_id: i64,
    /// The gift's name, to show.
    pub gift_name: String,
    /// What it cost, in the smallest unit of `currency`.
    pub amount: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// When the payment was confirmed, unix milliseconds.
    pub paid_at_ms: i64,
}

/// The log key of a room's gifts.
pub fn room_key(room_id: i64) -> String {
    room_id.to_string()
}

/// Type alias for the gift log.
pub type GiftLog = Log<GiftEvent>;
