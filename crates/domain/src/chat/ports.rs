//! What the chat and message services need from the outside world.
//!
//! Repositories are blocking (Diesel); callers run them off the async
//! executor. The broadcaster must not block: it only enqueues.

use super::models::{
    ChatId, ChatSummary, DirectChat, DirectMessage, MessageId, NewMessage, UserPair,
};
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
}

#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait MessageRepository: Send + Sync + 'static {
    /// Stores the messages in one transaction and commits; the returned
    /// messages, in the order given, are durable. All or none are stored.
    /// One commit for many messages is what keeps durable writes fast.
    fn insert_messages(
        &self,
        messages: &[NewMessage],
    ) -> Result<Vec<DirectMessage>, RepositoryError>;

    /// Stores one message and commits; the returned message is durable.
    fn insert_message(&self, message: &NewMessage) -> Result<DirectMessage, RepositoryError> {
        self.insert_messages(std::slice::from_ref(message))?
            .pop()
            .ok_or_else(|| RepositoryError::unexpected("insert returned no message"))
    }

    /// Up to `limit` messages of `chat` with ids greater than `after`,
    /// oldest first.
    fn history_page(
        &self,
        chat: ChatId,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<DirectMessage>, RepositoryError>;

    /// Marks every message of `chat` up to and including `up_to` that
    /// `reader` did not send as read by `reader`. Never moves backwards.
    fn mark_read(
        &self,
        chat: ChatId,
        reader: UserId,
        up_to: MessageId,
    ) -> Result<(), RepositoryError>;
}

/// Fans a committed message out to every live connection of its chat.
#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait Broadcaster: Send + Sync + 'static {
    fn broadcast(&self, message: &DirectMessage);
}
