//! Per-connection and per-server limits on chat sockets.
//!
//! - [`ConnectionLimits`]: open sockets in total and per user. A handshake
//!   over either limit is refused before the upgrade (`503` for the server,
//!   `429` for the user); an admitted one holds a [`ConnectionPermit`] for
//!   its whole life, so the counts cannot drift whatever ends the session.
//! - [`MessageRate`]: a token bucket per connection. A message over the rate
//!   gets an error frame and is not stored; the connection stays open.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chat_domain::user::UserId;

use crate::error::ApiError;

#[derive(Clone)]
pub struct ConnectionLimits {
    inner: Arc<Counts>,
}

struct Counts {
    max_total: usize,
    max_per_user: usize,
    open: Mutex<OpenSockets>,
}

#[derive(Default)]
struct OpenSockets {
    total: usize,
    per_user: HashMap<UserId, usize>,
}

/// One admitted socket. Dropping it gives the place back.
pub struct ConnectionPermit {
    limits: ConnectionLimits,
    user: UserId,
}

impl ConnectionLimits {
    pub fn new(max_total: usize, max_per_user: usize) -> Self {
        Self {
            inner: Arc::new(Counts {
                max_total,
                max_per_user,
                open: Mutex::new(OpenSockets::default()),
            }),
        }
    }

    /// Admits one more socket for `user`, or says which limit it is over.
    pub fn admit(&self, user: UserId) -> Result<ConnectionPermit, ApiError> {
        let mut open = self.open();
        if open.total >= self.inner.max_total {
            return Err(ApiError::AtCapacity(format!(
                "the server has its maximum of {} open chat sockets; try again later",
                self.inner.max_total
            )));
        }
        let mine = open.per_user.entry(user).or_default();
        if *mine >= self.inner.max_per_user {
            return Err(ApiError::TooManyRequests(format!(
                "you already have {} open chat sockets, the most allowed; close one first",
                self.inner.max_per_user
            )));
        }
        *mine += 1;
        open.total += 1;
        Ok(ConnectionPermit {
            limits: self.clone(),
            user,
        })
    }

    /// Sockets open now, over all users.
    pub fn open_total(&self) -> usize {
        self.open().total
    }

    fn open(&self) -> std::sync::MutexGuard<'_, OpenSockets> {
        // Every update below is complete before the lock is released.
        self.inner
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut open = self.limits.open();
        open.total = open.total.saturating_sub(1);
        if let Some(mine) = open.per_user.get_mut(&self.user) {
            *mine = mine.saturating_sub(1);
            if *mine == 0 {
                open.per_user.remove(&self.user);
            }
        }
    }
}

/// Messages one connection may send: `per_second` on average, up to `burst`
/// at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

/// A token bucket: full at the start, one token per message, refilled at
/// `per_second`.
pub struct MessageRate {
    limit: RateLimit,
    tokens: f64,
    refilled_at: Instant,
}

impl MessageRate {
    pub fn new(limit: RateLimit, now: Instant) -> Self {
        Self {
            limit,
            tokens: f64::from(limit.burst),
            refilled_at: now,
        }
    }

    /// Whether the bucket would be full at `now`: then it is the same as a
    /// new one and need not be kept.
    fn is_full_at(&self, now: Instant) -> bool {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens + elapsed * self.limit.per_second >= f64::from(self.limit.burst)
    }

    /// Adds what the rate has refilled since the last look.
    fn refill(&mut self, now: Instant) {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens =
            (self.tokens + elapsed * self.limit.per_second).min(f64::from(self.limit.burst));
        self.refilled_at = now;
    }

    /// Takes a token for one message sent at `now`; `Err` with how long
    /// until the next token when the bucket is empty.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else if self.limit.per_second > 0.0 {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / self.limit.per_second,
            ))
        } else {
            Err(Duration::MAX)
        }
    }
}

/// The message rate of each user, shared by all of their sockets and
/// their REST sends: 256 sockets do not buy 256 times the rate. In a
/// cluster, several instances do not either: each keeps its own bucket per
/// user, counts what it admits, and the relay tells the other instances
/// every few tens of milliseconds, which take it from their buckets too
/// (`spent_elsewhere`). So all instances together admit what one would,
/// give or take what arrives in one such interval; while Redis is down,
/// each instance limits alone.
pub struct UserMessageRates {
    buckets: RatesByKey<UserId>,
    /// In a cluster: what was admitted here since the relay last told the
    /// others. `None` for a single instance.
    unshared: Option<Mutex<HashMap<UserId, u32>>>,
}

impl UserMessageRates {
    /// One instance: nothing to share.
    pub fn new(limit: RateLimit) -> Self {
        Self {
            buckets: RatesByKey::new(limit),
            unshared: None,
        }
    }

    /// One instance of a cluster: admitted sends are kept for the relay.
    pub fn shared(limit: RateLimit) -> Self {
        Self {
            buckets: RatesByKey::new(limit),
            unshared: Some(Mutex::new(HashMap::new())),
        }
    }

    /// Takes a token from `user`'s bucket for one message sent at `now`;
    /// `Err` with how long until the next token when it is empty.
    pub fn take(&self, user: UserId, now: Instant) -> Result<(), Duration> {
        self.buckets.take(user, now)?;
        if let Some(unshared) = &self.unshared {
            *unshared
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(user)
                .or_insert(0) += 1;
        }
        Ok(())
    }

    /// What was admitted here since the last call, for the other
    /// instances (empty for a single instance).
    pub fn take_unshared(&self) -> Vec<(UserId, u32)> {
        match &self.unshared {
            Some(unshared) => {
                std::mem::take(&mut *unshared.lock().unwrap_or_else(PoisonError::into_inner))
                    .into_iter()
                    .collect()
            }
            None => Vec::new(),
        }
    }

    /// `count` messages of `user` were admitted by another instance.
    pub fn spent_elsewhere(&self, user: UserId, count: u32, now: Instant) {
        self.buckets.debit(user, count, now);
    }

    /// Users whose bucket is remembered now.
    pub fn tracked_users(&self) -> usize {
        self.buckets.tracked_keys()
    }
}

/// A token bucket per key (a user, a username, an address), all with the
/// same limit. A key's bucket is forgotten once it has refilled (an idle
/// key's bucket is full anyway), so memory follows the active keys.
pub struct RatesByKey<K> {
    limit: RateLimit,
    buckets: Mutex<Buckets<K>>,
}

struct Buckets<K> {
    of_key: HashMap<K, MessageRate>,
    /// Forget full buckets when the map reaches this size; doubling it
    /// after each pass keeps the cost per take constant.
    prune_at: usize,
}

/// The map size below which full buckets are not looked for.
const PRUNE_FLOOR: usize = 1024;

impl<K: std::hash::Hash + Eq> RatesByKey<K> {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: Mutex::new(Buckets {
                of_key: HashMap::new(),
                prune_at: PRUNE_FLOOR,
            }),
        }
    }

    /// Takes a token from `key`'s bucket at `now`; `Err` with how long
    /// until the next token when it is empty.
    pub fn take(&self, key: K, now: Instant) -> Result<(), Duration> {
        // Every update below is complete before the lock is released.
        let mut buckets = self.buckets();
        if buckets.of_key.len() >= buckets.prune_at {
            buckets.of_key.retain(|_, bucket| !bucket.is_full_at(now));
            buckets.prune_at = (buckets.of_key.len() * 2).max(PRUNE_FLOOR);
        }
        buckets
            .of_key
            .entry(key)
            .or_insert_with(|| MessageRate::new(self.limit, now))
            .take(now)
    }

    /// Takes `count` tokens from `key`'s bucket at `now`, spent where this
    /// instance could not see (another instance of a cluster). The bucket
    /// may go below empty, down to minus its burst: the debt is waited off
    /// like any empty bucket.
    pub fn debit(&self, key: K, count: u32, now: Instant) {
        let mut buckets = self.buckets();
        let bucket = buckets
            .of_key
            .entry(key)
            .or_insert_with(|| MessageRate::new(self.limit, now));
        bucket.refill(now);
        let burst = f64::from(self.limit.burst);
        bucket.tokens = (bucket.tokens - f64::from(count)).max(-burst);
    }

    /// Puts back a token taken from `key`'s bucket (what it paid for did
    /// not count).
    pub fn give_back(&self, key: &K) {
        if let Some(bucket) = self.buckets().of_key.get_mut(key) {
            bucket.tokens = (bucket.tokens + 1.0).min(f64::from(self.limit.burst));
        }
    }

    /// Refills `key`'s bucket at once.
    pub fn forget(&self, key: &K) {
        self.buckets().of_key.remove(key);
    }

    /// Keys whose bucket is remembered now.
    pub fn tracked_keys(&self) -> usize {
        self.buckets().of_key.len()
    }

    fn buckets(&self) -> std::sync::MutexGuard<'_, Buckets<K>> {
        self.buckets.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::ResponseError as _;

    #[test]
    fn the_total_limit_refuses_with_503_and_frees_on_drop() {
        let limits = ConnectionLimits::new(2, 10);
        let a = limits.admit(UserId::new(1)).unwrap();
        let _b = limits.admit(UserId::new(2)).unwrap();

        let refused = limits.admit(UserId::new(3)).err().unwrap();
        assert_eq!(refused.status_code().as_u16(), 503);

        drop(a);
        assert_eq!(limits.open_total(), 1);
        assert!(limits.admit(UserId::new(3)).is_ok());
    }

    #[test]
    fn the_per_user_limit_refuses_with_429_and_spares_other_users() {
        let limits = ConnectionLimits::new(100, 2);
        let first = limits.admit(UserId::new(1)).unwrap();
        let _second = limits.admit(UserId::new(1)).unwrap();

        let refused = limits.admit(UserId::new(1)).err().unwrap();
        assert_eq!(refused.status_code().as_u16(), 429);
        assert!(limits.admit(UserId::new(2)).is_ok());

        drop(first);
        assert!(limits.admit(UserId::new(1)).is_ok());
    }

    #[test]
    fn counts_return_to_zero_after_many_admits_and_drops() {
        let limits = ConnectionLimits::new(1000, 1000);
        for round in 0..10 {
            let permits: Vec<_> = (0..100)
                .map(|i| limits.admit(UserId::new(i % 7 + round)).unwrap())
                .collect();
            assert_eq!(limits.open_total(), 100);
            drop(permits);
        }
        assert_eq!(limits.open_total(), 0);
        assert!(limits.open().per_user.is_empty());
    }

    #[test]
    fn a_full_bucket_allows_a_burst_then_refills_at_the_rate() {
        let start = Instant::now();
        let mut rate = MessageRate::new(
            RateLimit {
                per_second: 10.0,
                burst: 3,
            },
            start,
        );
        for _ in 0..3 {
            assert!(rate.take(start).is_ok());
        }
        let wait = rate.take(start).unwrap_err();
        assert!(wait <= Duration::from_millis(100), "{wait:?}");

        // 100 ms later exactly one more token has come.
        let later = start + Duration::from_millis(100);
        assert!(rate.take(later).is_ok());
        assert!(rate.take(later).is_err());

        // A long pause refills to the burst, not beyond.
        let much_later = later + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(rate.take(much_later).is_ok());
        }
        assert!(rate.take(much_later).is_err());
    }

    #[test]
    fn a_users_sockets_share_one_bucket_and_other_users_have_their_own() {
        let rates = UserMessageRates::new(RateLimit {
            per_second: 1.0,
            burst: 3,
        });
        let now = Instant::now();
        let (alice, bob) = (UserId::new(1), UserId::new(2));
        // Three "sockets" of alice's, one message each, then a fourth.
        for _ in 0..3 {
            assert!(rates.take(alice, now).is_ok());
        }
        let wait = rates.take(alice, now).unwrap_err();
        assert!(wait <= Duration::from_secs(1) && wait > Duration::ZERO);
        assert!(rates.take(bob, now).is_ok());
        assert!(rates.take(alice, now + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn full_buckets_are_forgotten_so_memory_follows_active_senders() {
        let rates = UserMessageRates::new(RateLimit {
            per_second: 10.0,
            burst: 10,
        });
        let start = Instant::now();
        for id in 0..5000 {
            rates.take(UserId::new(id), start).unwrap();
        }
        assert_eq!(rates.tracked_users(), 5000);
        // Two seconds later the first 5,000 have refilled: when the map
        // next grows to its pruning size they are forgotten, and only the
        // users sending since are kept.
        let later = start + Duration::from_secs(2);
        for id in 5000..9000 {
            rates.take(UserId::new(id), later).unwrap();
        }
        assert!(rates.tracked_users() <= 4000, "{}", rates.tracked_users());
        // Forgetting a bucket never forgives a user who is over the limit.
        let busy = UserId::new(7);
        for _ in 0..10 {
            rates.take(busy, later).unwrap();
        }
        assert!(rates.take(busy, later).is_err());
    }

    #[test]
    fn two_instances_that_tell_each_other_share_one_budget() {
        let limit = RateLimit {
            per_second: 0.001,
            burst: 6,
        };
        let (one, two) = (
            UserMessageRates::shared(limit),
            UserMessageRates::shared(limit),
        );
        let (alice, now) = (UserId::new(1), Instant::now());
        for _ in 0..4 {
            one.take(alice, now).unwrap();
        }
        // The relay's round: what one admitted is spent on two.
        for (user, count) in one.take_unshared() {
            two.spent_elsewhere(user, count, now);
        }
        assert!(one.take_unshared().is_empty());
        two.take(alice, now).unwrap();
        two.take(alice, now).unwrap();
        assert!(two.take(alice, now).is_err());
    }

    #[test]
    fn a_debt_is_bounded_by_the_burst_and_waited_off_at_the_rate() {
        let limit = RateLimit {
            per_second: 10.0,
            burst: 5,
        };
        let rates = UserMessageRates::shared(limit);
        let (alice, now) = (UserId::new(1), Instant::now());
        rates.spent_elsewhere(alice, 1_000, now);
        // At most one burst below empty: 5 tokens of debt, then 1 to take,
        // at 10 per second.
        let wait = rates.take(alice, now).err().unwrap();
        assert!((550..=650).contains(&wait.as_millis()), "{wait:?}");
        assert!(rates.take(alice, now + Duration::from_millis(650)).is_ok());
    }

    #[test]
    fn a_single_instance_keeps_nothing_to_share() {
        let rates = UserMessageRates::new(RateLimit {
            per_second: 1.0,
            burst: 5,
        });
        rates.take(UserId::new(1), Instant::now()).unwrap();
        assert!(rates.take_unshared().is_empty());
    }
}
