//! The relay (`chat-relay`): the wire's speed, as a reference for every
//! benchmark row. An in-memory server of exactly the part of the seed API
//! the benchmark's seed scenarios use: register, log in, create a chat,
//! list chats, and the chat socket with its history replay and broadcast.
//! No database, no password hashing (passwords are compared as sent), and
//! the token is the user's id as text (it still names the caller: every
//! call and handshake looks the user up). Per chat one `Mutex` holds its
//! messages and its sockets' queues; each socket has one writer task
//! draining a bounded queue, so a broadcast is a lock, a push and a
//! `try_send` per socket.
//!
//! What it leaves out: protocol v2, rate limits, heartbeats, origins,
//! connection limits, Unicode normalisation of usernames, and persistence.
//! It is a reference, not a product: never for real use, and it binds only
//! loopback addresses.

pub mod http;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use chrono::{DateTime, Datelike as _, SecondsFormat, Timelike as _, Utc};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt as _, StreamExt as _};
use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use self::http::{Head, Route};

/// Frames a socket's writer may have queued before the socket is closed
/// with `1013` (the server's `CHAT_WS_QUEUE`).
pub const QUEUE: usize = 1024;

/// A write that takes longer ends the socket (the server's
/// `CHAT_WS_WRITE_TIMEOUT`).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server's generic error text of the seed socket.
pub const GENERIC_ERROR: &str = "An error occurred while processing your message";

/// The longest body, in characters (the server's `CHAT_MAX_MESSAGE_CHARS`).
pub const MAX_MESSAGE_CHARS: usize = 4096;

type Sink = SplitSink<WebSocketStream<TcpStream>, Message>;

/// Locks `mutex`, whatever a panicking holder left behind (the data is
/// plain collections, always consistent between statements).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Debug, Clone)]
struct Person {
    id: i64,
    username: Arc<str>,
}

struct User {
    person: Person,
    password: String,
    chats: Vec<i64>,
}

#[derive(Default)]
struct Directory {
    /// User `id` is at `id - 1`.
    users: Vec<User>,
    /// Lower-cased username to index.
    by_name: HashMap<String, usize>,
    /// The ordered pair of user ids to its chat.
    pairs: HashMap<(i64, i64), i64>,
}

impl Directory {
    fn user(&self, id: i64) -> Option<&User> {
        usize::try_from(id.checked_sub(1)?)
            .ok()
            .and_then(|i| self.users.get(i))
    }
}

struct Stored {
    id: i64,
    /// The sender's place in the chat's participants.
    from: usize,
    body: String,
    created: DateTime<Utc>,
}

/// A socket's queue, as the chat holds it.
struct Outlet {
    socket: u64,
    tx: mpsc::Sender<Message>,
    /// Set when the queue overflowed and the chat let go of the socket.
    overflowed: Arc<AtomicBool>,
}

#[derive(Default)]
struct ChatState {
    messages: Vec<Arc<Stored>>,
    sockets: Vec<Outlet>,
    /// Per participant: the newest message id of the other's that a
    /// connect of theirs replayed (the server's read cursor).
    read_upto: [i64; 2],
}

struct Chat {
    id: i64,
    /// Ordered by user id.
    participants: [Person; 2],
    created: DateTime<Utc>,
    state: Mutex<ChatState>,
}

impl Chat {
    fn slot_of(&self, user: i64) -> Option<usize> {
        self.participants.iter().position(|p| p.id == user)
    }
}

/// The relay's whole state.
pub struct Relay {
    directory: Mutex<Directory>,
    /// Chat `id` is at `id - 1`.
    chats: RwLock<Vec<Arc<Chat>>>,
    next_message: AtomicI64,
    next_socket: AtomicU64,
    queue: usize,
}

impl Default for Relay {
    fn default() -> Self {
        Self::new(QUEUE)
    }
}

/// An answer to a REST call.
struct Answer {
    status: u16,
    body: String,
}

impl Answer {
    fn json(status: u16, value: &impl Serialize) -> Self {
        Self {
            status,
            body: serde_json::to_string(value).unwrap_or_else(|_| http::error_body("encoding")),
        }
    }

    fn error(status: u16, text: &str) -> Self {
        Self {
            status,
            body: http::error_body(text),
        }
    }
}

#[derive(Serialize)]
struct PersonDto<'a> {
    id: i64,
    username: &'a str,
}

impl<'a> From<&'a Person> for PersonDto<'a> {
    fn from(p: &'a Person) -> Self {
        Self {
            id: p.id,
            username: &p.username,
        }
    }
}

#[derive(Serialize)]
struct LastMessageDto<'a> {
    body: &'a str,
    created: String,
    sender: &'a str,
}

#[derive(Serialize)]
struct ChatDto<'a> {
    id: i64,
    participants: [PersonDto<'a>; 2],
    other_user: PersonDto<'a>,
    created: String,
    last_message: Option<LastMessageDto<'a>>,
    unread_count: usize,
}

#[derive(Serialize)]
struct MessageDto<'a> {
    id: i64,
    sender: &'a str,
    body: &'a str,
    created: String,
    is_read: bool,
}

#[derive(Serialize)]
struct MessageFrame<'a> {
    message: MessageDto<'a>,
}

/// REST times: RFC 3339, UTC, to the second, with a `Z`.
fn rest_time(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Socket times: `YYYY-MM-DD HH:MM:SS`, UTC, as the seed writes them.
pub fn ws_time(time: &DateTime<Utc>) -> String {
    let mut text = String::with_capacity(19);
    let _ = write!(
        text,
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        time.year(),
        time.month(),
        time.day(),
        time.hour(),
        time.minute(),
        time.second()
    );
    text
}

/// `{"message": {"id", "sender", "body", "created", "is_read"}}`, the
/// server's frame field for field.
pub fn message_frame(
    id: i64,
    sender: &str,
    body: &str,
    created: &DateTime<Utc>,
    read: bool,
) -> String {
    let frame = MessageFrame {
        message: MessageDto {
            id,
            sender,
            body,
            created: ws_time(created),
            is_read: read,
        },
    };
    serde_json::to_string(&frame).unwrap_or_else(|_| error_frame("encoding"))
}

/// `{"error": "An error occurred while processing your message", "detail"}`.
pub fn error_frame(detail: &str) -> String {
    serde_json::json!({ "error": GENERIC_ERROR, "detail": detail }).to_string()
}

/// The body of a `{"body": "..."}` frame, checked by the server's rules,
/// or the `detail` of the error frame it gets.
pub fn parse_send(text: &str) -> Result<String, &'static str> {
    let value: Value = serde_json::from_str(text).map_err(|_| "frame is not valid JSON")?;
    let Value::Object(mut fields) = value else {
        return Err("frame must be a JSON object like {\"body\": \"...\"}");
    };
    let body = match fields.remove("body") {
        Some(Value::String(body)) => body,
        Some(_) => return Err("\"body\" must be a string"),
        None => return Err("frame has no \"body\" field"),
    };
    if body.is_empty() {
        return Err("message body may not be empty");
    }
    if body.chars().count() > MAX_MESSAGE_CHARS {
        return Err("message body is too long");
    }
    if body.contains('\0') {
        return Err("message body may not contain the NUL character");
    }
    Ok(body)
}

/// `{"username": str, "password": str}`.
fn credentials(body: &[u8]) -> Option<(String, String)> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let username = value.get("username")?.as_str()?.to_owned();
    let password = value.get("password")?.as_str()?.to_owned();
    Some((username, password))
}

fn valid_username(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= 150
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '@' | '.' | '+' | '-' | '_'))
}

impl Relay {
    pub fn new(queue: usize) -> Self {
        Self {
            directory: Mutex::default(),
            chats: RwLock::default(),
            next_message: AtomicI64::new(1),
            next_socket: AtomicU64::new(1),
            queue: queue.max(1),
        }
    }

    fn chat(&self, id: i64) -> Option<Arc<Chat>> {
        let index = usize::try_from(id.checked_sub(1)?).ok()?;
        let chats = self
            .chats
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        chats.get(index).cloned()
    }

    /// The user a token names: the relay's tokens are user ids.
    fn authenticate(&self, token: Option<&str>) -> Option<Person> {
        let id: i64 = token?.parse().ok()?;
        lock(&self.directory).user(id).map(|u| u.person.clone())
    }

    fn register(&self, body: &[u8]) -> Answer {
        let Some((username, password)) = credentials(body) else {
            return Answer::error(400, "expected {\"username\": str, \"password\": str}");
        };
        if !valid_username(&username) {
            return Answer::error(400, "invalid username");
        }
        if password.chars().count() < 8 {
            return Answer::error(400, "the password must have at least 8 characters");
        }
        let mut directory = lock(&self.directory);
        let key = username.to_lowercase();
        if directory.by_name.contains_key(&key) {
            return Answer::error(400, "that username is taken");
        }
        let index = directory.users.len();
        let person = Person {
            id: index as i64 + 1,
            username: username.into(),
        };
        let answer = Answer::json(201, &PersonDto::from(&person));
        directory.by_name.insert(key, index);
        directory.users.push(User {
            person,
            password,
            chats: Vec::new(),
        });
        answer
    }

    fn login(&self, body: &[u8]) -> Answer {
        let Some((username, password)) = credentials(body) else {
            return Answer::error(400, "expected {\"username\": str, \"password\": str}");
        };
        let directory = lock(&self.directory);
        let user = directory
            .by_name
            .get(&username.to_lowercase())
            .and_then(|&i| directory.users.get(i))
            .filter(|u| u.password == password);
        match user {
            Some(user) => Answer::json(
                200,
                &serde_json::json!({
                    "token": user.person.id.to_string(),
                    "user": PersonDto::from(&user.person),
                }),
            ),
            None => Answer::error(401, "invalid username or password"),
        }
    }

    fn create_chat(&self, caller: &Person, body: &[u8]) -> Answer {
        let other = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("user_id").and_then(Value::as_i64));
        let Some(other) = other else {
            return Answer::error(400, "expected {\"user_id\": integer}");
        };
        let mut directory = lock(&self.directory);
        let other = match directory.user(other) {
            Some(user) if user.person.id != caller.id => user.person.clone(),
            Some(_) => return Answer::error(400, "you cannot start a chat with yourself"),
            None => return Answer::error(400, "no such user"),
        };
        let pair = (caller.id.min(other.id), caller.id.max(other.id));
        if let Some(&id) = directory.pairs.get(&pair) {
            drop(directory);
            return match self.chat(id) {
                Some(chat) => Answer {
                    status: 200,
                    body: Self::chat_entry(&chat, caller.id).1,
                },
                None => Answer::error(500, "chat vanished"),
            };
        }
        let mut chats = self
            .chats
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let id = chats.len() as i64 + 1;
        let (first, second) = if caller.id < other.id {
            (caller.clone(), other)
        } else {
            (other, caller.clone())
        };
        let chat = Arc::new(Chat {
            id,
            participants: [first, second],
            created: Utc::now(),
            state: Mutex::default(),
        });
        chats.push(chat.clone());
        drop(chats);
        directory.pairs.insert(pair, id);
        for person in &chat.participants {
            if let Ok(index) = usize::try_from(person.id - 1) {
                if let Some(user) = directory.users.get_mut(index) {
                    user.chats.push(id);
                }
            }
        }
        drop(directory);
        Answer {
            status: 201,
            body: Self::chat_entry(&chat, caller.id).1,
        }
    }

    /// A chat as `viewer` sees it in `GET /api/chats/`, with the sort key
    /// (last activity) beside it.
    fn chat_entry(chat: &Chat, viewer: i64) -> (DateTime<Utc>, String) {
        let me = chat.slot_of(viewer).unwrap_or(0);
        let state = lock(&chat.state);
        let last = state.messages.last();
        let cursor = state.read_upto[me];
        let first_unread = state.messages.partition_point(|m| m.id <= cursor);
        let unread_count = state.messages[first_unread..]
            .iter()
            .filter(|m| m.from != me)
            .count();
        let dto = ChatDto {
            id: chat.id,
            participants: [
                PersonDto::from(&chat.participants[0]),
                PersonDto::from(&chat.participants[1]),
            ],
            other_user: PersonDto::from(&chat.participants[1 - me]),
            created: rest_time(&chat.created),
            last_message: last.map(|m| LastMessageDto {
                body: &m.body,
                created: rest_time(&m.created),
                sender: &chat.participants[m.from].username,
            }),
            unread_count,
        };
        let activity = last.map_or(chat.created, |m| m.created);
        let json = serde_json::to_string(&dto).unwrap_or_else(|_| "null".to_owned());
        (activity, json)
    }

    fn list_chats(&self, caller: &Person) -> Answer {
        let ids = lock(&self.directory)
            .user(caller.id)
            .map(|u| u.chats.clone())
            .unwrap_or_default();
        let mut entries: Vec<(DateTime<Utc>, i64, String)> = ids
            .iter()
            .filter_map(|&id| self.chat(id))
            .map(|chat| {
                let (activity, value) = Self::chat_entry(&chat, caller.id);
                (activity, chat.id, value)
            })
            .collect();
        // Most recent activity first, to the second; ties by id, newest first.
        entries.sort_by_key(|e| std::cmp::Reverse((e.0.timestamp(), e.1)));
        let list: Vec<String> = entries.into_iter().map(|(_, _, json)| json).collect();
        Answer {
            status: 200,
            body: format!("[{}]", list.join(",")),
        }
    }

    /// Stores `body` from participant `from` and queues its frame to every
    /// socket of the chat; a socket whose queue is full is let go of.
    fn post(&self, chat: &Chat, from: usize, body: String) {
        let created = Utc::now();
        let mut state = lock(&chat.state);
        let id = self.next_message.fetch_add(1, Ordering::Relaxed);
        let frame = message_frame(
            id,
            &chat.participants[from].username,
            &body,
            &created,
            false,
        );
        let frame = Message::Text(Utf8Bytes::from(frame));
        state.messages.push(Arc::new(Stored {
            id,
            from,
            body,
            created,
        }));
        state
            .sockets
            .retain(|outlet| match outlet.tx.try_send(frame.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    outlet.overflowed.store(true, Ordering::Relaxed);
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
    }
}

/// Binds `addr` (loopback only) with a backlog for connect storms.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    if !addr.ip().is_loopback() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the relay has no real authentication: it binds loopback addresses only",
        ));
    }
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Serves connections from `listener` until the task is dropped.
pub async fn run(listener: TcpListener, relay: Arc<Relay>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(connection(relay.clone(), stream));
            }
            // Out of file descriptors, most likely: wait for some to close.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// One TCP connection: requests in turn (keep-alive), until it closes or
/// becomes a WebSocket.
async fn connection(relay: Arc<Relay>, mut stream: TcpStream) {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    loop {
        let head = loop {
            match http::parse_head(&buf) {
                Ok(Some(head)) => break head,
                Ok(None) => {}
                Err(error) => {
                    let body = http::error_body("the relay cannot read this request");
                    let _ = stream
                        .write_all(&http::response(error.status(), &body, false, None))
                        .await;
                    return;
                }
            }
            // `read_buf` fills spare capacity only (a full Vec offers 64 bytes).
            buf.reserve(4096);
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        if head.content_length > http::MAX_BODY_BYTES {
            let body = http::error_body("the body is too large");
            let _ = stream
                .write_all(&http::response(413, &body, false, None))
                .await;
            return;
        }
        let end = head.len + head.content_length;
        while buf.len() < end {
            buf.reserve(end - buf.len());
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
        let (path, query) = http::split_target(&head.target);
        let route = http::route(&head.method, path);
        if let Route::ChatSocket(chat) = route {
            let token = head
                .bearer
                .clone()
                .or_else(|| http::query_param(query, "token").map(str::to_owned));
            let rest = buf.split_off(end);
            handshake(relay, stream, &head, chat, token.as_deref(), rest).await;
            return;
        }
        let answer = {
            let body = &buf[head.len..end];
            let caller = || relay.authenticate(head.bearer.as_deref());
            match route {
                Route::Register => relay.register(body),
                Route::Login => relay.login(body),
                Route::CreateChat => match caller() {
                    Some(caller) => relay.create_chat(&caller, body),
                    None => Answer::error(401, "authentication required"),
                },
                Route::ListChats => match caller() {
                    Some(caller) => relay.list_chats(&caller),
                    None => Answer::error(401, "authentication required"),
                },
                Route::MethodNotAllowed(_) => Answer::error(405, "method not allowed"),
                Route::NotFound | Route::ChatSocket(_) => {
                    Answer::error(404, &format!("no such endpoint: {} {path}", head.method))
                }
            }
        };
        let allow = match route {
            Route::MethodNotAllowed(allow) => Some(allow),
            _ => None,
        };
        let bytes = http::response(answer.status, &answer.body, head.keep_alive, allow);
        if stream.write_all(&bytes).await.is_err() || !head.keep_alive {
            return;
        }
        buf.drain(..end);
    }
}

/// The chat socket's handshake, checked in the seed's order, then its life.
async fn handshake(
    relay: Arc<Relay>,
    mut stream: TcpStream,
    head: &Head,
    chat: Option<i64>,
    token: Option<&str>,
    rest: Vec<u8>,
) {
    let refuse =
        |status: u16, text: &str| http::response(status, &http::error_body(text), false, None);
    let checked = match relay.authenticate(token) {
        None => Err(refuse(401, "authentication required")),
        Some(me) => match chat.and_then(|id| relay.chat(id)) {
            None => Err(refuse(404, "no such chat")),
            Some(chat) => match (chat.slot_of(me.id), head.websocket_key.as_deref()) {
                (None, _) => Err(refuse(403, "you are not a participant of this chat")),
                (Some(_), None) => Err(refuse(400, "not a WebSocket upgrade")),
                (Some(_), Some(_)) if !head.upgrade_websocket => {
                    Err(refuse(400, "not a WebSocket upgrade"))
                }
                (Some(slot), Some(key)) => Ok((chat, slot, http::switching_protocols(key))),
            },
        },
    };
    let (chat, slot, accept) = match checked {
        Ok(ok) => ok,
        Err(refusal) => {
            let _ = stream.write_all(&refusal).await;
            return;
        }
    };
    if stream.write_all(&accept).await.is_err() {
        return;
    }
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(16 * 1024)
        .max_message_size(Some(64 << 10))
        .max_frame_size(Some(64 << 10));
    let ws = WebSocketStream::from_partially_read(stream, rest, Role::Server, Some(config)).await;
    socket(relay, chat, slot, ws).await;
}

/// An open chat socket: registered with its chat together with a snapshot
/// of the history (so every message is either replayed or queued, exactly
/// once), a writer task for its frames, and this task reading.
async fn socket(relay: Arc<Relay>, chat: Arc<Chat>, slot: usize, ws: WebSocketStream<TcpStream>) {
    let (sink, mut stream) = ws.split();
    let (tx, rx) = mpsc::channel(relay.queue);
    let own = tx.downgrade();
    let socket = relay.next_socket.fetch_add(1, Ordering::Relaxed);
    let overflowed = Arc::new(AtomicBool::new(false));
    let (history, cursors) = {
        let mut state = lock(&chat.state);
        let history = state.messages.clone();
        let cursors = state.read_upto;
        // The other's messages up to the last one replayed are now read.
        if let Some(last) = history.iter().rev().find(|m| m.from != slot) {
            state.read_upto[slot] = state.read_upto[slot].max(last.id);
        }
        state.sockets.push(Outlet {
            socket,
            tx,
            overflowed: overflowed.clone(),
        });
        (history, cursors)
    };
    let names = [
        chat.participants[0].username.clone(),
        chat.participants[1].username.clone(),
    ];
    let done = Arc::new(AtomicBool::new(false));
    let mut writer = tokio::spawn(write(
        sink,
        rx,
        history,
        cursors,
        names,
        overflowed,
        done.clone(),
    ));
    loop {
        let frame = tokio::select! {
            frame = stream.next() => frame,
            // The writer stopped (the peer stopped reading, or overflow).
            _ = &mut writer => break,
        };
        let reply = match frame {
            Some(Ok(Message::Text(text))) => match parse_send(&text) {
                Ok(body) => {
                    relay.post(&chat, slot, body);
                    None
                }
                Err(detail) => Some(error_frame(detail)),
            },
            Some(Ok(Message::Binary(_))) => Some(error_frame("binary frames are not supported")),
            // Close: the next read sends tungstenite's reply and ends.
            Some(Ok(_)) => None,
            Some(Err(_)) | None => break,
        };
        if let Some(reply) = reply {
            if let Some(tx) = own.upgrade() {
                let _ = tx.try_send(Message::Text(reply.into()));
            }
        }
    }
    done.store(true, Ordering::Relaxed);
    lock(&chat.state).sockets.retain(|o| o.socket != socket);
    if !writer.is_finished() {
        let _ = tokio::time::timeout(WRITE_TIMEOUT, &mut writer).await;
        writer.abort();
    }
}

/// Whether a write finished in time without an error.
async fn written<E>(write: impl std::future::Future<Output = Result<(), E>>) -> bool {
    matches!(tokio::time::timeout(WRITE_TIMEOUT, write).await, Ok(Ok(())))
}

/// The socket's writer: the history first (its `is_read` from the cursors
/// before this connect), then the queue, each batch flushed once.
async fn write(
    mut sink: Sink,
    mut rx: mpsc::Receiver<Message>,
    history: Vec<Arc<Stored>>,
    cursors: [i64; 2],
    names: [Arc<str>; 2],
    overflowed: Arc<AtomicBool>,
    reader_done: Arc<AtomicBool>,
) {
    for m in &history {
        let read = cursors[1 - m.from] >= m.id;
        let frame = message_frame(m.id, &names[m.from], &m.body, &m.created, read);
        if !written(sink.feed(Message::Text(frame.into()))).await {
            return;
        }
    }
    drop(history);
    if !written(sink.flush()).await {
        return;
    }
    while let Some(first) = rx.recv().await {
        if !written(sink.feed(first)).await {
            return;
        }
        while let Ok(next) = rx.try_recv() {
            if !written(sink.feed(next)).await {
                return;
            }
        }
        if !written(sink.flush()).await {
            return;
        }
    }
    if overflowed.load(Ordering::Relaxed) && !reader_done.load(Ordering::Relaxed) {
        let close = CloseFrame {
            code: CloseCode::Again,
            reason: "the outbound queue overflowed: reconnect to replay the history".into(),
        };
        let _ = written(sink.send(Message::Close(Some(close)))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    #[test]
    fn send_frames_are_checked_by_the_servers_rules() {
        assert_eq!(parse_send(r#"{"body": "hi", "x": 1}"#), Ok("hi".to_owned()));
        assert_eq!(parse_send(r#"{"body": "  "}"#), Ok("  ".to_owned()));
        for (text, detail) in [
            ("nope", "frame is not valid JSON"),
            (
                "[1]",
                "frame must be a JSON object like {\"body\": \"...\"}",
            ),
            ("{}", "frame has no \"body\" field"),
            (r#"{"body": 3}"#, "\"body\" must be a string"),
            (r#"{"body": ""}"#, "message body may not be empty"),
            (
                r#"{"body": "a\u0000b"}"#,
                "message body may not contain the NUL character",
            ),
        ] {
            assert_eq!(parse_send(text), Err(detail), "{text}");
        }
        let long = serde_json::json!({ "body": "é".repeat(MAX_MESSAGE_CHARS + 1) }).to_string();
        assert_eq!(parse_send(&long), Err("message body is too long"));
        let longest = serde_json::json!({ "body": "é".repeat(MAX_MESSAGE_CHARS) }).to_string();
        assert!(parse_send(&longest).is_ok());
    }

    #[test]
    fn frames_have_the_servers_fields_and_times() {
        let at = Utc.with_ymd_and_hms(2025, 5, 2, 10, 45, 30).unwrap();
        assert_eq!(ws_time(&at), "2025-05-02 10:45:30");
        assert_eq!(rest_time(&at), "2025-05-02T10:45:30Z");
        let frame: Value =
            serde_json::from_str(&message_frame(7, "u", "a \"b\"", &at, true)).unwrap();
        assert_eq!(
            frame,
            serde_json::json!({"message": {"id": 7, "sender": "u", "body": "a \"b\"",
                "created": "2025-05-02 10:45:30", "is_read": true}})
        );
        let error: Value = serde_json::from_str(&error_frame("why")).unwrap();
        assert_eq!(
            error,
            serde_json::json!({"error": GENERIC_ERROR, "detail": "why"})
        );
    }

    #[test]
    fn users_register_once_and_log_in_with_their_password() {
        let relay = Relay::default();
        let body = |u: &str, p: &str| serde_json::json!({"username": u, "password": p}).to_string();
        let first = relay.register(body("alice", "long enough").as_bytes());
        assert_eq!(
            (first.status, first.body.as_str()),
            (201, r#"{"id":1,"username":"alice"}"#)
        );
        assert_eq!(
            relay
                .register(body("ALICE", "long enough").as_bytes())
                .status,
            400
        );
        assert_eq!(relay.register(body("bob", "short").as_bytes()).status, 400);
        assert_eq!(
            relay.register(body("b b", "long enough").as_bytes()).status,
            400
        );
        assert_eq!(relay.register(b"[]").status, 400);
        let login = relay.login(body("alice", "long enough").as_bytes());
        let reply: Value = serde_json::from_str(&login.body).unwrap();
        assert_eq!(login.status, 200);
        assert_eq!(reply["user"]["id"], 1);
        let token = reply["token"].as_str().unwrap();
        assert_eq!(relay.authenticate(Some(token)).unwrap().id, 1);
        assert!(relay.authenticate(Some("2")).is_none());
        assert!(relay.authenticate(Some("x")).is_none());
        assert_eq!(
            relay.login(body("alice", "wrong one!").as_bytes()).status,
            401
        );
        assert_eq!(
            relay.login(body("carol", "long enough").as_bytes()).status,
            401
        );
    }

    #[test]
    fn a_pair_has_one_chat_and_the_list_counts_unread_messages() {
        let relay = Relay::default();
        for name in ["a1", "b2", "c3"] {
            let body = serde_json::json!({"username": name, "password": "12345678"}).to_string();
            assert_eq!(relay.register(body.as_bytes()).status, 201);
        }
        let [a, b] = [1, 2].map(|id| relay.authenticate(Some(&id.to_string())).unwrap());
        let created = relay.create_chat(&a, br#"{"user_id": 2}"#);
        assert_eq!(created.status, 201);
        let again = relay.create_chat(&b, br#"{"user_id": 1}"#);
        assert_eq!(again.status, 200);
        let view: Value = serde_json::from_str(&again.body).unwrap();
        assert_eq!(
            (view["id"].as_i64(), view["other_user"]["username"].as_str()),
            (Some(1), Some("a1"))
        );
        assert_eq!(view["last_message"], Value::Null);
        for body in [
            &br#"{"user_id": 1}"#[..],
            br#"{"user_id": 9}"#,
            br#"{"user_id": "2"}"#,
            b"[2]",
        ] {
            assert_eq!(relay.create_chat(&a, body).status, 400);
        }
        assert_eq!(relay.create_chat(&a, br#"{"user_id": 3}"#).status, 201);
        let chat = relay.chat(1).unwrap();
        relay.post(&chat, 0, "one".into());
        relay.post(&chat, 0, "two".into());
        let list: Value = serde_json::from_str(&relay.list_chats(&b).body).unwrap();
        assert_eq!(list.as_array().unwrap().len(), 1);
        assert_eq!(
            (
                list[0]["unread_count"].as_u64(),
                list[0]["last_message"]["body"].as_str()
            ),
            (Some(2), Some("two"))
        );
        let list: Value = serde_json::from_str(&relay.list_chats(&a).body).unwrap();
        // Chat 1 has the newer activity (or, in the same second, chat 2 the
        // higher id); a's own messages are never unread for a.
        assert_eq!(list.as_array().unwrap().len(), 2);
        let one = list
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == 1)
            .unwrap();
        assert_eq!(one["unread_count"], 0);
    }
}
