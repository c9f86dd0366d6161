//! One connection as its room sees it: where its frames go, and what may change about its
//! user while it is open (a mute, the room's moderator role).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::frame::{Direct, Outgoing, PresentUser, Sender};
use super::outbox::Outbox;

/// One connection as the room sees it.
#[derive(Debug)]
pub struct Member {
    /// The connection's id in this process.
    pub id: u64,
    /// The logged-in user as the connection opened, with the role it has outside the room's
    /// moderator list (`owner`, `admin`, `streamer`, `viewer`); none for a play token.
    pub sender: Option<Sender>,
    /// The user's presence entry (`id:name`), if logged in.
    pub presence: Option<String>,
    /// Where its frames go.
    pub outbox: Arc<Outbox>,
    /// Unix milliseconds until which the user may not send (0: not muted).
    pub muted_until: AtomicU64,
    /// Whether the user holds the room's moderator role, with a count of the changes heard
    /// from the room's channel: `changes << 1 | holds`. The count lets the role read from the
    /// database at the upgrade lose to a change that arrived meanwhile.
    moderator: AtomicU64,
}

/// What the connection knew of the moderator role before reading it from the database.
#[derive(Debug, Clone, Copy)]
pub struct RoleSeen(u64);

impl Member {
    /// A member for `sender` (none: a play token) sending to `outbox`.
    pub fn new(id: u64, sender: Option<Sender>, outbox: Arc<Outbox>) -> Self {
        let presence = sender.as_ref().map(|sender| {
            PresentUser {
                id: sender.id,
                name: sender.name.clone(),
            }
            .to_member()
        });
        Self {
            id,
            sender,
            presence,
            outbox,
            muted_until: AtomicU64::new(0),
            moderator: AtomicU64::new(0),
        }
    }

    /// The logged-in user's id.
    pub fn user(&self) -> Option<i64> {
        self.sender.as_ref().map(|sender| sender.id)
    }

    /// Whether the user holds the room's moderator role now.
    pub fn is_moderator(&self) -> bool {
        self.moderator.load(Ordering::Acquire) & 1 == 1
    }

    /// The user as their messages show them now: `moderator` while they hold the role (the
    /// owner stays `owner`).
    pub fn current_sender(&self) -> Option<Sender> {
        let mut sender = self.sender.clone()?;
        if self.is_moderator() && sender.role != "owner" {
            sender.role = "moderator".to_owned();
        }
        Some(sender)
    }

    /// The state of the role before it is read from the database.
    pub fn role_seen(&self) -> RoleSeen {
        RoleSeen(self.moderator.load(Ordering::Acquire))
    }

    /// Sets the role as the database had it, unless a change arrived since `seen` (that
    /// change is newer than what was read).
    pub fn set_moderator_from_db(&self, seen: RoleSeen, holds: bool) {
        let read = (seen.0 & !1) | u64::from(holds);
        let _ = self
            .moderator
            .compare_exchange(seen.0, read, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Applies a grant or revocation heard from the room's channel; when the role the
    /// client sees changes, it gets a `role` frame.
    pub fn set_moderator(&self, holds: bool) {
        let before = self.current_sender();
        let _ = self
            .moderator
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |state| {
                Some(((state >> 1).wrapping_add(1) << 1) | u64::from(holds))
            });
        let after = self.current_sender();
        if let Some(user) = after
            .as_ref()
            .filter(|after| Some(*after) != before.as_ref())
        {
            self.outbox.push(Outgoing::direct(&Direct::Role { user }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member() -> Member {
        let sender = Sender {
            id: 7,
            name: "ann".to_owned(),
            role: "viewer".to_owned(),
        };
        Member::new(1, Some(sender), Arc::new(Outbox::new(1 << 16)))
    }

    #[test]
    fn a_change_heard_meanwhile_wins_over_the_database() {
        let member = member();
        let seen = member.role_seen();
        member.set_moderator(true);
        member.set_moderator_from_db(seen, false);
        assert!(member.is_moderator());
        assert_eq!(member.current_sender().unwrap().role, "moderator");
    }

    #[test]
    fn the_database_sets_the_role_when_nothing_changed() {
        let member = member();
        let seen = member.role_seen();
        member.set_moderator_from_db(seen, true);
        assert!(member.is_moderator());
        member.set_moderator(false);
        assert_eq!(member.current_sender().unwrap().role, "viewer");
    }
}
