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
//! - one past a gap: held until the gap closes (the missing message is
//!   usually this instance's own, a moment behind in the queue), or read
//!   from the database at a resync once it has been open a moment.
//!
//! Tracking a chat starts at the position the socket that asked for it
//! already holds (its `hello` snapshot or its replayed history) and catches
//! up to the database's head at once. Message events of chats nobody here
//! follows are dropped: a socket that joins reads what it missed when its
//! chat is tracked. [`Sequencer::resync`] compares every tracked chat with
//! the database's heads, after a Redis reconnect and periodically, so even
//! the last message of a burst whose event was lost arrives, within two
//! resync intervals.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use chat_domain::chat::{
    ChatEvent, ChatId, DirectMessage, Gap, GapFill, MessageRepository, Origin, PageAnchor,
    PageLimit, Seq,
};
use chat_domain::user::UserId;

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
/// [`REPAIR_PAGE`] as a page size.
const REPAIR_LIMIT: PageLimit = PageLimit::MAX;
/// Events held beyond a gap, per chat, before the gap is read at once.
const MAX_PARKED: usize = 1000;
/// How long a gap must have been seen before it is read from the database:
/// long enough for this instance's own events, which follow their commit
/// by microseconds (milliseconds under load), to arrive first. Resyncs can
/// come back to back (a reconnect and a tick), so this is a time, not a
/// count of resyncs.
const GAP_GRACE: Duration = Duration::from_millis(250);

#[derive(Default)]
pub struct Sequencer {
    last_delivered: HashMap<ChatId, Seq>,
    /// Events that arrived beyond a gap, waiting for it to close.
    parked: HashMap<ChatId, BTreeMap<Seq, ChatEvent>>,
    /// Heads seen ahead of what was delivered, and when: repaired at a
    /// resync once older than [`GAP_GRACE`].
    suspects: HashMap<ChatId, (Seq, Instant)>,
    /// Messages read from the database to fill gaps, since last taken (a
    /// socket's catch-up when it starts following a chat is not a gap).
    repaired: usize,
}

impl Sequencer {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many messages gaps were filled with since the last call.
    pub fn take_repaired(&mut self) -> usize {
        std::mem::take(&mut self.repaired)
    }

    pub fn is_tracked(&self, chat: ChatId) -> bool {
        self.last_delivered.contains_key(&chat)
    }

    /// Starts following each of `chats` from `held` (what the socket that
    /// asks already has), unless it is followed already, and delivers what
    /// the database holds beyond it; one statement reads the heads of up to
    /// 500 of them (a v2 user may have hundreds of chats). A chat just
    /// tracked has no socket here that could be sending into it, so nothing
    /// this delivers can be a socket's own message still on its way.
    pub fn track(
        &mut self,
        chats: &[(ChatId, Seq)],
        history: &dyn MessageRepository,
    ) -> Vec<Delivery> {
        let mut new = Vec::new();
        for &(chat, held) in chats {
            if let std::collections::hash_map::Entry::Vacant(entry) =
                self.last_delivered.entry(chat)
            {
                entry.insert(held);
                new.push(chat);
            }
        }
        let mut out = Vec::new();
        for batch in new.chunks(500) {
            match history.heads(batch) {
                Ok(heads) => {
                    let gaps: Vec<Gap> = heads
                        .iter()
                        .filter_map(|&(chat, up_to)| {
                            let after = *self.last_delivered.get(&chat)?;
                            (up_to > after).then_some(Gap { chat, after, up_to })
                        })
                        .collect();
                    let mut read_ahead = Self::read_gaps(&gaps, history);
                    for (chat, head) in heads {
                        let first = read_ahead.remove(&chat);
                        out.extend(self.repair(chat, head, history, first));
                    }
                }
                Err(error) => {
                    // They are tracked: the next resync compares them with the database.
                    tracing::warn!(%error, "cannot read the new chats' heads; the next resync catches up");
                }
            }
        }
        out
    }

    /// No socket here follows `chat` any more.
    pub fn untrack(&mut self, chat: ChatId) {
        self.last_delivered.remove(&chat);
        self.parked.remove(&chat);
        self.suspects.remove(&chat);
    }

    /// One `MessageStored` event, from this instance or another: what to
    /// deliver for it (nothing, its ack, itself and what it unblocks).
    ///
    /// An event beyond a gap waits rather than having the gap read at once:
    /// the missing message is most often this instance's own, committed and
    /// a moment away in the queue, and read from the database it would go
    /// out as a copy to the very socket that sent it instead of as its ack.
    /// A gap still open at a resync [`GAP_GRACE`] after it was first seen
    /// is read then.
    pub fn message(&mut self, event: ChatEvent, history: &dyn MessageRepository) -> Vec<Delivery> {
        let ChatEvent::MessageStored {
            message, origin, ..
        } = &event
        else {
            return vec![Delivery::Event(event)];
        };
        let chat = message.chat_id;
        let seq = message.seq;
        let Some(&last) = self.last_delivered.get(&chat) else {
            // Nobody here follows this chat (a socket that is joining reads
            // it when the chat is tracked); a sender here still gets its ack.
            return ack_only(message, *origin);
        };
        if seq <= last {
            return ack_only(message, *origin);
        }
        if seq.get() > last.get() + 1 {
            let parked = self.parked.entry(chat).or_default();
            parked.insert(seq, event);
            if parked.len() > MAX_PARKED {
                return self.fill(chat, seq, history, None);
            }
            return Vec::new();
        }
        self.last_delivered.insert(chat, seq);
        let mut out = vec![Delivery::Event(event)];
        out.extend(self.unpark(chat));
        out
    }

    /// Compares every tracked chat with the database: repairs what has been
    /// missing for [`GAP_GRACE`], and notes what is missing now. Called
    /// after a Redis reconnect and every few seconds, so a message whose
    /// event was lost arrives within about two intervals.
    pub fn resync(&mut self, history: &dyn MessageRepository) -> Vec<Delivery> {
        let mut out = Vec::new();
        let (due, young): (Vec<_>, Vec<_>) = std::mem::take(&mut self.suspects)
            .into_iter()
            .partition(|(_, (_, seen))| seen.elapsed() >= GAP_GRACE);
        self.suspects.extend(young);
        let mut read_ahead = self.read_first_gaps(&due, history);
        for (chat, (head, _)) in due {
            let first_gap = read_ahead.remove(&chat);
            out.extend(self.fill(chat, head, history, first_gap));
        }
        let chats: Vec<ChatId> = self.last_delivered.keys().copied().collect();
        for batch in chats.chunks(500) {
            match history.heads(batch) {
                Ok(heads) => {
                    for (chat, head) in heads {
                        if self
                            .last_delivered
                            .get(&chat)
                            .is_some_and(|last| *last < head)
                        {
                            // The first sighting counts: its time, its head.
                            self.suspects.entry(chat).or_insert((head, Instant::now()));
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "resync: cannot read chat heads; trying again later");
                    break;
                }
            }
        }
        out
    }

    /// The first gap of each chat due for repair, read at once (one
    /// statement per 500 chats) rather than one read per chat: after a
    /// Redis outage every chat followed here may have one. What is not read
    /// here (a failure, a gap longer than a page, the gaps between parked
    /// events) `fill` reads.
    fn read_first_gaps(
        &self,
        due: &[(ChatId, (Seq, Instant))],
        history: &dyn MessageRepository,
    ) -> HashMap<ChatId, GapFill> {
        let gaps: Vec<Gap> = due
            .iter()
            .filter_map(|&(chat, (head, _))| {
                let after = *self.last_delivered.get(&chat)?;
                let next_parked = self
                    .parked
                    .get(&chat)
                    .and_then(|parked| parked.keys().next().copied());
                let up_to = next_parked.map_or(head, |parked| {
                    head.min(Seq::new(parked.get() - 1).unwrap_or(Seq::ZERO))
                });
                (up_to > after).then_some(Gap { chat, after, up_to })
            })
            .collect();
        Self::read_gaps(&gaps, history)
    }

    /// `gaps` read in one call, by chat; nothing on a failure (the callers
    /// then read chat by chat, and note what still fails for later).
    fn read_gaps(gaps: &[Gap], history: &dyn MessageRepository) -> HashMap<ChatId, GapFill> {
        if gaps.is_empty() {
            return HashMap::new();
        }
        match history.read_gaps(gaps, REPAIR_LIMIT) {
            Ok(fills) => fills.into_iter().map(|fill| (fill.chat, fill)).collect(),
            Err(error) => {
                tracing::warn!(%error, gaps = gaps.len(), "cannot read the gaps at once; reading them chat by chat");
                HashMap::new()
            }
        }
    }

    /// Delivers everything up to `up_to`: the gaps from the database (the
    /// first perhaps already read, `first_gap`), the parked events as
    /// themselves (so their senders get acks, not copies).
    fn fill(
        &mut self,
        chat: ChatId,
        up_to: Seq,
        history: &dyn MessageRepository,
        mut first_gap: Option<GapFill>,
    ) -> Vec<Delivery> {
        let mut out = Vec::new();
        while let Some(&last) = self.last_delivered.get(&chat) {
            if last >= up_to {
                break;
            }
            let next_parked = self
                .parked
                .get(&chat)
                .and_then(|parked| parked.keys().next().copied())
                .filter(|parked| *parked <= up_to);
            let gap_end = next_parked.map_or(up_to, |parked| {
                Seq::new(parked.get() - 1).unwrap_or(Seq::ZERO)
            });
            let before = out.len();
            if gap_end > last {
                let repaired = self.repair(chat, gap_end, history, first_gap.take());
                self.repaired += repaired.len();
                out.extend(repaired);
            }
            out.extend(self.unpark(chat));
            if out.len() == before {
                break; // the database could not be read: the next resync
            }
        }
        out
    }

    /// Delivers the parked events that now follow on, in order.
    fn unpark(&mut self, chat: ChatId) -> Vec<Delivery> {
        let mut out = Vec::new();
        let Some(parked) = self.parked.get_mut(&chat) else {
            return out;
        };
        let Some(&(mut last)) = self.last_delivered.get(&chat) else {
            return out;
        };
        while let Some(entry) = parked.first_entry() {
            let seq = *entry.key();
            if seq.get() > last.get() + 1 {
                break;
            }
            let event = entry.remove();
            if seq <= last {
                // Read from the database meanwhile: only its ack is due.
                if let ChatEvent::MessageStored {
                    message, origin, ..
                } = &event
                {
                    out.extend(ack_only(message, *origin));
                }
                continue;
            }
            last = seq;
            out.push(Delivery::Event(event));
        }
        if parked.is_empty() {
            self.parked.remove(&chat);
        }
        self.last_delivered.insert(chat, last);
        out
    }

    /// Delivers `(last, up_to]` of `chat` from the database, in order,
    /// starting with what was read ahead (`read`), if it follows on.
    fn repair(
        &mut self,
        chat: ChatId,
        up_to: Seq,
        history: &dyn MessageRepository,
        read: Option<GapFill>,
    ) -> Vec<Delivery> {
        let mut out = Vec::new();
        if let Some(read) = read {
            self.deliver_following(chat, up_to, read.messages, read.participants, &mut out);
        }
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
                    self.suspects
                        .insert(chat, (up_to, Instant::now() - GAP_GRACE));
                    break;
                }
            };
            if page.messages.is_empty() {
                break;
            }
            let participants = page.read_cursors.participants();
            self.deliver_following(chat, up_to, page.messages, participants, &mut out);
        }
        if !out.is_empty() {
            tracing::info!(%chat, repaired = out.len(), "gap filled from the database");
        }
        out
    }

    /// Delivers `messages` read from the database, oldest first, for as
    /// long as each is the next `seq` of `chat` and at most `up_to`.
    fn deliver_following(
        &mut self,
        chat: ChatId,
        up_to: Seq,
        messages: Vec<DirectMessage>,
        participants: [UserId; 2],
        out: &mut Vec<Delivery>,
    ) {
        for message in messages {
            let follows = self
                .last_delivered
                .get(&chat)
                .is_some_and(|last| message.seq.get() == last.get() + 1);
            if !follows || message.seq > up_to {
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
}

fn ack_only(message: &DirectMessage, origin: Option<Origin>) -> Vec<Delivery> {
    origin
        .map(|origin| Delivery::AckOnly {
            message: message.clone(),
            origin,
        })
        .into_iter()
        .collect()
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

    /// The database: chats 1..=`chats` each hold messages 1..=head; `down`
    /// fails every read.
    struct History {
        head: Mutex<i64>,
        chats: i64,
        down: Mutex<bool>,
        head_reads: Mutex<usize>,
        page_reads: Mutex<usize>,
        gap_reads: Mutex<usize>,
    }

    impl History {
        fn with_head(head: i64) -> Self {
            Self::of_chats(1, head)
        }
        fn of_chats(chats: i64, head: i64) -> Self {
            Self {
                head: Mutex::new(head),
                chats,
                down: Mutex::new(false),
                head_reads: Mutex::new(0),
                page_reads: Mutex::new(0),
                gap_reads: Mutex::new(0),
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
            panic!("not used by the sequencer")
        }
        fn heads(&self, chats: &[ChatId]) -> Result<Vec<(ChatId, Seq)>, RepositoryError> {
            *self.head_reads.lock().unwrap() += 1;
            let head = self.check()?;
            Ok(chats
                .iter()
                .filter(|c| (1..=self.chats).contains(&c.get()) && head > 0)
                .map(|c| (*c, Seq::new(head).unwrap()))
                .collect())
        }
        fn messages_page(
            &self,
            chat: ChatId,
            anchor: PageAnchor,
            limit: PageLimit,
        ) -> Result<MessagePage, RepositoryError> {
            *self.page_reads.lock().unwrap() += 1;
            let head = self.check()?;
            let PageAnchor::After(after) = anchor else {
                panic!("not used by the sequencer")
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
        fn read_gaps(
            &self,
            gaps: &[Gap],
            limit: PageLimit,
        ) -> Result<Vec<GapFill>, RepositoryError> {
            *self.gap_reads.lock().unwrap() += 1;
            let head = self.check()?;
            Ok(gaps
                .iter()
                .filter(|gap| (1..=self.chats).contains(&gap.chat.get()))
                .map(|gap| {
                    let to = head
                        .min(gap.up_to.get())
                        .min(gap.after.get() + limit.get() as i64);
                    GapFill {
                        chat: gap.chat,
                        participants: [UserId::new(1), UserId::new(2)],
                        messages: (gap.after.get() + 1..=to)
                            .map(|s| message(gap.chat.get(), s))
                            .collect(),
                    }
                })
                .filter(|fill| !fill.messages.is_empty())
                .collect())
        }
        fn move_cursor(
            &self,
            _: ChatId,
            _: UserId,
            _: CursorKind,
            _: Seq,
        ) -> Result<CursorChange, RepositoryError> {
            panic!("not used by the sequencer")
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
            seqs(&sequencer.track(&[(CHAT, Seq::new(4).unwrap())], &history)),
            [5, 6, 7]
        );
        assert_eq!(
            seqs(&sequencer.track(&[(CHAT, Seq::new(2).unwrap())], &history)),
            Vec::<i64>::new(),
            "tracked already"
        );
        assert_eq!(sequencer.take_repaired(), 0, "a catch-up is not a gap");
    }

    #[test]
    fn the_next_seq_is_delivered_a_repeat_dropped_an_event_past_a_gap_held_until_it_closes() {
        let history = History::with_head(3);
        let mut sequencer = Sequencer::new();
        sequencer.track(&[(CHAT, Seq::new(3).unwrap())], &history);

        assert_eq!(seqs(&sequencer.message(stored(1, 4, None), &history)), [4]);
        assert_eq!(
            seqs(&sequencer.message(stored(1, 4, None), &history)),
            Vec::<i64>::new()
        );
        history.grow_to(7);
        assert_eq!(
            seqs(&sequencer.message(stored(1, 7, None), &history)),
            Vec::<i64>::new(),
            "held"
        );
        assert_eq!(
            seqs(&sequencer.message(stored(1, 6, None), &history)),
            Vec::<i64>::new(),
            "held"
        );
        assert_eq!(
            seqs(&sequencer.message(stored(1, 5, Some(Origin(3))), &history)),
            [5, 6, 7]
        );
    }

    #[test]
    fn a_gap_open_for_a_moment_is_read_from_the_database_at_a_resync() {
        let history = History::with_head(3);
        let mut sequencer = Sequencer::new();
        sequencer.track(&[(CHAT, Seq::new(3).unwrap())], &history);
        history.grow_to(6);
        assert_eq!(
            seqs(&sequencer.message(stored(1, 6, Some(Origin(8))), &history)),
            Vec::<i64>::new()
        );

        assert_eq!(
            seqs(&sequencer.resync(&history)),
            Vec::<i64>::new(),
            "first: only noted"
        );
        assert!(sequencer.resync(&history).is_empty(), "too young");
        std::thread::sleep(GAP_GRACE);
        let out = sequencer.resync(&history);
        assert_eq!(
            seqs(&out),
            [4, 5, 6],
            "the parked 6 goes with its origin: its ack"
        );
        assert!(matches!(
            &out[2],
            Delivery::Event(ChatEvent::MessageStored {
                origin: Some(Origin(8)),
                ..
            })
        ));
        // 4 and 5 came from the database (the metric's count); 6 was parked.
        assert_eq!(sequencer.take_repaired(), 2);
        assert_eq!(sequencer.take_repaired(), 0);
    }

    #[test]
    fn a_message_read_from_the_database_before_its_own_event_gets_only_its_ack_later() {
        let history = History::with_head(2);
        let mut sequencer = Sequencer::new();
        sequencer.track(&[(CHAT, Seq::new(2).unwrap())], &history);
        history.grow_to(4);
        sequencer.resync(&history);
        std::thread::sleep(GAP_GRACE);
        assert_eq!(seqs(&sequencer.resync(&history)), [3, 4]);

        assert_eq!(
            seqs(&sequencer.message(stored(1, 4, Some(Origin(5))), &history)),
            [-4]
        );
    }

    #[test]
    fn a_repeat_that_a_local_socket_sent_still_gets_its_ack() {
        let history = History::with_head(5);
        let mut sequencer = Sequencer::new();
        sequencer.track(&[(CHAT, Seq::new(5).unwrap())], &history);

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
    fn a_user_with_many_chats_is_tracked_with_one_head_read_per_500() {
        let history = History::with_head(2);
        let mut sequencer = Sequencer::new();
        let chats: Vec<(ChatId, Seq)> = (1..=700).map(|c| (ChatId::new(c), Seq::ZERO)).collect();

        let out = sequencer.track(&chats, &history);

        assert_eq!(seqs(&out), [1, 2], "chat 1 caught up; the others are empty");
        assert_eq!(*history.head_reads.lock().unwrap(), 2);
        assert!(sequencer.track(&chats, &history).is_empty());
        assert_eq!(
            *history.head_reads.lock().unwrap(),
            2,
            "tracked already: nothing read"
        );
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
        sequencer.track(&[(CHAT, Seq::new(2).unwrap())], &history);
        history.grow_to(5);
        *history.down.lock().unwrap() = true;

        assert_eq!(
            seqs(&sequencer.message(stored(1, 5, Some(Origin(9))), &history)),
            Vec::<i64>::new()
        );
        assert_eq!(seqs(&sequencer.resync(&history)), Vec::<i64>::new());
        assert_eq!(seqs(&sequencer.resync(&history)), Vec::<i64>::new());

        *history.down.lock().unwrap() = false;
        sequencer.resync(&history);
        std::thread::sleep(GAP_GRACE);
        assert_eq!(seqs(&sequencer.resync(&history)), [3, 4, 5]);
        assert_eq!(seqs(&sequencer.resync(&history)), Vec::<i64>::new());
    }

    #[test]
    fn a_resync_reads_the_gaps_of_every_chat_at_once() {
        let history = History::of_chats(300, 1);
        let mut sequencer = Sequencer::new();
        let chats: Vec<(ChatId, Seq)> = (1..=300)
            .map(|c| (ChatId::new(c), Seq::new(1).unwrap()))
            .collect();
        sequencer.track(&chats, &history);
        // Redis was down: every chat's next three messages were missed.
        history.grow_to(4);

        assert!(sequencer.resync(&history).is_empty());
        std::thread::sleep(GAP_GRACE);
        let out = sequencer.resync(&history);

        assert_eq!(out.len(), 300 * 3);
        for chat in [1, 150, 300] {
            let delivered: Vec<i64> = out
                .iter()
                .filter_map(|d| match d {
                    Delivery::Event(ChatEvent::MessageStored { message, .. })
                        if message.chat_id.get() == chat =>
                    {
                        Some(message.seq.get())
                    }
                    _ => None,
                })
                .collect();
            assert_eq!(delivered, [2, 3, 4], "chat {chat}");
        }
        assert_eq!(
            *history.gap_reads.lock().unwrap(),
            1,
            "one read for 300 gaps"
        );
        assert_eq!(*history.page_reads.lock().unwrap(), 0, "no read per chat");
    }

    #[test]
    fn resync_delivers_a_lost_last_message_and_long_gaps_page_by_page() {
        let history = History::with_head(1);
        let mut sequencer = Sequencer::new();
        sequencer.track(&[(CHAT, Seq::new(1).unwrap())], &history);
        history.grow_to(1 + 450);

        assert!(sequencer.resync(&history).is_empty());
        std::thread::sleep(GAP_GRACE);
        let out = sequencer.resync(&history);

        assert_eq!(seqs(&out), (2..=451).collect::<Vec<_>>());
        sequencer.untrack(CHAT);
        assert!(!sequencer.is_tracked(CHAT));
    }
}
