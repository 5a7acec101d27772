#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking
//! Protocol v2 under a reconnect storm, against the real binary: 50 v2
//! clients in 25 chats send continuously, each with its own `client_id`s,
//! while a chaos task drops random sockets (abruptly, from the client's
//! side: no close frame) and, once, `kill -9`s the server and starts it
//! again on the same database (on whatever port it then gets).
//!
//! Every client does what PROTOCOL-V2.md's catch-up section says, and
//! nothing more: on `hello`, page `history after=<held>` (held: the highest
//! `seq` up to which it holds every message) while that is below the chat's
//! `head_seq`; apply live events meanwhile, dropping messages already held
//! by `(chat_id, seq)`; re-send every send not yet acknowledged, with its
//! original `client_id`.
//!
//! What must hold at the end, checked against the stored history (REST
//! pages): every client holds every message of its chat exactly once, in
//! `seq` order, contiguous from 1 to the head, and identical to what is
//! stored; no two stored messages share `(sender, client_id)`; every
//! `client_id` a client ever sent is stored exactly once (each was
//! eventually acknowledged), with the id and `seq` its `ack` named. On the
//! way: within one socket, live `message` and `ack` events of the chat come
//! in strictly increasing `seq` order, every `ack` answers a send the
//! client is waiting for, and a `seq` is never two different messages.
//!
//! SQLite, or PostgreSQL in the postgres build with `TEST_DATABASE_URL`.

mod common;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix_web::rt::time::{sleep, timeout};
use awc::ws::{Codec, Frame, Message};
use common::deployment::{assert_no_panic_in_logs, kill_9, Deployment};
use common::{Api, Rng, TestUser};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};

const CHATS: usize = 25;
/// How long clients send while sockets are dropped.
const CHAOS: Duration = Duration::from_secs(8);
/// When, into the chaos, the server is killed and started again.
const RESTART_AFTER: Duration = Duration::from_secs(3);
/// Sends a client has in flight (sent, not yet acknowledged) at most.
const WINDOW: usize = 4;
/// How often a client sends when its window has room.
const SEND_EVERY: Duration = Duration::from_millis(20);
/// The history page size catch-up asks for (the largest allowed).
const PAGE: u64 = 200;
/// How long a client may take to get a socket again, restart included.
const RECONNECT_WITHIN: Duration = Duration::from_secs(30);
/// How long draining and verifying may take once the chaos ends.
const SETTLE_WITHIN: Duration = Duration::from_secs(20);

type Socket = actix_codec::Framed<awc::BoxedSocket, Codec>;

/// A message as a client holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    id: i64,
    sender_id: i64,
    body: String,
    client_id: Option<String>,
}

/// `(chat_id, seq, message)` of a v2 message object.
fn held_of(message: &Value) -> (i64, i64, Held) {
    let field = |name: &str| {
        message[name]
            .as_i64()
            .unwrap_or_else(|| panic!("{name} of {message}"))
    };
    (
        field("chat_id"),
        field("seq"),
        Held {
            id: field("id"),
            sender_id: field("sender_id"),
            body: message["body"].as_str().unwrap().to_owned(),
            client_id: message["client_id"].as_str().map(str::to_owned),
        },
    )
}

#[derive(Clone, Debug)]
enum Phase {
    /// Send, while the chaos task drops sockets.
    Chaos,
    /// No new sends; get every send acknowledged.
    Drain,
    /// Every chat's final head: hold everything up to it, on the socket
    /// open now.
    Verify(HashMap<i64, i64>),
}

/// Where a client stands once the chaos is over.
#[derive(Debug, Clone)]
struct Progress {
    user: TestUser,
    chat: i64,
    prefix: i64,
    summary: String,
}

/// What the clients share with the chaos task.
struct Storm {
    client: awc::Client,
    /// The server's port now: it changes when the server is restarted.
    port: Cell<u16>,
    /// Bumped before and after the server is killed: a socket opened in an
    /// earlier epoch may be lost; one opened in the current epoch may not.
    epoch: Cell<u64>,
    /// Clients whose sends were all acknowledged after the chaos.
    drained: Cell<usize>,
    /// Sockets lost without a fault to blame.
    unexplained_losses: RefCell<Vec<String>>,
    /// Once the chaos is over, where each client stands: user ->
    /// its held prefix, messages held, sends unacknowledged and its last
    /// sessions, for the failure message of a client that never gets there.
    progress: RefCell<BTreeMap<String, Progress>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    connections: u64,
    dropped_by_chaos: u64,
    lost: u64,
    /// Closed by the server with 1013 (too slow): allowed, caught up from.
    closed_too_slow: u64,
    resent: u64,
    duplicate_acks: u64,
    /// Live messages, or history entries, already held: dropped.
    already_held: u64,
    history_pages: u64,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, o: Self) {
        self.connections += o.connections;
        self.dropped_by_chaos += o.dropped_by_chaos;
        self.lost += o.lost;
        self.closed_too_slow += o.closed_too_slow;
        self.resent += o.resent;
        self.duplicate_acks += o.duplicate_acks;
        self.already_held += o.already_held;
        self.history_pages += o.history_pages;
    }
}

/// One user's v2 client: what it holds, what it is waiting to have
/// acknowledged, and what was acknowledged.
struct StormClient {
    user: TestUser,
    chat: i64,
    drop_now: Rc<Notify>,
    held: BTreeMap<i64, Held>,
    /// The highest seq up to which every message is held.
    prefix: i64,
    /// Sent, not yet acknowledged: number -> body.
    outbox: BTreeMap<u64, String>,
    /// Messages created so far (numbers 0..sent).
    sent: u64,
    /// client_id -> (id, seq) from its ack.
    acked: HashMap<String, (i64, i64)>,
    reported_drained: bool,
    stats: Stats,
    /// Per session: the hello's head, the prefix held then, the first live
    /// event's seq.
    journal: Vec<String>,
}

enum SessionEnd {
    Dropped,
    Lost(String),
    Verified,
}

impl StormClient {
    fn client_id(&self, n: u64) -> String {
        format!("{}-{n}", self.user.username)
    }

    fn send_frame(&self, n: u64) -> Message {
        let frame = json!({
            "type": "send",
            "chat_id": self.chat,
            "client_id": self.client_id(n),
            "body": self.outbox[&n],
        });
        Message::Text(frame.to_string().into())
    }

    async fn run(mut self, storm: Rc<Storm>, mut phase: watch::Receiver<Phase>) -> Self {
        loop {
            let (mut socket, epoch) = connect(&storm, &self.user).await;
            self.stats.connections += 1;
            match self.session(&mut socket, &storm, &mut phase).await {
                SessionEnd::Verified => {
                    let _ = socket.send(Message::Close(None)).await;
                    return self;
                }
                // Gone without a close frame: the abrupt end under test.
                SessionEnd::Dropped => {
                    self.stats.dropped_by_chaos += 1;
                    drop(socket);
                }
                SessionEnd::Lost(why) => {
                    self.stats.lost += 1;
                    if why.contains("1013") {
                        self.stats.closed_too_slow += 1;
                    } else if storm.epoch.get() == epoch {
                        storm
                            .unexplained_losses
                            .borrow_mut()
                            .push(format!("{}: {why}", self.user.username));
                    }
                }
            }
        }
    }

    async fn session(
        &mut self,
        socket: &mut Socket,
        storm: &Storm,
        phase: &mut watch::Receiver<Phase>,
    ) -> SessionEnd {
        let hello = loop {
            match socket.next().await {
                Some(Ok(Frame::Text(bytes))) => {
                    break serde_json::from_slice::<Value>(&bytes).unwrap()
                }
                Some(Ok(Frame::Ping(bytes))) => {
                    let _ = socket.send(Message::Pong(bytes)).await;
                }
                other => return SessionEnd::Lost(format!("before hello: {other:?}")),
            }
        };
        assert_eq!(hello["type"], "hello", "the first frame: {hello}");
        let head = hello["chats"]
            .as_array()
            .and_then(|chats| chats.iter().find(|c| c["id"] == self.chat))
            .and_then(|chat| chat["head_seq"].as_i64())
            .unwrap_or_else(|| panic!("chat {} in hello: {hello}", self.chat));

        // Re-send what was never acknowledged, with its original client_id.
        let unacked: Vec<u64> = self.outbox.keys().copied().collect();
        for n in unacked {
            if socket.send(self.send_frame(n)).await.is_err() {
                return SessionEnd::Lost("while re-sending".into());
            }
            self.stats.resent += 1;
        }

        self.journal
            .push(format!("hello head {head}, held {}", self.prefix));
        let mut live_seq = 0;
        let mut history_pending: Option<String> = None;
        let mut pages = 0u64;
        let drop_now = self.drop_now.clone();
        let mut tick = actix_web::rt::time::interval(SEND_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if history_pending.is_none() && self.prefix < head {
                pages += 1;
                let reference = format!("h{pages}");
                let request = json!({"type": "history", "chat_id": self.chat,
                    "after": self.prefix, "limit": PAGE, "ref": reference});
                if socket
                    .send(Message::Text(request.to_string().into()))
                    .await
                    .is_err()
                {
                    return SessionEnd::Lost("while asking for history".into());
                }
                history_pending = Some(reference);
            }
            let (sending, target) = match &*phase.borrow() {
                Phase::Chaos => (true, None),
                Phase::Drain => (false, None),
                Phase::Verify(heads) => (false, Some(heads[&self.chat])),
            };
            if !sending {
                let recent = &self.journal[self.journal.len().saturating_sub(3)..];
                let summary = format!(
                    "held up to {} ({} held), {} unacknowledged; sessions {recent:?}",
                    self.prefix,
                    self.held.len(),
                    self.outbox.len()
                );
                storm.progress.borrow_mut().insert(
                    self.user.username.clone(),
                    Progress {
                        user: self.user.clone(),
                        chat: self.chat,
                        prefix: self.prefix,
                        summary,
                    },
                );
            }
            if !sending && self.outbox.is_empty() && !self.reported_drained {
                self.reported_drained = true;
                storm.drained.set(storm.drained.get() + 1);
            }
            if let Some(target) = target {
                if self.outbox.is_empty()
                    && history_pending.is_none()
                    && self.prefix == target
                    && self.held.len() == usize::try_from(target).unwrap()
                {
                    return SessionEnd::Verified;
                }
            }
            let can_send = sending && self.outbox.len() < WINDOW;
            tokio::select! {
                frame = socket.next() => match frame {
                    Some(Ok(Frame::Text(bytes))) => {
                        let frame: Value = serde_json::from_slice(&bytes).unwrap();
                        if let Some(resend) = self.on_frame(&frame, head, &mut live_seq, &mut history_pending) {
                            if socket.send(self.send_frame(resend)).await.is_err() {
                                return SessionEnd::Lost("while re-sending".into());
                            }
                            self.stats.resent += 1;
                        }
                    }
                    Some(Ok(Frame::Ping(bytes))) => {
                        if socket.send(Message::Pong(bytes)).await.is_err() {
                            return SessionEnd::Lost("while answering a ping".into());
                        }
                    }
                    Some(Ok(Frame::Close(reason))) => {
                        let code = reason.map(|r| u16::from(r.code));
                        return SessionEnd::Lost(format!("closed by the server: {code:?}"));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return SessionEnd::Lost(format!("socket error: {error}")),
                    None => return SessionEnd::Lost("connection ended".into()),
                },
                () = drop_now.notified() => return SessionEnd::Dropped,
                _ = tick.tick(), if can_send => {
                    let n = self.sent;
                    self.sent += 1;
                    self.outbox.insert(n, format!("{} says #{n}", self.user.username));
                    if socket.send(self.send_frame(n)).await.is_err() {
                        return SessionEnd::Lost("while sending".into());
                    }
                }
                _ = phase.changed() => {}
            }
        }
    }

    /// Applies one frame; returns a send to repeat (refused as unavailable).
    fn on_frame(
        &mut self,
        frame: &Value,
        head: i64,
        live_seq: &mut i64,
        history_pending: &mut Option<String>,
    ) -> Option<u64> {
        let who = self.user.username.clone();
        let journal = self.journal.last_mut().unwrap();
        let mut in_order = |seq: i64, what: &str| {
            if *live_seq == 0 {
                journal.push_str(&format!(", first live {what} {seq}"));
            }
            assert!(
                seq > *live_seq,
                "{who}: live {what} with seq {seq} after seq {live_seq} on the same socket: {frame}"
            );
            *live_seq = seq;
        };
        match frame["type"].as_str().unwrap_or_default() {
            "message" => {
                let (chat, seq, held) = held_of(&frame["message"]);
                assert_eq!(chat, self.chat, "{who}: a message of another chat: {frame}");
                in_order(seq, "message");
                self.hold(seq, held);
            }
            "ack" => {
                let client_id = frame["client_id"].as_str().unwrap().to_owned();
                let (chat, seq, held) = held_of(&frame["message"]);
                assert_eq!(chat, self.chat, "{who}: {frame}");
                assert_eq!(
                    held.client_id.as_deref(),
                    Some(client_id.as_str()),
                    "{frame}"
                );
                assert_eq!(held.sender_id, self.user.id, "{who}: {frame}");
                let n: u64 = client_id.rsplit('-').next().unwrap().parse().unwrap();
                let body = self.outbox.remove(&n).unwrap_or_else(|| {
                    panic!("{who}: an ack for {client_id}, which is not awaiting one: {frame}")
                });
                assert_eq!(
                    held.body, body,
                    "{who}: the ack's message is the one sent: {frame}"
                );
                if frame["duplicate"] == json!(true) {
                    // The original, stored before: a replay, like history.
                    self.stats.duplicate_acks += 1;
                } else {
                    assert_eq!(frame["duplicate"], json!(false), "{frame}");
                    in_order(seq, "ack");
                }
                let earlier = self.acked.insert(client_id.clone(), (held.id, seq));
                assert!(earlier.is_none(), "{who}: {client_id} acknowledged twice");
                self.hold(seq, held);
            }
            "history" => {
                let reference = history_pending.take();
                assert_eq!(
                    frame["ref"].as_str(),
                    reference.as_deref(),
                    "{who}: a history answer for the request in flight: {frame}"
                );
                assert_eq!(frame["chat_id"], self.chat, "{frame}");
                let messages = frame["messages"].as_array().unwrap();
                assert!(
                    !messages.is_empty() || self.prefix >= head,
                    "{who}: history after {} is empty, but the hello's head is {head}",
                    self.prefix
                );
                self.stats.history_pages += 1;
                for message in messages {
                    let (chat, seq, held) = held_of(message);
                    assert_eq!(chat, self.chat, "{frame}");
                    self.hold(seq, held);
                }
            }
            "error" if frame["code"] == "unavailable" => {
                // Nothing was stored: try again.
                let client_id = frame["client_id"].as_str().unwrap();
                return client_id.rsplit('-').next().unwrap().parse().ok();
            }
            "presence" | "read" | "delivered" | "typing" => {}
            _ => panic!("{who}: unexpected frame {frame}"),
        }
        None
    }

    /// Keeps `message` at `seq`, or drops it if already held (then it must
    /// be the same message).
    fn hold(&mut self, seq: i64, message: Held) {
        assert!(seq >= 1, "{}: seq {seq}", self.user.username);
        if let Some(held) = self.held.get(&seq) {
            assert_eq!(
                held, &message,
                "{}: seq {seq} is two different messages",
                self.user.username
            );
            self.stats.already_held += 1;
            return;
        }
        self.held.insert(seq, message);
        while self.held.contains_key(&(self.prefix + 1)) {
            self.prefix += 1;
        }
    }
}

/// Opens a v2 socket on the server's current port, retrying while there is
/// none (the server is being restarted). Returns it with the epoch it was
/// opened in.
async fn connect(storm: &Storm, user: &TestUser) -> (Socket, u64) {
    let deadline = Instant::now() + RECONNECT_WITHIN;
    loop {
        let epoch = storm.epoch.get();
        let url = format!(
            "ws://127.0.0.1:{}/ws/v2/?token={}",
            storm.port.get(),
            user.token
        );
        let attempt = timeout(
            Duration::from_secs(5),
            storm.client.ws(url).max_frame_size(1 << 24).connect(),
        )
        .await;
        match attempt {
            Ok(Ok((_, socket))) => return (socket, epoch),
            Ok(Err(error)) => {
                assert!(
                    Instant::now() < deadline,
                    "{}: no socket within {RECONNECT_WITHIN:?}: {error}",
                    user.username
                );
                sleep(Duration::from_millis(25)).await;
            }
            Err(_) => {
                assert!(
                    Instant::now() < deadline,
                    "{}: no socket within {RECONNECT_WITHIN:?}: handshake timed out",
                    user.username
                );
                sleep(Duration::from_millis(25)).await;
            }
        }
    }
}

/// Every message of the chat, oldest first, paged over REST.
async fn stored_messages(api: &Api, user: &TestUser, chat: i64) -> (Vec<Value>, i64) {
    let mut messages: Vec<Value> = Vec::new();
    let mut after = 0;
    loop {
        let page = api
            .messages_page(user, chat, &format!("after={after}&limit={PAGE}"))
            .await;
        assert_eq!(page.status, 200, "{page:?}");
        let batch = page.body["messages"].as_array().unwrap();
        messages.extend(batch.iter().cloned());
        if page.body["has_more_after"] != json!(true) {
            return (messages, page.body["head_seq"].as_i64().unwrap());
        }
        after = batch.last().unwrap()["seq"].as_i64().unwrap();
    }
}

/// The clients short of their chat's head, with the first message each
/// lacks as stored (when it was created tells which server stored it).
async fn stuck_clients(api: &Api, storm: &Storm, heads: &HashMap<i64, i64>) -> Vec<String> {
    let progress = storm.progress.borrow().clone();
    let mut stuck = Vec::new();
    for (name, p) in progress {
        if p.prefix >= heads[&p.chat] {
            continue;
        }
        let page = api
            .messages_page(&p.user, p.chat, &format!("after={}&limit=1", p.prefix))
            .await;
        stuck.push(format!(
            "{name}: {}; lacks {}",
            p.summary, page.body["messages"][0]
        ));
    }
    stuck
}

/// Waits until `done`, failing after `within`, and at once if a client task
/// ended early (it panicked: its message is above).
async fn wait_until(
    what: &str,
    within: Duration,
    tasks: &[actix_web::rt::task::JoinHandle<StormClient>],
    done: impl Fn() -> bool,
    progress: impl Fn() -> String,
) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(
            !tasks.iter().any(tokio::task::JoinHandle::is_finished),
            "a client ended while waiting for {what}"
        );
        assert!(
            Instant::now() < deadline,
            "{what}: not within {within:?}; per client: {}",
            progress()
        );
        sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn a_reconnect_storm_with_a_server_restart_loses_and_duplicates_nothing() {
    let started = Instant::now();
    let deployment = Deployment::new();
    let mut server = deployment.start(&[]);
    let api = Api::new(server.port);

    let names: Vec<String> = (0..CHATS * 2).map(|i| format!("storm{i:02}")).collect();
    let users = futures_util::future::join_all(names.iter().map(|name| api.user(name))).await;
    let mut chats = Vec::new();
    for pair in users.chunks(2) {
        chats.push((
            pair[0].clone(),
            pair[1].clone(),
            api.chat(&pair[0], &pair[1]).await,
        ));
    }
    let set_up_in = started.elapsed();

    let storm = Rc::new(Storm {
        client: awc::Client::builder()
            .timeout(Duration::from_secs(30))
            .finish(),
        port: Cell::new(server.port),
        epoch: Cell::new(0),
        drained: Cell::new(0),
        unexplained_losses: RefCell::new(Vec::new()),
        progress: RefCell::new(BTreeMap::new()),
    });
    let (phase, phase_rx) = watch::channel(Phase::Chaos);
    let mut drop_signals = Vec::new();
    let mut tasks = Vec::new();
    for (a, b, chat) in &chats {
        for user in [a, b] {
            let drop_now = Rc::new(Notify::new());
            drop_signals.push(drop_now.clone());
            let client = StormClient {
                user: user.clone(),
                chat: *chat,
                drop_now,
                held: BTreeMap::new(),
                prefix: 0,
                outbox: BTreeMap::new(),
                sent: 0,
                acked: HashMap::new(),
                reported_drained: false,
                stats: Stats::default(),
                journal: Vec::new(),
            };
            tasks.push(actix_web::rt::spawn(
                client.run(storm.clone(), phase_rx.clone()),
            ));
        }
    }

    // The chaos: a random socket dropped every 20 to 80 ms, and once the
    // server killed with SIGKILL and started again on the same database.
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let chaos_started = Instant::now();
    let mut restart_took = None;
    let mut killed_at = None;
    let mut drops = 0;
    while chaos_started.elapsed() < CHAOS {
        sleep(Duration::from_millis(20 + rng.below(60) as u64)).await;
        drop_signals[rng.below(drop_signals.len())].notify_one();
        drops += 1;
        if restart_took.is_none() && chaos_started.elapsed() >= RESTART_AFTER {
            let restarting = Instant::now();
            killed_at = Some(chrono::Utc::now());
            storm.epoch.set(storm.epoch.get() + 1);
            kill_9(&mut server);
            storm.epoch.set(storm.epoch.get() + 1);
            assert_no_panic_in_logs(&server);
            server = deployment.start_in_background(&[]).await;
            storm.port.set(server.port);
            restart_took = Some(restarting.elapsed());
        }
        assert!(
            !tasks.iter().any(tokio::task::JoinHandle::is_finished),
            "a client ended during the chaos"
        );
    }

    phase.send_replace(Phase::Drain);
    wait_until(
        "every send acknowledged",
        SETTLE_WITHIN,
        &tasks,
        || storm.drained.get() == tasks.len(),
        || {
            let progress = storm.progress.borrow();
            let lines: Vec<String> = progress
                .iter()
                .map(|(user, p)| format!("{user}: {}", p.summary))
                .collect();
            lines.join("\n")
        },
    )
    .await;
    let api = Api::new(server.port);
    let mut heads = HashMap::new();
    for (a, _, chat) in &chats {
        let page = api.messages_page(a, *chat, "limit=1").await;
        assert_eq!(page.status, 200, "{page:?}");
        heads.insert(*chat, page.body["head_seq"].as_i64().unwrap());
    }
    phase.send_replace(Phase::Verify(heads.clone()));
    let mut clients = HashMap::new();
    let deadline = Instant::now() + SETTLE_WITHIN;
    for task in tasks {
        let Ok(client) = timeout(deadline.saturating_duration_since(Instant::now()), task).await
        else {
            let stuck = stuck_clients(&api, &storm, &heads).await;
            panic!(
                "not every client held its chat's head within {SETTLE_WITHIN:?} \
                 (the server was killed at {}):\n{}",
                killed_at.unwrap(),
                stuck.join("\n")
            );
        };
        let client = client.expect("client task");
        clients.insert(client.user.id, client);
    }
    let losses = storm.unexplained_losses.borrow().clone();
    assert!(
        losses.is_empty(),
        "sockets lost without a fault: {losses:#?}"
    );

    // Against what is stored.
    let (mut stored_total, mut acked_total) = (0, 0);
    let mut totals = Stats::default();
    for (a, b, chat) in &chats {
        let (stored, head) = stored_messages(&api, a, *chat).await;
        assert_eq!(
            head, heads[chat],
            "chat {chat}: the head moved after the drain"
        );
        let stored: BTreeMap<i64, Held> = stored
            .iter()
            .map(|m| {
                let (in_chat, seq, held) = held_of(m);
                assert_eq!(in_chat, *chat);
                (seq, held)
            })
            .collect();
        assert_eq!(
            stored.keys().copied().collect::<Vec<_>>(),
            (1..=head).collect::<Vec<_>>(),
            "chat {chat}: stored seqs are 1..={head} exactly once"
        );
        let mut keys = HashSet::new();
        for (seq, message) in &stored {
            let client_id = message
                .client_id
                .clone()
                .expect("every message has a client_id");
            assert!(
                keys.insert((message.sender_id, client_id.clone())),
                "chat {chat}: (sender {}, {client_id}) stored twice (again at seq {seq})",
                message.sender_id
            );
        }
        for user in [a, b] {
            let client = &clients[&user.id];
            if client.held != stored {
                let first_difference = (1..=head)
                    .find(|seq| client.held.get(seq) != stored.get(seq))
                    .unwrap();
                panic!(
                    "{} holds {} messages up to {}, {} are stored; first difference at seq {first_difference}: held {:?}, stored {:?}",
                    user.username,
                    client.held.len(),
                    client.prefix,
                    stored.len(),
                    client.held.get(&first_difference),
                    stored.get(&first_difference)
                );
            }
            // Everything it sent is stored once, as its ack said; nothing
            // else of it is.
            let mine: HashMap<&str, (i64, i64)> = stored
                .iter()
                .filter(|(_, m)| m.sender_id == user.id)
                .map(|(seq, m)| (m.client_id.as_deref().unwrap(), (m.id, *seq)))
                .collect();
            assert_eq!(
                mine.len() as u64,
                client.sent,
                "{}: sent vs stored",
                user.username
            );
            assert_eq!(client.acked.len() as u64, client.sent, "{}", user.username);
            for (client_id, answer) in &client.acked {
                assert_eq!(
                    mine.get(client_id.as_str()),
                    Some(answer),
                    "{}: {client_id} is stored as its ack said",
                    user.username
                );
            }
            assert!(
                client.stats.connections >= 2,
                "{} reconnected after the restart",
                user.username
            );
            acked_total += client.acked.len();
            totals += client.stats;
        }
        stored_total += stored.len();
    }
    assert!(
        stored_total >= 1000,
        "only {stored_total} messages in {CHAOS:?} of storm"
    );
    assert_no_panic_in_logs(&server);
    drop(server);
    deployment.database.check_integrity().unwrap();
    eprintln!(
        "storm on {}: {stored_total} messages stored ({acked_total} acknowledged, 0 lost, 0 duplicated) \
         in {CHAOS:?} of chaos with {drops} socket drops and one kill -9 (restart took {:?}); \
         {totals:?}; set-up {set_up_in:?}, total {:?}",
        deployment.database.backend(),
        restart_took.unwrap(),
        started.elapsed()
    );
}
