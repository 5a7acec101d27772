//! The `chat-server` binary itself: configured by environment variables,
//! stopped by SIGTERM, and careful with what it logs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use awc::ws::{Frame, Message};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};

/// A running `chat-server` process and everything it has logged so far.
struct Server {
    child: Child,
    port: u16,
    logs: Arc<Mutex<String>>,
    _data_dir: tempfile::TempDir,
    _database: chat_persistence::testing::TestDatabase,
}

impl Server {
    /// Starts the binary with JSON logs on a random port; waits for it to
    /// listen.
    fn start(extra_env: &[(&str, &str)]) -> Result<Self, String> {
        let data_dir = tempfile::tempdir().unwrap();
        let database = chat_persistence::testing::TestDatabase::create().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_chat-server"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("CHAT_ADDR", "127.0.0.1:0")
            .env("CHAT_DATA_DIR", data_dir.path())
            .env("DATABASE_URL", database.url())
            .env("CHAT_LOG_FORMAT", "json")
            .env("CHAT_WORKERS", "1")
            .env("RUST_LOG", "info")
            .envs(extra_env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let logs = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut logs = logs.lock().unwrap();
                    logs.push_str(&line);
                    logs.push('\n');
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let port = listening_port(&logs.lock().unwrap());
            if let Some(port) = port {
                return Ok(Self {
                    child,
                    port,
                    logs,
                    _data_dir: data_dir,
                    _database: database,
                });
            }
            if let Some(status) = child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100)); // let the readers drain
                return Err(format!("exited with {status}: {}", logs.lock().unwrap()));
            }
            assert!(
                Instant::now() < deadline,
                "server did not start: {}",
                logs.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn wait_for_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server still running after {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn listening_port(logs: &str) -> Option<u16> {
    logs.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|entry| entry["fields"]["message"] == "listening")
        .and_then(|entry| entry["fields"]["port"].as_u64())
        .and_then(|port| u16::try_from(port).ok())
}

async fn post(client: &awc::Client, url: String, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut request = client.post(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let mut response = request.send_json(&body).await.unwrap();
    let json = response.json::<Value>().await.unwrap_or(Value::Null);
    (response.status().as_u16(), json)
}

#[actix_web::test]
async fn sigterm_closes_sockets_with_1001_and_exits_cleanly_and_tokens_never_reach_the_logs() {
    let mut server =
        Server::start(&[("CHAT_JWT_SECRET", "binary test secret of at least 32 bytes")]).unwrap();
    let client = awc::Client::default();
    let credentials = json!({"username": "alice", "password": "correct horse battery"});
    let (status, _) = post(
        &client,
        server.url("/api/auth/register/"),
        None,
        credentials.clone(),
    )
    .await;
    assert_eq!(status, 201);
    post(
        &client,
        server.url("/api/auth/register/"),
        None,
        json!({"username": "bob", "password": "correct horse battery"}),
    )
    .await;
    let (_, login) = post(&client, server.url("/api/auth/login/"), None, credentials).await;
    let token = login["token"].as_str().unwrap().to_owned();
    let (status, chat) = post(
        &client,
        server.url("/api/chats/create/"),
        Some(&token),
        json!({"user_id": 2}),
    )
    .await;
    assert_eq!(status, 201, "{chat}");
    let (_, mut socket) = client
        .ws(format!(
            "ws://127.0.0.1:{}/ws/chat/{}/?token={token}",
            server.port, chat["id"]
        ))
        .connect()
        .await
        .unwrap();
    socket
        .send(Message::Text(r#"{"body": "before shutdown"}"#.into()))
        .await
        .unwrap();
    assert!(matches!(socket.next().await, Some(Ok(Frame::Text(_)))));

    server.signal("TERM");

    let close = actix_web::rt::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .unwrap();
    match close {
        Some(Ok(Frame::Close(Some(reason)))) => assert_eq!(u16::from(reason.code), 1001),
        other => panic!("expected a 1001 close, got {other:?}"),
    }
    assert!(server.wait_for_exit(Duration::from_secs(15)).success());
    let logs = server.logs();
    assert!(
        logs.contains("/ws/chat/"),
        "the handshake is in the access log: {logs}"
    );
    assert!(!logs.contains(&token), "a token reached the logs: {logs}");
    assert!(
        !logs.contains("correct horse"),
        "a password reached the logs"
    );
}

#[test]
fn a_short_jwt_secret_is_refused_at_start() {
    let error = Server::start(&[("CHAT_JWT_SECRET", "too short")])
        .err()
        .expect("refused");
    assert!(error.contains("at least 32 bytes"), "{error}");
}

#[test]
fn an_unknown_database_scheme_is_refused_with_a_clear_error() {
    let error = Server::start(&[("DATABASE_URL", "mysql://localhost/chat")])
        .err()
        .expect("refused");
    assert!(error.contains("unsupported scheme"), "{error}");
}

#[test]
fn sigint_stops_the_server_too() {
    let mut server = Server::start(&[]).unwrap();
    server.signal("INT");
    assert!(server.wait_for_exit(Duration::from_secs(15)).success());
    // A generated secret was kept for the next start.
    assert!(server._data_dir.path().join("jwt-secret").exists());
}
