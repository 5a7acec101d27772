//! The recent seed frames of each chat, kept in memory so that a seed
//! socket's history replay sends them without reading or encoding them
//! again.
//!
//! A seed socket replays its chat's whole history on connect. Read from the
//! database, each message costs a row to step and decode and a frame to
//! encode: about five times what the wire costs (docs/performance.md). But
//! the hub has just encoded that very frame when the message was delivered
//! to the chat's seed sockets; kept here, a replay sends it again for the
//! price of a reference.
//!
//! What is kept, per chat, is a contiguous run of seqs, the newest last, at
//! most [`FRAMES_PER_CHAT`] of them: the hub appends each message it
//! delivers to a chat with seed sockets, in delivery order (commit order,
//! and in a cluster the sequencer's seq order), and a message that does not
//! follow the last one kept starts the run again. So the run always holds
//! real committed messages, in order, with nothing missing between them;
//! it may lag behind the database (messages delivered while the chat had no
//! seed socket are not appended), which the replay covers by reading the
//! database for everything before the run and after it
//! (`ws/seed/session.rs`). Messages are never edited or deleted, so a frame
//! kept is never stale.
//!
//! Memory is bounded by a byte budget (`CHAT_REPLAY_CACHE_MB`, 0 turns this
//! off); past it, the chats used least recently are forgotten.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use bytestring::ByteString;
use chat_domain::chat::{ChatId, Seq};
use chat_domain::user::UserId;

/// The most frames kept per chat: five of the replay's pages. Older ones
/// are read from the database.
pub const FRAMES_PER_CHAT: usize = 1000;

/// What one kept frame costs besides its text: the entry, the frame's
/// allocation header and the reference count.
const OVERHEAD_BYTES: usize = 96;

/// One message's seed frame as delivered live (`is_read: false`).
#[derive(Debug, Clone)]
pub struct TailFrame {
    pub seq: Seq,
    pub sender: UserId,
    pub frame: ByteString,
}

impl TailFrame {
    fn cost(&self) -> usize {
        self.frame.len() + OVERHEAD_BYTES
    }
}

pub struct ReplayTail {
    budget_bytes: usize,
    per_chat: usize,
    tails: Mutex<Tails>,
}

#[derive(Default)]
struct Tails {
    chats: HashMap<ChatId, Tail>,
    /// Each chat by its last use (a tick of `clock`), oldest first: what
    /// eviction takes, without looking at every chat.
    by_use: BTreeMap<u64, ChatId>,
    bytes: usize,
    /// Counts uses, for least-recently-used eviction.
    clock: u64,
}

struct Tail {
    frames: VecDeque<TailFrame>,
    bytes: usize,
    used: u64,
}

impl ReplayTail {
    /// Keeps up to `budget_bytes` of frames (0: none).
    pub fn new(budget_bytes: usize) -> Self {
        Self::with_frames_per_chat(budget_bytes, FRAMES_PER_CHAT)
    }

    pub fn with_frames_per_chat(budget_bytes: usize, per_chat: usize) -> Self {
        Self {
            budget_bytes,
            per_chat: per_chat.max(1),
            tails: Mutex::new(Tails::default()),
        }
    }

    fn tails(&self) -> std::sync::MutexGuard<'_, Tails> {
        // A panic while holding the lock cannot leave a run out of order
        // (each change is one push or one reset), so the data stays usable.
        self.tails.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps the frame the hub delivered to `chat`'s seed sockets.
    pub fn append(&self, chat: ChatId, frame: TailFrame) {
        if self.budget_bytes == 0 {
            return;
        }
        let cost = frame.cost();
        let mut tails = self.tails();
        let used = tails.touch(chat);
        let tail = tails.chats.entry(chat).or_insert_with(|| Tail {
            frames: VecDeque::new(),
            bytes: 0,
            used,
        });
        let follows = tail
            .frames
            .back()
            .is_none_or(|last| last.seq.next() == frame.seq);
        let mut freed = 0;
        if !follows {
            freed += tail.bytes;
            tail.frames.clear();
            tail.bytes = 0;
        }
        tail.frames.push_back(frame);
        tail.bytes += cost;
        tail.used = used;
        while tail.frames.len() > self.per_chat {
            if let Some(oldest) = tail.frames.pop_front() {
                tail.bytes -= oldest.cost();
                freed += oldest.cost();
            }
        }
        tails.bytes = tails.bytes + cost - freed;
        if tails.bytes > self.budget_bytes {
            tails.evict_down_to(self.budget_bytes / 10 * 9, chat);
        }
    }

    /// The frames kept for `chat`, oldest first: consecutive seqs.
    pub fn snapshot(&self, chat: ChatId) -> Vec<TailFrame> {
        if self.budget_bytes == 0 {
            return Vec::new();
        }
        let mut tails = self.tails();
        if !tails.chats.contains_key(&chat) {
            return Vec::new();
        }
        let used = tails.touch(chat);
        match tails.chats.get_mut(&chat) {
            Some(tail) => {
                tail.used = used;
                tail.frames.iter().cloned().collect()
            }
            None => Vec::new(),
        }
    }

    /// Bytes kept, as counted against the budget.
    pub fn bytes(&self) -> usize {
        self.tails().bytes
    }
}

impl Tails {
    /// A new use of `chat` (kept or about to be): its place in `by_use`
    /// moves to the newest. Returns the tick; the caller stores it in the
    /// chat's `used`.
    fn touch(&mut self, chat: ChatId) -> u64 {
        self.clock += 1;
        if let Some(tail) = self.chats.get(&chat) {
            self.by_use.remove(&tail.used);
        }
        self.by_use.insert(self.clock, chat);
        self.clock
    }

    /// Forgets the least recently used chats (never `keep`, the one being
    /// appended to, which is the newest) until at most `target` bytes are
    /// kept.
    fn evict_down_to(&mut self, target: usize, keep: ChatId) {
        while self.bytes > target {
            let Some((&used, &chat)) = self.by_use.iter().next() else {
                break;
            };
            if chat == keep {
                break;
            }
            self.by_use.remove(&used);
            if let Some(tail) = self.chats.remove(&chat) {
                self.bytes -= tail.bytes;
            }
        }
        // One chat alone over the budget keeps only its newest frames.
        if self.bytes > target {
            if let Some(tail) = self.chats.get_mut(&keep) {
                while self.bytes > target && tail.frames.len() > 1 {
                    if let Some(oldest) = tail.frames.pop_front() {
                        tail.bytes -= oldest.cost();
                        self.bytes -= oldest.cost();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seq: i64) -> TailFrame {
        TailFrame {
            seq: Seq::new(seq).unwrap(),
            sender: UserId::new(1),
            frame: ByteString::from(format!("frame {seq:>36}")), // 42 bytes
        }
    }

    fn seqs(frames: &[TailFrame]) -> Vec<i64> {
        frames.iter().map(|f| f.seq.get()).collect()
    }

    const CHAT: ChatId = ChatId::new(1);

    #[test]
    fn a_chat_keeps_its_newest_consecutive_frames() {
        let tail = ReplayTail::with_frames_per_chat(1 << 20, 3);
        assert!(tail.snapshot(CHAT).is_empty());
        for seq in 1..=5 {
            tail.append(CHAT, frame(seq));
        }
        assert_eq!(seqs(&tail.snapshot(CHAT)), [3, 4, 5]);
        assert_eq!(tail.bytes(), 3 * (42 + OVERHEAD_BYTES));
        assert!(tail.snapshot(ChatId::new(2)).is_empty());
    }

    #[test]
    fn a_frame_that_does_not_follow_starts_the_run_again() {
        let tail = ReplayTail::new(1 << 20);
        for seq in [4, 5, 6, 9, 10] {
            tail.append(CHAT, frame(seq));
        }
        assert_eq!(seqs(&tail.snapshot(CHAT)), [9, 10]);
        // An older one too: a run never holds a gap or a repeat.
        tail.append(CHAT, frame(3));
        assert_eq!(seqs(&tail.snapshot(CHAT)), [3]);
        assert_eq!(tail.bytes(), 42 + OVERHEAD_BYTES);
    }

    #[test]
    fn past_the_budget_the_chats_used_least_recently_go_first() {
        let per_frame = 42 + OVERHEAD_BYTES;
        let tail = ReplayTail::new(per_frame * 10);
        for chat in 1..=3 {
            for seq in 1..=3 {
                tail.append(ChatId::new(chat), frame(seq));
            }
        }
        // Chat 1 is read again, so chat 2 is the oldest use.
        assert_eq!(tail.snapshot(ChatId::new(1)).len(), 3);
        for seq in 1..=2 {
            tail.append(ChatId::new(4), frame(seq));
        }
        assert!(tail.snapshot(ChatId::new(2)).is_empty(), "evicted");
        assert_eq!(tail.snapshot(ChatId::new(1)).len(), 3);
        assert_eq!(tail.snapshot(ChatId::new(3)).len(), 3);
        assert_eq!(tail.snapshot(ChatId::new(4)).len(), 2);
        assert!(tail.bytes() <= per_frame * 10);
    }

    #[test]
    fn one_chat_over_the_whole_budget_keeps_what_fits() {
        let per_frame = 42 + OVERHEAD_BYTES;
        let tail = ReplayTail::new(per_frame * 10);
        for seq in 1..=30 {
            tail.append(CHAT, frame(seq));
        }
        let kept = seqs(&tail.snapshot(CHAT));
        assert_eq!(kept.last(), Some(&30));
        assert!(kept.len() <= 10 && kept.len() >= 8, "{kept:?}");
        assert!(kept.windows(2).all(|w| w[1] == w[0] + 1), "{kept:?}");
    }

    #[test]
    fn the_use_order_follows_every_append_and_read() {
        let tail = ReplayTail::new(1 << 20);
        for chat in 1..=50 {
            tail.append(ChatId::new(chat % 7), frame(chat));
            tail.snapshot(ChatId::new(chat % 5));
        }
        let tails = tail.tails();
        assert_eq!(tails.by_use.len(), tails.chats.len());
        for (chat, kept) in &tails.chats {
            assert_eq!(tails.by_use.get(&kept.used), Some(chat));
        }
    }

    #[test]
    fn a_budget_of_zero_keeps_nothing() {
        let tail = ReplayTail::new(0);
        tail.append(CHAT, frame(1));
        assert!(tail.snapshot(CHAT).is_empty());
        assert_eq!(tail.bytes(), 0);
    }
}
