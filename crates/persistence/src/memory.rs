//! [`MemoryStore`]: the repository ports without a database.
//!
//! Nothing survives a restart. It exists to measure the ceiling: the same
//! server, same frames and rules, with storage costing (almost) nothing, so
//! the benchmark can say how close durable storage comes to it. It is built
//! only with the `memory` feature and selected with `DATABASE_URL=memory://`.
//! Same semantics as the SQL backends: unique usernames, one chat per pair,
//! dense `seq`s, retry keys, cursors that move by the domain's rule, ids
//! that only grow.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use chat_domain::chat::{
    is_unread_for, ChatId, ChatRepository, ChatSummary, ClientId, Creation, CursorChange,
    CursorKind, Cursors, DirectChat, DirectMessage, Gap, GapFill, Inserted, MessageId, MessagePage,
    MessageRepository, NewMessage, PageAnchor, PageLimit, Participants, ReadCursors, Seq, UserPair,
};
use chat_domain::user::{
    CreateUserError, NewUser, PasswordHash, StoredCredentials, TokenGeneration, User, UserId,
    UserRepository, Username, UsernameKey,
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
    users: Vec<StoredUser>,
    user_by_key: HashMap<UsernameKey, UserId>,
    /// Index `i` holds chat id `i + 1`.
    chats: Vec<Chat>,
    chat_by_pair: HashMap<UserPair, ChatId>,
    chats_of_user: HashMap<UserId, Vec<ChatId>>,
    last_message_id: i64,
}

struct StoredUser {
    credentials: StoredCredentials,
    last_seen: Option<DateTime<Utc>>,
}

struct Chat {
    chat: DirectChat,
    /// Message `seq` n is at index n - 1.
    messages: Vec<DirectMessage>,
    /// The cursors of `participants.users()[0]` and `[1]`.
    cursors: [Cursors; 2],
    /// Retry keys: (sender, client_id) to the index in `messages`.
    client_ids: HashMap<(UserId, ClientId), usize>,
}

impl Chat {
    fn index_of(&self, user: UserId) -> Option<usize> {
        self.chat
            .participants
            .users()
            .iter()
            .position(|u| u.id == user)
    }

    fn head(&self) -> Seq {
        self.messages.last().map_or(Seq::ZERO, |m| m.seq)
    }

    fn read_cursors(&self) -> ReadCursors {
        let [a, b] = self.chat.participants.users();
        ReadCursors::new(
            (a.id, self.cursors[0].read_up_to),
            (b.id, self.cursors[1].read_up_to),
        )
    }

    /// The messages after `seq`.
    fn after(&self, seq: Seq) -> &[DirectMessage] {
        let start = usize::try_from(seq.get()).map_or(0, |s| s.min(self.messages.len()));
        &self.messages[start..]
    }

    /// Messages `from..=to` by `seq`, clipped to what exists.
    fn range(&self, from: i64, to: i64) -> &[DirectMessage] {
        let len = self.messages.len() as i64;
        let start = from.clamp(1, len + 1) - 1;
        let end = to.clamp(0, len);
        if start >= end {
            return &[];
        }
        &self.messages[start as usize..end as usize]
    }

    fn summary_for(&self, viewer: UserId, users: &[StoredUser]) -> Option<ChatSummary> {
        let mine = self.index_of(viewer)?;
        let other = self.chat.participants.other_than(viewer)?;
        let my_read = self.cursors[mine].read_up_to;
        Some(ChatSummary {
            viewer,
            chat: self.chat.clone(),
            last_message: self.messages.last().cloned(),
            head_seq: self.head(),
            mine: self.cursors[mine],
            theirs: self.cursors[1 - mine],
            unread_count: self
                .after(my_read)
                .iter()
                .filter(|m| is_unread_for(viewer, my_read, m.sender.id, m.seq))
                .count() as u64,
            other_last_seen: index(other.id.get())
                .and_then(|i| users.get(i))
                .and_then(|u| u.last_seen),
        })
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
            .map(|u| &u.credentials.user)
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

/// Always ready: it lives in this process.
impl chat_domain::health::StoreHealth for MemoryStore {
    fn check(
        &self,
        _timeout: std::time::Duration,
    ) -> Result<(), chat_domain::health::StoreProblem> {
        Ok(())
    }
}

impl UserRepository for MemoryStore {
    fn create_user(&self, new_user: &NewUser) -> Result<User, CreateUserError> {
        let mut state = self.write();
        let key = new_user.username.key();
        if state.user_by_key.contains_key(&key) {
            return Err(CreateUserError::Duplicate);
        }
        let user = User {
            id: UserId::new(state.users.len() as i64 + 1),
            username: new_user.username.clone(),
        };
        state.user_by_key.insert(key, user.id);
        state.users.push(StoredUser {
            credentials: StoredCredentials {
                user: user.clone(),
                password_hash: new_user.password_hash.clone(),
                token_generation: TokenGeneration::default(),
            },
            last_seen: None,
        });
        Ok(user)
    }

    fn find_credentials(
        &self,
        username: &Username,
    ) -> Result<Option<StoredCredentials>, RepositoryError> {
        let state = self.read();
        Ok(state
            .user_by_key
            .get(&username.key())
            .and_then(|id| index(id.get()))
            .and_then(|i| state.users.get(i))
            .map(|u| u.credentials.clone()))
    }

    fn find_user(&self, id: UserId) -> Result<Option<User>, RepositoryError> {
        Ok(self.read().user(id).cloned())
    }

    fn find_user_with_generation(
        &self,
        id: UserId,
    ) -> Result<Option<(User, TokenGeneration)>, RepositoryError> {
        let state = self.read();
        Ok(index(id.get())
            .and_then(|i| state.users.get(i))
            .map(|u| (u.credentials.user.clone(), u.credentials.token_generation)))
    }

    fn set_password(
        &self,
        id: UserId,
        hash: &PasswordHash,
    ) -> Result<TokenGeneration, RepositoryError> {
        let mut state = self.write();
        let user = index(id.get())
            .and_then(|i| state.users.get_mut(i))
            .ok_or_else(|| RepositoryError::unexpected(format!("no user {id}")))?;
        user.credentials.password_hash = hash.clone();
        user.credentials.token_generation.0 += 1;
        Ok(user.credentials.token_generation)
    }

    fn replace_password_hash(
        &self,
        id: UserId,
        old: &PasswordHash,
        new: &PasswordHash,
    ) -> Result<bool, RepositoryError> {
        let mut state = self.write();
        // Under the write lock, like the SQL stores' conditional update:
        // only while the verified hash is still the stored one.
        match index(id.get()).and_then(|i| state.users.get_mut(i)) {
            Some(user) if user.credentials.password_hash == *old => {
                user.credentials.password_hash = new.clone();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn revoke_tokens(&self, id: UserId) -> Result<TokenGeneration, RepositoryError> {
        let mut state = self.write();
        let user = index(id.get())
            .and_then(|i| state.users.get_mut(i))
            .ok_or_else(|| RepositoryError::unexpected(format!("no user {id}")))?;
        user.credentials.token_generation.0 += 1;
        Ok(user.credentials.token_generation)
    }

    fn list_users_except(&self, id: UserId) -> Result<Vec<User>, RepositoryError> {
        Ok(self
            .read()
            .users
            .iter()
            .map(|u| u.credentials.user.clone())
            .filter(|u| u.id != id)
            .collect())
    }

    fn search_users(
        &self,
        except: UserId,
        needle: &str,
        limit: usize,
    ) -> Result<Vec<User>, RepositoryError> {
        let needle = needle.to_ascii_lowercase();
        let mut found: Vec<User> = self
            .read()
            .users
            .iter()
            .map(|u| u.credentials.user.clone())
            .filter(|u| u.id != except)
            .filter(|u| u.username.as_ref().to_ascii_lowercase().contains(&needle))
            .collect();
        found.sort_by_key(|u| (u.username.as_ref().to_ascii_lowercase(), u.id));
        found.truncate(limit);
        Ok(found)
    }

    fn set_last_seen(&self, id: UserId, at: DateTime<Utc>) -> Result<(), RepositoryError> {
        let mut state = self.write();
        if let Some(user) = index(id.get()).and_then(|i| state.users.get_mut(i)) {
            user.last_seen = Some(at.trunc_subsecs(6));
        }
        Ok(())
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
            cursors: [Cursors::default(); 2],
            client_ids: HashMap::new(),
        });
        Ok((chat, Creation::Created))
    }

    fn find_chat(&self, id: ChatId) -> Result<Option<DirectChat>, RepositoryError> {
        Ok(self.read().chat(id).map(|c| c.chat.clone()))
    }

    fn chat_summaries(&self, viewer: UserId) -> Result<Vec<ChatSummary>, RepositoryError> {
        let state = self.read();
        let mut summaries: Vec<ChatSummary> = state
            .chats_of_user
            .get(&viewer)
            .into_iter()
            .flatten()
            .filter_map(|id| state.chat(*id))
            .filter_map(|c| c.summary_for(viewer, &state.users))
            .collect();
        ChatSummary::sort_by_activity(&mut summaries);
        Ok(summaries)
    }

    fn chat_summary(
        &self,
        viewer: UserId,
        chat: ChatId,
    ) -> Result<Option<ChatSummary>, RepositoryError> {
        let state = self.read();
        Ok(state
            .chat(chat)
            .and_then(|c| c.summary_for(viewer, &state.users)))
    }

    fn chat_partners(&self, user: UserId) -> Result<Vec<UserId>, RepositoryError> {
        let state = self.read();
        Ok(state
            .chats_of_user
            .get(&user)
            .into_iter()
            .flatten()
            .filter_map(|id| state.chat(*id))
            .filter_map(|c| c.chat.participants.other_than(user).map(|u| u.id))
            .collect())
    }
}

impl MessageRepository for MemoryStore {
    fn insert_messages(&self, messages: &[NewMessage]) -> Result<Vec<Inserted>, RepositoryError> {
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
        let mut outcomes = Vec::with_capacity(messages.len());
        for message in messages {
            let next_id = MessageId::new(state.last_message_id + 1);
            let Some(chat) = state.chat_mut(message.chat_id) else {
                return Err(RepositoryError::unexpected("chat vanished"));
            };
            let key = message
                .client_id
                .clone()
                .map(|client_id| (message.sender.id, client_id));
            if let Some(&stored) = key.as_ref().and_then(|key| chat.client_ids.get(key)) {
                outcomes.push(Inserted::Existing(chat.messages[stored].clone()));
                continue;
            }
            let stored = DirectMessage {
                id: next_id,
                chat_id: message.chat_id,
                seq: chat.head().next(),
                sender: message.sender.clone(),
                body: message.body.as_ref().to_owned(),
                created,
                client_id: message.client_id.clone(),
            };
            if let Some(key) = key {
                chat.client_ids.insert(key, chat.messages.len());
            }
            chat.messages.push(stored.clone());
            state.last_message_id += 1;
            outcomes.push(Inserted::New(stored));
        }
        Ok(outcomes)
    }

    fn heads(&self, chats: &[ChatId]) -> Result<Vec<(ChatId, Seq)>, RepositoryError> {
        let state = self.read();
        Ok(chats
            .iter()
            .filter_map(|&id| state.chat(id).map(|chat| (id, chat.head())))
            .filter(|(_, head)| head.get() > 0)
            .collect())
    }

    fn read_gaps(&self, gaps: &[Gap], limit: PageLimit) -> Result<Vec<GapFill>, RepositoryError> {
        let state = self.read();
        let width = limit.get() as i64;
        Ok(gaps
            .iter()
            .filter_map(|gap| {
                let chat = state.chat(gap.chat)?;
                let from = gap.after.get().saturating_add(1);
                let to = gap.up_to.get().min(gap.after.get().saturating_add(width));
                let messages = chat.range(from, to).to_vec();
                (!messages.is_empty()).then(|| GapFill {
                    chat: gap.chat,
                    participants: chat.read_cursors().participants(),
                    messages,
                })
            })
            .collect())
    }

    fn messages_page(
        &self,
        chat: ChatId,
        anchor: PageAnchor,
        limit: PageLimit,
    ) -> Result<MessagePage, RepositoryError> {
        let state = self.read();
        let chat = state
            .chat(chat)
            .ok_or_else(|| RepositoryError::unexpected(format!("no chat {chat}")))?;
        let head = chat.head().get();
        let limit = limit.get() as i64;
        // Seqs are dense: the page is a range of positions.
        let (from, to) = match anchor {
            PageAnchor::Newest => (head - limit + 1, head),
            // Anything before a seq past the head is before head + 1.
            PageAnchor::Before(before) => {
                let before = before.get().min(head + 1);
                (before - limit, before - 1)
            }
            PageAnchor::After(after) => (
                after.get().saturating_add(1),
                after.get().saturating_add(limit),
            ),
        };
        let messages = chat.range(from, to).to_vec();
        let lo = messages.first().map_or(from.max(1), |m| m.seq.get());
        let hi = messages.last().map_or(to.min(head), |m| m.seq.get());
        Ok(MessagePage {
            has_more_before: lo.saturating_sub(1).min(head) >= 1,
            // `hi` is -1 for an empty page before seq 0.
            has_more_after: hi.max(0) < head,
            messages,
            head_seq: chat.head(),
            read_cursors: chat.read_cursors(),
        })
    }

    fn move_cursor(
        &self,
        chat: ChatId,
        user: UserId,
        kind: CursorKind,
        requested: Seq,
    ) -> Result<CursorChange, RepositoryError> {
        let mut state = self.write();
        let Some(chat) = state.chat_mut(chat) else {
            return Err(RepositoryError::unexpected(format!("no chat {chat}")));
        };
        let Some(index) = chat.index_of(user) else {
            return Err(RepositoryError::unexpected(format!(
                "user {user} is not in chat {}",
                chat.chat.id
            )));
        };
        let before = chat.cursors[index];
        let after = before.advanced(kind, requested, chat.head());
        chat.cursors[index] = after;
        let unread_count = chat
            .after(after.read_up_to)
            .iter()
            .filter(|m| is_unread_for(user, after.read_up_to, m.sender.id, m.seq))
            .count() as u64;
        Ok(CursorChange {
            before,
            after,
            head_seq: chat.head(),
            unread_count,
        })
    }
}

// What every store must do is the contract suite's
// (`tests/repositories/`), which runs on this one too. Here: only what the
// index arithmetic above could get wrong.
#[cfg(test)]
mod tests {
    use super::*;
    use chat_domain::user::PasswordHash;

    fn user(store: &MemoryStore, name: &str) -> User {
        store
            .create_user(&NewUser {
                username: Username::parse(name).unwrap(),
                password_hash: PasswordHash::new("h"),
            })
            .unwrap()
    }

    /// Ids come from clients: any `i64` must find nothing rather than
    /// overflow or wrap around to a stored index.
    #[test]
    fn the_extreme_ids_find_nothing() {
        let store = MemoryStore::new();
        let alice = user(&store, "alice");
        let bob = user(&store, "bob");
        let (chat, _) = store
            .find_or_create_chat(UserPair::new(alice.id, bob.id).unwrap())
            .unwrap();
        for id in [i64::MIN, i64::MIN + 1, -1, 0, 3, i64::MAX - 1, i64::MAX] {
            let (user_id, chat_id) = (UserId::new(id), ChatId::new(id));
            assert_eq!(store.find_user(user_id).unwrap(), None, "user {id}");
            assert_eq!(store.find_chat(chat_id).unwrap(), None, "chat {id}");
            assert_eq!(
                store.chat_summary(alice.id, chat_id).unwrap(),
                None,
                "summary of chat {id}"
            );
            assert_eq!(store.chat_summaries(user_id).unwrap(), vec![], "{id}");
            assert_eq!(store.chat_partners(user_id).unwrap(), vec![], "{id}");
            assert!(store
                .messages_page(chat_id, PageAnchor::Newest, PageLimit::MAX)
                .is_err());
            assert!(store
                .move_cursor(chat_id, alice.id, CursorKind::Read, Seq::ZERO)
                .is_err());
            assert!(store
                .move_cursor(chat.id, user_id, CursorKind::Read, Seq::ZERO)
                .is_err());
            store.set_last_seen(user_id, Utc::now()).unwrap();
        }
        assert_eq!(store.find_user(alice.id).unwrap(), Some(alice));
    }
}
