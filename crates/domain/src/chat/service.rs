//! The chat rules: who may talk to whom, who may read and write a chat,
//! and the order "store, then tell everyone".

use std::sync::{Arc, Mutex, PoisonError};

use super::events::{ChatEvent, Origin};
use super::models::{
    ChatId, ChatSummary, ClientId, DirectChat, DirectMessage, MessageBody, MessageBodyError,
    MessageLimit, NewMessage, UserPair,
};
use super::ports::{
    Broadcaster, ChatRepository, Creation, Inserted, MessagePage, MessageRepository, PageAnchor,
    PageLimit,
};
use super::receipts::{CursorChange, CursorKind, Seq};
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

/// Proof that `member` is a participant of `chat`. Only [`ChatService`]
/// makes one, after the participant check, so every read or write of a
/// chat's messages has passed it.
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

    /// Both users' ids, lower first.
    pub fn participant_ids(&self) -> [UserId; 2] {
        let [a, b] = self.chat.participants.users();
        [a.id, b.id]
    }

    /// The participant who is not the member.
    pub fn other(&self) -> Option<&User> {
        self.chat.participants.other_than(self.member.id)
    }
}

/// Chat lists, chat creation and the participant check.
#[derive(Clone)]
pub struct ChatService {
    users: Arc<dyn UserRepository>,
    chats: Arc<dyn ChatRepository>,
    broadcaster: Arc<dyn Broadcaster>,
}

impl ChatService {
    pub fn new(
        users: Arc<dyn UserRepository>,
        chats: Arc<dyn ChatRepository>,
        broadcaster: Arc<dyn Broadcaster>,
    ) -> Self {
        Self {
            users,
            chats,
            broadcaster,
        }
    }

    /// Finds or creates the chat between `me` and `other`. A new chat is
    /// announced to both participants, each with their own view of it.
    pub fn create_chat(&self, me: &User, other: UserId) -> Result<CreatedChat, CreateChatError> {
        let pair = UserPair::new(me.id, other).map_err(|_| CreateChatError::SameUser)?;
        if self.users.find_user(other)?.is_none() {
            return Err(CreateChatError::UnknownUser(other));
        }
        let (chat, creation) = self.chats.find_or_create_chat(pair)?;
        let summary = self.summary_of(me.id, chat.id)?;
        if creation == Creation::Created {
            let theirs = self.summary_of(other, chat.id)?;
            self.broadcaster.publish(ChatEvent::ChatCreated {
                views: Box::new([summary.clone(), theirs]),
            });
        }
        Ok(CreatedChat { summary, creation })
    }

    fn summary_of(&self, viewer: UserId, chat: ChatId) -> Result<ChatSummary, RepositoryError> {
        self.chats.chat_summary(viewer, chat)?.ok_or_else(|| {
            RepositoryError::unexpected(format!("chat {chat} vanished after lookup"))
        })
    }

    /// Every chat `me` is in, most recent activity first.
    pub fn list_chats(&self, me: &User) -> Result<Vec<ChatSummary>, RepositoryError> {
        self.chats.chat_summaries(me.id)
    }

    /// Every chat `me` is in, most recent activity first, each already
    /// opened: what a connection serving all of a user's chats starts from.
    pub fn open_all_chats(
        &self,
        me: &User,
    ) -> Result<Vec<(OpenChat, ChatSummary)>, RepositoryError> {
        let summaries = self.chats.chat_summaries(me.id)?;
        summaries
            .into_iter()
            .map(|summary| {
                if !summary.chat.participants.contains(me.id) {
                    return Err(RepositoryError::unexpected(format!(
                        "chat {} listed for user {} who is not in it",
                        summary.chat.id, me.id
                    )));
                }
                let open = OpenChat {
                    chat: summary.chat.clone(),
                    member: me.clone(),
                };
                Ok((open, summary))
            })
            .collect()
    }

    /// Checks that the chat exists and that `me` is in it.
    pub fn open_chat(&self, me: User, chat: ChatId) -> Result<OpenChat, OpenChatError> {
        let chat = self.chats.find_chat(chat)?.ok_or(OpenChatError::NotFound)?;
        if !chat.participants.contains(me.id) {
            return Err(OpenChatError::NotParticipant);
        }
        Ok(OpenChat { chat, member: me })
    }

    /// Everyone who shares a chat with `user`: whom their presence concerns.
    pub fn chat_partners(&self, user: UserId) -> Result<Vec<UserId>, RepositoryError> {
        self.chats.chat_partners(user)
    }
}

/// A validated message on its way to the store: see
/// [`MessageService::send_batch`].
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub chat: Arc<OpenChat>,
    pub body: MessageBody,
    /// The sender's retry key: with one, the message is stored at most once.
    pub client_id: Option<ClientId>,
    /// The connection that sent it, told by acknowledgement.
    pub origin: Option<Origin>,
}

/// What became of one message of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// Stored now, and announced.
    Stored(DirectMessage),
    /// Stored before under the same `client_id`, with the same body: this is
    /// that message; nothing new was stored or announced.
    Duplicate(DirectMessage),
    /// The `client_id` was used before for another body: refused.
    Conflict(DirectMessage),
}

/// Sending, history and receipts, for participants only.
#[derive(Clone)]
pub struct MessageService {
    messages: Arc<dyn MessageRepository>,
    broadcaster: Arc<dyn Broadcaster>,
    limit: MessageLimit,
    /// Events are announced in the order things committed: a batch's
    /// messages are published under this lock right after their commit,
    /// and a cursor move after it takes the lock, so a cursor never
    /// reaches a socket before the message it covers. Uncontended in the
    /// server, where one writer thread sends every batch.
    publish_order: Arc<Mutex<()>>,
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
            publish_order: Arc::new(Mutex::new(())),
        }
    }

    pub fn limit(&self) -> MessageLimit {
        self.limit
    }

    /// Checks a body against the rules (non-empty, within the limit, no NUL).
    pub fn validate(&self, body: &str) -> Result<MessageBody, MessageBodyError> {
        MessageBody::parse(body, self.limit)
    }

    fn in_publish_order(&self) -> std::sync::MutexGuard<'_, ()> {
        // The lock guards no data, so a poisoned one is as good as any.
        self.publish_order
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores validated messages (see [`validate`](Self::validate)),
    /// possibly of many chats, in one transaction; only once committed
    /// announces each new one, in order, to every connection of its chat.
    /// All or none are stored. A message whose `client_id` its sender
    /// already used in that chat is not stored again (see [`SendOutcome`]).
    pub fn send_batch(&self, batch: &[Outgoing]) -> Result<Vec<SendOutcome>, RepositoryError> {
        let new_messages = Self::new_messages(batch);
        let _in_order = self.in_publish_order();
        let inserted = self.messages.insert_messages(&new_messages)?;
        Self::check_count(inserted.len(), batch.len())?;
        Ok(batch
            .iter()
            .zip(inserted)
            .map(|(outgoing, inserted)| self.settle(outgoing, inserted))
            .collect())
    }

    /// [`send_batch`](Self::send_batch), leaving out (`None`: not stored,
    /// send again) the messages of chats another writer of a shared
    /// database is appending to right now, unless the chat is in
    /// `wait_for` (see `MessageRepository::insert_messages_skipping_busy`).
    pub fn send_batch_skipping_busy(
        &self,
        batch: &[Outgoing],
        wait_for: &[ChatId],
    ) -> Result<Vec<Option<SendOutcome>>, RepositoryError> {
        let new_messages = Self::new_messages(batch);
        let _in_order = self.in_publish_order();
        let inserted = self
            .messages
            .insert_messages_skipping_busy(&new_messages, wait_for)?;
        Self::check_count(inserted.len(), batch.len())?;
        Ok(batch
            .iter()
            .zip(inserted)
            .map(|(outgoing, inserted)| inserted.map(|inserted| self.settle(outgoing, inserted)))
            .collect())
    }

    fn new_messages(batch: &[Outgoing]) -> Vec<NewMessage> {
        batch
            .iter()
            .map(|outgoing| NewMessage {
                chat_id: outgoing.chat.id(),
                sender: outgoing.chat.member.clone(),
                body: outgoing.body.clone(),
                client_id: outgoing.client_id.clone(),
            })
            .collect()
    }

    fn check_count(outcomes: usize, messages: usize) -> Result<(), RepositoryError> {
        if outcomes == messages {
            Ok(())
        } else {
            Err(RepositoryError::unexpected(format!(
                "{outcomes} outcomes for {messages} messages"
            )))
        }
    }

    /// What one stored (or already stored) message means for its sender;
    /// a new one is announced.
    fn settle(&self, outgoing: &Outgoing, inserted: Inserted) -> SendOutcome {
        match inserted {
            Inserted::New(message) => {
                self.broadcaster.publish(ChatEvent::MessageStored {
                    message: message.clone(),
                    participants: outgoing.chat.participant_ids(),
                    origin: outgoing.origin,
                });
                SendOutcome::Stored(message)
            }
            Inserted::Existing(original) if original.body == outgoing.body.as_ref() => {
                SendOutcome::Duplicate(original)
            }
            Inserted::Existing(original) => SendOutcome::Conflict(original),
        }
    }

    /// A page of the chat's messages, oldest first.
    pub fn page(
        &self,
        chat: &OpenChat,
        anchor: PageAnchor,
        limit: PageLimit,
    ) -> Result<MessagePage, RepositoryError> {
        self.messages.messages_page(chat.id(), anchor, limit)
    }

    /// Moves the member's cursor toward `requested` (forward only, clamped
    /// to the chat's head, reading implies delivery) and announces each
    /// cursor that moved.
    pub fn move_cursor(
        &self,
        chat: &OpenChat,
        kind: CursorKind,
        requested: Seq,
    ) -> Result<CursorChange, RepositoryError> {
        let member = chat.member.id;
        let change = self
            .messages
            .move_cursor(chat.id(), member, kind, requested)?;
        let moved = change.moved();
        if !moved.is_empty() {
            let _in_order = self.in_publish_order();
            for (kind, up_to) in moved {
                self.broadcaster.publish(ChatEvent::CursorMoved {
                    chat_id: chat.id(),
                    participants: chat.participant_ids(),
                    user_id: member,
                    kind,
                    up_to,
                });
            }
        }
        Ok(change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::models::{MessageId, Participants};
    use crate::chat::ports::{MockBroadcaster, MockChatRepository, MockMessageRepository};
    use crate::chat::receipts::{Cursors, ReadCursors};
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

    fn seq(n: i64) -> Seq {
        Seq::new(n).unwrap()
    }

    fn chat_of(id: i64, a: User, b: User) -> DirectChat {
        DirectChat {
            id: ChatId::new(id),
            participants: Participants::new(a, b).unwrap(),
            created: Utc.with_ymd_and_hms(2025, 5, 1, 12, 0, 0).unwrap(),
        }
    }

    fn summary(viewer: UserId, chat: DirectChat) -> ChatSummary {
        ChatSummary {
            viewer,
            chat,
            last_message: None,
            head_seq: Seq::ZERO,
            mine: Cursors::default(),
            theirs: Cursors::default(),
            unread_count: 0,
            other_last_seen: None,
        }
    }

    fn message(id: i64, sender: User, body: &str) -> DirectMessage {
        DirectMessage {
            id: MessageId::new(id),
            chat_id: ChatId::new(10),
            seq: seq(id),
            sender,
            body: body.to_owned(),
            created: Utc.with_ymd_and_hms(2025, 5, 1, 12, 5, 0).unwrap(),
            client_id: None,
        }
    }

    fn quiet() -> MockBroadcaster {
        let mut broadcaster = MockBroadcaster::new();
        broadcaster.expect_publish().never();
        broadcaster
    }

    fn message_service(
        messages: MockMessageRepository,
        broadcaster: MockBroadcaster,
        limit: MessageLimit,
    ) -> MessageService {
        MessageService::new(Arc::new(messages), Arc::new(broadcaster), limit)
    }

    fn chat_service(
        users: MockUserRepository,
        chats: MockChatRepository,
        broadcaster: MockBroadcaster,
    ) -> ChatService {
        ChatService::new(Arc::new(users), Arc::new(chats), Arc::new(broadcaster))
    }

    fn open_chat_as(member: User) -> Arc<OpenChat> {
        let mut chats = MockChatRepository::new();
        chats
            .expect_find_chat()
            .returning(|_| Ok(Some(chat_of(10, alice(), bob()))));
        Arc::new(
            chat_service(MockUserRepository::new(), chats, quiet())
                .open_chat(member, ChatId::new(10))
                .unwrap(),
        )
    }

    fn outgoing(chat: &Arc<OpenChat>, body: &str, client_id: Option<&str>) -> Outgoing {
        Outgoing {
            chat: chat.clone(),
            body: MessageBody::parse(body, MessageLimit::DEFAULT).unwrap(),
            client_id: client_id.map(|c| ClientId::parse(c).unwrap()),
            origin: None,
        }
    }

    #[test]
    fn creating_a_chat_with_yourself_is_rejected() {
        let service = chat_service(
            MockUserRepository::new(),
            MockChatRepository::new(),
            quiet(),
        );
        let result = service.create_chat(&alice(), alice().id);
        assert!(matches!(result, Err(CreateChatError::SameUser)));
    }

    #[test]
    fn creating_a_chat_with_an_unknown_user_is_rejected() {
        let mut users = MockUserRepository::new();
        users.expect_find_user().returning(|_| Ok(None));
        let service = chat_service(users, MockChatRepository::new(), quiet());

        let result = service.create_chat(&alice(), UserId::new(42));

        assert!(matches!(result, Err(CreateChatError::UnknownUser(id)) if id == UserId::new(42)));
    }

    #[test]
    fn a_new_chat_is_announced_to_both_participants_with_their_own_view() {
        let mut users = MockUserRepository::new();
        users.expect_find_user().returning(|_| Ok(Some(bob())));
        let mut chats = MockChatRepository::new();
        chats
            .expect_find_or_create_chat()
            .withf(|pair| pair.low() == UserId::new(1) && pair.high() == UserId::new(2))
            .returning(|_| Ok((chat_of(10, alice(), bob()), Creation::Created)));
        chats
            .expect_chat_summary()
            .returning(|viewer, _| Ok(Some(summary(viewer, chat_of(10, alice(), bob())))));
        let announced = Arc::new(Mutex::new(Vec::new()));
        let seen = announced.clone();
        let mut broadcaster = MockBroadcaster::new();
        broadcaster
            .expect_publish()
            .times(1)
            .returning(move |event| seen.lock().unwrap().push(event));
        let service = chat_service(users, chats, broadcaster);

        let created = service.create_chat(&alice(), bob().id).unwrap();

        assert_eq!(created.creation, Creation::Created);
        assert_eq!(created.summary.viewer, alice().id);
        let announced = announced.lock().unwrap();
        let Some(ChatEvent::ChatCreated { views }) = announced.first() else {
            panic!("expected a chat event, got {announced:?}");
        };
        assert_eq!(views[0].viewer, alice().id);
        assert_eq!(views[1].viewer, bob().id);
    }

    #[test]
    fn creating_an_existing_chat_returns_it_as_the_requester_sees_it_and_announces_nothing() {
        let mut users = MockUserRepository::new();
        users.expect_find_user().returning(|_| Ok(Some(alice())));
        let mut chats = MockChatRepository::new();
        chats
            .expect_find_or_create_chat()
            .returning(|_| Ok((chat_of(10, alice(), bob()), Creation::Existing)));
        chats
            .expect_chat_summary()
            .with(eq(UserId::new(2)), eq(ChatId::new(10)))
            .returning(|viewer, _| {
                Ok(Some(ChatSummary {
                    last_message: Some(message(5, alice(), "hi")),
                    unread_count: 3,
                    ..summary(viewer, chat_of(10, alice(), bob()))
                }))
            });
        let service = chat_service(users, chats, quiet());

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
        let service = chat_service(MockUserRepository::new(), chats, quiet());

        let result = service.open_chat(alice(), ChatId::new(99));

        assert!(matches!(result, Err(OpenChatError::NotFound)));
    }

    #[test]
    fn only_participants_may_open_a_chat() {
        let mut chats = MockChatRepository::new();
        chats
            .expect_find_chat()
            .returning(|_| Ok(Some(chat_of(10, alice(), bob()))));
        let service = chat_service(MockUserRepository::new(), chats, quiet());

        let mallory = service.open_chat(user(3, "mallory"), ChatId::new(10));
        let alice_opens = service.open_chat(alice(), ChatId::new(10));

        assert!(matches!(mallory, Err(OpenChatError::NotParticipant)));
        assert_eq!(alice_opens.unwrap().member(), &alice());
    }

    #[test]
    fn every_listed_chat_is_opened_for_its_viewer() {
        let mut chats = MockChatRepository::new();
        chats.expect_chat_summaries().returning(|viewer| {
            Ok(vec![
                summary(viewer, chat_of(10, alice(), bob())),
                summary(viewer, chat_of(11, alice(), user(3, "carol"))),
            ])
        });
        let service = chat_service(MockUserRepository::new(), chats, quiet());

        let opened = service.open_all_chats(&alice()).unwrap();

        let ids: Vec<_> = opened.iter().map(|(open, _)| open.id().get()).collect();
        assert_eq!(ids, [10, 11]);
        assert!(opened.iter().all(|(open, _)| open.member() == &alice()));
    }

    #[test]
    fn a_message_is_stored_before_it_is_announced() {
        let mut order = Sequence::new();
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
            .in_sequence(&mut order)
            .returning(|_| Ok(vec![Inserted::New(message(5, alice(), "hello"))]));
        let mut broadcaster = MockBroadcaster::new();
        broadcaster
            .expect_publish()
            .withf(|event| {
                matches!(event, ChatEvent::MessageStored { message, participants, .. }
                    if message.id == MessageId::new(5) && *participants == [alice().id, bob().id])
            })
            .times(1)
            .in_sequence(&mut order)
            .return_const(());
        let service = message_service(messages, broadcaster, MessageLimit::DEFAULT);

        let chat = open_chat_as(alice());
        let sent = service
            .send_batch(&[outgoing(&chat, "hello", None)])
            .unwrap();

        assert_eq!(sent, [SendOutcome::Stored(message(5, alice(), "hello"))]);
    }

    #[test]
    fn a_message_that_fails_to_store_is_never_announced() {
        let mut messages = MockMessageRepository::new();
        messages
            .expect_insert_messages()
            .returning(|_| Err(RepositoryError::unavailable("down")));
        let service = message_service(messages, quiet(), MessageLimit::DEFAULT);

        let chat = open_chat_as(alice());
        let result = service.send_batch(&[outgoing(&chat, "hello", None)]);

        assert!(matches!(result, Err(RepositoryError::Unavailable(_))));
    }

    #[test]
    fn a_batch_is_stored_in_one_call_then_announced_in_order() {
        let mut order = Sequence::new();
        let mut messages = MockMessageRepository::new();
        messages
            .expect_insert_messages()
            .withf(|m| {
                m.iter()
                    .map(|m| m.body.as_ref())
                    .eq(["one", "two", "three"])
            })
            .times(1)
            .in_sequence(&mut order)
            .returning(|_| {
                Ok(vec![
                    Inserted::New(message(1, alice(), "one")),
                    Inserted::New(message(2, bob(), "two")),
                    Inserted::New(message(3, alice(), "three")),
                ])
            });
        let announced = Arc::new(Mutex::new(Vec::new()));
        let mut broadcaster = MockBroadcaster::new();
        let seen = announced.clone();
        broadcaster
            .expect_publish()
            .times(3)
            .in_sequence(&mut order)
            .returning(move |event| {
                if let ChatEvent::MessageStored { message, .. } = event {
                    seen.lock().unwrap().push(message.id.get());
                }
            });
        let service = message_service(messages, broadcaster, MessageLimit::DEFAULT);
        let (as_alice, as_bob) = (open_chat_as(alice()), open_chat_as(bob()));
        let batch = [
            outgoing(&as_alice, "one", None),
            outgoing(&as_bob, "two", None),
            outgoing(&as_alice, "three", None),
        ];

        let stored = service.send_batch(&batch).unwrap();

        assert_eq!(stored.len(), 3);
        assert_eq!(*announced.lock().unwrap(), vec![1, 2, 3]);
    }

    #[test]
    fn a_client_id_already_stored_is_a_duplicate_with_the_same_body_and_a_conflict_with_another() {
        let original = DirectMessage {
            client_id: Some(ClientId::parse("c-1").unwrap()),
            ..message(4, alice(), "hello")
        };
        let stored_before = original.clone();
        let mut messages = MockMessageRepository::new();
        messages.expect_insert_messages().returning(move |_| {
            Ok(vec![
                Inserted::Existing(stored_before.clone()),
                Inserted::Existing(stored_before.clone()),
            ])
        });
        // Neither is announced again.
        let service = message_service(messages, quiet(), MessageLimit::DEFAULT);
        let chat = open_chat_as(alice());

        let outcomes = service
            .send_batch(&[
                outgoing(&chat, "hello", Some("c-1")),
                outgoing(&chat, "something else", Some("c-1")),
            ])
            .unwrap();

        assert_eq!(
            outcomes,
            [
                SendOutcome::Duplicate(original.clone()),
                SendOutcome::Conflict(original)
            ]
        );
    }

    #[test]
    fn invalid_bodies_are_refused_by_the_limit_in_force() {
        // send_batch takes only MessageBody values, so a body refused here
        // can be neither stored nor announced.
        let service = message_service(
            MockMessageRepository::new(),
            quiet(),
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

    fn change(before: (i64, i64), after: (i64, i64)) -> CursorChange {
        let cursors = |(read, delivered): (i64, i64)| Cursors {
            read_up_to: seq(read),
            delivered_up_to: seq(delivered),
        };
        CursorChange {
            before: cursors(before),
            after: cursors(after),
            head_seq: seq(10),
            unread_count: 0,
        }
    }

    #[test]
    fn a_cursor_move_is_made_for_the_member_and_each_cursor_that_moved_announced() {
        let mut messages = MockMessageRepository::new();
        messages
            .expect_move_cursor()
            .with(
                eq(ChatId::new(10)),
                eq(UserId::new(2)),
                eq(CursorKind::Read),
                eq(seq(7)),
            )
            .times(1)
            .returning(|_, _, _, _| Ok(change((2, 3), (7, 7))));
        let announced = Arc::new(Mutex::new(Vec::new()));
        let seen = announced.clone();
        let mut broadcaster = MockBroadcaster::new();
        broadcaster
            .expect_publish()
            .returning(move |event| seen.lock().unwrap().push(event));
        let service = message_service(messages, broadcaster, MessageLimit::DEFAULT);

        service
            .move_cursor(&open_chat_as(bob()), CursorKind::Read, seq(7))
            .unwrap();

        let kinds: Vec<_> = announced
            .lock()
            .unwrap()
            .iter()
            .map(|event| match event {
                ChatEvent::CursorMoved {
                    user_id,
                    kind,
                    up_to,
                    ..
                } => (*user_id, *kind, *up_to),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                (UserId::new(2), CursorKind::Read, seq(7)),
                (UserId::new(2), CursorKind::Delivered, seq(7))
            ]
        );
    }

    #[test]
    fn a_cursor_that_did_not_move_is_not_announced() {
        let mut messages = MockMessageRepository::new();
        messages
            .expect_move_cursor()
            .returning(|_, _, _, _| Ok(change((7, 7), (7, 7))));
        let service = message_service(messages, quiet(), MessageLimit::DEFAULT);

        let result = service.move_cursor(&open_chat_as(bob()), CursorKind::Read, seq(3));

        assert!(result.unwrap().moved().is_empty());
    }

    #[test]
    fn pages_are_read_from_the_opened_chat() {
        let mut messages = MockMessageRepository::new();
        messages
            .expect_messages_page()
            .with(
                eq(ChatId::new(10)),
                eq(PageAnchor::After(seq(3))),
                eq(PageLimit::DEFAULT),
            )
            .returning(|_, _, _| {
                Ok(MessagePage {
                    messages: vec![message(4, bob(), "later")],
                    has_more_before: true,
                    has_more_after: false,
                    head_seq: seq(4),
                    read_cursors: ReadCursors::new((alice().id, Seq::ZERO), (bob().id, Seq::ZERO)),
                })
            });
        let service = message_service(messages, quiet(), MessageLimit::DEFAULT);

        let page = service
            .page(
                &open_chat_as(alice()),
                PageAnchor::After(seq(3)),
                PageLimit::DEFAULT,
            )
            .unwrap();

        assert_eq!(page.messages.len(), 1);
        assert_eq!(page.messages[0].body, "later");
    }
}
