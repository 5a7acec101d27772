//! Presence: who is online, across seed and v2 sockets and every device.
//!
//! Online means at least one socket of any kind. Coming online is
//! announced at once; going offline only after a grace period with no
//! socket (`CHAT_PRESENCE_GRACE`), so a page reload does not flap, and
//! `last_seen` is stored then. During the grace period the user still
//! counts as online.
//!
//! [`PresenceRegistry`] is the port sessions talk to; [`LocalPresence`]
//! keeps the state in this process. The announcing (which needs the
//! database: whom to tell, and `last_seen`) happens on the timers thread
//! (`timers.rs`), which takes the changes queued here.

use std::collections::HashMap;
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chat_domain::user::UserId;

/// Who is online. Sync and cheap: called from sessions and the hub.
pub trait PresenceRegistry: Send + Sync + 'static {
    /// A socket of `user` opened.
    fn socket_opened(&self, user: UserId);
    /// A socket of `user` closed.
    fn socket_closed(&self, user: UserId);
    /// At least one socket of `user` is open, or was within the grace
    /// period.
    fn is_online(&self, user: UserId) -> bool;
}

/// Holds one socket's place in the presence count; dropping it closes it.
pub struct PresenceGuard {
    registry: Arc<dyn PresenceRegistry>,
    user: UserId,
}

impl PresenceGuard {
    pub fn new(registry: Arc<dyn PresenceRegistry>, user: UserId) -> Self {
        registry.socket_opened(user);
        Self { registry, user }
    }
}

impl Drop for PresenceGuard {
    fn drop(&mut self) {
        self.registry.socket_closed(self.user);
    }
}

/// Presence in this process.
pub struct LocalPresence {
    grace: Duration,
    users: Mutex<HashMap<UserId, Entry>>,
    /// Users who came online, for the timers thread to announce in order.
    came_online: Mutex<Option<mpsc::Sender<UserId>>>,
}

struct Entry {
    sockets: usize,
    /// No socket since then; offline once the grace period has passed.
    idle_since: Option<Instant>,
}

impl LocalPresence {
    pub fn new(grace: Duration) -> Self {
        Self {
            grace,
            users: Mutex::new(HashMap::new()),
            came_online: Mutex::new(None),
        }
    }

    /// Where users who come online are sent from now on (the timers
    /// thread); before this they are not announced.
    pub fn announce_to(&self, came_online: mpsc::Sender<UserId>) {
        *self
            .came_online
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(came_online);
    }

    fn users(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, Entry>> {
        // Every update below is complete before the lock is released.
        self.users.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn announce_online(&self, user: UserId) {
        if let Some(came_online) = self
            .came_online
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            // Fails only once the timers thread is gone, at shutdown.
            let _ = came_online.send(user);
        }
    }

    /// The users whose grace period ran out by `now`: offline from now on,
    /// announced as such by the caller.
    pub fn expire(&self, now: Instant) -> Vec<UserId> {
        let mut gone = Vec::new();
        self.users().retain(|user, entry| {
            let expired = entry.sockets == 0
                && entry
                    .idle_since
                    .is_some_and(|since| now.saturating_duration_since(since) >= self.grace);
            if expired {
                gone.push(*user);
            }
            !expired
        });
        gone
    }

    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// Everyone online here (a socket open, or within the grace period):
    /// what a cluster's heartbeat tells the other instances.
    pub fn online_users(&self) -> Vec<UserId> {
        self.users().keys().copied().collect()
    }
}

impl PresenceRegistry for LocalPresence {
    fn socket_opened(&self, user: UserId) {
        let came_online = {
            let mut users = self.users();
            match users.get_mut(&user) {
                Some(entry) => {
                    entry.sockets += 1;
                    entry.idle_since = None;
                    false
                }
                None => {
                    users.insert(
                        user,
                        Entry {
                            sockets: 1,
                            idle_since: None,
                        },
                    );
                    true
                }
            }
        };
        if came_online {
            self.announce_online(user);
        }
    }

    fn socket_closed(&self, user: UserId) {
        if let Some(entry) = self.users().get_mut(&user) {
            entry.sockets = entry.sockets.saturating_sub(1);
            if entry.sockets == 0 {
                entry.idle_since = Some(Instant::now());
            }
        }
    }

    fn is_online(&self, user: UserId) -> bool {
        self.users().contains_key(&user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: UserId = UserId::new(1);

    fn presence(grace_ms: u64) -> (LocalPresence, mpsc::Receiver<UserId>) {
        let presence = LocalPresence::new(Duration::from_millis(grace_ms));
        let (changes, received) = mpsc::channel();
        presence.announce_to(changes);
        (presence, received)
    }

    #[test]
    fn the_first_socket_brings_a_user_online_and_later_ones_change_nothing() {
        let (presence, changes) = presence(1000);
        presence.socket_opened(ALICE);
        presence.socket_opened(ALICE);

        assert!(presence.is_online(ALICE));
        assert_eq!(changes.try_iter().collect::<Vec<_>>(), [ALICE]);
    }

    #[test]
    fn a_user_stays_online_through_the_grace_period_and_goes_offline_after_it() {
        let (presence, _changes) = presence(1000);
        presence.socket_opened(ALICE);
        presence.socket_closed(ALICE);
        let closed = Instant::now();

        assert!(presence.is_online(ALICE), "online during the grace period");
        assert!(presence
            .expire(closed + Duration::from_millis(500))
            .is_empty());
        assert_eq!(
            presence.expire(closed + Duration::from_millis(1001)),
            [ALICE]
        );
        assert!(!presence.is_online(ALICE));
    }

    #[test]
    fn a_reconnect_within_the_grace_period_announces_nothing() {
        let (presence, changes) = presence(1000);
        presence.socket_opened(ALICE);
        presence.socket_closed(ALICE);
        presence.socket_opened(ALICE);

        assert!(presence
            .expire(Instant::now() + Duration::from_secs(5))
            .is_empty());
        assert_eq!(changes.try_iter().count(), 1, "only the first online");
    }

    #[test]
    fn one_device_closing_leaves_the_user_online() {
        let (presence, _changes) = presence(0);
        presence.socket_opened(ALICE);
        presence.socket_opened(ALICE);
        presence.socket_closed(ALICE);

        assert!(presence
            .expire(Instant::now() + Duration::from_secs(1))
            .is_empty());
        assert!(presence.is_online(ALICE));
    }

    #[test]
    fn a_guard_counts_its_socket_for_its_life() {
        let presence = Arc::new(LocalPresence::new(Duration::ZERO));
        let guard = PresenceGuard::new(presence.clone(), ALICE);
        assert!(presence.is_online(ALICE));
        drop(guard);
        assert_eq!(
            presence.expire(Instant::now() + Duration::from_millis(1)),
            [ALICE]
        );
    }
}
