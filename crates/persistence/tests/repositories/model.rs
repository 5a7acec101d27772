//! Random sequences of operations (batches with colliding retry keys,
//! cursor moves, pages, chat lists) checked against a model of the
//! contract written from the protocol's rules, not from any store. The
//! sequences are seeded, so a failure names a seed that replays it.

use std::collections::HashMap;

use chat_domain::chat::{CursorKind, DirectChat, DirectMessage, Inserted, PageAnchor};
use chat_domain::user::User;

use crate::pages::expected_page;
use crate::stores::{new_message, seq, seqs, Store, StoreExt as _};

contract_tests!(random_operations_agree_with_the_model);

/// xorshift64*: small, seedable, good enough to pick operations.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// One chat as the rules say it must be.
struct ModelChat {
    chat: DirectChat,
    /// Seq n at index n - 1, as first returned by the store.
    messages: Vec<DirectMessage>,
    /// (read_up_to, delivered_up_to) of `chat.participants.users()[i]`.
    cursors: [(i64, i64); 2],
}

impl ModelChat {
    fn head(&self) -> i64 {
        self.messages.len() as i64
    }

    fn slot(&self, user: &User) -> usize {
        self.chat
            .participants
            .users()
            .iter()
            .position(|u| u.id == user.id)
            .unwrap()
    }

    fn unread(&self, viewer: &User) -> u64 {
        let read = self.cursors[self.slot(viewer)].0;
        self.messages
            .iter()
            .filter(|m| m.sender.id != viewer.id && m.seq.get() > read)
            .count() as u64
    }

    fn stored_key(&self, sender: &User, client: &str) -> Option<&DirectMessage> {
        self.messages.iter().find(|m| {
            m.sender.id == sender.id && m.client_id.as_ref().map(AsRef::as_ref) == Some(client)
        })
    }
}

fn random_operations_agree_with_the_model(store: &dyn Store) {
    // Each seed with users and chats of its own, in the same store.
    for seed in [0x5eed_c4a7, 0xc0ff_ee00, 0x0bad_cafe] {
        run(store, seed);
    }
}

fn run(store: &dyn Store, seed: u64) {
    let users: Vec<User> = ["alice", "bob", "carol"]
        .iter()
        .map(|name| store.user(&format!("{name}-{seed:x}")))
        .collect();
    let mut chats: Vec<ModelChat> = [(0, 1), (0, 2), (1, 2)]
        .iter()
        .map(|&(a, b)| ModelChat {
            chat: store.chat(&users[a], &users[b]),
            messages: Vec::new(),
            cursors: [(0, 0); 2],
        })
        .collect();
    let mut rng = Rng(seed);
    let mut body = 0_u64;
    let mut resends = 0;

    for step in 0..300 {
        let at = format!("seed {seed:#x}, step {step}");
        match rng.below(10) {
            // A batch of 1 to 6 messages across chats; half carry a key
            // from a small pool, so resends happen, within batches too.
            0..=3 => {
                let size = 1 + rng.below(6) as usize;
                let mut batch = Vec::new();
                let mut targets = Vec::new();
                for _ in 0..size {
                    let c = rng.below(chats.len() as u64) as usize;
                    let sender = rng.pick(chats[c].chat.participants.users()).clone();
                    let client = (rng.below(2) == 0).then(|| format!("k{}", rng.below(4)));
                    body += 1;
                    batch.push(new_message(
                        &chats[c].chat,
                        &sender,
                        &format!("m{body}"),
                        client.as_deref(),
                    ));
                    targets.push((c, sender, client));
                }
                let outcomes = store.insert_messages(&batch).unwrap();
                assert_eq!(outcomes.len(), size, "{at}");
                for ((outcome, sent), (c, sender, client)) in
                    outcomes.into_iter().zip(&batch).zip(targets)
                {
                    let model = &mut chats[c];
                    let original = client
                        .as_deref()
                        .and_then(|k| model.stored_key(&sender, k))
                        .cloned();
                    match (original, outcome) {
                        (Some(original), Inserted::Existing(returned)) => {
                            assert_eq!(returned, original, "{at}: the original");
                            resends += 1;
                        }
                        (None, Inserted::New(new)) => {
                            assert_eq!(new.seq, seq(model.head() + 1), "{at}: next seq");
                            assert_eq!(new.chat_id, model.chat.id, "{at}");
                            assert_eq!(new.sender, sender, "{at}");
                            assert_eq!(new.body, sent.body.as_ref(), "{at}");
                            assert_eq!(new.client_id, sent.client_id, "{at}");
                            if let Some(last) = model.messages.last() {
                                assert!(new.id > last.id, "{at}: ids grow with seqs");
                            }
                            model.messages.push(new);
                        }
                        (expected, actual) => {
                            panic!("{at}: expected original {expected:?}, got {actual:?}")
                        }
                    }
                }
            }
            // A cursor move, sometimes back, sometimes past the head.
            4..=6 => {
                let model = &mut chats[rng.below(3) as usize];
                let user = rng.pick(model.chat.participants.users()).clone();
                let kind = *rng.pick(&[CursorKind::Read, CursorKind::Delivered]);
                let requested = match rng.below(8) {
                    0 => i64::MAX,
                    _ => rng.below(model.head() as u64 + 3) as i64,
                };
                let change = store.move_to(&model.chat, &user, kind, requested);

                let slot = model.slot(&user);
                let (read, delivered) = model.cursors[slot];
                let target = requested.min(model.head());
                let after = match kind {
                    CursorKind::Read => (read.max(target), delivered.max(target)),
                    CursorKind::Delivered => (read, delivered.max(target)),
                };
                model.cursors[slot] = after;
                let as_seqs =
                    |c: chat_domain::chat::Cursors| (c.read_up_to.get(), c.delivered_up_to.get());
                assert_eq!(as_seqs(change.before), (read, delivered), "{at}: before");
                assert_eq!(as_seqs(change.after), after, "{at}: after");
                assert_eq!(change.head_seq, seq(model.head()), "{at}: head");
                assert_eq!(change.unread_count, model.unread(&user), "{at}: unread");
            }
            // A page, with who read what.
            7..=8 => {
                let model = &chats[rng.below(3) as usize];
                let around = rng.below(model.head() as u64 + 3) as i64;
                let anchor = match rng.below(3) {
                    0 => PageAnchor::Newest,
                    1 => PageAnchor::Before(seq(around)),
                    _ => PageAnchor::After(seq(around)),
                };
                let limit = 1 + rng.below(8) as usize;
                let page = store.page(&model.chat, anchor, limit);

                let (on_page, before, after) = expected_page(model.head(), anchor, limit as i64);
                assert_eq!(seqs(&page.messages), on_page, "{at}: {anchor:?} {limit}");
                assert_eq!(
                    (page.has_more_before, page.has_more_after),
                    (before, after),
                    "{at}: {anchor:?} {limit}"
                );
                assert_eq!(page.head_seq, seq(model.head()), "{at}");
                for message in &page.messages {
                    let index = message.seq.get() as usize - 1;
                    assert_eq!(message, &model.messages[index], "{at}");
                    let recipient = model.chat.participants.other_than(message.sender.id);
                    let read = model.cursors[model.slot(recipient.unwrap())].0;
                    assert_eq!(
                        page.read_cursors.is_read(message.sender.id, message.seq),
                        message.seq.get() <= read,
                        "{at}: is_read of seq {}",
                        message.seq
                    );
                }
            }
            // A chat list.
            _ => {
                let viewer = rng.pick(&users).clone();
                let summaries = store.chat_summaries(viewer.id).unwrap();
                let mine: HashMap<_, _> = chats
                    .iter()
                    .filter(|m| m.chat.participants.contains(viewer.id))
                    .map(|m| (m.chat.id, m))
                    .collect();
                assert_eq!(summaries.len(), mine.len(), "{at}");
                for summary in summaries {
                    let model = mine[&summary.chat.id];
                    let slot = model.slot(&viewer);
                    assert_eq!(summary.head_seq, seq(model.head()), "{at}");
                    assert_eq!(summary.last_message.as_ref(), model.messages.last(), "{at}");
                    assert_eq!(summary.unread_count, model.unread(&viewer), "{at}");
                    let (read, delivered) = model.cursors[slot];
                    assert_eq!(summary.mine.read_up_to, seq(read), "{at}");
                    assert_eq!(summary.mine.delivered_up_to, seq(delivered), "{at}");
                    let (read, delivered) = model.cursors[1 - slot];
                    assert_eq!(summary.theirs.read_up_to, seq(read), "{at}");
                    assert_eq!(summary.theirs.delivered_up_to, seq(delivered), "{at}");
                }
            }
        }
    }
    // The run did what it is for: resends happened and chats grew.
    assert!(resends > 20, "seed {seed:#x}: {resends} resends");
    assert!(chats.iter().all(|m| m.head() > 20), "seed {seed:#x}");
}
