//! Sequence numbers and the read and delivery cursors: the one place where
//! "has this been read?" and "how does a cursor move?" are decided.
//!
//! Every chat numbers its messages 1, 2, 3, ... with no gaps (`seq`). A
//! cursor is a position in that sequence, from 0 (nothing) to the chat's
//! `head_seq`. `read_up_to = N` says that every message of the *other*
//! participant with `seq <= N` has been read by this participant; their own
//! messages need no reading. The repositories store the cursors and apply
//! [`Cursors::advanced`] inside their transactions; the seed's `is_read`
//! is [`ReadCursors::is_read`].

use std::fmt;

use crate::user::UserId;

/// A position in a chat's message sequence: 1 is the first message, 0 is
/// "before any message".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Seq(i64);

impl Seq {
    pub const ZERO: Self = Self(0);

    /// `None` for a negative number, which is no position.
    pub const fn new(seq: i64) -> Option<Self> {
        if seq < 0 {
            None
        } else {
            Some(Self(seq))
        }
    }

    pub const fn get(self) -> i64 {
        self.0
    }

    /// The position after this one.
    pub const fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }

    /// `n` positions further on.
    pub fn plus(self, n: u64) -> Self {
        Self(self.0.saturating_add(i64::try_from(n).unwrap_or(i64::MAX)))
    }

    /// `n` positions back, never below 0.
    pub fn minus(self, n: u64) -> Self {
        Self(
            self.0
                .saturating_sub(i64::try_from(n).unwrap_or(i64::MAX))
                .max(0),
        )
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Which of a participant's two cursors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CursorKind {
    /// Up to where the participant has read the other's messages.
    Read,
    /// Up to where the participant's devices have received them.
    Delivered,
}

/// One participant's two cursors in one chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cursors {
    pub read_up_to: Seq,
    pub delivered_up_to: Seq,
}

impl Cursors {
    /// The cursors after a request to move `kind` to `requested` in a chat
    /// whose highest `seq` is `head`:
    /// - a value above `head` is clamped to `head`;
    /// - cursors only move forward: a request to go back changes nothing;
    /// - reading implies delivery: moving the read cursor moves the
    ///   delivery cursor up to it if it is lower.
    pub fn advanced(self, kind: CursorKind, requested: Seq, head: Seq) -> Self {
        let target = requested.min(head);
        match kind {
            CursorKind::Read => Self {
                read_up_to: self.read_up_to.max(target),
                delivered_up_to: self.delivered_up_to.max(target),
            },
            CursorKind::Delivered => Self {
                read_up_to: self.read_up_to,
                delivered_up_to: self.delivered_up_to.max(target),
            },
        }
    }

    /// Which cursors differ from `before`, each with its new position, read
    /// first (the order they are announced in).
    pub fn moved_since(self, before: Self) -> Vec<(CursorKind, Seq)> {
        let mut moved = Vec::with_capacity(2);
        if self.read_up_to != before.read_up_to {
            moved.push((CursorKind::Read, self.read_up_to));
        }
        if self.delivered_up_to != before.delivered_up_to {
            moved.push((CursorKind::Delivered, self.delivered_up_to));
        }
        moved
    }
}

/// Both participants' read cursors of one chat: enough to say whether any
/// of its messages has been read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadCursors {
    cursors: [(UserId, Seq); 2],
}

impl ReadCursors {
    pub fn new(a: (UserId, Seq), b: (UserId, Seq)) -> Self {
        Self { cursors: [a, b] }
    }

    /// The chat's two participants.
    pub fn participants(&self) -> [UserId; 2] {
        [self.cursors[0].0, self.cursors[1].0]
    }

    /// The seed's `is_read`: a message is read when its `seq` is at most
    /// the read cursor of the participant who did not send it.
    pub fn is_read(&self, sender: UserId, seq: Seq) -> bool {
        self.cursors
            .iter()
            .find(|(user, _)| *user != sender)
            .is_some_and(|(_, cursor)| seq <= *cursor)
    }
}

/// Whether a message counts toward `viewer`'s `unread_count`: sent by the
/// other participant and above the viewer's read cursor. (The SQL
/// backends count the same thing with an index range; see `chats.rs`.)
pub fn is_unread_for(viewer: UserId, viewer_read_up_to: Seq, sender: UserId, seq: Seq) -> bool {
    sender != viewer && seq > viewer_read_up_to
}

/// The outcome of a request to move a cursor: both cursors before and
/// after, and what the caller's unread count is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorChange {
    pub before: Cursors,
    pub after: Cursors,
    pub head_seq: Seq,
    pub unread_count: u64,
}

impl CursorChange {
    /// The cursors that moved, read first.
    pub fn moved(&self) -> Vec<(CursorKind, Seq)> {
        self.after.moved_since(self.before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(n: i64) -> Seq {
        Seq::new(n).unwrap()
    }

    fn cursors(read: i64, delivered: i64) -> Cursors {
        Cursors {
            read_up_to: seq(read),
            delivered_up_to: seq(delivered),
        }
    }

    #[test]
    fn a_negative_seq_is_no_position() {
        assert_eq!(Seq::new(-1), None);
        assert_eq!(Seq::new(0), Some(Seq::ZERO));
    }

    #[test]
    fn a_cursor_moves_forward_and_never_back() {
        let start = cursors(5, 5);
        assert_eq!(
            start.advanced(CursorKind::Read, seq(7), seq(10)),
            cursors(7, 7)
        );
        assert_eq!(
            start.advanced(CursorKind::Read, seq(3), seq(10)),
            cursors(5, 5)
        );
        assert_eq!(
            start.advanced(CursorKind::Delivered, seq(2), seq(10)),
            cursors(5, 5)
        );
    }

    #[test]
    fn a_cursor_past_the_head_is_clamped_to_it() {
        assert_eq!(
            Cursors::default().advanced(CursorKind::Read, seq(1_000), seq(10)),
            cursors(10, 10)
        );
        assert_eq!(
            Cursors::default().advanced(CursorKind::Delivered, seq(i64::MAX), seq(0)),
            cursors(0, 0)
        );
    }

    #[test]
    fn reading_implies_delivery_but_delivery_not_reading() {
        assert_eq!(
            cursors(2, 8).advanced(CursorKind::Read, seq(5), seq(10)),
            cursors(5, 8)
        );
        assert_eq!(
            cursors(2, 3).advanced(CursorKind::Read, seq(5), seq(10)),
            cursors(5, 5)
        );
        assert_eq!(
            cursors(2, 3).advanced(CursorKind::Delivered, seq(9), seq(10)),
            cursors(2, 9)
        );
    }

    #[test]
    fn what_moved_is_listed_read_first() {
        let before = cursors(2, 3);
        assert_eq!(
            cursors(5, 5).moved_since(before),
            vec![(CursorKind::Read, seq(5)), (CursorKind::Delivered, seq(5))]
        );
        assert_eq!(
            cursors(2, 4).moved_since(before),
            vec![(CursorKind::Delivered, seq(4))]
        );
        assert!(before.moved_since(before).is_empty());
    }

    #[test]
    fn a_message_is_read_when_the_recipients_cursor_reaches_it() {
        let (alice, bob) = (UserId::new(1), UserId::new(2));
        let read = ReadCursors::new((alice, seq(3)), (bob, seq(7)));
        // Alice's messages are read by Bob (cursor 7).
        assert!(read.is_read(alice, seq(7)));
        assert!(!read.is_read(alice, seq(8)));
        // Bob's by Alice (cursor 3).
        assert!(read.is_read(bob, seq(3)));
        assert!(!read.is_read(bob, seq(4)));
    }

    #[test]
    fn only_the_other_participants_messages_above_the_cursor_are_unread() {
        let (me, other) = (UserId::new(1), UserId::new(2));
        assert!(is_unread_for(me, seq(3), other, seq(4)));
        assert!(!is_unread_for(me, seq(3), other, seq(3)));
        assert!(!is_unread_for(me, seq(0), me, seq(9)));
    }
}
