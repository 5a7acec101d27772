#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking
//! The v2 modes against an in-test protocol-v2 server: a correct one must
//! give a clean report, and one that drops, duplicates or reorders (live
//! copies, acks, history pages, REST pages) on a rule the test knows must be
//! caught with the exact counts it caused.
//!
//! The fake speaks just enough of protocol v2 for the benchmark: the socket
//! (`/ws/v2/?token=`: `hello`, `send` -> `ack` + `message`, `typing`,
//! `history`, `ping`) and the two message routes
//! (`POST`/`GET /api/chats/<id>/messages/`), on one port. Users and chats
//! come from a ready plan, as in `relay.rs`: token `t<n>` is user `n + 1`.

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
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;

/// What the fake gets wrong, by the tag's per-sender sequence number
/// (live copies and acks) or by the chat's `seq` (pages).
#[derive(Clone, Copy, Default)]
struct Faults {
    /// Peer copy of seq % 10 == 5: never delivered.
    drop: bool,
    /// Peer copy of seq % 10 == 7: delivered twice.
    duplicate: bool,
    /// Peer copy of seq % 10 == 2: held back until after seq % 10 == 3's.
    reorder: bool,
    /// Ack of seq % 50 == 9: never delivered.
    drop_ack: bool,
    /// Ack of seq % 50 == 19: says `duplicate: true`.
    false_duplicate_ack: bool,
    /// History pages leave out chat seqs % 10 == 3.
    history_skip: bool,
    /// History pages end with their last message twice.
    history_repeat: bool,
    /// `history after=N` starts at N (a message the client holds).
    history_stale: bool,
    /// `GET ...?before=N` returns the page ending at N instead of N - 1.
    page_shift: bool,
}

#[derive(Default)]
struct Counters {
    dropped: AtomicU64,
    duplicated: AtomicU64,
    reordered: AtomicU64,
    acks_dropped: AtomicU64,
    false_duplicates: AtomicU64,
    typing_forwarded: AtomicU64,
    history_repeats: AtomicU64,
    /// Held peer copies, by sender, not (yet) released.
    held: Mutex<HashMap<i64, String>>,
}

struct Stored {
    id: i64,
    sender: i64,
    body: String,
    client_id: Option<String>,
}

struct ChatState {
    users: [i64; 2],
    messages: Vec<Stored>,
}

type Outbox = mpsc::UnboundedSender<String>;

struct Fake {
    faults: Faults,
    counters: Counters,
    chats: Mutex<HashMap<i64, ChatState>>,
    /// Open sockets: (socket id, user id, outbox).
    sockets: Mutex<Vec<(u64, i64, Outbox)>>,
    /// Held from storing a message until every copy and the ack are
    /// queued, so that each socket gets a chat's messages in `seq` order.
    order: Mutex<()>,
    next_socket: AtomicU64,
    next_id: AtomicU64,
}

fn message_json(chat_id: i64, seq: usize, m: &Stored) -> Value {
    json!({"id": m.id, "chat_id": chat_id, "seq": seq, "sender_id": m.sender,
        "sender": format!("u{}", m.sender), "body": m.body,
        "created": "2026-12-01T10:45:30.123Z", "client_id": m.client_id})
}

/// What storing a message did.
enum Stored_ {
    New { message: Value, users: [i64; 2] },
    Repeat(Value),
    Refused(&'static str),
}

impl Fake {
    fn new(plan: &Plan, faults: Faults) -> Arc<Self> {
        let chats = plan
            .chats
            .iter()
            .map(|c| {
                let users = [c.participants[0].user_id, c.participants[1].user_id];
                (
                    c.id,
                    ChatState {
                        users,
                        messages: Vec::new(),
                    },
                )
            })
            .collect();
        Arc::new(Self {
            faults,
            counters: Counters::default(),
            chats: Mutex::new(chats),
            sockets: Mutex::default(),
            order: Mutex::default(),
            next_socket: AtomicU64::new(1),
            next_id: AtomicU64::new(1),
        })
    }

    fn user_of(token: &str) -> Option<i64> {
        token.strip_prefix('t')?.parse::<i64>().ok().map(|n| n + 1)
    }

    /// Stores a message once per (chat, sender, client_id).
    fn store(&self, chat_id: i64, sender: i64, body: &str, client_id: Option<&str>) -> Stored_ {
        let mut chats = self.chats.lock().unwrap();
        let Some(chat) = chats.get_mut(&chat_id) else {
            return Stored_::Refused("unknown_chat");
        };
        if !chat.users.contains(&sender) {
            return Stored_::Refused("not_participant");
        }
        if let Some(cid) = client_id {
            if let Some((i, m)) = chat
                .messages
                .iter()
                .enumerate()
                .find(|(_, m)| m.sender == sender && m.client_id.as_deref() == Some(cid))
            {
                return if m.body == body {
                    Stored_::Repeat(message_json(chat_id, i + 1, m))
                } else {
                    Stored_::Refused("conflict")
                };
            }
        }
        chat.messages.push(Stored {
            id: self.next_id.fetch_add(1, Ordering::Relaxed) as i64,
            sender,
            body: body.to_owned(),
            client_id: client_id.map(str::to_owned),
        });
        let seq = chat.messages.len();
        let message = message_json(chat_id, seq, &chat.messages[seq - 1]);
        Stored_::New {
            message,
            users: chat.users,
        }
    }

    /// A page: (messages, has_more_before, has_more_after, head).
    fn page(
        &self,
        chat_id: i64,
        before: Option<u64>,
        after: Option<u64>,
        limit: usize,
    ) -> Option<(Vec<Value>, bool, bool, u64)> {
        let chats = self.chats.lock().unwrap();
        let chat = chats.get(&chat_id)?;
        let head = chat.messages.len() as u64;
        let limit = limit as u64;
        let (first, last) = match (before, after) {
            (_, Some(after)) => {
                let first = if self.faults.history_stale {
                    after.max(1)
                } else {
                    after + 1
                };
                (first, (after + limit).min(head))
            }
            (Some(before), None) => {
                let before = if self.faults.page_shift {
                    before + 1
                } else {
                    before
                };
                (before.saturating_sub(limit).max(1), (before - 1).min(head))
            }
            (None, None) => (head.saturating_sub(limit) + 1, head),
        };
        let mut messages: Vec<Value> = (first..=last)
            .filter(|seq| !(self.faults.history_skip && after.is_some() && seq % 10 == 3))
            .map(|seq| message_json(chat_id, seq as usize, &chat.messages[seq as usize - 1]))
            .collect();
        if self.faults.history_repeat && after.is_some() {
            if let Some(last) = messages.last().cloned() {
                messages.push(last);
                self.counters
                    .history_repeats
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        Some((messages, first > 1, last < head, head))
    }

    fn outboxes(&self, users: [i64; 2], except: u64) -> Vec<(i64, Outbox)> {
        self.sockets
            .lock()
            .unwrap()
            .iter()
            .filter(|(id, user, _)| *id != except && users.contains(user))
            .map(|(_, user, outbox)| (*user, outbox.clone()))
            .collect()
    }

    /// Delivers a new message to every socket of its chat but `except`,
    /// with the live faults applied to the copies of socket sends.
    fn broadcast(&self, message: &Value, users: [i64; 2], except: u64, faulty: bool) {
        let frame = json!({"type": "message", "message": message}).to_string();
        let seq = tag_seq(message);
        let sender = message["sender_id"].as_i64().unwrap();
        for (_, outbox) in self.outboxes(users, except) {
            if !faulty {
                let _ = outbox.send(frame.clone());
                continue;
            }
            let c = &self.counters;
            match seq % 10 {
                5 if self.faults.drop => {
                    c.dropped.fetch_add(1, Ordering::Relaxed);
                }
                7 if self.faults.duplicate => {
                    let _ = outbox.send(frame.clone());
                    let _ = outbox.send(frame.clone());
                    c.duplicated.fetch_add(1, Ordering::Relaxed);
                }
                2 if self.faults.reorder => {
                    c.held.lock().unwrap().insert(sender, frame.clone());
                }
                3 if self.faults.reorder => {
                    let _ = outbox.send(frame.clone());
                    if let Some(held) = c.held.lock().unwrap().remove(&sender) {
                        let _ = outbox.send(held);
                        c.reordered.fetch_add(1, Ordering::Relaxed);
                    }
                }
                _ => {
                    let _ = outbox.send(frame.clone());
                }
            }
        }
    }

    /// One client frame on socket `socket` of `user`, answered on `outbox`.
    fn on_frame(&self, socket: u64, user: i64, text: &str, outbox: &Outbox) {
        let _ordered = self.order.lock().unwrap();
        if let Some(answer) = self.answer(socket, user, text) {
            let _ = outbox.send(answer);
        }
    }

    fn answer(&self, socket: u64, user: i64, text: &str) -> Option<String> {
        let frame: Value = serde_json::from_str(text).ok()?;
        let chat_id = frame["chat_id"].as_i64().unwrap_or(0);
        match frame["type"].as_str()? {
            "send" => {
                let (body, cid) = (frame["body"].as_str()?, frame["client_id"].as_str()?);
                match self.store(chat_id, user, body, Some(cid)) {
                    Stored_::New { message, users, .. } => {
                        self.broadcast(&message, users, socket, true);
                        let seq = tag_seq(&message);
                        let mut duplicate = false;
                        if self.faults.drop_ack && seq % 50 == 9 {
                            self.counters.acks_dropped.fetch_add(1, Ordering::Relaxed);
                            return None;
                        }
                        if self.faults.false_duplicate_ack && seq % 50 == 19 {
                            self.counters.false_duplicates.fetch_add(1, Ordering::Relaxed);
                            duplicate = true;
                        }
                        Some(json!({"type": "ack", "client_id": cid, "duplicate": duplicate,
                            "message": message}).to_string())
                    }
                    Stored_::Repeat(message) => Some(
                        json!({"type": "ack", "client_id": cid, "duplicate": true, "message": message})
                            .to_string(),
                    ),
                    Stored_::Refused(code) => Some(
                        json!({"type": "error", "code": code, "message": "no", "client_id": cid})
                            .to_string(),
                    ),
                }
            }
            "typing" => {
                let users = self.chats.lock().unwrap().get(&chat_id)?.users;
                let event = json!({"type": "typing", "chat_id": chat_id, "user_id": user,
                    "active": frame["active"]})
                .to_string();
                for (other, outbox) in self.outboxes(users, socket) {
                    if other != user {
                        let _ = outbox.send(event.clone());
                        self.counters
                            .typing_forwarded
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
                None
            }
            "history" => {
                let limit = frame["limit"].as_u64().unwrap_or(50) as usize;
                let (before, after) = (frame["before"].as_u64(), frame["after"].as_u64());
                let (messages, has_before, has_after, _) =
                    self.page(chat_id, before, after, limit)?;
                let has_more = if after.is_some() {
                    has_after
                } else {
                    has_before
                };
                Some(
                    json!({"type": "history", "ref": frame["ref"], "chat_id": chat_id,
                    "messages": messages, "has_more": has_more})
                    .to_string(),
                )
            }
            "ping" => Some(json!({"type": "pong", "ref": frame["ref"]}).to_string()),
            _ => Some(json!({"type": "error", "code": "bad_frame", "message": "?"}).to_string()),
        }
    }

    fn hello(&self, user: i64) -> String {
        let chats: Vec<Value> = self
            .chats
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, c)| c.users.contains(&user))
            .map(|(id, c)| {
                json!({"id": id, "head_seq": c.messages.len(), "last_message": null,
                    "read_up_to": 0, "other_read_up_to": 0, "delivered_up_to": 0,
                    "other_delivered_up_to": 0, "unread_count": 0, "created": "x",
                    "other_user": {"id": c.users[0] + c.users[1] - user, "username": "o",
                        "online": true, "last_seen": null}})
            })
            .collect();
        json!({"type": "hello", "user": {"id": user, "username": format!("u{user}")},
            "chats": chats, "heartbeat_ms": 30000,
            "limits": {"max_message_chars": 4000, "max_frame_bytes": 65536}})
        .to_string()
    }

    /// A REST request: (status, JSON body).
    fn rest(&self, method: &str, target: &str, token: Option<&str>, body: &str) -> (u16, Value) {
        let Some(user) = token.and_then(Self::user_of) else {
            return (401, json!({"error": "no token"}));
        };
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        // /api/chats/<id>/messages/
        let parts: Vec<&str> = path.split('/').collect();
        let (Some(chat_id), Some("messages")) = (
            parts.get(3).and_then(|p| p.parse::<i64>().ok()),
            parts.get(4).copied(),
        ) else {
            return (404, json!({"error": "not found"}));
        };
        match method {
            "POST" => {
                let _ordered = self.order.lock().unwrap();
                let body: Value = serde_json::from_str(body).unwrap_or(Value::Null);
                let (Some(text), Some(cid)) = (body["body"].as_str(), body["client_id"].as_str())
                else {
                    return (400, json!({"error": "body and client_id"}));
                };
                match self.store(chat_id, user, text, Some(cid)) {
                    Stored_::New { message, users, .. } => {
                        self.broadcast(&message, users, 0, false);
                        (201, message)
                    }
                    Stored_::Repeat(message) => (200, message),
                    Stored_::Refused(code) => (409, json!({"error": code})),
                }
            }
            "GET" => {
                let param = |name: &str| {
                    query
                        .split('&')
                        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                        .and_then(|v| v.parse::<u64>().ok())
                };
                let limit = param("limit").unwrap_or(50) as usize;
                match self.page(chat_id, param("before"), param("after"), limit) {
                    Some((messages, has_more_before, has_more_after, head_seq)) => (
                        200,
                        json!({"messages": messages, "has_more_before": has_more_before,
                            "has_more_after": has_more_after, "head_seq": head_seq}),
                    ),
                    None => (404, json!({"error": "no chat"})),
                }
            }
            _ => (405, json!({"error": "method"})),
        }
    }
}

/// The message's tag's per-sender sequence number (every body here is one).
fn tag_seq(message: &Value) -> u64 {
    Tag::parse(message["body"].as_str().unwrap()).unwrap().seq
}

async fn spawn_fake(plan: &Plan, faults: Faults) -> (SocketAddr, Arc<Fake>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let fake = Fake::new(plan, faults);
    let server = fake.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, server.clone()));
        }
    });
    (addr, fake)
}

/// Tells a WebSocket upgrade from a REST request by peeking at the head.
async fn serve(stream: TcpStream, fake: Arc<Fake>) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 8192];
    let head = loop {
        let Ok(n) = stream.peek(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        let text = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
        if text.contains("\r\n\r\n") || n == buf.len() {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    if head.contains("upgrade: websocket") {
        socket(stream, fake).await;
    } else {
        rest(stream, fake).await;
    }
}

async fn socket(stream: TcpStream, fake: Arc<Fake>) {
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
    assert!(uri.starts_with("/ws/v2/?token="), "{uri}");
    let user = Fake::user_of(uri.split("token=").nth(1).unwrap()).unwrap();
    let (mut sink, mut stream) = ws.split();
    let (outbox, mut inbox) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Some(text) = inbox.recv().await {
            if sink.send(Message::text(text)).await.is_err() {
                return;
            }
        }
    });
    // Join the fan-out first, then the snapshot (as the protocol says).
    let id = fake.next_socket.fetch_add(1, Ordering::Relaxed);
    fake.sockets
        .lock()
        .unwrap()
        .push((id, user, outbox.clone()));
    let _ = outbox.send(fake.hello(user));
    while let Some(Ok(frame)) = stream.next().await {
        let Message::Text(text) = frame else { continue };
        fake.on_frame(id, user, &text, &outbox);
    }
    fake.sockets
        .lock()
        .unwrap()
        .retain(|(sid, _, _)| *sid != id);
}

/// HTTP/1.1 with keep-alive, just enough for ureq.
async fn rest(stream: TcpStream, fake: Arc<Fake>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let (method, target) = (
            parts.next().unwrap_or("").to_owned(),
            parts.next().unwrap_or("").to_owned(),
        );
        let (mut length, mut token) = (0usize, None);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "authorization" => {
                    token = value.trim().strip_prefix("Bearer ").map(str::to_owned);
                }
                _ => {}
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        let (status, reply) = fake.rest(
            &method,
            &target,
            token.as_deref(),
            &String::from_utf8_lossy(&body),
        );
        let reply = reply.to_string();
        let response = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{reply}",
            reply.len()
        );
        if write.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// `chats` chats, a user per participant; token `t<n>` is user `n + 1`.
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

async fn run(
    fake_plan: &Plan,
    faults: Faults,
    scenario: &Scenario,
) -> (chat_bench::report::Report, Arc<Fake>) {
    let (addr, fake) = spawn_fake(fake_plan, faults).await;
    let report = chat_bench::run_plan(&Target::local(addr), fake_plan, scenario)
        .await
        .unwrap();
    eprintln!("{}", report.table());
    (report, fake)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_v2_server_gives_a_clean_closed_loop_report() {
    let (report, _) = run(&plan(3), Faults::default(), &scenario(Mode::V2Closed, 3)).await;
    let table = report.table();
    let d = report.delivery.unwrap();
    assert!(d.sent > 100, "{table}");
    assert_eq!(d.expected, 2 * d.sent);
    assert_eq!(d.delivered, d.expected, "{table}");
    assert_eq!(d.delivered_to_peer, d.sent);
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
    assert_eq!((report.ack_timeouts, report.disconnects), (0, 0), "{table}");
    let connect = report.connect.clone().unwrap();
    assert_eq!((connect.attempted, connect.failed), (6, 0));
    assert!(report.throughput.unwrap().delivered_per_s > 0.0);
    assert!(report.latency_ms.is_some() && report.echo_ms.is_some());
    assert!(report.drain_s.unwrap() < 0.3, "{table}");
    assert!(table.contains("v2 closed loop"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_of_a_v2_server_are_counted_exactly_in_a_closed_loop() {
    let faults = Faults {
        drop: true,
        duplicate: true,
        reorder: true,
        drop_ack: true,
        false_duplicate_ack: true,
        ..Faults::default()
    };
    let (report, fake) = run(&plan(3), faults, &scenario(Mode::V2Closed, 3)).await;
    let table = report.table();
    let d = report.delivery.unwrap();
    let c = &fake.counters;
    let dropped = c.dropped.load(Ordering::Relaxed);
    let acks_dropped = c.acks_dropped.load(Ordering::Relaxed);
    let held = c.held.lock().unwrap().len() as u64;
    assert!(dropped > 0 && acks_dropped > 0, "{table}");
    assert_eq!(d.lost, dropped + acks_dropped + held, "{table}");
    assert_eq!(d.duplicated, c.duplicated.load(Ordering::Relaxed));
    assert!(d.duplicated > 0);
    let reordered = c.reordered.load(Ordering::Relaxed);
    assert!(reordered > 0);
    assert_eq!(d.out_of_order, reordered, "{table}");
    // The same reordering breaks the chat's seq order at the receiver.
    assert_eq!(d.seq_disorder, reordered, "{table}");
    let false_duplicates = c.false_duplicates.load(Ordering::Relaxed);
    assert!(false_duplicates > 0);
    assert_eq!(d.bad_acks, false_duplicates, "{table}");
    assert_eq!(d.delivered + d.lost, d.expected);
    assert_eq!(d.unexpected, 0);
    assert!(report.ack_timeouts <= acks_dropped && report.ack_timeouts + 6 >= acks_dropped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_rate_with_typing_keeps_up_and_counts_the_typing() {
    let scenario = Scenario {
        typing_interval: Some(Duration::from_millis(100)),
        ..scenario(Mode::V2Rate, 2)
    };
    let (report, fake) = run(&plan(2), Faults::default(), &scenario).await;
    let table = report.table();
    let d = report.delivery.unwrap();
    assert!((1196..=1204).contains(&d.sent), "{table}");
    assert_eq!(
        (d.lost, d.duplicated, d.out_of_order, d.seq_disorder),
        (0, 0, 0, 0),
        "{table}"
    );
    assert_eq!(d.foreign, 0, "{table}");
    let t = report.typing.unwrap();
    // 4 sockets, every 100 ms for 1 s.
    assert!((36..=44).contains(&t.sent), "{table}");
    assert_eq!(
        t.received,
        fake.counters.typing_forwarded.load(Ordering::Relaxed)
    );
    assert_eq!(t.received, t.sent, "{table}");
    assert_eq!(d.events, t.received);
    assert_eq!(report.throughput.unwrap().offered_per_s, Some(1200.0));
    assert!(table.contains("typing every 0.100 s"), "{table}");
}

fn reconnect(chats: usize, history: usize, missed: usize) -> Scenario {
    Scenario {
        history: Some(history),
        missed,
        ..scenario(Mode::V2Reconnect, chats)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_v2_server_catches_every_socket_up_with_exactly_what_it_missed() {
    let (report, _) = run(&plan(3), Faults::default(), &reconnect(3, 30, 20)).await;
    let table = report.table();
    let d = report.delivery.unwrap();
    // 20 per chat over REST; each of the two sockets is owed all 20.
    assert_eq!((d.sent, d.expected, d.delivered), (60, 120, 120), "{table}");
    assert_eq!(
        (d.lost, d.duplicated, d.out_of_order, d.unexpected),
        (0, 0, 0, 0),
        "{table}"
    );
    // The history fill is not counted (and never sent again).
    assert_eq!(d.foreign, 0, "{table}");
    let c = report.catchup.unwrap();
    assert_eq!((c.complete, c.incomplete, c.sockets), (6, 0, 6), "{table}");
    assert_eq!(
        (c.messages, c.messages_min, c.messages_max),
        (120, 20, 20),
        "{table}"
    );
    // hello + one page each.
    assert_eq!((c.frames_max, c.history_requests), (2, 6), "{table}");
    assert_eq!(
        (c.stale, c.seq_gaps, c.head_mismatches),
        (0, 0, 0),
        "{table}"
    );
    assert_eq!((c.post_errors, c.repost_errors), (0, 0), "{table}");
    assert!(c.catchup_s > 0.0 && c.catchup_ms.unwrap().count == 6);
    assert_eq!(report.connect.unwrap().failed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catching_up_pages_through_more_than_one_page() {
    let scenario = Scenario {
        page_limit: Some(7),
        ..reconnect(2, 0, 30)
    };
    let (report, _) = run(&plan(2), Faults::default(), &scenario).await;
    let table = report.table();
    let d = report.delivery.unwrap();
    assert_eq!((d.lost, d.duplicated, d.out_of_order), (0, 0, 0), "{table}");
    let c = report.catchup.unwrap();
    // 30 missed in pages of 7: 5 requests per socket.
    assert_eq!(
        (c.incomplete, c.messages_max, c.history_requests),
        (0, 30, 20),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_that_skip_repeat_or_overlap_are_caught() {
    // Skipped seqs (33 and 43 of 31..=50) stop each socket at 32.
    let skip = Faults {
        history_skip: true,
        ..Faults::default()
    };
    let (report, _) = run(&plan(3), skip, &reconnect(3, 30, 20)).await;
    let table = report.table();
    let c = report.catchup.clone().unwrap();
    assert_eq!(
        (c.complete, c.incomplete, c.seq_gaps),
        (0, 6, 12),
        "{table}"
    );
    assert_eq!(report.delivery.unwrap().lost, 12, "{table}");
    // Given up at once, not after the idle limit.
    assert!(c.catchup_s < 5.0, "{table}");

    let repeat = Faults {
        history_repeat: true,
        ..Faults::default()
    };
    let (report, fake) = run(&plan(3), repeat, &reconnect(3, 30, 20)).await;
    let table = report.table();
    let d = report.delivery.unwrap();
    let repeats = fake.counters.history_repeats.load(Ordering::Relaxed);
    assert_eq!(repeats, 6);
    assert_eq!((d.lost, d.duplicated), (0, repeats), "{table}");
    assert_eq!(report.catchup.unwrap().messages_max, 21, "{table}");

    let stale = Faults {
        history_stale: true,
        ..Faults::default()
    };
    let (report, _) = run(&plan(3), stale, &reconnect(3, 30, 20)).await;
    let table = report.table();
    let c = report.catchup.unwrap();
    assert_eq!(
        (c.incomplete, c.stale, c.messages_max),
        (0, 6, 21),
        "{table}"
    );
    assert_eq!(report.delivery.unwrap().lost, 0, "{table}");
}

fn paging(history: usize) -> Scenario {
    Scenario {
        history: Some(history),
        requests: 40,
        ..scenario(Mode::V2Paging, 1)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_pages_are_timed_and_checked() {
    let (report, _) = run(&plan(1), Faults::default(), &paging(2000)).await;
    let table = report.table();
    let p = report.paging.clone().unwrap();
    assert_eq!((p.messages, p.errors, p.limit), (2000, 0, 50), "{table}");
    assert_eq!((p.lowest_before, p.highest_before), (51, 1800));
    assert_eq!(p.latency_ms.unwrap().count, 40);
    assert!(p.fill_per_s > 0.0);
    assert!(report.metric("page_p50_ms").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_off_by_one_is_caught() {
    let shifted = Faults {
        page_shift: true,
        ..Faults::default()
    };
    let (report, _) = run(&plan(1), shifted, &paging(500)).await;
    let table = report.table();
    let p = report.paging.unwrap();
    // Every request, the untimed warm-up ones too.
    assert_eq!(p.errors, 50, "{table}");
    assert!(p.first_error.unwrap().contains("wanted"));
}
