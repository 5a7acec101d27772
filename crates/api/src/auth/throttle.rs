//! Login throttling: so that passwords cannot be guessed at the speed of
//! Argon2, each username and each client address may fail only so many
//! password checks per window.
//!
//! Every check (a login, a password change's current password) takes a
//! token from two buckets, the username's (by its key, so `ALICE` and
//! `alice` share one) and the address's, before any hashing; an empty
//! bucket answers `429` with `Retry-After` at no cost to the server. A
//! check that succeeds gives its tokens back (the username's bucket is
//! refilled), so only failures count, and a user who types their password
//! right is never held back by someone else's guessing from elsewhere.
//! An attacker spraying one password over many usernames meets the
//! address limit; many addresses guessing one account meet the username
//! limit (the account's owner is then throttled too, which is the price
//! of stopping it). Counted per instance, like the message rate.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use chat_domain::user::UsernameKey;

use crate::ws::{RateLimit, RatesByKey};

pub struct LoginThrottle {
    by_username: RatesByKey<UsernameKey>,
    by_address: RatesByKey<IpAddr>,
}

/// One password check let through; hand it back with
/// [`LoginThrottle::succeeded`] when the password was right.
#[must_use]
pub struct Attempt {
    username: UsernameKey,
    address: Option<IpAddr>,
}

impl LoginThrottle {
    /// `per_username` and `per_address` failures per `window`, each
    /// allowed at once.
    pub fn new(per_username: u32, per_address: u32, window: Duration) -> Self {
        let limit = |failures: u32| RateLimit {
            per_second: f64::from(failures) / window.as_secs_f64().max(1.0),
            burst: failures,
        };
        Self {
            by_username: RatesByKey::new(limit(per_username)),
            by_address: RatesByKey::new(limit(per_address)),
        }
    }

    /// Lets one password check for `username` from `address` through, or
    /// says how long until one may be tried.
    pub fn attempt(
        &self,
        username: &str,
        address: Option<IpAddr>,
        now: Instant,
    ) -> Result<Attempt, Duration> {
        let username = UsernameKey::of(username);
        let address = address.map(network_of);
        if let Some(address) = address {
            self.by_address.take(address, now)?;
        }
        if let Err(wait) = self.by_username.take(username.clone(), now) {
            if let Some(address) = &address {
                self.by_address.give_back(address);
            }
            return Err(wait);
        }
        Ok(Attempt { username, address })
    }

    /// The check could not be made (a server failure): it does not count.
    pub fn not_counted(&self, attempt: Attempt) {
        self.by_username.give_back(&attempt.username);
        if let Some(address) = &attempt.address {
            self.by_address.give_back(address);
        }
    }

    /// The password was right: the check does not count.
    pub fn succeeded(&self, attempt: Attempt) {
        self.by_username.forget(&attempt.username);
        if let Some(address) = &attempt.address {
            self.by_address.give_back(address);
        }
    }
}

/// What one client is counted as: its IPv4 address, or the /64 network of
/// its IPv6 address (one subscriber commonly holds a whole /64).
fn network_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(900);

    fn local() -> Option<IpAddr> {
        Some("127.0.0.1".parse().unwrap())
    }

    #[test]
    fn a_username_may_fail_its_allowance_then_waits() {
        let throttle = LoginThrottle::new(3, 100, WINDOW);
        let now = Instant::now();
        for _ in 0..3 {
            let _failed = throttle.attempt("alice", local(), now).unwrap();
        }
        let wait = throttle.attempt("ALICE", local(), now).err().unwrap();
        // One failure back every window / 3.
        assert!((299..=300).contains(&wait.as_secs()), "{wait:?}");
        assert!(throttle.attempt("bob", local(), now).is_ok());
        assert!(throttle.attempt("alice", local(), now + wait).is_ok());
    }

    #[test]
    fn successes_do_not_count() {
        let throttle = LoginThrottle::new(3, 3, WINDOW);
        let now = Instant::now();
        for _ in 0..100 {
            let attempt = throttle.attempt("alice", local(), now).unwrap();
            throttle.succeeded(attempt);
        }
        // A success refills the username's bucket.
        for _ in 0..2 {
            let _failed = throttle.attempt("alice", local(), now).unwrap();
        }
        let attempt = throttle.attempt("alice", local(), now).unwrap();
        throttle.succeeded(attempt);
        assert!(throttle.attempt("alice", local(), now).is_ok());
    }

    #[test]
    fn an_address_may_fail_its_allowance_over_many_usernames() {
        let throttle = LoginThrottle::new(3, 5, WINDOW);
        let now = Instant::now();
        for n in 0..5 {
            let _failed = throttle.attempt(&format!("user{n}"), local(), now).unwrap();
        }
        assert!(throttle.attempt("someone-else", local(), now).is_err());
        let elsewhere = Some("10.0.0.1".parse().unwrap());
        assert!(throttle.attempt("someone-else", elsewhere, now).is_ok());
    }

    #[test]
    fn a_refused_username_does_not_use_up_the_address() {
        let throttle = LoginThrottle::new(1, 2, WINDOW);
        let now = Instant::now();
        let _failed = throttle.attempt("alice", local(), now).unwrap();
        for _ in 0..10 {
            assert!(throttle.attempt("alice", local(), now).is_err());
        }
        assert!(throttle.attempt("bob", local(), now).is_ok());
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_64_network() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(network_of(a), network_of(b));
        assert_ne!(network_of(a), network_of(other));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(network_of(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
    }
}
