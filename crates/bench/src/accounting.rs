//! Delivery accounting: did every participant get every message exactly
//! once, in each sender's order, and how long did it take?
//!
//! Pure bookkeeping, no I/O: each connection owns a [`ConnLedger`] and feeds
//! it the tags of the frames it receives; at the end [`tally`] sets the
//! ledgers against how many messages each connection sent. The rule it
//! checks is the API's: a message sent on a chat's socket is delivered to
//! every open connection of the chat, its sender's included (that copy is
//! the sender's acknowledgement), once, and a receiver sees each sender's
//! messages in the order they were sent.
//!
//! Connections are numbered so that the two participants of a chat are
//! `2k` and `2k + 1` (see [`crate::plan`]); a ledger only needs its own
//! number and its peer's.
//!
//! Over protocol v2 the sender's copy is its `ack`, and the same rule holds;
//! v2 also numbers each chat's messages (`seq`), and a socket must get its
//! chat's messages and acks in that order, so a v2 ledger checks the order
//! across both senders too ([`ConnLedger::on_v2_message`]).

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::tag::Tag;
use crate::v2::Msg;

/// Sequence numbers above this are treated as forged rather than grown
/// into (a bitset of 2^28 bits is 32 MiB; no run sends that many per
/// connection).
const MAX_SEQ: u64 = 1 << 28;

/// The measurement window, in nanoseconds since the run's time origin:
/// warm-up before it and the drain after it are excluded from rates and
/// latencies (but not from loss and duplicate accounting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_ns: u64,
    pub end_ns: u64,
}

impl Window {
    /// A window nothing falls into (for phases that measure no latency).
    pub const EMPTY: Window = Window {
        start_ns: 0,
        end_ns: 0,
    };

    pub fn contains(&self, t_ns: u64) -> bool {
        t_ns >= self.start_ns && t_ns < self.end_ns
    }

    pub fn seconds(&self) -> f64 {
        self.end_ns.saturating_sub(self.start_ns) as f64 / 1e9
    }
}

/// What one received message frame was, for the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reception {
    /// First copy of one of this connection's own messages (its ack).
    OwnFirst { seq: u64 },
    /// First copy of a message of the peer.
    PeerFirst { seq: u64 },
    /// A copy already received.
    Duplicate,
    /// A message of this run from a connection outside this chat.
    Misrouted,
    /// Not from this run, or not written by this tool.
    Foreign,
}

/// The sequence numbers received from one sender at one receiver.
#[derive(Debug, Clone, Default)]
pub struct SeqSet {
    words: Vec<u64>,
    distinct: u64,
    duplicates: u64,
    out_of_order: u64,
    highest: Option<u64>,
    /// Numbers never sent that arrived before a [`SeqSet::forget`].
    forgotten_phantoms: u64,
}

impl SeqSet {
    /// Records `seq`; `true` when it is its first copy. A first copy with a
    /// lower number than one already seen is a per-sender order violation;
    /// a repeated copy counts as a duplicate only (not also as out of order).
    pub fn record(&mut self, seq: u64) -> bool {
        let word = (seq / 64) as usize;
        let bit = 1u64 << (seq % 64);
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        if self.words[word] & bit != 0 {
            self.duplicates += 1;
            return false;
        }
        self.words[word] |= bit;
        self.distinct += 1;
        match self.highest {
            Some(highest) if seq < highest => self.out_of_order += 1,
            _ => self.highest = Some(seq),
        }
        true
    }

    /// Forgets which numbers arrived (a new socket, owed them all again),
    /// keeping what was wrong with them: duplicates, order violations, and
    /// numbers that were not among the `sent`.
    pub fn forget(&mut self, sent: u64) {
        self.forgotten_phantoms += self.distinct - self.distinct_below(sent);
        self.words.clear();
        self.distinct = 0;
        self.highest = None;
    }

    /// Distinct sequence numbers received, of any value.
    pub fn distinct(&self) -> u64 {
        self.distinct
    }

    /// Distinct sequence numbers below `n`: the messages, of `n` sent, that
    /// arrived.
    pub fn distinct_below(&self, n: u64) -> u64 {
        let full_words = (n / 64) as usize;
        let mut count: u64 = self
            .words
            .iter()
            .take(full_words)
            .map(|w| u64::from(w.count_ones()))
            .sum();
        let rest = n % 64;
        if rest > 0 {
            if let Some(word) = self.words.get(full_words) {
                count += u64::from((word & ((1u64 << rest) - 1)).count_ones());
            }
        }
        count
    }

    fn tally(&self, sent: u64) -> StreamTally {
        let delivered = self.distinct_below(sent);
        StreamTally {
            expected: sent,
            delivered,
            lost: sent - delivered,
            duplicated: self.duplicates,
            out_of_order: self.out_of_order,
            // Received but never sent: forged or corrupted sequence numbers.
            phantom: self.distinct - delivered + self.forgotten_phantoms,
        }
    }
}

/// One sender's stream as seen by one receiver, set against what was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct StreamTally {
    expected: u64,
    delivered: u64,
    lost: u64,
    duplicated: u64,
    out_of_order: u64,
    phantom: u64,
}

/// Everything one connection observed.
#[derive(Debug, Clone)]
pub struct ConnLedger {
    pub conn: u32,
    pub peer: u32,
    run: u64,
    /// Messages this connection sent (sequence numbers `0..sent`).
    pub sent: u64,
    own: SeqSet,
    from_peer: SeqSet,
    pub error_frames: u64,
    pub foreign: u64,
    pub misrouted: u64,
    /// First copies of the peer's messages received inside the window: the
    /// delivered-messages rate.
    pub peer_deliveries_in_window: u64,
    /// Every message frame received inside the window.
    pub frames_in_window: u64,
    /// End-to-end latency at this (receiving) participant, microseconds, for
    /// the peer's messages sent inside the window.
    pub peer_latency_us: Vec<u32>,
    /// The same for this connection's own messages (send to own echo).
    pub echo_latency_us: Vec<u32>,
    /// v2: the highest chat `seq` this socket has received.
    last_seq: u64,
    /// v2: first copies whose chat `seq` was not above one received before.
    pub seq_disorder: u64,
    /// v2: acks that call a new message a duplicate, or acknowledge a
    /// message this socket did not send.
    pub bad_acks: u64,
    /// v2: this run's messages whose `client_id` is not the one they were
    /// sent with.
    pub bad_client_ids: u64,
    /// v2: valid frames that are neither messages nor acks (typing,
    /// presence, receipts, pongs).
    pub events: u64,
}

impl ConnLedger {
    pub fn new(run: u64, conn: u32, peer: u32) -> Self {
        Self {
            conn,
            peer,
            run,
            sent: 0,
            own: SeqSet::default(),
            from_peer: SeqSet::default(),
            error_frames: 0,
            foreign: 0,
            misrouted: 0,
            peer_deliveries_in_window: 0,
            frames_in_window: 0,
            peer_latency_us: Vec::new(),
            echo_latency_us: Vec::new(),
            last_seq: 0,
            seq_disorder: 0,
            bad_acks: 0,
            bad_client_ids: 0,
            events: 0,
        }
    }

    /// Records a v2 message received on a socket that carries this one chat:
    /// [`ConnLedger::on_message`], then the v2 checks. `ack` is `Some(duplicate)`
    /// when it came as this socket's `ack`.
    pub fn on_v2_message(
        &mut self,
        msg: &Msg,
        ack: Option<bool>,
        received_ns: u64,
        window: &Window,
    ) -> Reception {
        let reception = self.on_message(msg.tag, received_ns, window);
        if let Reception::OwnFirst { .. } | Reception::PeerFirst { .. } = reception {
            if msg.seq <= self.last_seq {
                self.seq_disorder += 1;
            } else {
                self.last_seq = msg.seq;
            }
        }
        let ours = msg.tag.is_some_and(|t| t.run == self.run);
        if ours && !msg.client_id_ok {
            self.bad_client_ids += 1;
        }
        if let Some(duplicate) = ack {
            // Nothing is ever re-sent in a live run, so `duplicate` is wrong
            // whenever it is set.
            let own = msg
                .tag
                .is_some_and(|t| t.run == self.run && t.sender == self.conn);
            if duplicate || !own {
                self.bad_acks += 1;
            }
        }
        reception
    }

    /// Records a received message frame: its body's tag (if any) and when
    /// it arrived.
    pub fn on_message(&mut self, tag: Option<Tag>, received_ns: u64, window: &Window) -> Reception {
        if window.contains(received_ns) {
            self.frames_in_window += 1;
        }
        let Some(tag) = tag.filter(|t| t.run == self.run) else {
            self.foreign += 1;
            return Reception::Foreign;
        };
        let own = tag.sender == self.conn;
        if !own && tag.sender != self.peer {
            self.misrouted += 1;
            return Reception::Misrouted;
        }
        if tag.seq >= MAX_SEQ {
            self.misrouted += 1;
            return Reception::Misrouted;
        }
        let stream = if own {
            &mut self.own
        } else {
            &mut self.from_peer
        };
        if !stream.record(tag.seq) {
            return Reception::Duplicate;
        }
        let latency_us = received_ns.saturating_sub(tag.sent_at_ns) / 1000;
        let latency_us = u32::try_from(latency_us).unwrap_or(u32::MAX);
        let measured = window.contains(tag.sent_at_ns);
        if own {
            if measured {
                self.echo_latency_us.push(latency_us);
            }
            Reception::OwnFirst { seq: tag.seq }
        } else {
            if measured {
                self.peer_latency_us.push(latency_us);
            }
            if window.contains(received_ns) {
                self.peer_deliveries_in_window += 1;
            }
            Reception::PeerFirst { seq: tag.seq }
        }
    }

    /// Records an `{"error": ...}` frame.
    pub fn on_error_frame(&mut self) {
        self.error_frames += 1;
    }

    /// Whether every message sent so far by this connection (`self.sent`)
    /// and `peer_sent` by the peer has arrived here.
    pub fn has_all(&self, peer_sent: u64) -> bool {
        self.own.distinct() >= self.sent && self.from_peer.distinct() >= peer_sent
    }

    /// Forgets what was received, keeping what was sent and every fault
    /// seen so far: the same participant on a new socket, owed everything
    /// again (a history replay after the socket that sent closed).
    /// `peer_sent`: what the peer had sent by then.
    pub fn forget_received(&mut self, peer_sent: u64) {
        self.own.forget(self.sent);
        self.from_peer.forget(peer_sent);
    }

    /// Distinct messages received, own and the peer's.
    pub fn received_distinct(&self) -> u64 {
        self.own.distinct() + self.from_peer.distinct()
    }

    /// Distinct messages received from the peer.
    pub fn from_peer_distinct(&self) -> u64 {
        self.from_peer.distinct()
    }
}

/// The whole run's delivery figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Tally {
    /// Messages sent.
    pub sent: u64,
    /// Deliveries owed: each message to each participant of its chat.
    pub expected: u64,
    /// Distinct (message, receiver) pairs received: `expected - lost`.
    pub delivered: u64,
    /// Of which at the sender's peer (the other participant).
    pub delivered_to_peer: u64,
    /// Deliveries owed and never received.
    pub lost: u64,
    /// Extra copies of a message at a receiver.
    pub duplicated: u64,
    /// First copies that arrived after a later message of the same sender.
    pub out_of_order: u64,
    /// Messages of this run delivered where they do not belong: to another
    /// chat, or with a sequence number nobody sent.
    pub unexpected: u64,
    /// Message frames not from this run (e.g. another tool's messages).
    pub foreign: u64,
    /// `{"error": ...}` frames (v2: `{"type": "error"}`).
    pub error_frames: u64,
    pub peer_deliveries_in_window: u64,
    pub frames_in_window: u64,
    /// v2: first copies out of their chat's `seq` order.
    pub seq_disorder: u64,
    /// v2: acks flagged `duplicate` for a new message, or of another's
    /// message.
    pub bad_acks: u64,
    /// v2: messages carrying another message's `client_id`.
    pub bad_client_ids: u64,
    /// v2: typing, presence, receipt and pong frames (not faults).
    pub events: u64,
}

/// Sets every ledger against what each connection sent. A ledger whose peer
/// is missing from `ledgers` is counted as if the peer sent nothing.
pub fn tally(ledgers: &[ConnLedger]) -> Tally {
    let max_conn = ledgers
        .iter()
        .map(|l| l.conn as usize + 1)
        .max()
        .unwrap_or(0);
    let mut sent_by = vec![0u64; max_conn];
    for ledger in ledgers {
        sent_by[ledger.conn as usize] = ledger.sent;
    }
    let mut t = Tally::default();
    for ledger in ledgers {
        let peer_sent = sent_by.get(ledger.peer as usize).copied().unwrap_or(0);
        let own = ledger.own.tally(ledger.sent);
        let peer = ledger.from_peer.tally(peer_sent);
        t.sent += ledger.sent;
        for s in [own, peer] {
            t.expected += s.expected;
            t.delivered += s.delivered;
            t.lost += s.lost;
            t.duplicated += s.duplicated;
            t.out_of_order += s.out_of_order;
            t.unexpected += s.phantom;
        }
        t.delivered_to_peer += peer.delivered;
        t.unexpected += ledger.misrouted;
        t.foreign += ledger.foreign;
        t.error_frames += ledger.error_frames;
        t.peer_deliveries_in_window += ledger.peer_deliveries_in_window;
        t.frames_in_window += ledger.frames_in_window;
        t.seq_disorder += ledger.seq_disorder;
        t.bad_acks += ledger.bad_acks;
        t.bad_client_ids += ledger.bad_client_ids;
        t.events += ledger.events;
    }
    t
}

/// A latency distribution in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

/// A histogram of microsecond samples: 1 µs to one hour, three significant
/// digits.
pub fn histogram_us<I: IntoIterator<Item = u32>>(samples: I) -> Histogram<u64> {
    let mut histogram = new_histogram_us();
    for sample in samples {
        histogram.saturating_record(u64::from(sample));
    }
    histogram
}

/// An empty histogram with the bounds [`histogram_us`] uses.
pub fn new_histogram_us() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts (low >= 1,
    // high >= 2 * low, sigfig <= 5): this cannot fail.
    Histogram::new_with_bounds(1, 3_600_000_000, 3)
        .unwrap_or_else(|e| panic!("hdrhistogram refused constant bounds: {e}"))
}

impl Percentiles {
    /// The percentiles of a microsecond histogram, in milliseconds; `None`
    /// when it is empty.
    pub fn from_us(histogram: &Histogram<u64>) -> Option<Self> {
        if histogram.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Some(Self {
            count: histogram.len(),
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p999: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
            mean: histogram.mean() / 1000.0,
        })
    }

    /// Shorthand for microsecond samples.
    pub fn of_us<I: IntoIterator<Item = u32>>(samples: I) -> Option<Self> {
        Self::from_us(&histogram_us(samples))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgetting_what_arrived_keeps_the_faults_seen_before() {
        let mut ledger = ConnLedger::new(7, 0, 1);
        ledger.sent = 3;
        let tag = |seq| {
            Some(Tag {
                run: 7,
                sender: 0,
                seq,
                sent_at_ns: 0,
            })
        };
        for seq in [0, 1, 1, 2, 9] {
            ledger.on_message(tag(seq), 0, &Window::EMPTY);
        }
        ledger.forget_received(0);
        assert_eq!(ledger.received_distinct(), 0);
        assert!(!ledger.has_all(0), "owed its own three again");
        for seq in [0, 1, 2] {
            ledger.on_message(tag(seq), 0, &Window::EMPTY);
        }
        assert!(ledger.has_all(0));
        let t = tally(&[ledger]);
        assert_eq!((t.expected, t.delivered, t.lost), (3, 3, 0));
        // The duplicate 1 and the never-sent 9 from before the forget.
        assert_eq!((t.duplicated, t.unexpected), (1, 1));
    }

    const RUN: u64 = 7;
    const ALL: Window = Window {
        start_ns: 0,
        end_ns: u64::MAX,
    };

    fn tag(sender: u32, seq: u64) -> Option<Tag> {
        Some(Tag {
            run: RUN,
            sender,
            seq,
            sent_at_ns: 1_000_000 * seq,
        })
    }

    /// A chat of connections 0 and 1; 0 sent `sent0`, 1 sent `sent1`, and
    /// each received the given (sender, seq) frames in order.
    fn chat(sent0: u64, sent1: u64, at0: &[(u32, u64)], at1: &[(u32, u64)]) -> Tally {
        let mut a = ConnLedger::new(RUN, 0, 1);
        let mut b = ConnLedger::new(RUN, 1, 0);
        a.sent = sent0;
        b.sent = sent1;
        for &(s, q) in at0 {
            a.on_message(tag(s, q), 1_000_000 * q + 500_000, &ALL);
        }
        for &(s, q) in at1 {
            b.on_message(tag(s, q), 1_000_000 * q + 500_000, &ALL);
        }
        tally(&[a, b])
    }

    fn each(sender: u32, n: u64) -> Vec<(u32, u64)> {
        (0..n).map(|q| (sender, q)).collect()
    }

    #[test]
    fn a_perfect_exchange_is_all_delivered() {
        let everything: Vec<_> = each(0, 3).into_iter().chain(each(1, 2)).collect();
        let t = chat(3, 2, &everything, &everything);
        assert_eq!(t.sent, 5);
        assert_eq!(t.expected, 10);
        assert_eq!(t.delivered, 10);
        assert_eq!(t.delivered_to_peer, 5);
        assert_eq!(
            (t.lost, t.duplicated, t.out_of_order, t.unexpected),
            (0, 0, 0, 0)
        );
    }

    #[test]
    fn a_message_missing_at_the_peer_is_lost() {
        let t = chat(5, 0, &each(0, 5), &[(0, 0), (0, 1), (0, 3), (0, 4)]);
        assert_eq!(t.expected, 10);
        assert_eq!(t.lost, 1);
        assert_eq!(t.delivered, 9);
        assert_eq!(t.out_of_order, 0);
    }

    #[test]
    fn a_missing_echo_is_lost_too() {
        let t = chat(3, 0, &[(0, 0), (0, 2)], &each(0, 3));
        assert_eq!(t.lost, 1);
        assert_eq!(t.delivered_to_peer, 3);
    }

    #[test]
    fn a_second_copy_is_a_duplicate_and_not_a_reordering() {
        let t = chat(3, 0, &each(0, 3), &[(0, 0), (0, 1), (0, 1), (0, 2), (0, 0)]);
        assert_eq!(t.duplicated, 2);
        assert_eq!(t.out_of_order, 0);
        assert_eq!(t.lost, 0);
        assert_eq!(t.delivered, 6);
    }

    #[test]
    fn a_first_copy_after_a_later_message_is_out_of_order() {
        let t = chat(4, 0, &each(0, 4), &[(0, 0), (0, 2), (0, 1), (0, 3)]);
        assert_eq!(t.out_of_order, 1);
        assert_eq!(t.lost, 0);
        assert_eq!(t.duplicated, 0);
    }

    #[test]
    fn order_is_per_sender_so_interleaving_two_senders_is_fine() {
        let at = [(0, 0), (1, 0), (1, 1), (0, 1), (1, 2), (0, 2)];
        let t = chat(3, 3, &at, &at);
        assert_eq!((t.lost, t.duplicated, t.out_of_order), (0, 0, 0));
    }

    #[test]
    fn messages_from_another_chat_or_never_sent_are_unexpected() {
        // Sender 5 is not in chat {0, 1}; seq 9 of sender 0 was never sent.
        let t = chat(2, 0, &[(0, 0), (0, 1), (5, 0)], &[(0, 0), (0, 1), (0, 9)]);
        assert_eq!(t.unexpected, 2);
        assert_eq!(t.lost, 0);
        assert_eq!(t.delivered, 4);
    }

    #[test]
    fn other_runs_and_untagged_bodies_are_foreign_and_not_counted() {
        let mut a = ConnLedger::new(RUN, 0, 1);
        let other_run = Tag {
            run: RUN + 1,
            sender: 1,
            seq: 0,
            sent_at_ns: 0,
        };
        assert_eq!(a.on_message(Some(other_run), 10, &ALL), Reception::Foreign);
        assert_eq!(a.on_message(None, 10, &ALL), Reception::Foreign);
        a.on_error_frame();
        let t = tally(&[a]);
        assert_eq!((t.foreign, t.error_frames, t.delivered), (2, 1, 0));
    }

    #[test]
    fn only_messages_sent_inside_the_window_are_timed() {
        let window = Window {
            start_ns: 2_000_000,
            end_ns: 4_000_000,
        };
        let mut b = ConnLedger::new(RUN, 1, 0);
        for seq in 0..6 {
            // Sent at seq ms, received 0.25 ms later.
            b.on_message(tag(0, seq), 1_000_000 * seq + 250_000, &window);
        }
        // Sent at 2 ms and 3 ms.
        assert_eq!(b.peer_latency_us, vec![250, 250]);
        assert_eq!(b.peer_deliveries_in_window, 2);
        assert_eq!(b.frames_in_window, 2);
        assert!(b.echo_latency_us.is_empty());
    }

    #[test]
    fn completion_needs_every_own_echo_and_every_peer_message() {
        let mut a = ConnLedger::new(RUN, 0, 1);
        a.sent = 2;
        a.on_message(tag(0, 0), 1, &ALL);
        a.on_message(tag(1, 0), 1, &ALL);
        assert!(!a.has_all(1));
        a.on_message(tag(0, 1), 1, &ALL);
        assert!(a.has_all(1));
        assert!(!a.has_all(2));
    }

    fn v2(sender: u32, seq: u64, chat_seq: u64) -> Msg {
        let tag = tag(sender, seq);
        Msg {
            chat_id: 1,
            seq: chat_seq,
            tag,
            client_id_ok: true,
        }
    }

    #[test]
    fn v2_messages_must_follow_their_chats_seq_across_senders() {
        let mut a = ConnLedger::new(RUN, 0, 1);
        a.sent = 2;
        // seq 1 (own ack), 3 (peer) before 2 (peer), then a copy of 3.
        a.on_v2_message(&v2(0, 0, 1), Some(false), 1, &ALL);
        a.on_v2_message(&v2(1, 1, 3), None, 1, &ALL);
        a.on_v2_message(&v2(1, 0, 2), None, 1, &ALL);
        a.on_v2_message(&v2(1, 1, 3), None, 1, &ALL);
        a.on_v2_message(&v2(0, 1, 4), Some(false), 1, &ALL);
        assert_eq!(a.seq_disorder, 1);
        let mut b = ConnLedger::new(RUN, 1, 0);
        b.sent = 2;
        let t = tally(&[a, b]);
        // The per-sender check sees the same reordering; the copy is a
        // duplicate, not a second disorder.
        assert_eq!((t.seq_disorder, t.out_of_order, t.duplicated), (1, 1, 1));
        assert_eq!(t.bad_acks, 0);
    }

    #[test]
    fn v2_acks_must_be_new_and_of_this_sockets_own_messages() {
        let mut a = ConnLedger::new(RUN, 0, 1);
        a.on_v2_message(&v2(0, 0, 1), Some(true), 1, &ALL);
        a.on_v2_message(&v2(1, 0, 2), Some(false), 1, &ALL);
        let mut wrong_id = v2(0, 1, 3);
        wrong_id.client_id_ok = false;
        a.on_v2_message(&wrong_id, Some(false), 1, &ALL);
        assert_eq!((a.bad_acks, a.bad_client_ids), (2, 1));
    }

    #[test]
    fn counting_below_a_bound_handles_word_edges() {
        let mut set = SeqSet::default();
        for seq in [0, 63, 64, 127, 128, 200] {
            set.record(seq);
        }
        assert_eq!(set.distinct_below(0), 0);
        assert_eq!(set.distinct_below(63), 1);
        assert_eq!(set.distinct_below(64), 2);
        assert_eq!(set.distinct_below(128), 4);
        assert_eq!(set.distinct_below(129), 5);
        assert_eq!(set.distinct_below(1000), 6);
    }

    #[test]
    fn percentiles_come_from_the_histogram() {
        // 1..=1000 ms.
        let p = Percentiles::of_us((1..=1000).map(|ms| ms * 1000)).unwrap();
        assert_eq!(p.count, 1000);
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.002;
        assert!(close(p.p50, 500.0), "{p:?}");
        assert!(close(p.p90, 900.0), "{p:?}");
        assert!(close(p.p99, 990.0), "{p:?}");
        assert!(close(p.p999, 999.0), "{p:?}");
        assert!(close(p.max, 1000.0), "{p:?}");
        assert!(close(p.mean, 500.5), "{p:?}");
        assert_eq!(Percentiles::of_us([]), None);
    }
}
