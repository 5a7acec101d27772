#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking
//! The v2 socket end to end: the handshake, `hello`, sends and their acks,
//! retries, every error code, history, receipts, pings, new chats, several
//! devices, the seed socket in the same chat, token expiry and
//! backpressure. Typing and presence are in `v2_presence_typing.rs`.

mod common;

use std::time::Duration;

use awc::ws::Message;
use common::v2::seqs;
use common::{spawn_app, spawn_app_with};
use serde_json::{json, Value};

// ---- handshake ------------------------------------------------------------

#[actix_web::test]
async fn the_v2_handshake_refuses_missing_or_bad_tokens_with_401_and_a_json_body() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;

    for path in [
        "/ws/v2/".to_owned(),
        "/ws/v2/?token=".to_owned(),
        "/ws/v2/?token=garbage".to_owned(),
        format!("/ws/v2/?token={}x", alice.token),
    ] {
        assert_eq!(
            app.try_connect(&path, None).await.err(),
            Some(401),
            "{path}"
        );
    }
    // The header decides when present, even with a good query token.
    let path = format!("/ws/v2/?token={}", alice.token);
    assert_eq!(
        app.try_connect(&path, Some("garbage")).await.err(),
        Some(401)
    );
    assert!(app.try_connect("/ws/v2/", Some(&alice.token)).await.is_ok());

    let reply = app.get("/ws/v2/", None).await;
    assert_eq!(reply.status, 401);
    assert!(reply.body["error"].as_str().is_some());
}

#[actix_web::test]
async fn only_the_exact_v2_path_is_a_socket() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    for path in ["/ws/v2", "/ws/v2/x/", "/ws/v3/", "/ws/v2//"] {
        let reply = app
            .get(&format!("{path}?token={}", alice.token), None)
            .await;
        assert_eq!(reply.status, 404, "{path}");
        assert!(reply.body["error"].as_str().is_some(), "{path}");
    }
}

#[actix_web::test]
async fn a_v2_handshake_from_a_foreign_origin_is_refused_with_403() {
    let app = spawn_app_with(&["--allowed-origins", "https://chat.example"]).await;
    let alice = app.user("alice").await;
    let reply = app
        .client
        .get(app.url(&format!("/ws/v2/?token={}", alice.token)))
        .insert_header(("Origin", "https://evil.example"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status().as_u16(), 403);
}

#[actix_web::test]
async fn v2_sockets_count_against_the_same_per_user_limit_as_seed_sockets() {
    let app = spawn_app_with(&["--max-connections-per-user", "2"]).await;
    let (alice, _, chat) = app.two_users_and_a_chat().await;
    let _seed = app.connect(&alice, chat).await;
    let _v2 = app.connect_v2(&alice).await;
    let path = format!("/ws/v2/?token={}", alice.token);
    assert_eq!(app.try_connect(&path, None).await.err(), Some(429));
}

// ---- hello ------------------------------------------------------------------

#[actix_web::test]
async fn hello_is_the_first_frame_with_the_user_their_chats_and_the_limits() {
    let app = spawn_app_with(&["--max-message-chars", "500", "--heartbeat-interval", "20s"]).await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let carol = app.user("carol").await;
    let older = app.chat(&carol, &alice).await;
    // chat with bob has the newest activity: 2 messages from bob, 1 from alice
    app.post_message(&carol, older, "old", "c-0").await;
    app.post_message(&bob, chat, "one", "b-1").await;
    app.post_message(&alice, chat, "two", "a-1").await;
    app.post_message(&bob, chat, "three", "b-2").await;
    app.post_read(&alice, chat, 1).await;

    let client = app.connect_v2(&alice).await;

    let hello = &client.hello;
    assert_eq!(hello["user"], json!({"id": alice.id, "username": "alice"}));
    assert_eq!(hello["heartbeat_ms"], 20_000);
    assert_eq!(
        hello["limits"],
        json!({"max_message_chars": 500, "max_frame_bytes": 65536})
    );
    let ids: Vec<_> = hello["chats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].clone())
        .collect();
    assert_eq!(
        ids,
        [json!(chat), json!(older)],
        "most recent activity first"
    );
    let state = client.chat_in_hello(chat);
    assert_eq!(state["head_seq"], 3);
    assert_eq!(state["last_message"]["body"], "three");
    assert_eq!(state["last_message"]["seq"], 3);
    assert_eq!(state["read_up_to"], 1);
    assert_eq!(state["delivered_up_to"], 1);
    assert_eq!(state["other_read_up_to"], 0);
    assert_eq!(state["other_delivered_up_to"], 0);
    assert_eq!(state["unread_count"], 1, "bob's third message");
    assert_eq!(state["other_user"]["id"], bob.id);
    assert_eq!(state["other_user"]["username"], "bob");
    assert_eq!(state["other_user"]["online"], false);
    assert!(state["created"].as_str().unwrap().ends_with('Z'));
}

#[actix_web::test]
async fn a_user_without_chats_gets_an_empty_hello() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let client = app.connect_v2(&alice).await;
    assert_eq!(client.hello["chats"], json!([]));
}

// ---- send and ack -------------------------------------------------------------

#[actix_web::test]
async fn a_send_is_acked_to_its_socket_and_delivered_to_every_other_socket() {
    let app = spawn_app().await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let mut phone = app.connect_v2(&alice).await;
    let mut laptop = app.connect_v2(&alice).await;
    let mut bob_v2 = app.connect_v2(&bob).await;

    let acked = phone.send_acked(chat, "c-7f3a", "Hello 👋").await;

    assert_eq!(acked["chat_id"], chat);
    assert_eq!(acked["seq"], 1);
    assert_eq!(acked["sender_id"], alice.id);
    assert_eq!(acked["sender"], "alice");
    assert_eq!(acked["body"], "Hello 👋");
    assert_eq!(acked["client_id"], "c-7f3a");
    let created = acked["created"].as_str().unwrap();
    assert_eq!(created.len(), "2026-12-01T10:45:30.123Z".len(), "{created}");
    assert!(created.ends_with('Z'));
    for other in [&mut laptop, &mut bob_v2] {
        let frame = other.expect("message").await;
        assert_eq!(frame["message"], acked);
    }
    // The sending socket gets the ack only, never a copy.
    phone.expect_quiet(Duration::from_millis(300)).await;
}

#[actix_web::test]
async fn sequence_numbers_are_dense_per_chat_and_acks_come_in_order() {
    let app = spawn_app().await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let carol = app.user("carol").await;
    let other = app.chat(&alice, &carol).await;
    let mut client = app.connect_v2(&alice).await;

    for i in 0..20 {
        let chat = if i % 2 == 0 { chat } else { other };
        client.send(chat, &format!("c-{i}"), &format!("m{i}")).await;
    }
    let mut seqs = std::collections::HashMap::<i64, Vec<i64>>::new();
    for _ in 0..20 {
        let ack = client.expect("ack").await;
        seqs.entry(ack["message"]["chat_id"].as_i64().unwrap())
            .or_default()
            .push(ack["message"]["seq"].as_i64().unwrap());
    }
    assert_eq!(seqs[&chat], (1..=10).collect::<Vec<_>>());
    assert_eq!(seqs[&other], (1..=10).collect::<Vec<_>>());
    let _ = bob;
}

#[actix_web::test]
async fn a_resend_of_the_same_client_id_is_a_duplicate_and_another_body_a_conflict() {
    let app = spawn_app().await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let mut client = app.connect_v2(&alice).await;
    let mut bob_v2 = app.connect_v2(&bob).await;

    let first = client.send_acked(chat, "retry-1", "hello").await;
    bob_v2.expect("message").await;

    client.send(chat, "retry-1", "hello").await;
    let again = client.expect("ack").await;
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["message"], first);

    client.send(chat, "retry-1", "something else").await;
    let conflict = client.expect_error("conflict").await;
    assert_eq!(conflict["client_id"], "retry-1");

    // Neither reached bob; one message is stored.
    bob_v2.expect_quiet(Duration::from_millis(300)).await;
    let page = app.messages_page(&alice, chat, "").await;
    assert_eq!(page.body["messages"].as_array().unwrap().len(), 1);
}

#[actix_web::test]
async fn a_client_id_used_over_rest_is_the_same_message_over_the_socket() {
    let app = spawn_app().await;
    let (alice, _, chat) = app.two_users_and_a_chat().await;
    let stored = app.post_message(&alice, chat, "hi", "shared-1").await;
    assert_eq!(stored.status, 201);
    let mut client = app.connect_v2(&alice).await;

    client.send(chat, "shared-1", "hi").await;
    let ack = client.expect("ack").await;

    assert_eq!(ack["duplicate"], true);
    assert_eq!(ack["message"], stored.body);
}

#[actix_web::test]
async fn the_same_client_id_in_another_chat_or_from_the_other_user_is_another_message() {
    let app = spawn_app().await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let carol = app.user("carol").await;
    let other = app.chat(&alice, &carol).await;
    let mut alice_v2 = app.connect_v2(&alice).await;
    let mut bob_v2 = app.connect_v2(&bob).await;

    let a = alice_v2.send_acked(chat, "same", "x").await;
    let b = alice_v2.send_acked(other, "same", "x").await;
    bob_v2.expect("message").await;
    let c = bob_v2.send_acked(chat, "same", "x").await;

    assert_ne!(a["id"], b["id"]);
    assert_ne!(a["id"], c["id"]);
    assert_eq!(c["seq"], 2);
}

// ---- errors -------------------------------------------------------------------

#[actix_web::test]
async fn malformed_frames_are_bad_frames_echoing_ref_and_the_socket_stays_open() {
    let app = spawn_app().await;
    let (alice, _, chat) = app.two_users_and_a_chat().await;
    let mut client = app.connect_v2(&alice).await;

    for (frame, reference) in [
        ("not json".to_owned(), None),
        ("[1, 2]".to_owned(), None),
        (
            r#"{"no_type": 1, "ref": "r1"}"#.to_owned(),
            Some(json!("r1")),
        ),
        (r#"{"type": "shout", "ref": 7}"#.to_owned(), Some(json!(7))),
        (
            json!({"type": "send", "chat_id": chat, "body": "x", "ref": "m"}).to_string(),
            Some(json!("m")),
        ),
        (
            json!({"type": "send", "chat_id": "one", "client_id": "c", "body": "x"}).to_string(),
            None,
        ),
        (
            json!({"type": "read", "chat_id": chat, "up_to": -1, "ref": "neg"}).to_string(),
            Some(json!("neg")),
        ),
        (
            json!({"type": "typing", "chat_id": chat, "active": "yes"}).to_string(),
            None,
        ),
        (
            json!({"type": "history", "chat_id": chat, "limit": 201, "ref": "l"}).to_string(),
            Some(json!("l")),
        ),
        (
            json!({"type": "history", "chat_id": chat, "before": 3, "after": 1}).to_string(),
            None,
        ),
    ] {
        client.socket.send_text(&frame).await;
        let error = client.expect_error("bad_frame").await;
        assert_eq!(error.get("ref"), reference.as_ref(), "{frame}: {error}");
    }
    client
        .socket
        .send_message(Message::Binary("{}".into()))
        .await;
    client.expect_error("bad_frame").await;

    // Still open and serving.
    client.send_acked(chat, "after", "still here").await;
}

#[actix_web::test]
async fn an_invalid_client_id_is_a_bad_frame_naming_it() {
    let app = spawn_app().await;
    let (alice, _, chat) = app.two_users_and_a_chat().await;
    let mut client = app.connect_v2(&alice).await;
    for client_id in ["", "has space", "é", &"x".repeat(65)] {
        client.send(chat, client_id, "x").await;
        let error = client.expect_error("bad_frame").await;
        assert_eq!(error["client_id"], client_id);
    }
}

#[actix_web::test]
async fn unknown_chats_and_other_peoples_chats_are_refused_for_every_frame() {
    let app = spawn_app().await;
    let (alice, _, chat) = app.two_users_and_a_chat().await;
    let mallory = app.user("mallory").await;
    let mut client = app.connect_v2(&mallory).await;

    for (chat_id, code) in [(999_999, "unknown_chat"), (chat, "not_participant")] {
        for frame in [
            json!({"type": "send", "chat_id": chat_id, "client_id": "c", "body": "x", "ref": 1}),
            json!({"type": "read", "chat_id": chat_id, "up_to": 1, "ref": 1}),
            json!({"type": "delivered", "chat_id": chat_id, "up_to": 1, "ref": 1}),
            json!({"type": "typing", "chat_id": chat_id, "active": true, "ref": 1}),
            json!({"type": "history", "chat_id": chat_id, "ref": 1}),
        ] {
            client.send_frame(frame.clone()).await;
            let error = client.expect_error(code).await;
            assert_eq!(error["ref"], 1, "{frame}");
        }
    }
    let _ = alice;
}

#[actix_web::test]
async fn empty_and_too_long_bodies_are_refused_with_their_codes() {
    let app = spawn_app_with(&["--max-message-chars", "5"]).await;
    let (alice, _, chat) = app.two_users_and_a_chat().await;
    let mut client = app.connect_v2(&alice).await;

    client.send(chat, "e", "").await;
    assert_eq!(client.expect_error("empty").await["client_id"], "e");
    client.send(chat, "t", "123456").await;
    assert_eq!(client.expect_error("too_long").await["client_id"], "t");
    // Characters, not bytes.
    client.send_acked(chat, "ok", "😀😀😀😀😀").await;
    // The bad ones stored nothing.
    assert_eq!(
        client.history(json!({"chat_id": chat})).await["messages"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[actix_web::test]
async fn a_body_with_a_nul_character_is_refused() {
    let app = spawn_app().await;
    let (alice, _, chat) = app.two_users_and_a_chat().await;
    let mut client = app.connect_v2(&alice).await;
    client.send(chat, "nul", "a\u{0}b").await;
    client.expect_error("bad_frame").await;
}

#[actix_web::test]
async fn checks_run_in_the_specified_order() {
    let app = spawn_app_with(&["--max-message-chars", "3"]).await;
    let (alice, _, chat) = app.two_users_and_a_chat().await;
    let mut client = app.connect_v2(&alice).await;

    // A bad client_id in an unknown chat: bad_frame first.
    client
        .send_frame(json!({"type": "send", "chat_id": 999, "client_id": "", "body": ""}))
        .await;
    client.expect_error("bad_frame").await;
    // Unknown chat before the body rules.
    client.send(999, "c", "").await;
    client.expect_error("unknown_chat").await;
    // Empty before too long is moot; too long before conflict.
    client.send_acked(chat, "k", "abc").await;
    client.send(chat, "k", "abcd").await;
    client.expect_error("too_long").await;
    client.send(chat, "k", "abd").await;
    client.expect_error("conflict").await;
}

#[actix_web::test]
async fn sends_and_history_over_the_rate_are_refused_and_typing_dropped_silently() {
    let app = spawn_app_with(&["--ws-rate", "0.001", "--ws-burst", "2"]).await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let mut client = app.connect_v2(&alice).await;
    let mut bob_v2 = app.connect_v2(&bob).await;

    client.send_acked(chat, "1", "one").await;
    client.send_acked(chat, "2", "two").await;
    client.send(chat, "3", "three").await;
    assert_eq!(client.expect_error("rate_limited").await["client_id"], "3");
    client
        .send_frame(json!({"type": "history", "chat_id": chat, "ref": "h"}))
        .await;
    assert_eq!(client.expect_error("rate_limited").await["ref"], "h");
    // Invalid frames do not count and are still answered as such.
    client.send(chat, "4", "").await;
    client.expect_error("empty").await;
    // A refused typing is dropped without a word, and bob hears nothing.
    client
        .send_frame(json!({"type": "typing", "chat_id": chat, "active": true}))
        .await;
    client.expect_quiet(Duration::from_millis(300)).await;
    bob_v2.expect("message").await;
    bob_v2.expect("message").await;
    bob_v2.expect_quiet(Duration::from_millis(300)).await;
    // Reads and pings are not rate limited.
    client.send_frame(json!({"type": "ping"})).await;
    client.expect("pong").await;
}

// ---- history --------------------------------------------------------------------

async fn chat_with_messages(
    app: &common::TestApp,
    count: usize,
) -> (common::TestUser, common::TestUser, i64) {
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let mut client = app.connect_v2(&alice).await;
    for i in 1..=count {
        client.send(chat, &format!("m-{i}"), &format!("m{i}")).await;
    }
    for _ in 0..count {
        client.expect("ack").await;
    }
    client.close().await;
    (alice, bob, chat)
}

#[actix_web::test]
async fn history_pages_newest_before_and_after_with_has_more_in_their_direction() {
    let app = spawn_app().await;
    let (alice, _, chat) = chat_with_messages(&app, 12).await;
    let mut client = app.connect_v2(&alice).await;

    let newest = client
        .history(json!({"chat_id": chat, "limit": 5, "ref": "n"}))
        .await;
    assert_eq!(newest["ref"], "n");
    assert_eq!(newest["chat_id"], chat);
    assert_eq!(seqs(&newest), [8, 9, 10, 11, 12]);
    assert_eq!(newest["has_more"], true);

    let before = client
        .history(json!({"chat_id": chat, "before": 4, "limit": 5}))
        .await;
    assert_eq!(seqs(&before), [1, 2, 3]);
    assert_eq!(before["has_more"], false);
    assert!(before.get("ref").is_none());

    let after = client
        .history(json!({"chat_id": chat, "after": 2, "limit": 5}))
        .await;
    assert_eq!(seqs(&after), [3, 4, 5, 6, 7]);
    assert_eq!(after["has_more"], true);
    let last = client.history(json!({"chat_id": chat, "after": 7})).await;
    assert_eq!(seqs(&last), [8, 9, 10, 11, 12]);
    assert_eq!(last["has_more"], false);
    let beyond = client.history(json!({"chat_id": chat, "after": 12})).await;
    assert_eq!(seqs(&beyond), Vec::<i64>::new());
    assert_eq!(beyond["has_more"], false);

    let all = client.history(json!({"chat_id": chat})).await;
    assert_eq!(seqs(&all), (1..=12).collect::<Vec<_>>(), "default limit 50");
    assert_eq!(all["messages"][0]["body"], "m1");
    assert_eq!(all["messages"][0]["client_id"], "m-1");
}

// ---- receipts --------------------------------------------------------------------

#[actix_web::test]
async fn a_read_is_announced_to_every_socket_of_both_participants_with_its_delivery() {
    let app = spawn_app().await;
    let (alice, bob, chat) = chat_with_messages(&app, 5).await;
    let mut alice_v2 = app.connect_v2(&alice).await;
    let mut bob_phone = app.connect_v2(&bob).await;
    let mut bob_laptop = app.connect_v2(&bob).await;

    bob_phone
        .send_frame(json!({"type": "read", "chat_id": chat, "up_to": 3}))
        .await;

    for socket in [&mut alice_v2, &mut bob_phone, &mut bob_laptop] {
        assert_eq!(
            socket.expect("read").await,
            json!({"type": "read", "chat_id": chat, "user_id": bob.id, "up_to": 3})
        );
        assert_eq!(
            socket.expect("delivered").await,
            json!({"type": "delivered", "chat_id": chat, "user_id": bob.id, "up_to": 3})
        );
    }
    let chats = app.chats_of(&bob).await;
    assert_eq!(chats[0]["unread_count"], 2);
}

#[actix_web::test]
async fn cursors_never_go_back_and_are_clamped_to_the_head() {
    let app = spawn_app().await;
    let (alice, bob, chat) = chat_with_messages(&app, 5).await;
    let mut bob_v2 = app.connect_v2(&bob).await;
    let mut alice_v2 = app.connect_v2(&alice).await;

    bob_v2
        .send_frame(json!({"type": "delivered", "chat_id": chat, "up_to": 4}))
        .await;
    assert_eq!(alice_v2.expect("delivered").await["up_to"], 4);
    // Back: nothing moves, nothing is announced.
    bob_v2
        .send_frame(json!({"type": "delivered", "chat_id": chat, "up_to": 2}))
        .await;
    bob_v2
        .send_frame(json!({"type": "read", "chat_id": chat, "up_to": 0}))
        .await;
    // Beyond the head: clamped to 5; delivery was at 4, so both move.
    bob_v2
        .send_frame(json!({"type": "read", "chat_id": chat, "up_to": 1_000_000}))
        .await;
    assert_eq!(alice_v2.expect("read").await["up_to"], 5);
    assert_eq!(alice_v2.expect("delivered").await["up_to"], 5);
    alice_v2.expect_quiet(Duration::from_millis(300)).await;

    let state = app.connect_v2(&bob).await.chat_in_hello(chat);
    assert_eq!(state["read_up_to"], 5);
    assert_eq!(state["unread_count"], 0);
    // A later message is unread even though the cursor was asked past it.
    app.post_message(&alice, chat, "later", "later").await;
    let state = app.connect_v2(&bob).await.chat_in_hello(chat);
    assert_eq!(state["unread_count"], 1);
    assert_eq!(state["read_up_to"], 5);
}

#[actix_web::test]
async fn delivery_does_not_imply_reading() {
    let app = spawn_app().await;
    let (alice, bob, chat) = chat_with_messages(&app, 3).await;
    let mut bob_v2 = app.connect_v2(&bob).await;
    bob_v2
        .send_frame(json!({"type": "delivered", "chat_id": chat, "up_to": 3}))
        .await;
    bob_v2.expect("delivered").await;
    bob_v2.expect_quiet(Duration::from_millis(200)).await;

    let state = app.connect_v2(&alice).await.chat_in_hello(chat);
    assert_eq!(state["other_delivered_up_to"], 3);
    assert_eq!(state["other_read_up_to"], 0);
}

// ---- ping, new chats, devices ---------------------------------------------------------

#[actix_web::test]
async fn a_ping_is_answered_with_a_pong_echoing_its_ref() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let mut client = app.connect_v2(&alice).await;
    client.send_frame(json!({"type": "ping"})).await;
    assert_eq!(client.expect("pong").await, json!({"type": "pong"}));
    client
        .send_frame(json!({"type": "ping", "ref": "p-1"}))
        .await;
    assert_eq!(
        client.expect("pong").await,
        json!({"type": "pong", "ref": "p-1"})
    );
    client.send_frame(json!({"type": "ping", "ref": 42})).await;
    assert_eq!(
        client.expect("pong").await,
        json!({"type": "pong", "ref": 42})
    );
}

#[actix_web::test]
async fn a_new_chat_is_announced_to_both_users_once() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let mut alice_v2 = app.connect_v2(&alice).await;
    let mut bob_v2 = app.connect_v2(&bob).await;

    let chat = app.chat(&bob, &alice).await;

    let for_alice = alice_v2.expect("chat").await["chat"].clone();
    assert_eq!(for_alice["id"], chat);
    assert_eq!(for_alice["other_user"]["username"], "bob");
    assert_eq!(for_alice["other_user"]["online"], true);
    assert_eq!(for_alice["other_user"]["last_seen"], Value::Null);
    assert_eq!(for_alice["head_seq"], 0);
    assert_eq!(for_alice["last_message"], Value::Null);
    assert_eq!(for_alice["unread_count"], 0);
    let for_bob = bob_v2.expect("chat").await["chat"].clone();
    assert_eq!(for_bob["other_user"]["username"], "alice");

    // Creating it again announces nothing; the new chat works at once.
    app.chat(&alice, &bob).await;
    alice_v2.send_acked(chat, "first", "hi").await;
    assert_eq!(bob_v2.expect("message").await["message"]["body"], "hi");
}

// ---- the seed socket in the same chat ---------------------------------------------------

#[actix_web::test]
async fn seed_and_v2_sockets_in_one_chat_see_each_others_messages() {
    let app = spawn_app().await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let mut seed = app.connect(&bob, chat).await;
    let mut alice_v2 = app.connect_v2(&alice).await;

    let acked = alice_v2.send_acked(chat, "to-seed", "from v2").await;
    let seed_copy = seed.next_message().await;
    assert_eq!(
        seed_copy,
        json!({"id": acked["id"], "sender": "alice", "body": "from v2",
               "created": seed_copy["created"], "is_read": false})
    );

    seed.send_body("from seed").await;
    // The seed socket's own copy is its acknowledgement, as always.
    assert_eq!(seed.next_message().await["body"], "from seed");
    let message = alice_v2.expect("message").await["message"].clone();
    assert_eq!(message["body"], "from seed");
    assert_eq!(message["seq"], 2);
    assert_eq!(message["client_id"], Value::Null);
}

#[actix_web::test]
async fn a_seed_sockets_connect_time_read_marking_is_announced_to_v2_sockets() {
    let app = spawn_app().await;
    let (alice, bob, chat) = chat_with_messages(&app, 3).await;
    let mut alice_v2 = app.connect_v2(&alice).await;

    let mut seed = app.connect(&bob, chat).await;
    let history = seed.drain_messages(Duration::from_millis(300)).await;
    assert_eq!(history.len(), 3);

    assert_eq!(
        alice_v2.expect("read").await,
        json!({"type": "read", "chat_id": chat, "user_id": bob.id, "up_to": 3})
    );
    assert_eq!(alice_v2.expect("delivered").await["up_to"], 3);
    // The seed's is_read is derived from the same cursor.
    let mut again = app.connect(&alice, chat).await;
    let replay = again.drain_messages(Duration::from_millis(300)).await;
    assert!(replay.iter().all(|m| m["is_read"] == true), "{replay:?}");
}

#[actix_web::test]
async fn a_v2_read_shows_in_the_seed_sockets_is_read() {
    let app = spawn_app().await;
    let (alice, bob, chat) = chat_with_messages(&app, 4).await;
    let mut bob_v2 = app.connect_v2(&bob).await;
    bob_v2
        .send_frame(json!({"type": "read", "chat_id": chat, "up_to": 2}))
        .await;
    bob_v2.expect("read").await;

    let mut seed = app.connect(&alice, chat).await;
    let replay = seed.drain_messages(Duration::from_millis(300)).await;
    let read: Vec<_> = replay
        .iter()
        .map(|m| m["is_read"].as_bool().unwrap())
        .collect();
    assert_eq!(read, [true, true, false, false]);
}

// ---- token expiry and backpressure ------------------------------------------------------

#[actix_web::test]
async fn a_v2_socket_is_closed_with_4001_when_its_token_expires() {
    let app = spawn_app_with(&["--token-ttl", "2s"]).await;
    let alice = app.user("alice").await;
    let mut client = app.connect_v2(&alice).await;
    assert_eq!(
        client.expect_close(Duration::from_secs(5)).await,
        Some(4001)
    );
}

#[actix_web::test]
async fn a_v2_socket_that_does_not_read_is_closed_with_1013_and_loses_nothing() {
    let app = spawn_app_with(&["--ws-queue", "4"]).await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    // Bob connects and never reads; alice sends (reading each ack, as a
    // client that keeps up does) until the server gives up on him: his
    // queue fills once his socket's buffers are full.
    let mut stalled = app.connect_v2(&bob).await;
    let mut alice_v2 = app.connect_v2(&alice).await;
    let body = "x".repeat(4000);
    let mut sent = 0;
    while app.hub.dropped_slow_count() == 0 && sent < 5000 {
        alice_v2.send_acked(chat, &format!("c-{sent}"), &body).await;
        sent += 1;
    }
    assert!(app.hub.dropped_slow_count() >= 1, "bob was never dropped");
    assert_eq!(
        stalled.expect_close(Duration::from_secs(30)).await,
        Some(1013)
    );
    // Catching up finds every message.
    let page = app.messages_page(&bob, chat, "limit=1").await;
    assert_eq!(page.body["head_seq"], sent);
}
