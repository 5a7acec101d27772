//! Presence across the instances of a cluster.
//!
//! Each instance counts its own sockets ([`LocalPresence`]) and tells the
//! others over Redis who came online and who went offline here, plus, every
//! resync interval, a heartbeat listing everyone online here. From that each
//! instance keeps [`RemotePresence`]: per user, the instances that hold
//! them and until when (three heartbeats), so an instance that dies stops
//! counting within three intervals. A user is online if this instance or
//! any other holds them ([`ClusterPresence`]).
//!
//! Presence events are never relayed: each instance announces to its own
//! sockets what changes in its view of the cluster (the timers thread does,
//! as for one instance), so a user online on two instances who closes one
//! is not announced offline anywhere.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chat_domain::user::UserId;
use chrono::{DateTime, Utc};

use super::presence::{LocalPresence, PresenceRegistry};

/// A change in what the other instances hold, for the timers thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteChange {
    /// Another instance holds this user now, and none did before.
    CameOnline(UserId),
    /// No other instance holds this user any more; `last_seen` is the
    /// instance's word for it (or now, for an instance that stopped
    /// beating).
    WentOffline(UserId, DateTime<Utc>),
}

#[derive(Default)]
pub struct RemotePresence {
    state: Mutex<Remote>,
}

#[derive(Default)]
struct Remote {
    /// user -> instance -> counted until.
    users: HashMap<UserId, HashMap<String, Instant>>,
    changes: Vec<RemoteChange>,
}

impl RemotePresence {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Remote> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn is_online(&self, user: UserId) -> bool {
        let now = Instant::now();
        self.state()
            .users
            .get(&user)
            .is_some_and(|instances| instances.values().any(|until| *until > now))
    }

    /// `instance` holds `users` (a transition or a heartbeat), until `ttl`
    /// from now.
    pub fn online(&self, instance: &str, users: &[UserId], ttl: Duration) {
        let until = Instant::now() + ttl;
        let mut state = self.state();
        for &user in users {
            let instances = state.users.entry(user).or_default();
            let was_online = !instances.is_empty();
            instances.insert(instance.to_owned(), until);
            if !was_online {
                state.changes.push(RemoteChange::CameOnline(user));
            }
        }
    }

    /// `instance` no longer holds `user`.
    pub fn offline(&self, instance: &str, user: UserId, last_seen: DateTime<Utc>) {
        let mut state = self.state();
        let Some(instances) = state.users.get_mut(&user) else {
            return;
        };
        instances.remove(instance);
        if instances.is_empty() {
            state.users.remove(&user);
            state
                .changes
                .push(RemoteChange::WentOffline(user, last_seen));
        }
    }

    /// Forgets instances that stopped beating; returns what that changed,
    /// with everything else heard since the last call.
    pub fn take_changes(&self, now: Instant) -> Vec<RemoteChange> {
        let mut state = self.state();
        let mut gone = Vec::new();
        state.users.retain(|user, instances| {
            instances.retain(|_, until| *until > now);
            if instances.is_empty() {
                gone.push(*user);
            }
            !instances.is_empty()
        });
        let seen = Utc::now();
        let mut changes = std::mem::take(&mut state.changes);
        changes.extend(
            gone.into_iter()
                .map(|user| RemoteChange::WentOffline(user, seen)),
        );
        changes
    }
}

/// Online here or on another instance.
pub struct ClusterPresence {
    pub local: Arc<LocalPresence>,
    pub remote: Arc<RemotePresence>,
}

impl PresenceRegistry for ClusterPresence {
    fn socket_opened(&self, user: UserId) {
        self.local.socket_opened(user);
    }

    fn socket_closed(&self, user: UserId) {
        self.local.socket_closed(user);
    }

    fn is_online(&self, user: UserId) -> bool {
        self.local.is_online(user) || self.remote.is_online(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: UserId = UserId::new(1);
    const TTL: Duration = Duration::from_secs(60);

    #[test]
    fn the_first_instance_brings_a_user_online_and_the_last_takes_them_offline() {
        let remote = RemotePresence::new();
        let seen = Utc::now();

        remote.online("a", &[ALICE], TTL);
        remote.online("b", &[ALICE], TTL);
        remote.online("a", &[ALICE], TTL); // a heartbeat
        assert!(remote.is_online(ALICE));
        assert_eq!(
            remote.take_changes(Instant::now()),
            [RemoteChange::CameOnline(ALICE)]
        );

        remote.offline("a", ALICE, seen);
        assert!(remote.is_online(ALICE), "still on b");
        assert_eq!(remote.take_changes(Instant::now()), []);
        remote.offline("b", ALICE, seen);
        assert!(!remote.is_online(ALICE));
        assert_eq!(
            remote.take_changes(Instant::now()),
            [RemoteChange::WentOffline(ALICE, seen)]
        );
    }

    #[test]
    fn an_instance_that_stops_beating_stops_counting() {
        let remote = RemotePresence::new();
        remote.online("a", &[ALICE], Duration::from_millis(50));
        remote.take_changes(Instant::now());

        let later = Instant::now() + Duration::from_millis(60);
        let changes = remote.take_changes(later);

        assert!(
            matches!(changes.as_slice(), [RemoteChange::WentOffline(ALICE, _)]),
            "{changes:?}"
        );
        assert!(!remote.is_online(ALICE));
    }

    #[test]
    fn online_is_here_or_elsewhere() {
        let presence = ClusterPresence {
            local: Arc::new(LocalPresence::new(Duration::from_secs(1))),
            remote: Arc::new(RemotePresence::new()),
        };
        assert!(!presence.is_online(ALICE));
        presence.remote.online("b", &[ALICE], TTL);
        assert!(presence.is_online(ALICE));
        presence.remote.offline("b", ALICE, Utc::now());
        presence.socket_opened(ALICE);
        assert!(presence.is_online(ALICE));
    }
}
