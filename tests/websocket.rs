#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking
//! The chat socket end to end: handshake checks, history, read marking,
//! broadcast, bad frames, control frames and concurrency.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use awc::ws::{CloseCode, CloseReason, Frame, Message};
use common::{spawn_app, spawn_app_with, Received};
use serde_json::Value;

// ---- handshake ------------------------------------------------------------

#[actix_web::test]
async fn the_handshake_refuses_missing_or_bad_tokens_with_401() {
    let app = spawn_app().await;
    let (alice, _, chat) = app.two_users_and_a_chat().await;

    assert_eq!(
        app.try_connect(&format!("/ws/chat/{chat}/"), None)
            .await
            .err(),
        Some(401)
    );
    assert_eq!(
        app.try_connect(&format!("/ws/chat/{chat}/?token="), None)
            .await
            .err(),
        Some(401)
    );
    assert_eq!(
        app.try_connect(&format!("/ws/chat/{chat}/?token=garbage"), None)
            .await
            .err(),
        Some(401)
    );
    assert_eq!(
        app.try_connect(&format!("/ws/chat/{chat}/?token={}x", alice.token), None)
            .await
            .err(),
        Some(401)
    );
    assert_eq!(
        app.try_connect(&format!("/ws/chat/{chat}/"), Some("garbage"))
            .await
            .err(),
        Some(401)
    );
    // The refusal carries a JSON error body.
    let reply = app.get(&format!("/ws/chat/{chat}/"), None).await;
    assert_eq!(reply.status, 401);
    assert!(reply.body["error"].as_str().is_some());
}

#[actix_web::test]
async fn the_handshake_refuses_a_missing_chat_with_404() {
    let app = spawn_app().await;
    let (alice, _, _) = app.two_users_and_a_chat().await;

    for path in ["/ws/chat/999999/", "/ws/chat/abc/", "/ws/chat/-1/"] {
        let result = app
            .try_connect(&format!("{path}?token={}", alice.token), None)
            .await;
        assert_eq!(result.err(), Some(404), "{path}");
    }
    let reply = app.get("/ws/chat/999999/", Some(&alice.token)).await;
    assert_eq!(reply.status, 404);
    assert!(reply.body["error"].as_str().is_some());
}

#[actix_web::test]
async fn the_handshake_refuses_a_non_participant_with_403() {
    let app = spawn_app().await;
    let (_, _, chat) = app.two_users_and_a_chat().await;
    let mallory = app.user("mallory").await;

    let result = app
        .try_connect(&format!("/ws/chat/{chat}/?token={}", mallory.token), None)
        .await;

    assert_eq!(result.err(), Some(403));
    let reply = app
        .get(&format!("/ws/chat/{chat}/"), Some(&mallory.token))
        .await;
    assert_eq!(reply.status, 403);
    assert!(reply.body["error"].as_str().is_some());
}

#[actix_web::test]
async fn the_authorization_header_works_as_well_as_the_query_token() {
    let app = spawn_app().await;
    let (alice, _, chat) = app.two_users_and_a_chat().await;

    let mut socket = app
        .try_connect(&format!("/ws/chat/{chat}/"), Some(&alice.token))
        .await
        .expect("header auth accepted");
    socket.send_body("via header").await;

    assert_eq!(socket.next_message().await["body"], "via header");
}

#[actix_web::test]
async fn with_allowed_origins_set_a_foreign_origin_is_refused_with_403() {
    let app = spawn_app_with(&[
        "--allowed-origins",
        "https://chat.example, https://app.example/",
    ])
    .await;
    let (alice, _, chat) = app.two_users_and_a_chat().await;
    let path = format!("/ws/chat/{chat}/?token={}", alice.token);
    let handshake = |origin: Option<&'static str>| {
        let mut request = app.client.ws(app.ws_url(&path));
        if let Some(origin) = origin {
            request = request.origin(origin);
        }
        async move {
            match request.connect().await {
                Ok(_) => 101,
                Err(awc::error::WsClientError::InvalidResponseStatus(status)) => status.as_u16(),
                Err(other) => panic!("{other}"),
            }
        }
    };

    assert_eq!(handshake(Some("https://evil.example")).await, 403);
    assert_eq!(
        handshake(Some("https://chat.example.evil.example")).await,
        403
    );
    assert_eq!(handshake(Some("https://CHAT.example")).await, 101);
    assert_eq!(handshake(Some("https://app.example")).await, 101);
    // Non-browser clients send no Origin.
    assert_eq!(handshake(None).await, 101);
    let refused = app
        .get_with_header(
            &format!("/ws/chat/{chat}/"),
            "Origin",
            "https://evil.example",
        )
        .await;
    assert_eq!(refused.status, 403);
    assert!(refused.body["error"].as_str().is_some());
}

// ---- sending and broadcast --------------------------------------------------

#[actix_web::test]
async fn a_message_reaches_both_participants_in_the_documented_shape() {
    let app = spawn_app().await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let mut alice_socket = app.connect(&alice, chat).await;
    let mut bob_socket = app.connect(&bob, chat).await;

    alice_socket.send_body("Hello, how are you?").await;

    let to_alice = alice_socket.next_json().await;
    let to_bob = bob_socket.next_json().await;
    assert_eq!(to_alice, to_bob);
    let message = to_bob["message"].as_object().expect("message object");
    let keys: Vec<_> = message.keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 5, "{keys:?}");
    assert_eq!(message["sender"], "alice");
    assert_eq!(message["body"], "Hello, how are you?");
    assert_eq!(message["is_read"], false);
    assert!(message["id"].as_i64().is_some());
    let created = message["created"].as_str().unwrap();
    assert!(
        chrono::NaiveDateTime::parse_from_str(created, "%Y-%m-%d %H:%M:%S").is_ok(),
        "{created}"
    );
}

#[actix_web::test]
async fn bodies_are_stored_and_returned_exactly_as_sent() {
    let app = spawn_app().await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let long = "é".repeat(4096);
    let bodies = [
        "  leading and trailing spaces  ",
        "<script>alert('x')</script> & \"quotes\"",
        "emoji 👋🏽 and 中文 and עברית",
        "line\nbreak\ttab",
        "\u{1}\u{1f}\u{7f}control characters",
        " ",
        long.as_str(),
    ];
    let mut socket = app.connect(&alice, chat).await;
    for body in bodies {
        socket.send_body(body).await;
        assert_eq!(socket.next_message().await["body"], body);
    }
    socket.close().await;

    let mut bob_socket = app.connect(&bob, chat).await;
    for body in bodies {
        assert_eq!(bob_socket.next_message().await["body"], body);
    }
}

#[actix_web::test]
async fn a_message_is_not_sent_to_other_chats() {
    let app = spawn_app().await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let carol = app.user("carol").await;
    let other_chat = app.chat(&alice, &carol).await;
    let mut carol_socket = app.connect(&carol, other_chat).await;
    let mut bob_socket = app.connect(&bob, chat).await;

    bob_socket.send_body("just for alice").await;
    bob_socket.next_message().await;

    carol_socket
        .expect_silence(Duration::from_millis(300))
        .await;
}

// ---- history and read marking -------------------------------------------------

#[actix_web::test]
async fn connecting_replays_the_history_oldest_first_then_marks_it_read() {
    let app = spawn_app().await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let mut bob_socket = app.connect(&bob, chat).await;
    for i in 0..3 {
        bob_socket.send_body(&format!("bob {i}")).await;
        bob_socket.next_message().await;
    }
    bob_socket.close().await;
    assert_eq!(app.chats_of(&alice).await[0]["unread_count"], 3);

    let mut alice_socket = app.connect(&alice, chat).await;
    let history: Vec<Value> = [
        alice_socket.next_message().await,
        alice_socket.next_message().await,
        alice_socket.next_message().await,
    ]
    .into();

    let bodies: Vec<_> = history
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["bob 0", "bob 1", "bob 2"]);
    // Sent as they were before this connection read them.
    assert!(history.iter().all(|m| m["is_read"] == false));
    assert!(history
        .windows(2)
        .all(|w| w[0]["id"].as_i64() < w[1]["id"].as_i64()));
    alice_socket
        .expect_silence(Duration::from_millis(200))
        .await;
    assert_eq!(app.chats_of(&alice).await[0]["unread_count"], 0);
    // Bob now sees his messages as read.
    let mut bob_again = app.connect(&bob, chat).await;
    for _ in 0..3 {
        assert_eq!(bob_again.next_message().await["is_read"], true);
    }
}

#[actix_web::test]
async fn connecting_marks_only_the_other_users_messages_read() {
    let app = spawn_app().await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let mut alice_socket = app.connect(&alice, chat).await;
    alice_socket.send_body("from alice").await;
    alice_socket.next_message().await;
    alice_socket.close().await;

    // Alice reconnecting does not mark her own message read for Bob.
    let mut again = app.connect(&alice, chat).await;
    assert_eq!(again.next_message().await["is_read"], false);
    again.close().await;
    assert_eq!(app.chats_of(&bob).await[0]["unread_count"], 1);
}

#[actix_web::test]
async fn a_long_history_is_replayed_completely_across_pages() {
    let app = spawn_app().await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let mut socket = app.connect(&alice, chat).await;
    let total = 450; // more than two pages of 200
    for i in 0..total {
        socket.send_body(&format!("m{i}")).await;
    }
    for _ in 0..total {
        socket.next_message().await;
    }

    let mut bob_socket = app.connect(&bob, chat).await;
    for i in 0..total {
        assert_eq!(bob_socket.next_message().await["body"], format!("m{i}"));
    }
    bob_socket.expect_silence(Duration::from_millis(200)).await;
    assert_eq!(app.chats_of(&bob).await[0]["unread_count"], 0);
}

/// The replay sends the recent messages from the frames the hub kept when
/// it delivered them (the newest 1,000 of a chat), and reads the rest from
/// the database: what is older than them, and what was stored while the
/// chat had no seed socket (nothing delivered it to one, so nothing kept
/// it). Every message arrives once, in order, with its read state.
#[actix_web::test]
async fn a_replay_joins_the_kept_frames_and_the_database_without_a_gap_or_a_repeat() {
    let app = spawn_app().await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let mut socket = app.connect(&alice, chat).await;
    let live = 1100;
    for i in 0..live {
        socket.send_body(&format!("m{i}")).await;
    }
    for _ in 0..live {
        socket.next_message().await;
    }
    socket.close().await;
    // Gone from the hub, so what follows is delivered to no seed socket.
    app.wait_for_connections(0).await;
    let total = live + 5;
    for i in live..total {
        let reply = app
            .post_json(
                &format!("/api/chats/{chat}/messages/"),
                Some(&alice.token),
                &serde_json::json!({"body": format!("m{i}"), "client_id": format!("c{i}")}),
            )
            .await;
        assert_eq!(reply.status, 201, "{:?}", reply.body);
    }

    // Kept: 101..=1100. The database's first page (1..=200) reaches into
    // that run, the rest of it comes from memory, then the database again
    // for 1101..=1105.
    let mut bob_socket = app.connect(&bob, chat).await;
    for i in 0..total {
        let message = bob_socket.next_message().await;
        assert_eq!(message["body"], format!("m{i}"));
        assert_eq!(message["is_read"], false, "m{i}");
    }
    bob_socket.expect_silence(Duration::from_millis(200)).await;
    bob_socket.close().await;

    // Alice's own messages, now read by Bob: kept frames are sent as read.
    let mut again = app.connect(&alice, chat).await;
    for i in 0..total {
        let message = again.next_message().await;
        assert_eq!(message["body"], format!("m{i}"));
        assert_eq!(message["is_read"], true, "m{i}");
    }
    again.expect_silence(Duration::from_millis(200)).await;
}

/// `--replay-cache-mb 0`: nothing is kept, every replay reads the database.
#[actix_web::test]
async fn with_the_replay_cache_off_the_history_comes_from_the_database() {
    let app = spawn_app_with(&["--replay-cache-mb", "0"]).await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let mut socket = app.connect(&alice, chat).await;
    let total = 250; // more than a page
    for i in 0..total {
        socket.send_body(&format!("m{i}")).await;
    }
    for _ in 0..total {
        socket.next_message().await;
    }
    let mut bob_socket = app.connect(&bob, chat).await;
    for i in 0..total {
        let message = bob_socket.next_message().await;
        assert_eq!(message["body"], format!("m{i}"));
        assert_eq!(message["is_read"], false);
    }
    bob_socket.expect_silence(Duration::from_millis(200)).await;
    // A live message after the replay still arrives, once.
    socket.send_body("after").await;
    assert_eq!(bob_socket.next_message().await["body"], "after");
    bob_socket.expect_silence(Duration::from_millis(200)).await;
}

// ---- bad input ------------------------------------------------------------------

#[actix_web::test]
async fn malformed_frames_get_the_error_frame_and_the_connection_stays_open() {
    let app = spawn_app_with(&["--max-message-chars", "10"]).await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let mut socket = app.connect(&alice, chat).await;
    let bad_frames = [
        "",
        "hello",
        "{",
        "[]",
        "null",
        "42",
        r#""body""#,
        r#"{}"#,
        r#"{"text": "hi"}"#,
        r#"{"body": null}"#,
        r#"{"body": 42}"#,
        r#"{"body": ["hi"]}"#,
        r#"{"body": {"nested": "hi"}}"#,
        r#"{"body": ""}"#,
        r#"{"body": "01234567890"}"#,
        r#"{"body": "nul\u0000"}"#,
    ];
    for frame in bad_frames {
        socket.send_text(frame).await;
        let error = socket.expect_error().await;
        assert!(
            error["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{frame:?}: {error}"
        );
    }
    socket
        .send_message(Message::Binary(b"{\"body\": \"hi\"}".to_vec().into()))
        .await;
    socket.expect_error().await;

    // Still open, and nothing bad was stored.
    socket.send_body("0123456789").await;
    assert_eq!(socket.next_message().await["body"], "0123456789");
    let mut bob_socket = app.connect(&bob, chat).await;
    assert_eq!(bob_socket.next_message().await["body"], "0123456789");
    bob_socket.expect_silence(Duration::from_millis(200)).await;
}

#[actix_web::test]
async fn an_oversized_frame_closes_the_socket_with_1009() {
    let app = spawn_app_with(&["--max-frame-bytes", "1024"]).await;
    let (alice, _, chat) = app.two_users_and_a_chat().await;
    let mut socket = app.connect(&alice, chat).await;

    socket.send_body(&"x".repeat(2000)).await;

    match socket.receive().await {
        Received::Close(code) => assert_eq!(code, Some(1009)),
        other => panic!("expected close, got {other:?}"),
    }
}

// ---- control frames and clean-up ------------------------------------------------

#[actix_web::test]
async fn a_ping_is_answered_with_a_pong() {
    let app = spawn_app().await;
    let (alice, _, chat) = app.two_users_and_a_chat().await;
    let mut socket = app.connect(&alice, chat).await;

    socket
        .send_message(Message::Ping(b"are you there".to_vec().into()))
        .await;

    match socket.next_raw().await {
        Some(Ok(Frame::Pong(bytes))) => assert_eq!(&bytes[..], b"are you there"),
        other => panic!("expected pong, got {other:?}"),
    }
}

#[actix_web::test]
async fn a_peer_that_never_answers_pings_is_closed_with_1008() {
    let app = spawn_app_with(&["--heartbeat-interval", "200ms"]).await;
    let (alice, _, chat) = app.two_users_and_a_chat().await;
    let mut silent = app.connect(&alice, chat).await;

    // Read without ever answering: pings arrive, then the close.
    let mut pings = 0;
    let code = loop {
        match silent.next_raw().await {
            Some(Ok(Frame::Ping(_))) => pings += 1,
            Some(Ok(Frame::Close(reason))) => break reason.map(|r| u16::from(r.code)),
            other => panic!("unexpected {other:?}"),
        }
    };

    assert!(pings >= 1);
    assert_eq!(code, Some(1008));
    app.wait_for_connections(0).await;
}

#[actix_web::test]
async fn a_peer_that_answers_pings_stays_connected() {
    let app = spawn_app_with(&["--heartbeat-interval", "100ms"]).await;
    let (alice, _, chat) = app.two_users_and_a_chat().await;
    let mut socket = app.connect(&alice, chat).await;

    // `expect_silence` answers nothing, so answer by hand for ten intervals.
    let until = std::time::Instant::now() + Duration::from_secs(1);
    while std::time::Instant::now() < until {
        if let Ok(Some(Ok(Frame::Ping(bytes)))) =
            actix_web::rt::time::timeout(Duration::from_millis(50), socket.next_raw()).await
        {
            socket.send_message(Message::Pong(bytes)).await;
        }
    }

    socket.send_body("still connected").await;
    assert_eq!(socket.next_message().await["body"], "still connected");
}

#[actix_web::test]
async fn closed_sockets_leave_nothing_in_the_hub() {
    let app = spawn_app().await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;

    for round in 0..10 {
        let a = app.connect(&alice, chat).await;
        let b = app.connect(&bob, chat).await;
        app.wait_for_connections(2).await;
        if round % 2 == 0 {
            a.close().await;
            b.close().await;
        } else {
            // Dropped without a close frame.
            drop(a);
            drop(b);
        }
        app.wait_for_connections(0).await;
    }
    assert_eq!(app.hub.chat_count(), 0);
}

#[actix_web::test]
async fn stopping_the_server_closes_sockets_with_1001() {
    let app = spawn_app().await;
    let (alice, _, chat) = app.two_users_and_a_chat().await;
    let mut socket = app.connect(&alice, chat).await;
    app.wait_for_connections(1).await;

    app.stop().await;

    match socket.receive().await {
        Received::Close(code) => assert_eq!(code, Some(u16::from(CloseCode::Away))),
        other => panic!("expected close, got {other:?}"),
    }
}

#[actix_web::test]
async fn a_client_that_closes_gets_a_normal_close_back() {
    let app = spawn_app().await;
    let (alice, _, chat) = app.two_users_and_a_chat().await;
    let mut socket = app.connect(&alice, chat).await;

    socket
        .send_message(Message::Close(Some(CloseReason::from(CloseCode::Normal))))
        .await;

    match socket.receive().await {
        Received::Close(code) => assert_eq!(code, Some(1000)),
        other => panic!("expected close, got {other:?}"),
    }
    app.wait_for_connections(0).await;
}

#[actix_web::test]
async fn a_client_that_stops_reading_is_dropped_and_the_others_get_everything() {
    let app = spawn_app_with(&[
        "--ws-queue",
        "8",
        "--ws-write-timeout",
        "1s",
        "--max-message-chars",
        "60000",
    ])
    .await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let mut idle_bob = app.connect(&bob, chat).await;
    let mut alice_socket = app.connect(&alice, chat).await;
    app.wait_for_connections(2).await;

    // Far more than the kernel's socket buffers hold (up to ~36 MiB here),
    // sent closed-loop so Alice, who reads, is never behind.
    let filler = "x".repeat(59_990);
    let mut sent = 0;
    while sent < 1500 && app.hub.connection_count() == 2 {
        alice_socket.send_body(&format!("{sent:06} {filler}")).await;
        let echo = alice_socket.next_message().await;
        assert!(echo["body"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{sent:06} ")));
        sent += 1;
    }
    app.wait_for_connections(1).await;

    // Bob gets what was already on its way, then the end, never all of it.
    let mut delivered = 0;
    loop {
        match idle_bob.receive().await {
            Received::Json(frame) => {
                assert!(frame.get("message").is_some(), "{frame}");
                delivered += 1;
            }
            Received::Close(code) => {
                assert!(matches!(code, None | Some(1013)), "close code {code:?}");
                break;
            }
        }
    }
    assert!(delivered < sent, "delivered {delivered} of {sent}");
    // Alice's connection is unaffected.
    alice_socket.send_body("still here").await;
    assert!(alice_socket.next_message().await["body"] == "still here");
    // Reconnecting catches up from history.
    let mut bob_again = app.connect(&bob, chat).await;
    for _ in 0..=sent {
        bob_again.next_message().await;
    }
}

// ---- concurrency ----------------------------------------------------------------

#[actix_web::test]
async fn two_clients_sending_at_once_lose_and_duplicate_nothing() {
    let app = spawn_app().await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let per_sender = 100;
    let mut alice_socket = app.connect(&alice, chat).await;
    let mut bob_socket = app.connect(&bob, chat).await;

    // Both write everything before reading anything.
    for i in 0..per_sender {
        alice_socket.send_body(&format!("alice {i}")).await;
        bob_socket.send_body(&format!("bob {i}")).await;
    }
    let mut received = HashMap::new();
    for (name, socket) in [("alice", &mut alice_socket), ("bob", &mut bob_socket)] {
        let mut bodies = Vec::new();
        for _ in 0..2 * per_sender {
            bodies.push(
                socket.next_message().await["body"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        socket.expect_silence(Duration::from_millis(200)).await;
        received.insert(name, bodies);
    }

    assert_eq!(
        received["alice"], received["bob"],
        "both saw the same order"
    );
    for (receiver, bodies) in &received {
        for sender in ["alice", "bob"] {
            let from_sender: Vec<_> = bodies
                .iter()
                .filter(|b| b.starts_with(sender))
                .cloned()
                .collect();
            let expected: Vec<_> = (0..per_sender).map(|i| format!("{sender} {i}")).collect();
            assert_eq!(from_sender, expected, "{receiver} got {sender}'s messages");
        }
    }
    // And the stored history holds each message once.
    let mut history = app.connect(&alice, chat).await;
    let mut stored = Vec::new();
    for _ in 0..2 * per_sender {
        stored.push(
            history.next_message().await["body"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    history.expect_silence(Duration::from_millis(200)).await;
    stored.sort();
    stored.dedup();
    assert_eq!(stored.len(), 2 * per_sender);
}

#[actix_web::test]
async fn a_message_sent_during_history_replay_arrives_exactly_once() {
    let app = spawn_app().await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let mut alice_socket = app.connect(&alice, chat).await;
    for i in 0..300 {
        alice_socket.send_body(&format!("old {i}")).await;
    }
    for _ in 0..300 {
        alice_socket.next_message().await;
    }

    // Bob connects while Alice keeps sending.
    let connecting = app.connect(&bob, chat);
    let sending = async {
        for i in 0..50 {
            alice_socket.send_body(&format!("new {i}")).await;
        }
    };
    let (mut bob_socket, ()) = futures_util::join!(connecting, sending);

    let mut seen = Vec::new();
    for _ in 0..350 {
        seen.push(bob_socket.next_message().await["id"].as_i64().unwrap());
    }
    bob_socket.expect_silence(Duration::from_millis(300)).await;
    let mut unique = seen.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 350, "no duplicates");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in id order");
}
