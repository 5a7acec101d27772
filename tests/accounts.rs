#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking
//! Accounts end to end: changing the password and logging out revoke every
//! older token (REST, handshakes, open seed and v2 sockets), login
//! throttling, and usernames compared without regard to case or width.

mod common;

use std::time::Duration;

use common::{spawn_app, spawn_app_with, Received, TestApp, TestUser, WsClient};
use serde_json::json;

const PASSWORD: &str = "correct horse battery";
const CLOSE_WITHIN: Duration = Duration::from_secs(10);

async fn change_password(
    app: &TestApp,
    user: &TestUser,
    current: &str,
    new: &str,
) -> common::Reply {
    app.post_json(
        "/api/auth/password/",
        Some(&user.token),
        &json!({"current_password": current, "new_password": new}),
    )
    .await
}

/// The close code `socket` is closed with, skipping frames before it.
async fn closed_with(socket: &mut WsClient) -> Option<u16> {
    loop {
        match socket.receive_until_gone_within(CLOSE_WITHIN).await {
            Some(Received::Close(code)) => return code,
            Some(Received::Json(_)) => {}
            None => panic!("the socket was not closed within {CLOSE_WITHIN:?}"),
        }
    }
}

#[actix_web::test]
async fn changing_the_password_revokes_every_older_token_and_closes_its_sockets_with_4001() {
    let app = spawn_app().await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    // A second device of alice's, and bob, who is not affected.
    let other_device = app.login("alice", PASSWORD).await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut seed_socket = app.connect(&alice, chat).await;
    assert!(seed_socket
        .drain_messages(Duration::from_millis(200))
        .await
        .is_empty());
    let mut v2_socket = app.connect_v2(&alice).await;
    let mut bobs_socket = app.connect_v2(&bob).await;

    let changed = change_password(&app, &alice, PASSWORD, "a brand new password").await;
    assert_eq!(changed.status, 200, "{changed:?}");
    assert_eq!(changed.body["user"]["username"], "alice");
    let fresh = changed.body["token"].as_str().unwrap().to_owned();

    assert_eq!(closed_with(&mut seed_socket).await, Some(4001));
    assert_eq!(v2_socket.expect_close(CLOSE_WITHIN).await, Some(4001));
    // Every older token is refused, on REST and at the handshake.
    for old in [&alice.token, &other_device] {
        assert_eq!(app.get("/api/chats/", Some(old)).await.status, 401);
        let path = format!("/ws/v2/?token={old}");
        assert_eq!(app.try_connect(&path, None).await.err(), Some(401));
    }
    // The fresh token works, and so does the new password (the old does not).
    assert_eq!(app.get("/api/chats/", Some(&fresh)).await.status, 200);
    let path = format!("/ws/v2/?token={fresh}");
    assert!(app.try_connect(&path, None).await.is_ok());
    assert_eq!(app.login("alice", PASSWORD).await.status, 401);
    assert_eq!(app.login("alice", "a brand new password").await.status, 200);
    // Bob's socket is still open and hears alice's next message.
    let alice_now = TestUser {
        token: fresh,
        ..alice
    };
    let sent = app
        .post_message(&alice_now, chat, "still here?", "after-1")
        .await;
    assert_eq!(sent.status, 201, "{sent:?}");
    assert_eq!(
        bobs_socket.expect("message").await["message"]["body"],
        "still here?"
    );
}

#[actix_web::test]
async fn a_wrong_current_password_or_a_short_new_one_changes_nothing() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;

    let wrong = change_password(&app, &alice, "not my password", "a brand new password").await;
    assert_eq!(wrong.status, 400, "{wrong:?}");
    assert_eq!(wrong.body["error"], "the current password is not correct");
    let short = change_password(&app, &alice, PASSWORD, "short").await;
    assert_eq!(short.status, 400, "{short:?}");
    assert!(short.body["error"].as_str().unwrap().contains("at least 8"));
    let missing = app
        .post_json(
            "/api/auth/password/",
            Some(&alice.token),
            &json!({"new_password": "long enough"}),
        )
        .await;
    assert_eq!(missing.status, 400, "{missing:?}");
    let anonymous = app
        .post_json(
            "/api/auth/password/",
            None,
            &json!({"current_password": PASSWORD, "new_password": "a brand new password"}),
        )
        .await;
    assert_eq!(anonymous.status, 401);

    assert_eq!(app.get("/api/chats/", Some(&alice.token)).await.status, 200);
    assert_eq!(app.login("alice", PASSWORD).await.status, 200);
}

#[actix_web::test]
async fn logging_out_revokes_every_token_of_the_account_and_closes_its_sockets() {
    let app = spawn_app().await;
    let (alice, _bob, chat) = app.two_users_and_a_chat().await;
    let mut seed_socket = app.connect(&alice, chat).await;
    let mut v2_socket = app.connect_v2(&alice).await;

    let out = app
        .post_json("/api/auth/logout/", Some(&alice.token), &json!({}))
        .await;
    assert_eq!(out.status, 204, "{out:?}");

    assert_eq!(closed_with(&mut seed_socket).await, Some(4001));
    assert_eq!(v2_socket.expect_close(CLOSE_WITHIN).await, Some(4001));
    assert_eq!(app.get("/api/chats/", Some(&alice.token)).await.status, 401);
    let again = app
        .post_json("/api/auth/logout/", Some(&alice.token), &json!({}))
        .await;
    assert_eq!(again.status, 401);
    // Logging in again gives a token that works.
    let login = app.login("alice", PASSWORD).await;
    assert_eq!(login.status, 200);
    let token = login.body["token"].as_str().unwrap();
    assert_eq!(app.get("/api/chats/", Some(token)).await.status, 200);
}

#[actix_web::test]
async fn wrong_passwords_for_one_username_are_throttled_with_429_and_retry_after() {
    let app = spawn_app_with(&["--login-failures-per-username", "3"]).await;
    app.user("alice").await;
    app.user("bob").await;

    for _ in 0..3 {
        assert_eq!(app.login("alice", "wrong password").await.status, 401);
    }
    // Any spelling of the name shares the allowance, and once it is spent
    // even the right password waits: that is what stops the guessing.
    for name in ["alice", "ALICE"] {
        let throttled = app
            .client
            .post(app.url("/api/auth/login/"))
            .send_json(&json!({"username": name, "password": PASSWORD}))
            .await
            .unwrap();
        assert_eq!(throttled.status().as_u16(), 429);
        let retry_after: u64 = throttled
            .headers()
            .get("retry-after")
            .expect("a Retry-After header")
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        // 15 minutes / 3 failures: one back every 300 s.
        assert!((1..=300).contains(&retry_after), "{retry_after}");
    }
    // Other accounts are not held back.
    assert_eq!(app.login("bob", PASSWORD).await.status, 200);
}

#[actix_web::test]
async fn right_passwords_never_count_against_the_limit() {
    let app = spawn_app_with(&[
        "--login-failures-per-username",
        "2",
        "--login-failures-per-address",
        "2",
    ])
    .await;
    app.user("alice").await;
    for _ in 0..20 {
        assert_eq!(app.login("alice", PASSWORD).await.status, 200);
    }
    assert_eq!(app.login("alice", "wrong password").await.status, 401);
    assert_eq!(app.login("alice", PASSWORD).await.status, 200);
}

#[actix_web::test]
async fn one_address_guessing_over_many_usernames_is_throttled() {
    let app = spawn_app_with(&["--login-failures-per-address", "5"]).await;
    for n in 0..5 {
        let status = app
            .login(&format!("nobody{n}"), "wrong password")
            .await
            .status;
        assert_eq!(status, 401);
    }
    assert_eq!(app.login("nobody-else", "wrong password").await.status, 429);
}

#[actix_web::test]
async fn wrong_current_passwords_on_a_password_change_are_throttled_too() {
    let app = spawn_app_with(&["--login-failures-per-username", "2"]).await;
    let alice = app.user("alice").await;
    for _ in 0..2 {
        let wrong = change_password(&app, &alice, "guess", "a brand new password").await;
        assert_eq!(wrong.status, 400);
    }
    let throttled = change_password(&app, &alice, PASSWORD, "a brand new password").await;
    assert_eq!(throttled.status, 429, "{throttled:?}");
    assert_eq!(app.login("alice", PASSWORD).await.status, 429);
}

#[actix_web::test]
async fn usernames_are_unique_without_regard_to_case_or_width_and_stored_normalised() {
    let app = spawn_app().await;
    assert_eq!(app.register("alice", PASSWORD).await.status, 201);
    for impostor in ["Alice", "ALICE", "ａｌｉｃｅ", "ＡＬＩＣＥ"] {
        let taken = app.register(impostor, PASSWORD).await;
        assert_eq!(taken.status, 400, "{impostor}: {taken:?}");
        assert_eq!(
            taken.body["error"],
            "a user with that username already exists"
        );
    }
    // Stored in its NFKC form, and found by any spelling at login.
    let wide = app.register("ｂｏｂ", PASSWORD).await;
    assert_eq!(wide.status, 201);
    assert_eq!(wide.body["username"], "bob");
    let login = app.login("BOB", PASSWORD).await;
    assert_eq!(login.status, 200);
    assert_eq!(login.body["user"]["username"], "bob");
    // Names that render as blank, or with an invisible filler, are refused.
    for blank in ["\u{3164}", "alice\u{3164}", "\u{FFA0}\u{FFA0}", "a\u{200B}"] {
        let refused = app.register(blank, PASSWORD).await;
        assert_eq!(refused.status, 400, "{blank:?}: {refused:?}");
    }
}
