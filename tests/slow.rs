//! Long tests, run by `make test-slow` (CI runs it too), not by `make test`:
//! each drives the real binary for tens of seconds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chat_persistence::testing::TestDatabase;
use common::process::{rss_kib_of, ServerProcess, TEST_JWT_SECRET};
use common::{Api, Received, TestUser};

const CHATS: usize = 10;
const MESSAGES_PER_CHAT: u64 = 10_000;
/// Messages a sender has in flight before it waits for acknowledgements.
const WINDOW: u64 = 32;
/// Bodies are padded to this many characters: 10,000 of them are far more
/// than the kernel's socket buffers hold, so a client that does not read
/// really falls behind (small messages would all fit in the buffers).
const BODY_CHARS: usize = 1000;

/// Message `seq`'s body: its number, then padding.
fn body(seq: u64) -> String {
    format!("{seq:<width$}", width = BODY_CHARS)
}

fn seq_of(message: &serde_json::Value) -> u64 {
    message["body"]
        .as_str()
        .unwrap()
        .trim_end()
        .parse()
        .unwrap()
}

/// Sends `count` messages numbered 0.. on `socket`, `WINDOW` at a time, and
/// checks each acknowledgement (its own copy) comes back in order.
async fn send_numbered(api: Api, user: TestUser, chat: i64, count: u64) {
    let mut socket = api.connect(&user, chat).await;
    let mut next = 0;
    while next < count {
        let batch_end = (next + WINDOW).min(count);
        for seq in next..batch_end {
            socket.send_body(&body(seq)).await;
        }
        for seq in next..batch_end {
            let message = socket.next_message().await;
            assert_eq!(seq_of(&message), seq, "acknowledged in order");
        }
        next = batch_end;
    }
    socket.close().await;
}

/// Reads `count` messages and checks they are 0.. in order.
async fn receive_numbered(api: Api, user: TestUser, chat: i64, count: u64) {
    let mut socket = api.connect(&user, chat).await;
    for seq in 0..count {
        let message = socket.next_message().await;
        assert_eq!(seq_of(&message), seq, "chat {chat}: in order");
    }
    socket.close().await;
}

#[actix_web::test]
#[ignore = "slow (about a minute): make test-slow"]
async fn a_reader_that_never_reads_is_closed_and_hurts_no_one_while_100k_messages_flow() {
    let data_dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::create().unwrap();
    let server = ServerProcess::start(&[
        ("CHAT_DATA_DIR", data_dir.path().to_str().unwrap()),
        ("DATABASE_URL", database.url()),
        ("CHAT_JWT_SECRET", TEST_JWT_SECRET),
        ("CHAT_WS_RATE", "100000"),
        ("CHAT_WS_BURST", "100000"),
        ("CHAT_WS_QUEUE", "256"),
        ("CHAT_WS_WRITE_TIMEOUT", "2s"),
    ])
    .unwrap();
    let api = Api::new(server.port);
    let mut chats = Vec::new();
    for i in 0..CHATS {
        let sender = api.user(&format!("sender{i}")).await;
        let receiver = api.user(&format!("receiver{i}")).await;
        let chat = api.chat(&sender, &receiver).await;
        chats.push((chat, sender, receiver));
    }
    // The slow participant: chat 0's receiver, on a second socket it never
    // reads from. Its first socket reads normally.
    let (slow_chat, _, slow_user) = chats[0].clone();
    let mut never_reads = api.connect(&slow_user, slow_chat).await;

    // Server memory, sampled every 50 ms while the messages flow.
    let baseline_kib = server.rss_kib();
    let peak_kib = Arc::new(AtomicU64::new(baseline_kib));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (pid, peak, sampling) = (server.pid(), peak_kib.clone(), sampling.clone());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                if let Some(kib) = rss_kib_of(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for (chat, sender, receiver) in &chats {
        tasks.push(actix_web::rt::spawn(receive_numbered(
            api.clone(),
            receiver.clone(),
            *chat,
            MESSAGES_PER_CHAT,
        )));
        tasks.push(actix_web::rt::spawn(send_numbered(
            api.clone(),
            sender.clone(),
            *chat,
            MESSAGES_PER_CHAT,
        )));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let took = started.elapsed();
    sampling.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak_kib = peak_kib.load(Ordering::Relaxed);

    // The socket that never read was closed as too slow (1013) once its
    // queue or a write timed out; what it has is what was queued before.
    let mut buffered = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let closed_with = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the slow socket was never closed ({buffered} frames read)"
        );
        match never_reads
            .receive_until_gone_within(Duration::from_secs(30))
            .await
            .expect("the slow socket ends")
        {
            Received::Json(_) => buffered += 1,
            Received::Close(code) => break code,
        }
    };
    assert!(
        matches!(closed_with, Some(1013 | 1008) | None),
        "closed with {closed_with:?}"
    );
    assert!(
        buffered < MESSAGES_PER_CHAT,
        "it was dropped before the end"
    );

    // Reconnecting, it catches up from history: everything, in order.
    let mut caught_up = api.connect(&slow_user, slow_chat).await;
    let history = caught_up.drain_messages(Duration::from_secs(2)).await;
    let bodies: Vec<u64> = history.iter().map(seq_of).collect();
    assert_eq!(bodies, (0..MESSAGES_PER_CHAT).collect::<Vec<_>>());

    let total = CHATS as u64 * MESSAGES_PER_CHAT;
    let growth_mib = peak_kib.saturating_sub(baseline_kib) / 1024;
    eprintln!(
        "slow reader: {total} messages in {took:.1?} ({:.0}/s); slow socket closed with {closed_with:?} \
         after {buffered} frames; server RSS {} MiB before, {} MiB peak (+{growth_mib} MiB)",
        total as f64 / took.as_secs_f64(),
        baseline_kib / 1024,
        peak_kib / 1024,
    );
    assert!(
        growth_mib < 64,
        "server memory grew by {growth_mib} MiB while one client did not read"
    );
}
