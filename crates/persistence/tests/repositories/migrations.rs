//! The protocol v2 migration (SQL only): a database at the previous schema
//! (the first two migrations), holding messages and id-based read cursors,
//! comes out numbered and with cursors in seq space.

use chat_domain::chat::{ChatId, ChatRepository as _, Cursors, PageAnchor};
use chat_domain::user::{User, UserId, UserRepository as _};
use chat_persistence::Backend;
use diesel::connection::SimpleConnection as _;
use diesel::Connection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::stores::{seq, EmptyDb, SqlStore, StoreExt as _};

#[cfg(feature = "sqlite")]
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");
#[cfg(feature = "postgres")]
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");

sql_tests!(
    the_accounts_migration_keys_old_usernames_and_the_older_of_two_that_clash_keeps_the_key,
    the_v2_migration_numbers_old_messages_per_chat_in_id_order_and_moves_read_cursors_to_seqs,
    the_health_check_passes_when_migrated_and_names_a_migration_that_is_not_applied,
);

/// What `/readyz` asks: a migrated database is ready; one whose newest
/// migration is not recorded (a rollback of the schema, say) is not.
fn the_health_check_passes_when_migrated_and_names_a_migration_that_is_not_applied(empty: EmptyDb) {
    use chat_domain::health::{StoreHealth as _, StoreProblem};
    let timeout = std::time::Duration::from_secs(2);
    let backend = empty.backend();
    let url = empty.url().to_owned();
    let db = empty.connect();
    assert_eq!(db.check(timeout), Ok(()));

    execute(
        backend,
        &url,
        "DELETE FROM __diesel_schema_migrations
          WHERE version = (SELECT MAX(version) FROM __diesel_schema_migrations)",
    )
    .unwrap();
    assert_eq!(db.check(timeout), Err(StoreProblem::MigrationsPending(1)));
}

/// Four users and four chats as the seed schema stored them. Message ids
/// are 1 to 8 in insertion order (a fresh database), interleaved across
/// chats; `last_read_message_id` is NULL, a message of the chat, an id
/// between two of its messages, an id before its first, one past its last,
/// and anything in a chat without messages. The same SQL on both backends.
const AT_THE_PREVIOUS_SCHEMA: &str = "
INSERT INTO users (username, password_hash, created) VALUES ('alice', 'h', '2025-11-24 10:00:00');
INSERT INTO users (username, password_hash, created) VALUES ('bob', 'h', '2025-11-24 10:00:00');
INSERT INTO users (username, password_hash, created) VALUES ('carol', 'h', '2025-11-24 10:00:00');
INSERT INTO users (username, password_hash, created) VALUES ('dave', 'h', '2025-11-24 10:00:00');

INSERT INTO direct_chats (user_low_id, user_high_id, created) VALUES (1, 2, '2025-11-24 10:01:00');
INSERT INTO direct_chats (user_low_id, user_high_id, created) VALUES (1, 3, '2025-11-24 10:02:00');
INSERT INTO direct_chats (user_low_id, user_high_id, created) VALUES (1, 4, '2025-11-24 10:03:00');
INSERT INTO direct_chats (user_low_id, user_high_id, created) VALUES (2, 3, '2025-11-24 10:04:00');

INSERT INTO direct_chat_participants (chat_id, user_id, last_read_message_id) VALUES
    (1, 1, 4),    -- alice: message 4, chat 1's third
    (1, 2, NULL), -- bob: nothing read
    (2, 1, 4),    -- alice: between chat 2's messages 2 and 5
    (2, 3, 100),  -- carol: past chat 2's last message
    (3, 1, 3),    -- alice: before chat 3's first message (8)
    (3, 4, 8),    -- dave: chat 3's only message
    (4, 2, 5),    -- bob: a chat without messages
    (4, 3, NULL);

INSERT INTO direct_messages (chat_id, sender_id, body, created) VALUES (1, 2, 'c1 one', '2025-11-24 11:00:01');
INSERT INTO direct_messages (chat_id, sender_id, body, created) VALUES (2, 3, 'c2 one', '2025-11-24 11:00:02');
INSERT INTO direct_messages (chat_id, sender_id, body, created) VALUES (1, 1, 'c1 two', '2025-11-24 11:00:03');
INSERT INTO direct_messages (chat_id, sender_id, body, created) VALUES (1, 2, 'c1 three', '2025-11-24 11:00:04');
INSERT INTO direct_messages (chat_id, sender_id, body, created) VALUES (2, 1, 'c2 two', '2025-11-24 11:00:05');
INSERT INTO direct_messages (chat_id, sender_id, body, created) VALUES (1, 2, 'c1 four', '2025-11-24 11:00:06');
INSERT INTO direct_messages (chat_id, sender_id, body, created) VALUES (2, 3, 'c2 three', '2025-11-24 11:00:07');
INSERT INTO direct_messages (chat_id, sender_id, body, created) VALUES (3, 4, 'c3 one', '2025-11-24 11:00:08');
";

/// Applies exactly the first two migrations, then writes the old data.
/// (`EmbeddedMigrations` is neither `Copy` nor borrowed by the harness,
/// hence a function that makes it.)
fn migrate_to_the_previous_schema<C>(conn: &mut C, migrations: fn() -> EmbeddedMigrations)
where
    C: MigrationHarness<C::Backend> + Connection,
{
    for _ in 0..2 {
        conn.run_next_migration(migrations()).unwrap();
    }
    let applied: Vec<String> = conn
        .applied_migrations()
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(applied.len(), 2, "{applied:?}");
    let pending: Vec<String> = conn
        .pending_migrations(migrations())
        .unwrap()
        .iter()
        .map(|m| m.name().to_string())
        .collect();
    assert_eq!(
        pending,
        [
            "2026-12-01-000000_protocol_v2",
            "2026-12-02-000000_retry_key_order",
            "2026-12-03-000000_accounts"
        ]
    );
    conn.batch_execute(AT_THE_PREVIOUS_SCHEMA).unwrap();
}

/// Every migration before the accounts one, then accounts whose names
/// differ only in case or width, as an older server let them be created.
fn before_the_accounts_migration<C>(conn: &mut C, migrations: fn() -> EmbeddedMigrations)
where
    C: MigrationHarness<C::Backend> + Connection,
{
    for _ in 0..4 {
        conn.run_next_migration(migrations()).unwrap();
    }
    conn.batch_execute(
        "INSERT INTO users (username, password_hash, created) VALUES ('Bob', 'h1', '2025-11-24 10:00:00');
         INSERT INTO users (username, password_hash, created) VALUES ('bob', 'h2', '2025-11-24 10:00:00');
         INSERT INTO users (username, password_hash, created) VALUES ('dave', 'h3', '2025-11-24 10:00:00');
         INSERT INTO users (username, password_hash, created) VALUES ('ＤＡＶＥ', 'h4', '2025-11-24 10:00:00');
         INSERT INTO users (username, password_hash, created) VALUES ('erin', 'h5', '2025-11-24 10:00:00');",
    )
    .unwrap();
}

fn the_accounts_migration_keys_old_usernames_and_the_older_of_two_that_clash_keeps_the_key(
    empty: EmptyDb,
) {
    use chat_domain::user::{CreateUserError, NewUser, PasswordHash, TokenGeneration, Username};
    match empty.backend() {
        #[cfg(feature = "sqlite")]
        Backend::Sqlite => {
            let path = empty.url().trim_start_matches("sqlite://");
            let mut conn = diesel::SqliteConnection::establish(path).unwrap();
            before_the_accounts_migration(&mut conn, || SQLITE_MIGRATIONS);
        }
        #[cfg(feature = "postgres")]
        Backend::Postgres => {
            let mut conn = diesel::PgConnection::establish(empty.url()).unwrap();
            before_the_accounts_migration(&mut conn, || POSTGRES_MIGRATIONS);
        }
        #[allow(unreachable_patterns)]
        other => panic!("this build has no {other}"),
    }

    // Connecting migrates and fills in the keys.
    let db = empty.connect();

    let found = |name: &str| {
        db.find_credentials(&Username::parse(name).unwrap())
            .unwrap()
            .map(|c| (c.user.id.get(), c.token_generation))
    };
    // Every account still logs in by its exact name, at generation 0.
    for (id, name) in [
        (1, "Bob"),
        (2, "bob"),
        (3, "dave"),
        (4, "ＤＡＶＥ"),
        (5, "erin"),
    ] {
        assert_eq!(found(name), Some((id, TokenGeneration(0))), "{name}");
    }
    // Any other spelling finds the older account of a clash.
    assert_eq!(found("BOB").map(|f| f.0), Some(1));
    assert_eq!(found("Dave").map(|f| f.0), Some(3));
    assert_eq!(found("ERIN").map(|f| f.0), Some(5));
    // And no new account can take any spelling of them.
    for name in ["BOB", "bOb", "Dave", "Ｅｒｉｎ"] {
        let again = db.create_user(&NewUser {
            username: Username::new_account(name).unwrap(),
            password_hash: PasswordHash::new("h"),
        });
        assert!(
            matches!(again, Err(CreateUserError::Duplicate)),
            "{name}: {again:?}"
        );
    }
}

/// Runs `sql` on a connection of its own (no pool, no migrations).
fn execute(backend: Backend, url: &str, sql: &str) -> Result<(), String> {
    match backend {
        #[cfg(feature = "sqlite")]
        Backend::Sqlite => diesel::SqliteConnection::establish(url.trim_start_matches("sqlite://"))
            .map_err(|e| e.to_string())?
            .batch_execute(sql)
            .map_err(|e| e.to_string()),
        #[cfg(feature = "postgres")]
        Backend::Postgres => diesel::PgConnection::establish(url)
            .map_err(|e| e.to_string())?
            .batch_execute(sql)
            .map_err(|e| e.to_string()),
        #[allow(unreachable_patterns)]
        other => panic!("this build has no {other}"),
    }
}

fn the_v2_migration_numbers_old_messages_per_chat_in_id_order_and_moves_read_cursors_to_seqs(
    empty: EmptyDb,
) {
    match empty.backend() {
        #[cfg(feature = "sqlite")]
        Backend::Sqlite => {
            let path = empty.url().trim_start_matches("sqlite://");
            let mut conn = diesel::SqliteConnection::establish(path).unwrap();
            migrate_to_the_previous_schema(&mut conn, || SQLITE_MIGRATIONS);
        }
        #[cfg(feature = "postgres")]
        Backend::Postgres => {
            let mut conn = diesel::PgConnection::establish(empty.url()).unwrap();
            migrate_to_the_previous_schema(&mut conn, || POSTGRES_MIGRATIONS);
        }
        #[allow(unreachable_patterns)]
        other => panic!("this build has no {other}"),
    }
    let backend = empty.backend();

    // Connecting applies the rest: the v2 migration.
    let db = empty.connect();

    let user = |id: i64| -> User { db.find_user(UserId::new(id)).unwrap().unwrap() };
    let (alice, bob, carol, dave) = (user(1), user(2), user(3), user(4));
    // Each chat's messages numbered 1, 2, ... in id order.
    let numbered = |chat: i64| -> Vec<(i64, i64, String)> {
        let chat = db.find_chat(ChatId::new(chat)).unwrap().unwrap();
        db.page(&chat, PageAnchor::Newest, 200)
            .messages
            .into_iter()
            .map(|m| (m.id.get(), m.seq.get(), m.body))
            .collect()
    };
    let triples = |rows: &[(i64, i64, &str)]| -> Vec<(i64, i64, String)> {
        rows.iter()
            .map(|&(id, seq, body)| (id, seq, body.to_owned()))
            .collect()
    };
    assert_eq!(
        numbered(1),
        triples(&[
            (1, 1, "c1 one"),
            (3, 2, "c1 two"),
            (4, 3, "c1 three"),
            (6, 4, "c1 four")
        ])
    );
    assert_eq!(
        numbered(2),
        triples(&[(2, 1, "c2 one"), (5, 2, "c2 two"), (7, 3, "c2 three")])
    );
    assert_eq!(numbered(3), triples(&[(8, 1, "c3 one")]));
    assert_eq!(numbered(4), vec![]);

    // read_up_to: the seq of the newest message at or before the old
    // cursor; delivered_up_to the same.
    let cursors_of = |viewer: &User, chat: i64| db.summary(viewer.id, ChatId::new(chat)).mine;
    let at = |n: i64| Cursors {
        read_up_to: seq(n),
        delivered_up_to: seq(n),
    };
    assert_eq!(cursors_of(&alice, 1), at(3), "alice, chat 1: at message 4");
    assert_eq!(cursors_of(&bob, 1), at(0), "bob, chat 1: NULL");
    assert_eq!(
        cursors_of(&alice, 2),
        at(1),
        "alice, chat 2: between 2 and 5"
    );
    assert_eq!(cursors_of(&carol, 2), at(3), "carol, chat 2: past the last");
    assert_eq!(
        cursors_of(&alice, 3),
        at(0),
        "alice, chat 3: before the first"
    );
    assert_eq!(
        cursors_of(&dave, 3),
        at(1),
        "dave, chat 3: its only message"
    );
    assert_eq!(cursors_of(&bob, 4), at(0), "bob, chat 4: no messages");
    assert_eq!(cursors_of(&carol, 4), at(0), "carol, chat 4: NULL");

    // Unread counts follow from them.
    let unread = |viewer: &User, chat: i64| db.summary(viewer.id, ChatId::new(chat)).unread_count;
    assert_eq!(unread(&alice, 1), 1, "bob's seq 4");
    assert_eq!(unread(&bob, 1), 1, "alice's seq 2");
    assert_eq!(unread(&alice, 2), 1, "carol's seq 3");
    assert_eq!(unread(&carol, 2), 0);
    let summary = db.summary(alice.id, ChatId::new(1));
    assert_eq!(summary.head_seq, seq(4));
    assert_eq!(summary.other_last_seen, None);
    assert_eq!(summary.last_message.unwrap().client_id, None);

    after_the_migration_messages_go_on_from_each_chats_head(&db, backend);
}

fn after_the_migration_messages_go_on_from_each_chats_head(db: &SqlStore, backend: Backend) {
    let chat = |id: i64| db.find_chat(ChatId::new(id)).unwrap().unwrap();
    let user = |id: i64| -> User { db.find_user(UserId::new(id)).unwrap().unwrap() };

    assert_eq!(db.send(&chat(1), &user(1), "v2").seq, seq(5));
    assert_eq!(db.send(&chat(4), &user(3), "first").seq, seq(1));
    let keyed = crate::stores::new_one(db.send_keyed(&chat(2), &user(3), "keyed", "k"));
    assert_eq!(keyed.seq, seq(4));
    // The new unique index guards the numbering.
    let duplicate = execute(
        backend,
        db.url(),
        "INSERT INTO direct_messages (chat_id, sender_id, body, created, seq)
         VALUES (1, 2, 'dup', '2026-12-01 10:00:00', 4)",
    );
    assert!(duplicate.is_err(), "a second seq 4 in chat 1 was accepted");
}
