#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking
//! `chat-server import-django` against a database Django itself made
//! (tests/django_fixture: Django 5.1.15 in a virtual environment under
//! target/, its migrations, `create_user`'s real pbkdf2_sha256 hashes, and
//! every kind of row the server would refuse). Then the real server runs
//! on the imported database and a client checks what Django's users would
//! see.
//!
//! Without python3 and its venv module this says loudly that it is
//! skipped and passes; with REQUIRE_DJANGO=1 the skip is a failure.
//!
//! The fixture's ids are fixed (seed.py creates them in order on a fresh
//! database): users 1 alice, 2 bob, 3 carol, 4 dave (inactive), 5 erin
//! (unusable password), 6 Alice (same key as alice), 7 `bad name`; chats
//! 1 alice+bob, 2 alice+carol, 3 and 4 bob+carol (merged), 5 alice alone,
//! 6 three users, 7 carol+Alice, 8 bob+dave.

mod common;

use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::process::{ServerProcess, TEST_JWT_SECRET};
use common::{Api, TestUser};
use diesel::connection::SimpleConnection as _;
use diesel::{Connection as _, RunQueryDsl as _};
use serde_json::{json, Value};

/// Builds the Django database in SQLite, or `None` (loudly) when python3
/// cannot make a virtual environment here.
fn django_fixture(dir: &Path) -> Option<PathBuf> {
    let path = dir.join("django.sqlite3");
    build_django_fixture(&path.display().to_string()).then_some(path)
}

/// Builds the Django database at `out` (a SQLite path or an empty
/// PostgreSQL database's URL); `false` (loudly) when python3 cannot make a
/// virtual environment here.
fn build_django_fixture(out: &str) -> bool {
    let has_venv = Command::new("python3")
        .args(["-c", "import venv, ensurepip"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !has_venv {
        eprintln!();
        eprintln!("################################################################");
        eprintln!("## DJANGO IMPORT TESTS SKIPPED: python3 with venv is not installed");
        eprintln!("## (apt-get install python3-venv)");
        eprintln!("################################################################");
        assert!(
            std::env::var("REQUIRE_DJANGO").as_deref() != Ok("1"),
            "REQUIRE_DJANGO=1: failing"
        );
        return false;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/django_fixture/build.sh");
    let built = Command::new(script).arg(out).output().unwrap();
    assert!(
        built.status.success(),
        "the Django fixture failed to build: {}{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );
    true
}

/// Runs `chat-server import-django --from sqlite://<django> <args>` into
/// the SQLite file `target`.
fn import(django: &Path, target: &Path, args: &[&str]) -> Output {
    import_into(
        &format!("sqlite://{}", django.display()),
        &format!("sqlite://{}", target.display()),
        target.parent().unwrap(),
        args,
    )
}

/// The same from the Django database at `from` into the one at `url`.
fn import_into(from: &str, url: &str, data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", url)
        .env("CHAT_DATA_DIR", data_dir)
        .env("RUST_LOG", "warn")
        .arg("import-django")
        .arg("--from")
        .arg(from)
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn report(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        stdout(out),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The report's row for `table` in the table after "wrote": `[written,
/// present, planned]`.
fn written_row(out: &Output, table: &str) -> Vec<u64> {
    let text = stdout(out);
    let after = text.split_once("\nwrote ").expect("a write report").1;
    let line = after
        .lines()
        .find(|line| line.split_whitespace().next() == Some(table))
        .unwrap_or_else(|| panic!("no {table} row in {text}"));
    line.split_whitespace()
        .skip(1)
        .map(|n| n.parse().unwrap())
        .collect()
}

/// Every row of the four tables, as text: two equal dumps are two equal
/// databases.
fn dump(target: &Path) -> Vec<String> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        row: String,
    }
    let mut conn = diesel::SqliteConnection::establish(&target.display().to_string()).unwrap();
    let queries = [
        "SELECT id || '|' || username || '|' || username_key || '|' || password_hash || '|' || created || '|' || token_generation AS row FROM users ORDER BY id",
        "SELECT id || '|' || user_low_id || '|' || user_high_id || '|' || created AS row FROM direct_chats ORDER BY id",
        "SELECT chat_id || '|' || user_id || '|' || read_up_to || '|' || delivered_up_to AS row FROM direct_chat_participants ORDER BY chat_id, user_id",
        "SELECT id || '|' || chat_id || '|' || sender_id || '|' || seq || '|' || created || '|' || body AS row FROM direct_messages ORDER BY id",
        "SELECT name || '|' || seq AS row FROM sqlite_sequence ORDER BY name",
    ];
    queries
        .iter()
        .flat_map(|query| {
            diesel::sql_query(*query)
                .load::<Row>(&mut conn)
                .unwrap()
                .into_iter()
                .map(|row| row.row)
        })
        .collect()
}

async fn login(api: &Api, username: &str, password: &str) -> TestUser {
    let reply = api.login(username, password).await;
    assert_eq!(reply.status, 200, "login {username}: {reply:?}");
    TestUser {
        id: reply.body["user"]["id"].as_i64().unwrap(),
        username: username.to_owned(),
        token: reply.body["token"].as_str().unwrap().to_owned(),
    }
}

/// `user`'s chats as `(id, last message body, last sender, unread)`.
async fn chat_list(api: &Api, user: &TestUser) -> Vec<(i64, Value, Value, u64)> {
    let mut chats: Vec<_> = api
        .chats_of(user)
        .await
        .iter()
        .map(|chat| {
            (
                chat["id"].as_i64().unwrap(),
                chat["last_message"]["body"].clone(),
                chat["last_message"]["sender"].clone(),
                chat["unread_count"].as_u64().unwrap(),
            )
        })
        .collect();
    chats.sort_by_key(|chat| chat.0);
    chats
}

/// What the seed socket replays for `user` in `chat`: `(id, sender, body,
/// is_read)` in order.
async fn history(api: &Api, user: &TestUser, chat: i64) -> Vec<(i64, String, String, bool)> {
    let mut socket = api.connect(user, chat).await;
    let messages = socket.drain_messages(Duration::from_millis(500)).await;
    socket.close().await;
    messages
        .iter()
        .map(|m| {
            (
                m["id"].as_i64().unwrap(),
                m["sender"].as_str().unwrap().to_owned(),
                m["body"].as_str().unwrap().to_owned(),
                m["is_read"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn entry(id: i64, sender: &str, body: &str, is_read: bool) -> (i64, String, String, bool) {
    (id, sender.to_owned(), body.to_owned(), is_read)
}

#[actix_web::test]
async fn a_django_database_is_imported_checked_and_served_as_django_served_it() {
    let dir = tempfile::tempdir().unwrap();
    let Some(django) = django_fixture(dir.path()) else {
        return;
    };
    let target = dir.path().join("chat.sqlite3");

    // A dry run lists every problem and the merge, and writes nothing.
    let dry = import(&django, &target, &["--dry-run"]);
    assert!(dry.status.success(), "{}", report(&dry));
    let text = stdout(&dry);
    for expected in [
        "merge: chat 4 (users 2 and 3) merged into chat 3",
        "problem: user 6 skipped: username \"Alice\" is the same name as user 1's",
        "problem: user 7 skipped: username \"bad name\" is refused",
        "problem: chat 5 skipped: has 1 participant(s)",
        "problem: chat 6 skipped: has 3 participant(s)",
        "skip: chat 7 skipped: participant user 6 is skipped",
        "problem: message 8 skipped: sender user 3 is not in chat 1",
        "problem: message 9 skipped: message body may not be empty",
        "problem: message 10 skipped: message body may be at most 4096 characters long",
        "problem: message 11 skipped: message body may not contain the NUL character",
        "skip: message 12 skipped: its chat 5 is skipped",
        "skip: message 13 skipped: its chat 7 is skipped",
        "read state: 1 chat(s) had an unread message older than a read one (chats [2])",
        "dry run: nothing written; 8 row(s) the server would refuse",
    ] {
        assert!(text.contains(expected), "{expected:?} missing from\n{text}");
    }
    let counts: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("users") || l.starts_with("chats") || l.starts_with("messages"))
        .collect();
    // read, to write, skipped, merged
    assert_eq!(
        counts
            .iter()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>(),
        ["users 7 5 2 0", "chats 8 4 3 1", "messages 17 11 6 0"],
        "{text}"
    );
    assert!(!target.exists(), "a dry run created the target");

    // Without --skip-invalid the import refuses, before writing anything.
    let refused = import(&django, &target, &[]);
    assert_eq!(refused.status.code(), Some(1), "{}", report(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("nothing written"),
        "{}",
        report(&refused)
    );
    assert!(!target.exists(), "a refused import created the target");

    // With it, the valid rows are written and verified.
    let first = import(&django, &target, &["--skip-invalid"]);
    assert!(first.status.success(), "{}", report(&first));
    assert!(
        stdout(&first).contains("verified: every table's rows"),
        "{}",
        report(&first)
    );
    assert_eq!(written_row(&first, "users"), [5, 0, 5]);
    assert_eq!(written_row(&first, "messages"), [11, 0, 11]);
    let imported = dump(&target);

    // A second import changes nothing.
    let again = import(&django, &target, &["--skip-invalid"]);
    assert!(again.status.success(), "{}", report(&again));
    for table in ["users", "chats", "participants", "messages"] {
        assert_eq!(
            written_row(&again, table)[0],
            0,
            "{table}: {}",
            report(&again)
        );
    }
    assert_eq!(dump(&target), imported);

    // An import cut short (here: its last rows never written) is
    // completed by running it again.
    let interrupted = dir.path().join("interrupted.sqlite3");
    assert!(import(&django, &interrupted, &["--skip-invalid"])
        .status
        .success());
    diesel::SqliteConnection::establish(&interrupted.display().to_string())
        .unwrap()
        .batch_execute(
            "DELETE FROM direct_messages WHERE id >= 14 OR chat_id = 8;
             DELETE FROM direct_chat_participants WHERE chat_id = 8;
             DELETE FROM direct_chats WHERE id = 8;
             DELETE FROM users WHERE id >= 4;",
        )
        .unwrap();
    let resumed = import(&django, &interrupted, &["--skip-invalid"]);
    assert!(resumed.status.success(), "{}", report(&resumed));
    assert_eq!(written_row(&resumed, "users"), [2, 3, 5]);
    assert_eq!(dump(&interrupted), imported);

    let data_dir = dir.path().to_string_lossy().into_owned();
    let url = format!("sqlite://{}", target.display());
    served_as_django_served_it(&url, &data_dir).await;
}

/// The same import from Django on PostgreSQL into PostgreSQL, when the
/// suite runs there (`TEST_DATABASE_URL` in a postgres build): read in one
/// read-only snapshot, written and verified, a second run changes nothing,
/// and the server then serves it as Django did, its id sequences moved
/// past the imported ids. (PostgreSQL cannot hold the NUL message: seed.py
/// leaves its id unused there.)
#[actix_web::test]
async fn a_django_database_on_postgresql_imported_into_postgresql_is_served_as_django_served_it() {
    let django = chat_persistence::testing::TestDatabase::create().unwrap();
    let database = chat_persistence::testing::TestDatabase::create().unwrap();
    if database.backend() != chat_persistence::Backend::Postgres {
        eprintln!(
            "skipped: the suite runs on SQLite (TEST_DATABASE_URL is for the postgres build)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    if !build_django_fixture(django.url()) {
        return;
    }
    let dry = import_into(django.url(), database.url(), dir.path(), &["--dry-run"]);
    assert!(dry.status.success(), "{}", report(&dry));
    assert!(
        stdout(&dry).contains("dry run: nothing written; 7 row(s) the server would refuse"),
        "{}",
        report(&dry)
    );
    let first = import_into(
        django.url(),
        database.url(),
        dir.path(),
        &["--skip-invalid"],
    );
    assert!(first.status.success(), "{}", report(&first));
    assert!(
        stdout(&first).contains("verified: every table's rows"),
        "{}",
        report(&first)
    );
    assert_eq!(written_row(&first, "messages"), [11, 0, 11]);
    let again = import_into(
        django.url(),
        database.url(),
        dir.path(),
        &["--skip-invalid"],
    );
    assert!(again.status.success(), "{}", report(&again));
    for table in ["users", "chats", "participants", "messages"] {
        assert_eq!(
            written_row(&again, table)[0],
            0,
            "{table}: {}",
            report(&again)
        );
    }
    served_as_django_served_it(database.url(), &dir.path().to_string_lossy()).await;
}

/// The server on the imported database at `url`, seen by Django's users.
async fn served_as_django_served_it(url: &str, data_dir: &str) {
    // The server on the imported database, seen by Django's users.
    let server = ServerProcess::start(&[
        ("DATABASE_URL", url),
        ("CHAT_DATA_DIR", data_dir),
        ("CHAT_JWT_SECRET", TEST_JWT_SECRET),
    ])
    .unwrap();
    let api = Api::new(server.port);

    // Each valid user logs in with the password Django hashed; ids kept.
    let alice = login(&api, "alice", "alice-password-1").await;
    let bob = login(&api, "bob", "bob-password-2").await;
    let carol = login(&api, "carol", "carol-password-3").await;
    assert_eq!([alice.id, bob.id, carol.id], [1, 2, 3]);
    // Inactive, unusable and skipped accounts cannot.
    for (username, password) in [
        ("dave", "dave-password-4"),
        ("erin", ""),
        ("Alice", "alice-upper-6"),
        ("bad name", "bad-name-7"),
    ] {
        let reply = api.login(username, password).await;
        assert!(
            matches!(reply.status, 400 | 401),
            "{username} logged in: {reply:?}"
        );
    }

    // The chat list: Django's last message and unread counts. Chat 2 is
    // the one that was not prefix-closed: one unread from carol, kept.
    let b = |s: &str| json!(s);
    assert_eq!(
        chat_list(&api, &alice).await,
        [
            (1, b("still there?"), b("alice"), 0),
            (2, b("alice answers carol"), b("alice"), 1),
        ]
    );
    assert_eq!(
        chat_list(&api, &bob).await,
        [
            (1, b("still there?"), b("alice"), 2),
            (3, b("bob in chat 3 again"), b("bob"), 1),
            (8, b("dave was here"), b("dave"), 0),
        ]
    );
    assert_eq!(
        chat_list(&api, &carol).await,
        [
            (2, b("alice answers carol"), b("alice"), 1),
            (3, b("bob in chat 3 again"), b("bob"), 1),
        ]
    );

    // The seed socket replays the same history, in order, with the ids and
    // read flags Django had (chat 3 holds chat 4's message, by id).
    assert_eq!(
        history(&api, &alice, 1).await,
        [
            entry(1, "alice", "hi bob", true),
            entry(2, "bob", "hi alice", true),
            entry(14, "alice", "how are you? ☃", false),
            entry(15, "alice", "still there?", false),
        ]
    );
    assert_eq!(
        history(&api, &carol, 3).await,
        [
            entry(5, "bob", "bob in chat 3", true),
            entry(6, "carol", "carol in chat 4", false),
            entry(7, "bob", "bob in chat 3 again", false),
        ]
    );
    // A new account after the import gets an id past every Django id,
    // skipped ones included (7, `bad name`): fixed in Django and imported
    // again, that user keeps its id.
    let frank = api.register("frank", "frank-password").await;
    assert_eq!(frank.status, 201, "{frank:?}");
    assert_eq!(frank.body["id"].as_i64().unwrap(), 8, "{frank:?}");
}

/// A build without PostgreSQL says what to rebuild rather than failing to
/// connect; with it, an unreachable server is reported as such.
#[test]
fn a_postgresql_source_without_the_postgres_build_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = import_into(
        "postgres://nobody@127.0.0.1:1/django",
        &format!("sqlite://{}", dir.path().join("chat.sqlite3").display()),
        dir.path(),
        &["--dry-run"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", report(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    if cfg!(feature = "postgres") {
        assert!(
            stderr.contains("cannot open the Django database"),
            "{stderr}"
        );
    } else {
        assert!(
            stderr.contains("reading a PostgreSQL source needs the postgres build"),
            "{stderr}"
        );
    }
}

/// The synthetic Django database of tests/django_fixture/synthetic.sql at
/// `path`: `chats` chats of `per_chat` messages each (no Django needed:
/// the SQL makes Django's tables itself).
fn synthetic_source(path: &Path, chats: u32, per_chat: u32) {
    let script = include_str!("django_fixture/synthetic.sql")
        .replace("PER_CHAT", &per_chat.to_string())
        .replace("CHATS", &chats.to_string());
    diesel::SqliteConnection::establish(&path.display().to_string())
        .unwrap()
        .batch_execute(&script)
        .unwrap();
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

fn count(conn: &mut diesel::SqliteConnection, query: &str) -> i64 {
    diesel::sql_query(query)
        .get_result::<Count>(conn)
        .unwrap_or_else(|e| panic!("{query}: {e}"))
        .n
}

/// Asserts that `target` holds exactly synthetic.sql's `chats` x
/// `per_chat` import of `source`: every row, every message's content and
/// seq, every chat's last message, every cursor.
fn assert_exact_synthetic_import(target: &Path, source: &Path, chats: i64, per_chat: i64) {
    let mut conn = diesel::SqliteConnection::establish(&target.display().to_string()).unwrap();
    conn.batch_execute(&format!("ATTACH '{}' AS django", source.display()))
        .unwrap();
    let total = chats * per_chat;
    assert_eq!(
        count(&mut conn, "SELECT COUNT(*) AS n FROM users"),
        2 * chats
    );
    assert_eq!(
        count(&mut conn, "SELECT COUNT(*) AS n FROM direct_chats"),
        chats
    );
    assert_eq!(
        count(
            &mut conn,
            "SELECT COUNT(*) AS n FROM direct_chat_participants"
        ),
        2 * chats
    );
    assert_eq!(
        count(&mut conn, "SELECT COUNT(*) AS n FROM direct_messages"),
        total
    );
    // Every message is Django's, in its chat, numbered by its rank there.
    assert_eq!(
        count(
            &mut conn,
            &format!(
                "SELECT COUNT(*) AS n FROM direct_messages m JOIN django.chat_directmessage d ON d.id = m.id \
                  WHERE m.chat_id = d.chat_id AND m.sender_id = d.sender_id AND m.body = d.body \
                    AND m.seq = (m.id - 1) / {chats} + 1"
            )
        ),
        total
    );
    // Each chat's last message: id (per_chat - 1) * chats + c, seq per_chat.
    assert_eq!(
        count(
            &mut conn,
            &format!(
                "SELECT COUNT(*) AS n FROM direct_chats c \
                  WHERE (SELECT MAX(seq) FROM direct_messages m WHERE m.chat_id = c.id) = {per_chat} \
                    AND (SELECT id FROM direct_messages m WHERE m.chat_id = c.id AND m.seq = {per_chat}) \
                        = ({per_chat} - 1) * {chats} + c.id"
            )
        ),
        chats
    );
    // The last ten are unread: the lower user's (odd seqs) has the
    // higher's last five (even seqs from per_chat - 8) unread, so sits at
    // per_chat - 9; the higher sits just below the lower's first unread
    // one, per_chat - 9, at per_chat - 10.
    assert_eq!(
        count(
            &mut conn,
            &format!(
                "SELECT COUNT(*) AS n FROM direct_chat_participants p JOIN direct_chats c ON c.id = p.chat_id \
                  WHERE p.read_up_to = p.delivered_up_to \
                    AND p.read_up_to = CASE WHEN p.user_id = c.user_low_id THEN {per_chat} - 9 ELSE {per_chat} - 10 END"
            )
        ),
        2 * chats
    );
}

/// The import killed with SIGKILL once its first message batch is
/// committed leaves a partial import; run again, it completes it exactly,
/// and a third run writes nothing.
#[test]
fn an_import_killed_mid_way_is_completed_exactly_by_running_it_again() {
    // 120,000 messages: three transactions of 40,000, seconds of work in a
    // debug build.
    const CHATS: u32 = 100;
    const PER_CHAT: u32 = 1_200;
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("django.sqlite3");
    synthetic_source(&source, CHATS, PER_CHAT);
    let target = dir.path().join("chat.sqlite3");

    let mut child = Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", format!("sqlite://{}", target.display()))
        .env("CHAT_DATA_DIR", dir.path())
        .env("RUST_LOG", "warn")
        .args(["import-django", "--from"])
        .arg(format!("sqlite://{}", source.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Poll the target, read-only, until a message batch is committed; the
    // file and its tables appear along the way, so errors mean "not yet".
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    let mut messages = 0;
    for _ in 0..300_000 {
        if std::time::Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            break;
        }
        if target.exists() {
            let uri = format!("file:{}?mode=ro", target.display());
            if let Ok(mut conn) = diesel::SqliteConnection::establish(&uri) {
                messages = diesel::sql_query("SELECT COUNT(*) AS n FROM direct_messages")
                    .get_result::<Count>(&mut conn)
                    .map_or(0, |c| c.n);
                if messages > 0 {
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "the import ended before it could be killed ({status:?}, {messages} messages seen)"
    );
    let total = i64::from(CHATS * PER_CHAT);
    let mut conn = diesel::SqliteConnection::establish(&target.display().to_string()).unwrap();
    let left = count(&mut conn, "SELECT COUNT(*) AS n FROM direct_messages");
    assert!(
        left > 0 && left < total,
        "killed after its first batch, {left} of {total} messages are there"
    );
    drop(conn);

    let resumed = import(&source, &target, &[]);
    assert!(resumed.status.success(), "{}", report(&resumed));
    assert!(
        stdout(&resumed).contains("verified: every table's rows"),
        "{}",
        report(&resumed)
    );
    let row = written_row(&resumed, "messages");
    assert_eq!(
        row,
        [
            u64::try_from(total - left).unwrap(),
            u64::try_from(left).unwrap(),
            u64::try_from(total).unwrap()
        ],
        "{}",
        report(&resumed)
    );
    assert_exact_synthetic_import(&target, &source, CHATS.into(), PER_CHAT.into());
    let imported = dump(&target);

    let third = import(&source, &target, &[]);
    assert!(third.status.success(), "{}", report(&third));
    for table in ["users", "chats", "participants", "messages"] {
        assert_eq!(
            written_row(&third, table)[0],
            0,
            "{table}: {}",
            report(&third)
        );
    }
    assert!(
        stdout(&third).contains("cursors set: 0"),
        "{}",
        report(&third)
    );
    assert_eq!(dump(&target), imported);
}

/// Two synthetic Django databases in `dir`: the one imported (3 chats of
/// 20 messages) and another whose users have other names.
fn this_source_and_another(dir: &Path) -> (PathBuf, PathBuf) {
    let source = dir.join("django.sqlite3");
    synthetic_source(&source, 3, 20);
    let other = dir.join("other.sqlite3");
    synthetic_source(&other, 4, 5);
    diesel::SqliteConnection::establish(&other.display().to_string())
        .unwrap()
        .batch_execute("UPDATE auth_user SET username = 'someone' || id")
        .unwrap();
    (source, other)
}

/// A target holding rows that are not the source's is refused with one
/// line, before anything is written: another source's import, a message
/// changed since, a user registered there. A target holding a partial
/// import of the same source resumes.
#[test]
fn a_target_holding_other_rows_is_refused_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let (source, other) = this_source_and_another(dir.path());

    let refused_with = |target: &Path, expected: &str| {
        let before = dump(target);
        let out = import(&source, target, &[]);
        assert_eq!(out.status.code(), Some(1), "{}", report(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("holds rows that are not this source's") && stderr.contains(expected),
            "{expected:?} missing: {}",
            report(&out)
        );
        assert_eq!(stderr.trim().lines().count(), 1, "{}", report(&out));
        assert!(!stdout(&out).contains("\nwrote "), "{}", report(&out));
        assert_eq!(dump(target), before, "a refused import changed the target");
    };

    // This source imported into a target of its own, then `sql` run there.
    let imported_then = |name: &str, sql: &str| {
        let target = dir.path().join(name);
        assert!(import(&source, &target, &[]).status.success());
        diesel::SqliteConnection::establish(&target.display().to_string())
            .unwrap()
            .batch_execute(sql)
            .unwrap();
        target
    };

    // Another source's import.
    let unrelated = dir.path().join("unrelated.sqlite3");
    let first = import(&other, &unrelated, &[]);
    assert!(first.status.success(), "{}", report(&first));
    refused_with(&unrelated, "user 1 there is \"someone1\"");

    // This source's import, one message changed since.
    let changed = imported_then(
        "changed.sqlite3",
        "UPDATE direct_messages SET body = 'edited' WHERE id = 7",
    );
    refused_with(&changed, "message 7 there differs from this source's");

    // This source's import, one more message there (a chat's next one).
    let extra = imported_then(
        "extra.sqlite3",
        "INSERT INTO direct_messages (id, chat_id, sender_id, body, created, seq) \
             VALUES (1000, 1, 1, 'written here', '2025-01-01 00:00:00', 21)",
    );
    refused_with(&extra, "message 1000 is there and not in this source");

    // This source's import, and a user registered there since.
    let registered = imported_then(
        "registered.sqlite3",
        "INSERT INTO users (id, username, username_key, password_hash, created) \
             VALUES (1000, 'newcomer', 'newcomer', '!', '2025-01-01 00:00:00')",
    );
    refused_with(
        &registered,
        "user 1000 (\"newcomer\") is there and not in this source",
    );

    // A partial import of this source (the last messages, a chat, a user
    // and every cursor lost) resumes and ends exact.
    let partial = dir.path().join("partial.sqlite3");
    assert!(import(&source, &partial, &[]).status.success());
    let complete = dump(&partial);
    diesel::SqliteConnection::establish(&partial.display().to_string())
        .unwrap()
        .batch_execute(
            "DELETE FROM direct_messages WHERE id > 40 OR chat_id = 3;
             DELETE FROM direct_chat_participants WHERE chat_id = 3;
             DELETE FROM direct_chats WHERE id = 3;
             DELETE FROM users WHERE id = 6;
             UPDATE direct_chat_participants SET read_up_to = 0, delivered_up_to = 0;",
        )
        .unwrap();
    let resumed = import(&source, &partial, &[]);
    assert!(resumed.status.success(), "{}", report(&resumed));
    assert_eq!(written_row(&resumed, "users"), [1, 5, 6]);
    // Chat 3's two, written anew, and the four reset.
    assert!(
        stdout(&resumed).contains("cursors set: 6"),
        "{}",
        report(&resumed)
    );
    assert_eq!(dump(&partial), complete);
    assert_exact_synthetic_import(&partial, &source, 3, 20);
}

/// The same on PostgreSQL, when the suite runs there: a partial import
/// (messages and cursors lost) resumes, and another source is refused with
/// the target left as it was. The source is synthetic.sql's, on SQLite.
#[cfg(feature = "postgres")]
#[test]
fn a_postgresql_target_resumes_a_partial_import_and_refuses_another_source() {
    let database = chat_persistence::testing::TestDatabase::create().unwrap();
    if database.backend() != chat_persistence::Backend::Postgres {
        eprintln!("skipped: the suite runs on SQLite (TEST_DATABASE_URL is for PostgreSQL)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (source, other) = this_source_and_another(dir.path());
    let from = |path: &Path| format!("sqlite://{}", path.display());

    let first = import_into(&from(&source), database.url(), dir.path(), &[]);
    assert!(first.status.success(), "{}", report(&first));
    let mut conn = diesel::PgConnection::establish(database.url()).unwrap();
    conn.batch_execute(
        "DELETE FROM direct_messages WHERE id > 40;
         UPDATE direct_chat_participants SET read_up_to = 0, delivered_up_to = 0;",
    )
    .unwrap();
    let resumed = import_into(&from(&source), database.url(), dir.path(), &[]);
    assert!(resumed.status.success(), "{}", report(&resumed));
    assert_eq!(written_row(&resumed, "messages"), [20, 40, 60]);
    assert!(
        stdout(&resumed).contains("cursors set: 6")
            && stdout(&resumed).contains("verified: every table's rows"),
        "{}",
        report(&resumed)
    );

    let mut rows = || {
        [
            "SELECT COUNT(*) AS n FROM users",
            "SELECT COUNT(*) AS n FROM direct_chats",
            "SELECT COUNT(*) AS n FROM direct_messages",
            "SELECT COALESCE(SUM(read_up_to), 0)::BIGINT AS n FROM direct_chat_participants",
        ]
        .map(|query| {
            diesel::sql_query(query)
                .get_result::<Count>(&mut conn)
                .unwrap()
                .n
        })
    };
    let before = rows();
    assert_eq!(before[..3], [6, 3, 60]);
    let refused = import_into(&from(&other), database.url(), dir.path(), &[]);
    assert_eq!(refused.status.code(), Some(1), "{}", report(&refused));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("holds rows that are not this source's")
            && stderr.contains("user 1 there is \"user1\""),
        "{}",
        report(&refused)
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{}", report(&refused));
    assert_eq!(rows(), before, "a refused import changed the target");
}
