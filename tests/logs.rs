//! What the real binary logs: each request's and each socket's lines carry
//! their ids, a client's mistakes are never ERROR lines, and nothing
//! secret is written even at `RUST_LOG=trace`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::io::{Read as _, Write as _};
use std::time::Duration;

use common::hostile::{client_frame, open_raw, write_raw, PING};
use common::process::ServerProcess;
use common::Api;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};

const SECRET: &str = "log test secret, at least 32 bytes long";
const PASSWORD: &str = "a password nobody may read";

/// A running `chat-server` with JSON logs on its own fresh database.
struct Server {
    process: ServerProcess,
    database_url: String,
    _data_dir: tempfile::TempDir,
    _database: chat_persistence::testing::TestDatabase,
}

impl Server {
    fn start(extra_env: &[(&str, &str)]) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let database = chat_persistence::testing::TestDatabase::create().unwrap();
        let data = data_dir.path().to_str().unwrap().to_owned();
        let mut env = vec![
            ("CHAT_DATA_DIR", data.as_str()),
            ("DATABASE_URL", database.url()),
            ("CHAT_JWT_SECRET", SECRET),
        ];
        env.extend_from_slice(extra_env);
        let process = ServerProcess::start(&env).unwrap();
        Self {
            process,
            database_url: database.url().to_owned(),
            _data_dir: data_dir,
            _database: database,
        }
    }

    fn api(&self) -> Api {
        Api::new(self.process.port)
    }

    /// Every JSON line logged so far.
    fn lines(&self) -> Vec<Value> {
        self.process
            .logs()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
            .collect()
    }

    /// Waits until a line says `message`, and returns it.
    async fn wait_for_line(&self, message: &str) -> Value {
        self.wait_for(|l| l["fields"]["message"] == message).await
    }

    /// Waits until a line is `wanted` (the logs are read on other threads).
    async fn wait_for(&self, wanted: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..250 {
            if let Some(line) = self.lines().into_iter().find(&wanted) {
                return line;
            }
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no such line: {}", self.process.logs());
    }
}

/// Registers and logs in `username`; returns the token.
async fn sign_up(api: &Api, username: &str) -> String {
    let credentials = json!({"username": username, "password": PASSWORD});
    assert_eq!(
        api.post_json("/api/auth/register/", None, &credentials)
            .await
            .status,
        201
    );
    let login = api.post_json("/api/auth/login/", None, &credentials).await;
    login.body["token"].as_str().unwrap().to_owned()
}

/// The value of `field` in the line's innermost span, or any enclosing one.
fn span_field<'a>(line: &'a Value, field: &str) -> Option<&'a Value> {
    line["spans"]
        .as_array()?
        .iter()
        .rev()
        .find_map(|span| span.get(field))
}

#[actix_web::test]
async fn a_clients_mistakes_are_never_logged_as_errors() {
    let server = Server::start(&[]);
    let api = server.api();

    // A malformed request line: actix-http logs "stream error: request
    // parse error" at ERROR unless told not to.
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", server.process.port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.write_all(b"NOT A REQUEST LINE\x01\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // A ping in fragments (control frames may not be): actix-http's codec
    // logs "Unfinished fragment" at ERROR; the socket gets 1002.
    let token = sign_up(&api, "pinger").await;
    let socket = open_raw(&api, &format!("/ws/v2/?token={token}")).await;
    let mut socket = write_raw(socket, &client_frame(false, PING, b"half")).await;
    let closed = server.wait_for_line("socket closed").await;
    assert_eq!(closed["fields"]["code"], 1002, "{closed}");
    while let Ok(Some(_)) =
        actix_web::rt::time::timeout(Duration::from_secs(2), socket.next()).await
    {}

    let logs = server.process.logs();
    let errors: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains("\"level\":\"ERROR\""))
        .collect();
    assert!(
        errors.is_empty(),
        "ERROR lines for a client's mistakes: {errors:?}"
    );
}

#[actix_web::test]
async fn every_line_of_a_request_or_a_socket_carries_its_id() {
    let server = Server::start(&[]);
    let api = server.api();
    let token = sign_up(&api, "alice").await;

    // A sane id is honoured and echoed.
    let response = api
        .client
        .get(api.url("/api/users/"))
        .bearer_auth(&token)
        .insert_header(("X-Request-Id", "trace-me-42"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers().get("x-request-id").unwrap(),
        "trace-me-42"
    );
    // Others are replaced: too long, or with what could forge a log line.
    for insane in [
        "x".repeat(129),
        "two words".to_owned(),
        "tab\there".to_owned(),
    ] {
        let response = api
            .client
            .get(api.url("/healthz"))
            .insert_header(("X-Request-Id", insane.as_str()))
            .send()
            .await
            .unwrap();
        let id = response
            .headers()
            .get("x-request-id")
            .unwrap()
            .to_str()
            .unwrap();
        assert_ne!(id, insane);
        assert_eq!(id.len(), 16, "{id}");
    }
    // None given: one is made.
    let response = api.client.get(api.url("/nowhere")).send().await.unwrap();
    let made = response
        .headers()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(made.len(), 16);

    let access = server
        .wait_for(|l| l["target"] == "access" && l["fields"]["path"] == "/api/users/")
        .await;
    assert_eq!(
        span_field(&access, "request_id").unwrap(),
        "trace-me-42",
        "{access}"
    );
    server
        .wait_for(|l| {
            l["fields"]["path"] == "/nowhere" && span_field(l, "request_id") == Some(&json!(made))
        })
        .await;

    // A socket: its close line names the socket and the handshake.
    let (_, mut socket) = api
        .client
        .ws(api.ws_url("/ws/v2/"))
        .bearer_auth(&token)
        .set_header("X-Request-Id", "socket-handshake-7")
        .connect()
        .await
        .unwrap();
    let _hello = socket.next().await;
    socket.send(awc::ws::Message::Close(None)).await.unwrap();
    let closed = server.wait_for_line("socket closed").await;
    assert_eq!(closed["span"]["name"], "socket", "{closed}");
    let socket_id = closed["span"]["socket_id"].as_str().expect("a socket id");
    assert_eq!(socket_id.len(), 16);
    assert_eq!(
        span_field(&closed, "request_id").unwrap(),
        "socket-handshake-7",
        "{closed}"
    );
    assert_eq!(closed["span"]["protocol"], "v2");
}

#[actix_web::test]
async fn nothing_secret_reaches_the_logs_even_at_trace() {
    let server = Server::start(&[("RUST_LOG", "trace")]);
    let api = server.api();
    let alice = sign_up(&api, "alice").await;
    let _bob = sign_up(&api, "bob").await;
    // The token on REST (header), on a seed socket (`?token=`) and on a v2
    // socket (header), a message sent on each.
    assert_eq!(api.get("/api/users/", Some(&alice)).await.status, 200);
    let chat = api
        .post_json("/api/chats/create/", Some(&alice), &json!({"user_id": 2}))
        .await;
    let chat = chat.body["id"].as_i64().unwrap();
    let (_, mut seed) = api
        .client
        .ws(api.ws_url(&format!("/ws/chat/{chat}/?token={alice}")))
        .connect()
        .await
        .unwrap();
    seed.send(awc::ws::Message::Text(r#"{"body": "hello"}"#.into()))
        .await
        .unwrap();
    assert!(matches!(
        seed.next().await,
        Some(Ok(awc::ws::Frame::Text(_)))
    ));
    let (_, mut v2) = api
        .client
        .ws(api.ws_url("/ws/v2/"))
        .bearer_auth(&alice)
        .connect()
        .await
        .unwrap();
    let _hello = v2.next().await;
    // A wrong token too: refusals must not echo what was tried.
    let refused = api
        .client
        .ws(api.ws_url(&format!("/ws/v2/?token={alice}x")))
        .connect()
        .await;
    assert!(refused.is_err());
    seed.send(awc::ws::Message::Close(None)).await.unwrap();
    v2.send(awc::ws::Message::Close(None)).await.unwrap();
    server.wait_for_line("socket closed").await;

    let logs = server.process.logs();
    assert!(logs.contains("\"level\":\"TRACE\""), "not at trace: {logs}");
    assert!(
        logs.contains("/ws/chat/"),
        "the handshake is logged: {logs}"
    );
    let mut secrets = vec![
        ("the password", PASSWORD.to_owned()),
        ("the JWT secret", SECRET.to_owned()),
    ];
    secrets.push(("a token", alice.clone()));
    // A token's signature alone is as good as the token to look for.
    secrets.push((
        "a token's signature",
        alice.rsplit('.').next().unwrap().to_owned(),
    ));
    // A PostgreSQL URL's password (TEST_DATABASE_URL), if it has one.
    if let Some((_, rest)) = server.database_url.split_once("://") {
        if let Some((userinfo, _)) = rest.rsplit_once('@') {
            if let Some((_, password)) = userinfo.split_once(':') {
                secrets.push(("the database password", password.to_owned()));
            }
        }
    }
    for (what, secret) in secrets {
        assert!(!logs.contains(&secret), "{what} reached the logs");
    }
}
