//! Storing messages (`MessageRepository::insert_messages`): dense per-chat
//! `seq`s, batches, `client_id` retry keys, bodies and times as sent.

use std::sync::Barrier;

use chat_domain::chat::{Gap, Inserted, PageAnchor, PageLimit};
use chrono::Utc;

use crate::stores::{bodies, new_message, new_one, seq, seqs, Store, StoreExt as _};

contract_tests!(
    a_new_message_gets_seq_one_and_keeps_its_sender_body_and_time,
    seq_is_dense_from_one_per_chat_and_independent_across_chats,
    a_batch_across_chats_numbers_each_chats_messages_in_the_order_given,
    ids_and_seqs_grow_together_within_a_chat,
    an_empty_batch_stores_nothing,
    a_batch_with_one_bad_message_stores_none_of_it,
    a_resend_with_the_same_client_id_returns_the_original_and_stores_nothing,
    a_resend_with_another_body_still_returns_the_original,
    the_same_client_id_twice_in_one_batch_is_stored_once,
    resends_in_a_batch_take_no_seq,
    the_same_client_id_from_the_other_participant_is_another_message,
    the_same_client_id_in_another_chat_is_another_message,
    messages_without_a_client_id_never_collide,
    concurrent_sends_of_one_client_id_store_it_once,
    odd_bodies_are_stored_byte_for_byte,
    timestamps_read_back_exactly_and_in_order,
    concurrent_senders_get_dense_seqs_in_id_order,
    heads_are_read_for_many_chats_at_once,
    gaps_of_many_chats_are_read_at_once_each_within_its_bounds,
    with_no_other_writer_skipping_busy_chats_stores_everything,
    each_message_of_a_batch_comes_back_with_the_id_it_is_stored_under,
);

fn a_new_message_gets_seq_one_and_keeps_its_sender_body_and_time(store: &dyn Store) {
    let alice = store.user("alice");
    let bob = store.user("bob");
    let chat = store.chat(&alice, &bob);

    let sent = store.send(&chat, &alice, "hello");

    assert_eq!(sent.chat_id, chat.id);
    assert_eq!(sent.seq, seq(1));
    assert_eq!(sent.sender, alice);
    assert_eq!(sent.body, "hello");
    assert_eq!(sent.client_id, None);
    assert!((Utc::now() - sent.created).num_seconds().abs() < 60);
    let page = store.page(&chat, PageAnchor::Newest, 10);
    assert_eq!(page.messages, vec![sent]);
    assert_eq!(page.head_seq, seq(1));
}

fn seq_is_dense_from_one_per_chat_and_independent_across_chats(store: &dyn Store) {
    let alice = store.user("alice");
    let bob = store.user("bob");
    let carol = store.user("carol");
    let with_bob = store.chat(&alice, &bob);
    let with_carol = store.chat(&alice, &carol);

    // Interleaved, one message at a time and in batches.
    let mut to_bob = Vec::new();
    let mut to_carol = Vec::new();
    for i in 0..5 {
        to_bob.push(store.send(&with_bob, if i % 2 == 0 { &alice } else { &bob }, "b"));
        to_carol.push(store.send(&with_carol, &carol, "c"));
        if i == 2 {
            to_carol.push(store.send(&with_carol, &alice, "c"));
        }
    }
    let batch: Vec<_> = (0..3)
        .map(|_| new_message(&with_bob, &bob, "batch", None))
        .collect();
    to_bob.extend(
        store
            .insert_messages(&batch)
            .unwrap()
            .into_iter()
            .map(new_one),
    );

    assert_eq!(seqs(&to_bob), (1..=8).collect::<Vec<_>>());
    assert_eq!(seqs(&to_carol), (1..=6).collect::<Vec<_>>());
    assert_eq!(store.all_messages(&with_bob), to_bob);
    assert_eq!(store.all_messages(&with_carol), to_carol);
    // A chat's first message is 1 whatever happened elsewhere.
    let dave = store.user("dave");
    let with_dave = store.chat(&dave, &carol);
    assert_eq!(store.send(&with_dave, &dave, "first").seq, seq(1));
}

fn a_batch_across_chats_numbers_each_chats_messages_in_the_order_given(store: &dyn Store) {
    let alice = store.user("alice");
    let bob = store.user("bob");
    let carol = store.user("carol");
    let with_bob = store.chat(&alice, &bob);
    let with_carol = store.chat(&alice, &carol);
    store.send(&with_carol, &alice, "already there");
    let batch: Vec<_> = (0..300)
        .map(|i| match i % 3 {
            0 => new_message(&with_bob, &alice, &format!("to bob {i}"), None),
            1 => new_message(&with_carol, &carol, &format!("from carol {i}"), None),
            _ => new_message(&with_bob, &bob, &format!("from bob {i}"), None),
        })
        .collect();

    let stored: Vec<_> = store
        .insert_messages(&batch)
        .unwrap()
        .into_iter()
        .map(new_one)
        .collect();

    assert_eq!(stored.len(), 300);
    for (message, sent) in stored.iter().zip(&batch) {
        assert_eq!(message.chat_id, sent.chat_id);
        assert_eq!(message.sender, sent.sender);
        assert_eq!(message.body, sent.body.as_ref());
        assert_eq!(message.client_id, None);
    }
    let in_chat = |chat| -> Vec<_> {
        stored
            .iter()
            .filter(|m| m.chat_id == chat)
            .cloned()
            .collect()
    };
    let to_bob = in_chat(with_bob.id);
    let to_carol = in_chat(with_carol.id);
    // In the order given, on from each chat's own head.
    assert_eq!(seqs(&to_bob), (1..=200).collect::<Vec<_>>());
    assert_eq!(seqs(&to_carol), (2..=101).collect::<Vec<_>>());
    assert_eq!(to_bob[0].body, "to bob 0");
    assert_eq!(to_bob[1].body, "from bob 2");
    assert_eq!(to_carol[0].body, "from carol 1");
    assert_eq!(store.all_messages(&with_bob), to_bob);
    assert_eq!(store.all_messages(&with_carol)[1..], to_carol[..]);
}

fn ids_and_seqs_grow_together_within_a_chat(store: &dyn Store) {
    let alice = store.user("alice");
    let bob = store.user("bob");
    let carol = store.user("carol");
    let chat = store.chat(&alice, &bob);
    let noise = store.chat(&alice, &carol);
    for i in 0..10 {
        store.send(&chat, &alice, "one");
        store.send(&noise, &carol, "noise");
        let batch = vec![
            new_message(&noise, &alice, "noise", None),
            new_message(&chat, &bob, "two", None),
            new_message(&noise, &carol, "noise", None),
            new_message(&chat, &alice, "three", Some(&format!("k{i}"))),
        ];
        store.insert_messages(&batch).unwrap();
    }

    for chat in [&chat, &noise] {
        let all = store.all_messages(chat);
        assert_eq!(all.len(), 30);
        assert!(
            all.windows(2)
                .all(|w| w[0].id < w[1].id && w[1].seq == w[0].seq.next()),
            "ids and seqs out of step in chat {}",
            chat.id
        );
    }
}

fn an_empty_batch_stores_nothing(store: &dyn Store) {
    let alice = store.user("alice");
    let bob = store.user("bob");
    let chat = store.chat(&alice, &bob);

    assert_eq!(store.insert_messages(&[]).unwrap(), vec![]);
    assert_eq!(store.page(&chat, PageAnchor::Newest, 10).head_seq, seq(0));
}

fn a_batch_with_one_bad_message_stores_none_of_it(store: &dyn Store) {
    let alice = store.user("alice");
    let bob = store.user("bob");
    let mallory = store.user("mallory");
    let chat = store.chat(&alice, &bob);
    let batch = [
        new_message(&chat, &alice, "hi", Some("k1")),
        // Not a participant: refused (by the (chat, sender) foreign key in
        // SQL), and with it the whole batch.
        new_message(&chat, &mallory, "hi", None),
    ];

    assert!(store.insert_messages(&batch).is_err());

    assert_eq!(store.page(&chat, PageAnchor::Newest, 10).messages, vec![]);
    // No seq and no retry key was used up.
    let again = new_one(store.send_keyed(&chat, &alice, "hi", "k1"));
    assert_eq!(again.seq, seq(1));
}

fn a_resend_with_the_same_client_id_returns_the_original_and_stores_nothing(store: &dyn Store) {
    let alice = store.user("alice");
    let bob = store.user("bob");
    let chat = store.chat(&alice, &bob);
    let original = new_one(store.send_keyed(&chat, &alice, "hello", "c-7f3a"));
    assert_eq!(
        original.client_id.as_ref().map(AsRef::as_ref),
        Some("c-7f3a")
    );
    store.send(&chat, &bob, "in between");

    let resent = store.send_keyed(&chat, &alice, "hello", "c-7f3a");

    // The very same message: id, seq, body, created, client_id, sender.
    assert_eq!(resent, Inserted::Existing(original.clone()));
    let all = store.all_messages(&chat);
    assert_eq!(all.len(), 2, "the resend stored nothing");
    assert_eq!(all[0], original);
    assert_eq!(store.summary(bob.id, chat.id).head_seq, seq(2));
    // And again, later: still the original.
    assert_eq!(
        store.send_keyed(&chat, &alice, "hello", "c-7f3a"),
        Inserted::Existing(original)
    );
}

fn a_resend_with_another_body_still_returns_the_original(store: &dyn Store) {
    // Whether that is a conflict is the domain's call (it compares bodies).
    let alice = store.user("alice");
    let bob = store.user("bob");
    let chat = store.chat(&alice, &bob);
    let original = new_one(store.send_keyed(&chat, &alice, "hello", "k"));

    let resent = store.send_keyed(&chat, &alice, "something else", "k");

    assert_eq!(resent, Inserted::Existing(original));
    assert_eq!(bodies(&store.all_messages(&chat)), ["hello"]);
}

fn the_same_client_id_twice_in_one_batch_is_stored_once(store: &dyn Store) {
    let alice = store.user("alice");
    let bob = store.user("bob");
    let chat = store.chat(&alice, &bob);
    let batch = [
        new_message(&chat, &alice, "first", Some("k")),
        new_message(&chat, &alice, "second", Some("k")),
    ];

    let outcomes = store.insert_messages(&batch).unwrap();

    let [Inserted::New(first), second] = outcomes.as_slice() else {
        panic!("the first of the batch is new: {outcomes:?}");
    };
    assert_eq!(second, &Inserted::Existing(first.clone()));
    assert_eq!(first.body, "first");
    assert_eq!(store.all_messages(&chat), vec![first.clone()]);
}

fn resends_in_a_batch_take_no_seq(store: &dyn Store) {
    let alice = store.user("alice");
    let bob = store.user("bob");
    let chat = store.chat(&alice, &bob);
    let old = new_one(store.send_keyed(&chat, &alice, "old", "old"));
    let batch = [
        new_message(&chat, &alice, "a", Some("a")),
        new_message(&chat, &alice, "old", Some("old")),
        new_message(&chat, &bob, "b", None),
        new_message(&chat, &alice, "a", Some("a")),
        new_message(&chat, &alice, "c", Some("c")),
    ];

    let outcomes = store.insert_messages(&batch).unwrap();

    let news: Vec<_> = outcomes
        .iter()
        .filter_map(|o| match o {
            Inserted::New(m) => Some((m.seq.get(), m.body.as_str())),
            Inserted::Existing(_) => None,
        })
        .collect();
    assert_eq!(news, [(2, "a"), (3, "b"), (4, "c")]);
    assert_eq!(outcomes[1], Inserted::Existing(old));
    assert!(matches!(&outcomes[3], Inserted::Existing(m) if m.seq == seq(2)));
    assert_eq!(seqs(&store.all_messages(&chat)), [1, 2, 3, 4]);
}

fn the_same_client_id_from_the_other_participant_is_another_message(store: &dyn Store) {
    let alice = store.user("alice");
    let bob = store.user("bob");
    let chat = store.chat(&alice, &bob);

    let from_alice = new_one(store.send_keyed(&chat, &alice, "hi", "same"));
    let from_bob = store.send_keyed(&chat, &bob, "hi", "same");

    let from_bob = new_one(from_bob);
    assert_ne!(from_alice.id, from_bob.id);
    assert_eq!(from_bob.seq, seq(2));
    assert_eq!(from_bob.sender, bob);
    // Each is a retry key of its own sender.
    assert_eq!(
        store.send_keyed(&chat, &bob, "hi", "same"),
        Inserted::Existing(from_bob)
    );
    assert_eq!(
        store.send_keyed(&chat, &alice, "hi", "same"),
        Inserted::Existing(from_alice)
    );
}

fn the_same_client_id_in_another_chat_is_another_message(store: &dyn Store) {
    let alice = store.user("alice");
    let bob = store.user("bob");
    let carol = store.user("carol");
    let with_bob = store.chat(&alice, &bob);
    let with_carol = store.chat(&alice, &carol);

    let first = new_one(store.send_keyed(&with_bob, &alice, "hi", "same"));
    let second = new_one(store.send_keyed(&with_carol, &alice, "hi", "same"));

    assert_ne!(first.id, second.id);
    assert_eq!(
        (first.chat_id, second.chat_id),
        (with_bob.id, with_carol.id)
    );
    assert_eq!(second.seq, seq(1));
    // And in one batch across both chats.
    let batch = [
        new_message(&with_bob, &alice, "x", Some("batch")),
        new_message(&with_carol, &alice, "x", Some("batch")),
    ];
    let outcomes = store.insert_messages(&batch).unwrap();
    assert!(outcomes.iter().all(|o| matches!(o, Inserted::New(_))));
}

fn messages_without_a_client_id_never_collide(store: &dyn Store) {
    let alice = store.user("alice");
    let bob = store.user("bob");
    let chat = store.chat(&alice, &bob);
    let batch: Vec<_> = (0..3)
        .map(|_| new_message(&chat, &alice, "same", None))
        .collect();

    let outcomes = store.insert_messages(&batch).unwrap();
    let single = store.send(&chat, &alice, "same");

    assert!(outcomes.iter().all(|o| matches!(o, Inserted::New(_))));
    assert_eq!(single.seq, seq(4));
    assert_eq!(store.all_messages(&chat).len(), 4);
}

fn concurrent_sends_of_one_client_id_store_it_once(store: &dyn Store) {
    const THREADS: usize = 8;
    let alice = store.user("alice");
    let bob = store.user("bob");
    let chat = store.chat(&alice, &bob);
    let barrier = Barrier::new(THREADS);

    let outcomes: Vec<Inserted> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let (barrier, chat, alice) = (&barrier, &chat, &alice);
                scope.spawn(move || {
                    barrier.wait();
                    store.send_keyed(chat, alice, "retried", "once")
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let new: Vec<_> = outcomes
        .iter()
        .filter_map(|o| match o {
            Inserted::New(m) => Some(m.clone()),
            Inserted::Existing(_) => None,
        })
        .collect();
    assert_eq!(new.len(), 1, "{outcomes:?}");
    let stored = &new[0];
    assert!(outcomes
        .iter()
        .all(|o| matches!(o, Inserted::New(m) | Inserted::Existing(m) if m == stored)));
    assert_eq!(store.all_messages(&chat), new);
}

fn odd_bodies_are_stored_byte_for_byte(store: &dyn Store) {
    let alice = store.user("alice");
    let bob = store.user("bob");
    let chat = store.chat(&alice, &bob);
    let long = "é".repeat(4096);
    let odd = [
        "  spaces  ",
        "<script>alert('x')</script>",
        "emoji 👋🏽 and ZWJ 👩‍👩‍👧",
        "line\nbreak\r\nand\ttab",
        "quotes ' \" ` and backslash \\ and %_ wildcards",
        "Robert'); DROP TABLE direct_messages;--",
        "\u{202e}right-to-left",
        " ",
        long.as_str(),
    ];

    for body in odd {
        store.send(&chat, &alice, body);
    }

    assert_eq!(bodies(&store.all_messages(&chat)), odd);
}

fn timestamps_read_back_exactly_and_in_order(store: &dyn Store) {
    let alice = store.user("alice");
    let bob = store.user("bob");
    let chat = store.chat(&alice, &bob);
    let sent: Vec<_> = (0..20)
        .map(|i| store.send(&chat, &alice, &i.to_string()))
        .collect();

    let stored = store.all_messages(&chat);

    assert_eq!(stored, sent);
    assert!(stored.windows(2).all(|w| w[0].created <= w[1].created));
}

fn concurrent_senders_get_dense_seqs_in_id_order(store: &dyn Store) {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 25;
    let alice = store.user("alice");
    let bob = store.user("bob");
    let chat = store.chat(&alice, &bob);
    let barrier = Barrier::new(THREADS);

    std::thread::scope(|scope| {
        for i in 0..THREADS {
            let (barrier, chat) = (&barrier, &chat);
            let (me, other) = if i % 2 == 0 {
                (&alice, &bob)
            } else {
                (&bob, &alice)
            };
            scope.spawn(move || {
                barrier.wait();
                for n in 0..PER_THREAD {
                    let client = (n % 2 == 0).then(|| format!("{i}-{n}"));
                    let sent = new_one(store.insert_one(new_message(
                        chat,
                        me,
                        &format!("{i}-{n}"),
                        client.as_deref(),
                    )));
                    store.read_to(chat, other, sent.seq.get());
                    store.chat_summaries(me.id).unwrap();
                }
            });
        }
    });

    let all = store.all_messages(&chat);
    assert_eq!(
        seqs(&all),
        (1..=(THREADS * PER_THREAD) as i64).collect::<Vec<_>>()
    );
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
}

fn heads_are_read_for_many_chats_at_once(store: &dyn Store) {
    let alice = store.user("alice");
    let bob = store.user("bob");
    let carol = store.user("carol");
    let busy = store.chat(&alice, &bob);
    let quiet = store.chat(&alice, &carol);
    for body in ["1", "2", "3"] {
        store.send(&busy, &bob, body);
    }

    let mut heads = store
        .heads(&[busy.id, quiet.id, chat_domain::chat::ChatId::new(999_999)])
        .unwrap();
    heads.sort();

    assert_eq!(
        heads,
        vec![(busy.id, seq(3))],
        "no messages, or no chat: absent"
    );
    assert_eq!(store.heads(&[]).unwrap(), vec![]);
}

fn gaps_of_many_chats_are_read_at_once_each_within_its_bounds(store: &dyn Store) {
    let (alice, bob, carol) = (store.user("alice"), store.user("bob"), store.user("carol"));
    let (one, two, quiet) = (
        store.chat(&alice, &bob),
        store.chat(&alice, &carol),
        store.chat(&bob, &carol),
    );
    for n in 1..=6 {
        store.send(
            &one,
            if n % 2 == 0 { &alice } else { &bob },
            &format!("one-{n}"),
        );
        store.send(&two, &carol, &format!("two-{n}"));
    }
    let gap = |chat: &chat_domain::chat::DirectChat, after, up_to| Gap {
        chat: chat.id,
        after: seq(after),
        up_to: seq(up_to),
    };

    let fills = store
        .read_gaps(
            &[
                gap(&one, 1, 4),
                gap(&two, 2, 6),
                gap(&quiet, 0, 3),
                Gap {
                    chat: chat_domain::chat::ChatId::new(999_999),
                    after: seq(0),
                    up_to: seq(5),
                },
            ],
            PageLimit::new(3).unwrap(),
        )
        .unwrap();

    let found: Vec<_> = fills
        .iter()
        .map(|fill| (fill.chat, seqs(&fill.messages), bodies(&fill.messages)))
        .collect();
    assert_eq!(
        found,
        vec![
            (one.id, vec![2, 3, 4], vec!["one-2", "one-3", "one-4"]),
            // Cut to the limit: the rest is the caller's next read.
            (two.id, vec![3, 4, 5], vec!["two-3", "two-4", "two-5"]),
        ],
        "nothing stored in the gap, or no chat: absent"
    );
    assert_eq!(fills[0].messages[0].sender.id, alice.id);
    assert_eq!(fills[0].messages[1].sender.id, bob.id);
    let mut participants = fills[1].participants.to_vec();
    participants.sort();
    let mut expected = vec![alice.id, carol.id];
    expected.sort();
    assert_eq!(participants, expected);
    assert_eq!(store.read_gaps(&[], PageLimit::MAX).unwrap(), vec![]);
}

fn with_no_other_writer_skipping_busy_chats_stores_everything(store: &dyn Store) {
    let (alice, bob, carol) = (store.user("alice"), store.user("bob"), store.user("carol"));
    let (one, two) = (store.chat(&alice, &bob), store.chat(&alice, &carol));
    let batch = [
        new_message(&one, &alice, "1a", None),
        new_message(&two, &alice, "2a", None),
        new_message(&one, &bob, "1b", None),
    ];
    let outcomes = store
        .insert_messages_skipping_busy(&batch, &[two.id])
        .unwrap();
    let stored: Vec<_> = outcomes
        .into_iter()
        .map(|outcome| new_one(outcome.expect("nothing else writes, so nothing is left out")))
        .collect();
    assert_eq!(seqs(&stored), [1, 1, 2]);
    assert_eq!(bodies(&stored), ["1a", "2a", "1b"]);
}

/// Two instances' writers on one PostgreSQL: a chat the other is appending
/// to is left out (not waited for) unless named, and named, it is stored
/// once the other commits, numbered after what the other stored.
#[cfg(feature = "postgres")]
#[test]
fn postgres_a_chat_another_writer_holds_is_left_out_unless_waited_for() {
    use chat_domain::chat::MessageRepository as _;
    use diesel::connection::SimpleConnection as _;
    use diesel::Connection as _;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let Some(empty) = crate::stores::empty_postgres() else {
        return;
    };
    let url = empty.url().to_owned();
    let store = empty.connect();
    let (alice, bob, carol) = (store.user("alice"), store.user("bob"), store.user("carol"));
    let (busy, free) = (store.chat(&alice, &bob), store.chat(&alice, &carol));

    // Another writer, mid-transaction on `busy`: it holds the chat's lock
    // and has stored message 1 there, not yet committed.
    let mut other = diesel::PgConnection::establish(&url).unwrap();
    other
        .batch_execute(&format!(
            "BEGIN;
             SELECT id FROM direct_chats WHERE id = {chat} FOR UPDATE;
             INSERT INTO direct_messages (chat_id, sender_id, body, created, seq)
                  VALUES ({chat}, {bob}, 'from the other writer', now(), 1);",
            chat = busy.id.get(),
            bob = bob.id.get()
        ))
        .unwrap();

    let batch = [
        new_message(&busy, &alice, "x", None),
        new_message(&free, &alice, "y", None),
    ];
    let outcomes = store.insert_messages_skipping_busy(&batch, &[]).unwrap();
    assert_eq!(outcomes[0], None, "the busy chat is left out");
    assert_eq!(new_one(outcomes[1].clone().unwrap()).seq, seq(1));

    // Waited for: stored only after the other writer commits, and after it.
    let committing = Arc::new(AtomicBool::new(false));
    let flag = committing.clone();
    let other_writer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(200));
        flag.store(true, Ordering::SeqCst);
        other.batch_execute("COMMIT").unwrap();
    });
    let outcomes = store
        .insert_messages_skipping_busy(&batch[..1], &[busy.id])
        .unwrap();
    assert!(
        committing.load(Ordering::SeqCst),
        "it waited for the other writer"
    );
    let x = new_one(outcomes[0].clone().unwrap());
    assert_eq!(x.seq, seq(2));
    other_writer.join().unwrap();
    assert_eq!(
        bodies(&store.all_messages(&busy)),
        ["from the other writer", "x"]
    );
}

/// The ids a batch answers with are the stored rows' ids (SQLite works
/// them out from the last one instead of reading each back), also when the
/// batch's first INSERT failed on a reused key and the rest was inserted
/// after the lookup.
fn each_message_of_a_batch_comes_back_with_the_id_it_is_stored_under(store: &dyn Store) {
    let alice = store.user("alice");
    let bob = store.user("bob");
    let carol = store.user("carol");
    let first = store.chat(&alice, &bob);
    let second = store.chat(&alice, &carol);
    store.send(&first, &bob, "before");
    let reused = new_one(store.insert_one(new_message(&second, &carol, "kept", Some("k-1"))));

    let mut batch = Vec::new();
    for n in 0..40 {
        let (chat, sender) = if n % 3 == 0 {
            (&second, &alice)
        } else {
            (&first, &bob)
        };
        let key = format!("b-{n}");
        batch.push(new_message(
            chat,
            sender,
            &format!("m{n}"),
            (n % 2 == 0).then_some(key.as_str()),
        ));
    }
    // A resend in the middle: on SQLite the first INSERT fails on it.
    batch.insert(20, new_message(&second, &carol, "kept", Some("k-1")));
    let outcomes = store.insert_messages(&batch).expect("insert the batch");
    assert_eq!(outcomes.len(), batch.len());

    let stored: Vec<_> = [&first, &second]
        .into_iter()
        .flat_map(|chat| store.all_messages(chat))
        .collect();
    for (sent, outcome) in batch.iter().zip(&outcomes) {
        let answered = match outcome {
            Inserted::New(message) => message,
            Inserted::Existing(message) => {
                assert_eq!(
                    message.id, reused.id,
                    "only the resend is an existing message"
                );
                continue;
            }
        };
        let row = stored
            .iter()
            .find(|m| m.id == answered.id)
            .unwrap_or_else(|| panic!("no stored message has the id {:?}", answered.id));
        assert_eq!(AsRef::<str>::as_ref(&row.body), sent.body.as_ref());
        assert_eq!((row.chat_id, row.seq), (answered.chat_id, answered.seq));
        assert_eq!(row.sender.id, sent.sender.id);
    }
}
