//! Helpers for protocol v2 end to end: the `/ws/v2/` socket as a client
//! sees it, and the v2 REST routes.

use std::time::Duration;

use serde_json::{json, Value};

use super::{Api, Received, Reply, TestUser, WsClient};

/// The seqs of the `messages` of a REST page or a `history` frame, in
/// order.
pub fn seqs(page: &Value) -> Vec<i64> {
    page["messages"]
        .as_array()
        .expect("a messages array")
        .iter()
        .map(|m| m["seq"].as_i64().expect("a seq"))
        .collect()
}

/// A v2 socket, its `hello` already read.
pub struct V2Client {
    pub socket: WsClient,
    pub hello: Value,
}

impl Api {
    /// Opens `/ws/v2/` with `?token=` and reads the `hello`.
    pub async fn connect_v2(&self, user: &TestUser) -> V2Client {
        let mut socket = self
            .try_connect(&format!("/ws/v2/?token={}", user.token), None)
            .await
            .unwrap_or_else(|status| panic!("v2 socket refused with {status}"));
        let hello = socket.next_json().await;
        assert_eq!(hello["type"], "hello", "the first frame is hello: {hello}");
        V2Client { socket, hello }
    }

    /// `GET /api/chats/<chat>/messages/?<query>`
    pub async fn messages_page(&self, user: &TestUser, chat: i64, query: &str) -> Reply {
        self.get(
            &format!("/api/chats/{chat}/messages/?{query}"),
            Some(&user.token),
        )
        .await
    }

    /// `POST /api/chats/<chat>/messages/` with `{"body", "client_id"}`.
    pub async fn post_message(
        &self,
        user: &TestUser,
        chat: i64,
        body: &str,
        client_id: &str,
    ) -> Reply {
        self.post_json(
            &format!("/api/chats/{chat}/messages/"),
            Some(&user.token),
            &json!({"body": body, "client_id": client_id}),
        )
        .await
    }

    /// `POST /api/chats/<chat>/read/` with `{"up_to"}`.
    pub async fn post_read(&self, user: &TestUser, chat: i64, up_to: i64) -> Reply {
        self.post_json(
            &format!("/api/chats/{chat}/read/"),
            Some(&user.token),
            &json!({"up_to": up_to}),
        )
        .await
    }
}

impl V2Client {
    pub async fn send_frame(&mut self, frame: Value) {
        self.socket.send_json(&frame).await;
    }

    /// `send` in `chat`.
    pub async fn send(&mut self, chat: i64, client_id: &str, body: &str) {
        self.send_frame(
            json!({"type": "send", "chat_id": chat, "client_id": client_id, "body": body}),
        )
        .await;
    }

    /// The next frame of any type; panics on close or after the timeout.
    pub async fn next_any(&mut self) -> Value {
        self.socket.next_json().await
    }

    /// The next frame that is not `presence` (which depends on who else
    /// connects, and when): most tests are about something else.
    pub async fn next(&mut self) -> Value {
        loop {
            let frame = self.next_any().await;
            if frame["type"] != "presence" {
                return frame;
            }
        }
    }

    /// The next frame, which must be of `kind` (presence skipped).
    pub async fn expect(&mut self, kind: &str) -> Value {
        let frame = self.next().await;
        assert_eq!(frame["type"], kind, "expected a {kind} frame, got {frame}");
        frame
    }

    /// The next frame, which must be an `error` with `code`.
    pub async fn expect_error(&mut self, code: &str) -> Value {
        let frame = self.expect("error").await;
        assert_eq!(frame["code"], code, "{frame}");
        assert!(
            frame["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{frame}"
        );
        frame
    }

    /// Sends `send` and returns the message of its `ack`.
    pub async fn send_acked(&mut self, chat: i64, client_id: &str, body: &str) -> Value {
        self.send(chat, client_id, body).await;
        let ack = self.expect("ack").await;
        assert_eq!(ack["client_id"], client_id, "{ack}");
        ack["message"].clone()
    }

    /// A `history` request and its answer.
    pub async fn history(&mut self, mut request: Value) -> Value {
        request["type"] = json!("history");
        self.send_frame(request).await;
        self.expect("history").await
    }

    /// Nothing but presence arrives for `wait`.
    pub async fn expect_quiet(&mut self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return;
            }
            match self.socket.receive_until_gone_within(left).await {
                None => return,
                Some(Received::Json(frame)) if frame["type"] == "presence" => {}
                Some(other) => panic!("expected quiet, got {other:?}"),
            }
        }
    }

    /// The close code the server closes with, within `within`.
    pub async fn expect_close(&mut self, within: Duration) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.socket.receive_until_gone_within(left).await {
                Some(Received::Close(code)) => return code,
                Some(Received::Json(_)) => {}
                None => panic!("the socket did not close within {within:?}"),
            }
        }
    }

    /// The chat state of `chat` in the hello.
    pub fn chat_in_hello(&self, chat: i64) -> Value {
        self.hello["chats"]
            .as_array()
            .and_then(|chats| chats.iter().find(|c| c["id"] == chat))
            .cloned()
            .unwrap_or_else(|| panic!("chat {chat} not in hello: {}", self.hello))
    }

    pub async fn close(self) {
        self.socket.close().await;
    }
}
