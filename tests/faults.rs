//! Real faults against the real binary: `kill -9` and SIGTERM under load,
//! SQLite locked from outside, PostgreSQL dropping its connections and
//! becoming unreachable. The guarantee under test: a message its sender saw
//! acknowledged (its own copy came back) is in the history exactly once
//! after any of these, and the server recovers by itself.
//!
//! The SQLite-only and PostgreSQL-only tests say so on stderr and return at
//! once on the other backend: `make test` runs this file on both.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chat_persistence::testing::TestDatabase;
use chat_persistence::Backend;
use common::deployment::{assert_no_panic_in_logs, Deployment};
use common::process::ServerProcess;
use common::{Api, Received, TestUser};

#[derive(Clone)]
struct Chat {
    id: i64,
    sender: TestUser,
    receiver: TestUser,
}

async fn set_up_chats(api: &Api, count: usize) -> Vec<Chat> {
    let mut chats = Vec::new();
    for i in 0..count {
        let sender = api.user(&format!("sender{i}")).await;
        let receiver = api.user(&format!("receiver{i}")).await;
        let id = api.chat(&sender, &receiver).await;
        chats.push(Chat {
            id,
            sender,
            receiver,
        });
    }
    chats
}

/// What one closed-loop sender saw.
#[derive(Debug, Default)]
struct Sent {
    /// Sequence numbers whose own copy came back: acknowledged.
    acked: Vec<u64>,
    /// Messages sent, acknowledged or not.
    attempted: u64,
    /// Error frames received (e.g. "try again" while the database is down).
    refused: u64,
    /// How the socket ended: its close code, `None` for a dropped connection.
    ended_with: Option<u16>,
}

/// Sends `seq` bodies one after another on the sender's socket, each once
/// the previous one is answered (its copy or an error frame), until the
/// socket ends, `stop` is set, or `limit` messages.
async fn send_closed_loop(api: Api, chat: Chat, stop: Arc<AtomicBool>, limit: u64) -> Sent {
    let mut socket = api.connect(&chat.sender, chat.id).await;
    let mut sent = Sent::default();
    while sent.attempted < limit && !stop.load(Ordering::Relaxed) {
        let seq = sent.attempted;
        if !socket.try_send_body(&seq.to_string()).await {
            return sent;
        }
        sent.attempted += 1;
        // While the database is away, a message waits for the batches queued
        // before it, each failing only after the pool's 5 s connect timeout.
        let answer = socket
            .receive_until_gone_within(Duration::from_secs(60))
            .await
            .expect("an answer within a minute");
        match answer {
            Received::Json(frame) if frame.get("message").is_some() => {
                assert_eq!(frame["message"]["body"], seq.to_string(), "{frame}");
                sent.acked.push(seq);
            }
            Received::Json(_error) => sent.refused += 1,
            Received::Close(code) => {
                sent.ended_with = code;
                return sent;
            }
        }
    }
    socket.close().await;
    sent
}

/// The chat's history as its receiver replays it, as sequence numbers.
async fn stored_sequence(api: &Api, chat: &Chat) -> Vec<u64> {
    let mut socket = api.connect(&chat.receiver, chat.id).await;
    let history = socket.drain_messages(Duration::from_millis(1500)).await;
    socket.close().await;
    history
        .iter()
        .map(|m| m["body"].as_str().unwrap().parse().unwrap())
        .collect()
}

/// Every acknowledged message is stored exactly once, in the order sent,
/// and nothing is stored that was not sent. Returns (acked, stored).
async fn check_history(api: &Api, chats: &[Chat], sent: &[Sent]) -> (usize, usize) {
    let (mut acked, mut stored) = (0, 0);
    for (chat, sent) in chats.iter().zip(sent) {
        let history = stored_sequence(api, chat).await;
        assert!(
            history.windows(2).all(|w| w[0] < w[1]),
            "chat {}: history out of order or duplicated: {history:?}",
            chat.id
        );
        assert!(
            history.iter().all(|&seq| seq < sent.attempted),
            "chat {}: a message that was never sent is stored",
            chat.id
        );
        let missing: Vec<_> = sent
            .acked
            .iter()
            .filter(|seq| history.binary_search(seq).is_err())
            .collect();
        assert!(
            missing.is_empty(),
            "chat {}: acknowledged but lost: {missing:?}",
            chat.id
        );
        acked += sent.acked.len();
        stored += history.len();
    }
    (acked, stored)
}

/// Starts a closed-loop sender per chat, plus a reader on each receiver's
/// socket so every message is broadcast to someone.
async fn start_load(
    api: &Api,
    chats: &[Chat],
    stop: &Arc<AtomicBool>,
) -> Vec<actix_web::rt::task::JoinHandle<Sent>> {
    for chat in chats {
        let mut reader = api.connect(&chat.receiver, chat.id).await;
        // Silent while the database is away: a long wait, not a failure.
        actix_web::rt::spawn(async move {
            while let Some(Received::Json(_)) = reader
                .receive_until_gone_within(Duration::from_secs(120))
                .await
            {}
        });
    }
    chats
        .iter()
        .map(|chat| {
            actix_web::rt::spawn(send_closed_loop(
                api.clone(),
                chat.clone(),
                stop.clone(),
                1_000_000,
            ))
        })
        .collect()
}

/// How long the load runs before the fault: long enough for thousands of
/// messages, so the fault lands in the middle of the traffic.
const LOAD_BEFORE_FAULT: Duration = Duration::from_millis(1500);

/// Drives the load, sends `signal` to the server mid-run, and checks what
/// it promises for every message any sender saw acknowledged, on a restarted
/// server over the same database. `after_stop` checks how the server and
/// the sockets ended. Returns the figures for the test to print.
async fn signal_under_load(
    signal: &str,
    after_stop: impl FnOnce(&mut ServerProcess, &[Sent]),
) -> String {
    let deployment = Deployment::new();
    let mut server = deployment.start(&[]);
    let api = Api::new(server.port);
    let chats = set_up_chats(&api, 8).await;
    let stop = Arc::new(AtomicBool::new(false));
    let senders = start_load(&api, &chats, &stop).await;
    actix_web::rt::time::sleep(LOAD_BEFORE_FAULT).await;

    server.signal(signal);
    let mut sent = Vec::new();
    for sender in senders {
        sent.push(sender.await.unwrap());
    }
    after_stop(&mut server, &sent);
    drop(server);

    deployment.database.check_integrity().unwrap();
    let server = deployment.start(&[]);
    let api = Api::new(server.port);
    let (acked, stored) = check_history(&api, &chats, &sent).await;
    assert!(
        acked >= 100,
        "only {acked} messages were acknowledged before the {signal}"
    );
    format!(
        "{acked} acknowledged, {stored} stored, 0 lost, 0 duplicated ({})",
        deployment.database.backend()
    )
}

#[actix_web::test]
async fn kill_9_under_load_loses_no_acknowledged_message() {
    let figures = signal_under_load("KILL", |server, sent| {
        let status = server.wait_for_exit(Duration::from_secs(10));
        assert!(!status.success(), "killed, not exited: {status}");
        assert!(
            sent.iter().all(|s| s.ended_with.is_none()),
            "dropped, not closed"
        );
    })
    .await;
    eprintln!("kill -9 under load: {figures}");
}

#[actix_web::test]
async fn sigterm_under_load_closes_with_1001_and_loses_no_acknowledged_message() {
    let figures = signal_under_load("TERM", |server, sent| {
        assert!(server.wait_for_exit(Duration::from_secs(15)).success());
        for s in sent {
            assert_eq!(s.ended_with, Some(1001), "every socket is closed with 1001");
        }
    })
    .await;
    eprintln!("SIGTERM under load: {figures}");
}

/// Holds SQLite's write lock from another connection for `hold`.
fn lock_sqlite_for(url: &str, hold: Duration) -> std::thread::JoinHandle<()> {
    use diesel::connection::SimpleConnection as _;
    use diesel::Connection as _;

    let path = url.trim_start_matches("sqlite://").to_owned();
    let (locked, is_locked) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let mut conn = diesel::SqliteConnection::establish(&path).unwrap();
        conn.batch_execute("BEGIN EXCLUSIVE").unwrap();
        locked.send(()).unwrap();
        std::thread::sleep(hold);
        conn.batch_execute("COMMIT").unwrap();
    });
    is_locked.recv_timeout(Duration::from_secs(10)).unwrap();
    thread
}

#[actix_web::test]
async fn sqlite_locked_from_outside_is_waited_out_then_answered_503_never_a_crash() {
    let deployment = Deployment::new();
    if deployment.database.backend() != Backend::Sqlite {
        eprintln!("SKIPPED here: SQLite-only (runs in the SQLite suite)");
        return;
    }
    let mut server = deployment.start(&[]);
    let api = Api::new(server.port);
    let chats = set_up_chats(&api, 1).await;
    let chat = &chats[0];
    let mut socket = api.connect(&chat.sender, chat.id).await;

    // A short lock (under the 5 s busy timeout) is waited out: nothing is
    // refused, everything arrives.
    let lock = lock_sqlite_for(deployment.database.url(), Duration::from_millis(1500));
    for i in 0..10 {
        socket.send_body(&format!("short {i}")).await;
    }
    let registered = api
        .register("during_short_lock", "correct horse battery")
        .await;
    assert_eq!(registered.status, 201, "{registered:?}");
    for i in 0..10 {
        assert_eq!(socket.next_message().await["body"], format!("short {i}"));
    }
    lock.join().unwrap();

    // A long one is not: the sender gets the error frame ("try again"),
    // REST gets 503 with a JSON error; both as soon as the busy timeout ends.
    let lock = lock_sqlite_for(deployment.database.url(), Duration::from_secs(8));
    socket.send_body("during the long lock").await;
    let registered = api
        .register("during_long_lock", "correct horse battery")
        .await;
    assert_eq!(registered.status, 503, "{registered:?}");
    assert!(registered.body["error"].as_str().is_some());
    let refused = socket.expect_error().await;
    assert!(
        refused["detail"].as_str().unwrap().contains("try again"),
        "{refused}"
    );
    lock.join().unwrap();

    // Then everything works again, same process.
    socket.send_body("after the lock").await;
    assert_eq!(socket.next_message().await["body"], "after the lock");
    assert_eq!(
        api.register("after_lock", "correct horse battery")
            .await
            .status,
        201
    );
    assert!(server.child_is_running());
    assert_no_panic_in_logs(&server);
    deployment.database.check_integrity().unwrap();
}

/// A TCP relay in front of PostgreSQL that can drop every connection and
/// refuse new ones, as a restarting database does, without touching the
/// shared PostgreSQL server other tests use.
struct FaultyLink {
    addr: SocketAddr,
    state: Arc<Mutex<LinkState>>,
    stop: Arc<AtomicBool>,
}

#[derive(Default)]
struct LinkState {
    down: bool,
    open: Vec<TcpStream>,
}

impl FaultyLink {
    fn to(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(LinkState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (link_state, link_stop) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            while !link_stop.load(Ordering::Relaxed) {
                let client = match listener.accept() {
                    Ok((client, _)) => client,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                let mut state = link_state.lock().unwrap();
                if state.down {
                    continue; // dropped: the client sees the connection close
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                for (from, to) in [(&client, &server), (&server, &client)] {
                    let (mut from, mut to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
                state.open.push(client);
                state.open.push(server);
            }
        });
        Self { addr, state, stop }
    }

    /// Drops every open connection and refuses new ones.
    fn cut(&self) {
        let mut state = self.state.lock().unwrap();
        state.down = true;
        for stream in state.open.drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.state.lock().unwrap().down = false;
    }
}

impl Drop for FaultyLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.cut();
    }
}

/// `postgres://user@host:port/db?x` as its `host:port` and the URL with a
/// hole where `host:port` was: `(host:port, "postgres://user@", "/db?x")`.
fn split_authority(url: &str) -> (String, String, String) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (user, rest) = match rest.split_once('@') {
        Some((user, rest)) => (format!("{user}@"), rest),
        None => (String::new(), rest),
    };
    let (host_port, path) = rest.split_once('/').unwrap();
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    };
    (host_port, format!("{scheme}://{user}"), format!("/{path}"))
}

/// Answers of `GET /api/chats/` until one is 200 or `within` passes.
async fn statuses_until_ok(api: &Api, user: &TestUser, within: Duration) -> Vec<u16> {
    let deadline = Instant::now() + within;
    let mut statuses = Vec::new();
    while Instant::now() < deadline {
        let reply = api.get("/api/chats/", Some(&user.token)).await;
        statuses.push(reply.status);
        if reply.status == 200 {
            break;
        }
        assert!(reply.body["error"].as_str().is_some(), "{reply:?}");
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
    statuses
}

#[actix_web::test]
async fn postgres_dropping_connections_and_going_away_is_survived_without_a_restart() {
    let deployment = Deployment::new();
    if deployment.database.backend() != Backend::Postgres {
        eprintln!("SKIPPED here: PostgreSQL-only (runs in the PostgreSQL suite)");
        return;
    }
    let (upstream, before, after) = split_authority(deployment.database.url());
    let link = FaultyLink::to(upstream);
    let through_link = format!("{before}{}{after}", link.addr);
    let server = deployment.start(&[("DATABASE_URL", &through_link)]);
    let api = Api::new(server.port);
    let chats = set_up_chats(&api, 4).await;
    let stop = Arc::new(AtomicBool::new(false));
    let senders = start_load(&api, &chats, &stop).await;
    actix_web::rt::time::sleep(Duration::from_millis(1000)).await;

    // Fault 1: PostgreSQL terminates every connection of the database, as
    // an administrator (or a restart) does: SQLSTATE 57P01.
    terminate_backends(&deployment.database);
    let statuses = statuses_until_ok(&api, &chats[0].sender, Duration::from_secs(20)).await;
    assert_eq!(statuses.last(), Some(&200), "recovered: {statuses:?}");
    assert!(
        statuses.iter().all(|s| matches!(s, 200 | 503)),
        "{statuses:?}"
    );

    // Fault 2: the database is unreachable for a while.
    link.cut();
    let during = api.get("/api/chats/", Some(&chats[0].sender.token)).await;
    assert_eq!(during.status, 503, "{during:?}");
    assert!(during.body["error"].as_str().is_some());
    actix_web::rt::time::sleep(Duration::from_secs(6)).await;
    link.restore();
    let statuses = statuses_until_ok(&api, &chats[0].sender, Duration::from_secs(30)).await;
    assert_eq!(statuses.last(), Some(&200), "recovered: {statuses:?}");
    actix_web::rt::time::sleep(Duration::from_millis(1000)).await;

    stop.store(true, Ordering::Relaxed);
    let mut sent = Vec::new();
    for sender in senders {
        sent.push(sender.await.unwrap());
    }
    let refused: u64 = sent.iter().map(|s| s.refused).sum();
    assert!(
        refused > 0,
        "senders were told 'try again' during the outage"
    );
    assert!(
        sent.iter()
            .all(|s| s.ended_with.is_none() && !s.acked.is_empty()),
        "every sender kept its socket through the outage and was acknowledged"
    );
    // Senders kept sending after the outage and were acknowledged again.
    for s in &sent {
        assert_eq!(
            s.acked.last(),
            Some(&(s.attempted - 1)),
            "last message acked"
        );
    }
    let (acked, stored) = check_history(&api, &chats, &sent).await;
    deployment.database.check_integrity().unwrap();
    eprintln!(
        "PostgreSQL faults under load: {acked} acknowledged, {refused} refused with 'try again', {stored} stored, 0 lost"
    );
    drop(server);
}

fn terminate_backends(database: &TestDatabase) {
    let admin = std::env::var(chat_persistence::testing::TEST_DATABASE_URL).unwrap();
    let name = database
        .url()
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap();
    let output = std::process::Command::new("psql")
        .arg(&admin)
        .arg("-qAtc")
        .arg(format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{name}'"
        ))
        .output()
        .expect("psql runs");
    assert!(output.status.success(), "{output:?}");
    let terminated = String::from_utf8_lossy(&output.stdout);
    let count: usize = terminated.trim().parse().unwrap_or(0);
    assert!(count > 0, "no connection was terminated");
}
