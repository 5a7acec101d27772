//! The chat rules: who may talk to whom, who may read and write a chat,
//! and the order "store, then tell everyone".

use std::sync::{Arc, Mutex, PoisonError};

use super::models::{
    ChatId, ChatSummary, DirectChat, DirectMessage, MessageBody, MessageBodyError, MessageId,
    MessageLimit, NewMessage, UserPair,
};
use super::ports::{Broadcaster, ChatRepository, Creation, MessageRepository};
use crate::error::RepositoryError;
use crate::user::{User, UserId, UserRepository};

#[derive(Debug, thiserror::Error)]
pub enum CreateChatError {
    #[error("you cannot start a chat with yourself")]
    SameUser,
    #[error("user {0} does not exist")]
    UnknownUser(UserId),
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

#[derive(Debug, thiserror::Error)]
pub enum OpenChatError {
    #[error("chat not found")]
    NotFound,
    #[error("you are not a participant of this chat")]
    NotParticipant,
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// The outcome of a create request: the chat as the requester sees it, and
/// whether it is new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedChat {
    pub summary: ChatSummary,
    pub creation: Creation,
}

/// Proof that `member` is a participant of `chat`. Only
/// [`ChatService::open_chat`] makes one, so every read or write of a chat's
/// messages has passed the participant check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenChat {
    chat: DirectChat,
    member: User,
}

impl OpenChat {
    pub fn member(&self) -> &User {
        &self.member
    }

    pub fn id(&self) -> ChatId {
        self.chat.id
    }
}

/// Chat lists, chat creation and the participant check.
#[derive(Clone)]
pub struct ChatService {
    users: Arc<dyn UserRepository>,
    chats: Arc<dyn ChatRepository>,
}

impl ChatService {
    pub fn new(users: Arc<dyn UserRepository>, chats: Arc<dyn ChatRepository>) -> Self {
        Self { users, chats }
    }

    /// Finds or creates the chat between `me` and `other`.
    pub fn create_chat(&self, me: &User, other: UserId) -> Result<CreatedChat, CreateChatError> {
        let pair = UserPair::new(me.id, other).map_err(|_| CreateChatError::SameUser)?;
        if self.users.find_user(other)?.is_none() {
            return Err(CreateChatError::UnknownUser(other));
        }
        let (chat, creation) = self.chats.find_or_create_chat(pair)?;
        let summary = match creation {
            Creation::Created => ChatSummary {
                chat,
                last_message: None,
                unread_count: 0,
            },
            Creation::Existing => self.chats.chat_summary(me.id, chat.id)?.ok_or_else(|| {
                RepositoryError::unexpected(format!("chat {} vanished after lookup", chat.id))
            })?,
        };
        Ok(CreatedChat { summary, creation })
    }

    /// Every chat `me` is in, most recent activity first.
    pub fn list_chats(&self, me: &User) -> Result<Vec<ChatSummary>, RepositoryError> {
        self.chats.chat_summaries(me.id)
    }

    /// Checks that the chat exists and that `me` is in it.
    pub fn open_chat(&self, me: User, chat: ChatId) -> Result<OpenChat, OpenChatError> {
        let chat = self.chats.find_chat(chat)?.ok_or(OpenChatError::NotFound)?;
        if !chat.participants.contains(me.id) {
            return Err(OpenChatError::NotParticipant);
        }
        Ok(OpenChat { chat, member: me })
    }
}

/// Sending, history and read marking, for participants only.
#[derive(Clone)]
pub struct MessageService {
    messages: Arc<dyn MessageRepository>,
    broadcaster: Arc<dyn Broadcaster>,
    limit: MessageLimit,
    /// Batches are stored and broadcast one at a time, so every participant
    /// receives a chat's messages in the same order, the order of their ids
    /// (the order history replays). Uncontended in the server, where one
    /// writer thread sends every batch.
    send_order: Arc<Mutex<()>>,
}

impl MessageService {
    pub fn new(
        messages: Arc<dyn MessageRepository>,
        broadcaster: Arc<dyn Broadcaster>,
        limit: MessageLimit,
    ) -> Self {
        Self {
            messages,
            broadcaster,
            limit,
            send_order: Arc::new(Mutex::new(())),
        }
    }

    /// Checks a body against the rules (non-empty, within the limit, no NUL).
    pub fn validate(&self, body: &str) -> Result<MessageBody, MessageBodyError> {
        MessageBody::parse(body, self.limit)
    }

    /// Stores valid messages (see [`validate`](Self::validate)), possibly of
    /// many chats, in one transaction; only once committed broadcasts each,
    /// in order, to every connection of its chat (the sender's own
    /// included: that copy is its acknowledgement). All or none are stored.
    pub fn send_batch(
        &self,
        batch: Vec<(&OpenChat, MessageBody)>,
    ) -> Result<Vec<DirectMessage>, RepositoryError> {
        let new_messages: Vec<NewMessage> = batch
            .into_iter()
            .map(|(chat, body)| NewMessage {
                chat_id: chat.id(),
                sender: chat.member.clone(),
                body,
            })
            .collect();
        // The lock guards no data, so a poisoned one is as good as any.
        let _in_order = self
            .send_order
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let stored = self.messages.insert_messages(&new_messages)?;
        for message in &stored {
            self.broadcaster.broadcast(message);
        }
        Ok(stored)
    }

    /// The next page of history, oldest first, after `after`.
    pub fn history_page(
        &self,
        chat: &OpenChat,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<DirectMessage>, RepositoryError> {
        self.messages.history_page(chat.id(), after, limit)
    }

    /// Marks the other participant's messages up to `up_to` as read by the
    /// member who opened the chat.
    pub fn mark_read(&self, chat: &OpenChat, up_to: MessageId) -> Result<(), RepositoryError> {
        self.messages.mark_read(chat.id(), chat.member.id, up_to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::models::Participants;
    use crate::chat::ports::{MockBroadcaster, MockChatRepository, MockMessageRepository};
    use crate::user::{MockUserRepository, Username};
    use chrono::{TimeZone, Utc};
    use mockall::predicate::eq;
    use mockall::Sequence;

    fn user(id: i64, name: &str) -> User {
        User {
            id: UserId::new(id),
            username: Username::parse(name).unwrap(),
        }
    }

    fn alice() -> User {
        user(1, "alice")
    }

    fn bob() -> User {
        user(2, "bob")
    }

    fn chat_of(id: i64, a: User, b: User) -> DirectChat {
        DirectChat {
            id: ChatId::new(id),
            participants: Participants::new(a, b).unwrap(),
            created: Utc.with_ymd_and_hms(2025, 5, 1, 12, 0, 0).unwrap(),
        }
    }

    fn message(id: i64, sender: User, body: &str) -> DirectMessage {
        DirectMessage {
            id: MessageId::new(id),
            chat_id: ChatId::new(10),
            sender,
            body: body.to_owned(),
            created: Utc.with_ymd_and_hms(2025, 5, 1, 12, 5, 0).unwrap(),
            is_read: false,
        }
    }

    fn message_service(
        messages: MockMessageRepository,
        broadcaster: MockBroadcaster,
        limit: MessageLimit,
    ) -> MessageService {
        MessageService::new(Arc::new(messages), Arc::new(broadcaster), limit)
    }

    fn chat_service(users: MockUserRepository, chats: MockChatRepository) -> ChatService {
        ChatService::new(Arc::new(users), Arc::new(chats))
    }

    fn open_chat_as(member: User) -> OpenChat {
        let mut chats = MockChatRepository::new();
        chats
            .expect_find_chat()
            .returning(|_| Ok(Some(chat_of(10, alice(), bob()))));
        chat_service(MockUserRepository::new(), chats)
            .open_chat(member, ChatId::new(10))
            .unwrap()
    }

    #[test]
    fn creating_a_chat_with_yourself_is_rejected() {
        let service = chat_service(MockUserRepository::new(), MockChatRepository::new());
        let result = service.create_chat(&alice(), alice().id);
        assert!(matches!(result, Err(CreateChatError::SameUser)));
    }

    #[test]
    fn creating_a_chat_with_an_unknown_user_is_rejected() {
        let mut users = MockUserRepository::new();
        users.expect_find_user().returning(|_| Ok(None));
        let service = chat_service(users, MockChatRepository::new());

        let result = service.create_chat(&alice(), UserId::new(42));

        assert!(matches!(result, Err(CreateChatError::UnknownUser(id)) if id == UserId::new(42)));
    }

    #[test]
    fn a_new_chat_has_no_messages_and_nothing_unread() {
        let mut users = MockUserRepository::new();
        users.expect_find_user().returning(|_| Ok(Some(bob())));
        let mut chats = MockChatRepository::new();
        chats
            .expect_find_or_create_chat()
            .withf(|pair| pair.low() == UserId::new(1) && pair.high() == UserId::new(2))
            .returning(|_| Ok((chat_of(10, alice(), bob()), Creation::Created)));
        let service = chat_service(users, chats);

        let created = service.create_chat(&alice(), bob().id).unwrap();

        assert_eq!(created.creation, Creation::Created);
        assert_eq!(created.summary.last_message, None);
        assert_eq!(created.summary.unread_count, 0);
        assert_eq!(created.summary.chat.id, ChatId::new(10));
    }

    #[test]
    fn creating_an_existing_chat_returns_it_as_the_requester_sees_it() {
        let mut users = MockUserRepository::new();
        users.expect_find_user().returning(|_| Ok(Some(alice())));
        let mut chats = MockChatRepository::new();
        chats
            .expect_find_or_create_chat()
            .returning(|_| Ok((chat_of(10, alice(), bob()), Creation::Existing)));
        chats
            .expect_chat_summary()
            .with(eq(UserId::new(2)), eq(ChatId::new(10)))
            .returning(|_, _| {
                Ok(Some(ChatSummary {
                    chat: chat_of(10, alice(), bob()),
                    last_message: Some(message(5, alice(), "hi")),
                    unread_count: 3,
                }))
            });
        let service = chat_service(users, chats);

        let created = service.create_chat(&bob(), alice().id).unwrap();

        assert_eq!(created.creation, Creation::Existing);
        assert_eq!(created.summary.unread_count, 3);
        assert_eq!(
            created.summary.last_message.map(|m| m.body),
            Some("hi".to_owned())
        );
    }

    #[test]
    fn opening_a_missing_chat_is_not_found() {
        let mut chats = MockChatRepository::new();
        chats.expect_find_chat().returning(|_| Ok(None));
        let service = chat_service(MockUserRepository::new(), chats);

        let result = service.open_chat(alice(), ChatId::new(99));

        assert!(matches!(result, Err(OpenChatError::NotFound)));
    }

    #[test]
    fn only_participants_may_open_a_chat() {
        let mut chats = MockChatRepository::new();
        chats
            .expect_find_chat()
            .returning(|_| Ok(Some(chat_of(10, alice(), bob()))));
        let service = chat_service(MockUserRepository::new(), chats);

        let mallory = service.open_chat(user(3, "mallory"), ChatId::new(10));
        let alice_opens = service.open_chat(alice(), ChatId::new(10));

        assert!(matches!(mallory, Err(OpenChatError::NotParticipant)));
        assert_eq!(alice_opens.unwrap().member(), &alice());
    }

    #[test]
    fn a_message_is_stored_before_it_is_broadcast() {
        let mut seq = Sequence::new();
        let mut messages = MockMessageRepository::new();
        messages
            .expect_insert_messages()
            .withf(|m| {
                m.len() == 1
                    && m[0].chat_id == ChatId::new(10)
                    && m[0].sender == alice()
                    && m[0].body.as_ref() == "hello"
            })
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_| Ok(vec![message(5, alice(), "hello")]));
        let mut broadcaster = MockBroadcaster::new();
        broadcaster
            .expect_broadcast()
            .withf(|m| m.id == MessageId::new(5))
            .times(1)
            .in_sequence(&mut seq)
            .return_const(());
        let service = message_service(messages, broadcaster, MessageLimit::DEFAULT);

        let chat = open_chat_as(alice());
        let body = service.validate("hello").unwrap();
        let sent = service.send_batch(vec![(&chat, body)]).unwrap();

        assert_eq!(
            sent.iter().map(|m| m.id).collect::<Vec<_>>(),
            [MessageId::new(5)]
        );
    }

    #[test]
    fn a_message_that_fails_to_store_is_never_broadcast() {
        let mut messages = MockMessageRepository::new();
        messages
            .expect_insert_messages()
            .returning(|_| Err(RepositoryError::unavailable("down")));
        let mut broadcaster = MockBroadcaster::new();
        broadcaster.expect_broadcast().never();
        let service = message_service(messages, broadcaster, MessageLimit::DEFAULT);

        let chat = open_chat_as(alice());
        let result = service.send_batch(vec![(&chat, service.validate("hello").unwrap())]);

        assert!(matches!(result, Err(RepositoryError::Unavailable(_))));
    }

    #[test]
    fn a_batch_is_stored_in_one_call_then_broadcast_in_order() {
        let mut seq = Sequence::new();
        let mut messages = MockMessageRepository::new();
        messages
            .expect_insert_messages()
            .withf(|m| {
                m.iter()
                    .map(|m| m.body.as_ref())
                    .eq(["one", "two", "three"])
            })
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_| {
                Ok(vec![
                    message(1, alice(), "one"),
                    message(2, bob(), "two"),
                    message(3, alice(), "three"),
                ])
            });
        let broadcast = Arc::new(Mutex::new(Vec::new()));
        let mut broadcaster = MockBroadcaster::new();
        let seen = broadcast.clone();
        broadcaster
            .expect_broadcast()
            .times(3)
            .in_sequence(&mut seq)
            .returning(move |m| seen.lock().unwrap().push(m.id.get()));
        let service = message_service(messages, broadcaster, MessageLimit::DEFAULT);
        let body = |b: &str| service.validate(b).unwrap();
        let (as_alice, as_bob) = (open_chat_as(alice()), open_chat_as(bob()));
        let batch = vec![
            (&as_alice, body("one")),
            (&as_bob, body("two")),
            (&as_alice, body("three")),
        ];

        let stored = service.send_batch(batch).unwrap();

        assert_eq!(stored.len(), 3);
        assert_eq!(*broadcast.lock().unwrap(), vec![1, 2, 3]);
    }

    #[test]
    fn a_failed_batch_broadcasts_nothing() {
        let mut messages = MockMessageRepository::new();
        messages
            .expect_insert_messages()
            .returning(|_| Err(RepositoryError::unexpected("constraint")));
        let mut broadcaster = MockBroadcaster::new();
        broadcaster.expect_broadcast().never();
        let service = message_service(messages, broadcaster, MessageLimit::DEFAULT);
        let (as_alice, as_bob) = (open_chat_as(alice()), open_chat_as(bob()));
        let batch = vec![
            (&as_alice, service.validate("a").unwrap()),
            (&as_bob, service.validate("b").unwrap()),
        ];

        assert!(service.send_batch(batch).is_err());
    }

    #[test]
    fn invalid_bodies_are_refused_by_the_limit_in_force() {
        // send_batch takes only MessageBody values, so a body refused here
        // can be neither stored nor broadcast.
        let service = message_service(
            MockMessageRepository::new(),
            MockBroadcaster::new(),
            MessageLimit::new(5).unwrap(),
        );

        assert_eq!(service.validate(""), Err(MessageBodyError::Empty));
        assert_eq!(
            service.validate("123456"),
            Err(MessageBodyError::TooLong { max: 5, actual: 6 })
        );
        assert_eq!(service.validate("a\0"), Err(MessageBodyError::ContainsNul));
        assert_eq!(
            service.validate("12345").map(|b| b.as_ref().to_owned()),
            Ok("12345".to_owned())
        );
    }

    #[test]
    fn read_marking_is_done_for_the_member_who_opened_the_chat() {
        let mut messages = MockMessageRepository::new();
        messages
            .expect_mark_read()
            .with(
                eq(ChatId::new(10)),
                eq(UserId::new(2)),
                eq(MessageId::new(7)),
            )
            .times(1)
            .returning(|_, _, _| Ok(()));
        let service = message_service(messages, MockBroadcaster::new(), MessageLimit::DEFAULT);

        service
            .mark_read(&open_chat_as(bob()), MessageId::new(7))
            .unwrap();
    }

    #[test]
    fn history_is_read_from_the_opened_chat() {
        let mut messages = MockMessageRepository::new();
        messages
            .expect_history_page()
            .with(eq(ChatId::new(10)), eq(Some(MessageId::new(3))), eq(50))
            .returning(|_, _, _| Ok(vec![message(4, bob(), "later")]));
        let service = message_service(messages, MockBroadcaster::new(), MessageLimit::DEFAULT);

        let page = service
            .history_page(&open_chat_as(alice()), Some(MessageId::new(3)), 50)
            .unwrap();

        assert_eq!(page.len(), 1);
        assert_eq!(page[0].body, "later");
    }
}
