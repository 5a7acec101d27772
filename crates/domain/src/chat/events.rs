//! What happened, as the rest of the system is told: the events that flow
//! through the [`Broadcaster`](super::ports::Broadcaster) port after the
//! fact (a message is announced only once it is committed, a cursor only
//! once it moved). Each socket encodes them for its own protocol.

use chrono::{DateTime, Utc};

use super::models::{ChatId, ChatSummary, DirectMessage};
use super::receipts::{CursorKind, Seq};
use crate::user::UserId;

/// Which connection submitted a message, so that connection can be told
/// with an acknowledgement rather than a copy. Opaque to the domain: the
/// delivery layer numbers its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Origin(pub u64);

#[derive(Debug, Clone, PartialEq)]
pub enum ChatEvent {
    /// A message was committed.
    MessageStored {
        message: DirectMessage,
        /// The chat's two users: whose sockets hear of it.
        participants: [UserId; 2],
        origin: Option<Origin>,
    },
    /// A chat was created (not on a repeated create of an existing one):
    /// one view per participant.
    ChatCreated { views: Box<[ChatSummary; 2]> },
    /// One participant's cursor moved forward.
    CursorMoved {
        chat_id: ChatId,
        participants: [UserId; 2],
        user_id: UserId,
        kind: CursorKind,
        up_to: Seq,
    },
    /// `user_id` started or stopped typing in `chat_id`; only `recipient`
    /// (the other participant) hears of it. Never stored.
    Typing {
        chat_id: ChatId,
        user_id: UserId,
        recipient: UserId,
        active: bool,
    },
    /// `user_id` came online or went offline; told to `recipients`, the
    /// users who share a chat with them. Never stored as an event.
    Presence {
        user_id: UserId,
        online: bool,
        last_seen: Option<DateTime<Utc>>,
        recipients: Vec<UserId>,
    },
}

impl ChatEvent {
    /// Typing and presence may be dropped when a socket's queue is filling
    /// up: they are superseded by the next one and never replayed. Every
    /// other event must reach the socket, or the socket must be closed.
    pub fn is_ephemeral(&self) -> bool {
        matches!(self, Self::Typing { .. } | Self::Presence { .. })
    }
}
