//! Direct chats, the chat list and its summaries, chat partners
//! (`ChatRepository`), and `last_seen` as summaries show it.

use std::sync::{Arc, Barrier};

use chat_domain::chat::{ChatId, ChatSummary, Creation, Cursors, UserPair};
use chat_domain::user::UserId;
use chat_domain::RepositoryError;
use chrono::{DateTime, TimeZone as _, Utc};

use crate::stores::{seq, Store, StoreExt as _};

contract_tests!(
    the_first_create_makes_a_chat_and_the_next_finds_it_whichever_way_round,
    concurrent_creates_of_one_pair_make_exactly_one_chat,
    an_unknown_chat_is_not_found,
    a_chat_with_a_missing_user_is_an_unexpected_error,
    a_non_participant_sees_no_summary_of_a_chat,
    chats_are_listed_by_most_recent_activity,
    a_new_chat_is_summarised_at_seq_zero_with_nothing_read,
    a_summary_shows_the_last_message_head_and_unread_count_per_viewer,
    a_summary_carries_the_viewers_cursors_and_the_other_participants,
    the_last_message_of_a_summary_carries_its_seq_and_client_id,
    a_summary_shows_when_the_other_participant_was_last_seen,
    chat_partners_lists_each_partner_once,
    three_hundred_chats_are_all_listed_in_order,
);

fn the_first_create_makes_a_chat_and_the_next_finds_it_whichever_way_round(store: &dyn Store) {
    let alice = store.user("alice");
    let bob = store.user("bob");

    let (created, first) = store
        .find_or_create_chat(UserPair::new(alice.id, bob.id).unwrap())
        .unwrap();
    let (found, second) = store
        .find_or_create_chat(UserPair::new(bob.id, alice.id).unwrap())
        .unwrap();

    assert_eq!(first, Creation::Created);
    assert_eq!(second, Creation::Existing);
    assert_eq!(found, created);
    assert_eq!(created.participants.users(), &[alice.clone(), bob.clone()]);
    assert!((Utc::now() - created.created).num_seconds().abs() < 60);
    assert_eq!(store.find_chat(created.id).unwrap(), Some(created.clone()));
    // Both are in it, and it is listed once for each.
    for user in [&alice, &bob] {
        let listed = store.chat_summaries(user.id).unwrap();
        assert_eq!(listed.len(), 1, "{}", user.username);
        assert_eq!(listed[0].chat, created);
    }
}

fn concurrent_creates_of_one_pair_make_exactly_one_chat(store: &dyn Store) {
    const THREADS: usize = 8;
    let alice = store.user("alice");
    let bob = store.user("bob");
    let barrier = Arc::new(Barrier::new(THREADS));

    let results: Vec<_> = std::thread::scope(|scope| {
        // Every thread is spawned before any is joined: the collect is the point.
        #[allow(clippy::needless_collect)]
        let handles: Vec<_> = (0..THREADS)
            .map(|i| {
                let barrier = Arc::clone(&barrier);
                let pair = if i % 2 == 0 {
                    UserPair::new(alice.id, bob.id)
                } else {
                    UserPair::new(bob.id, alice.id)
                }
                .unwrap();
                scope.spawn(move || {
                    barrier.wait();
                    store.find_or_create_chat(pair).unwrap()
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
    assert_eq!(store.chat_summaries(alice.id).unwrap().len(), 1);
    assert_eq!(store.chat_summaries(bob.id).unwrap().len(), 1);
}

fn an_unknown_chat_is_not_found(store: &dyn Store) {
    assert_eq!(store.find_chat(ChatId::new(42)).unwrap(), None);
}

fn a_chat_with_a_missing_user_is_an_unexpected_error(store: &dyn Store) {
    let alice = store.user("alice");

    let result = store.find_or_create_chat(UserPair::new(alice.id, UserId::new(999)).unwrap());

    assert!(
        matches!(result, Err(RepositoryError::Unexpected(_))),
        "{result:?}"
    );
    assert_eq!(store.chat_summaries(alice.id).unwrap(), vec![]);
}

fn a_non_participant_sees_no_summary_of_a_chat(store: &dyn Store) {
    let alice = store.user("alice");
    let bob = store.user("bob");
    let carol = store.user("carol");
    let chat = store.chat(&alice, &bob);

    assert_eq!(store.chat_summary(carol.id, chat.id).unwrap(), None);
    assert_eq!(
        store.chat_summary(alice.id, ChatId::new(999)).unwrap(),
        None
    );
    assert_eq!(store.chat_summaries(carol.id).unwrap(), vec![]);
    assert!(store.chat_summary(bob.id, chat.id).unwrap().is_some());
}

fn chats_are_listed_by_most_recent_activity(store: &dyn Store) {
    let alice = store.user("alice");
    let bob = store.user("bob");
    let carol = store.user("carol");
    let dave = store.user("dave");
    // Apart in time: equal times are ordered by chat id instead, and the
    // memory store is fast enough for two steps to share a microsecond.
    let later = || std::thread::sleep(std::time::Duration::from_millis(2));
    let with_bob = store.chat(&alice, &bob);
    later();
    let with_carol = store.chat(&carol, &alice);
    later();
    let with_dave = store.chat(&alice, &dave);
    later();
    store.send(&with_carol, &carol, "hi");

    let order = |viewer: UserId| -> Vec<ChatId> {
        store
            .chat_summaries(viewer)
            .unwrap()
            .into_iter()
            .map(|s| s.chat.id)
            .collect()
    };
    // A message counts as activity; otherwise the newest chat comes first.
    assert_eq!(
        order(alice.id),
        vec![with_carol.id, with_dave.id, with_bob.id]
    );

    later();
    store.send(&with_bob, &alice, "anyone there?");
    assert_eq!(
        order(alice.id),
        vec![with_bob.id, with_carol.id, with_dave.id]
    );
    assert_eq!(order(bob.id), vec![with_bob.id]);
}

fn a_new_chat_is_summarised_at_seq_zero_with_nothing_read(store: &dyn Store) {
    let alice = store.user("alice");
    let bob = store.user("bob");
    let chat = store.chat(&bob, &alice);

    let empty = store.summary(alice.id, chat.id);

    assert_eq!(empty.viewer, alice.id);
    assert_eq!(empty.chat, chat);
    assert_eq!(empty.other_user(), Some(&bob));
    assert_eq!(empty.last_message, None);
    assert_eq!(empty.head_seq, seq(0));
    assert_eq!(empty.mine, Cursors::default());
    assert_eq!(empty.theirs, Cursors::default());
    assert_eq!(empty.unread_count, 0);
    assert_eq!(empty.other_last_seen, None);
}

fn a_summary_shows_the_last_message_head_and_unread_count_per_viewer(store: &dyn Store) {
    let alice = store.user("alice");
    let bob = store.user("bob");
    let chat = store.chat(&bob, &alice);

    store.send(&chat, &bob, "one");
    store.send(&chat, &alice, "two");
    let last = store.send(&chat, &bob, "three");

    let for_alice = store.summary(alice.id, chat.id);
    assert_eq!(for_alice.viewer, alice.id);
    assert_eq!(for_alice.other_user(), Some(&bob));
    assert_eq!(for_alice.last_message.as_ref(), Some(&last));
    assert_eq!(for_alice.head_seq, seq(3));
    assert_eq!(for_alice.unread_count, 2, "bob's two messages");

    let for_bob = store.summary(bob.id, chat.id);
    assert_eq!(for_bob.viewer, bob.id);
    assert_eq!(for_bob.other_user(), Some(&alice));
    assert_eq!(for_bob.last_message.as_ref(), Some(&last));
    assert_eq!(for_bob.head_seq, seq(3));
    assert_eq!(for_bob.unread_count, 1, "alice's one message");
    // The list and the single summary agree.
    assert_eq!(store.chat_summaries(bob.id).unwrap(), vec![for_bob]);
}

fn a_summary_carries_the_viewers_cursors_and_the_other_participants(store: &dyn Store) {
    let alice = store.user("alice");
    let bob = store.user("bob");
    let chat = store.chat(&alice, &bob);
    for i in 0..3 {
        store.send(&chat, &bob, &format!("b{i}"));
        store.send(&chat, &alice, &format!("a{i}"));
    }
    store.read_to(&chat, &alice, 3);
    store.deliver_to(&chat, &alice, 5);
    store.deliver_to(&chat, &bob, 4);

    let cursors = |read: i64, delivered: i64| Cursors {
        read_up_to: seq(read),
        delivered_up_to: seq(delivered),
    };
    let for_alice = store.summary(alice.id, chat.id);
    assert_eq!(for_alice.mine, cursors(3, 5));
    assert_eq!(for_alice.theirs, cursors(0, 4));
    // Bob's messages have seqs 1, 3, 5; alice read up to 3.
    assert_eq!(for_alice.unread_count, 1);

    let for_bob = store.summary(bob.id, chat.id);
    assert_eq!(for_bob.mine, cursors(0, 4));
    assert_eq!(for_bob.theirs, cursors(3, 5));
    assert_eq!(for_bob.unread_count, 3);
    assert_eq!(for_bob.head_seq, seq(6));
}

fn the_last_message_of_a_summary_carries_its_seq_and_client_id(store: &dyn Store) {
    let alice = store.user("alice");
    let bob = store.user("bob");
    let chat = store.chat(&alice, &bob);
    store.send(&chat, &alice, "plain");
    store.send_keyed(&chat, &bob, "keyed", "c-7f3a");

    let last = store
        .summary(alice.id, chat.id)
        .last_message
        .expect("a last message");

    assert_eq!(last.seq, seq(2));
    assert_eq!(last.body, "keyed");
    assert_eq!(last.sender, bob);
    assert_eq!(last.client_id.as_ref().map(AsRef::as_ref), Some("c-7f3a"));

    store.send(&chat, &alice, "plain again");
    let last = store.summary(bob.id, chat.id).last_message.unwrap();
    assert_eq!((last.seq, last.client_id), (seq(3), None));
}

fn a_summary_shows_when_the_other_participant_was_last_seen(store: &dyn Store) {
    let alice = store.user("alice");
    let bob = store.user("bob");
    let chat = store.chat(&alice, &bob);
    // Microseconds: the precision every store keeps.
    let at = |micros: u32| -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 10, 45, 30).unwrap()
            + chrono::Duration::microseconds(i64::from(micros))
    };

    store.set_last_seen(bob.id, at(123_456)).unwrap();

    assert_eq!(
        store.summary(alice.id, chat.id).other_last_seen,
        Some(at(123_456))
    );
    assert_eq!(
        store.chat_summaries(alice.id).unwrap()[0].other_last_seen,
        Some(at(123_456))
    );
    // Bob's own view shows Alice, who was never seen offline.
    assert_eq!(store.summary(bob.id, chat.id).other_last_seen, None);

    store.set_last_seen(bob.id, at(999_999)).unwrap();
    assert_eq!(
        store.summary(alice.id, chat.id).other_last_seen,
        Some(at(999_999))
    );
    // An unknown user has no last_seen to set, and that is no failure.
    store.set_last_seen(UserId::new(999), at(1)).unwrap();
}

fn chat_partners_lists_each_partner_once(store: &dyn Store) {
    let hub = store.user("hub");
    let a = store.user("a");
    let b = store.user("b");
    let c = store.user("c");
    let loner = store.user("loner");
    for other in [&a, &b, &c] {
        let chat = store.chat(&hub, other);
        // Messages and repeated creates add no rows a partner could be
        // counted twice by.
        store.send(&chat, &hub, "hi");
        store.send(&chat, other, "hello");
        store.chat(other, &hub);
    }
    store.chat(&a, &b);

    let partners = |user: UserId| {
        let mut ids = store.chat_partners(user).unwrap();
        ids.sort();
        ids
    };
    assert_eq!(partners(hub.id), vec![a.id, b.id, c.id]);
    assert_eq!(partners(a.id), vec![hub.id, b.id]);
    assert_eq!(partners(c.id), vec![hub.id]);
    assert_eq!(partners(loner.id), vec![]);
    assert_eq!(partners(UserId::new(999)), vec![]);
}

fn three_hundred_chats_are_all_listed_in_order(store: &dyn Store) {
    const CHATS: usize = 300;
    let hub = store.user("hub");
    let others: Vec<_> = (0..CHATS)
        .map(|i| store.user(&format!("user{i:03}")))
        .collect();
    let chats: Vec<_> = others.iter().map(|other| store.chat(&hub, other)).collect();
    // Every third chat gets a message, newest in the lowest-numbered chat,
    // all after the last chat was made.
    std::thread::sleep(std::time::Duration::from_millis(2));
    for i in (0..CHATS).step_by(3).rev() {
        store.send(&chats[i], &others[i], &format!("hello from {i}"));
    }

    let summaries = store.chat_summaries(hub.id).unwrap();

    // Most recent activity first: the last message's time, else the chat's
    // creation; equal times (a fast store, or one batch) by chat id, newest
    // first.
    let activity = |s: &ChatSummary| {
        let at = s
            .last_message
            .as_ref()
            .map_or(s.chat.created, |m| m.created);
        std::cmp::Reverse((at, s.chat.id))
    };
    assert_eq!(summaries.len(), CHATS);
    assert!(
        summaries
            .windows(2)
            .all(|w| activity(&w[0]) < activity(&w[1])),
        "not in order of activity"
    );
    // Chats with a message first, as every message is newer than every chat.
    let with_message = summaries.iter().take_while(|s| s.last_message.is_some());
    assert_eq!(with_message.count(), CHATS / 3);
    for summary in &summaries {
        let i = chats.iter().position(|c| c.id == summary.chat.id).unwrap();
        assert_eq!(summary.other_user(), Some(&others[i]));
        let has_message = i % 3 == 0;
        assert_eq!(summary.unread_count, u64::from(has_message));
        assert_eq!(summary.head_seq, seq(i64::from(has_message)));
        assert_eq!(
            summary.last_message.as_ref().map(|m| m.body.clone()),
            has_message.then(|| format!("hello from {i}"))
        );
    }
}
