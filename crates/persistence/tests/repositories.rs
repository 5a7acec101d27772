//! The repository ports against a real database: SQLite by default, or
//! PostgreSQL when built with `--features postgres` and `TEST_DATABASE_URL`
//! is set. Every test has a fresh database of its own.

// clippy.toml allows these inside `#[test]` functions only; the helpers here
// are test code too, where a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Barrier};

use chat_domain::chat::{ChatId, ChatRepository, Creation, MessageId, MessageRepository, UserPair};
use chat_domain::user::{CreateUserError, NewUser, PasswordHash, UserId, UserRepository, Username};
use chat_domain::RepositoryError;
use chat_persistence::{Database, DatabaseError, DatabaseOptions};
use chrono::Utc;
use common::test_db;

fn username(name: &str) -> Username {
    Username::parse(name).unwrap()
}

// ---- users ---------------------------------------------------------------

#[test]
fn a_new_user_gets_an_id_and_keeps_its_username() {
    let db = test_db();
    let alice = db.user("alice");
    let bob = db.user("bob");

    assert_eq!(alice.username.as_ref(), "alice");
    assert!(bob.id > alice.id);
    assert_eq!(db.find_user(alice.id).unwrap(), Some(alice));
}

#[test]
fn a_taken_username_is_a_duplicate() {
    let db = test_db();
    db.user("alice");

    let again = db.create_user(&NewUser {
        username: username("alice"),
        password_hash: PasswordHash::new("$argon2id$other"),
    });

    assert!(
        matches!(again, Err(CreateUserError::Duplicate)),
        "{again:?}"
    );
}

#[test]
fn credentials_are_found_by_exact_username() {
    let db = test_db();
    let alice = db.user("alice");

    let found = db.find_credentials(&username("alice")).unwrap().unwrap();
    assert_eq!(found.user, alice);
    assert_eq!(
        found.password_hash.as_ref(),
        "$argon2id$v=19$fake-hash-of-alice"
    );
    assert_eq!(db.find_credentials(&username("Alice")).unwrap(), None);
    assert_eq!(db.find_credentials(&username("ali")).unwrap(), None);
}

#[test]
fn an_unknown_user_is_not_found() {
    let db = test_db();
    assert_eq!(db.find_user(UserId::new(42)).unwrap(), None);
}

#[test]
fn users_are_listed_by_id_without_the_viewer() {
    let db = test_db();
    let zed = db.user("zed");
    let amy = db.user("amy");
    let max = db.user("max");

    let listed = db.list_users_except(amy.id).unwrap();

    assert_eq!(listed, vec![zed, max]);
}

// ---- chats ---------------------------------------------------------------

#[test]
fn the_first_create_makes_a_chat_and_the_next_finds_it_whichever_way_round() {
    let db = test_db();
    let alice = db.user("alice");
    let bob = db.user("bob");

    let (created, first) = db
        .find_or_create_chat(UserPair::new(alice.id, bob.id).unwrap())
        .unwrap();
    let (found, second) = db
        .find_or_create_chat(UserPair::new(bob.id, alice.id).unwrap())
        .unwrap();

    assert_eq!(first, Creation::Created);
    assert_eq!(second, Creation::Existing);
    assert_eq!(found, created);
    assert_eq!(created.participants.users(), &[alice, bob]);
    assert!((Utc::now() - created.created).num_seconds().abs() < 60);
    assert_eq!(db.find_chat(created.id).unwrap(), Some(created));
    assert_eq!(db.count_rows("direct_chat_participants"), 2);
}

#[test]
fn concurrent_creates_of_one_pair_make_exactly_one_chat() {
    const THREADS: usize = 8;
    let db = test_db();
    let alice = db.user("alice");
    let bob = db.user("bob");
    let barrier = Arc::new(Barrier::new(THREADS));

    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|i| {
                let (db, barrier) = (&*db, Arc::clone(&barrier));
                let pair = if i % 2 == 0 {
                    UserPair::new(alice.id, bob.id)
                } else {
                    UserPair::new(bob.id, alice.id)
                }
                .unwrap();
                scope.spawn(move || {
                    barrier.wait();
                    db.find_or_create_chat(pair).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let first_id = results[0].0.id;
    assert!(results.iter().all(|(chat, _)| chat.id == first_id));
    let created = results
        .iter()
        .filter(|(_, creation)| *creation == Creation::Created)
        .count();
    assert_eq!(created, 1);
    assert_eq!(db.count_rows("direct_chats"), 1);
    assert_eq!(db.count_rows("direct_chat_participants"), 2);
}

#[test]
fn an_unknown_chat_is_not_found() {
    let db = test_db();
    assert_eq!(db.find_chat(ChatId::new(42)).unwrap(), None);
}

#[test]
fn a_chat_with_a_missing_user_is_an_unexpected_error() {
    let db = test_db();
    let alice = db.user("alice");

    let result = db.find_or_create_chat(UserPair::new(alice.id, UserId::new(999)).unwrap());

    assert!(
        matches!(result, Err(RepositoryError::Unexpected(_))),
        "{result:?}"
    );
    assert_eq!(db.count_rows("direct_chats"), 0);
}

#[test]
fn a_non_participant_sees_no_summary_of_a_chat() {
    let db = test_db();
    let alice = db.user("alice");
    let bob = db.user("bob");
    let carol = db.user("carol");
    let chat = db.chat(&alice, &bob);

    assert_eq!(db.chat_summary(carol.id, chat.id).unwrap(), None);
    assert_eq!(db.chat_summary(alice.id, ChatId::new(999)).unwrap(), None);
    assert_eq!(db.chat_summaries(carol.id).unwrap(), vec![]);
    assert!(db.chat_summary(bob.id, chat.id).unwrap().is_some());
}

#[test]
fn chats_are_listed_by_most_recent_activity() {
    let db = test_db();
    let alice = db.user("alice");
    let bob = db.user("bob");
    let carol = db.user("carol");
    let dave = db.user("dave");
    let with_bob = db.chat(&alice, &bob);
    let with_carol = db.chat(&carol, &alice);
    let with_dave = db.chat(&alice, &dave);
    db.send(&with_carol, &carol, "hi");

    let order: Vec<_> = db
        .chat_summaries(alice.id)
        .unwrap()
        .into_iter()
        .map(|s| s.chat.id)
        .collect();
    // A message counts as activity; otherwise the newest chat comes first.
    assert_eq!(order, vec![with_carol.id, with_dave.id, with_bob.id]);

    db.send(&with_bob, &alice, "anyone there?");
    let order: Vec<_> = db
        .chat_summaries(alice.id)
        .unwrap()
        .into_iter()
        .map(|s| s.chat.id)
        .collect();
    assert_eq!(order, vec![with_bob.id, with_carol.id, with_dave.id]);

    let bobs: Vec<_> = db.chat_summaries(bob.id).unwrap();
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0].chat, with_bob);
}

#[test]
fn a_summary_shows_both_users_the_last_message_and_the_unread_count() {
    let db = test_db();
    let alice = db.user("alice");
    let bob = db.user("bob");
    let chat = db.chat(&bob, &alice);

    let empty = db.chat_summary(alice.id, chat.id).unwrap().unwrap();
    assert_eq!(empty.chat, chat);
    assert_eq!(empty.last_message, None);
    assert_eq!(empty.unread_count, 0);
    assert_eq!(empty.chat.participants.other_than(alice.id), Some(&bob));

    db.send(&chat, &bob, "one");
    db.send(&chat, &alice, "two");
    let last = db.send(&chat, &bob, "three");

    let for_alice = db.chat_summary(alice.id, chat.id).unwrap().unwrap();
    assert_eq!(for_alice.last_message.as_ref(), Some(&last));
    assert_eq!(for_alice.unread_count, 2);

    let for_bob = db.chat_summary(bob.id, chat.id).unwrap().unwrap();
    assert_eq!(for_bob.last_message.as_ref(), Some(&last));
    assert_eq!(for_bob.unread_count, 1);
    assert_eq!(db.chat_summaries(bob.id).unwrap(), vec![for_bob]);
}

#[test]
fn reading_clears_the_unread_count_of_the_reader_only() {
    let db = test_db();
    let alice = db.user("alice");
    let bob = db.user("bob");
    let chat = db.chat(&alice, &bob);
    let first = db.send(&chat, &bob, "one");
    let second = db.send(&chat, &bob, "two");
    db.send(&chat, &alice, "from alice");

    db.mark_read(chat.id, alice.id, first.id).unwrap();
    assert_eq!(unread(&db, alice.id, chat.id), 1);

    db.mark_read(chat.id, alice.id, second.id).unwrap();
    assert_eq!(unread(&db, alice.id, chat.id), 0);
    assert_eq!(unread(&db, bob.id, chat.id), 1);

    let third = db.send(&chat, &bob, "three");
    assert_eq!(unread(&db, alice.id, chat.id), 1);
    let summary = db.chat_summary(alice.id, chat.id).unwrap().unwrap();
    assert_eq!(
        summary.last_message.map(|m| (m.id, m.is_read)),
        Some((third.id, false))
    );
}

#[test]
fn a_read_cursor_never_moves_backwards() {
    let db = test_db();
    let alice = db.user("alice");
    let bob = db.user("bob");
    let chat = db.chat(&alice, &bob);
    let first = db.send(&chat, &bob, "one");
    let second = db.send(&chat, &bob, "two");

    db.mark_read(chat.id, alice.id, second.id).unwrap();
    db.mark_read(chat.id, alice.id, first.id).unwrap();

    assert_eq!(unread(&db, alice.id, chat.id), 0);
    let history = db.history_page(chat.id, None, 10).unwrap();
    assert!(history.iter().all(|m| m.is_read));
}

#[test]
fn marking_read_beyond_the_last_message_does_not_mark_later_ones() {
    let db = test_db();
    let alice = db.user("alice");
    let bob = db.user("bob");
    let chat = db.chat(&alice, &bob);
    let first = db.send(&chat, &bob, "one");

    db.mark_read(chat.id, alice.id, MessageId::new(first.id.get() + 1_000))
        .unwrap();
    let later = db.send(&chat, &bob, "two");

    assert_eq!(unread(&db, alice.id, chat.id), 1);
    let read: Vec<_> = db
        .history_page(chat.id, None, 10)
        .unwrap()
        .into_iter()
        .map(|m| (m.id, m.is_read))
        .collect();
    assert_eq!(read, vec![(first.id, true), (later.id, false)]);
}

#[test]
fn marking_read_in_an_empty_chat_or_as_an_outsider_changes_nothing() {
    let db = test_db();
    let alice = db.user("alice");
    let bob = db.user("bob");
    let carol = db.user("carol");
    let chat = db.chat(&alice, &bob);

    db.mark_read(chat.id, alice.id, MessageId::new(5)).unwrap();
    let first = db.send(&chat, &bob, "one");
    db.mark_read(chat.id, carol.id, first.id).unwrap();

    assert_eq!(unread(&db, alice.id, chat.id), 1);
}

#[test]
fn marking_read_does_not_touch_the_readers_own_messages() {
    let db = test_db();
    let alice = db.user("alice");
    let bob = db.user("bob");
    let chat = db.chat(&alice, &bob);
    let mine = db.send(&chat, &alice, "from alice");

    // Alice "reading" her own message says nothing about Bob having read it.
    db.mark_read(chat.id, alice.id, mine.id).unwrap();
    let for_alice = db.chat_summary(alice.id, chat.id).unwrap().unwrap();
    assert_eq!(
        for_alice.last_message.as_ref().map(|m| m.is_read),
        Some(false)
    );
    assert_eq!(unread(&db, bob.id, chat.id), 1);

    db.mark_read(chat.id, bob.id, mine.id).unwrap();
    let for_alice = db.chat_summary(alice.id, chat.id).unwrap().unwrap();
    assert_eq!(
        for_alice.last_message.as_ref().map(|m| m.is_read),
        Some(true)
    );
    assert_eq!(unread(&db, bob.id, chat.id), 0);
}

#[test]
fn three_hundred_chats_are_all_listed_in_order() {
    const CHATS: usize = 300;
    let db = test_db();
    let hub = db.user("hub");
    let others: Vec<_> = (0..CHATS)
        .map(|i| db.user(&format!("user{i:03}")))
        .collect();
    let chats: Vec<_> = others.iter().map(|other| db.chat(&hub, other)).collect();
    // Every third chat gets a message, newest in the lowest-numbered chat.
    for i in (0..CHATS).step_by(3).rev() {
        db.send(&chats[i], &others[i], &format!("hello from {i}"));
    }

    let summaries = db.chat_summaries(hub.id).unwrap();

    let with_messages = (0..CHATS).step_by(3);
    let without: Vec<_> = (0..CHATS).filter(|i| i % 3 != 0).rev().collect();
    let expected: Vec<_> = with_messages.chain(without).map(|i| chats[i].id).collect();
    let actual: Vec<_> = summaries.iter().map(|s| s.chat.id).collect();
    assert_eq!(actual, expected);
    for summary in &summaries {
        let i = chats.iter().position(|c| c.id == summary.chat.id).unwrap();
        assert_eq!(
            summary.chat.participants.other_than(hub.id),
            Some(&others[i])
        );
        let has_message = i % 3 == 0;
        assert_eq!(summary.unread_count, u64::from(has_message));
        assert_eq!(
            summary.last_message.as_ref().map(|m| m.body.clone()),
            has_message.then(|| format!("hello from {i}"))
        );
    }
}

thread_local! {
    /// Statements started on this thread. Diesel reports each query on the
    /// thread that runs it, so parallel tests do not see each other's.
    static STATEMENTS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn count_statements() -> Option<Box<dyn diesel::connection::Instrumentation>> {
    Some(Box::new(
        |event: diesel::connection::InstrumentationEvent<'_>| {
            if let diesel::connection::InstrumentationEvent::StartQuery { .. } = event {
                STATEMENTS.with(|n| n.set(n.get() + 1));
            }
        },
    ))
}

/// How many SQL statements `work` runs.
fn statements_run_by(work: impl FnOnce()) -> usize {
    STATEMENTS.with(|n| n.set(0));
    work();
    STATEMENTS.with(std::cell::Cell::get)
}

#[test]
fn the_chat_list_takes_the_same_statements_for_one_chat_or_a_hundred() {
    // Connections made from now on report their queries (process-wide, but
    // counted per thread). Set before the pool opens its connections.
    diesel::connection::set_default_instrumentation(count_statements).unwrap();
    let db = test_db();
    let viewer = db.user("viewer");
    let first = db.user("first");
    let chat = db.chat(&viewer, &first);
    db.send(&chat, &first, "hello");

    let with_one = statements_run_by(|| assert_eq!(db.chat_summaries(viewer.id).unwrap().len(), 1));
    for i in 0..99 {
        let other = db.user(&format!("other{i}"));
        let chat = db.chat(&viewer, &other);
        db.send(&chat, &other, "hi");
        db.send(&chat, &viewer, "hi back");
    }
    let with_hundred =
        statements_run_by(|| assert_eq!(db.chat_summaries(viewer.id).unwrap().len(), 100));

    assert_eq!(
        with_one, with_hundred,
        "statements grow with the number of chats"
    );
    // One query; PostgreSQL's pool may add its `SELECT 1` liveness check.
    assert!((1..=2).contains(&with_hundred), "{with_hundred} statements");
}

#[test]
fn a_batch_of_any_size_is_stored_with_the_same_statements() {
    diesel::connection::set_default_instrumentation(count_statements).unwrap();
    let db = test_db();
    let alice = db.user("alice");
    let bob = db.user("bob");
    let chat = db.chat(&alice, &bob);
    let batch = |size: usize| -> Vec<chat_domain::chat::NewMessage> {
        (0..size)
            .map(|i| chat_domain::chat::NewMessage {
                chat_id: chat.id,
                sender: alice.clone(),
                body: chat_domain::chat::MessageBody::parse(
                    &format!("m{i}"),
                    chat_domain::chat::MessageLimit::DEFAULT,
                )
                .unwrap(),
            })
            .collect()
    };

    let for_one = statements_run_by(|| assert_eq!(db.insert_messages(&batch(1)).unwrap().len(), 1));
    let for_500 =
        statements_run_by(|| assert_eq!(db.insert_messages(&batch(500)).unwrap().len(), 500));

    // One multi-row INSERT whatever the size (Diesel falls back to one
    // INSERT per row on SQLite unless told not to); on PostgreSQL also the
    // transaction and its chat lock, and perhaps the pool's `SELECT 1`.
    assert_eq!(for_one, for_500, "statements grow with the batch");
    assert!(for_500 <= 5, "{for_500} statements for one batch");
}

fn unread(db: &Database, viewer: UserId, chat: ChatId) -> u64 {
    db.chat_summary(viewer, chat).unwrap().unwrap().unread_count
}

// ---- messages ------------------------------------------------------------

#[test]
fn a_new_message_is_stored_unread_with_its_sender() {
    let db = test_db();
    let alice = db.user("alice");
    let bob = db.user("bob");
    let chat = db.chat(&alice, &bob);

    let sent = db.send(&chat, &alice, "hello");

    assert_eq!(sent.chat_id, chat.id);
    assert_eq!(sent.sender, alice);
    assert_eq!(sent.body, "hello");
    assert!(!sent.is_read);
    assert!((Utc::now() - sent.created).num_seconds().abs() < 60);
    assert_eq!(db.history_page(chat.id, None, 10).unwrap(), vec![sent]);
}

#[test]
fn history_is_paged_oldest_first_after_a_given_message() {
    let db = test_db();
    let alice = db.user("alice");
    let bob = db.user("bob");
    let carol = db.user("carol");
    let chat = db.chat(&alice, &bob);
    let elsewhere = db.chat(&alice, &carol);
    let mut sent = Vec::new();
    for i in 0..7 {
        sent.push(db.send(
            &chat,
            if i % 2 == 0 { &alice } else { &bob },
            &format!("m{i}"),
        ));
        // Interleaved messages of another chat must not show up.
        db.send(&elsewhere, &carol, "noise");
    }

    let page1 = db.history_page(chat.id, None, 3).unwrap();
    let page2 = db.history_page(chat.id, Some(page1[2].id), 3).unwrap();
    let page3 = db.history_page(chat.id, Some(page2[2].id), 3).unwrap();
    let page4 = db.history_page(chat.id, Some(page3[0].id), 3).unwrap();

    assert_eq!(page1, sent[0..3]);
    assert_eq!(page2, sent[3..6]);
    assert_eq!(page3, sent[6..7]);
    assert_eq!(page4, vec![]);
    assert_eq!(db.history_page(chat.id, None, 0).unwrap(), vec![]);
    assert_eq!(db.history_page(chat.id, None, usize::MAX).unwrap(), sent);
    assert_eq!(db.history_page(ChatId::new(999), None, 10).unwrap(), vec![]);
}

#[test]
fn history_shows_which_messages_their_recipient_read() {
    let db = test_db();
    let alice = db.user("alice");
    let bob = db.user("bob");
    let chat = db.chat(&alice, &bob);
    let a1 = db.send(&chat, &alice, "a1");
    let b1 = db.send(&chat, &bob, "b1");
    let a2 = db.send(&chat, &alice, "a2");
    let b2 = db.send(&chat, &bob, "b2");

    db.mark_read(chat.id, bob.id, a1.id).unwrap(); // bob read a1
    db.mark_read(chat.id, alice.id, b2.id).unwrap(); // alice read b1, b2

    let read: Vec<_> = db
        .history_page(chat.id, None, 10)
        .unwrap()
        .into_iter()
        .map(|m| (m.id, m.is_read))
        .collect();
    assert_eq!(
        read,
        vec![(a1.id, true), (b1.id, true), (a2.id, false), (b2.id, true)]
    );
}

#[test]
fn concurrent_senders_and_readers_all_succeed() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 25;
    let db = test_db();
    let alice = db.user("alice");
    let bob = db.user("bob");
    let chat = db.chat(&alice, &bob);
    let barrier = Barrier::new(THREADS);

    std::thread::scope(|scope| {
        for i in 0..THREADS {
            let (db, barrier, chat) = (&db, &barrier, &chat);
            let (me, other) = if i % 2 == 0 {
                (&alice, &bob)
            } else {
                (&bob, &alice)
            };
            scope.spawn(move || {
                barrier.wait();
                for n in 0..PER_THREAD {
                    let sent = db.send(chat, me, &format!("{i}-{n}"));
                    db.mark_read(chat.id, other.id, sent.id).unwrap();
                    db.chat_summaries(me.id).unwrap();
                }
            });
        }
    });

    let history = db.history_page(chat.id, None, usize::MAX).unwrap();
    assert_eq!(history.len(), THREADS * PER_THREAD);
    assert!(history.windows(2).all(|w| w[0].id < w[1].id));
}

#[test]
fn a_batch_across_chats_is_stored_in_order_in_one_go() {
    let db = test_db();
    let alice = db.user("alice");
    let bob = db.user("bob");
    let carol = db.user("carol");
    let with_bob = db.chat(&alice, &bob);
    let with_carol = db.chat(&alice, &carol);
    let new =
        |chat: &chat_domain::chat::DirectChat, sender: &chat_domain::user::User, body: &str| {
            chat_domain::chat::NewMessage {
                chat_id: chat.id,
                sender: sender.clone(),
                body: chat_domain::chat::MessageBody::parse(
                    body,
                    chat_domain::chat::MessageLimit::DEFAULT,
                )
                .unwrap(),
            }
        };
    let batch: Vec<_> = (0..300)
        .map(|i| match i % 3 {
            0 => new(&with_bob, &alice, &format!("to bob {i}")),
            1 => new(&with_carol, &carol, &format!("from carol {i}")),
            _ => new(&with_bob, &bob, &format!("from bob {i}")),
        })
        .collect();

    let stored = db.insert_messages(&batch).unwrap();

    assert_eq!(stored.len(), 300);
    for (message, sent) in stored.iter().zip(&batch) {
        assert_eq!(message.chat_id, sent.chat_id);
        assert_eq!(message.sender, sent.sender);
        assert_eq!(message.body, sent.body.as_ref());
        assert!(!message.is_read);
    }
    assert!(
        stored.windows(2).all(|w| w[0].id < w[1].id),
        "ids follow the batch order"
    );
    let bob_history = db.history_page(with_bob.id, None, 1000).unwrap();
    assert_eq!(bob_history.len(), 200);
    let expected: Vec<_> = stored.iter().filter(|m| m.chat_id == with_bob.id).collect();
    assert!(bob_history.iter().zip(expected).all(|(a, b)| a == b));
    assert!(db.insert_messages(&[]).unwrap().is_empty());
}

#[test]
fn a_batch_with_one_bad_message_stores_none_of_it() {
    let db = test_db();
    let alice = db.user("alice");
    let bob = db.user("bob");
    let mallory = db.user("mallory");
    let chat = db.chat(&alice, &bob);
    let body =
        chat_domain::chat::MessageBody::parse("hi", chat_domain::chat::MessageLimit::DEFAULT)
            .unwrap();
    let batch = [
        chat_domain::chat::NewMessage {
            chat_id: chat.id,
            sender: alice.clone(),
            body: body.clone(),
        },
        // Not a participant: the (chat, sender) foreign key refuses it.
        chat_domain::chat::NewMessage {
            chat_id: chat.id,
            sender: mallory,
            body,
        },
    ];

    assert!(db.insert_messages(&batch).is_err());
    assert!(db.history_page(chat.id, None, 10).unwrap().is_empty());
}

#[test]
fn paging_history_while_others_append_never_skips_a_message() {
    // A session replays history by paging "after the last id seen"; a
    // message whose id is below one already read must never commit later.
    const WRITERS: usize = 4;
    const PER_WRITER: usize = 100;
    let db = test_db();
    let alice = db.user("alice");
    let bob = db.user("bob");
    let chat = db.chat(&alice, &bob);
    let barrier = Barrier::new(WRITERS + 1);
    let done = std::sync::atomic::AtomicUsize::new(0);

    let seen = std::thread::scope(|scope| {
        for i in 0..WRITERS {
            let (db, barrier, chat, done) = (&db, &barrier, &chat, &done);
            let me = if i % 2 == 0 { &alice } else { &bob };
            scope.spawn(move || {
                barrier.wait();
                for n in 0..PER_WRITER {
                    db.send(chat, me, &format!("{i}-{n}"));
                }
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
        barrier.wait();
        let mut seen: Vec<MessageId> = Vec::new();
        loop {
            let writers_done = done.load(std::sync::atomic::Ordering::SeqCst) == WRITERS;
            let page = db.history_page(chat.id, seen.last().copied(), 7).unwrap();
            seen.extend(page.iter().map(|m| m.id));
            if writers_done && page.is_empty() {
                break seen;
            }
        }
    });

    assert_eq!(seen.len(), WRITERS * PER_WRITER, "paging skipped messages");
}

#[test]
fn odd_bodies_are_stored_byte_for_byte() {
    let db = test_db();
    let alice = db.user("alice");
    let bob = db.user("bob");
    let chat = db.chat(&alice, &bob);
    let long = "é".repeat(4096);
    let bodies = [
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

    for body in bodies {
        db.send(&chat, &alice, body);
    }

    let stored: Vec<_> = db
        .history_page(chat.id, None, 100)
        .unwrap()
        .into_iter()
        .map(|m| m.body)
        .collect();
    assert_eq!(stored, bodies);
}

#[test]
fn timestamps_read_back_exactly_and_in_order() {
    let db = test_db();
    let alice = db.user("alice");
    let bob = db.user("bob");
    let chat = db.chat(&alice, &bob);
    let sent: Vec<_> = (0..20)
        .map(|i| db.send(&chat, &alice, &i.to_string()))
        .collect();

    let stored = db.history_page(chat.id, None, 100).unwrap();

    assert_eq!(stored, sent);
    assert!(stored.windows(2).all(|w| w[0].created <= w[1].created));
}

// ---- connecting ----------------------------------------------------------

#[test]
fn reconnecting_to_a_migrated_database_keeps_its_data() {
    let db = test_db();
    let alice = db.user("alice");

    let again = Database::connect(db.url(), &DatabaseOptions::default()).unwrap();

    assert_eq!(again.backend(), db.backend());
    assert_eq!(again.find_user(alice.id).unwrap(), Some(alice));
}

#[test]
fn a_pool_of_zero_connections_is_refused() {
    let options = DatabaseOptions {
        max_connections: 0,
        ..DatabaseOptions::default()
    };
    let result = Database::connect("sqlite://unused.db", &options);
    assert!(
        matches!(result, Err(DatabaseError::InvalidOptions(_))),
        "{result:?}"
    );
}

#[test]
fn an_unknown_scheme_is_refused() {
    let result = Database::connect("mysql://root@localhost/chat", &DatabaseOptions::default());
    assert!(
        matches!(result, Err(DatabaseError::InvalidUrl(_))),
        "{result:?}"
    );
}

#[cfg(feature = "sqlite")]
#[test]
fn a_missing_sqlite_directory_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/deeper/chat.db");

    let db = Database::connect(
        &format!("sqlite://{}", path.display()),
        &DatabaseOptions::default(),
    )
    .unwrap();

    assert_eq!(db.backend(), chat_persistence::Backend::Sqlite);
    assert!(path.exists());
}

#[cfg(feature = "sqlite")]
#[test]
fn a_bare_path_is_a_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.db");

    let db = Database::connect(&path.display().to_string(), &DatabaseOptions::default()).unwrap();

    assert_eq!(db.backend(), chat_persistence::Backend::Sqlite);
    assert!(path.exists());
}

#[cfg(not(feature = "postgres"))]
#[test]
fn a_postgres_url_needs_the_postgres_build() {
    let result = Database::connect(
        "postgres://postgres@127.0.0.1/chat",
        &DatabaseOptions::default(),
    );
    let error = result.unwrap_err();
    assert!(
        matches!(error, DatabaseError::BackendNotBuilt(_)),
        "{error:?}"
    );
    assert!(error.to_string().contains("postgres"), "{error}");
}

#[cfg(feature = "postgres")]
#[test]
fn an_unreachable_postgres_fails_fast_with_the_real_cause() {
    use std::time::{Duration, Instant};

    let options = DatabaseOptions {
        connect_timeout: Duration::from_secs(2),
        ..DatabaseOptions::default()
    };
    let started = Instant::now();

    // Port 1: nothing listens there, so the connection is refused at once.
    let result = Database::connect("postgres://postgres@127.0.0.1:1/chat", &options);

    let error = result.unwrap_err();
    assert!(matches!(error, DatabaseError::Connect { .. }), "{error:?}");
    assert!(error.to_string().contains("refused"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
