#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking
//! The benchmark against the real server, in-process, with a fresh
//! database each (SQLite, or PostgreSQL when built with `postgres` and
//! `TEST_DATABASE_URL` is set): tiny scenarios of every mode must run
//! through the public API and account for every message. Not a timing test.
//! The v2 modes need a server that speaks protocol v2 (`/ws/v2/`).

use std::net::SocketAddr;
use std::time::Duration;

use chat_bench::scenario::{Mode, Scenario};
use chat_bench::target::Target;
use chat_persistence::testing::TestDatabase;
use chat_server::configuration::Settings;
use chat_server::startup::{Application, Stopper};
use clap::Parser as _;

/// The server on its own thread: actix runs its own single-threaded
/// runtime, the test drives it from a tokio one.
struct TestServer {
    addr: SocketAddr,
    stopper: Stopper,
    thread: Option<std::thread::JoinHandle<()>>,
    _data_dir: tempfile::TempDir,
    _database: TestDatabase,
}

impl TestServer {
    fn start() -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let database = TestDatabase::create().expect("test database");
        let settings = Settings::try_parse_from([
            "chat-server",
            "--addr",
            "127.0.0.1:0",
            // Tests run side by side: no fixed metrics port.
            "--metrics-addr",
            "off",
            "--data-dir",
            &data_dir.path().to_string_lossy(),
            "--database-url",
            database.url(),
            "--jwt-secret",
            "test secret that is at least 32 bytes long",
            "--workers",
            "1",
            "--db-pool-size",
            "4",
            // A closed loop sends far faster than the per-connection limit
            // a person needs (as `make bench` does, lift it).
            "--ws-rate",
            "1000000",
            "--ws-burst",
            "1000000",
        ])
        .expect("settings");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                match Application::build(&settings) {
                    Ok(app) => {
                        let _ = ready_tx.send(Ok((app.port(), app.stopper())));
                        let _ = app.run().await;
                    }
                    Err(error) => {
                        let _ = ready_tx.send(Err(error.to_string()));
                    }
                }
            });
        });
        let (port, stopper) = ready_rx
            .recv()
            .expect("server thread reports")
            .expect("server builds");
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            stopper,
            thread: Some(thread),
            _data_dir: data_dir,
            _database: database,
        }
    }

    async fn stop(mut self) {
        tokio::time::timeout(Duration::from_secs(15), self.stopper.stop())
            .await
            .expect("server stops");
        if let Some(thread) = self.thread.take() {
            tokio::task::spawn_blocking(move || thread.join())
                .await
                .expect("join")
                .expect("server thread ends cleanly");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_closed_loop_against_the_real_server_loses_nothing() {
    let server = TestServer::start();
    let scenario = Scenario {
        mode: Mode::Closed,
        chats: 4,
        duration: Duration::from_secs(1),
        warmup: Duration::from_millis(200),
        drain: Duration::from_secs(5),
        server_pid: Some(std::process::id()),
        ..Scenario::default()
    };
    let report = chat_bench::execute(&Target::local(server.addr), &scenario)
        .await
        .expect("the run completes");
    eprintln!("{}", report.table());
    let table = report.table();
    let d = report.delivery.expect("delivery figures");
    assert!(d.delivered > 0, "{table}");
    assert_eq!(d.delivered, d.expected, "{table}");
    assert_eq!((d.lost, d.duplicated, d.out_of_order), (0, 0, 0), "{table}");
    assert_eq!(
        (d.unexpected, d.foreign, d.error_frames),
        (0, 0, 0),
        "{table}"
    );
    assert_eq!(report.disconnects, 0, "{table}");
    assert_eq!(report.connect.expect("connect figures").failed, 0);
    assert!(report.throughput.expect("rates").delivered_per_s > 0.0);
    assert!(report.latency_ms.is_some(), "{table}");
    // Sampling "the server" (this process) works.
    assert!(report.server.expect("server figures").rss_peak_mb > 0.0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_history_replays_in_full() {
    let server = TestServer::start();
    let scenario = Scenario {
        mode: Mode::History,
        chats: 3,
        history: Some(30),
        ..Scenario::default()
    };
    let report = chat_bench::execute(&Target::local(server.addr), &scenario)
        .await
        .expect("the run completes");
    eprintln!("{}", report.table());
    let table = report.table();
    let d = report.delivery.expect("delivery figures");
    assert_eq!(d.sent, 90, "{table}");
    assert_eq!(d.expected, 180, "{table}");
    assert_eq!((d.lost, d.duplicated, d.out_of_order), (0, 0, 0), "{table}");
    let h = report.history.expect("history figures");
    assert_eq!((h.complete, h.incomplete), (3, 0), "{table}");
    assert_eq!(h.replay_ms.expect("replay times").count, 3);
    server.stop().await;
}

/// Both participants reconnect at once: six sockets, each owed the whole
/// history once, its own messages included (the filler's echoes during
/// the fill are forgotten, so the replay is what is checked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_replay_both_every_socket_of_a_chat_replays_its_whole_history() {
    let server = TestServer::start();
    let scenario = Scenario {
        mode: Mode::History,
        chats: 3,
        history: Some(30),
        replay_both: true,
        ..Scenario::default()
    };
    let report = chat_bench::execute(&Target::local(server.addr), &scenario)
        .await
        .expect("the run completes");
    let table = report.table();
    let d = report.delivery.expect("delivery figures");
    assert_eq!(d.sent, 90, "{table}");
    assert_eq!((d.expected, d.delivered), (180, 180), "{table}");
    assert_eq!((d.lost, d.duplicated, d.out_of_order), (0, 0, 0), "{table}");
    assert_eq!(d.unexpected, 0, "{table}");
    let h = report.history.expect("history figures");
    assert_eq!((h.complete, h.incomplete), (6, 0), "{table}");
    assert_eq!(h.replay_ms.expect("replay times").count, 6);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_list_is_timed_for_a_user_with_many_chats() {
    let server = TestServer::start();
    let scenario = Scenario {
        mode: Mode::ChatList,
        chats: 3,
        requests: 5,
        ..Scenario::default()
    };
    let report = chat_bench::execute(&Target::local(server.addr), &scenario)
        .await
        .expect("the run completes");
    eprintln!("{}", report.table());
    let list = report.chat_list.clone().expect("chat-list figures");
    assert_eq!((list.chats, list.errors), (3, 0), "{}", report.table());
    assert_eq!(list.latency_ms.expect("latencies").count, 5);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_v2_closed_loop_against_the_real_server_loses_nothing() {
    let server = TestServer::start();
    let scenario = Scenario {
        mode: Mode::V2Closed,
        chats: 3,
        duration: Duration::from_secs(1),
        warmup: Duration::from_millis(200),
        drain: Duration::from_secs(5),
        ..Scenario::default()
    };
    let report = chat_bench::execute(&Target::local(server.addr), &scenario)
        .await
        .expect("the run completes");
    let table = report.table();
    eprintln!("{table}");
    let d = report.delivery.expect("delivery figures");
    assert!(d.delivered > 0, "{table}");
    assert_eq!(d.delivered, d.expected, "{table}");
    assert_eq!((d.lost, d.duplicated, d.out_of_order), (0, 0, 0), "{table}");
    assert_eq!(
        (d.unexpected, d.foreign, d.error_frames),
        (0, 0, 0),
        "{table}"
    );
    assert_eq!(
        (d.seq_disorder, d.bad_acks, d.bad_client_ids),
        (0, 0, 0),
        "{table}"
    );
    assert_eq!((report.disconnects, report.ack_timeouts), (0, 0), "{table}");
    assert_eq!(
        report.connect.expect("connect figures").failed,
        0,
        "{table}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_v2_rate_with_typing_delivers_everything_and_the_typing() {
    let server = TestServer::start();
    let scenario = Scenario {
        mode: Mode::V2Rate,
        chats: 2,
        rate: 20.0,
        typing_interval: Some(Duration::from_millis(300)),
        duration: Duration::from_secs(1),
        warmup: Duration::from_millis(200),
        drain: Duration::from_secs(5),
        ..Scenario::default()
    };
    let report = chat_bench::execute(&Target::local(server.addr), &scenario)
        .await
        .expect("the run completes");
    let table = report.table();
    eprintln!("{table}");
    let d = report.delivery.expect("delivery figures");
    assert_eq!(d.delivered, d.expected, "{table}");
    assert_eq!(
        (d.lost, d.duplicated, d.seq_disorder, d.foreign),
        (0, 0, 0, 0),
        "{table}"
    );
    let typing = report.typing.expect("typing figures");
    assert!(typing.sent > 0 && typing.received > 0, "{table}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_v2_reconnect_catches_up_with_exactly_the_missed_messages() {
    let server = TestServer::start();
    let scenario = Scenario {
        mode: Mode::V2Reconnect,
        chats: 3,
        history: Some(250),
        missed: 10,
        ..Scenario::default()
    };
    let report = chat_bench::execute(&Target::local(server.addr), &scenario)
        .await
        .expect("the run completes");
    let table = report.table();
    eprintln!("{table}");
    let d = report.delivery.expect("delivery figures");
    assert_eq!((d.sent, d.expected, d.delivered), (30, 60, 60), "{table}");
    assert_eq!(
        (d.lost, d.duplicated, d.out_of_order, d.foreign),
        (0, 0, 0, 0),
        "{table}"
    );
    let c = report.catchup.expect("catch-up figures");
    assert_eq!((c.complete, c.incomplete), (6, 0), "{table}");
    // 10 messages each, not the 260 of the chat.
    assert_eq!((c.messages_min, c.messages_max), (10, 10), "{table}");
    assert_eq!(
        (c.stale, c.seq_gaps, c.head_mismatches),
        (0, 0, 0),
        "{table}"
    );
    assert_eq!((c.post_errors, c.repost_errors), (0, 0), "{table}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_pages_of_a_chat_are_exact() {
    let server = TestServer::start();
    let scenario = Scenario {
        mode: Mode::V2Paging,
        chats: 1,
        history: Some(600),
        requests: 20,
        ..Scenario::default()
    };
    let report = chat_bench::execute(&Target::local(server.addr), &scenario)
        .await
        .expect("the run completes");
    let table = report.table();
    eprintln!("{table}");
    let p = report.paging.expect("paging figures");
    assert_eq!((p.messages, p.errors), (600, 0), "{table}");
    assert_eq!(p.latency_ms.expect("latencies").count, 20);
    server.stop().await;
}

/// The same tiny closed loop against the relay (`chat-relay`, the
/// benchmark's reference), in-process: the bench's own accounting must
/// find it exact, or its figures could not be the reference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_closed_loop_against_the_relay_loses_nothing() {
    let listener = chat_bench::relay::bind("127.0.0.1:0".parse().unwrap()).expect("bind");
    let addr = listener.local_addr().expect("address");
    let relay = tokio::spawn(chat_bench::relay::run(
        listener,
        std::sync::Arc::new(chat_bench::relay::Relay::default()),
    ));
    let scenario = Scenario {
        mode: Mode::Closed,
        chats: 4,
        duration: Duration::from_secs(1),
        warmup: Duration::from_millis(200),
        drain: Duration::from_secs(5),
        ..Scenario::default()
    };
    let report = chat_bench::execute(&Target::local(addr), &scenario)
        .await
        .expect("the run completes");
    let table = report.table();
    eprintln!("{table}");
    let d = report.delivery.expect("delivery figures");
    assert!(d.delivered > 0, "{table}");
    assert_eq!(d.delivered, d.expected, "{table}");
    assert_eq!((d.lost, d.duplicated, d.out_of_order), (0, 0, 0), "{table}");
    assert_eq!(
        (d.unexpected, d.foreign, d.error_frames),
        (0, 0, 0),
        "{table}"
    );
    assert_eq!((report.disconnects, report.ack_timeouts), (0, 0), "{table}");
    assert_eq!(report.connect.expect("connect figures").failed, 0);
    relay.abort();
}
