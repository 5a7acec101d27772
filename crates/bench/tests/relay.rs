#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking
//! The benchmark's accounting against in-test WebSocket relays: a correct
//! one must give a clean report, and a deliberately faulty one (drops,
//! duplicates and reorders some deliveries, on a rule the test knows) must
//! be caught with the exact counts it caused.
//!
//! The relay speaks only the chat socket (`/ws/chat/<id>/`, frames
//! `{"body"}` in, `{"message": {...}}` out), so the run is given a ready
//! plan instead of doing its REST setup.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_bench::plan::{ChatPlan, Participant, Plan};
use chat_bench::scenario::{Mode, Scenario};
use chat_bench::tag::Tag;
use chat_bench::target::Target;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;

/// Which copies the relay mishandles, by the message's sequence number
/// modulo 10 (peer copies) or 50 (echoes). Echoes are otherwise always
/// delivered, so a closed loop keeps going.
#[derive(Clone, Copy, Default)]
struct Faults {
    /// Peer copy of seq % 10 == 5: never delivered.
    drop: bool,
    /// Peer copy of seq % 10 == 7: delivered twice.
    duplicate: bool,
    /// Peer copy of seq % 10 == 2: held back and delivered after the next
    /// message's (seq % 10 == 3).
    reorder: bool,
    /// Echo of seq % 50 == 9: never delivered.
    drop_echo: bool,
}

/// What the relay did wrong, counted as it did it.
#[derive(Default)]
struct Counters {
    dropped: AtomicU64,
    duplicated: AtomicU64,
    reordered: AtomicU64,
    echoes_dropped: AtomicU64,
    /// Held copies, by sender token, not (yet) released.
    held: Mutex<HashMap<String, String>>,
}

impl Counters {
    fn held_now(&self) -> u64 {
        self.held.lock().unwrap().len() as u64
    }
}

type Outbox = mpsc::UnboundedSender<String>;
type Rooms = Arc<Mutex<HashMap<i64, Vec<(String, Outbox)>>>>;

async fn spawn_relay(faults: Faults) -> (SocketAddr, Arc<Counters>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counters = Arc::new(Counters::default());
    let rooms: Rooms = Arc::default();
    let next_id = Arc::new(AtomicU64::new(1));
    let relay_counters = counters.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (rooms, counters, next_id) =
                (rooms.clone(), relay_counters.clone(), next_id.clone());
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let uri = Arc::new(Mutex::new(String::new()));
                let seen = uri.clone();
                // The error type is tungstenite's; its size is not ours to change.
                #[allow(clippy::result_large_err)]
                let callback = move |request: &Request, response: Response| {
                    *seen.lock().unwrap() = request.uri().to_string();
                    Ok(response)
                };
                let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                    return;
                };
                let uri = uri.lock().unwrap().clone();
                // /ws/chat/<id>/?token=<token>
                let chat: i64 = uri.split('/').nth(3).unwrap().parse().unwrap();
                let token = uri.split("token=").nth(1).unwrap().to_owned();
                let (mut sink, mut stream) = ws.split();
                let (outbox, mut inbox) = mpsc::unbounded_channel::<String>();
                tokio::spawn(async move {
                    while let Some(text) = inbox.recv().await {
                        if sink.send(Message::text(text)).await.is_err() {
                            return;
                        }
                    }
                });
                rooms
                    .lock()
                    .unwrap()
                    .entry(chat)
                    .or_default()
                    .push((token.clone(), outbox));
                while let Some(Ok(frame)) = stream.next().await {
                    let Message::Text(text) = frame else { continue };
                    let body = serde_json::from_str::<Value>(&text).unwrap()["body"]
                        .as_str()
                        .unwrap()
                        .to_owned();
                    let seq = Tag::parse(&body).unwrap().seq;
                    let message = json!({"message": {
                        "id": next_id.fetch_add(1, Ordering::Relaxed),
                        "sender": token, "body": body,
                        "created": "2025-05-02 10:45:30", "is_read": false,
                    }})
                    .to_string();
                    let rooms = rooms.lock().unwrap();
                    for (member, outbox) in &rooms[&chat] {
                        if *member == token {
                            if faults.drop_echo && seq % 50 == 9 {
                                counters.echoes_dropped.fetch_add(1, Ordering::Relaxed);
                            } else {
                                let _ = outbox.send(message.clone());
                            }
                            continue;
                        }
                        match seq % 10 {
                            5 if faults.drop => {
                                counters.dropped.fetch_add(1, Ordering::Relaxed);
                            }
                            7 if faults.duplicate => {
                                let _ = outbox.send(message.clone());
                                let _ = outbox.send(message.clone());
                                counters.duplicated.fetch_add(1, Ordering::Relaxed);
                            }
                            2 if faults.reorder => {
                                counters
                                    .held
                                    .lock()
                                    .unwrap()
                                    .insert(token.clone(), message.clone());
                            }
                            3 if faults.reorder => {
                                let _ = outbox.send(message.clone());
                                if let Some(held) = counters.held.lock().unwrap().remove(&token) {
                                    let _ = outbox.send(held);
                                    counters.reordered.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            _ => {
                                let _ = outbox.send(message.clone());
                            }
                        }
                    }
                }
            });
        }
    });
    (addr, counters)
}

/// `chats` chats whose participants' tokens name their connection.
fn plan(chats: usize) -> Plan {
    let participant = |conn: usize| Participant {
        user_id: conn as i64 + 1,
        username: format!("u{conn}"),
        token: format!("t{conn}"),
    };
    Plan {
        chats: (0..chats)
            .map(|k| ChatPlan {
                id: 100 + k as i64,
                participants: [participant(2 * k), participant(2 * k + 1)],
            })
            .collect(),
        users: chats * 2,
    }
}

fn scenario(mode: Mode, chats: usize) -> Scenario {
    Scenario {
        mode,
        chats,
        duration: Duration::from_millis(800),
        warmup: Duration::from_millis(200),
        drain: Duration::from_millis(400),
        rate: 300.0,
        ack_timeout: Duration::from_millis(50),
        threads: 2,
        ..Scenario::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_relay_gives_a_clean_closed_loop_report() {
    let (addr, _) = spawn_relay(Faults::default()).await;
    let report = chat_bench::run_plan(&Target::local(addr), &plan(3), &scenario(Mode::Closed, 3))
        .await
        .unwrap();
    eprintln!("{}", report.table());
    let d = report.delivery.unwrap();
    assert!(d.sent > 100, "{}", report.table());
    assert_eq!(d.expected, 2 * d.sent);
    assert_eq!(d.delivered, d.expected, "{}", report.table());
    assert_eq!(d.delivered_to_peer, d.sent);
    assert_eq!((d.lost, d.duplicated, d.out_of_order), (0, 0, 0));
    assert_eq!((d.unexpected, d.foreign, d.error_frames), (0, 0, 0));
    assert_eq!((report.ack_timeouts, report.disconnects), (0, 0));
    let connect = report.connect.clone().unwrap();
    assert_eq!((connect.attempted, connect.failed), (6, 0));
    assert!(report.throughput.unwrap().delivered_per_s > 0.0);
    let latency = report.latency_ms.unwrap();
    assert!(latency.p50 > 0.0 && latency.p50 <= latency.p99 && latency.p99 <= latency.max);
    assert!(report.echo_ms.is_some());
    // A complete drain ends as soon as the last delivery is in.
    assert!(report.drain_s.unwrap() < 0.3, "{}", report.table());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_relay_keeps_up_with_a_rate() {
    let (addr, _) = spawn_relay(Faults::default()).await;
    let report = chat_bench::run_plan(&Target::local(addr), &plan(2), &scenario(Mode::Rate, 2))
        .await
        .unwrap();
    eprintln!("{}", report.table());
    let d = report.delivery.unwrap();
    // 4 connections x 300 msg/s x 1 s (warm-up included), give or take
    // one per schedule (its phase, the period rounded to nanoseconds).
    assert!((1196..=1204).contains(&d.sent), "{}", report.table());
    assert_eq!((d.lost, d.duplicated, d.out_of_order), (0, 0, 0));
    let t = report.throughput.unwrap();
    assert_eq!(t.offered_per_s, Some(1200.0));
    assert!(t.delivered_ratio.unwrap() > 0.9, "{}", report.table());
    assert!(report.send_lag_ms.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drops_duplicates_and_reorderings_are_counted_exactly_in_a_closed_loop() {
    let faults = Faults {
        drop: true,
        duplicate: true,
        reorder: true,
        drop_echo: true,
    };
    let (addr, relay) = spawn_relay(faults).await;
    let report = chat_bench::run_plan(&Target::local(addr), &plan(3), &scenario(Mode::Closed, 3))
        .await
        .unwrap();
    eprintln!("{}", report.table());
    let d = report.delivery.unwrap();
    let dropped = relay.dropped.load(Ordering::Relaxed);
    let echoes_dropped = relay.echoes_dropped.load(Ordering::Relaxed);
    let held = relay.held_now();
    assert!(dropped > 0 && echoes_dropped > 0, "{}", report.table());
    assert_eq!(
        d.lost,
        dropped + echoes_dropped + held,
        "{}",
        report.table()
    );
    assert_eq!(d.duplicated, relay.duplicated.load(Ordering::Relaxed));
    assert!(d.duplicated > 0);
    assert_eq!(d.out_of_order, relay.reordered.load(Ordering::Relaxed));
    assert!(d.out_of_order > 0);
    assert_eq!(d.delivered + d.lost, d.expected);
    assert_eq!(d.unexpected, 0);
    // Each dropped echo stalls its sender until the ack timeout, except
    // one still awaited when sending stopped.
    assert!(report.ack_timeouts <= echoes_dropped && report.ack_timeouts + 6 >= echoes_dropped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drops_duplicates_and_reorderings_are_counted_exactly_at_a_rate() {
    let faults = Faults {
        drop: true,
        duplicate: true,
        reorder: true,
        drop_echo: false,
    };
    let (addr, relay) = spawn_relay(faults).await;
    let report = chat_bench::run_plan(&Target::local(addr), &plan(2), &scenario(Mode::Rate, 2))
        .await
        .unwrap();
    eprintln!("{}", report.table());
    let d = report.delivery.unwrap();
    // Each connection sends ~300 messages: 30 of each fault per sender.
    let dropped = relay.dropped.load(Ordering::Relaxed);
    assert!(dropped >= 4 * 29, "{}", report.table());
    assert_eq!(d.lost, dropped + relay.held_now(), "{}", report.table());
    assert_eq!(d.duplicated, relay.duplicated.load(Ordering::Relaxed));
    assert_eq!(d.out_of_order, relay.reordered.load(Ordering::Relaxed));
    assert!(d.duplicated >= 4 * 29 && d.out_of_order >= 4 * 29);
    assert_eq!(d.delivered_to_peer + dropped + relay.held_now(), d.sent);
}
