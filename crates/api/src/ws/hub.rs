//! The broadcast hub: which connections are open on which chat.
//!
//! It implements the domain's `Broadcaster` port. That port is synchronous
//! (the message service calls it on a blocking thread right after the
//! commit), so the hub is a registry behind a short-lived lock rather than
//! an actor: `broadcast` serialises the frame once, then only enqueues a
//! cheap clone into each connection's bounded queue (`try_send`, never
//! waiting). A connection whose queue is full is dropped from the hub; its
//! session sees the queue close and ends the socket with 1013.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use bytestring::ByteString;
use chat_domain::chat::{Broadcaster, ChatId, DirectMessage, MessageId};
use tokio::sync::{mpsc, watch};

use super::frames::message_frame;

/// A frame waiting to be written to one connection.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// Lets a session skip live copies of messages it already sent as
    /// history.
    pub id: MessageId,
    pub frame: ByteString,
}

type ConnectionId = u64;

#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    rooms: RwLock<HashMap<ChatId, Vec<Member>>>,
    next_id: AtomicU64,
    shutdown: watch::Sender<bool>,
}

struct Member {
    id: ConnectionId,
    queue: mpsc::Sender<Outbound>,
}

/// A connection's place in the hub. Dropping it leaves the chat, so a
/// session that ends for any reason leaves nothing behind.
pub struct Membership {
    hub: Hub,
    chat: ChatId,
    id: ConnectionId,
    pub outbound: mpsc::Receiver<Outbound>,
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.hub.leave(self.chat, self.id);
    }
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    pub fn new() -> Self {
        let (shutdown, _) = watch::channel(false);
        Self {
            inner: Arc::new(HubInner {
                rooms: RwLock::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                shutdown,
            }),
        }
    }

    /// Registers a connection on `chat` with a queue of `capacity` frames.
    pub fn join(&self, chat: ChatId, capacity: usize) -> Membership {
        let (queue, outbound) = mpsc::channel(capacity.max(1));
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        self.rooms_mut()
            .entry(chat)
            .or_default()
            .push(Member { id, queue });
        Membership {
            hub: self.clone(),
            chat,
            id,
            outbound,
        }
    }

    fn leave(&self, chat: ChatId, id: ConnectionId) {
        let mut rooms = self.rooms_mut();
        if let Some(members) = rooms.get_mut(&chat) {
            members.retain(|m| m.id != id);
            if members.is_empty() {
                rooms.remove(&chat);
            }
        }
    }

    /// Open connections, over all chats.
    pub fn connection_count(&self) -> usize {
        self.rooms().values().map(Vec::len).sum()
    }

    /// Chats with at least one open connection.
    pub fn chat_count(&self) -> usize {
        self.rooms().len()
    }

    /// Tells every session to close with 1001 (going away).
    pub fn shut_down(&self) {
        self.inner.shutdown.send_replace(true);
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    fn rooms(&self) -> std::sync::RwLockReadGuard<'_, HashMap<ChatId, Vec<Member>>> {
        // A panic elsewhere while holding the lock leaves the map itself
        // consistent (every update is a single insert or retain).
        self.inner
            .rooms
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn rooms_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<ChatId, Vec<Member>>> {
        self.inner
            .rooms
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Broadcaster for Hub {
    fn broadcast(&self, message: &DirectMessage) {
        let outbound = Outbound {
            id: message.id,
            frame: message_frame(message),
        };
        let mut too_slow = Vec::new();
        {
            let rooms = self.rooms();
            let Some(members) = rooms.get(&message.chat_id) else {
                return;
            };
            for member in members {
                match member.queue.try_send(outbound.clone()) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => too_slow.push(member.id),
                    // The session already ended; its Membership drop is
                    // removing it.
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
        }
        for id in too_slow {
            tracing::warn!(chat = %message.chat_id, connection = id, "outbound queue full, dropping slow connection");
            self.leave(message.chat_id, id);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chat_domain::user::{User, UserId, Username};
    use chrono::Utc;

    /// Message `id` from alice in `chat` (also used by the fan-out tests).
    pub(crate) fn message(chat: i64, id: i64) -> DirectMessage {
        DirectMessage {
            id: MessageId::new(id),
            chat_id: ChatId::new(chat),
            sender: User {
                id: UserId::new(1),
                username: Username::parse("alice").unwrap(),
            },
            body: format!("m{id}"),
            created: Utc::now(),
            is_read: false,
        }
    }

    #[test]
    fn a_message_reaches_every_connection_of_its_chat_and_no_other() {
        let hub = Hub::new();
        let mut a = hub.join(ChatId::new(1), 8);
        let mut b = hub.join(ChatId::new(1), 8);
        let mut other = hub.join(ChatId::new(2), 8);

        hub.broadcast(&message(1, 10));

        assert_eq!(
            a.outbound.try_recv().map(|o| o.id).ok(),
            Some(MessageId::new(10))
        );
        assert_eq!(
            b.outbound.try_recv().map(|o| o.id).ok(),
            Some(MessageId::new(10))
        );
        assert!(other.outbound.try_recv().is_err());
    }

    #[test]
    fn every_connection_gets_the_same_serialised_frame() {
        let hub = Hub::new();
        let mut a = hub.join(ChatId::new(1), 8);
        let mut b = hub.join(ChatId::new(1), 8);

        hub.broadcast(&message(1, 10));

        let fa = a.outbound.try_recv().unwrap().frame;
        let fb = b.outbound.try_recv().unwrap().frame;
        assert_eq!(fa, fb);
        // Same allocation, not a re-serialisation per recipient.
        assert_eq!(fa.as_bytes().as_ptr(), fb.as_bytes().as_ptr());
    }

    #[test]
    fn dropping_a_membership_leaves_nothing_behind() {
        let hub = Hub::new();
        let memberships: Vec<_> = (0..100).map(|i| hub.join(ChatId::new(i % 7), 4)).collect();
        assert_eq!(hub.connection_count(), 100);
        assert_eq!(hub.chat_count(), 7);

        drop(memberships);

        assert_eq!(hub.connection_count(), 0);
        assert_eq!(hub.chat_count(), 0);
    }

    #[test]
    fn a_connection_whose_queue_is_full_is_dropped_and_sees_its_queue_close() {
        let hub = Hub::new();
        let mut slow = hub.join(ChatId::new(1), 2);
        let mut fast = hub.join(ChatId::new(1), 100);

        for id in 1..=3 {
            hub.broadcast(&message(1, id));
        }

        assert_eq!(hub.connection_count(), 1);
        // The slow one still gets what was queued, then the end.
        assert!(slow.outbound.try_recv().is_ok());
        assert!(slow.outbound.try_recv().is_ok());
        assert!(matches!(
            slow.outbound.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
        for id in 1..=3 {
            assert_eq!(fast.outbound.try_recv().unwrap().id, MessageId::new(id));
        }
    }

    #[test]
    fn shutting_down_signals_every_subscriber() {
        let hub = Hub::new();
        let signal = hub.shutdown_signal();
        assert!(!*signal.borrow());
        hub.shut_down();
        assert!(*signal.borrow());
    }
}
