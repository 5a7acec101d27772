//! Read and delivery cursors (`MessageRepository::move_cursor`): moved by
//! the domain's rule (`Cursors::advanced`: forward only, clamped to the
//! head, reading implies delivery), atomically, with the caller's unread
//! count.

use std::sync::Barrier;

use chat_domain::chat::{ChatId, CursorKind, Cursors, DirectChat};
use chat_domain::user::User;

use crate::stores::{new_message, seq, Store, StoreExt as _};

contract_tests!(
    a_cursor_moves_forward_only,
    a_cursor_past_the_head_is_clamped_to_it,
    a_cursor_in_an_empty_chat_stays_at_zero,
    reading_implies_delivery,
    delivery_does_not_imply_reading,
    a_cursor_change_says_where_both_cursors_were_and_are,
    one_participants_cursors_leave_the_others_alone,
    reading_clears_the_unread_count_of_the_reader_only,
    unread_counts_only_the_other_participants_messages_above_the_read_cursor,
    reading_ones_own_messages_says_nothing_about_the_other_reading_them,
    moving_a_cursor_as_a_non_participant_is_an_error_and_changes_nothing,
    concurrent_moves_never_leave_a_smaller_value_behind,
    a_move_while_messages_arrive_reports_a_head_its_cursors_do_not_pass,
);

fn cursors(read: i64, delivered: i64) -> Cursors {
    Cursors {
        read_up_to: seq(read),
        delivered_up_to: seq(delivered),
    }
}

/// Alice, Bob and their chat, with `from_bob` messages from Bob.
fn chat_with_messages_from_bob(store: &dyn Store, from_bob: usize) -> (User, User, DirectChat) {
    let alice = store.user("alice");
    let bob = store.user("bob");
    let chat = store.chat(&alice, &bob);
    if from_bob > 0 {
        let batch: Vec<_> = (0..from_bob)
            .map(|i| new_message(&chat, &bob, &format!("b{i}"), None))
            .collect();
        store.insert_messages(&batch).unwrap();
    }
    (alice, bob, chat)
}

fn a_cursor_moves_forward_only(store: &dyn Store) {
    let (alice, _, chat) = chat_with_messages_from_bob(store, 5);

    let forward = store.read_to(&chat, &alice, 3);
    let back = store.read_to(&chat, &alice, 2);
    let same = store.read_to(&chat, &alice, 3);
    let further = store.read_to(&chat, &alice, 4);

    assert_eq!(forward.after, cursors(3, 3));
    assert_eq!(back.before, cursors(3, 3));
    assert_eq!(back.after, cursors(3, 3), "a move back changes nothing");
    assert!(back.moved().is_empty(), "and announces nothing");
    assert!(same.moved().is_empty());
    assert_eq!(further.after, cursors(4, 4));
    let delivered_back = store.deliver_to(&chat, &alice, 1);
    assert_eq!(delivered_back.after, cursors(4, 4));
    assert_eq!(store.summary(alice.id, chat.id).mine, cursors(4, 4));
}

fn a_cursor_past_the_head_is_clamped_to_it(store: &dyn Store) {
    let (alice, bob, chat) = chat_with_messages_from_bob(store, 5);

    let read = store.read_to(&chat, &alice, 1_000);
    let delivered = store.deliver_to(&chat, &bob, i64::MAX);

    assert_eq!(read.after, cursors(5, 5));
    assert_eq!(read.head_seq, seq(5));
    assert_eq!(read.unread_count, 0);
    assert_eq!(delivered.after, cursors(0, 5));
    // A later message is unread although the cursor was asked past it.
    store.send(&chat, &bob, "later");
    assert_eq!(store.unread(&alice, &chat), 1);
    assert_eq!(store.summary(alice.id, chat.id).mine, cursors(5, 5));
    assert_eq!(store.read_to(&chat, &alice, 6).after, cursors(6, 6));
}

fn a_cursor_in_an_empty_chat_stays_at_zero(store: &dyn Store) {
    let (alice, bob, chat) = chat_with_messages_from_bob(store, 0);

    let change = store.read_to(&chat, &alice, 5);

    assert_eq!(change.after, cursors(0, 0));
    assert!(change.moved().is_empty());
    assert_eq!(change.head_seq, seq(0));
    assert_eq!(change.unread_count, 0);
    // So the first message is unread.
    store.send(&chat, &bob, "first");
    assert_eq!(store.unread(&alice, &chat), 1);
}

fn reading_implies_delivery(store: &dyn Store) {
    let (alice, _, chat) = chat_with_messages_from_bob(store, 10);

    let read = store.read_to(&chat, &alice, 3);
    assert_eq!(read.after, cursors(3, 3));
    assert_eq!(
        read.moved(),
        [(CursorKind::Read, seq(3)), (CursorKind::Delivered, seq(3))]
    );

    // Delivery ahead of reading stays where it is.
    store.deliver_to(&chat, &alice, 8);
    let read = store.read_to(&chat, &alice, 5);
    assert_eq!(read.after, cursors(5, 8));
    assert_eq!(read.moved(), [(CursorKind::Read, seq(5))]);
}

fn delivery_does_not_imply_reading(store: &dyn Store) {
    let (alice, _, chat) = chat_with_messages_from_bob(store, 5);

    let delivered = store.deliver_to(&chat, &alice, 4);

    assert_eq!(delivered.after, cursors(0, 4));
    assert_eq!(delivered.moved(), [(CursorKind::Delivered, seq(4))]);
    assert_eq!(delivered.unread_count, 5);
    assert_eq!(store.unread(&alice, &chat), 5);
}

fn a_cursor_change_says_where_both_cursors_were_and_are(store: &dyn Store) {
    let (alice, _, chat) = chat_with_messages_from_bob(store, 6);
    store.deliver_to(&chat, &alice, 2);

    let change = store.read_to(&chat, &alice, 4);

    assert_eq!(change.before, cursors(0, 2));
    assert_eq!(change.after, cursors(4, 4));
    assert_eq!(change.head_seq, seq(6));
    assert_eq!(change.unread_count, 2);
}

fn one_participants_cursors_leave_the_others_alone(store: &dyn Store) {
    let (alice, bob, chat) = chat_with_messages_from_bob(store, 4);
    store.send(&chat, &alice, "a");

    store.read_to(&chat, &alice, 3);
    store.deliver_to(&chat, &bob, 5);

    assert_eq!(store.summary(alice.id, chat.id).mine, cursors(3, 3));
    assert_eq!(store.summary(alice.id, chat.id).theirs, cursors(0, 5));
    assert_eq!(store.summary(bob.id, chat.id).mine, cursors(0, 5));
    assert_eq!(store.summary(bob.id, chat.id).theirs, cursors(3, 3));
}

fn reading_clears_the_unread_count_of_the_reader_only(store: &dyn Store) {
    let alice = store.user("alice");
    let bob = store.user("bob");
    let chat = store.chat(&alice, &bob);
    let first = store.send(&chat, &bob, "one");
    let second = store.send(&chat, &bob, "two");
    store.send(&chat, &alice, "from alice");

    let change = store.read_to(&chat, &alice, first.seq.get());
    assert_eq!(change.unread_count, 1);
    assert_eq!(store.unread(&alice, &chat), 1);

    let change = store.read_to(&chat, &alice, second.seq.get());
    assert_eq!(change.unread_count, 0);
    assert_eq!(store.unread(&alice, &chat), 0);
    assert_eq!(store.unread(&bob, &chat), 1);

    store.send(&chat, &bob, "three");
    assert_eq!(store.unread(&alice, &chat), 1);
}

fn unread_counts_only_the_other_participants_messages_above_the_read_cursor(store: &dyn Store) {
    let alice = store.user("alice");
    let bob = store.user("bob");
    let carol = store.user("carol");
    let chat = store.chat(&alice, &bob);
    // Messages elsewhere count nowhere here.
    let elsewhere = store.chat(&alice, &carol);
    store.send(&elsewhere, &carol, "noise");
    // seq: 1 b, 2 a, 3 b, 4 b, 5 a, 6 b, 7 a
    for sender in [&bob, &alice, &bob, &bob, &alice, &bob, &alice] {
        store.send(&chat, sender, "m");
    }
    let bobs_above = |cursor: i64| [1, 3, 4, 6].iter().filter(|&&s| s > cursor).count() as u64;
    let alices_above = |cursor: i64| [2, 5, 7].iter().filter(|&&s| s > cursor).count() as u64;

    for cursor in 0..=7 {
        let change = store.read_to(&chat, &alice, cursor);
        assert_eq!(change.unread_count, bobs_above(cursor), "alice at {cursor}");
        assert_eq!(store.unread(&alice, &chat), bobs_above(cursor));
        let change = store.read_to(&chat, &bob, cursor);
        assert_eq!(change.unread_count, alices_above(cursor), "bob at {cursor}");
        assert_eq!(store.unread(&bob, &chat), alices_above(cursor));
    }
}

fn reading_ones_own_messages_says_nothing_about_the_other_reading_them(store: &dyn Store) {
    let alice = store.user("alice");
    let bob = store.user("bob");
    let chat = store.chat(&alice, &bob);
    let mine = store.send(&chat, &alice, "from alice");

    let is_read = || {
        store
            .page(&chat, chat_domain::chat::PageAnchor::Newest, 10)
            .read_cursors
            .is_read(alice.id, mine.seq)
    };
    // Alice "reading" her own message says nothing about Bob having read it.
    store.read_to(&chat, &alice, mine.seq.get());
    assert!(!is_read());
    assert_eq!(store.unread(&bob, &chat), 1);

    store.read_to(&chat, &bob, mine.seq.get());
    assert!(is_read());
    assert_eq!(store.unread(&bob, &chat), 0);
}

fn moving_a_cursor_as_a_non_participant_is_an_error_and_changes_nothing(store: &dyn Store) {
    let (alice, bob, chat) = chat_with_messages_from_bob(store, 3);
    let carol = store.user("carol");

    for kind in [CursorKind::Read, CursorKind::Delivered] {
        let outsider = store.move_cursor(chat.id, carol.id, kind, seq(3));
        assert!(outsider.is_err(), "{kind:?}: {outsider:?}");
        let unknown_chat = store.move_cursor(ChatId::new(999), alice.id, kind, seq(3));
        assert!(unknown_chat.is_err(), "{kind:?}: {unknown_chat:?}");
    }

    for user in [&alice, &bob] {
        assert_eq!(store.summary(user.id, chat.id).mine, cursors(0, 0));
    }
    assert_eq!(store.unread(&alice, &chat), 3);
}

fn concurrent_moves_never_leave_a_smaller_value_behind(store: &dyn Store) {
    const THREADS: i64 = 8;
    const MOVES: i64 = 30;
    let (alice, _, chat) = chat_with_messages_from_bob(store, 100);
    let barrier = Barrier::new(THREADS as usize);

    let highest = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (barrier, chat, alice) = (&barrier, &chat, &alice);
                scope.spawn(move || {
                    barrier.wait();
                    let mut last = Cursors::default();
                    let mut highest = (0, 0);
                    for n in 0..MOVES {
                        // Thread 0 jumps near the end at once; the others
                        // creep up and keep asking for less.
                        let to = if t == 0 && n == 0 {
                            97
                        } else {
                            (t * 7 + n * 3) % 90
                        };
                        let kind = if n % 3 == 2 {
                            CursorKind::Delivered
                        } else {
                            CursorKind::Read
                        };
                        let change = store.move_to(chat, alice, kind, to);
                        assert!(change.after.read_up_to >= change.before.read_up_to);
                        assert!(change.after.delivered_up_to >= change.before.delivered_up_to);
                        assert!(change.after.delivered_up_to >= change.after.read_up_to);
                        // What one thread sees never goes back either.
                        assert!(change.after.read_up_to >= last.read_up_to);
                        assert!(change.after.delivered_up_to >= last.delivered_up_to);
                        last = change.after;
                        match kind {
                            CursorKind::Read => highest.0 = to.max(highest.0),
                            CursorKind::Delivered => highest.1 = to.max(highest.1),
                        }
                    }
                    highest
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold((0, 0), |(r, d), (tr, td)| (r.max(tr), d.max(td)))
    });

    let (read, delivered) = highest;
    assert_eq!(read, 97);
    assert_eq!(
        store.summary(alice.id, chat.id).mine,
        cursors(read, delivered.max(read))
    );
}

fn a_move_while_messages_arrive_reports_a_head_its_cursors_do_not_pass(store: &dyn Store) {
    const WRITERS: usize = 3;
    const READERS: usize = 3;
    const ROUNDS: usize = 60;
    let (alice, bob, chat) = chat_with_messages_from_bob(store, 1);
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
            let (barrier, chat, alice) = (&barrier, &chat, &alice);
            scope.spawn(move || {
                barrier.wait();
                for n in 0..ROUNDS {
                    let kind = if (r + n) % 2 == 0 {
                        CursorKind::Read
                    } else {
                        CursorKind::Delivered
                    };
                    // "Everything": clamped to the head the move saw.
                    let change = store.move_to(chat, alice, kind, i64::MAX);
                    assert!(
                        change.after.read_up_to <= change.head_seq
                            && change.after.delivered_up_to <= change.head_seq,
                        "{change:?}"
                    );
                    // Every message is Bob's: the unread ones are those
                    // between the cursor and that head.
                    let between = change.head_seq.get() - change.after.read_up_to.get();
                    assert_eq!(change.unread_count, between as u64, "{change:?}");
                }
            });
        }
    });

    let head = (1 + WRITERS * ROUNDS) as i64;
    let last = store.read_to(&chat, &alice, i64::MAX);
    assert_eq!(last.after, cursors(head, head));
    assert_eq!(last.head_seq, seq(head));
}
