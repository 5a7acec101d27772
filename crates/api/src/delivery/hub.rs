//! The hub: which sockets are open, keyed by chat (seed sockets, one chat
//! each) and by user (v2 sockets, all of the user's chats), and the
//! delivery of each [`ChatEvent`] to the sockets it concerns.
//!
//! Each event is encoded at most once per protocol (once per viewer for a
//! new chat, whose state differs per participant; the sending socket's
//! `ack` is its own), and a cheap clone of the bytes is offered to each
//! socket's bounded queue without waiting (`try_send`). The queue is the
//! backpressure: typing and presence are shed once a queue is half full, so
//! they never take the room that messages, acks and receipts need; a socket
//! whose queue cannot take one of those is dropped from the hub, and its
//! session closes it with 1013 (the client then catches up from history).
//!
//! The hub is a registry behind a short-lived lock rather than an actor:
//! one fan-out thread calls [`Hub::deliver`] in commit order, and a read
//! lock held for a handful of non-blocking `try_send`s never waits on a
//! slow client.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Instant;

use bytestring::ByteString;
use chat_domain::chat::{ChatEvent, ChatId, ChatSummary, DirectMessage, Origin, Seq};
use chat_domain::user::UserId;
use tokio::sync::{mpsc, watch};

use super::presence::PresenceRegistry;
use super::replay_tail::{ReplayTail, TailFrame};
use super::typing::TypingRegistry;
use crate::metrics::{Metrics, SlowReason};
use crate::wire::{seed, v2};

/// A frame waiting to be written to a socket. Queues hold it behind an
/// `Arc`: every recipient of an event shares one, and a queue's first
/// block (32 slots, allocated when the socket joins) is then 32 pointers,
/// not 32 of these (about 2.5 KB less per open socket).
#[derive(Debug, Clone)]
pub struct Outbound {
    pub frame: ByteString,
    /// What it announces, so that a session can skip what its socket
    /// already has: live copies of messages replayed as history (seed), or
    /// older than the `hello` snapshot (v2).
    pub about: About,
    /// When the message it carries (a copy or an ack) was committed, if
    /// known here: the session measures commit-to-socket latency from it.
    pub committed: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum About {
    /// A copy of this message (not an acknowledgement).
    Message {
        chat: ChatId,
        seq: Seq,
    },
    /// This chat was created.
    NewChat(ChatId),
    Other,
}

/// Numbers each socket for its life in the hub.
pub type ConnectionId = u64;

/// What a socket listens to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subscription {
    /// A seed socket: one chat's messages.
    Chat(ChatId),
    /// A v2 socket: everything that concerns the user.
    User(UserId),
}

#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    sockets: RwLock<Sockets>,
    next_id: AtomicU64,
    shutdown: watch::Sender<bool>,
    presence: Arc<dyn PresenceRegistry>,
    typing: Arc<dyn TypingRegistry>,
    shed: AtomicU64,
    dropped_slow: AtomicU64,
    metrics: Arc<Metrics>,
    /// The seed frames delivered, kept for the next history replay.
    replay_tail: Arc<ReplayTail>,
}

#[derive(Default)]
struct Sockets {
    by_chat: HashMap<ChatId, Vec<Member>>,
    by_user: HashMap<UserId, Vec<Member>>,
}

struct Member {
    id: ConnectionId,
    queue: mpsc::Sender<Arc<Outbound>>,
}

/// A socket's place in the hub. Dropping it leaves, so a session that
/// ends for any reason leaves nothing behind.
pub struct Membership {
    hub: Hub,
    subscription: Subscription,
    id: ConnectionId,
    pub outbound: mpsc::Receiver<Arc<Outbound>>,
}

impl Membership {
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// How events from this socket's own sends are recognised.
    pub fn origin(&self) -> Origin {
        Origin(self.id)
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.hub.leave(self.subscription, self.id);
    }
}

/// What became of an offer to one socket.
enum Offer {
    Queued,
    /// An ephemeral event the socket had no room for.
    Shed,
    /// An event that must arrive and cannot: the socket must go.
    TooSlow,
}

impl Hub {
    pub fn new(
        presence: Arc<dyn PresenceRegistry>,
        typing: Arc<dyn TypingRegistry>,
        metrics: Arc<Metrics>,
        replay_tail: Arc<ReplayTail>,
    ) -> Self {
        let (shutdown, _) = watch::channel(false);
        Self {
            inner: Arc::new(HubInner {
                sockets: RwLock::new(Sockets::default()),
                next_id: AtomicU64::new(1),
                shutdown,
                presence,
                typing,
                shed: AtomicU64::new(0),
                dropped_slow: AtomicU64::new(0),
                metrics,
                replay_tail,
            }),
        }
    }

    /// The seed frames of `chat` delivered lately, oldest first, with
    /// consecutive seqs (see [`ReplayTail`]); a seed socket reads them after
    /// joining.
    pub fn recent_seed_frames(&self, chat: ChatId) -> Vec<TailFrame> {
        self.inner.replay_tail.snapshot(chat)
    }

    /// Registers a seed socket on `chat` with a queue of `capacity` frames.
    pub fn join_chat(&self, chat: ChatId, capacity: usize) -> Membership {
        self.join(Subscription::Chat(chat), capacity)
    }

    /// Registers a v2 socket of `user` with a queue of `capacity` frames.
    pub fn join_user(&self, user: UserId, capacity: usize) -> Membership {
        self.join(Subscription::User(user), capacity)
    }

    fn join(&self, subscription: Subscription, capacity: usize) -> Membership {
        let (queue, outbound) = mpsc::channel(capacity.max(1));
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let member = Member { id, queue };
        let mut sockets = self.sockets_mut();
        match subscription {
            Subscription::Chat(chat) => sockets.by_chat.entry(chat).or_default().push(member),
            Subscription::User(user) => sockets.by_user.entry(user).or_default().push(member),
        }
        Membership {
            hub: self.clone(),
            subscription,
            id,
            outbound,
        }
    }

    fn leave(&self, subscription: Subscription, id: ConnectionId) {
        let mut sockets = self.sockets_mut();
        match subscription {
            Subscription::Chat(chat) => remove(&mut sockets.by_chat, chat, id),
            Subscription::User(user) => remove(&mut sockets.by_user, user, id),
        }
    }

    /// Open sockets of both protocols.
    pub fn connection_count(&self) -> usize {
        let sockets = self.sockets();
        sockets.by_chat.values().map(Vec::len).sum::<usize>()
            + sockets.by_user.values().map(Vec::len).sum::<usize>()
    }

    /// Chats with at least one open seed socket.
    pub fn chat_count(&self) -> usize {
        self.sockets().by_chat.len()
    }

    /// Where delivery is counted.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Typing and presence events shed from full queues so far.
    pub fn shed_count(&self) -> u64 {
        self.inner.shed.load(Ordering::Relaxed)
    }

    /// Sockets dropped so far because their queue could not take an event.
    pub fn dropped_slow_count(&self) -> u64 {
        self.inner.dropped_slow.load(Ordering::Relaxed)
    }

    /// Tells every session to close with 1001 (going away).
    pub fn shut_down(&self) {
        self.inner.shutdown.send_replace(true);
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    /// Delivers one committed event to every socket it concerns.
    pub fn deliver(&self, event: &ChatEvent) {
        let _ = self.deliver_reporting_typing_end(event, None);
    }

    /// [`deliver`](Self::deliver) of an event committed at `committed` (if
    /// known), returning the end of the sender's typing that a message
    /// caused (delivered here too), so a cluster can tell the other
    /// instances.
    pub fn deliver_reporting_typing_end(
        &self,
        event: &ChatEvent,
        committed: Option<Instant>,
    ) -> Option<ChatEvent> {
        let mut too_slow = Vec::new();
        {
            let sockets = self.sockets();
            match event {
                ChatEvent::MessageStored {
                    message,
                    participants,
                    origin,
                } => {
                    if let Some(members) = sockets.by_chat.get(&message.chat_id) {
                        // A message just stored is above every read cursor.
                        let outbound = Arc::new(Outbound {
                            frame: seed::message_frame(message, false),
                            about: About::Message {
                                chat: message.chat_id,
                                seq: message.seq,
                            },
                            committed,
                        });
                        // Kept before it is offered: a seed socket that
                        // joins from now on finds it there or gets it live.
                        self.inner.replay_tail.append(
                            message.chat_id,
                            TailFrame {
                                seq: message.seq,
                                sender: message.sender.id,
                                frame: outbound.frame.clone(),
                            },
                        );
                        for member in members {
                            self.offer(
                                member,
                                &outbound,
                                false,
                                Subscription::Chat(message.chat_id),
                                &mut too_slow,
                            );
                        }
                    }
                    // Encoded once for the copies and the sender's ack.
                    let mut encoded: Option<(v2::EncodedMessage, Arc<Outbound>)> = None;
                    for user in participants {
                        for member in sockets.by_user.get(user).into_iter().flatten() {
                            let (message_json, copy) = encoded.get_or_insert_with(|| {
                                let message_json = v2::EncodedMessage::new(message);
                                let copy = Arc::new(Outbound {
                                    frame: message_json.message_frame(),
                                    about: About::Message {
                                        chat: message.chat_id,
                                        seq: message.seq,
                                    },
                                    committed,
                                });
                                (message_json, copy)
                            });
                            let outbound = if *origin == Some(Origin(member.id)) {
                                Arc::new(Outbound {
                                    frame: message_json.ack_frame(false),
                                    about: About::Other,
                                    committed,
                                })
                            } else {
                                Arc::clone(copy)
                            };
                            self.offer(
                                member,
                                &outbound,
                                false,
                                Subscription::User(*user),
                                &mut too_slow,
                            );
                        }
                    }
                }
                ChatEvent::ChatCreated { views } => {
                    for view in views.iter() {
                        self.offer_chat_view(&sockets, view, &mut too_slow);
                    }
                }
                ChatEvent::CursorMoved {
                    chat_id,
                    participants,
                    user_id,
                    kind,
                    up_to,
                } => {
                    let outbound = Arc::new(Outbound {
                        frame: v2::cursor_frame(*kind, *chat_id, *user_id, *up_to),
                        about: About::Other,
                        committed: None,
                    });
                    self.offer_to_users(&sockets, participants, &outbound, false, &mut too_slow);
                }
                ChatEvent::Typing {
                    chat_id,
                    user_id,
                    recipient,
                    active,
                } => {
                    let outbound = Arc::new(Outbound {
                        frame: v2::typing_frame(*chat_id, *user_id, *active),
                        about: About::Other,
                        committed: None,
                    });
                    self.offer_to_users(&sockets, &[*recipient], &outbound, true, &mut too_slow);
                }
                ChatEvent::Presence {
                    user_id,
                    online,
                    last_seen,
                    recipients,
                } => {
                    let outbound = Arc::new(Outbound {
                        frame: v2::presence_frame(*user_id, *online, last_seen.as_ref()),
                        about: About::Other,
                        committed: None,
                    });
                    self.offer_to_users(&sockets, recipients, &outbound, true, &mut too_slow);
                }
            }
        }
        self.drop_too_slow(too_slow);
        // The typer's message ends their typing, announced after it.
        let ChatEvent::MessageStored { message, .. } = event else {
            return None;
        };
        let stopped = self
            .inner
            .typing
            .message_stored(message.chat_id, message.sender.id)?;
        self.deliver(&stopped);
        Some(stopped)
    }

    /// A chat created on another instance of a cluster: its viewer's view.
    pub fn deliver_chat_view(&self, view: &ChatSummary) {
        let mut too_slow = Vec::new();
        self.offer_chat_view(&self.sockets(), view, &mut too_slow);
        self.drop_too_slow(too_slow);
    }

    /// Only the acknowledgement of a message whose copies went out before
    /// (a cluster delivered it from the database first), to the socket
    /// that sent it.
    pub fn acknowledge(&self, message: &DirectMessage, origin: Origin) {
        let mut too_slow = Vec::new();
        {
            let sockets = self.sockets();
            let sender = message.sender.id;
            if let Some(member) = sockets
                .by_user
                .get(&sender)
                .and_then(|members| members.iter().find(|m| Origin(m.id) == origin))
            {
                let outbound = Arc::new(Outbound {
                    frame: v2::EncodedMessage::new(message).ack_frame(false),
                    about: About::Other,
                    committed: None,
                });
                self.offer(
                    member,
                    &outbound,
                    false,
                    Subscription::User(sender),
                    &mut too_slow,
                );
            }
        }
        self.drop_too_slow(too_slow);
    }

    fn offer_chat_view(
        &self,
        sockets: &Sockets,
        view: &ChatSummary,
        too_slow: &mut Vec<(Subscription, ConnectionId)>,
    ) {
        let Some(members) = sockets.by_user.get(&view.viewer) else {
            return;
        };
        let online = view
            .other_user()
            .is_some_and(|other| self.inner.presence.is_online(other.id));
        let Some(state) = v2::ChatState::new(view, online) else {
            tracing::error!(chat = %view.chat.id, viewer = %view.viewer, "a chat view without the other participant");
            return;
        };
        let outbound = Arc::new(Outbound {
            frame: v2::chat_frame(&state),
            about: About::NewChat(view.chat.id),
            committed: None,
        });
        for member in members {
            self.offer(
                member,
                &outbound,
                false,
                Subscription::User(view.viewer),
                too_slow,
            );
        }
    }

    fn drop_too_slow(&self, too_slow: Vec<(Subscription, ConnectionId)>) {
        for (subscription, id) in too_slow {
            tracing::warn!(
                ?subscription,
                connection = id,
                "outbound queue full, dropping slow connection"
            );
            self.inner.dropped_slow.fetch_add(1, Ordering::Relaxed);
            self.inner
                .metrics
                .slow_consumer_closed(SlowReason::QueueFull);
            self.leave(subscription, id);
        }
    }

    fn offer_to_users(
        &self,
        sockets: &Sockets,
        users: &[UserId],
        outbound: &Arc<Outbound>,
        ephemeral: bool,
        too_slow: &mut Vec<(Subscription, ConnectionId)>,
    ) {
        for user in users {
            for member in sockets.by_user.get(user).into_iter().flatten() {
                self.offer(
                    member,
                    outbound,
                    ephemeral,
                    Subscription::User(*user),
                    too_slow,
                );
            }
        }
    }

    fn offer(
        &self,
        member: &Member,
        outbound: &Arc<Outbound>,
        ephemeral: bool,
        subscription: Subscription,
        too_slow: &mut Vec<(Subscription, ConnectionId)>,
    ) {
        match offer(member, outbound, ephemeral) {
            Offer::Queued => {
                let depth = member.queue.max_capacity() - member.queue.capacity();
                self.inner.metrics.outbound_queue_depth(depth);
            }
            Offer::Shed => {
                self.inner.shed.fetch_add(1, Ordering::Relaxed);
            }
            Offer::TooSlow => too_slow.push((subscription, member.id)),
        }
    }

    fn sockets(&self) -> std::sync::RwLockReadGuard<'_, Sockets> {
        // A panic elsewhere while holding the lock leaves the maps
        // consistent (every update is a single insert or retain).
        self.inner
            .sockets
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn sockets_mut(&self) -> std::sync::RwLockWriteGuard<'_, Sockets> {
        self.inner
            .sockets
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

fn offer(member: &Member, outbound: &Arc<Outbound>, ephemeral: bool) -> Offer {
    // Half the queue stays for what must arrive.
    if ephemeral && member.queue.capacity() * 2 <= member.queue.max_capacity() {
        return Offer::Shed;
    }
    match member.queue.try_send(Arc::clone(outbound)) {
        Ok(()) => Offer::Queued,
        Err(mpsc::error::TrySendError::Full(_)) if ephemeral => Offer::Shed,
        Err(mpsc::error::TrySendError::Full(_)) => Offer::TooSlow,
        // The session already ended; its Membership drop is removing it.
        Err(mpsc::error::TrySendError::Closed(_)) => Offer::Queued,
    }
}

fn remove<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Vec<Member>>, key: K, id: ConnectionId) {
    if let Some(members) = map.get_mut(&key) {
        members.retain(|m| m.id != id);
        if members.is_empty() {
            map.remove(&key);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::delivery::presence::LocalPresence;
    use crate::delivery::typing::LocalTyping;
    use chat_domain::chat::{CursorKind, MessageId};
    use chat_domain::user::{User, Username};
    use chrono::Utc;
    use serde_json::Value;
    use std::time::Duration;

    pub(crate) fn hub() -> Hub {
        Hub::new(
            Arc::new(LocalPresence::new(Duration::from_secs(10))),
            Arc::new(LocalTyping::new(Duration::from_secs(6))),
            Arc::new(Metrics::new()),
            Arc::new(ReplayTail::new(1 << 20)),
        )
    }

    const ALICE: UserId = UserId::new(1);
    const BOB: UserId = UserId::new(2);

    /// Message `seq` from alice (user 1, to bob, user 2) in `chat` (also
    /// used by the fan-out tests).
    pub(crate) fn message(chat: i64, seq: i64) -> DirectMessage {
        DirectMessage {
            id: MessageId::new(seq),
            chat_id: ChatId::new(chat),
            seq: Seq::new(seq).unwrap_or_default(),
            sender: User {
                id: ALICE,
                username: Username::parse("alice").unwrap_or_else(|e| panic!("{e}")),
            },
            body: format!("m{seq}"),
            created: Utc::now(),
            client_id: None,
        }
    }

    pub(crate) fn stored(chat: i64, seq: i64, origin: Option<Origin>) -> ChatEvent {
        ChatEvent::MessageStored {
            message: message(chat, seq),
            participants: [ALICE, BOB],
            origin,
        }
    }

    fn json(outbound: &Outbound) -> Value {
        serde_json::from_str(&outbound.frame).unwrap()
    }

    #[test]
    fn the_seed_frames_delivered_to_a_chat_are_kept_for_its_next_replay() {
        let hub = hub();
        // No seed socket in chat 1 yet: nothing encoded, nothing kept.
        let _bob = hub.join_user(BOB, 8);
        hub.deliver(&stored(1, 1, None));
        assert!(hub.recent_seed_frames(ChatId::new(1)).is_empty());

        let mut seed = hub.join_chat(ChatId::new(1), 8);
        hub.deliver(&stored(1, 2, None));
        hub.deliver(&stored(1, 3, None));
        let kept = hub.recent_seed_frames(ChatId::new(1));
        let seqs: Vec<i64> = kept.iter().map(|f| f.seq.get()).collect();
        assert_eq!(seqs, [2, 3]);
        assert_eq!(kept[0].sender, ALICE);
        // The very frame the socket was sent.
        assert_eq!(seed.outbound.try_recv().unwrap().frame, kept[0].frame);
        assert!(hub.recent_seed_frames(ChatId::new(2)).is_empty());
    }

    #[test]
    fn a_message_reaches_the_chats_seed_sockets_and_both_users_v2_sockets() {
        let hub = hub();
        let mut seed = hub.join_chat(ChatId::new(1), 8);
        let mut other_chat = hub.join_chat(ChatId::new(2), 8);
        let mut bob = hub.join_user(BOB, 8);
        let mut carol = hub.join_user(UserId::new(3), 8);

        hub.deliver(&stored(1, 10, None));

        let seed_frame = json(&seed.outbound.try_recv().unwrap());
        assert_eq!(seed_frame["message"]["id"], 10);
        assert_eq!(seed_frame["message"]["is_read"], false);
        let v2_frame = json(&bob.outbound.try_recv().unwrap());
        assert_eq!(v2_frame["type"], "message");
        assert_eq!(v2_frame["message"]["seq"], 10);
        assert!(other_chat.outbound.try_recv().is_err());
        assert!(carol.outbound.try_recv().is_err());
    }

    #[test]
    fn the_sending_socket_gets_an_ack_and_the_senders_other_sockets_a_copy() {
        let hub = hub();
        let mut sender = hub.join_user(ALICE, 8);
        let mut other_device = hub.join_user(ALICE, 8);

        hub.deliver(&stored(1, 3, Some(sender.origin())));

        let ack = json(&sender.outbound.try_recv().unwrap());
        assert_eq!(ack["type"], "ack");
        assert_eq!(ack["duplicate"], false);
        assert_eq!(
            json(&other_device.outbound.try_recv().unwrap())["type"],
            "message"
        );
    }

    #[test]
    fn every_socket_of_a_protocol_gets_the_same_encoded_frame() {
        let hub = hub();
        let mut a = hub.join_chat(ChatId::new(1), 8);
        let mut b = hub.join_chat(ChatId::new(1), 8);
        let mut c = hub.join_user(BOB, 8);
        let mut d = hub.join_user(BOB, 8);

        hub.deliver(&stored(1, 10, None));

        let (fa, fb) = (
            a.outbound.try_recv().unwrap(),
            b.outbound.try_recv().unwrap(),
        );
        let (fc, fd) = (
            c.outbound.try_recv().unwrap(),
            d.outbound.try_recv().unwrap(),
        );
        // One event shared by its recipients, not a re-encoding (or even
        // a copy) per recipient.
        assert!(Arc::ptr_eq(&fa, &fb));
        assert!(Arc::ptr_eq(&fc, &fd));
        assert_ne!(fa.frame, fc.frame, "each protocol has its own encoding");
    }

    #[test]
    fn a_cursor_move_reaches_both_participants_and_no_seed_socket() {
        let hub = hub();
        let mut seed = hub.join_chat(ChatId::new(1), 8);
        let mut alice = hub.join_user(ALICE, 8);
        let mut bob = hub.join_user(BOB, 8);

        hub.deliver(&ChatEvent::CursorMoved {
            chat_id: ChatId::new(1),
            participants: [ALICE, BOB],
            user_id: BOB,
            kind: CursorKind::Read,
            up_to: Seq::new(4).unwrap(),
        });

        assert_eq!(json(&alice.outbound.try_recv().unwrap())["type"], "read");
        assert_eq!(json(&bob.outbound.try_recv().unwrap())["up_to"], 4);
        assert!(seed.outbound.try_recv().is_err());
    }

    #[test]
    fn dropping_a_membership_leaves_nothing_behind() {
        let hub = hub();
        let memberships: Vec<_> = (0..100)
            .map(|i| {
                if i % 2 == 0 {
                    hub.join_chat(ChatId::new(i % 7), 4)
                } else {
                    hub.join_user(UserId::new(i % 5), 4)
                }
            })
            .collect();
        assert_eq!(hub.connection_count(), 100);
        assert_eq!(hub.chat_count(), 7);

        drop(memberships);

        assert_eq!(hub.connection_count(), 0);
        assert_eq!(hub.chat_count(), 0);
    }

    #[test]
    fn a_socket_whose_queue_is_full_is_dropped_and_sees_its_queue_close() {
        let hub = hub();
        let mut slow = hub.join_chat(ChatId::new(1), 2);
        let mut fast = hub.join_chat(ChatId::new(1), 100);

        for seq in 1..=3 {
            hub.deliver(&stored(1, seq, None));
        }

        assert_eq!(hub.connection_count(), 1);
        assert_eq!(hub.dropped_slow_count(), 1);
        // The slow one still gets what was queued, then the end.
        assert!(slow.outbound.try_recv().is_ok());
        assert!(slow.outbound.try_recv().is_ok());
        assert!(matches!(
            slow.outbound.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
        for seq in 1..=3 {
            assert_eq!(
                fast.outbound.try_recv().unwrap().about,
                About::Message {
                    chat: ChatId::new(1),
                    seq: Seq::new(seq).unwrap()
                }
            );
        }
    }

    fn typing(active: bool) -> ChatEvent {
        ChatEvent::Typing {
            chat_id: ChatId::new(1),
            user_id: ALICE,
            recipient: BOB,
            active,
        }
    }

    #[test]
    fn typing_is_shed_once_a_queue_is_half_full_and_messages_still_fit() {
        let hub = hub();
        let mut bob = hub.join_user(BOB, 4);

        hub.deliver(&typing(true));
        hub.deliver(&typing(false));
        // Half full now: typing is shed, messages still queue.
        hub.deliver(&typing(true));
        hub.deliver(&stored(1, 1, None));
        hub.deliver(&stored(1, 2, None));

        assert_eq!(hub.shed_count(), 1);
        assert_eq!(hub.connection_count(), 1, "the socket stays");
        let kinds: Vec<Value> = std::iter::from_fn(|| bob.outbound.try_recv().ok())
            .map(|o| json(&o)["type"].clone())
            .collect();
        assert_eq!(kinds, ["typing", "typing", "message", "message"]);
    }

    #[test]
    fn a_message_ends_its_senders_typing_after_it() {
        let typing_registry = Arc::new(LocalTyping::new(Duration::from_secs(6)));
        let hub = Hub::new(
            Arc::new(LocalPresence::new(Duration::from_secs(10))),
            typing_registry.clone(),
            Arc::new(Metrics::new()),
            Arc::new(ReplayTail::new(0)),
        );
        let mut bob = hub.join_user(BOB, 8);
        let started = typing_registry.set(ChatId::new(1), ALICE, BOB, 99, true);
        hub.deliver(&started.unwrap());

        hub.deliver(&stored(1, 1, None));

        let frames: Vec<Value> = std::iter::from_fn(|| bob.outbound.try_recv().ok())
            .map(|o| json(&o))
            .collect();
        let kinds: Vec<_> = frames.iter().map(|f| f["type"].clone()).collect();
        assert_eq!(kinds, ["typing", "message", "typing"]);
        assert_eq!(frames[2]["active"], false);
    }

    #[test]
    fn shutting_down_signals_every_subscriber() {
        let hub = hub();
        let signal = hub.shutdown_signal();
        assert!(!*signal.borrow());
        hub.shut_down();
        assert!(*signal.borrow());
    }
}
