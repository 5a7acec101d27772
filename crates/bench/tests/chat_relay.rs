#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking
//! The relay (`chat-relay`, the benchmark's reference) in-process on
//! 127.0.0.1:0, driven like a client of the seed API: two users, a chat,
//! both seed sockets, messages both ways with the server's fields, an
//! error frame, the history replayed on reconnect with its `is_read`
//! marks, the chat list, the handshake's refusals, and keep-alive.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chat_bench::conn::{self, ConnectError, Ws};
use chat_bench::plan::Participant;
use chat_bench::relay::{self, Relay};
use chat_bench::setup::Api;
use chat_bench::target::Target;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::Message;

async fn start() -> SocketAddr {
    let listener = relay::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(relay::run(listener, Arc::new(Relay::default())));
    addr
}

/// Runs blocking REST calls off the runtime.
async fn rest<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

async fn open(addr: SocketAddr, chat: i64, token: &str) -> Result<Ws, ConnectError> {
    let url = Target::local(addr).ws_url(chat, token);
    conn::connect(addr, &url, None, Duration::from_secs(5))
        .await
        .map(|(ws, _)| ws)
}

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame within 5 s")
            .expect("the socket is open")
            .expect("a valid frame");
        if let Message::Text(text) = frame {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

/// No frame arrives within a short while.
async fn quiet(ws: &mut Ws) {
    let frame = tokio::time::timeout(Duration::from_millis(200), ws.next()).await;
    assert!(frame.is_err(), "unexpected frame {frame:?}");
}

async fn say(ws: &mut Ws, body: &str) {
    ws.send(Message::text(json!({ "body": body }).to_string()))
        .await
        .unwrap();
}

/// The message of a `{"message": {...}}` frame, with exactly the server's
/// fields.
fn message(frame: &Value) -> &serde_json::Map<String, Value> {
    let m = frame["message"].as_object().expect("a message frame");
    let mut keys: Vec<&str> = m.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["body", "created", "id", "is_read", "sender"],
        "{frame}"
    );
    let created = m["created"].as_str().unwrap();
    assert_eq!(created.len(), 19, "YYYY-MM-DD HH:MM:SS: {created}");
    assert_eq!(
        (&created[4..5], &created[10..11], &created[13..14]),
        ("-", " ", ":")
    );
    m
}

fn summary(m: &serde_json::Map<String, Value>) -> (&str, &str, bool) {
    (
        m["sender"].as_str().unwrap(),
        m["body"].as_str().unwrap(),
        m["is_read"].as_bool().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_chat_over_the_relay_and_the_history_replays() {
    let addr = start().await;
    let api = Api::new(&Target::local(addr));
    let (alice, bob, carol, chat, again) = {
        let api = api.clone();
        rest(move || {
            for name in ["alice", "bob", "carol"] {
                api.register(name).unwrap();
            }
            let [alice, bob, carol]: [Participant; 3] =
                ["alice", "bob", "carol"].map(|n| api.login(n).unwrap());
            let chat = api.create_chat(&alice.token, bob.user_id).unwrap();
            let again = api.create_chat(&bob.token, alice.user_id).unwrap();
            (alice, bob, carol, chat, again)
        })
        .await
    };
    assert_eq!(chat, again, "a pair has one chat");

    // The handshake's refusals, in the seed's order.
    let refused = |r: Result<Ws, ConnectError>| match r {
        Err(ConnectError::Refused(status)) => status,
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    };
    assert_eq!(refused(open(addr, chat, "999").await), 401);
    assert_eq!(refused(open(addr, chat + 100, &bob.token).await), 404);
    assert_eq!(refused(open(addr, chat, &carol.token).await), 403);

    let mut a = open(addr, chat, &alice.token).await.unwrap();
    let mut b = open(addr, chat, &bob.token).await.unwrap();
    quiet(&mut b).await; // an empty history

    say(&mut a, "Hi Bob!").await;
    let (to_a, to_b) = (next_json(&mut a).await, next_json(&mut b).await);
    assert_eq!(to_a, to_b, "one frame for every socket of the chat");
    assert_eq!(summary(message(&to_b)), ("alice", "Hi Bob!", false));
    say(&mut b, "Hi \"Alice\"").await;
    let (to_a, to_b) = (next_json(&mut a).await, next_json(&mut b).await);
    assert_eq!(to_a, to_b);
    assert_eq!(summary(message(&to_a)), ("bob", "Hi \"Alice\"", false));
    let first_id = message(&to_a)["id"].as_i64().unwrap();

    // Not a message: the sender alone hears of it, and the socket stays open.
    b.send(Message::text("{\"body\": 5}")).await.unwrap();
    let error = next_json(&mut b).await;
    assert_eq!(
        error,
        json!({"error": relay::GENERIC_ERROR, "detail": "\"body\" must be a string"})
    );
    say(&mut b, "still here").await;
    assert_eq!(summary(message(&next_json(&mut a).await)).1, "still here");
    assert_eq!(summary(message(&next_json(&mut b).await)).1, "still here");
    assert!(first_id > 0);

    // Bob comes back: the whole history, oldest first. Nothing was read
    // yet (his first connect replayed nothing); this connect reads it.
    b.close(None).await.unwrap();
    let mut b = open(addr, chat, &bob.token).await.unwrap();
    let replay: Vec<Value> = vec![
        next_json(&mut b).await,
        next_json(&mut b).await,
        next_json(&mut b).await,
    ];
    let replayed: Vec<_> = replay.iter().map(|f| summary(message(f))).collect();
    assert_eq!(
        replayed,
        [
            ("alice", "Hi Bob!", false),
            ("bob", "Hi \"Alice\"", false),
            ("bob", "still here", false)
        ]
    );
    quiet(&mut b).await;
    // Live messages still reach the reconnected socket, once.
    say(&mut a, "welcome back").await;
    assert_eq!(summary(message(&next_json(&mut b).await)).1, "welcome back");
    assert_eq!(summary(message(&next_json(&mut a).await)).1, "welcome back");
    quiet(&mut b).await;

    // Bob read Alice's first message at his reconnect; Alice has read none
    // of Bob's (she never reconnected).
    let (alice_list, bob_list) = {
        let (api, alice, bob) = (api.clone(), alice.clone(), bob.clone());
        rest(move || {
            (
                api.get("/api/chats/", Some(&alice.token)).unwrap(),
                api.get("/api/chats/", Some(&bob.token)).unwrap(),
            )
        })
        .await
    };
    assert_eq!(alice_list.status, 200);
    let entry = &alice_list.body[0];
    assert_eq!(entry["id"], chat);
    assert_eq!(
        entry["other_user"],
        json!({"id": bob.user_id, "username": "bob"})
    );
    assert_eq!(entry["last_message"]["body"], "welcome back");
    assert_eq!(entry["last_message"]["sender"], "alice");
    assert_eq!(entry["unread_count"], 2);
    // "welcome back" came after Bob's replay: still unread for him.
    assert_eq!(bob_list.body[0]["unread_count"], 1);

    b.close(None).await.unwrap();
    let mut b = open(addr, chat, &bob.token).await.unwrap();
    let mut read = Vec::new();
    for _ in 0..4 {
        read.push(summary(message(&next_json(&mut b).await)).2);
    }
    // Alice's first message, read at the last connect; Bob's own two are
    // for Alice, who has read none; "welcome back" was not replayed then.
    assert_eq!(read, [true, false, false, false]);
    quiet(&mut b).await;
    a.close(None).await.unwrap();
    b.close(None).await.unwrap();
}

/// Two requests written back to back on one connection get two answers on
/// it, in order (keep-alive and pipelining); `Connection: close` ends it.
#[tokio::test]
async fn rest_calls_share_one_connection() {
    let addr = start().await;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = r#"{"username": "dave", "password": "12345678"}"#;
    let request = |path: &str, close: bool| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n{}\r\n{body}",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        )
    };
    let both = request("/api/auth/register/", false) + &request("/api/auth/login/", true);
    stream.write_all(both.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer))
        .await
        .expect("the relay closes after Connection: close")
        .unwrap();
    let first = answer.find("HTTP/1.1 201 Created").expect(&answer);
    let second = answer.find("HTTP/1.1 200 OK").expect(&answer);
    assert!(first < second, "{answer}");
    assert!(
        answer.ends_with(r#"{"token":"1","user":{"id":1,"username":"dave"}}"#),
        "{answer}"
    );
}
