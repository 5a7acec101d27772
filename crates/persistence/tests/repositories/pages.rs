//! Pages of history (`MessageRepository::messages_page`): keyset pages on
//! `(chat, seq)` anchored at the newest message, before or after a `seq`
//! (exclusive), oldest first, with exactly what lies around them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;

use chat_domain::chat::{ChatId, DirectChat, PageAnchor, PageLimit};

use crate::stores::{bodies, new_message, page_limit, seq, seqs, Store, StoreExt as _};

contract_tests!(
    the_newest_page_is_the_default_and_lists_oldest_first,
    pages_before_and_after_a_seq_exclude_it,
    paging_back_and_forth_visits_every_message_once,
    what_lies_around_a_page_is_exactly_right_at_both_ends,
    an_empty_chat_has_an_empty_page_with_nothing_around_it,
    anchors_past_the_head_find_what_is_below_it,
    a_page_holds_one_to_two_hundred_messages,
    a_page_shows_only_its_own_chats_messages,
    the_read_cursors_of_a_page_say_what_each_recipient_read,
    a_page_of_an_unknown_chat_is_an_error,
    paging_after_the_last_seq_while_others_append_never_skips_a_message,
    a_page_read_while_messages_arrive_holds_nothing_past_its_head,
);

/// A chat of alice's and bob's with `count` messages, alice's at odd seqs,
/// bob's at even, each body its seq.
fn chat_with(store: &dyn Store, count: usize) -> DirectChat {
    let alice = store.user("alice");
    let bob = store.user("bob");
    let chat = store.chat(&alice, &bob);
    let batch: Vec<_> = (1..=count)
        .map(|n| {
            new_message(
                &chat,
                if n % 2 == 1 { &alice } else { &bob },
                &n.to_string(),
                None,
            )
        })
        .collect();
    store.insert_messages(&batch).unwrap();
    chat
}

fn the_newest_page_is_the_default_and_lists_oldest_first(store: &dyn Store) {
    let chat = chat_with(store, 10);

    let page = store.page(&chat, PageAnchor::Newest, 3);

    assert_eq!(bodies(&page.messages), ["8", "9", "10"]);
    assert_eq!(seqs(&page.messages), [8, 9, 10]);
    assert!(page.has_more_before);
    assert!(!page.has_more_after);
    assert_eq!(page.head_seq, seq(10));
    let default = store
        .messages_page(chat.id, PageAnchor::Newest, PageLimit::DEFAULT)
        .unwrap();
    assert_eq!(seqs(&default.messages), (1..=10).collect::<Vec<_>>());
}

fn pages_before_and_after_a_seq_exclude_it(store: &dyn Store) {
    let chat = chat_with(store, 10);

    let before = store.page(&chat, PageAnchor::Before(seq(6)), 3);
    let after = store.page(&chat, PageAnchor::After(seq(6)), 3);

    assert_eq!(seqs(&before.messages), [3, 4, 5]);
    assert_eq!(
        (before.has_more_before, before.has_more_after),
        (true, true)
    );
    assert_eq!(seqs(&after.messages), [7, 8, 9]);
    assert_eq!((after.has_more_before, after.has_more_after), (true, true));
    assert_eq!(before.head_seq, seq(10));
    assert_eq!(after.head_seq, seq(10));
}

fn paging_back_and_forth_visits_every_message_once(store: &dyn Store) {
    let chat = chat_with(store, 23);

    // Backwards from the newest, as a client scrolling up does.
    let mut backwards = Vec::new();
    let mut page = store.page(&chat, PageAnchor::Newest, 5);
    loop {
        backwards.splice(0..0, page.messages.iter().map(|m| m.seq.get()));
        if !page.has_more_before {
            break;
        }
        page = store.page(&chat, PageAnchor::Before(page.messages[0].seq), 5);
    }
    // Forwards from nothing, as catch-up after a reconnect does.
    let mut forwards = Vec::new();
    let mut page = store.page(&chat, PageAnchor::After(seq(0)), 5);
    loop {
        forwards.extend(page.messages.iter().map(|m| m.seq.get()));
        if !page.has_more_after {
            break;
        }
        let last = page.messages.last().unwrap().seq;
        page = store.page(&chat, PageAnchor::After(last), 5);
    }

    let all: Vec<i64> = (1..=23).collect();
    assert_eq!(backwards, all);
    assert_eq!(forwards, all);
}

/// What the port documents a page to be, for a chat whose seqs are
/// 1..=head: `(seqs, has_more_before, has_more_after)`. An empty page sits
/// where it would have been: just below a `Before` anchor, just above an
/// `After` one.
pub(crate) fn expected_page(head: i64, anchor: PageAnchor, limit: i64) -> (Vec<i64>, bool, bool) {
    let (lo, hi) = match anchor {
        PageAnchor::Newest => ((head - limit + 1).max(1), head),
        PageAnchor::Before(before) => {
            let hi = (before.get() - 1).min(head);
            ((hi - limit + 1).max(1), hi)
        }
        PageAnchor::After(after) => {
            let lo = after.get().saturating_add(1);
            (lo, after.get().saturating_add(limit).min(head))
        }
    };
    let on_page: Vec<i64> = (lo.max(1)..=hi).collect();
    let (first, last) = match (on_page.first(), on_page.last()) {
        (Some(&first), Some(&last)) => (first, last),
        // Where the empty page would have been.
        _ => match anchor {
            PageAnchor::Newest => (head + 1, head),
            PageAnchor::Before(before) => (before.get(), before.get() - 1),
            PageAnchor::After(after) => (after.get().saturating_add(1), after.get()),
        },
    };
    // Some seq in 1..first, and some in last+1..=head, exists.
    let before = first.saturating_sub(1).min(head) >= 1;
    let after = last.max(0) < head;
    (on_page, before, after)
}

fn what_lies_around_a_page_is_exactly_right_at_both_ends(store: &dyn Store) {
    let alice = store.user("alice");
    let mut checked = 0;
    for head in [0_i64, 1, 2, 7] {
        let other = store.user(&format!("other{head}"));
        let chat = store.chat(&alice, &other);
        for n in 0..head {
            store.send(&chat, &alice, &n.to_string());
        }
        let mut anchors = vec![PageAnchor::Newest];
        for s in (0..=head + 2).chain([50, i64::MAX]) {
            anchors.push(PageAnchor::Before(seq(s)));
            anchors.push(PageAnchor::After(seq(s)));
        }
        for anchor in anchors {
            for limit in [1_usize, 2, 3, 7, 8, 200] {
                let page = store.page(&chat, anchor, limit);
                let actual = (
                    seqs(&page.messages),
                    page.has_more_before,
                    page.has_more_after,
                );
                let expected = expected_page(head, anchor, limit as i64);
                assert_eq!(
                    actual, expected,
                    "head {head}, {anchor:?}, limit {limit}: (seqs, before, after)"
                );
                assert_eq!(page.head_seq, seq(head));
                checked += 1;
            }
        }
    }
    assert!(checked > 300);
}

fn an_empty_chat_has_an_empty_page_with_nothing_around_it(store: &dyn Store) {
    let chat = chat_with(store, 0);

    for anchor in [
        PageAnchor::Newest,
        PageAnchor::Before(seq(0)),
        PageAnchor::Before(seq(1)),
        PageAnchor::Before(seq(5)),
        PageAnchor::After(seq(0)),
        PageAnchor::After(seq(5)),
    ] {
        let page = store.page(&chat, anchor, 50);
        assert_eq!(page.messages, vec![], "{anchor:?}");
        assert!(!page.has_more_before, "{anchor:?}: nothing before");
        assert!(!page.has_more_after, "{anchor:?}: nothing after");
        assert_eq!(page.head_seq, seq(0));
    }
}

fn anchors_past_the_head_find_what_is_below_it(store: &dyn Store) {
    let chat = chat_with(store, 10);

    let before = store.page(&chat, PageAnchor::Before(seq(50)), 3);
    assert_eq!(seqs(&before.messages), [8, 9, 10]);
    assert_eq!(
        (before.has_more_before, before.has_more_after),
        (true, false)
    );

    let before_max = store.page(&chat, PageAnchor::Before(seq(i64::MAX)), 200);
    assert_eq!(seqs(&before_max.messages), (1..=10).collect::<Vec<_>>());
    assert_eq!(
        (before_max.has_more_before, before_max.has_more_after),
        (false, false)
    );

    for after in [10, 11, 50, i64::MAX] {
        let page = store.page(&chat, PageAnchor::After(seq(after)), 3);
        assert_eq!(page.messages, vec![], "after {after}");
        assert_eq!(
            (page.has_more_before, page.has_more_after),
            (true, false),
            "after {after}"
        );
        assert_eq!(page.head_seq, seq(10));
    }
}

fn a_page_holds_one_to_two_hundred_messages(store: &dyn Store) {
    let chat = chat_with(store, 250);

    let one = store.page(&chat, PageAnchor::Newest, 1);
    assert_eq!(seqs(&one.messages), [250]);
    assert_eq!((one.has_more_before, one.has_more_after), (true, false));
    let one_after = store.page(&chat, PageAnchor::After(seq(0)), 1);
    assert_eq!(seqs(&one_after.messages), [1]);
    let one_before = store.page(&chat, PageAnchor::Before(seq(2)), 1);
    assert_eq!(seqs(&one_before.messages), [1]);
    assert_eq!(
        (one_before.has_more_before, one_before.has_more_after),
        (false, true)
    );

    let max = store
        .messages_page(chat.id, PageAnchor::Newest, PageLimit::MAX)
        .unwrap();
    assert_eq!(seqs(&max.messages), (51..=250).collect::<Vec<_>>());
    assert_eq!((max.has_more_before, max.has_more_after), (true, false));
    let first = store.page(&chat, PageAnchor::After(seq(0)), 200);
    assert_eq!(seqs(&first.messages), (1..=200).collect::<Vec<_>>());
    assert_eq!((first.has_more_before, first.has_more_after), (false, true));
    let rest = store.page(&chat, PageAnchor::After(seq(200)), 200);
    assert_eq!(seqs(&rest.messages), (201..=250).collect::<Vec<_>>());
    assert_eq!((rest.has_more_before, rest.has_more_after), (true, false));
    // The limits themselves are the domain's.
    assert_eq!(PageLimit::new(0), None);
    assert_eq!(PageLimit::new(201), None);
    assert_eq!(page_limit(200), PageLimit::MAX);
}

fn a_page_shows_only_its_own_chats_messages(store: &dyn Store) {
    let alice = store.user("alice");
    let bob = store.user("bob");
    let carol = store.user("carol");
    let chat = store.chat(&alice, &bob);
    let elsewhere = store.chat(&alice, &carol);
    let mut sent = Vec::new();
    for i in 0..7 {
        let sender = if i % 2 == 0 { &alice } else { &bob };
        sent.push(store.send(&chat, sender, &format!("m{i}")));
        // Interleaved messages of another chat must not show up.
        store.send(&elsewhere, &carol, "noise");
    }

    let page1 = store.page(&chat, PageAnchor::After(seq(0)), 3);
    let page2 = store.page(&chat, PageAnchor::After(page1.messages[2].seq), 3);
    let page3 = store.page(&chat, PageAnchor::After(page2.messages[2].seq), 3);

    assert_eq!(page1.messages, sent[0..3]);
    assert_eq!(page2.messages, sent[3..6]);
    assert_eq!(page3.messages, sent[6..7]);
    assert!(!page3.has_more_after);
    assert_eq!(store.page(&chat, PageAnchor::Newest, 200).messages, sent);
}

fn the_read_cursors_of_a_page_say_what_each_recipient_read(store: &dyn Store) {
    let alice = store.user("alice");
    let bob = store.user("bob");
    let chat = store.chat(&alice, &bob);
    store.send(&chat, &alice, "a1"); // 1
    store.send(&chat, &bob, "b1"); // 2
    store.send(&chat, &alice, "a2"); // 3
    store.send(&chat, &bob, "b2"); // 4
    store.send(&chat, &alice, "a3"); // 5

    let read_flags = || -> Vec<(String, bool)> {
        let page = store.page(&chat, PageAnchor::Newest, 10);
        page.messages
            .iter()
            .map(|m| {
                (
                    m.body.clone(),
                    page.read_cursors.is_read(m.sender.id, m.seq),
                )
            })
            .collect()
    };
    let expect = |flags: [bool; 5]| -> Vec<(String, bool)> {
        ["a1", "b1", "a2", "b2", "a3"]
            .into_iter()
            .map(String::from)
            .zip(flags)
            .collect()
    };
    assert_eq!(read_flags(), expect([false; 5]));

    store.read_to(&chat, &bob, 1); // bob read a1
    store.read_to(&chat, &alice, 4); // alice read b1, b2
    assert_eq!(read_flags(), expect([true, true, false, true, false]));

    // Delivery is not reading.
    store.deliver_to(&chat, &bob, 5);
    assert_eq!(read_flags(), expect([true, true, false, true, false]));

    store.read_to(&chat, &bob, 5);
    assert_eq!(read_flags(), expect([true; 5]));
}

fn a_page_of_an_unknown_chat_is_an_error(store: &dyn Store) {
    // Callers page only chats they opened; the stores agree on refusing.
    let result = store.messages_page(ChatId::new(999), PageAnchor::Newest, page_limit(10));
    assert!(result.is_err(), "{result:?}");
}

fn paging_after_the_last_seq_while_others_append_never_skips_a_message(store: &dyn Store) {
    // Catch-up pages "after the last seq held"; a message whose seq is
    // below one already read must never commit later.
    const WRITERS: usize = 4;
    const PER_WRITER: usize = 100;
    let alice = store.user("alice");
    let bob = store.user("bob");
    let chat = store.chat(&alice, &bob);
    let barrier = Barrier::new(WRITERS + 1);
    let done = AtomicUsize::new(0);

    let seen = std::thread::scope(|scope| {
        for i in 0..WRITERS {
            let (barrier, chat, done) = (&barrier, &chat, &done);
            let me = if i % 2 == 0 { &alice } else { &bob };
            scope.spawn(move || {
                barrier.wait();
                for n in 0..PER_WRITER {
                    if n % 10 == 0 {
                        let batch: Vec<_> = (0..3)
                            .map(|k| new_message(chat, me, &format!("{i}-{n}-{k}"), None))
                            .collect();
                        store.insert_messages(&batch).unwrap();
                    } else {
                        store.send(chat, me, &format!("{i}-{n}"));
                    }
                }
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
        barrier.wait();
        let mut seen: Vec<i64> = Vec::new();
        loop {
            let writers_done = done.load(Ordering::SeqCst) == WRITERS;
            let after = seq(seen.last().copied().unwrap_or(0));
            let page = store.page(&chat, PageAnchor::After(after), 7);
            seen.extend(seqs(&page.messages));
            if writers_done && page.messages.is_empty() {
                break seen;
            }
        }
    });

    let total = (WRITERS * (PER_WRITER + 20)) as i64;
    assert_eq!(
        seen,
        (1..=total).collect::<Vec<_>>(),
        "paging skipped messages"
    );
}

fn a_page_read_while_messages_arrive_holds_nothing_past_its_head(store: &dyn Store) {
    const WRITERS: usize = 3;
    const READERS: usize = 3;
    const ROUNDS: usize = 60;
    let alice = store.user("alice");
    let bob = store.user("bob");
    let chat = store.chat(&alice, &bob);
    let barrier = Barrier::new(WRITERS + READERS);

    std::thread::scope(|scope| {
        for _ in 0..WRITERS {
            let (barrier, chat, bob) = (&barrier, &chat, &bob);
            scope.spawn(move || {
                barrier.wait();
                for n in 0..ROUNDS {
                    store.send(chat, bob, &n.to_string());
                }
            });
        }
        for r in 0..READERS {
            let (barrier, chat) = (&barrier, &chat);
            scope.spawn(move || {
                barrier.wait();
                for n in 0..ROUNDS {
                    let anchor = match (r + n) % 3 {
                        0 => PageAnchor::Newest,
                        1 => PageAnchor::After(seq((n as i64 * 2).saturating_sub(5).max(0))),
                        _ => PageAnchor::Before(seq(i64::MAX)),
                    };
                    let page = store.page(chat, anchor, 5);
                    let last = page.messages.last().map_or(0, |m| m.seq.get());
                    assert!(
                        last <= page.head_seq.get(),
                        "{anchor:?}: {last} past {page:?}"
                    );
                    if !page.messages.is_empty() {
                        assert_eq!(page.has_more_after, last < page.head_seq.get(), "{page:?}");
                    }
                }
            });
        }
    });
}
