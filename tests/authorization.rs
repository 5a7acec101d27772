#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking
//! Authorisation at every door: a user can never read, write, list or learn
//! about a chat they are not in, through any route, REST or WebSocket.
//!
//! Alice and Bob share a chat; Mallory, the outsider, has a chat of her own
//! with Alice (so her lists are not trivially empty). "Fences" make the
//! negative checks exact rather than timed: when a connection's next frame
//! is a message sent *after* the one it must not get, and the hub delivers
//! in commit order, the forbidden one was never queued for it.

mod common;

use common::{spawn_app, spawn_app_with, TestApp, TestUser};
use serde_json::{json, Value};

const SECRET_FROM_ALICE: &str = "alice's secret for bob";
const SECRET_FROM_BOB: &str = "bob's secret for alice";

struct Cast {
    alice: TestUser,
    bob: TestUser,
    mallory: TestUser,
    /// Alice and Bob's chat, with one message from each, unread by Alice.
    private: i64,
    /// Mallory and Alice's chat, empty.
    mallorys: i64,
}

async fn cast(app: &TestApp) -> Cast {
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let mallory = app.user("mallory").await;
    let private = app.chat(&alice, &bob).await;
    let mallorys = app.chat(&mallory, &alice).await;
    let mut alice_socket = app.connect(&alice, private).await;
    alice_socket.send_body(SECRET_FROM_ALICE).await;
    alice_socket.next_message().await;
    alice_socket.close().await;
    let mut bob_socket = app.connect(&bob, private).await;
    bob_socket.next_message().await; // Alice's, replayed
    bob_socket.send_body(SECRET_FROM_BOB).await;
    bob_socket.next_message().await;
    bob_socket.close().await;
    app.wait_for_connections(0).await;
    Cast {
        alice,
        bob,
        mallory,
        private,
        mallorys,
    }
}

/// The body as text, to check it mentions nothing of the private chat.
fn assert_mentions_nothing_private(body: &Value, what: &str) {
    let text = body.to_string();
    for secret in [SECRET_FROM_ALICE, SECRET_FROM_BOB, "\"bob\""] {
        assert!(!text.contains(secret), "{what} leaks {secret}: {text}");
    }
}

fn ids(chats: &[Value]) -> Vec<i64> {
    chats.iter().map(|c| c["id"].as_i64().unwrap()).collect()
}

// ---- GET /api/chats/ --------------------------------------------------------------

#[actix_web::test]
async fn the_chat_list_shows_an_outsider_only_their_own_chats_and_nothing_of_others() {
    let app = spawn_app().await;
    let cast = cast(&app).await;

    let mallorys_list = app.chats_of(&cast.mallory).await;

    assert_eq!(ids(&mallorys_list), [cast.mallorys]);
    let chat = &mallorys_list[0];
    assert_eq!(chat["last_message"], Value::Null);
    assert_eq!(chat["unread_count"], 0);
    assert_eq!(
        chat["participants"],
        json!([
            {"id": cast.alice.id, "username": "alice"},
            {"id": cast.mallory.id, "username": "mallory"},
        ])
    );
    assert_mentions_nothing_private(&Value::Array(mallorys_list), "Mallory's chat list");
    // Alice sees both chats, and each carries only its own activity.
    let alices_list = app.chats_of(&cast.alice).await;
    let private = alices_list
        .iter()
        .find(|c| c["id"] == cast.private)
        .unwrap();
    let with_mallory = alices_list
        .iter()
        .find(|c| c["id"] == cast.mallorys)
        .unwrap();
    assert_eq!(private["last_message"]["body"], SECRET_FROM_BOB);
    assert_eq!(private["unread_count"], 1);
    assert_eq!(with_mallory["last_message"], Value::Null);
    assert_eq!(with_mallory["unread_count"], 0);
    assert_mentions_nothing_private(with_mallory, "Alice's chat with Mallory");
}

// ---- POST /api/chats/create/ ------------------------------------------------------

#[actix_web::test]
async fn creating_a_chat_never_hands_an_outsider_someone_elses_chat() {
    let app = spawn_app().await;
    let cast = cast(&app).await;

    let with_alice = app
        .post_json(
            "/api/chats/create/",
            Some(&cast.mallory.token),
            &json!({"user_id": cast.alice.id}),
        )
        .await;
    let with_bob = app
        .post_json(
            "/api/chats/create/",
            Some(&cast.mallory.token),
            &json!({"user_id": cast.bob.id}),
        )
        .await;
    // The private chat's id as a user id names some user (or none): never
    // the chat itself.
    let by_chat_id = app
        .post_json(
            "/api/chats/create/",
            Some(&cast.mallory.token),
            &json!({"user_id": cast.private}),
        )
        .await;
    // Extra fields naming the private chat are ignored.
    let with_extras = app
        .post_json(
            "/api/chats/create/",
            Some(&cast.mallory.token),
            &json!({"user_id": cast.bob.id, "id": cast.private, "chat_id": cast.private,
                    "participants": [cast.alice.id, cast.bob.id]}),
        )
        .await;

    assert_eq!(with_alice.status, 200);
    assert_eq!(with_alice.body["id"], cast.mallorys);
    assert_eq!(with_bob.status, 201);
    assert_ne!(with_bob.body["id"], cast.private);
    assert_eq!(with_extras.status, 200);
    assert_eq!(with_extras.body["id"], with_bob.body["id"]);
    for reply in [&with_alice, &with_bob, &with_extras] {
        assert_eq!(reply.body["last_message"], Value::Null, "{reply:?}");
        assert_eq!(reply.body["unread_count"], 0, "{reply:?}");
        let has_mallory = reply.body["participants"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"].as_i64() == Some(cast.mallory.id));
        assert!(has_mallory, "{reply:?}");
        assert_ne!(reply.body["id"], cast.private);
        assert_mentions_nothing_private(&reply.body["last_message"], "a created chat");
    }
    assert_ne!(by_chat_id.body["id"], cast.private, "{by_chat_id:?}");
    assert!(
        by_chat_id.status == 400
            || by_chat_id.body["participants"]
                .to_string()
                .contains("mallory"),
        "{by_chat_id:?}"
    );
    // And Alice and Bob still have exactly their one chat between them.
    let bobs = app.chats_of(&cast.bob).await;
    assert!(bobs.iter().any(|c| c["id"] == cast.private));
    assert_eq!(
        bobs.iter()
            .filter(|c| c["other_user"]["username"] == "alice")
            .count(),
        1
    );
}

// ---- GET /api/users/ ---------------------------------------------------------------

#[actix_web::test]
async fn the_user_list_says_nothing_about_chats() {
    let app = spawn_app().await;
    let cast = cast(&app).await;

    let reply = app.get("/api/users/", Some(&cast.mallory.token)).await;

    assert_eq!(reply.status, 200);
    for user in reply.body.as_array().unwrap() {
        let keys: Vec<_> = user.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["id", "username"], "{user}");
    }
    assert!(!reply.body.to_string().contains("secret"));
}

// ---- the chat socket: handshake -----------------------------------------------------

#[actix_web::test]
async fn an_outsider_cannot_open_the_socket_however_the_chat_id_is_spelled() {
    let app = spawn_app().await;
    let cast = cast(&app).await;
    let id = cast.private;
    let spellings = [
        format!("{id}"),
        format!("0{id}"),
        format!("00{id}"),
        format!("+{id}"),
        format!("%2B{id}"),
        format!("%3{}", &id.to_string()), // percent-encoded first digit
    ];
    let mut refused = 0;
    for spelling in &spellings {
        let query = app
            .try_connect(
                &format!("/ws/chat/{spelling}/?token={}", cast.mallory.token),
                None,
            )
            .await;
        let header = app
            .try_connect(&format!("/ws/chat/{spelling}/"), Some(&cast.mallory.token))
            .await;
        for (how, result) in [("query", query), ("header", header)] {
            // Every spelling names the same chat, and is refused as such.
            assert_eq!(result.err(), Some(403), "/ws/chat/{spelling}/ by {how}");
            refused += 1;
        }
    }
    assert_eq!(refused, spellings.len() * 2);
    // The header comes first; the query cannot lend Mallory Alice's token.
    let mixed = app
        .try_connect(
            &format!("/ws/chat/{id}/?token={}", cast.alice.token),
            Some(&cast.mallory.token),
        )
        .await;
    assert_eq!(mixed.err(), Some(403));
    // A second `token` in the query is not a way in either (it is no
    // token at all).
    let doubled = app
        .try_connect(
            &format!(
                "/ws/chat/{id}/?token={}&token={}",
                cast.mallory.token, cast.alice.token
            ),
            None,
        )
        .await;
    assert_eq!(doubled.err(), Some(401));
    // The refusals had no side effect: Alice's unread count is untouched,
    // and the socket opens for her.
    let alices = app.chats_of(&cast.alice).await;
    let private = alices.iter().find(|c| c["id"] == id).unwrap();
    assert_eq!(private["unread_count"], 1);
    app.wait_for_connections(0).await;
}

#[actix_web::test]
async fn a_refusal_tells_an_outsider_no_more_than_the_contract_allows() {
    let app = spawn_app().await;
    let cast = cast(&app).await;
    let carol = app.user("carol").await;
    let dave = app.user("dave").await;
    let other_private = app.chat(&carol, &dave).await;
    let missing = cast.private.max(other_private) + 1_000;

    // Without a valid token nothing is learnt, not even whether a chat
    // exists: the same 401 for a real chat, a missing one, and no number.
    for token in [None, Some("garbage")] {
        let answers: Vec<_> = [
            format!("/ws/chat/{}/", cast.private),
            format!("/ws/chat/{missing}/"),
            "/ws/chat/abc/".to_owned(),
        ]
        .iter()
        .map(|path| (path.clone(), token))
        .collect();
        let mut bodies = Vec::new();
        for (path, token) in answers {
            let reply = app.get(&path, token).await;
            assert_eq!(reply.status, 401, "{path} {token:?}: {reply:?}");
            bodies.push(reply.body);
        }
        assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
    }

    // Signed in, an outsider learns that a chat exists (403) or not (404),
    // as CONTRACT.md's order of checks implies, and nothing more: the same
    // body for every chat, naming no one.
    let forbidden_a = app
        .get(
            &format!("/ws/chat/{}/", cast.private),
            Some(&cast.mallory.token),
        )
        .await;
    let forbidden_b = app
        .get(
            &format!("/ws/chat/{other_private}/"),
            Some(&cast.mallory.token),
        )
        .await;
    let missing_a = app
        .get(&format!("/ws/chat/{missing}/"), Some(&cast.mallory.token))
        .await;
    let missing_b = app
        .get(
            &format!("/ws/chat/{}/", missing + 1),
            Some(&cast.mallory.token),
        )
        .await;
    assert_eq!(forbidden_a.status, 403);
    assert_eq!(forbidden_b.status, 403);
    assert_eq!(forbidden_a.body, forbidden_b.body);
    assert_eq!(missing_a.status, 404);
    assert_eq!(missing_b.status, 404);
    assert_eq!(missing_a.body, missing_b.body);
    for reply in [&forbidden_a, &missing_a] {
        let fields = reply.body.as_object().unwrap();
        assert_eq!(fields.len(), 1, "{reply:?}");
        let text = fields["error"].as_str().unwrap();
        for name in ["alice", "bob", "carol", "dave"] {
            assert!(!text.contains(name), "{text}");
        }
        assert!(!text.contains(&cast.private.to_string()), "{text}");
    }

    // There is no REST route to a single chat: the same 404 for any id.
    let rest_private = app
        .get(
            &format!("/api/chats/{}/", cast.private),
            Some(&cast.mallory.token),
        )
        .await;
    let rest_missing = app
        .get(&format!("/api/chats/{missing}/"), Some(&cast.mallory.token))
        .await;
    assert_eq!(rest_private.status, 404);
    assert_eq!(rest_missing.status, 404);
    assert_eq!(
        rest_private.body["error"]
            .as_str()
            .unwrap()
            .replace(&cast.private.to_string(), "N"),
        rest_missing.body["error"]
            .as_str()
            .unwrap()
            .replace(&missing.to_string(), "N"),
    );
}

#[actix_web::test]
async fn with_allowed_origins_a_foreign_origin_learns_nothing_about_any_chat() {
    let app = spawn_app_with(&["--allowed-origins", "https://chat.example"]).await;
    let cast = cast(&app).await;
    let missing = cast.private + 1_000;
    let mut bodies = Vec::new();
    for path in [
        format!("/ws/chat/{}/?token={}", cast.private, cast.alice.token),
        format!("/ws/chat/{}/?token={}", cast.private, cast.mallory.token),
        format!("/ws/chat/{missing}/?token={}", cast.mallory.token),
        format!("/ws/chat/{}/", cast.private),
    ] {
        let reply = app
            .get_with_header(&path, "Origin", "https://evil.example")
            .await;
        assert_eq!(reply.status, 403, "{path}");
        bodies.push(reply.body);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
}

// ---- the chat socket: sending and receiving ------------------------------------------

#[actix_web::test]
async fn an_outsider_cannot_send_into_a_chat_they_are_not_in() {
    let app = spawn_app().await;
    let cast = cast(&app).await;
    let mut alice_private = app.connect(&cast.alice, cast.private).await;
    let mut bob_private = app.connect(&cast.bob, cast.private).await;
    for socket in [&mut alice_private, &mut bob_private] {
        socket.next_message().await;
        socket.next_message().await;
    }
    let mut alice_with_mallory = app.connect(&cast.alice, cast.mallorys).await;
    let mut mallory = app.connect(&cast.mallory, cast.mallorys).await;

    // Every field a frame might use to aim elsewhere is ignored: the
    // message goes to the socket's own chat, from its own user.
    let aimed = json!({
        "body": "aimed at the private chat",
        "chat": cast.private, "chat_id": cast.private, "id": cast.private,
        "room": format!("chat_{}", cast.private), "to": cast.bob.id,
        "sender": "alice", "user_id": cast.alice.id,
    });
    mallory.send_json(&aimed).await;

    let echoed = mallory.next_message().await;
    assert_eq!(echoed["body"], "aimed at the private chat");
    assert_eq!(echoed["sender"], "mallory");
    assert_eq!(alice_with_mallory.next_message().await, echoed);
    // Fence: Bob writes in the private chat; that is the next thing both
    // private sockets get, so Mallory's message never reached them.
    bob_private.send_body("fence").await;
    assert_eq!(bob_private.next_message().await["body"], "fence");
    assert_eq!(alice_private.next_message().await["body"], "fence");
    // Nor was it stored there: the private history is the two secrets and
    // the fence.
    let mut replay = app.connect(&cast.bob, cast.private).await;
    let bodies = [
        replay.next_message().await["body"].clone(),
        replay.next_message().await["body"].clone(),
        replay.next_message().await["body"].clone(),
    ];
    assert_eq!(bodies, [SECRET_FROM_ALICE, SECRET_FROM_BOB, "fence"]);
    bob_private.send_body("second fence").await;
    assert_eq!(replay.next_message().await["body"], "second fence");
    let private = app.chats_of(&cast.bob).await;
    let private = private.iter().find(|c| c["id"] == cast.private).unwrap();
    assert_eq!(private["last_message"]["body"], "second fence");
}

#[actix_web::test]
async fn an_outsider_receives_none_of_a_chats_broadcasts() {
    let app = spawn_app().await;
    let cast = cast(&app).await;
    let mut mallory = app.connect(&cast.mallory, cast.mallorys).await;
    let mut alice_with_mallory = app.connect(&cast.alice, cast.mallorys).await;
    let mut alice_private = app.connect(&cast.alice, cast.private).await;
    let mut bob_private = app.connect(&cast.bob, cast.private).await;
    for socket in [&mut alice_private, &mut bob_private] {
        socket.next_message().await;
        socket.next_message().await;
    }

    for i in 0..20 {
        let (from, to) = if i % 2 == 0 {
            (&mut alice_private, &mut bob_private)
        } else {
            (&mut bob_private, &mut alice_private)
        };
        let body = format!("private {i}");
        from.send_body(&body).await;
        assert_eq!(from.next_message().await["body"], body.as_str());
        assert_eq!(to.next_message().await["body"], body.as_str());
    }
    // Fence: the next (and only) thing Mallory gets is from her own chat.
    alice_with_mallory.send_body("hello mallory").await;
    alice_with_mallory.next_message().await;
    assert_eq!(mallory.next_message().await["body"], "hello mallory");
    // Reconnecting replays her own chat only.
    mallory.close().await;
    let mut again = app.connect(&cast.mallory, cast.mallorys).await;
    assert_eq!(again.next_message().await["body"], "hello mallory");
    alice_with_mallory.send_body("second fence").await;
    assert_eq!(again.next_message().await["body"], "second fence");
    assert_mentions_nothing_private(
        &Value::Array(app.chats_of(&cast.mallory).await),
        "Mallory's list afterwards",
    );
}

#[actix_web::test]
async fn a_participant_of_two_chats_hears_each_only_on_its_own_socket() {
    let app = spawn_app().await;
    let cast = cast(&app).await;
    let mut alice_private = app.connect(&cast.alice, cast.private).await;
    alice_private.next_message().await;
    alice_private.next_message().await;
    let mut alice_with_mallory = app.connect(&cast.alice, cast.mallorys).await;
    let mut bob = app.connect(&cast.bob, cast.private).await;
    bob.next_message().await;
    bob.next_message().await;
    let mut mallory = app.connect(&cast.mallory, cast.mallorys).await;

    // Interleaved: B-chat, M-chat, B-chat, M-chat...
    for i in 0..10 {
        bob.send_body(&format!("from bob {i}")).await;
        assert_eq!(bob.next_message().await["body"], format!("from bob {i}"));
        mallory.send_body(&format!("from mallory {i}")).await;
        assert_eq!(
            mallory.next_message().await["body"],
            format!("from mallory {i}")
        );
    }

    // Each of Alice's sockets got exactly its own chat's ten, in order;
    // a stray from the other chat would have come in between.
    for i in 0..10 {
        let private = alice_private.next_message().await;
        assert_eq!(private["body"], format!("from bob {i}"));
        assert_eq!(private["sender"], "bob");
        let with_mallory = alice_with_mallory.next_message().await;
        assert_eq!(with_mallory["body"], format!("from mallory {i}"));
        assert_eq!(with_mallory["sender"], "mallory");
    }
    bob.send_body("fence").await;
    mallory.send_body("fence").await;
    assert_eq!(alice_private.next_message().await["sender"], "bob");
    assert_eq!(alice_with_mallory.next_message().await["sender"], "mallory");
}

#[actix_web::test]
async fn reading_one_chat_marks_nothing_read_in_another() {
    let app = spawn_app().await;
    let cast = cast(&app).await;
    let mut mallory = app.connect(&cast.mallory, cast.mallorys).await;
    mallory.send_body("from mallory").await;
    mallory.next_message().await;
    mallory.close().await;

    // Alice opens only her chat with Mallory.
    let mut alice = app.connect(&cast.alice, cast.mallorys).await;
    assert_eq!(alice.next_message().await["body"], "from mallory");
    alice.send_body("fence").await;
    assert_eq!(alice.next_message().await["body"], "fence");

    let chats = app.chats_of(&cast.alice).await;
    let private = chats.iter().find(|c| c["id"] == cast.private).unwrap();
    let with_mallory = chats.iter().find(|c| c["id"] == cast.mallorys).unwrap();
    assert_eq!(with_mallory["unread_count"], 0);
    assert_eq!(private["unread_count"], 1, "Bob's message is still unread");
    // And Bob's copy of his message is still unread by Alice.
    let mut bob = app.connect(&cast.bob, cast.private).await;
    bob.next_message().await;
    assert_eq!(bob.next_message().await["is_read"], false);
}
