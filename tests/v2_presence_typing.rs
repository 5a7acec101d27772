#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking
//! Typing and presence end to end, with short configured periods so no test
//! sleeps for seconds: who hears of it, when it starts and ends, the grace
//! period, `last_seen`, several devices and seed sockets.

mod common;

use std::time::Duration;

use common::spawn_app_with;
use common::v2::V2Client;
use serde_json::{json, Value};

/// Typing lasts 400 ms, the presence grace period is 400 ms.
async fn app() -> common::TestApp {
    spawn_app_with(&["--typing-ttl", "400ms", "--presence-grace", "400ms"]).await
}

async fn typing(client: &mut V2Client, chat: i64, active: bool) {
    client
        .send_frame(json!({"type": "typing", "chat_id": chat, "active": active}))
        .await;
}

// ---- typing -------------------------------------------------------------------

#[actix_web::test]
async fn typing_reaches_the_other_participant_once_and_never_the_typers_own_sockets() {
    let app = app().await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let mut alice_phone = app.connect_v2(&alice).await;
    let mut alice_laptop = app.connect_v2(&alice).await;
    let mut bob_v2 = app.connect_v2(&bob).await;

    typing(&mut alice_phone, chat, true).await;
    typing(&mut alice_phone, chat, true).await; // refreshes, no new event

    assert_eq!(
        bob_v2.expect("typing").await,
        json!({"type": "typing", "chat_id": chat, "user_id": alice.id, "active": true})
    );
    typing(&mut alice_phone, chat, false).await;
    assert_eq!(bob_v2.expect("typing").await["active"], false);
    bob_v2.expect_quiet(Duration::from_millis(200)).await;
    alice_phone.expect_quiet(Duration::from_millis(100)).await;
    alice_laptop.expect_quiet(Duration::from_millis(100)).await;
}

#[actix_web::test]
async fn stopping_when_not_typing_changes_nothing() {
    let app = app().await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let mut alice_v2 = app.connect_v2(&alice).await;
    let mut bob_v2 = app.connect_v2(&bob).await;
    typing(&mut alice_v2, chat, false).await;
    bob_v2.expect_quiet(Duration::from_millis(300)).await;
}

#[actix_web::test]
async fn typing_expires_on_the_server_after_its_ttl() {
    let app = app().await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let mut alice_v2 = app.connect_v2(&alice).await;
    let mut bob_v2 = app.connect_v2(&bob).await;

    typing(&mut alice_v2, chat, true).await;
    let started = std::time::Instant::now();
    assert_eq!(bob_v2.expect("typing").await["active"], true);
    assert_eq!(bob_v2.expect("typing").await["active"], false);
    let lasted = started.elapsed();
    assert!(
        lasted >= Duration::from_millis(350),
        "ended after {lasted:?}"
    );
}

#[actix_web::test]
async fn repeating_typing_keeps_it_alive_past_one_ttl() {
    let app = app().await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let mut alice_v2 = app.connect_v2(&alice).await;
    let mut bob_v2 = app.connect_v2(&bob).await;

    typing(&mut alice_v2, chat, true).await;
    assert_eq!(bob_v2.expect("typing").await["active"], true);
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        typing(&mut alice_v2, chat, true).await;
    }
    // 600 ms in, past one TTL, still typing: nothing yet.
    bob_v2.expect_quiet(Duration::from_millis(150)).await;
    assert_eq!(bob_v2.expect("typing").await["active"], false);
}

#[actix_web::test]
async fn a_stored_message_ends_its_senders_typing_after_the_message() {
    let app = app().await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let mut alice_v2 = app.connect_v2(&alice).await;
    let mut bob_v2 = app.connect_v2(&bob).await;

    typing(&mut alice_v2, chat, true).await;
    assert_eq!(bob_v2.expect("typing").await["active"], true);
    alice_v2.send_acked(chat, "m", "done typing").await;

    assert_eq!(
        bob_v2.expect("message").await["message"]["body"],
        "done typing"
    );
    assert_eq!(
        bob_v2.expect("typing").await,
        json!({"type": "typing", "chat_id": chat, "user_id": alice.id, "active": false})
    );
}

#[actix_web::test]
async fn typing_ends_when_the_socket_that_sent_it_closes() {
    let app = app().await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let mut alice_phone = app.connect_v2(&alice).await;
    let _alice_laptop = app.connect_v2(&alice).await;
    let mut bob_v2 = app.connect_v2(&bob).await;

    typing(&mut alice_phone, chat, true).await;
    assert_eq!(bob_v2.expect("typing").await["active"], true);
    alice_phone.close().await;

    // Well before the TTL would end it.
    let ended = tokio::time::timeout(Duration::from_millis(300), bob_v2.expect("typing")).await;
    assert_eq!(ended.expect("typing ended on close")["active"], false);
}

// ---- presence -------------------------------------------------------------------

async fn expect_presence(client: &mut V2Client) -> Value {
    let frame = client.next_any().await;
    assert_eq!(frame["type"], "presence", "{frame}");
    frame
}

#[actix_web::test]
async fn coming_online_and_going_offline_after_the_grace_period_are_announced() {
    let app = app().await;
    let (alice, bob, _) = app.two_users_and_a_chat().await;
    let mut alice_v2 = app.connect_v2(&alice).await;

    let bob_v2 = app.connect_v2(&bob).await;
    assert_eq!(
        expect_presence(&mut alice_v2).await,
        json!({"type": "presence", "user_id": bob.id, "online": true, "last_seen": null})
    );
    bob_v2.close().await;
    let closed = std::time::Instant::now();
    let offline = expect_presence(&mut alice_v2).await;
    assert!(
        closed.elapsed() >= Duration::from_millis(350),
        "offline too early"
    );
    assert_eq!(offline["user_id"], bob.id);
    assert_eq!(offline["online"], false);
    let last_seen = offline["last_seen"].as_str().unwrap();
    assert!(last_seen.ends_with('Z'), "{last_seen}");

    // The hello of a later socket carries it, while bob is offline.
    let again = app.connect_v2(&alice).await;
    let other = &again.hello["chats"][0]["other_user"];
    assert_eq!(other["online"], false);
    assert_eq!(other["last_seen"], last_seen);
}

#[actix_web::test]
async fn a_reconnect_within_the_grace_period_does_not_flap() {
    let app = app().await;
    let (alice, bob, _) = app.two_users_and_a_chat().await;
    let mut alice_v2 = app.connect_v2(&alice).await;
    let bob_v2 = app.connect_v2(&bob).await;
    assert_eq!(expect_presence(&mut alice_v2).await["online"], true);

    bob_v2.close().await;
    let _back = app.connect_v2(&bob).await;

    alice_v2.expect_silent(Duration::from_millis(700)).await;
}

#[actix_web::test]
async fn a_user_is_online_while_any_device_or_seed_socket_is_open() {
    let app = app().await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let mut alice_v2 = app.connect_v2(&alice).await;

    // A seed socket counts.
    let seed = app.connect(&bob, chat).await;
    assert_eq!(expect_presence(&mut alice_v2).await["online"], true);
    let bob_v2 = app.connect_v2(&bob).await;
    seed.close().await;
    alice_v2.expect_silent(Duration::from_millis(700)).await;
    assert_eq!(
        app.connect_v2(&alice).await.hello["chats"][0]["other_user"]["online"],
        true
    );
    bob_v2.close().await;
    assert_eq!(expect_presence(&mut alice_v2).await["online"], false);
}

#[actix_web::test]
async fn presence_goes_only_to_users_who_share_a_chat_and_never_to_oneself() {
    let app = app().await;
    let (alice, bob, _) = app.two_users_and_a_chat().await;
    let stranger = app.user("stranger").await;
    let mut stranger_v2 = app.connect_v2(&stranger).await;
    let mut bob_v2 = app.connect_v2(&bob).await;

    let _alice_v2 = app.connect_v2(&alice).await;

    assert_eq!(expect_presence(&mut bob_v2).await["user_id"], alice.id);
    stranger_v2.expect_silent(Duration::from_millis(500)).await;
    // Bob heard nothing about himself either.
    bob_v2.expect_silent(Duration::from_millis(100)).await;
}

#[actix_web::test]
async fn the_hello_shows_who_is_online_now() {
    let app = app().await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let _bob_v2 = app.connect_v2(&bob).await;
    let alice_v2 = app.connect_v2(&alice).await;
    let other = &alice_v2.chat_in_hello(chat)["other_user"];
    assert_eq!(other["online"], true);
    assert_eq!(other["last_seen"], Value::Null);
}

/// Nothing at all arrives (presence included) for `wait`.
trait ExpectSilent {
    async fn expect_silent(&mut self, wait: Duration);
}

impl ExpectSilent for V2Client {
    async fn expect_silent(&mut self, wait: Duration) {
        if let Some(received) = self.socket.receive_until_gone_within(wait).await {
            panic!("expected silence, got {received:?}");
        }
    }
}
