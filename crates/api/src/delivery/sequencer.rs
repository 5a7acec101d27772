//! Exactly once and in order across instances: per chat this instance's
//! sockets follow, the last `seq` delivered to them.
//!
//! Only a cluster uses it (several instances, Redis between them). There a
//! chat's messages reach this instance from two directions, its own commits
//! and the other instances' events over Redis, and Redis is only a hint: an
//! event can be late, lost (a reconnect, a full buffer) or repeated. The
//! database is the truth, so every message event goes through here:
//!
//! - the next `seq`: delivered;
//! - one already delivered: dropped (only its sender's acknowledgement
//!   still goes out, if the sender's socket is here);
//! - one past a gap: the gap is read from the database and delivered first.
//!
//! Tracking a chat starts at the position the socket that asked for it
//! already holds (its `hello` snapshot or its replayed history) and catches
//! up to the database's head at once. Message events of chats nobody here
//! follows are dropped: a socket that joins reads what it missed when its
//! chat is tracked. [`Sequencer::resync`] compares every tracked chat with
//! the database's heads, after a Redis reconnect and periodically, so even
//! the last message of a burst whose event was lost arrives.

use std::collections::HashMap;

use chat_domain::chat::{
    ChatEvent, ChatId, DirectMessage, MessageRepository, Origin, PageAnchor, PageLimit, Seq,
};

/// What to hand to the hub, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    Event(ChatEvent),
    /// A message the sockets here already have: only the socket that sent
    /// it still needs its acknowledgement.
    AckOnly {
        message: DirectMessage,
        origin: Origin,
    },
}

/// Rows read per statement when a gap is filled.
const REPAIR_PAGE: usize = 200;

#[derive(Default)]
pub struct Sequencer {
    last_delivered: HashMap<ChatId, Seq>,
}

impl Sequencer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_tracked(&self, chat: ChatId) -> bool {
        self.last_delivered.contains_key(&chat)
    }

    pub fn tracked_count(&self) -> usize {
        self.last_delivered.len()
    }

    /// Starts following `chat` from `held` (what the socket that asks
    /// already has), unless it is followed already, and delivers what the
    /// database holds beyond it.
    pub fn track(
        &mut self,
        chat: ChatId,
        held: Seq,
        history: &dyn MessageRepository,
    ) -> Vec<Delivery> {
        self.last_delivered.entry(chat).or_insert(held);
        match history.heads(&[chat]) {
            Ok(heads) => {
                let head = heads.first().map_or(Seq::ZERO, |(_, head)| *head);
                self.repair(chat, head, history)
            }
            Err(error) => {
                tracing::warn!(%chat, %error, "cannot read the chat's head; the next resync catches up");
                Vec::new()
            }
        }
    }

    /// No socket here follows `chat` any more.
    pub fn untrack(&mut self, chat: ChatId) {
        self.last_delivered.remove(&chat);
    }

    /// One `MessageStored` event, from this instance or another: what to
    /// deliver for it (nothing, its ack, or the gap before it and itself).
    pub fn message(&mut self, event: ChatEvent, history: &dyn MessageRepository) -> Vec<Delivery> {
        let ChatEvent::MessageStored {
            message, origin, ..
        } = &event
        else {
            return vec![Delivery::Event(event)];
        };
        let ack_only = || {
            origin
                .map(|origin| Delivery::AckOnly {
                    message: message.clone(),
                    origin,
                })
                .into_iter()
                .collect()
        };
        let chat = message.chat_id;
        let seq = message.seq;
        let Some(&last) = self.last_delivered.get(&chat) else {
            // Nobody here follows this chat (a socket that is joining reads
            // it when the chat is tracked); a sender here still gets its ack.
            return ack_only();
        };
        if seq <= last {
            return ack_only();
        }
        let mut out = Vec::new();
        if seq.get() > last.get() + 1 {
            out = self.repair(chat, Seq::new(seq.get() - 1).unwrap_or(Seq::ZERO), history);
            if self
                .last_delivered
                .get(&chat)
                .is_some_and(|l| l.get() + 1 != seq.get())
            {
                // The gap could not be read (database down): deliver nothing
                // out of order; the next resync delivers the rest.
                out.extend(ack_only());
                return out;
            }
        }
        self.last_delivered.insert(chat, seq);
        out.push(Delivery::Event(event));
        out
    }

    /// Compares every tracked chat with the database and delivers what is
    /// missing: after a Redis reconnect, and every few seconds.
    pub fn resync(&mut self, history: &dyn MessageRepository) -> Vec<Delivery> {
        let chats: Vec<ChatId> = self.last_delivered.keys().copied().collect();
        let mut out = Vec::new();
        for batch in chats.chunks(500) {
            match history.heads(batch) {
                Ok(heads) => {
                    for (chat, head) in heads {
                        out.extend(self.repair(chat, head, history));
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "resync: cannot read chat heads; trying again later");
                    return out;
                }
            }
        }
        out
    }

    /// Delivers `(last, up_to]` of `chat` from the database, in order.
    fn repair(
        &mut self,
        chat: ChatId,
        up_to: Seq,
        history: &dyn MessageRepository,
    ) -> Vec<Delivery> {
        let mut out = Vec::new();
        while let Some(&last) = self.last_delivered.get(&chat) {
            if last >= up_to {
                break;
            }
            let wanted = usize::try_from(up_to.get() - last.get()).unwrap_or(REPAIR_PAGE);
            let limit = PageLimit::new(wanted.min(REPAIR_PAGE)).unwrap_or(PageLimit::DEFAULT);
            let page = match history.messages_page(chat, PageAnchor::After(last), limit) {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(%chat, %error, "cannot read a gap; the next resync tries again");
                    break;
                }
            };
            if page.messages.is_empty() {
                break;
            }
            let participants = page.read_cursors.participants();
            for message in page.messages {
                if message.seq.get() != self.last_delivered[&chat].get() + 1 {
                    break;
                }
                self.last_delivered.insert(chat, message.seq);
                out.push(Delivery::Event(ChatEvent::MessageStored {
                    message,
                    participants,
                    origin: None,
                }));
            }
        }
        if !out.is_empty() {
            tracing::info!(%chat, repaired = out.len(), "gap filled from the database");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::delivery::hub::tests::{message, stored};
    use chat_domain::chat::{
        CursorChange, CursorKind, Inserted, MessagePage, NewMessage, ReadCursors,
    };
    use chat_domain::user::UserId;
    use chat_domain::RepositoryError;

    /// The database: chat 1 holds messages 1..=head; `down` fails every read.
    struct History {
        head: Mutex<i64>,
        down: Mutex<bool>,
    }

    impl History {
        fn with_head(head: i64) -> Self {
            Self {
                head: Mutex::new(head),
                down: Mutex::new(false),
            }
        }
        fn grow_to(&self, head: i64) {
            *self.head.lock().unwrap() = head;
        }
        fn check(&self) -> Result<i64, RepositoryError> {
            if *self.down.lock().unwrap() {
                return Err(RepositoryError::unavailable("down"));
            }
            Ok(*self.head.lock().unwrap())
        }
    }

    impl MessageRepository for History {
        fn insert_messages(&self, _: &[NewMessage]) -> Result<Vec<Inserted>, RepositoryError> {
            unimplemented!()
        }
        fn heads(&self, chats: &[ChatId]) -> Result<Vec<(ChatId, Seq)>, RepositoryError> {
            let head = self.check()?;
            Ok(chats
                .iter()
                .filter(|c| c.get() == 1 && head > 0)
                .map(|c| (*c, Seq::new(head).unwrap()))
                .collect())
        }
        fn messages_page(
            &self,
            chat: ChatId,
            anchor: PageAnchor,
            limit: PageLimit,
        ) -> Result<MessagePage, RepositoryError> {
            let head = self.check()?;
            let PageAnchor::After(after) = anchor else {
                unimplemented!()
            };
            let to = head.min(after.get() + limit.get() as i64);
            Ok(MessagePage {
                messages: (after.get() + 1..=to)
                    .map(|s| message(chat.get(), s))
                    .collect(),
                has_more_before: after.get() > 0,
                has_more_after: to < head,
                head_seq: Seq::new(head).unwrap(),
                read_cursors: ReadCursors::new(
                    (UserId::new(1), Seq::ZERO),
                    (UserId::new(2), Seq::ZERO),
                ),
            })
        }
        fn move_cursor(
            &self,
            _: ChatId,
            _: UserId,
            _: CursorKind,
            _: Seq,
        ) -> Result<CursorChange, RepositoryError> {
            unimplemented!()
        }
    }

    fn seqs(out: &[Delivery]) -> Vec<i64> {
        out.iter()
            .map(|d| match d {
                Delivery::Event(ChatEvent::MessageStored { message, .. }) => message.seq.get(),
                Delivery::AckOnly { message, .. } => -message.seq.get(),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    const CHAT: ChatId = ChatId::new(1);

    #[test]
    fn tracking_starts_from_what_the_socket_holds_and_catches_up_to_the_head() {
        let history = History::with_head(7);
        let mut sequencer = Sequencer::new();

        assert_eq!(
            seqs(&sequencer.track(CHAT, Seq::new(4).unwrap(), &history)),
            [5, 6, 7]
        );
        assert_eq!(
            seqs(&sequencer.track(CHAT, Seq::new(2).unwrap(), &history)),
            Vec::<i64>::new(),
            "tracked already"
        );
    }

    #[test]
    fn the_next_seq_is_delivered_a_repeat_dropped_a_gap_filled_first() {
        let history = History::with_head(3);
        let mut sequencer = Sequencer::new();
        sequencer.track(CHAT, Seq::new(3).unwrap(), &history);

        assert_eq!(seqs(&sequencer.message(stored(1, 4, None), &history)), [4]);
        assert_eq!(
            seqs(&sequencer.message(stored(1, 4, None), &history)),
            Vec::<i64>::new()
        );
        history.grow_to(9);
        assert_eq!(
            seqs(&sequencer.message(stored(1, 9, None), &history)),
            [5, 6, 7, 8, 9]
        );
        assert_eq!(
            seqs(&sequencer.message(stored(1, 6, None), &history)),
            Vec::<i64>::new(),
            "late: filled already"
        );
    }

    #[test]
    fn a_repeat_that_a_local_socket_sent_still_gets_its_ack() {
        let history = History::with_head(5);
        let mut sequencer = Sequencer::new();
        sequencer.track(CHAT, Seq::new(5).unwrap(), &history);

        let out = sequencer.message(stored(1, 5, Some(Origin(42))), &history);

        assert!(
            matches!(
                out.as_slice(),
                [Delivery::AckOnly {
                    origin: Origin(42),
                    ..
                }]
            ),
            "{out:?}"
        );
        assert_eq!(seqs(&out), [-5]);
    }

    #[test]
    fn untracked_chats_deliver_nothing_but_acks() {
        let history = History::with_head(5);
        let mut sequencer = Sequencer::new();

        assert_eq!(
            seqs(&sequencer.message(stored(1, 5, None), &history)),
            Vec::<i64>::new()
        );
        assert_eq!(
            seqs(&sequencer.message(stored(1, 5, Some(Origin(1))), &history)),
            [-5]
        );
    }

    #[test]
    fn with_the_database_down_nothing_goes_out_of_order_and_resync_catches_up() {
        let history = History::with_head(2);
        let mut sequencer = Sequencer::new();
        sequencer.track(CHAT, Seq::new(2).unwrap(), &history);
        history.grow_to(5);
        *history.down.lock().unwrap() = true;

        assert_eq!(
            seqs(&sequencer.message(stored(1, 5, Some(Origin(9))), &history)),
            [-5],
            "only the ack"
        );
        assert_eq!(seqs(&sequencer.resync(&history)), Vec::<i64>::new());

        *history.down.lock().unwrap() = false;
        assert_eq!(seqs(&sequencer.resync(&history)), [3, 4, 5]);
        assert_eq!(seqs(&sequencer.resync(&history)), Vec::<i64>::new());
    }

    #[test]
    fn resync_delivers_a_lost_last_message_and_long_gaps_page_by_page() {
        let history = History::with_head(1);
        let mut sequencer = Sequencer::new();
        sequencer.track(CHAT, Seq::new(1).unwrap(), &history);
        history.grow_to(1 + 450);

        let out = sequencer.resync(&history);

        assert_eq!(seqs(&out), (2..=451).collect::<Vec<_>>());
        sequencer.untrack(CHAT);
        assert!(!sequencer.is_tracked(CHAT));
    }
}
