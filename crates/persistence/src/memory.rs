//! [`MemoryStore`]: the repository ports without a database.
//!
//! Nothing survives a restart. It exists to measure the ceiling: the same
//! server, same frames and rules, with storage costing (almost) nothing, so
//! the benchmark can say how close durable storage comes to it. It is built
//! only with the `memory` feature and selected with `DATABASE_URL=memory://`.
//! Same semantics as the SQL backends: unique usernames, one chat per pair,
//! read cursors, ids that only grow.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use chat_domain::chat::{
    ChatId, ChatRepository, ChatSummary, Creation, DirectChat, DirectMessage, MessageId,
    MessageRepository, NewMessage, Participants, UserPair,
};
use chat_domain::user::{
    CreateUserError, NewUser, StoredCredentials, User, UserId, UserRepository, Username,
};
use chat_domain::RepositoryError;
use chrono::{DateTime, SubsecRound, Utc};

#[derive(Default)]
pub struct MemoryStore {
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    /// Index `i` holds user id `i + 1`.
    users: Vec<StoredCredentials>,
    user_by_name: HashMap<Username, UserId>,
    /// Index `i` holds chat id `i + 1`.
    chats: Vec<Chat>,
    chat_by_pair: HashMap<UserPair, ChatId>,
    chats_of_user: HashMap<UserId, Vec<ChatId>>,
    last_message_id: i64,
}

struct Chat {
    chat: DirectChat,
    /// Ascending ids.
    messages: Vec<Stored>,
    /// The read cursors of `participants.users()[0]` and `[1]`.
    cursors: [Option<MessageId>; 2],
}

struct Stored {
    id: MessageId,
    sender: User,
    body: String,
    created: DateTime<Utc>,
}

impl Chat {
    fn cursor_of(&self, user: UserId) -> Option<MessageId> {
        let index = self
            .chat
            .participants
            .users()
            .iter()
            .position(|u| u.id == user)?;
        self.cursors[index]
    }

    /// Whether the participant who did not send `message` has read it.
    fn is_read(&self, message: &Stored) -> bool {
        let recipient = self.chat.participants.other_than(message.sender.id);
        recipient
            .and_then(|r| self.cursor_of(r.id))
            .is_some_and(|cursor| message.id <= cursor)
    }

    fn to_domain(&self, message: &Stored) -> DirectMessage {
        DirectMessage {
            id: message.id,
            chat_id: self.chat.id,
            sender: message.sender.clone(),
            body: message.body.clone(),
            created: message.created,
            is_read: self.is_read(message),
        }
    }

    /// Index of the first message after `id`.
    fn first_after(&self, id: Option<MessageId>) -> usize {
        id.map_or(0, |id| self.messages.partition_point(|m| m.id <= id))
    }

    fn summary_for(&self, viewer: UserId) -> ChatSummary {
        let after_cursor = &self.messages[self.first_after(self.cursor_of(viewer))..];
        ChatSummary {
            chat: self.chat.clone(),
            last_message: self.messages.last().map(|m| self.to_domain(m)),
            unread_count: after_cursor
                .iter()
                .filter(|m| m.sender.id != viewer)
                .count() as u64,
        }
    }

    fn last_activity(&self) -> DateTime<Utc> {
        self.messages
            .last()
            .map_or(self.chat.created, |m| m.created)
    }
}

impl State {
    fn chat(&self, id: ChatId) -> Option<&Chat> {
        index(id.get()).and_then(|i| self.chats.get(i))
    }

    fn chat_mut(&mut self, id: ChatId) -> Option<&mut Chat> {
        index(id.get()).and_then(|i| self.chats.get_mut(i))
    }

    fn user(&self, id: UserId) -> Option<&User> {
        index(id.get())
            .and_then(|i| self.users.get(i))
            .map(|c| &c.user)
    }
}

/// Where id `id` would be stored: ids come from clients, and any `i64`,
/// `i64::MIN` included, must find nothing rather than overflow.
fn index(id: i64) -> Option<usize> {
    id.checked_sub(1).and_then(|i| usize::try_from(i).ok())
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        // Every update below is checked before it starts changing the
        // state, so a poisoned lock still guards consistent data.
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

impl UserRepository for MemoryStore {
    fn create_user(&self, new_user: &NewUser) -> Result<User, CreateUserError> {
        let mut state = self.write();
        if state.user_by_name.contains_key(&new_user.username) {
            return Err(CreateUserError::Duplicate);
        }
        let user = User {
            id: UserId::new(state.users.len() as i64 + 1),
            username: new_user.username.clone(),
        };
        state.user_by_name.insert(user.username.clone(), user.id);
        state.users.push(StoredCredentials {
            user: user.clone(),
            password_hash: new_user.password_hash.clone(),
        });
        Ok(user)
    }

    fn find_credentials(
        &self,
        username: &Username,
    ) -> Result<Option<StoredCredentials>, RepositoryError> {
        let state = self.read();
        Ok(state
            .user_by_name
            .get(username)
            .and_then(|id| index(id.get()))
            .and_then(|i| state.users.get(i).cloned()))
    }

    fn find_user(&self, id: UserId) -> Result<Option<User>, RepositoryError> {
        Ok(self.read().user(id).cloned())
    }

    fn list_users_except(&self, id: UserId) -> Result<Vec<User>, RepositoryError> {
        Ok(self
            .read()
            .users
            .iter()
            .map(|c| c.user.clone())
            .filter(|u| u.id != id)
            .collect())
    }
}

impl ChatRepository for MemoryStore {
    fn find_or_create_chat(
        &self,
        pair: UserPair,
    ) -> Result<(DirectChat, Creation), RepositoryError> {
        let mut state = self.write();
        if let Some(chat) = state.chat_by_pair.get(&pair).and_then(|id| state.chat(*id)) {
            return Ok((chat.chat.clone(), Creation::Existing));
        }
        let (Some(low), Some(high)) = (
            state.user(pair.low()).cloned(),
            state.user(pair.high()).cloned(),
        ) else {
            return Err(RepositoryError::unexpected(
                "a chat with a user that does not exist",
            ));
        };
        let participants = Participants::new(low, high).map_err(RepositoryError::unexpected)?;
        let chat = DirectChat {
            id: ChatId::new(state.chats.len() as i64 + 1),
            participants,
            created: now(),
        };
        state.chat_by_pair.insert(pair, chat.id);
        for user in [pair.low(), pair.high()] {
            state.chats_of_user.entry(user).or_default().push(chat.id);
        }
        state.chats.push(Chat {
            chat: chat.clone(),
            messages: Vec::new(),
            cursors: [None, None],
        });
        Ok((chat, Creation::Created))
    }

    fn find_chat(&self, id: ChatId) -> Result<Option<DirectChat>, RepositoryError> {
        Ok(self.read().chat(id).map(|c| c.chat.clone()))
    }

    fn chat_summaries(&self, viewer: UserId) -> Result<Vec<ChatSummary>, RepositoryError> {
        let state = self.read();
        let mut chats: Vec<&Chat> = state
            .chats_of_user
            .get(&viewer)
            .into_iter()
            .flatten()
            .filter_map(|id| state.chat(*id))
            .collect();
        // Most recent activity first, newest chat first on a tie.
        chats.sort_by_key(|c| std::cmp::Reverse((c.last_activity(), c.chat.id)));
        Ok(chats.into_iter().map(|c| c.summary_for(viewer)).collect())
    }

    fn chat_summary(
        &self,
        viewer: UserId,
        chat: ChatId,
    ) -> Result<Option<ChatSummary>, RepositoryError> {
        Ok(self
            .read()
            .chat(chat)
            .filter(|c| c.chat.participants.contains(viewer))
            .map(|c| c.summary_for(viewer)))
    }
}

impl MessageRepository for MemoryStore {
    fn insert_messages(
        &self,
        messages: &[NewMessage],
    ) -> Result<Vec<DirectMessage>, RepositoryError> {
        let mut state = self.write();
        // All or none: check every message before storing any.
        for message in messages {
            let known = state
                .chat(message.chat_id)
                .is_some_and(|c| c.chat.participants.contains(message.sender.id));
            if !known {
                return Err(RepositoryError::unexpected(format!(
                    "user {} is not in chat {}",
                    message.sender.id, message.chat_id
                )));
            }
        }
        let created = now();
        let mut stored = Vec::with_capacity(messages.len());
        for message in messages {
            state.last_message_id += 1;
            let id = MessageId::new(state.last_message_id);
            let Some(chat) = state.chat_mut(message.chat_id) else {
                return Err(RepositoryError::unexpected("chat vanished"));
            };
            chat.messages.push(Stored {
                id,
                sender: message.sender.clone(),
                body: message.body.as_ref().to_owned(),
                created,
            });
            stored.push(DirectMessage {
                id,
                chat_id: message.chat_id,
                sender: message.sender.clone(),
                body: message.body.as_ref().to_owned(),
                created,
                is_read: false,
            });
        }
        Ok(stored)
    }

    fn history_page(
        &self,
        chat: ChatId,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<DirectMessage>, RepositoryError> {
        let state = self.read();
        let Some(chat) = state.chat(chat) else {
            return Ok(Vec::new());
        };
        Ok(chat.messages[chat.first_after(after)..]
            .iter()
            .take(limit)
            .map(|m| chat.to_domain(m))
            .collect())
    }

    fn mark_read(
        &self,
        chat: ChatId,
        reader: UserId,
        up_to: MessageId,
    ) -> Result<(), RepositoryError> {
        let mut state = self.write();
        let Some(chat) = state.chat_mut(chat) else {
            return Ok(());
        };
        let Some(index) = chat
            .chat
            .participants
            .users()
            .iter()
            .position(|u| u.id == reader)
        else {
            return Ok(());
        };
        // Never beyond the newest message at or before `up_to`, never back.
        let newest = chat.messages[..chat.first_after(Some(up_to))]
            .last()
            .map(|m| m.id);
        if newest > chat.cursors[index] {
            chat.cursors[index] = newest;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_domain::chat::{MessageBody, MessageLimit};
    use chat_domain::user::PasswordHash;

    fn user(store: &MemoryStore, name: &str) -> User {
        store
            .create_user(&NewUser {
                username: Username::parse(name).unwrap(),
                password_hash: PasswordHash::new("h"),
            })
            .unwrap()
    }

    fn send(store: &MemoryStore, chat: ChatId, sender: &User, body: &str) -> DirectMessage {
        store
            .insert_message(&NewMessage {
                chat_id: chat,
                sender: sender.clone(),
                body: MessageBody::parse(body, MessageLimit::DEFAULT).unwrap(),
            })
            .unwrap()
    }

    #[test]
    fn the_extreme_ids_find_nothing() {
        let store = MemoryStore::new();
        let alice = user(&store, "alice");
        let bob = user(&store, "bob");
        store
            .find_or_create_chat(UserPair::new(alice.id, bob.id).unwrap())
            .unwrap();
        for id in [i64::MIN, i64::MIN + 1, -1, 0, 3, i64::MAX - 1, i64::MAX] {
            assert_eq!(store.find_user(UserId::new(id)).unwrap(), None, "user {id}");
            assert_eq!(store.find_chat(ChatId::new(id)).unwrap(), None, "chat {id}");
            assert_eq!(
                store.chat_summary(alice.id, ChatId::new(id)).unwrap(),
                None,
                "summary of chat {id}"
            );
        }
    }

    #[test]
    fn usernames_are_unique_and_users_listed_by_id() {
        let store = MemoryStore::new();
        let alice = user(&store, "alice");
        let bob = user(&store, "bob");
        let again = store.create_user(&NewUser {
            username: Username::parse("alice").unwrap(),
            password_hash: PasswordHash::new("h"),
        });
        assert!(matches!(again, Err(CreateUserError::Duplicate)));
        assert_eq!(
            store.list_users_except(alice.id).unwrap(),
            vec![bob.clone()]
        );
        assert_eq!(
            store
                .find_credentials(&bob.username)
                .unwrap()
                .map(|c| c.user),
            Some(bob)
        );
    }

    #[test]
    fn one_chat_per_pair_and_unread_counts_follow_the_cursor() {
        let store = MemoryStore::new();
        let alice = user(&store, "alice");
        let bob = user(&store, "bob");
        let pair = UserPair::new(bob.id, alice.id).unwrap();
        let (chat, created) = store.find_or_create_chat(pair).unwrap();
        let (again, existing) = store.find_or_create_chat(pair).unwrap();
        assert_eq!((created, existing), (Creation::Created, Creation::Existing));
        assert_eq!(chat, again);

        let first = send(&store, chat.id, &bob, "one");
        send(&store, chat.id, &alice, "mine");
        let third = send(&store, chat.id, &bob, "two");
        assert_eq!(
            store
                .chat_summary(alice.id, chat.id)
                .unwrap()
                .unwrap()
                .unread_count,
            2
        );

        store.mark_read(chat.id, alice.id, first.id).unwrap();
        assert_eq!(
            store
                .chat_summary(alice.id, chat.id)
                .unwrap()
                .unwrap()
                .unread_count,
            1
        );
        store
            .mark_read(chat.id, alice.id, MessageId::new(1_000))
            .unwrap();
        store.mark_read(chat.id, alice.id, first.id).unwrap(); // never backwards
        let summary = store.chat_summary(alice.id, chat.id).unwrap().unwrap();
        assert_eq!(summary.unread_count, 0);
        assert_eq!(
            summary.last_message.map(|m| (m.id, m.is_read)),
            Some((third.id, true))
        );
        // A later message is unread even though the cursor was asked past it.
        send(&store, chat.id, &bob, "three");
        assert_eq!(
            store
                .chat_summary(alice.id, chat.id)
                .unwrap()
                .unwrap()
                .unread_count,
            1
        );
    }

    #[test]
    fn history_pages_by_id_and_outsiders_cannot_write() {
        let store = MemoryStore::new();
        let alice = user(&store, "alice");
        let bob = user(&store, "bob");
        let mallory = user(&store, "mallory");
        let (chat, _) = store
            .find_or_create_chat(UserPair::new(alice.id, bob.id).unwrap())
            .unwrap();
        let sent: Vec<_> = (0..5)
            .map(|i| send(&store, chat.id, &alice, &format!("m{i}")))
            .collect();

        let page = store.history_page(chat.id, Some(sent[1].id), 2).unwrap();
        assert_eq!(
            page.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
            ["m2", "m3"]
        );

        let outsider = store.insert_messages(&[NewMessage {
            chat_id: chat.id,
            sender: mallory,
            body: MessageBody::parse("x", MessageLimit::DEFAULT).unwrap(),
        }]);
        assert!(outsider.is_err());
        assert_eq!(store.history_page(chat.id, None, 100).unwrap().len(), 5);
        assert!(store
            .chat_summary(UserId::new(3), chat.id)
            .unwrap()
            .is_none());
    }

    #[test]
    fn chats_are_listed_by_latest_activity() {
        let store = MemoryStore::new();
        let hub = user(&store, "hub");
        let a = user(&store, "a");
        let b = user(&store, "b");
        let (with_a, _) = store
            .find_or_create_chat(UserPair::new(hub.id, a.id).unwrap())
            .unwrap();
        let (with_b, _) = store
            .find_or_create_chat(UserPair::new(hub.id, b.id).unwrap())
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
        send(&store, with_a.id, &a, "newest");

        let order: Vec<_> = store
            .chat_summaries(hub.id)
            .unwrap()
            .iter()
            .map(|s| s.chat.id)
            .collect();
        assert_eq!(order, vec![with_a.id, with_b.id]);
    }
}
