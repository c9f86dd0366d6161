//! Room revocations: "refuse play tokens of room R that expire at or before T". Disabling a
//! room, rotating its key or killing it publishes one, and every edge applies it within a
//! second: new requests with such a token are refused and running responses end.
//!
//! Play tokens carry no issue time, only their expiry, so a revocation names the latest expiry
//! it refuses: the issuer passes "now + the longest TTL it hands out", which every token issued
//! so far is at or below and every later one is above. An entry matters only until that
//! expiry (plus the verifier's leeway): after it, the tokens it refuses have expired anyway.
//!
//! Entries travel on a channel (at once, to running edges) and are appended to a log (for an
//! edge that starts, or reconnects after missing some, to read what is still in force).

use serde::{Deserialize, Serialize};

use super::{BusError, Channel, Log, Subscriber};

/// The channel (and the log) revocations travel on.
pub(crate) const REVOCATIONS: &str = "revocations";
/// The one key of the revocation log.
const LOG_KEY: &str = "all";

/// Refuse the play tokens of `room_id` that expire at or before `tokens_expiring_by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// The room.
    pub room_id: u64,
    /// Unix seconds: tokens whose `exp` is at or before this are refused.
    pub tokens_expiring_by: u64,
}

/// The revocation feed of a bus.
#[derive(Debug, Clone)]
pub struct Revocations {
    channel: Channel<Revocation>,
    log: Log<Revocation>,
}

impl Revocations {
    pub(crate) fn new(channel: Channel<Revocation>, log: Log<Revocation>) -> Self {
        Self { channel, log }
    }

    /// Records `revocation` for edges that start later, then tells the running ones.
    pub async fn publish(&self, revocation: &Revocation) -> Result<(), BusError> {
        self.log.append(LOG_KEY, revocation).await?;
        self.channel.publish(revocation).await
    }

    /// Revocations published from now on (subscribe first, then read [`Self::in_force`], so
    /// that nothing falls between the two).
    pub async fn subscribe(&self) -> Result<Subscriber<Revocation>, BusError> {
        self.channel.subscribe().await
    }

    /// The revocations still in force at unix second `now` (with `leeway_s` of token leeway),
    /// from the newest [`super::log::MAX_READ`] recorded.
    pub async fn in_force(&self, now: u64, leeway_s: u64) -> Result<Vec<Revocation>, BusError> {
        let history = self.log.read(LOG_KEY, None, super::log::MAX_READ).await?;
        Ok(history
            .entries
            .into_iter()
            .map(|entry| entry.value)
            .filter(|revocation| revocation.tokens_expiring_by.saturating_add(leeway_s) >= now)
            .collect())
    }
}
