#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking
//! The v2 REST routes end to end: pages of messages, retry-safe sends and
//! the read cursor, with every status and the order of the checks.

mod common;

use common::v2::seqs;
use common::{spawn_app, spawn_app_with};
use serde_json::{json, Value};

// ---- GET /api/chats/<id>/messages/ ----------------------------------------------

#[actix_web::test]
async fn a_page_is_the_newest_by_default_and_pages_both_ways() {
    let app = spawn_app().await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    for i in 1..=60 {
        let sender = if i % 3 == 0 { &bob } else { &alice };
        let reply = app
            .post_message(sender, chat, &format!("m{i}"), &format!("c{i}"))
            .await;
        assert_eq!(reply.status, 201);
    }

    let newest = app.messages_page(&alice, chat, "").await;
    assert_eq!(newest.status, 200);
    assert_eq!(
        seqs(&newest.body),
        (11..=60).collect::<Vec<_>>(),
        "default limit 50"
    );
    assert_eq!(newest.body["has_more_before"], true);
    assert_eq!(newest.body["has_more_after"], false);
    assert_eq!(newest.body["head_seq"], 60);

    let before = app.messages_page(&alice, chat, "before=11&limit=200").await;
    assert_eq!(seqs(&before.body), (1..=10).collect::<Vec<_>>());
    assert_eq!(before.body["has_more_before"], false);
    assert_eq!(before.body["has_more_after"], true);

    let after = app.messages_page(&alice, chat, "after=55&limit=3").await;
    assert_eq!(seqs(&after.body), [56, 57, 58]);
    assert_eq!(after.body["has_more_before"], true);
    assert_eq!(after.body["has_more_after"], true);

    let message = &after.body["messages"][0];
    assert_eq!(message["body"], "m56");
    assert_eq!(message["client_id"], "c56");
    assert_eq!(message["chat_id"], chat);
    assert_eq!(message["sender_id"], alice.id);
    assert_eq!(message["sender"], "alice");
    assert!(message.get("is_read").is_none());
}

#[actix_web::test]
async fn an_empty_chat_has_an_empty_page() {
    let app = spawn_app().await;
    let (alice, _, chat) = app.two_users_and_a_chat().await;
    let page = app.messages_page(&alice, chat, "after=0").await;
    assert_eq!(
        page.body,
        json!({"messages": [], "has_more_before": false, "has_more_after": false, "head_seq": 0})
    );
}

#[actix_web::test]
async fn a_bad_page_query_is_400_and_checked_before_the_chat() {
    let app = spawn_app().await;
    let (alice, _, chat) = app.two_users_and_a_chat().await;
    for query in [
        "before=1&after=1",
        "before=-1",
        "after=abc",
        "limit=0",
        "limit=201",
        "limit=1.5",
        "after=1&after=2",
    ] {
        let reply = app.messages_page(&alice, chat, query).await;
        assert_eq!(reply.status, 400, "{query}");
        assert!(reply.body["error"].as_str().is_some(), "{query}");
        // Request shape before the chat exists.
        assert_eq!(app.messages_page(&alice, 999_999, query).await.status, 400);
    }
}

#[actix_web::test]
async fn the_v2_routes_answer_401_404_and_403_in_that_order() {
    let app = spawn_app().await;
    let (_, _, chat) = app.two_users_and_a_chat().await;
    let mallory = app.user("mallory").await;
    let routes = |chat: String| {
        vec![
            ("GET", format!("/api/chats/{chat}/messages/"), Value::Null),
            (
                "POST",
                format!("/api/chats/{chat}/messages/"),
                json!({"body": "x", "client_id": "c"}),
            ),
            (
                "POST",
                format!("/api/chats/{chat}/read/"),
                json!({"up_to": 1}),
            ),
        ]
    };
    for (method, path, body) in routes(chat.to_string()) {
        let unauthenticated = match method {
            "GET" => app.get(&path, None).await,
            _ => app.post_json(&path, None, &body).await,
        };
        assert_eq!(unauthenticated.status, 401, "{method} {path}");
        let outsider = match method {
            "GET" => app.get(&path, Some(&mallory.token)).await,
            _ => app.post_json(&path, Some(&mallory.token), &body).await,
        };
        assert_eq!(outsider.status, 403, "{method} {path}");
    }
    for missing in ["999999", "abc", "-1"] {
        for (method, path, body) in routes(missing.to_owned()) {
            let reply = match method {
                "GET" => app.get(&path, Some(&mallory.token)).await,
                _ => app.post_json(&path, Some(&mallory.token), &body).await,
            };
            assert_eq!(reply.status, 404, "{method} {path}");
        }
    }
    let wrong_method = app
        .post_json(
            &format!("/api/chats/{chat}/read/"),
            Some(&mallory.token),
            &Value::Null,
        )
        .await;
    assert_ne!(wrong_method.status, 500);
    let put = app
        .client
        .put(app.url(&format!("/api/chats/{chat}/messages/")))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 405);
}

// ---- POST /api/chats/<id>/messages/ -----------------------------------------------

#[actix_web::test]
async fn a_send_is_201_its_repeat_200_with_the_original_and_another_body_409() {
    let app = spawn_app().await;
    let (alice, _, chat) = app.two_users_and_a_chat().await;

    let first = app.post_message(&alice, chat, "hello", "k-1").await;
    assert_eq!(first.status, 201);
    assert_eq!(first.body["seq"], 1);
    assert_eq!(first.body["body"], "hello");
    assert_eq!(first.body["client_id"], "k-1");

    let again = app.post_message(&alice, chat, "hello", "k-1").await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body, first.body);

    let conflict = app.post_message(&alice, chat, "bye", "k-1").await;
    assert_eq!(conflict.status, 409);
    assert!(conflict.body["error"].as_str().is_some());

    assert_eq!(
        app.messages_page(&alice, chat, "").await.body["head_seq"],
        1
    );
}

#[actix_web::test]
async fn a_rest_send_is_delivered_like_a_socket_send() {
    let app = spawn_app().await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let mut bob_v2 = app.connect_v2(&bob).await;
    let mut alice_v2 = app.connect_v2(&alice).await;
    let mut bob_seed = app.connect(&bob, chat).await;

    let sent = app.post_message(&alice, chat, "over rest", "r-1").await;

    // Every socket, the sender's own included: REST has no socket to ack.
    assert_eq!(bob_v2.expect("message").await["message"], sent.body);
    assert_eq!(alice_v2.expect("message").await["message"], sent.body);
    assert_eq!(bob_seed.next_message().await["body"], "over rest");
}

#[actix_web::test]
async fn a_bad_send_is_400_whatever_is_wrong_and_stores_nothing() {
    let app = spawn_app_with(&["--max-message-chars", "10"]).await;
    let (alice, _, chat) = app.two_users_and_a_chat().await;
    let path = format!("/api/chats/{chat}/messages/");
    for body in [
        json!({"body": "x"}),
        json!({"client_id": "c"}),
        json!({"body": 1, "client_id": "c"}),
        json!({"body": "x", "client_id": 1}),
        json!({"body": "x", "client_id": ""}),
        json!({"body": "x", "client_id": "a b"}),
        json!({"body": "x", "client_id": "x".repeat(65)}),
        json!({"body": "", "client_id": "c"}),
        json!({"body": "12345678901", "client_id": "c"}),
        json!({"body": "a\u{0}b", "client_id": "c"}),
        json!(["x", "c"]),
    ] {
        let reply = app.post_json(&path, Some(&alice.token), &body).await;
        assert_eq!(reply.status, 400, "{body}");
        assert!(reply.body["error"].as_str().is_some(), "{body}");
    }
    let not_json = app.post_raw(&path, Some(&alice.token), None, "{").await;
    assert_eq!(not_json.status, 400);
    assert_eq!(
        app.messages_page(&alice, chat, "").await.body["head_seq"],
        0
    );
}

#[actix_web::test]
async fn the_shape_is_checked_before_the_chat_and_the_body_rules_after_it() {
    let app = spawn_app().await;
    let (alice, _, chat) = app.two_users_and_a_chat().await;
    let mallory = app.user("mallory").await;
    let bad_shape = json!({"body": "x"});
    let bad_body = json!({"body": "", "client_id": "c"});
    let post = |user: &common::TestUser, chat: i64, body: &Value| {
        let (path, token, body) = (
            format!("/api/chats/{chat}/messages/"),
            user.token.clone(),
            body.clone(),
        );
        let app = &app;
        async move { app.post_json(&path, Some(&token), &body).await.status }
    };
    assert_eq!(post(&alice, 999_999, &bad_shape).await, 400);
    assert_eq!(post(&alice, 999_999, &bad_body).await, 404);
    assert_eq!(post(&mallory, chat, &bad_body).await, 403);
    assert_eq!(post(&alice, chat, &bad_body).await, 400);
}

// ---- POST /api/chats/<id>/read/ ----------------------------------------------------

#[actix_web::test]
async fn reading_moves_the_cursor_forward_only_clamped_and_counts_what_is_left() {
    let app = spawn_app().await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    for i in 1..=4 {
        app.post_message(&alice, chat, &format!("m{i}"), &format!("c{i}"))
            .await;
    }
    app.post_message(&bob, chat, "mine", "b").await;

    let read = app.post_read(&bob, chat, 2).await;
    assert_eq!(read.status, 200);
    assert_eq!(
        read.body,
        json!({"chat_id": chat, "read_up_to": 2, "unread_count": 2})
    );

    let back = app.post_read(&bob, chat, 1).await;
    assert_eq!(
        back.body,
        json!({"chat_id": chat, "read_up_to": 2, "unread_count": 2})
    );

    let beyond = app.post_read(&bob, chat, 1_000).await;
    assert_eq!(
        beyond.body,
        json!({"chat_id": chat, "read_up_to": 5, "unread_count": 0})
    );

    // The seed chat list agrees.
    assert_eq!(app.chats_of(&bob).await[0]["unread_count"], 0);
    assert_eq!(app.chats_of(&alice).await[0]["unread_count"], 1);
}

#[actix_web::test]
async fn a_read_over_rest_is_announced_to_the_sockets() {
    let app = spawn_app().await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    app.post_message(&alice, chat, "m", "c").await;
    let mut alice_v2 = app.connect_v2(&alice).await;

    app.post_read(&bob, chat, 1).await;

    assert_eq!(
        alice_v2.expect("read").await,
        json!({"type": "read", "chat_id": chat, "user_id": bob.id, "up_to": 1})
    );
    assert_eq!(alice_v2.expect("delivered").await["up_to"], 1);
}

#[actix_web::test]
async fn a_bad_read_is_400() {
    let app = spawn_app().await;
    let (alice, _, chat) = app.two_users_and_a_chat().await;
    let path = format!("/api/chats/{chat}/read/");
    for body in [
        json!({}),
        json!({"up_to": -1}),
        json!({"up_to": "3"}),
        json!({"up_to": 1.5}),
        json!({"up_to": null}),
        json!([1]),
    ] {
        let reply = app.post_json(&path, Some(&alice.token), &body).await;
        assert_eq!(reply.status, 400, "{body}");
    }
}
