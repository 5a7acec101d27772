//! What the chat and message services need from the outside world.
//!
//! Repositories are blocking (Diesel); callers run them off the async
//! executor. The broadcaster must not block: it only enqueues.

#[cfg(doc)]
use super::receipts::Cursors;

use super::events::ChatEvent;
use super::models::{ChatId, ChatSummary, DirectChat, DirectMessage, NewMessage, UserPair};
use super::receipts::{CursorChange, CursorKind, ReadCursors, Seq};
use crate::error::RepositoryError;
use crate::user::UserId;

/// Whether `find_or_create_chat` made a new chat or found the existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Creation {
    Created,
    Existing,
}

#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait ChatRepository: Send + Sync + 'static {
    /// The one chat of this pair, created if there is none. Must be safe
    /// under concurrent calls for the same pair: exactly one chat results.
    fn find_or_create_chat(
        &self,
        pair: UserPair,
    ) -> Result<(DirectChat, Creation), RepositoryError>;

    fn find_chat(&self, id: ChatId) -> Result<Option<DirectChat>, RepositoryError>;

    /// Every chat `viewer` is in, most recent activity first (last message
    /// time, else creation time), in a number of statements that does not
    /// grow with the number of chats.
    fn chat_summaries(&self, viewer: UserId) -> Result<Vec<ChatSummary>, RepositoryError>;

    /// One chat as `viewer` sees it; `None` if it does not exist or `viewer`
    /// is not in it.
    fn chat_summary(
        &self,
        viewer: UserId,
        chat: ChatId,
    ) -> Result<Option<ChatSummary>, RepositoryError>;

    /// Every user who shares a chat with `user` (whom presence concerns),
    /// each once, in no particular order.
    fn chat_partners(&self, user: UserId) -> Result<Vec<UserId>, RepositoryError>;
}

/// What [`MessageRepository::insert_messages`] did with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// Stored now, with its new id and `seq`.
    New(DirectMessage),
    /// Not stored: a message with the same `(chat, sender, client_id)`
    /// already was (or came earlier in the same call). This is that one,
    /// whatever its body.
    Existing(DirectMessage),
}

/// Where a page of messages is anchored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageAnchor {
    /// The newest messages.
    Newest,
    /// The messages just before this `seq` (exclusive).
    Before(Seq),
    /// The messages just after this `seq` (exclusive).
    After(Seq),
}

/// How many messages one page may hold: 1 to [`PageLimit::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit(usize);

impl PageLimit {
    pub const MAX: Self = Self(200);
    pub const DEFAULT: Self = Self(50);

    pub const fn new(limit: usize) -> Option<Self> {
        if limit == 0 || limit > Self::MAX.0 {
            None
        } else {
            Some(Self(limit))
        }
    }

    pub const fn get(self) -> usize {
        self.0
    }
}

/// A page of a chat's messages, oldest first, and what lies around it.
/// Every `seq` on the page is at most `head_seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessagePage {
    pub messages: Vec<DirectMessage>,
    /// Messages with a smaller `seq` than any on the page exist (for an
    /// empty page: below its anchor).
    pub has_more_before: bool,
    /// Messages with a larger `seq` than any on the page exist.
    pub has_more_after: bool,
    pub head_seq: Seq,
    /// Both participants' read cursors when the page was read, for the
    /// seed's `is_read`.
    pub read_cursors: ReadCursors,
}

/// Messages of one chat wanted: the `seq`s in `(after, up_to]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub chat: ChatId,
    pub after: Seq,
    pub up_to: Seq,
}

/// What [`MessageRepository::read_gaps`] found of one gap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GapFill {
    pub chat: ChatId,
    pub participants: [UserId; 2],
    /// Oldest first, from `after + 1`: the gap's start, as far as it goes.
    pub messages: Vec<DirectMessage>,
}

#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait MessageRepository: Send + Sync + 'static {
    /// Stores the messages in one transaction and commits; the returned
    /// outcomes, one per message in the order given, are durable. All or
    /// none are stored. Within each chat, messages get the next `seq`s in
    /// the order given, in the same commit (dense: no gaps). A message
    /// whose `client_id` is already stored for its chat and sender is not
    /// stored again: its outcome is [`Inserted::Existing`]. One commit for
    /// many messages is what keeps durable writes fast.
    fn insert_messages(&self, messages: &[NewMessage]) -> Result<Vec<Inserted>, RepositoryError>;

    /// [`insert_messages`](Self::insert_messages), except that the messages
    /// of a chat another transaction is appending to right now are left
    /// out (`None`: not stored, try again) instead of waited for, unless the
    /// chat is in `wait_for`. Several instances share one database: their
    /// writers then overlap on the chats they do not share instead of
    /// taking turns on every chat. A store with one writer at a time stores
    /// everything, which is what this default does.
    fn insert_messages_skipping_busy(
        &self,
        messages: &[NewMessage],
        wait_for: &[ChatId],
    ) -> Result<Vec<Option<Inserted>>, RepositoryError> {
        let _ = wait_for;
        Ok(self
            .insert_messages(messages)?
            .into_iter()
            .map(Some)
            .collect())
    }

    /// Up to `limit` messages of `chat` around `anchor`, oldest first, in
    /// a number of statements that does not grow with the chat. A chat
    /// that does not exist is an error (callers hold an `OpenChat`).
    fn messages_page(
        &self,
        chat: ChatId,
        anchor: PageAnchor,
        limit: PageLimit,
    ) -> Result<MessagePage, RepositoryError>;

    /// The first messages of each gap, oldest first, at most `limit` of
    /// each: how an instance of a cluster fills the gaps of every chat it
    /// follows after a Redis outage. A gap with no message stored is
    /// missing from the answer. A database reads them in a number of
    /// statements that does not grow with the number of gaps; this
    /// default reads one page per gap.
    fn read_gaps(&self, gaps: &[Gap], limit: PageLimit) -> Result<Vec<GapFill>, RepositoryError> {
        let mut fills = Vec::new();
        for gap in gaps {
            let page = self.messages_page(gap.chat, PageAnchor::After(gap.after), limit)?;
            let messages: Vec<DirectMessage> = page
                .messages
                .into_iter()
                .filter(|m| m.seq <= gap.up_to)
                .collect();
            if !messages.is_empty() {
                fills.push(GapFill {
                    chat: gap.chat,
                    participants: page.read_cursors.participants(),
                    messages,
                });
            }
        }
        Ok(fills)
    }

    /// The `head_seq` of each of `chats` that has messages, in one
    /// statement: how an instance of a cluster checks that it has delivered
    /// everything (a chat missing from the answer has none; an unknown chat
    /// is not an error).
    fn heads(&self, chats: &[ChatId]) -> Result<Vec<(ChatId, Seq)>, RepositoryError>;

    /// Moves `user`'s cursor `kind` in `chat` toward `requested` by the
    /// rule of [`Cursors::advanced`], atomically: concurrent moves never
    /// leave a smaller value behind. The cursors returned are at most the
    /// `head_seq` returned with them. A user who is not a participant is an
    /// error (callers hold an `OpenChat`).
    fn move_cursor(
        &self,
        chat: ChatId,
        user: UserId,
        kind: CursorKind,
        requested: Seq,
    ) -> Result<CursorChange, RepositoryError>;
}

/// Fans committed events out to the live connections they concern. Must
/// not block for long: it only enqueues.
#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait Broadcaster: Send + Sync + 'static {
    fn publish(&self, event: ChatEvent);
}
