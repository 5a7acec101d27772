//! Opening a SQL database (SQL only): URLs, pool options, and what a new
//! pool on the same database (a restarted server) finds there.

use chat_domain::chat::{
    ChatRepository as _, Cursors, Inserted, MessageRepository as _, PageAnchor,
};
use chat_domain::user::UserRepository as _;
use chat_persistence::{Database, DatabaseError, DatabaseOptions};

use crate::stores::{new_one, page_limit, seq, EmptyDb, StoreExt as _};

sql_tests!(
    reconnecting_to_a_migrated_database_keeps_its_data,
    a_resend_after_a_restart_still_returns_the_original,
);

fn reconnecting_to_a_migrated_database_keeps_its_data(empty: EmptyDb) {
    let backend = empty.backend();
    let db = empty.connect();
    let alice = db.user("alice");
    let bob = db.user("bob");
    let chat = db.chat(&alice, &bob);
    let sent = db.send(&chat, &alice, "hello");
    db.read_to(&chat, &bob, 1);

    let again = db.reconnect();

    assert_eq!(again.backend(), backend);
    assert_eq!(again.find_user(alice.id).unwrap(), Some(alice.clone()));
    let page = again
        .messages_page(chat.id, PageAnchor::Newest, page_limit(10))
        .unwrap();
    assert_eq!(page.messages, vec![sent]);
    let summary = again.chat_summary(bob.id, chat.id).unwrap().unwrap();
    assert_eq!(
        summary.mine,
        Cursors {
            read_up_to: seq(1),
            delivered_up_to: seq(1)
        }
    );
    // Numbering goes on where it was.
    assert_eq!(again.send(&chat, &bob, "hi").seq, seq(2));
}

fn a_resend_after_a_restart_still_returns_the_original(empty: EmptyDb) {
    let db = empty.connect();
    let alice = db.user("alice");
    let bob = db.user("bob");
    let chat = db.chat(&alice, &bob);
    let original = new_one(db.send_keyed(&chat, &alice, "hello", "c-7f3a"));

    // The pool closed, then `Database::connect` on the same URL again: a
    // restarted server.
    let restarted = db.restart();

    let resent = restarted.send_keyed(&chat, &alice, "hello", "c-7f3a");
    assert_eq!(resent, Inserted::Existing(original.clone()));
    assert_eq!(restarted.all_messages(&chat), vec![original]);
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
fn a_zero_connect_timeout_is_refused() {
    let options = DatabaseOptions {
        connect_timeout: std::time::Duration::ZERO,
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
fn a_missing_sqlite_directory_is_created_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/deeper/chat.db");

    let db = Database::connect(
        &format!("sqlite://{}", path.display()),
        &DatabaseOptions {
            create_directory: true,
            ..DatabaseOptions::default()
        },
    )
    .unwrap();

    assert_eq!(db.backend(), chat_persistence::Backend::Sqlite);
    assert!(path.exists());
}

#[cfg(feature = "sqlite")]
#[test]
fn a_bare_path_is_refused_not_taken_for_a_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.db");

    let result = Database::connect(&path.display().to_string(), &DatabaseOptions::default());

    assert!(matches!(
        result,
        Err(chat_persistence::DatabaseError::InvalidUrl(_))
    ));
    assert!(!path.exists());
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
    // The driver's own error is kept as the source, not flattened.
    let cause = std::error::Error::source(&error)
        .expect("a cause")
        .to_string();
    assert!(cause.contains("refused"), "{cause}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
