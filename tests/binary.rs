//! The `chat-server` binary itself: configured by environment variables,
//! stopped by SIGTERM, and careful with what it logs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::time::Duration;

use awc::ws::{Frame, Message};
use common::process::ServerProcess;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};

/// A running `chat-server` process on its own fresh database.
struct Server {
    process: ServerProcess,
    data_dir: tempfile::TempDir,
    _database: chat_persistence::testing::TestDatabase,
}

impl Server {
    fn start(extra_env: &[(&str, &str)]) -> Result<Self, String> {
        let data_dir = tempfile::tempdir().unwrap();
        let database = chat_persistence::testing::TestDatabase::create().unwrap();
        let data_dir_path = data_dir.path().to_str().unwrap().to_owned();
        let mut env = vec![
            ("CHAT_DATA_DIR", data_dir_path.as_str()),
            ("DATABASE_URL", database.url()),
        ];
        env.extend_from_slice(extra_env);
        let process = ServerProcess::start(&env)?;
        Ok(Self {
            process,
            data_dir,
            _database: database,
        })
    }
}

impl std::ops::Deref for Server {
    type Target = ServerProcess;
    fn deref(&self) -> &ServerProcess {
        &self.process
    }
}

impl std::ops::DerefMut for Server {
    fn deref_mut(&mut self) -> &mut ServerProcess {
        &mut self.process
    }
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
fn a_bare_word_or_a_missing_directory_as_database_url_is_refused() {
    let error = Server::start(&[("DATABASE_URL", "garbage")])
        .err()
        .expect("refused");
    assert!(error.contains("expected sqlite://<path>"), "{error}");
    let missing = std::env::temp_dir().join("chat-server-no-such-dir-3f9a/chat.sqlite3");
    let error = Server::start(&[("DATABASE_URL", &format!("sqlite://{}", missing.display()))])
        .err()
        .expect("refused");
    assert!(error.contains("does not exist"), "{error}");
    assert!(!missing.parent().unwrap().exists());
}

#[test]
fn sigint_stops_the_server_too() {
    let mut server = Server::start(&[]).unwrap();
    server.signal("INT");
    assert!(server.wait_for_exit(Duration::from_secs(15)).success());
    // A generated secret was kept for the next start.
    assert!(server.data_dir.path().join("jwt-secret").exists());
}
