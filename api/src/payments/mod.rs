//! Gift orders and their payment: idempotent order creation, the provider's signed
//! callbacks applied exactly once, the outbox relay that brings each paid gift to the room's
//! bus log once, and the per-room leaderboard.
//!
//! The exactly-once chain: a callback's effect (order `pending → paid`), its inbox row
//! (unique per provider and event id) and the gift event (outbox row, unique per order) are
//! one database transaction, so a redelivered event finds its inbox row and changes nothing,
//! and a process killed mid-callback left either all three or none. The relay reads outbox
//! rows not yet relayed, appends each to the room's gift log with `append_once` keyed by the
//! order id, then marks it relayed: killed between the two, it appends again on restart and
//! the log still holds the gift once.

pub mod callback;
pub mod idempotency;
pub mod leaderboard;
pub mod relay;
pub mod signature;
