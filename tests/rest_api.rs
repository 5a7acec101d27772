#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking
//! The REST API end to end: the real server, a real HTTP client.

mod common;

use common::{spawn_app, spawn_app_with};
use serde_json::{json, Value};

fn error_text(body: &Value) -> &str {
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error field in {body}"))
}

// ---- registration -------------------------------------------------------

#[actix_web::test]
async fn registering_returns_201_with_the_new_user() {
    let app = spawn_app().await;

    let reply = app.register("alice", "correct horse battery").await;

    assert_eq!(reply.status, 201);
    assert_eq!(reply.body["username"], "alice");
    assert!(reply.body["id"].as_i64().is_some());
    assert_eq!(
        reply.body.as_object().map(serde_json::Map::len),
        Some(2),
        "{}",
        reply.body
    );
}

#[actix_web::test]
async fn registering_a_taken_username_is_rejected() {
    let app = spawn_app().await;
    app.register("alice", "correct horse battery").await;

    let reply = app.register("alice", "another password").await;

    assert_eq!(reply.status, 400);
    assert!(error_text(&reply.body).contains("already exists"));
}

#[actix_web::test]
async fn registering_with_an_invalid_username_or_password_is_rejected() {
    let app = spawn_app().await;
    let long = "a".repeat(151);
    for (username, password) in [
        ("", "correct horse battery"),
        (long.as_str(), "correct horse battery"),
        ("bob smith", "correct horse battery"),
        ("bob/../x", "correct horse battery"),
        ("bob", "short"),
        ("bob", ""),
    ] {
        let reply = app.register(username, password).await;
        assert_eq!(
            reply.status, 400,
            "{username:?}/{password:?}: {:?}",
            reply.body
        );
        assert!(!error_text(&reply.body).is_empty());
    }
    // Nothing was created along the way.
    assert_eq!(
        app.register("bob", "correct horse battery").await.status,
        201
    );
}

#[actix_web::test]
async fn a_150_character_username_with_every_allowed_symbol_is_accepted() {
    let app = spawn_app().await;
    let name = format!("a@b.c+d-e_f{}", "x".repeat(139));
    assert_eq!(name.chars().count(), 150);

    let reply = app.register(&name, "correct horse battery").await;

    assert_eq!(reply.status, 201, "{:?}", reply.body);
    assert_eq!(reply.body["username"], name.as_str());
}

#[actix_web::test]
async fn malformed_registration_bodies_get_400_never_500() {
    let app = spawn_app().await;
    for body in [
        "",
        "not json",
        "[]",
        "{}",
        r#"{"username": "alice"}"#,
        r#"{"password": "correct horse battery"}"#,
        r#"{"username": 5, "password": "correct horse battery"}"#,
        r#"{"username": "alice", "password": ["x"]}"#,
        r#"{"username": null, "password": null}"#,
    ] {
        let reply = app
            .post_raw(
                "/api/auth/register/",
                None,
                Some("application/json"),
                body.to_owned(),
            )
            .await;
        assert_eq!(reply.status, 400, "{body:?}: {:?}", reply.body);
        assert!(!error_text(&reply.body).is_empty());
    }
}

#[actix_web::test]
async fn a_body_over_the_limit_is_refused_with_413() {
    let app = spawn_app_with(&["--max-body-bytes", "1024"]).await;
    let huge = json!({"username": "alice", "password": "x".repeat(4096)});

    let reply = app.post_json("/api/auth/register/", None, &huge).await;

    assert_eq!(reply.status, 413);
    assert!(!error_text(&reply.body).is_empty());
}

#[actix_web::test]
async fn json_is_accepted_whatever_the_content_type() {
    let app = spawn_app().await;
    let body = r#"{"username": "alice", "password": "correct horse battery"}"#;

    let reply = app.post_raw("/api/auth/register/", None, None, body).await;

    assert_eq!(reply.status, 201, "{:?}", reply.body);
}

// ---- login --------------------------------------------------------------

#[actix_web::test]
async fn logging_in_returns_a_token_and_the_user() {
    let app = spawn_app().await;
    let registered = app.register("alice", "correct horse battery").await;

    let reply = app.login("alice", "correct horse battery").await;

    assert_eq!(reply.status, 200);
    assert!(reply.body["token"]
        .as_str()
        .is_some_and(|t| t.split('.').count() == 3));
    assert_eq!(reply.body["user"], registered.body);
}

#[actix_web::test]
async fn wrong_password_and_unknown_user_get_the_same_401() {
    let app = spawn_app().await;
    app.register("alice", "correct horse battery").await;

    let wrong_password = app.login("alice", "wrong password!").await;
    let unknown_user = app.login("nobody", "correct horse battery").await;
    let impossible_name = app.login("no body!", "correct horse battery").await;

    assert_eq!(wrong_password.status, 401);
    assert_eq!(unknown_user.status, 401);
    assert_eq!(impossible_name.status, 401);
    assert_eq!(wrong_password.body, unknown_user.body);
    assert_eq!(wrong_password.body, impossible_name.body);
}

// ---- authentication -----------------------------------------------------

#[actix_web::test]
async fn every_protected_endpoint_requires_a_valid_token() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let forged = format!("{}x", alice.token);
    for token in [None, Some("garbage"), Some(forged.as_str()), Some("")] {
        for reply in [
            app.get("/api/users/", token).await,
            app.get("/api/chats/", token).await,
            app.post_json("/api/chats/create/", token, &json!({"user_id": alice.id}))
                .await,
        ] {
            assert_eq!(reply.status, 401, "token {token:?}: {:?}", reply.body);
            assert!(!error_text(&reply.body).is_empty());
        }
    }
    for header in ["Token abc", "Bearer", "Basic YWxpY2U6cHc=", &alice.token] {
        let reply = app
            .get_with_header("/api/users/", "Authorization", header)
            .await;
        assert_eq!(reply.status, 401, "header {header:?}");
    }
}

#[actix_web::test]
async fn a_well_signed_token_for_a_user_that_does_not_exist_is_refused_at_every_door() {
    use chat_api::auth::{JwtSecret, JwtTokens};
    use chat_domain::user::{TokenGeneration, TokenIssuer as _, UserId};

    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let chat = app.chat(&alice, &bob).await;
    // Signed with the server's own key: only the user lookup can refuse it.
    let tokens = JwtTokens::new(
        &JwtSecret::new(common::JWT_SECRET).unwrap(),
        std::time::Duration::from_secs(3600),
    );
    let ghost = tokens
        .issue(UserId::new(999_999), TokenGeneration(0))
        .unwrap();
    let ghost = ghost.as_ref();

    for reply in [
        app.get("/api/users/", Some(ghost)).await,
        app.get("/api/chats/", Some(ghost)).await,
        app.post_json(
            "/api/chats/create/",
            Some(ghost),
            &json!({"user_id": alice.id}),
        )
        .await,
        app.get(&format!("/ws/chat/{chat}/"), Some(ghost)).await,
    ] {
        assert_eq!(reply.status, 401, "{:?}", reply.body);
        assert!(!error_text(&reply.body).is_empty());
    }
    let socket = app
        .try_connect(&format!("/ws/chat/{chat}/?token={ghost}"), None)
        .await;
    assert_eq!(socket.err(), Some(401));
}

// ---- users --------------------------------------------------------------

#[actix_web::test]
async fn the_user_list_is_everyone_else_ordered_by_id() {
    let app = spawn_app().await;
    let carol = app.user("carol").await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;

    let reply = app.get("/api/users/", Some(&alice.token)).await;

    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body,
        json!([{"id": carol.id, "username": "carol"}, {"id": bob.id, "username": "bob"}])
    );
}

#[actix_web::test]
async fn a_user_search_finds_others_by_part_of_their_name_ordered_by_name() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let malia = app.user("Malia").await;
    let bob = app.user("bob").await;
    let al_x = app.user("al_x").await;

    let found = app.get("/api/users/?search=AL", Some(&alice.token)).await;
    let limited = app
        .get("/api/users/?search=a&limit=1", Some(&alice.token))
        .await;
    let everyone = app.get("/api/users/?search=", Some(&bob.token)).await;

    assert_eq!(found.status, 200);
    assert_eq!(
        found.body,
        json!([{"id": al_x.id, "username": "al_x"}, {"id": malia.id, "username": "Malia"}]),
        "not the caller; by name, case ignored"
    );
    assert_eq!(limited.body, json!([{"id": al_x.id, "username": "al_x"}]));
    assert_eq!(everyone.body.as_array().unwrap().len(), 3);
}

#[actix_web::test]
async fn a_bad_user_search_is_a_400_and_needs_a_token() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let long = "a".repeat(151);

    for query in [
        "search=a&limit=0",
        "search=a&limit=101",
        "search=a&limit=x",
        "search=a&search=b",
        "limit=5",
        &format!("search={long}"),
    ] {
        let reply = app
            .get(&format!("/api/users/?{query}"), Some(&alice.token))
            .await;
        assert_eq!(reply.status, 400, "{query}: {}", reply.body);
        assert!(reply.body["error"].is_string(), "{query}");
    }
    assert_eq!(app.get("/api/users/?search=a", None).await.status, 401);
}

// ---- creating chats -----------------------------------------------------

#[actix_web::test]
async fn creating_a_chat_returns_201_then_200_for_the_same_pair() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;

    let first = app
        .post_json(
            "/api/chats/create/",
            Some(&alice.token),
            &json!({"user_id": bob.id}),
        )
        .await;
    let again = app
        .post_json(
            "/api/chats/create/",
            Some(&alice.token),
            &json!({"user_id": bob.id}),
        )
        .await;
    let other_side = app
        .post_json(
            "/api/chats/create/",
            Some(&bob.token),
            &json!({"user_id": alice.id}),
        )
        .await;

    assert_eq!(first.status, 201);
    assert_eq!(again.status, 200);
    assert_eq!(other_side.status, 200);
    assert_eq!(first.body["id"], again.body["id"]);
    assert_eq!(first.body["id"], other_side.body["id"]);
    assert_eq!(
        first.body["participants"],
        json!([{"id": alice.id, "username": "alice"}, {"id": bob.id, "username": "bob"}])
    );
    assert_eq!(
        first.body["other_user"],
        json!({"id": bob.id, "username": "bob"})
    );
    assert_eq!(
        other_side.body["other_user"],
        json!({"id": alice.id, "username": "alice"})
    );
    assert_eq!(first.body["last_message"], Value::Null);
    assert_eq!(first.body["unread_count"], 0);
    let created = first.body["created"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(created).is_ok() && created.ends_with('Z'),
        "{created}"
    );
}

#[actix_web::test]
async fn creating_a_chat_with_a_bad_user_id_is_rejected() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    for body in [
        json!({"user_id": alice.id}),
        json!({"user_id": 999_999}),
        json!({"user_id": -1}),
        json!({}),
        json!({"user_id": null}),
        json!({"user_id": "abc"}),
        json!({"user_id": 1.5}),
        json!({"user_id": [1]}),
        json!({"user_id": true}),
        json!([1]),
        json!("user_id"),
    ] {
        let reply = app
            .post_json("/api/chats/create/", Some(&alice.token), &body)
            .await;
        assert_eq!(reply.status, 400, "{body}: {:?}", reply.body);
        assert!(!error_text(&reply.body).is_empty());
    }
    assert!(app.chats_of(&alice).await.is_empty());
}

#[actix_web::test]
async fn bodies_that_are_not_json_objects_are_rejected_even_if_their_values_would_fit() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;

    let create = app
        .post_json("/api/chats/create/", Some(&alice.token), &json!([bob.id]))
        .await;
    let as_string = app
        .post_json(
            "/api/chats/create/",
            Some(&alice.token),
            &json!({"user_id": bob.id.to_string()}),
        )
        .await;
    let register = app
        .post_json(
            "/api/auth/register/",
            None,
            &json!(["carol", "correct horse battery"]),
        )
        .await;
    let login = app
        .post_json(
            "/api/auth/login/",
            None,
            &json!(["alice", "correct horse battery"]),
        )
        .await;

    for reply in [&create, &as_string, &register, &login] {
        assert_eq!(reply.status, 400, "{reply:?}");
        assert!(!error_text(&reply.body).is_empty());
    }
    assert!(app.chats_of(&alice).await.is_empty());
    assert_eq!(
        app.login("carol", "correct horse battery").await.status,
        401
    );
}

#[actix_web::test]
async fn concurrent_creates_for_one_pair_make_exactly_one_chat() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;

    let app = &app;
    let requests = (0..16).map(|i| {
        let (from, to) = if i % 2 == 0 {
            (alice.clone(), bob.clone())
        } else {
            (bob.clone(), alice.clone())
        };
        let body = json!({"user_id": to.id});
        async move {
            app.post_json("/api/chats/create/", Some(&from.token), &body)
                .await
        }
    });
    let replies = futures_util::future::join_all(requests).await;

    let created = replies.iter().filter(|r| r.status == 201).count();
    let found = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!((created, found), (1, 15), "{replies:?}");
    let ids: std::collections::HashSet<_> = replies.iter().map(|r| r.body["id"].clone()).collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(app.chats_of(&alice).await.len(), 1);
    assert_eq!(app.chats_of(&bob).await.len(), 1);
}

// ---- listing chats ------------------------------------------------------

#[actix_web::test]
async fn the_chat_list_shows_last_message_and_unread_count_most_recent_first() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let with_bob = app.chat(&alice, &bob).await;
    let with_carol = app.chat(&alice, &carol).await;

    // Bob writes twice, then Carol's chat stays quiet: Bob's chat is the
    // most recent activity even though Carol's was created later.
    let mut bob_socket = app.connect(&bob, with_bob).await;
    bob_socket.send_body("hi alice").await;
    bob_socket.next_message().await;
    bob_socket.send_body("are you there? 👀").await;
    bob_socket.next_message().await;

    let chats = app.chats_of(&alice).await;

    assert_eq!(chats.len(), 2);
    assert_eq!(chats[0]["id"], with_bob);
    assert_eq!(chats[0]["unread_count"], 2);
    assert_eq!(chats[0]["last_message"]["body"], "are you there? 👀");
    assert_eq!(chats[0]["last_message"]["sender"], "bob");
    assert!(chats[0]["last_message"]["created"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    assert_eq!(chats[0]["other_user"]["username"], "bob");
    assert_eq!(chats[1]["id"], with_carol);
    assert_eq!(chats[1]["last_message"], Value::Null);
    assert_eq!(chats[1]["unread_count"], 0);
    // Bob's own messages are never unread for Bob.
    let bobs = app.chats_of(&bob).await;
    assert_eq!(bobs[0]["unread_count"], 0);
    assert_eq!(bobs[0]["other_user"]["username"], "alice");
}

#[actix_web::test]
async fn a_user_sees_only_their_own_chats() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let mallory = app.user("mallory").await;
    app.chat(&alice, &bob).await;

    assert!(app.chats_of(&mallory).await.is_empty());
    assert_eq!(app.chats_of(&alice).await.len(), 1);
}

// ---- routing ------------------------------------------------------------

#[actix_web::test]
async fn unknown_routes_answer_404_json_and_wrong_methods_405_json() {
    let app = spawn_app().await;

    let missing = app.get("/api/nothing/", None).await;
    let no_slash = app.get("/api/users", None).await;
    let wrong_method = app.get("/api/chats/create/", None).await;
    let wrong_method_post = app.post_json("/api/users/", None, &json!({})).await;

    assert_eq!(missing.status, 404);
    assert!(!error_text(&missing.body).is_empty());
    assert_eq!(no_slash.status, 404);
    assert_eq!(wrong_method.status, 405);
    assert!(!error_text(&wrong_method.body).is_empty());
    assert_eq!(wrong_method_post.status, 405);
}
