//! Direct chats and messages.

use std::fmt;

use chrono::{DateTime, Utc};

use super::receipts::{Cursors, Seq};
use crate::user::{User, UserId};

/// The database id of a direct chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChatId(i64);

impl ChatId {
    pub const fn new(id: i64) -> Self {
        Self(id)
    }

    pub const fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for ChatId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The database id of a message. Ids grow with insertion order within a
/// chat, so "after message N" is a keyset position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(i64);

impl MessageId {
    pub const fn new(id: i64) -> Self {
        Self(id)
    }

    pub const fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The most characters (Unicode scalar values) a message body may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageLimit(usize);

impl MessageLimit {
    pub const DEFAULT: Self = Self(4096);

    /// A limit of zero would refuse every message, so it is not a limit.
    pub const fn new(max_chars: usize) -> Option<Self> {
        if max_chars == 0 {
            None
        } else {
            Some(Self(max_chars))
        }
    }

    pub const fn max_chars(self) -> usize {
        self.0
    }
}

impl Default for MessageLimit {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The text of a message as the sender wrote it: non-empty, within the limit
/// and free of NUL characters (PostgreSQL cannot store them in text, and no
/// backend should hold what another refuses); stored and returned byte for
/// byte (no trimming, no normalisation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageBody(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageBodyError {
    #[error("message body may not be empty")]
    Empty,
    #[error("message body may be at most {max} characters long (got {actual})")]
    TooLong { max: usize, actual: usize },
    #[error("message body may not contain the NUL character (U+0000)")]
    ContainsNul,
}

impl MessageBody {
    pub fn parse(raw: &str, limit: MessageLimit) -> Result<Self, MessageBodyError> {
        if raw.is_empty() {
            return Err(MessageBodyError::Empty);
        }
        let actual = raw.chars().count();
        if actual > limit.max_chars() {
            return Err(MessageBodyError::TooLong {
                max: limit.max_chars(),
                actual,
            });
        }
        if raw.contains('\0') {
            return Err(MessageBodyError::ContainsNul);
        }
        Ok(Self(raw.to_owned()))
    }
}

impl AsRef<str> for MessageBody {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The two distinct users of a direct chat, ordered by id. A pair of the
/// same user twice cannot be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participants([User; 2]);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a direct chat needs two different users")]
pub struct SameUserError;

impl Participants {
    pub fn new(a: User, b: User) -> Result<Self, SameUserError> {
        if a.id == b.id {
            return Err(SameUserError);
        }
        Ok(if a.id < b.id {
            Self([a, b])
        } else {
            Self([b, a])
        })
    }

    /// Both users, lower id first.
    pub fn users(&self) -> &[User; 2] {
        &self.0
    }

    pub fn contains(&self, user: UserId) -> bool {
        self.0.iter().any(|u| u.id == user)
    }

    /// The participant who is not `me`, or `None` if `me` is not in the chat.
    pub fn other_than(&self, me: UserId) -> Option<&User> {
        match &self.0 {
            [a, b] if a.id == me => Some(b),
            [a, b] if b.id == me => Some(a),
            _ => None,
        }
    }
}

/// Two distinct user ids, lower first: the key that makes "one chat per
/// pair" a unique constraint in storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserPair {
    low: UserId,
    high: UserId,
}

impl UserPair {
    pub fn new(a: UserId, b: UserId) -> Result<Self, SameUserError> {
        match a.cmp(&b) {
            std::cmp::Ordering::Less => Ok(Self { low: a, high: b }),
            std::cmp::Ordering::Greater => Ok(Self { low: b, high: a }),
            std::cmp::Ordering::Equal => Err(SameUserError),
        }
    }

    pub fn low(self) -> UserId {
        self.low
    }

    pub fn high(self) -> UserId {
        self.high
    }
}

/// A conversation between exactly two users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectChat {
    pub id: ChatId,
    pub participants: Participants,
    pub created: DateTime<Utc>,
}

/// A message's key for safe retries: 1 to 64 characters, each printable
/// ASCII other than space (`!` to `~`). Chosen by the sending client; one
/// `(chat, sender, client_id)` is stored at most once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientIdError {
    #[error("client_id may not be empty")]
    Empty,
    #[error("client_id may be at most {max} characters long")]
    TooLong { max: usize },
    #[error("client_id may contain only printable ASCII without spaces ('!' to '~'), found {0:?}")]
    InvalidCharacter(char),
}

impl ClientId {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, ClientIdError> {
        if raw.is_empty() {
            return Err(ClientIdError::Empty);
        }
        if let Some(bad) = raw.chars().find(|c| !matches!(c, '!'..='~')) {
            return Err(ClientIdError::InvalidCharacter(bad));
        }
        // Only ASCII is left, so bytes are characters.
        if raw.len() > Self::MAX_CHARS {
            return Err(ClientIdError::TooLong {
                max: Self::MAX_CHARS,
            });
        }
        Ok(Self(raw.to_owned()))
    }
}

impl AsRef<str> for ClientId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A stored message. Whether it has been read is not a property of the
/// message but of the recipient's read cursor (see
/// [`ReadCursors::is_read`](super::receipts::ReadCursors::is_read)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectMessage {
    pub id: MessageId,
    pub chat_id: ChatId,
    /// Its place in the chat: 1 for the first message, then 2, 3, ...
    pub seq: Seq,
    pub sender: User,
    pub body: String,
    pub created: DateTime<Utc>,
    /// The sender's retry key, if it sent one (seed sockets do not).
    pub client_id: Option<ClientId>,
}

/// A chat as one of its participants (`viewer`) sees it: in the seed's chat
/// list, and in protocol v2's `hello` and `chat` events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatSummary {
    pub viewer: UserId,
    pub chat: DirectChat,
    pub last_message: Option<DirectMessage>,
    /// The chat's highest `seq` (0 without messages).
    pub head_seq: Seq,
    /// The viewer's own cursors.
    pub mine: Cursors,
    /// The other participant's cursors.
    pub theirs: Cursors,
    /// Messages from the other participant not yet read by the viewer.
    pub unread_count: u64,
    /// When the other participant was last seen online, if ever (stored
    /// when they go offline).
    pub other_last_seen: Option<DateTime<Utc>>,
}

impl ChatSummary {
    /// The participant who is not the viewer.
    pub fn other_user(&self) -> Option<&User> {
        self.chat.participants.other_than(self.viewer)
    }

    /// When the chat last changed: its last message, else its creation.
    pub fn last_activity(&self) -> DateTime<Utc> {
        self.last_message
            .as_ref()
            .map_or(self.chat.created, |message| message.created)
    }

    /// The chat list's order: most recent activity first, the newest chat
    /// first on a tie, so that the order is total.
    pub fn sort_by_activity(summaries: &mut [ChatSummary]) {
        summaries.sort_by_cached_key(|summary| {
            std::cmp::Reverse((summary.last_activity(), summary.chat.id))
        });
    }
}

/// What the message repository needs to store a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub chat_id: ChatId,
    pub sender: User,
    pub body: MessageBody,
    pub client_id: Option<ClientId>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user::Username;

    fn user(id: i64, name: &str) -> User {
        User {
            id: UserId::new(id),
            username: Username::parse(name).unwrap(),
        }
    }

    #[test]
    fn a_message_body_is_kept_exactly_as_sent() {
        let raw = "  hello\n\t<b>world</b> 👋  ";
        let body = MessageBody::parse(raw, MessageLimit::DEFAULT).unwrap();
        assert_eq!(body.as_ref(), raw);
    }

    #[test]
    fn an_empty_body_is_rejected() {
        assert_eq!(
            MessageBody::parse("", MessageLimit::DEFAULT),
            Err(MessageBodyError::Empty)
        );
    }

    #[test]
    fn a_nul_character_is_rejected_but_other_control_characters_are_kept() {
        assert_eq!(
            MessageBody::parse("a\0b", MessageLimit::DEFAULT),
            Err(MessageBodyError::ContainsNul)
        );
        assert!(MessageBody::parse("\u{1}\u{1f}\u{7f}", MessageLimit::DEFAULT).is_ok());
    }

    #[test]
    fn whitespace_is_content() {
        assert!(MessageBody::parse(" ", MessageLimit::DEFAULT).is_ok());
    }

    #[test]
    fn the_limit_counts_characters_not_bytes() {
        let limit = MessageLimit::new(4).unwrap();
        assert!(MessageBody::parse("😀😀😀😀", limit).is_ok());
        assert_eq!(
            MessageBody::parse("😀😀😀😀😀", limit),
            Err(MessageBodyError::TooLong { max: 4, actual: 5 })
        );
    }

    #[test]
    fn the_default_limit_is_4096_characters() {
        assert!(MessageBody::parse(&"x".repeat(4096), MessageLimit::DEFAULT).is_ok());
        assert!(MessageBody::parse(&"x".repeat(4097), MessageLimit::DEFAULT).is_err());
    }

    #[test]
    fn a_zero_limit_is_not_a_limit() {
        assert_eq!(MessageLimit::new(0), None);
    }

    #[test]
    fn participants_are_two_distinct_users_ordered_by_id() {
        let p = Participants::new(user(7, "bob"), user(3, "alice")).unwrap();
        assert_eq!(p.users()[0].id, UserId::new(3));
        assert_eq!(p.users()[1].id, UserId::new(7));
        assert_eq!(
            Participants::new(user(3, "alice"), user(3, "alice")),
            Err(SameUserError)
        );
    }

    #[test]
    fn the_other_participant_is_found_from_either_side() {
        let p = Participants::new(user(1, "alice"), user(2, "bob")).unwrap();
        assert_eq!(
            p.other_than(UserId::new(1)).map(|u| u.id),
            Some(UserId::new(2))
        );
        assert_eq!(
            p.other_than(UserId::new(2)).map(|u| u.id),
            Some(UserId::new(1))
        );
        assert_eq!(p.other_than(UserId::new(3)), None);
        assert!(p.contains(UserId::new(1)));
        assert!(!p.contains(UserId::new(3)));
    }

    #[test]
    fn a_user_pair_is_the_same_whichever_way_round() {
        let a = UserPair::new(UserId::new(5), UserId::new(2)).unwrap();
        let b = UserPair::new(UserId::new(2), UserId::new(5)).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.low(), UserId::new(2));
        assert_eq!(a.high(), UserId::new(5));
        assert_eq!(
            UserPair::new(UserId::new(2), UserId::new(2)),
            Err(SameUserError)
        );
    }

    #[test]
    fn a_client_id_is_one_to_64_printable_ascii_characters_without_space() {
        assert!(ClientId::parse("c-7f3a").is_ok());
        assert!(ClientId::parse("!").is_ok());
        assert!(ClientId::parse("~").is_ok());
        assert!(ClientId::parse(&"x".repeat(64)).is_ok());
        assert_eq!(
            ClientId::parse(&"x".repeat(65)),
            Err(ClientIdError::TooLong { max: 64 })
        );
        assert_eq!(ClientId::parse(""), Err(ClientIdError::Empty));
        assert_eq!(
            ClientId::parse("a b"),
            Err(ClientIdError::InvalidCharacter(' '))
        );
        assert_eq!(
            ClientId::parse("é"),
            Err(ClientIdError::InvalidCharacter('é'))
        );
        assert_eq!(
            ClientId::parse("a\u{7f}"),
            Err(ClientIdError::InvalidCharacter('\u{7f}'))
        );
    }
}
