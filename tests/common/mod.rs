//! Shared helpers for the end-to-end tests: a real server on a random port
//! with its own fresh database, a real HTTP client and a real WebSocket
//! client. Logs are shown only when `TEST_LOG` is set.

#![allow(dead_code)] // each test binary uses a different subset

pub mod deployment;
pub mod hostile;
pub mod process;
pub mod redis;
pub mod v2;

use std::time::Duration;

use actix_web::web::Bytes;
use awc::ws::{Codec, Frame, Message};
use awc::{BoxedSocket, Client};
use chat_api::delivery::Hub;
use chat_persistence::testing::TestDatabase;
use chat_server::configuration::{LogFormat, Settings};
use chat_server::startup::{Application, Stopper};
use clap::Parser as _;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};

pub const FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// The JWT secret of servers started by [`spawn_app_with`].
pub const JWT_SECRET: &str = "test secret that is at least 32 bytes long";
pub const GENERIC_ERROR: &str = "An error occurred while processing your message";

/// A server's HTTP and WebSocket face, wherever the server runs (in this
/// process or as a child process): the REST and socket helpers live here.
#[derive(Clone)]
pub struct Api {
    pub port: u16,
    pub client: Client,
}

impl Api {
    pub fn new(port: u16) -> Self {
        Self {
            port,
            client: Client::builder().timeout(Duration::from_secs(30)).finish(),
        }
    }
}

/// A server running in this process, with its own database; stopped when
/// dropped.
pub struct TestApp {
    pub api: Api,
    pub hub: Hub,
    /// Where `/metrics` is served by itself (`None` with `--metrics-addr
    /// main` or `off`).
    pub metrics_port: Option<u16>,
    server_thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
    stopper: Stopper,
    _data_dir: tempfile::TempDir,
    database: TestDatabase,
    /// `TEST_STORE=memory`: the server keeps its data in memory, not in
    /// `database`.
    in_memory: bool,
}

/// Starts the real server on 127.0.0.1:<random port> with a fresh database
/// (SQLite file, or a new PostgreSQL database when `TEST_DATABASE_URL` is set
/// in the postgres build). Extra flags override the test defaults.
pub async fn spawn_app_with(extra_args: &[&str]) -> TestApp {
    if std::env::var_os("TEST_LOG").is_some() {
        chat_server::telemetry::init(LogFormat::Text);
    }
    let data_dir = tempfile::tempdir().expect("temp dir");
    let database = TestDatabase::create().expect("test database");
    let data_dir_arg = data_dir.path().to_string_lossy().into_owned();
    // `TEST_STORE=memory` (in a `memory` build) runs the suite against the
    // in-memory store, to show it behaves as the real ones do.
    let in_memory = std::env::var("TEST_STORE").as_deref() == Ok("memory");
    let database_url = if in_memory {
        "memory://".to_owned()
    } else {
        database.url().to_owned()
    };
    let mut args = vec![
        "chat-server",
        "--addr",
        "127.0.0.1:0",
        "--data-dir",
        &data_dir_arg,
        "--database-url",
        &database_url,
        "--jwt-secret",
        JWT_SECRET,
        "--workers",
        "1",
        "--db-pool-size",
        "4",
        // Tests send bursts far faster than people do; tests of the limit
        // set their own (a flag given again overrides).
        "--ws-rate",
        "100000",
        "--ws-burst",
        "100000",
        // Never the fixed default port: many servers run at once.
        "--metrics-addr",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra_args);
    let settings = Settings::try_parse_from(args).expect("settings");
    // The server gets a thread and an actix System of its own, so that
    // dropping the TestApp can stop it and wait: its database connections
    // are closed before the test returns, never left to the process's exit
    // (where a live PostgreSQL TLS connection once crashed a test binary).
    let (started, starting) = std::sync::mpsc::channel();
    let server_thread = std::thread::Builder::new()
        .name("actix-test-server".into())
        .spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let app = Application::build(&settings).expect("application builds");
                started
                    .send((app.port(), app.metrics_port(), app.stopper(), app.hub()))
                    .expect("the test waits for its server");
                app.run().await
            })
        })
        .expect("server thread");
    let (port, metrics_port, stopper, hub) = starting.recv().expect("the server starts");
    TestApp {
        api: Api::new(port),
        hub,
        metrics_port,
        server_thread: Some(server_thread),
        stopper,
        _data_dir: data_dir,
        database,
        in_memory,
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// A registered, logged-in user.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: i64,
    pub username: String,
    pub token: String,
}

/// A status and a parsed JSON body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl std::ops::Deref for TestApp {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stopper.stop_now();
        if let Some(thread) = self.server_thread.take() {
            let _ = thread.join();
        }
    }
}

impl TestApp {
    /// The database the server stores in, for a test to set up rows the
    /// API cannot make (or `None` with the in-memory store, which only the
    /// server's own process can reach).
    pub fn database(&self) -> Option<&TestDatabase> {
        (!self.in_memory).then_some(&self.database)
    }

    pub async fn stop(&self) {
        self.stopper.stop().await;
    }

    /// Waits until the hub holds `expected` connections (sessions clean up
    /// asynchronously after a socket closes).
    pub async fn wait_for_connections(&self, expected: usize) {
        for _ in 0..200 {
            if self.hub.connection_count() == expected {
                return;
            }
            actix_web::rt::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(
            self.hub.connection_count(),
            expected,
            "hub connection count"
        );
    }
}

impl Api {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }

    pub async fn post_json(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        self.post_raw(path, token, Some("application/json"), body.to_string())
            .await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> Reply {
        let mut request = self.client.post(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(content_type) = content_type {
            request = request.insert_header(("Content-Type", content_type));
        }
        let response = request.send_body(body.into()).await.expect("request sent");
        read_reply(response).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request sent");
        read_reply(response).await
    }

    pub async fn get_with_header(&self, path: &str, name: &str, value: &str) -> Reply {
        let response = self
            .client
            .get(self.url(path))
            .insert_header((name, value))
            .send()
            .await
            .expect("request sent");
        read_reply(response).await
    }

    pub async fn register(&self, username: &str, password: &str) -> Reply {
        self.post_json(
            "/api/auth/register/",
            None,
            &json!({"username": username, "password": password}),
        )
        .await
    }

    pub async fn login(&self, username: &str, password: &str) -> Reply {
        self.post_json(
            "/api/auth/login/",
            None,
            &json!({"username": username, "password": password}),
        )
        .await
    }

    /// Registers and logs in `username` with a fixed valid password.
    pub async fn user(&self, username: &str) -> TestUser {
        let registered = self.register(username, "correct horse battery").await;
        assert_eq!(
            registered.status, 201,
            "register {username}: {:?}",
            registered.body
        );
        let login = self.login(username, "correct horse battery").await;
        assert_eq!(login.status, 200, "login {username}: {:?}", login.body);
        TestUser {
            id: login.body["user"]["id"].as_i64().expect("user id"),
            username: username.to_owned(),
            token: login.body["token"].as_str().expect("token").to_owned(),
        }
    }

    /// Users `alice` and `bob`, and their chat's id.
    pub async fn two_users_and_a_chat(&self) -> (TestUser, TestUser, i64) {
        let alice = self.user("alice").await;
        let bob = self.user("bob").await;
        let chat = self.chat(&alice, &bob).await;
        (alice, bob, chat)
    }

    /// Creates (or finds) the chat between `a` and `b`, returns its id.
    pub async fn chat(&self, a: &TestUser, b: &TestUser) -> i64 {
        let reply = self
            .post_json(
                "/api/chats/create/",
                Some(&a.token),
                &json!({"user_id": b.id}),
            )
            .await;
        assert!(matches!(reply.status, 200 | 201), "create chat: {reply:?}");
        reply.body["id"].as_i64().expect("chat id")
    }

    pub async fn chats_of(&self, user: &TestUser) -> Vec<Value> {
        let reply = self.get("/api/chats/", Some(&user.token)).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        reply.body.as_array().expect("array").clone()
    }

    /// Opens the chat socket, authenticating with the `?token=` query form.
    pub async fn connect(&self, user: &TestUser, chat: i64) -> WsClient {
        self.try_connect(&format!("/ws/chat/{chat}/?token={}", user.token), None)
            .await
            .unwrap_or_else(|status| panic!("websocket refused with {status}"))
    }

    /// Opens a socket at `path`; `Err(status)` when the handshake is refused.
    pub async fn try_connect(&self, path: &str, bearer: Option<&str>) -> Result<WsClient, u16> {
        let mut request = self.client.ws(self.ws_url(path)).max_frame_size(1 << 20);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        match request.connect().await {
            Ok((_, framed)) => Ok(WsClient { framed }),
            Err(awc::error::WsClientError::InvalidResponseStatus(status)) => Err(status.as_u16()),
            Err(other) => panic!("websocket connect failed: {other}"),
        }
    }
}

async fn read_reply<S>(mut response: awc::ClientResponse<S>) -> Reply
where
    S: futures_util::Stream<Item = Result<Bytes, awc::error::PayloadError>> + Unpin,
{
    let status = response.status().as_u16();
    let bytes = response.body().limit(16 << 20).await.expect("body read");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!(
                "status {status}: body is not JSON: {:?}",
                String::from_utf8_lossy(&bytes)
            )
        })
    };
    Reply { status, body }
}

pub struct WsClient {
    framed: actix_codec::Framed<BoxedSocket, Codec>,
}

/// What the server sent, with control frames other than close filtered out.
#[derive(Debug)]
pub enum Received {
    Json(Value),
    Close(Option<u16>),
}

impl WsClient {
    pub async fn send_text(&mut self, text: &str) {
        self.framed
            .send(Message::Text(text.to_owned().into()))
            .await
            .expect("send text");
    }

    pub async fn send_json(&mut self, value: &Value) {
        self.send_text(&value.to_string()).await;
    }

    pub async fn send_body(&mut self, body: &str) {
        self.send_json(&json!({ "body": body })).await;
    }

    /// Sends `{"body": body}`; `false` when the connection is gone.
    pub async fn try_send_body(&mut self, body: &str) -> bool {
        let frame = json!({ "body": body }).to_string();
        self.framed.send(Message::Text(frame.into())).await.is_ok()
    }

    pub async fn send_message(&mut self, message: Message) {
        self.framed.send(message).await.expect("send frame");
    }

    /// The next data or close frame; pings are answered, pongs skipped.
    pub async fn receive(&mut self) -> Received {
        loop {
            let frame = actix_web::rt::time::timeout(FRAME_TIMEOUT, self.framed.next())
                .await
                .expect("a frame within the timeout");
            match frame {
                Some(Ok(Frame::Text(bytes))) => {
                    return Received::Json(serde_json::from_slice(&bytes).expect("JSON frame"))
                }
                Some(Ok(Frame::Close(reason))) => {
                    return Received::Close(reason.map(|r| r.code.into()))
                }
                Some(Ok(Frame::Ping(bytes))) => self.send_message(Message::Pong(bytes)).await,
                Some(Ok(Frame::Pong(_))) => {}
                Some(Ok(other)) => panic!("unexpected frame {other:?}"),
                Some(Err(error)) => panic!("websocket error {error}"),
                None => return Received::Close(None),
            }
        }
    }

    /// Like [`receive`](Self::receive), but a transport error or a dropped
    /// connection is `Close(None)` rather than a panic (for tests that kill
    /// the server under its clients), and `None` when nothing arrives within
    /// `timeout`.
    pub async fn receive_until_gone_within(&mut self, timeout: Duration) -> Option<Received> {
        loop {
            let frame = actix_web::rt::time::timeout(timeout, self.framed.next())
                .await
                .ok()?;
            match frame {
                Some(Ok(Frame::Text(bytes))) => {
                    return Some(Received::Json(
                        serde_json::from_slice(&bytes).expect("JSON frame"),
                    ))
                }
                Some(Ok(Frame::Close(reason))) => {
                    return Some(Received::Close(reason.map(|r| r.code.into())))
                }
                Some(Ok(Frame::Ping(bytes))) => {
                    if self.framed.send(Message::Pong(bytes)).await.is_err() {
                        return Some(Received::Close(None));
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Some(Received::Close(None)),
            }
        }
    }

    /// Every message frame until nothing arrives for `silence`: a whole
    /// history replay. Panics on anything but message frames.
    pub async fn drain_messages(&mut self, silence: Duration) -> Vec<Value> {
        let mut messages = Vec::new();
        while let Ok(frame) = actix_web::rt::time::timeout(silence, self.framed.next()).await {
            match frame {
                Some(Ok(Frame::Text(bytes))) => {
                    let frame: Value = serde_json::from_slice(&bytes).expect("JSON frame");
                    assert!(
                        frame.get("message").is_some(),
                        "expected a message, got {frame}"
                    );
                    messages.push(frame["message"].clone());
                }
                Some(Ok(Frame::Ping(bytes))) => self.send_message(Message::Pong(bytes)).await,
                Some(Ok(Frame::Pong(_))) => {}
                other => panic!("expected history, got {other:?}"),
            }
        }
        messages
    }

    /// The next JSON frame; panics on close.
    pub async fn next_json(&mut self) -> Value {
        match self.receive().await {
            Received::Json(value) => value,
            Received::Close(code) => panic!("socket closed ({code:?}) while a frame was expected"),
        }
    }

    /// The next frame, which must be a message; returns its `message` object.
    pub async fn next_message(&mut self) -> Value {
        let frame = self.next_json().await;
        assert!(
            frame.get("message").is_some(),
            "expected a message frame, got {frame}"
        );
        frame["message"].clone()
    }

    /// The next frame, which must be the documented error frame.
    pub async fn expect_error(&mut self) -> Value {
        let frame = self.next_json().await;
        assert_eq!(
            frame["error"], GENERIC_ERROR,
            "expected an error frame, got {frame}"
        );
        frame
    }

    /// Asserts nothing arrives for `wait`.
    pub async fn expect_silence(&mut self, wait: Duration) {
        if let Ok(frame) = actix_web::rt::time::timeout(wait, self.framed.next()).await {
            match frame {
                Some(Ok(Frame::Ping(_) | Frame::Pong(_))) => {}
                other => panic!("expected silence, got {other:?}"),
            }
        }
    }

    /// The raw next frame, for control-frame tests.
    pub async fn next_raw(&mut self) -> Option<Result<Frame, awc::error::WsProtocolError>> {
        actix_web::rt::time::timeout(FRAME_TIMEOUT, self.framed.next())
            .await
            .expect("a frame within the timeout")
    }

    pub async fn close(mut self) {
        let _ = self.framed.send(Message::Close(None)).await;
        let _ = self.framed.close().await;
    }
}

/// A deterministic xorshift generator: the same frames, or the same storm,
/// on every run.
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % n as u64).unwrap()
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}
