//! What a run drives: chats, each with its two participants' credentials.
//!
//! [`crate::setup`] builds a plan through the REST API; tests can build one
//! by hand and point the run at any WebSocket endpoint. Connections are
//! numbered `2k` (first participant of chat `k`) and `2k + 1` (second), so a
//! connection's peer is `c ^ 1`.

/// A user as the WebSocket handshake needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    pub user_id: i64,
    pub username: String,
    pub token: String,
}

/// One direct chat and its two participants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatPlan {
    pub id: i64,
    pub participants: [Participant; 2],
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub chats: Vec<ChatPlan>,
    /// Distinct users behind the chats.
    pub users: usize,
}

impl Plan {
    pub fn connections(&self) -> usize {
        self.chats.len() * 2
    }

    /// The participant behind connection `conn`.
    pub fn participant(&self, conn: usize) -> Option<(&ChatPlan, &Participant)> {
        let chat = self.chats.get(conn / 2)?;
        Some((chat, &chat.participants[conn % 2]))
    }
}

/// The peer of connection `conn` (the other participant of its chat).
pub fn peer_of(conn: u32) -> u32 {
    conn ^ 1
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{users} users make at most {max} distinct pairs; {chats} chats asked for")]
pub struct PairingError {
    pub users: usize,
    pub chats: usize,
    pub max: usize,
}

/// `chats` distinct pairs of user indexes (`0..users`), each user in about
/// the same number of chats. With at least two users per chat every chat
/// has its own two users; with fewer, users are shared across chats (a pair
/// of users has exactly one chat, so the pairs must differ).
pub fn pair_users(users: usize, chats: usize) -> Result<Vec<(usize, usize)>, PairingError> {
    let max = users.saturating_mul(users.saturating_sub(1)) / 2;
    if chats > max {
        return Err(PairingError { users, chats, max });
    }
    if users >= 2 * chats {
        return Ok((0..chats).map(|k| (2 * k, 2 * k + 1)).collect());
    }
    // Round by round, pair each user with the one `distance` further on
    // (modulo `users`): every round is a set of new pairs and adds two chats
    // to each user, so the load stays even. For even `users` the last
    // round (distance users/2) meets each pair twice; keep one.
    let mut pairs = Vec::with_capacity(chats);
    'rounds: for distance in 1..=users / 2 {
        for i in 0..users {
            let j = (i + distance) % users;
            if 2 * distance == users && j < i {
                continue;
            }
            if pairs.len() == chats {
                break 'rounds;
            }
            pairs.push((i.min(j), i.max(j)));
        }
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn check(users: usize, chats: usize) -> Vec<(usize, usize)> {
        let pairs = pair_users(users, chats).unwrap();
        assert_eq!(pairs.len(), chats);
        let distinct: HashSet<_> = pairs.iter().collect();
        assert_eq!(distinct.len(), chats, "pairs repeat for {users} users");
        for &(a, b) in &pairs {
            assert!(a < b && b < users, "({a}, {b})");
        }
        pairs
    }

    #[test]
    fn enough_users_give_each_chat_its_own_two() {
        assert_eq!(check(8, 4), vec![(0, 1), (2, 3), (4, 5), (6, 7)]);
    }

    #[test]
    fn few_users_are_shared_evenly_in_distinct_pairs() {
        let pairs = check(101, 5000);
        let mut per_user = vec![0; 101];
        for (a, b) in pairs {
            per_user[a] += 1;
            per_user[b] += 1;
        }
        let (min, max) = (per_user.iter().min(), per_user.iter().max());
        assert!(max.unwrap() - min.unwrap() <= 2, "{min:?}..{max:?}");
    }

    #[test]
    fn every_pair_can_be_used() {
        check(100, 4950);
        check(7, 21);
        check(2, 1);
    }

    #[test]
    fn too_few_users_are_refused() {
        assert_eq!(
            pair_users(100, 4951),
            Err(PairingError {
                users: 100,
                chats: 4951,
                max: 4950
            })
        );
        assert!(pair_users(1, 1).is_err());
    }

    #[test]
    fn peers_are_the_two_connections_of_a_chat() {
        assert_eq!(
            (peer_of(0), peer_of(1), peer_of(6), peer_of(7)),
            (1, 0, 7, 6)
        );
    }
}
