//! Statement-count guards (SQL only): the chat list, a page and a batch
//! take a number of statements that does not grow with what they cover.

use std::cell::Cell;

use chat_domain::chat::{
    ChatRepository as _, CursorKind, MessageRepository as _, NewMessage, PageAnchor,
};
use diesel::connection::{Instrumentation, InstrumentationEvent};

use chat_persistence::Backend;

use crate::stores::{new_message, seq, EmptyDb, StoreExt as _};

sql_tests!(
    the_chat_list_takes_the_same_statements_for_one_chat_or_a_hundred,
    a_batch_of_any_size_is_stored_with_the_same_statements,
    a_page_takes_the_same_statements_however_long_the_chat,
    a_cursor_move_takes_the_same_statements_however_far_it_moves,
);

thread_local! {
    /// Statements started on this thread. Diesel reports each query on the
    /// thread that runs it, so parallel tests do not see each other's.
    static STATEMENTS: Cell<usize> = const { Cell::new(0) };
}

fn count_statements() -> Option<Box<dyn Instrumentation>> {
    Some(Box::new(|event: InstrumentationEvent<'_>| {
        if let InstrumentationEvent::StartQuery { .. } = event {
            STATEMENTS.with(|n| n.set(n.get() + 1));
        }
    }))
}

/// Connections made from now on report their queries (process-wide, but
/// counted per thread). Call before the pool opens its connections.
fn counting(empty: EmptyDb) -> crate::stores::SqlStore {
    diesel::connection::set_default_instrumentation(count_statements).unwrap();
    empty.connect()
}

/// The `SELECT 1` r2d2 runs on every check-out of a PostgreSQL connection
/// (`test_on_check_out`; SQLite's pool skips it).
fn pool_check(backend: Backend) -> usize {
    usize::from(backend == Backend::Postgres)
}

/// How many SQL statements `work` runs.
fn statements_run_by<T>(work: impl FnOnce() -> T) -> (usize, T) {
    STATEMENTS.with(|n| n.set(0));
    let result = work();
    (STATEMENTS.with(Cell::get), result)
}

fn the_chat_list_takes_the_same_statements_for_one_chat_or_a_hundred(empty: EmptyDb) {
    let backend = empty.backend();
    let db = counting(empty);
    let viewer = db.user("viewer");
    let first = db.user("first");
    let chat = db.chat(&viewer, &first);
    db.send(&chat, &first, "hello");

    let (with_one, listed) = statements_run_by(|| db.chat_summaries(viewer.id).unwrap());
    assert_eq!(listed.len(), 1);
    for i in 0..99 {
        let other = db.user(&format!("other{i}"));
        let chat = db.chat(&viewer, &other);
        db.send(&chat, &other, "hi");
        db.send(&chat, &viewer, "hi back");
        db.read_to(&chat, &viewer, 1);
    }
    let (with_hundred, listed) = statements_run_by(|| db.chat_summaries(viewer.id).unwrap());
    assert_eq!(listed.len(), 100);

    assert_eq!(
        with_one, with_hundred,
        "statements grow with the number of chats"
    );
    // One query.
    assert_eq!(with_hundred, 1 + pool_check(backend));
}

fn a_batch_of_any_size_is_stored_with_the_same_statements(empty: EmptyDb) {
    let backend = empty.backend();
    let db = counting(empty);
    let alice = db.user("alice");
    let bob = db.user("bob");
    let chat = db.chat(&alice, &bob);
    let mut keys = 0;
    let mut batch = |size: usize, keyed: bool| -> Vec<NewMessage> {
        (0..size)
            .map(|i| {
                keys += 1;
                let key = format!("key-{keys}");
                new_message(
                    &chat,
                    &alice,
                    &format!("m{i}"),
                    keyed.then_some(key.as_str()),
                )
            })
            .collect()
    };
    let store = |messages: Vec<NewMessage>| {
        statements_run_by(|| {
            let outcomes = db.insert_messages(&messages).unwrap();
            assert_eq!(outcomes.len(), messages.len());
            outcomes
        })
        .0
    };

    let plain_one = store(batch(1, false));
    let plain_500 = store(batch(500, false));
    let keyed_one = store(batch(1, true));
    let keyed_batch = batch(500, true);
    let keyed_500 = store(keyed_batch.clone());
    // All 500 again: every one a resend, nothing to insert.
    let resent_500 = store(keyed_batch.clone());
    // 250 resends and 250 new ones.
    let mut mixed = keyed_batch[250..].to_vec();
    mixed.extend(batch(250, true));
    let mixed_500 = store(mixed);

    // One multi-row INSERT whatever the size (Diesel falls back to one
    // INSERT per row on SQLite unless told not to), and at most one lookup
    // of the retry keys: PostgreSQL looks them up first; SQLite inserts
    // first and looks up only when the insert hits a stored key (the failed
    // statement is undone, the transaction goes on), then inserts the rest.
    assert_eq!(plain_one, plain_500, "statements grow with the batch");
    assert_eq!(keyed_one, keyed_500, "statements grow with the retry keys");
    // BEGIN, the heads, the INSERT, COMMIT; on PostgreSQL also the lock on
    // the chat rows, on SQLite also `last_insert_rowid()`, which gives the
    // ids that PostgreSQL's INSERT returns.
    assert_eq!(plain_500, 5 + pool_check(backend));
    match backend {
        Backend::Sqlite => {
            assert_eq!(keyed_500, plain_500, "no lookup without a reused key");
            // The failed INSERT, then the lookup; nothing is left to
            // insert, so no last id is read either.
            assert_eq!(resent_500, plain_500, "{resent_500} statements for resends");
            assert_eq!(
                mixed_500,
                plain_500 + 2,
                "{mixed_500} statements for a mixed batch"
            );
        }
        _ => {
            assert_eq!(keyed_500, plain_500 + 1, "one lookup for all retry keys");
            // Nothing new, so no INSERT: the lookup takes its place.
            assert_eq!(resent_500, plain_500, "{resent_500} statements for resends");
            assert_eq!(
                mixed_500,
                plain_500 + 1,
                "{mixed_500} statements for a mixed batch"
            );
        }
    }
    // Each key stored once, and the retried inserts left no gap in `seq`.
    let seqs: Vec<i64> = db.all_messages(&chat).iter().map(|m| m.seq.get()).collect();
    assert_eq!(seqs, (1..=1252).collect::<Vec<i64>>());
}

fn a_page_takes_the_same_statements_however_long_the_chat(empty: EmptyDb) {
    let backend = empty.backend();
    let db = counting(empty);
    let alice = db.user("alice");
    let bob = db.user("bob");
    let chat = db.chat(&alice, &bob);
    db.send(&chat, &bob, "first");

    let page = |anchor: PageAnchor| statements_run_by(|| db.page(&chat, anchor, 200)).0;
    let short = page(PageAnchor::Newest);
    let batch: Vec<_> = (0..1_000)
        .map(|i| new_message(&chat, &bob, &format!("m{i}"), None))
        .collect();
    db.insert_messages(&batch).unwrap();

    for anchor in [
        PageAnchor::Newest,
        PageAnchor::Before(seq(900)),
        PageAnchor::After(seq(10)),
    ] {
        assert_eq!(page(anchor), short, "{anchor:?}");
    }
    // The participants, the head, the page.
    assert_eq!(short, 3 + pool_check(backend));
}

fn a_cursor_move_takes_the_same_statements_however_far_it_moves(empty: EmptyDb) {
    let backend = empty.backend();
    let db = counting(empty);
    let alice = db.user("alice");
    let bob = db.user("bob");
    let chat = db.chat(&alice, &bob);
    let batch: Vec<_> = (0..2_000)
        .map(|i| new_message(&chat, &bob, &format!("m{i}"), None))
        .collect();
    db.insert_messages(&batch).unwrap();

    let mut moves = Vec::new();
    for (kind, to) in [
        (CursorKind::Delivered, 1),
        (CursorKind::Read, 2),
        (CursorKind::Read, 1_999),
        (CursorKind::Read, 5), // backwards: nothing moves
    ] {
        let (count, change) =
            statements_run_by(|| db.move_cursor(chat.id, alice.id, kind, seq(to)).unwrap());
        moves.push((count, change.moved().is_empty()));
    }
    // BEGIN, the cursor row, the head, the update, the unread count, COMMIT;
    // without the update when nothing moves.
    let moved = 6 + pool_check(backend);
    assert_eq!(
        moves,
        [
            (moved, false),
            (moved, false),
            (moved, false),
            (moved - 1, true)
        ],
        "statements per move on {backend}"
    );
}
