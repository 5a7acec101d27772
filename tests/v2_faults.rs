#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking
//! Protocol v2's retry key under failure: one `(chat, sender, client_id)` is
//! stored at most once, whoever sends it, however often, and whatever
//! happens in between (PROTOCOL-V2.md: "stored once per (chat, sender,
//! client_id)"; "Unsent messages are re-sent with their original
//! client_id: at most one copy is ever stored").
//!
//! - the same `client_id` at the same moment on two sockets of one user,
//!   and on a socket and over REST: one copy; one answer says new (`ack`
//!   with `duplicate: false`, or `201`), the other duplicate (`duplicate:
//!   true`, or `200`), both name the same message;
//! - re-sent after a reconnect, with the ack read or lost with the socket:
//!   `duplicate: true` and the original;
//! - re-sent after `kill -9` of the real binary and a restart on the same
//!   database, acknowledged before the kill or in flight when it came: one
//!   copy, seqs still dense, and what was acknowledged is a duplicate.
//!
//! - (PostgreSQL) a COMMIT the killed server sent, landing after the new
//!   server gave a socket its snapshot, must not be missed by that socket.
//!
//! The kill tests run on SQLite, or on PostgreSQL in the postgres build
//! with `TEST_DATABASE_URL`; the last one is PostgreSQL-only.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use chat_persistence::Backend;
use common::deployment::{assert_no_panic_in_logs, kill_9, Deployment};
use common::v2::V2Client;
use common::{spawn_app, Api, Received, TestUser};
use serde_json::{json, Value};

/// Frames on `socket` up to the answer (`ack` or `error`) naming
/// `client_id`: the answer, and the `message` events seen on the way.
async fn answer_for(socket: &mut V2Client, client_id: &str) -> (Value, Vec<Value>) {
    let mut messages = Vec::new();
    loop {
        let frame = socket.next().await;
        match frame["type"].as_str().unwrap() {
            "ack" | "error" => {
                assert_eq!(frame["client_id"], client_id, "{frame}");
                return (frame, messages);
            }
            "message" => messages.push(frame["message"].clone()),
            _ => panic!("unexpected while waiting for the answer to {client_id}: {frame}"),
        }
    }
}

/// The same message, field by field (`created` included).
fn assert_same_message(a: &Value, b: &Value, what: &str) {
    for field in [
        "id",
        "chat_id",
        "seq",
        "sender_id",
        "body",
        "created",
        "client_id",
    ] {
        assert_eq!(a[field], b[field], "{what}: {field} differs: {a} vs {b}");
    }
}

/// Every message of the chat, oldest first, paged over REST; checks the
/// seqs are 1..=head with none missing or repeated.
async fn stored_messages(api: &Api, user: &TestUser, chat: i64) -> Vec<Value> {
    let mut messages: Vec<Value> = Vec::new();
    loop {
        let after = messages.last().map_or(0, |m| m["seq"].as_i64().unwrap());
        let page = api
            .messages_page(user, chat, &format!("after={after}&limit=200"))
            .await;
        assert_eq!(page.status, 200, "{page:?}");
        messages.extend(page.body["messages"].as_array().unwrap().iter().cloned());
        if page.body["has_more_after"] != json!(true) {
            let head = page.body["head_seq"].as_i64().unwrap();
            let seqs: Vec<i64> = messages
                .iter()
                .map(|m| m["seq"].as_i64().unwrap())
                .collect();
            assert_eq!(
                seqs,
                (1..=head).collect::<Vec<_>>(),
                "stored seqs are dense"
            );
            return messages;
        }
    }
}

/// `client_id` -> how many stored messages of `sender` carry it.
fn copies_by_client_id(messages: &[Value], sender: &TestUser) -> BTreeMap<String, usize> {
    let mut copies = BTreeMap::new();
    for message in messages.iter().filter(|m| m["sender_id"] == sender.id) {
        let client_id = message["client_id"].as_str().unwrap().to_owned();
        *copies.entry(client_id).or_default() += 1;
    }
    copies
}

fn send_frame(chat: i64, client_id: &str, body: &str) -> Value {
    json!({"type": "send", "chat_id": chat, "client_id": client_id, "body": body})
}

#[actix_web::test]
async fn the_same_client_id_on_two_sockets_of_one_user_at_once_is_stored_once() {
    const ROUNDS: usize = 40;
    let app = spawn_app().await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let mut bob_socket = app.connect_v2(&bob).await;
    let mut first = app.connect_v2(&alice).await;
    let mut second = app.connect_v2(&alice).await;
    let (mut won_by_first, mut won_by_second) = (0, 0);

    for round in 0..ROUNDS {
        let (client_id, body) = (format!("twin-{round}"), format!("twin {round}"));
        // Both frames are written before either is answered; which one
        // reaches the writer first alternates with the order of writing.
        let frame = send_frame(chat, &client_id, &body);
        if round % 2 == 0 {
            first.send_frame(frame.clone()).await;
            second.send_frame(frame).await;
        } else {
            second.send_frame(frame.clone()).await;
            first.send_frame(frame).await;
        }
        let (first_answer, first_saw) = answer_for(&mut first, &client_id).await;
        let (second_answer, second_saw) = answer_for(&mut second, &client_id).await;
        for answer in [&first_answer, &second_answer] {
            assert_eq!(answer["type"], "ack", "round {round}: {answer}");
            assert_eq!(answer["message"]["body"], body.as_str());
        }
        assert_same_message(
            &first_answer["message"],
            &second_answer["message"],
            &format!("round {round}: both acks name one message"),
        );
        let duplicates = (
            first_answer["duplicate"].as_bool().unwrap(),
            second_answer["duplicate"].as_bool().unwrap(),
        );
        // The socket that lost the race also gets the winner's message, as
        // every other socket of the sender does; the winner does not.
        let (loser, loser_saw, winner_saw) = match duplicates {
            (false, true) => {
                won_by_first += 1;
                (&mut second, second_saw, first_saw)
            }
            (true, false) => {
                won_by_second += 1;
                (&mut first, first_saw, second_saw)
            }
            other => panic!("round {round}: duplicate flags {other:?}, not one of each"),
        };
        let original = &first_answer["message"];
        assert!(winner_saw.is_empty(), "round {round}: {winner_saw:?}");
        assert!(loser_saw.len() <= 1, "round {round}: {loser_saw:?}");
        let relayed = match loser_saw.into_iter().next() {
            Some(message) => message,
            None => loser.expect("message").await["message"].clone(),
        };
        assert_same_message(&relayed, original, &format!("round {round}: relayed"));
        let to_bob = bob_socket.expect("message").await;
        assert_same_message(
            &to_bob["message"],
            original,
            &format!("round {round}: to bob"),
        );
    }
    for socket in [&mut first, &mut second, &mut bob_socket] {
        socket.expect_quiet(Duration::from_millis(200)).await;
    }

    let stored = stored_messages(&app, &alice, chat).await;
    assert_eq!(stored.len(), ROUNDS, "one copy per client_id");
    assert!(copies_by_client_id(&stored, &alice)
        .values()
        .all(|&n| n == 1));
    eprintln!("{ROUNDS} races: the first socket won {won_by_first}, the second {won_by_second}");
}

#[actix_web::test]
async fn the_same_client_id_with_two_bodies_at_once_stores_one_and_refuses_the_other() {
    const ROUNDS: usize = 20;
    let app = spawn_app().await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let mut bob_socket = app.connect_v2(&bob).await;
    let mut first = app.connect_v2(&alice).await;
    let mut second = app.connect_v2(&alice).await;

    for round in 0..ROUNDS {
        let client_id = format!("clash-{round}");
        first
            .send_frame(send_frame(chat, &client_id, "from the first"))
            .await;
        second
            .send_frame(send_frame(chat, &client_id, "from the second"))
            .await;
        let (first_answer, first_saw) = answer_for(&mut first, &client_id).await;
        let (second_answer, second_saw) = answer_for(&mut second, &client_id).await;
        let (stored, loser, loser_saw) = match (
            first_answer["type"].as_str().unwrap(),
            second_answer["type"].as_str().unwrap(),
        ) {
            ("ack", "error") => (&first_answer, &mut second, second_saw),
            ("error", "ack") => (&second_answer, &mut first, first_saw),
            other => panic!("round {round}: answers {other:?}: {first_answer} {second_answer}"),
        };
        assert_eq!(stored["duplicate"], false, "{stored}");
        let refused = if stored == &first_answer {
            &second_answer
        } else {
            &first_answer
        };
        assert_eq!(refused["code"], "conflict", "round {round}: {refused}");
        let relayed = match loser_saw.into_iter().next() {
            Some(message) => message,
            None => loser.expect("message").await["message"].clone(),
        };
        assert_same_message(&relayed, &stored["message"], "relayed");
        let to_bob = bob_socket.expect("message").await;
        assert_same_message(&to_bob["message"], &stored["message"], "to bob");
    }
    bob_socket.expect_quiet(Duration::from_millis(200)).await;
    let stored = stored_messages(&app, &alice, chat).await;
    assert_eq!(stored.len(), ROUNDS);
}

#[actix_web::test]
async fn the_same_client_id_over_the_socket_and_rest_at_once_is_stored_once() {
    const ROUNDS: usize = 30;
    let app = spawn_app().await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let mut bob_socket = app.connect_v2(&bob).await;
    let mut socket = app.connect_v2(&alice).await;
    let (mut won_by_socket, mut won_by_rest) = (0, 0);

    for round in 0..ROUNDS {
        let (client_id, body) = (format!("both-{round}"), format!("both {round}"));
        let frame = send_frame(chat, &client_id, &body);
        // The request goes first; the frame follows at once, after a
        // yield, or a timer tick later, so that each side wins some races.
        let (rest, ()) =
            futures_util::join!(app.post_message(&alice, chat, &body, &client_id), async {
                match round % 3 {
                    0 => {}
                    1 => tokio::task::yield_now().await,
                    _ => actix_web::rt::time::sleep(Duration::ZERO).await,
                }
                socket.send_frame(frame).await;
            });
        let (ack, saw) = answer_for(&mut socket, &client_id).await;
        assert_eq!(ack["type"], "ack", "round {round}: {ack}");
        assert_same_message(&ack["message"], &rest.body, &format!("round {round}"));
        match (ack["duplicate"].as_bool().unwrap(), rest.status) {
            (false, 200) => {
                won_by_socket += 1;
                assert!(saw.is_empty(), "round {round}: {saw:?}");
            }
            // REST's message goes to every socket, the sender's included.
            (true, 201) => {
                won_by_rest += 1;
                let relayed = match saw.into_iter().next() {
                    Some(message) => message,
                    None => socket.expect("message").await["message"].clone(),
                };
                assert_same_message(&relayed, &rest.body, "relayed");
            }
            other => panic!("round {round}: (duplicate, status) {other:?}: {ack} {rest:?}"),
        }
        let to_bob = bob_socket.expect("message").await;
        assert_same_message(&to_bob["message"], &rest.body, "to bob");
    }
    socket.expect_quiet(Duration::from_millis(200)).await;
    bob_socket.expect_quiet(Duration::from_millis(200)).await;
    let stored = stored_messages(&app, &alice, chat).await;
    assert_eq!(stored.len(), ROUNDS, "one copy per client_id");
    eprintln!("{ROUNDS} races: the socket won {won_by_socket}, REST {won_by_rest}");
}

#[actix_web::test]
async fn a_send_repeated_after_a_reconnect_is_a_duplicate_of_the_original() {
    let app = spawn_app().await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let mut bob_socket = app.connect_v2(&bob).await;

    // The ack was read, then the socket closed.
    let mut socket = app.connect_v2(&alice).await;
    let original = socket.send_acked(chat, "kept-1", "hello").await;
    socket.close().await;
    let mut socket = app.connect_v2(&alice).await;
    socket.send(chat, "kept-1", "hello").await;
    let ack = socket.expect("ack").await;
    assert_eq!(ack["duplicate"], true, "{ack}");
    assert_same_message(&ack["message"], &original, "after a reconnect");

    // The socket went away with the ack unread (no close frame): the
    // re-send on a new socket names the one stored copy. (Whether the first
    // copy was stored at all depends on timing: a frame that arrives just
    // before the connection drops is often discarded unread, so the
    // re-send may be the first copy; either way there is one.)
    //
    // If the old session stores it after the new socket joined, the new
    // socket also gets it as a `message` (from "the user's other sockets"),
    // before or after its own ack: at most once, and the same message.
    socket.send(chat, "lost-ack-1", "where did it go").await;
    drop(socket);
    let mut socket = app.connect_v2(&alice).await;
    socket.send(chat, "lost-ack-1", "where did it go").await;
    let (ack, mut relayed) = answer_for(&mut socket, "lost-ack-1").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let lost_ack = ack["message"].clone();
    while let Some(Received::Json(frame)) = socket
        .socket
        .receive_until_gone_within(Duration::from_millis(300))
        .await
    {
        assert_eq!(frame["type"], "message", "{frame}");
        relayed.push(frame["message"].clone());
    }
    assert!(relayed.len() <= 1, "{relayed:?}");
    for message in &relayed {
        assert_eq!(ack["duplicate"], true, "relayed, so stored before: {ack}");
        assert_same_message(message, &lost_ack, "relayed from the old session");
    }
    eprintln!(
        "re-sent after the ack was lost: duplicate {}, also relayed from the old session: {}",
        ack["duplicate"],
        !relayed.is_empty()
    );

    // And from another device, and over REST: the same message again.
    let mut other_device = app.connect_v2(&alice).await;
    other_device.send(chat, "kept-1", "hello").await;
    let ack = other_device.expect("ack").await;
    assert_eq!(ack["duplicate"], true, "{ack}");
    assert_same_message(&ack["message"], &original, "from another device");
    let rest = app.post_message(&alice, chat, "hello", "kept-1").await;
    assert_eq!(rest.status, 200, "{rest:?}");
    assert_same_message(&rest.body, &original, "over REST");

    // Bob saw each message once.
    assert_same_message(
        &bob_socket.expect("message").await["message"],
        &original,
        "bob",
    );
    assert_same_message(
        &bob_socket.expect("message").await["message"],
        &lost_ack,
        "bob",
    );
    bob_socket.expect_quiet(Duration::from_millis(300)).await;
    let stored = stored_messages(&app, &alice, chat).await;
    assert_eq!(stored.len(), 2, "{stored:?}");
    socket.close().await;
    other_device.close().await;
}

/// What arrived on a socket before the server was killed under it.
async fn acks_before_the_end(socket: &mut V2Client) -> HashMap<String, Value> {
    let mut acks = HashMap::new();
    while let Some(Received::Json(frame)) = socket
        .socket
        .receive_until_gone_within(Duration::from_secs(5))
        .await
    {
        if frame["type"] == "ack" {
            acks.insert(
                frame["client_id"].as_str().unwrap().to_owned(),
                frame["message"].clone(),
            );
        }
    }
    acks
}

#[actix_web::test]
async fn a_send_repeated_after_kill_9_and_a_restart_is_stored_at_most_once() {
    const BURST: usize = 300;
    let deployment = Deployment::new();
    let mut server = deployment.start(&[]);
    let api = Api::new(server.port);
    let (alice, bob, chat) = api.two_users_and_a_chat().await;

    // One acknowledged before the kill...
    let mut socket = api.connect_v2(&alice).await;
    let acked = socket.send_acked(chat, "before-0", "before the kill").await;
    // ...then a burst in flight when it comes: some stored, some not, some
    // stored with the ack never sent.
    let burst: Vec<(String, String)> = (1..=BURST)
        .map(|i| (format!("burst-{i}"), format!("burst {i}")))
        .collect();
    for (client_id, body) in &burst {
        socket.send(chat, client_id, body).await;
    }
    // The kill lands once the first of them is stored, while the others
    // are still on their way.
    let first = socket.expect("ack").await;
    assert_eq!(first["client_id"], "burst-1", "{first}");
    kill_9(&mut server);
    let mut acked_in_burst = acks_before_the_end(&mut socket).await;
    acked_in_burst.insert("burst-1".to_owned(), first["message"].clone());
    assert_no_panic_in_logs(&server);
    drop(server);
    deployment.database.check_integrity().unwrap();

    let server = deployment.start(&[]);
    let api = Api::new(server.port);
    let stored_before = stored_messages(&api, &alice, chat).await;
    let copies = copies_by_client_id(&stored_before, &alice);
    assert!(copies.values().all(|&n| n == 1), "{copies:?}");
    assert_eq!(copies.get("before-0"), Some(&1));
    for client_id in acked_in_burst.keys() {
        assert_eq!(
            copies.get(client_id),
            Some(&1),
            "acknowledged, so stored: {client_id}"
        );
    }

    // Everything re-sent with its original client_id.
    let mut socket = api.connect_v2(&alice).await;
    let ack = socket.send_acked(chat, "before-0", "before the kill").await;
    assert_same_message(&ack, &acked, "acknowledged before the kill");
    let (mut duplicates, mut new) = (0, 0);
    for (client_id, body) in &burst {
        socket.send(chat, client_id, body).await;
        let ack = socket.expect("ack").await;
        assert_eq!(ack["client_id"], client_id.as_str(), "{ack}");
        assert_eq!(ack["message"]["body"], body.as_str(), "{ack}");
        let was_stored = copies.contains_key(client_id);
        assert_eq!(
            ack["duplicate"], was_stored,
            "{client_id}: duplicate exactly when it was stored before the kill: {ack}"
        );
        if let Some(before) = acked_in_burst.get(client_id) {
            assert_same_message(&ack["message"], before, client_id);
        }
        if was_stored {
            duplicates += 1;
        } else {
            new += 1;
        }
    }
    let rest = api
        .post_message(&alice, chat, "before the kill", "before-0")
        .await;
    assert_eq!(rest.status, 200, "{rest:?}");
    assert_same_message(&rest.body, &acked, "over REST");

    let stored = stored_messages(&api, &alice, chat).await;
    assert_eq!(stored.len(), BURST + 1, "each client_id once");
    assert!(copies_by_client_id(&stored, &alice)
        .values()
        .all(|&n| n == 1));
    // Bob catches up on all of it from the start.
    let mut bob_socket = api.connect_v2(&bob).await;
    assert_eq!(bob_socket.chat_in_hello(chat)["head_seq"], BURST + 1);
    let page = bob_socket
        .history(json!({"chat_id": chat, "after": 0, "limit": 200}))
        .await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 200);
    assert_same_message(&page["messages"][0], &acked, "bob's first");
    assert_no_panic_in_logs(&server);
    drop(server);
    deployment.database.check_integrity().unwrap();
    eprintln!(
        "kill -9 with {BURST} sends in flight ({}): {} acknowledged before it, {duplicates} stored \
         before it (re-sent as duplicates), {new} stored only when re-sent",
        deployment.database.backend(),
        acked_in_burst.len()
    );
}

/// Runs `sql` on the test's PostgreSQL database with psql; its output.
fn psql(database_url: &str, sql: &str) -> String {
    let output = std::process::Command::new("psql")
        .arg(database_url)
        .arg("-qAtc")
        .arg(sql)
        .output()
        .expect("psql runs");
    assert!(output.status.success(), "{sql}: {output:?}");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// PostgreSQL finishes a transaction whose `COMMIT` it has received even
/// when the client that sent it is gone: `kill -9` of the server does not
/// stop a commit in progress on the database's side. If that commit lands
/// after the restarted server took a socket's `hello` snapshot, the message
/// is above the snapshot's `head_seq` and no event announces it (its
/// server is dead), so the catch-up algorithm ("everything committed
/// before the snapshot is at most its head_seq, everything after it
/// arrives as an event") misses it until the next reconnect.
///
/// The server therefore waits, at start-up, for its earlier transactions to
/// end (`wait_for_earlier_transactions` in the persistence crate).
///
/// A slow commit is made certain here with a deferred constraint trigger
/// on the test's own database that sleeps at `COMMIT` for one message (a
/// stand-in for a slow WAL flush under load, which is how the storm test
/// first met this). PostgreSQL-only: SQLite's commit dies with the process.
#[actix_web::test]
async fn a_commit_landing_after_kill_9_is_announced_or_seen_by_sockets_opened_meanwhile() {
    let deployment = Deployment::new();
    if deployment.database.backend() != Backend::Postgres {
        eprintln!("SKIPPED here: PostgreSQL-only (runs in the PostgreSQL suite)");
        return;
    }
    let mut server = deployment.start(&[]);
    let api = Api::new(server.port);
    let (alice, bob, chat) = api.two_users_and_a_chat().await;
    let url = deployment.database.url();
    psql(
        url,
        "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN PERFORM pg_sleep(3); RETURN NULL; END $$;
         CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON direct_messages
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
             WHEN (NEW.body = 'slow to commit') EXECUTE FUNCTION slow_commit();",
    );
    let mut socket = api.connect_v2(&alice).await;
    socket.send(chat, "slow-1", "slow to commit").await;
    // Wait until the writer's COMMIT is running (sleeping in the trigger).
    let deadline = Instant::now() + Duration::from_secs(10);
    let committing = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND state = 'active' AND query = 'COMMIT' AND pid <> pg_backend_pid()";
    while psql(url, committing) != "1" {
        assert!(Instant::now() < deadline, "the COMMIT never started");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    kill_9(&mut server);
    drop(socket);
    let server = deployment.start(&[]);
    let api = Api::new(server.port);

    // Bob opens his socket while the dead server's commit is still going.
    let mut bob_socket = api.connect_v2(&bob).await;
    let head_in_hello = bob_socket.chat_in_hello(chat)["head_seq"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let head = loop {
        let page = api.messages_page(&bob, chat, "limit=1").await;
        let head = page.body["head_seq"].as_i64().unwrap();
        if head == 1 {
            break head;
        }
        assert!(
            Instant::now() < deadline,
            "the commit never landed: {page:?}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    };

    // The retry key held across it: a re-send is a duplicate.
    let mut socket = api.connect_v2(&alice).await;
    socket.send(chat, "slow-1", "slow to commit").await;
    let ack = socket.expect("ack").await;
    assert_eq!(ack["duplicate"], true, "{ack}");
    assert_eq!(ack["message"]["seq"], head, "{ack}");

    // What bob's catch-up needs: seq 1 in his snapshot (the restarted
    // server waits for the dead one's transactions before it serves), or
    // announced after it. Before that fix, it was neither.
    if head_in_hello == 1 {
        drop(server);
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    let announced = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match bob_socket.socket.receive_until_gone_within(left).await {
            Some(Received::Json(frame)) if frame["type"] == "presence" => {}
            other => break other,
        }
    };
    match announced {
        Some(Received::Json(frame)) if frame["type"] == "message" => {
            assert_eq!(frame["message"]["seq"], 1, "{frame}");
        }
        other => panic!(
            "bob's hello said head_seq 0; seq 1 committed after it (the killed server's \
             last COMMIT) and was never announced: bob misses it until he reconnects ({other:?})"
        ),
    }
    drop(server);
}
