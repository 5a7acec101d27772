//! Typing indicators: never stored, always expired by the server.
//!
//! `active: true` lasts `CHAT_TYPING_TTL` (6 s by default); repeating it
//! refreshes the timer without a new event. Typing stops (announced with
//! `active: false`) when the timer runs out, when the typer says so, when
//! the typer's message in that chat is stored (after its `message` event),
//! and when every socket that said the user was typing there has closed.
//!
//! [`TypingRegistry`] is the port; [`LocalTyping`] keeps the state in this
//! process. Its methods return the events to announce instead of
//! announcing them, so the hub (which ends typing on a message) and the
//! sessions can put them in the right place in the stream.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use chat_domain::chat::{ChatEvent, ChatId};
use chat_domain::user::UserId;

use super::hub::ConnectionId;

pub trait TypingRegistry: Send + Sync + 'static {
    /// `typer` (on `connection`) started or stopped typing to `recipient`
    /// in `chat`: the event to announce, if the state changed.
    fn set(
        &self,
        chat: ChatId,
        typer: UserId,
        recipient: UserId,
        connection: ConnectionId,
        active: bool,
    ) -> Option<ChatEvent>;

    /// `sender`'s message in `chat` was stored: their typing there ends.
    fn message_stored(&self, chat: ChatId, sender: UserId) -> Option<ChatEvent>;

    /// `connection` closed: typing it alone kept alive ends.
    fn connection_closed(&self, connection: ConnectionId) -> Vec<ChatEvent>;

    /// Typing whose timer ran out by `now` ends.
    fn expire(&self, now: Instant) -> Vec<ChatEvent>;
}

/// Typing state in this process.
pub struct LocalTyping {
    ttl: Duration,
    typing: Mutex<HashMap<(ChatId, UserId), Typing>>,
}

struct Typing {
    recipient: UserId,
    until: Instant,
    /// The sockets that said so since it started.
    connections: Vec<ConnectionId>,
}

fn stopped(chat: ChatId, typer: UserId, recipient: UserId) -> ChatEvent {
    ChatEvent::Typing {
        chat_id: chat,
        user_id: typer,
        recipient,
        active: false,
    }
}

impl LocalTyping {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            typing: Mutex::new(HashMap::new()),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn typing(&self) -> std::sync::MutexGuard<'_, HashMap<(ChatId, UserId), Typing>> {
        // Every update below is complete before the lock is released.
        self.typing.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl TypingRegistry for LocalTyping {
    fn set(
        &self,
        chat: ChatId,
        typer: UserId,
        recipient: UserId,
        connection: ConnectionId,
        active: bool,
    ) -> Option<ChatEvent> {
        let mut typing = self.typing();
        if !active {
            return typing
                .remove(&(chat, typer))
                .map(|was| stopped(chat, typer, was.recipient));
        }
        let until = Instant::now() + self.ttl;
        match typing.get_mut(&(chat, typer)) {
            Some(already) => {
                already.until = until;
                if !already.connections.contains(&connection) {
                    already.connections.push(connection);
                }
                None
            }
            None => {
                typing.insert(
                    (chat, typer),
                    Typing {
                        recipient,
                        until,
                        connections: vec![connection],
                    },
                );
                Some(ChatEvent::Typing {
                    chat_id: chat,
                    user_id: typer,
                    recipient,
                    active: true,
                })
            }
        }
    }

    fn message_stored(&self, chat: ChatId, sender: UserId) -> Option<ChatEvent> {
        let mut typing = self.typing();
        // Checked before removing: the common case, a message from someone
        // not typing, takes no write.
        if typing.is_empty() {
            return None;
        }
        typing
            .remove(&(chat, sender))
            .map(|was| stopped(chat, sender, was.recipient))
    }

    fn connection_closed(&self, connection: ConnectionId) -> Vec<ChatEvent> {
        let mut ended = Vec::new();
        self.typing().retain(|&(chat, typer), state| {
            state.connections.retain(|c| *c != connection);
            let over = state.connections.is_empty();
            if over {
                ended.push(stopped(chat, typer, state.recipient));
            }
            !over
        });
        ended
    }

    fn expire(&self, now: Instant) -> Vec<ChatEvent> {
        let mut ended = Vec::new();
        self.typing().retain(|&(chat, typer), state| {
            let over = state.until <= now;
            if over {
                ended.push(stopped(chat, typer, state.recipient));
            }
            !over
        });
        ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHAT: ChatId = ChatId::new(1);
    const ALICE: UserId = UserId::new(1);
    const BOB: UserId = UserId::new(2);

    fn active(event: &Option<ChatEvent>) -> Option<bool> {
        match event {
            Some(ChatEvent::Typing { active, .. }) => Some(*active),
            _ => None,
        }
    }

    #[test]
    fn starting_is_announced_once_and_repeating_only_refreshes() {
        let typing = LocalTyping::new(Duration::from_secs(6));
        assert_eq!(active(&typing.set(CHAT, ALICE, BOB, 1, true)), Some(true));
        assert_eq!(active(&typing.set(CHAT, ALICE, BOB, 1, true)), None);
    }

    #[test]
    fn stopping_is_announced_only_when_typing() {
        let typing = LocalTyping::new(Duration::from_secs(6));
        assert_eq!(active(&typing.set(CHAT, ALICE, BOB, 1, false)), None);
        typing.set(CHAT, ALICE, BOB, 1, true);
        assert_eq!(active(&typing.set(CHAT, ALICE, BOB, 1, false)), Some(false));
    }

    #[test]
    fn typing_expires_after_the_ttl() {
        let typing = LocalTyping::new(Duration::from_millis(100));
        typing.set(CHAT, ALICE, BOB, 1, true);
        let start = Instant::now();
        assert!(typing.expire(start).is_empty());
        let ended = typing.expire(start + Duration::from_millis(200));
        assert_eq!(ended, [stopped(CHAT, ALICE, BOB)]);
        assert!(typing.expire(start + Duration::from_secs(1)).is_empty());
    }

    #[test]
    fn a_stored_message_ends_its_senders_typing_in_that_chat_only() {
        let typing = LocalTyping::new(Duration::from_secs(6));
        typing.set(CHAT, ALICE, BOB, 1, true);
        typing.set(ChatId::new(2), ALICE, UserId::new(3), 1, true);
        assert_eq!(typing.message_stored(CHAT, BOB), None);
        assert_eq!(
            typing.message_stored(CHAT, ALICE),
            Some(stopped(CHAT, ALICE, BOB))
        );
        assert_eq!(
            typing.expire(Instant::now()).len(),
            0,
            "chat 2 still typing"
        );
    }

    #[test]
    fn typing_ends_when_the_last_socket_that_said_so_closes() {
        let typing = LocalTyping::new(Duration::from_secs(6));
        typing.set(CHAT, ALICE, BOB, 1, true);
        typing.set(CHAT, ALICE, BOB, 2, true);
        assert!(typing.connection_closed(1).is_empty());
        assert!(typing.connection_closed(3).is_empty());
        assert_eq!(typing.connection_closed(2), [stopped(CHAT, ALICE, BOB)]);
    }
}
