//! Applying one authentic provider event: in one transaction, lock the order its payment
//! reference names, decide, record the event in the inbox and, for a payment, move the order
//! to `paid` and write its gift event to the outbox. A redelivered event finds its inbox row
//! and changes nothing.

use serde::{Deserialize, Serialize};

use livegate_core::bus::GiftEvent;
use livegate_core::db::payments::{self, InboxEvent};
use livegate_core::db::{orders, users, Database, DbError};

/// A provider event as it arrives. The field limits are those of [`check`].
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PaymentEvent)]
pub struct Event {
    /// The provider's event id: redeliveries carry the same.
    #[schema(min_length = 1, max_length = 255)]
    pub id: String,
    /// `payment.succeeded` or `payment.failed` (others are recorded and refused with 422).
    #[serde(rename = "type")]
    #[schema(min_length = 1, max_length = 64)]
    pub kind: String,
    /// What it is about.
    pub data: EventData,
}

/// The payment an event is about.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PaymentEventData)]
pub struct EventData {
    /// The order's payment reference.
    #[schema(min_length = 1, max_length = 64)]
    pub reference: String,
    /// The amount, in the smallest currency unit.
    pub amount: i64,
    /// ISO 4217 code.
    #[schema(min_length = 1, max_length = 8)]
    pub currency: String,
}

/// The succeeded event type.
pub const SUCCEEDED: &str = "payment.succeeded";
/// The failed event type.
pub const FAILED: &str = "payment.failed";

/// What became of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The order is now paid; its gift is in the outbox.
    Paid {
        /// The order.
        order_id: i64,
        /// Its room, whose relay to wake.
        room_id: i64,
    },
    /// The order is now failed.
    Failed {
        /// The order.
        order_id: i64,
    },
    /// Recorded and refused (`unknown_order`, `amount_mismatch`, `currency_mismatch`,
    /// `unknown_type`).
    Refused(&'static str),
    /// Recorded, nothing to do: the order is no longer pending.
    Ignored(&'static str),
    /// Seen before: nothing done, nothing recorded again.
    Duplicate,
}

impl Outcome {
    /// The metric label and inbox `outcome`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Paid { .. } => "paid",
            Outcome::Failed { .. } => "failed",
            Outcome::Refused(_) => "refused",
            Outcome::Ignored(_) => "ignored",
            Outcome::Duplicate => "duplicate",
        }
    }
}

/// Whether the event's fields fit their columns (in characters, as `VARCHAR` counts):
/// checked before any query.
pub fn check(event: &Event) -> Result<(), &'static str> {
    let chars = |text: &str| text.chars().count();
    let ok = (1..=255).contains(&chars(&event.id))
        && (1..=64).contains(&chars(&event.data.reference))
        && (1..=64).contains(&chars(&event.kind))
        && (1..=8).contains(&chars(&event.data.currency));
    if ok {
        Ok(())
    } else {
        Err("malformed_event")
    }
}

/// Why an event could not be applied (nothing of it was).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The gift event could not be encoded.
    #[error("gift event encoding: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Applies `event` from `provider` exactly once.
pub async fn apply(
    db: &Database,
    provider: &str,
    event: &Event,
    now_ms: i64,
) -> Result<Outcome, ApplyError> {
    let mut tx = db.begin().await?;
    // A redelivery that arrives after the first commit: answered without touching the order.
    // (One arriving during it waits on the order's lock, then finds the inbox row below.)
    if payments::event(&mut tx, provider, &event.id)
        .await?
        .is_some()
    {
        return Ok(Outcome::Duplicate);
    }
    let order = orders::lock_by_ref(&mut tx, &event.data.reference).await?;
    let decided = match &order {
        _ if event.kind != SUCCEEDED && event.kind != FAILED => Outcome::Refused("unknown_type"),
        None => Outcome::Refused("unknown_order"),
        Some(order) if event.kind == SUCCEEDED && event.data.amount != order.amount => {
            Outcome::Refused("amount_mismatch")
        }
        Some(order) if event.kind == SUCCEEDED && event.data.currency != order.currency => {
            Outcome::Refused("currency_mismatch")
        }
        // After the amount checks: a contradicting event is flagged whatever the order's state.
        Some(order) if order.status != "pending" => Outcome::Ignored(match order.status.as_str() {
            "paid" => "order_paid",
            "failed" => "order_failed",
            "expired" => "order_expired",
            _ => "order_not_pending",
        }),
        Some(order) if event.kind == SUCCEEDED => Outcome::Paid {
            order_id: order.id,
            room_id: order.room_id,
        },
        Some(order) => Outcome::Failed { order_id: order.id },
    };
    let reason = match &decided {
        Outcome::Refused(reason) | Outcome::Ignored(reason) => Some((*reason).to_owned()),
        _ => None,
    };
    let recorded = payments::record_event(
        &mut tx,
        &InboxEvent {
            id: 0,
            provider: provider.to_owned(),
            event_id: event.id.clone(),
            event_type: event.kind.clone(),
            payment_ref: event.data.reference.clone(),
            order_id: order.as_ref().map(|o| o.id),
            amount: event.data.amount,
            currency: event.data.currency.clone(),
            outcome: decided.label().to_owned(),
            reason,
            received_at: now_ms,
        },
    )
    .await?;
    if !recorded {
        // The same event id, committed by another transaction meanwhile (one that named
        // another order, or raced past the check above): this one does nothing.
        return Ok(Outcome::Duplicate);
    }
    if let (Outcome::Paid { order_id, .. }, Some(order)) = (&decided, &order) {
        orders::transition(&mut tx, *order_id, "pending", "paid", now_ms).await?;
        let username = users::get(&mut tx, order.user_id)
            .await?
            .map(|user| user.username)
            .unwrap_or_default();
        let gift_name = livegate_core::db::gifts::get(&mut tx, order.gift_id)
            .await?
            .map(|gift| gift.name)
            .unwrap_or_default();
        let gift = GiftEvent {
            order_id: order.id,
            room_id: order.room_id,
            user_id: order.user_id,
            username,
            gift_id: order.gift_id,
            gift_name,
            amount: order.amount,
            currency: order.currency.clone(),
            paid_at_ms: now_ms,
        };
        let payload = serde_json::to_string(&gift)?;
        payments::enqueue_gift(&mut tx, order.id, order.room_id, &payload, now_ms).await?;
    }
    if let Outcome::Failed { order_id } = &decided {
        orders::transition(&mut tx, *order_id, "pending", "failed", now_ms).await?;
    }
    tx.commit().await?;
    Ok(decided)
}
