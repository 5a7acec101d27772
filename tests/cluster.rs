#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking
//! Several instances of the real binary on one PostgreSQL database, with a
//! `redis-server` of the test's own between them (CHAT_REDIS_URL): user A
//! on instance 1, user B on instance 2, seed and v2 sockets, traffic both
//! ways; then faults of Redis during the traffic. At the end of each, every
//! socket holds every message of its chat exactly once and in order, and
//! the database holds each once.
//!
//! PostgreSQL-only (the postgres build with TEST_DATABASE_URL): SQLite is
//! single-instance, which the first test checks. `redis-server` must be
//! installed; without it the tests say so and pass, unless REQUIRE_REDIS=1.

mod common;

use std::time::Duration;

use chat_persistence::Backend;
use common::deployment::{assert_no_panic_in_logs, Deployment};
use common::process::ServerProcess;
use common::redis::RedisProcess;
use common::v2::V2Client;
use common::{Api, TestUser, WsClient};
use serde_json::json;

#[actix_web::test]
async fn with_redis_and_sqlite_the_server_refuses_to_start_and_says_why() {
    let data = tempfile::tempdir().unwrap();
    let started = ServerProcess::start(&[
        ("CHAT_DATA_DIR", data.path().to_str().unwrap()),
        ("CHAT_JWT_SECRET", common::process::TEST_JWT_SECRET),
        ("CHAT_REDIS_URL", "redis://127.0.0.1:1/"),
    ]);

    let Err(output) = started else {
        panic!("started with SQLite and Redis");
    };
    assert!(
        output.contains("CHAT_REDIS_URL needs a PostgreSQL DATABASE_URL"),
        "{output}"
    );
}

/// A PostgreSQL deployment and a Redis, or `None` (skipped, said why).
fn cluster() -> Option<(Deployment, RedisProcess)> {
    let deployment = Deployment::new();
    if deployment.database.backend() != Backend::Postgres {
        eprintln!("SKIPPED here: a cluster needs PostgreSQL (runs in the PostgreSQL suite)");
        return None;
    }
    let redis = RedisProcess::start()?;
    Some((deployment, redis))
}

async fn instance(deployment: &Deployment, redis: &RedisProcess) -> ServerProcess {
    deployment
        .start_in_background(&[
            ("CHAT_REDIS_URL", &redis.url()),
            ("CHAT_CLUSTER_RESYNC", "300ms"),
        ])
        .await
}

/// `(chat_id, seq)` of every `message` and `ack` until `count` of them.
async fn gather_v2(client: &mut V2Client, count: usize) -> Vec<(i64, i64)> {
    let mut got = Vec::new();
    while got.len() < count {
        let frame = client.next().await;
        if matches!(frame["type"].as_str(), Some("message" | "ack")) {
            let message = &frame["message"];
            got.push((
                message["chat_id"].as_i64().unwrap(),
                message["seq"].as_i64().unwrap(),
            ));
        }
    }
    got
}

/// The ids of `count` seed `message` frames.
async fn gather_seed(socket: &mut WsClient, count: usize) -> Vec<i64> {
    let mut got = Vec::new();
    while got.len() < count {
        let frame = socket.next_json().await;
        if let Some(id) = frame["message"]["id"].as_i64() {
            got.push(id);
        }
    }
    got
}

/// Exactly `1..=n` of `chat`, in order.
fn assert_exactly_once_in_order(got: &[(i64, i64)], chat: i64, n: i64, who: &str) {
    let expected: Vec<(i64, i64)> = (1..=n).map(|seq| (chat, seq)).collect();
    assert_eq!(got, expected.as_slice(), "{who}");
}

/// The ids of every stored message of `chat`, oldest first (each once:
/// seqs are dense), checked against `n`.
async fn stored_ids(api: &Api, user: &TestUser, chat: i64, n: usize) -> Vec<i64> {
    let page = api.messages_page(user, chat, "limit=200").await;
    let messages = page.body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), n, "stored once each: {}", page.body);
    messages.iter().map(|m| m["id"].as_i64().unwrap()).collect()
}

/// Nothing more arrives on a v2 socket (no late duplicate).
async fn assert_no_more_messages(client: &mut V2Client, who: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(800);
    while let Ok(received) = tokio::time::timeout_at(deadline, client.socket.receive()).await {
        if let common::Received::Json(frame) = received {
            assert!(
                !matches!(frame["type"].as_str(), Some("message" | "ack")),
                "{who}: a late frame {frame}"
            );
        } else {
            panic!("{who}: closed");
        }
    }
}

#[actix_web::test]
async fn two_instances_carry_messages_reads_and_new_chats_both_ways_exactly_once() {
    let Some((deployment, redis)) = cluster() else {
        return;
    };
    let one = instance(&deployment, &redis).await;
    let two = instance(&deployment, &redis).await;
    let (api1, api2) = (Api::new(one.port), Api::new(two.port));
    let alice = api1.user("alice").await;
    let bob = api2.user("bob").await;
    let mut alice_v2 = api1.connect_v2(&alice).await;
    let mut bob_v2 = api2.connect_v2(&bob).await;

    // A chat created on instance 1 reaches bob's socket on instance 2.
    let chat = api1.chat(&alice, &bob).await;
    let created = bob_v2.expect("chat").await;
    assert_eq!(created["chat"]["id"], chat);
    assert_eq!(created["chat"]["other_user"]["username"], "alice");
    assert_eq!(alice_v2.expect("chat").await["chat"]["id"], chat);
    let mut alice_seed = api1.connect(&alice, chat).await;
    let mut bob_seed = api2.connect(&bob, chat).await;

    // Four senders, two instances, both protocols and REST (alice's REST
    // sends go to instance 2, bob's seed sends are on instance 2).
    let rounds = 15;
    for round in 0..rounds {
        alice_v2
            .send(chat, &format!("a-{round}"), &format!("alice v2 {round}"))
            .await;
        bob_v2
            .send(chat, &format!("b-{round}"), &format!("bob v2 {round}"))
            .await;
        let posted = api2
            .post_message(
                &alice,
                chat,
                &format!("alice rest {round}"),
                &format!("ar-{round}"),
            )
            .await;
        assert_eq!(posted.status, 201, "{posted:?}");
        bob_seed.send_body(&format!("bob seed {round}")).await;
    }
    let n = rounds * 4;

    let alice_got = gather_v2(&mut alice_v2, n).await;
    let bob_got = gather_v2(&mut bob_v2, n).await;
    assert_exactly_once_in_order(
        &alice_got,
        chat,
        n as i64,
        "alice's v2 socket on instance 1",
    );
    assert_exactly_once_in_order(&bob_got, chat, n as i64, "bob's v2 socket on instance 2");
    let ids = stored_ids(&api1, &alice, chat, n).await;
    assert_eq!(
        gather_seed(&mut alice_seed, n).await,
        ids,
        "alice's seed socket on instance 1"
    );
    assert_eq!(
        gather_seed(&mut bob_seed, n).await,
        ids,
        "bob's seed socket on instance 2"
    );

    // A read on instance 2 is announced on instance 1.
    assert_eq!(api2.post_read(&bob, chat, n as i64).await.status, 200);
    loop {
        let frame = alice_v2.next().await;
        if frame["type"] == "read" && frame["user_id"] == bob.id {
            assert_eq!(frame["up_to"], n as i64);
            break;
        }
    }
    // Typing crosses too.
    bob_v2
        .send_frame(json!({"type": "typing", "chat_id": chat, "active": true}))
        .await;
    loop {
        let frame = alice_v2.next().await;
        if frame["type"] == "typing" {
            assert_eq!(
                frame,
                json!({"type": "typing", "chat_id": chat, "user_id": bob.id, "active": true})
            );
            break;
        }
    }
    // And its end when bob's message is stored (not only at the timeout).
    bob_v2.send(chat, "b-last", "done typing").await;
    let mut after = Vec::new();
    while after.len() < 2 {
        let frame = alice_v2.next().await;
        if matches!(frame["type"].as_str(), Some("message" | "typing")) {
            after.push(frame);
        }
    }
    assert_eq!(after[0]["message"]["seq"], n as i64 + 1, "{after:?}");
    assert_eq!(
        after[1],
        json!({"type": "typing", "chat_id": chat, "user_id": bob.id, "active": false})
    );
    loop {
        let frame = bob_v2.next().await;
        if frame["type"] == "ack" {
            assert_eq!(frame["message"]["seq"], n as i64 + 1);
            break;
        }
    }
    assert_no_more_messages(&mut alice_v2, "alice").await;
    assert_no_more_messages(&mut bob_v2, "bob").await;
    for server in [&one, &two] {
        assert_no_panic_in_logs(server);
        // Nothing went wrong with Redis here: one connection all along (a
        // relay that reconnects every second still delivers, from the
        // database, but a second late).
        let logs = server.logs();
        assert_eq!(logs.matches("Redis connected").count(), 1, "{logs}");
        assert!(
            !logs.contains("gap filled"),
            "no gap without a fault: {logs}"
        );
    }
}

/// Sends `count` messages each way (alice on instance 1, bob on 2) from
/// `from`, numbering their client ids from there.
async fn both_ways(
    alice_v2: &mut V2Client,
    bob_v2: &mut V2Client,
    chat: i64,
    from: usize,
    count: usize,
) {
    for i in from..from + count {
        alice_v2
            .send(chat, &format!("a-{i}"), &format!("from alice {i}"))
            .await;
        bob_v2
            .send(chat, &format!("b-{i}"), &format!("from bob {i}"))
            .await;
    }
}

struct TwoSides {
    _one: ServerProcess,
    _two: ServerProcess,
    alice_v2: V2Client,
    bob_v2: V2Client,
    bob_seed: WsClient,
    api: Api,
    alice: TestUser,
    chat: i64,
}

async fn two_sides(deployment: &Deployment, redis: &RedisProcess) -> TwoSides {
    let one = instance(deployment, redis).await;
    let two = instance(deployment, redis).await;
    let (api1, api2) = (Api::new(one.port), Api::new(two.port));
    let alice = api1.user("alice").await;
    let bob = api2.user("bob").await;
    let chat = api1.chat(&alice, &bob).await;
    let alice_v2 = api1.connect_v2(&alice).await;
    let bob_v2 = api2.connect_v2(&bob).await;
    let bob_seed = api2.connect(&bob, chat).await;
    TwoSides {
        _one: one,
        _two: two,
        alice_v2,
        bob_v2,
        bob_seed,
        api: api1,
        alice,
        chat,
    }
}

/// After all traffic: each socket has `n` exactly once in order, and the
/// database holds each once.
async fn assert_everything_arrived(sides: &mut TwoSides, n: usize) {
    let chat = sides.chat;
    let alice_got = gather_v2(&mut sides.alice_v2, n).await;
    let bob_got = gather_v2(&mut sides.bob_v2, n).await;
    assert_exactly_once_in_order(&alice_got, chat, n as i64, "alice on instance 1");
    assert_exactly_once_in_order(&bob_got, chat, n as i64, "bob on instance 2");
    let ids = stored_ids(&sides.api, &sides.alice, chat, n).await;
    assert_eq!(
        gather_seed(&mut sides.bob_seed, n).await,
        ids,
        "bob's seed socket"
    );
    assert_no_more_messages(&mut sides.alice_v2, "alice").await;
    assert_no_more_messages(&mut sides.bob_v2, "bob").await;
}

#[actix_web::test]
async fn a_redis_restart_during_traffic_loses_nothing_and_repeats_nothing() {
    let Some((deployment, mut redis)) = cluster() else {
        return;
    };
    let mut sides = two_sides(&deployment, &redis).await;
    let chat = sides.chat;

    both_ways(&mut sides.alice_v2, &mut sides.bob_v2, chat, 0, 10).await;
    let ready = wait_for_readiness(&sides.api, "ready").await;
    assert_eq!(
        ready.body["checks"]["redis"]["status"], "ok",
        "{:?}",
        ready.body
    );
    redis.stop();
    // Sent while Redis is gone: the instances find them in the database.
    both_ways(&mut sides.alice_v2, &mut sides.bob_v2, chat, 10, 10).await;
    // Still serving, so still ready, but saying that Redis is down.
    let degraded = wait_for_readiness(&sides.api, "degraded").await;
    assert_eq!(degraded.status, 200, "{:?}", degraded.body);
    assert_eq!(
        degraded.body["checks"]["redis"]["status"], "failing",
        "{:?}",
        degraded.body
    );
    assert_eq!(
        degraded.body["checks"]["database"]["status"], "ok",
        "{:?}",
        degraded.body
    );
    redis.start_again();
    both_ways(&mut sides.alice_v2, &mut sides.bob_v2, chat, 20, 10).await;
    // Back by itself.
    wait_for_readiness(&sides.api, "ready").await;

    assert_everything_arrived(&mut sides, 60).await;
}

/// `/readyz` once its `status` is `wanted` (the relay notices a lost or
/// regained Redis within its ping interval and retry backoff).
async fn wait_for_readiness(api: &Api, wanted: &str) -> common::Reply {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let reply = api.get("/readyz", None).await;
        if reply.body["status"] == wanted || std::time::Instant::now() > deadline {
            assert_eq!(reply.body["status"], wanted, "/readyz: {:?}", reply.body);
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_web::test]
async fn with_redis_paused_longer_than_its_timeouts_messages_still_arrive_once() {
    let Some((deployment, redis)) = cluster() else {
        return;
    };
    let mut sides = two_sides(&deployment, &redis).await;
    let chat = sides.chat;

    both_ways(&mut sides.alice_v2, &mut sides.bob_v2, chat, 0, 5).await;
    redis.pause();
    both_ways(&mut sides.alice_v2, &mut sides.bob_v2, chat, 5, 5).await;
    // Longer than the relay's 2 s timeouts: it gives up on this Redis.
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.resume();
    both_ways(&mut sides.alice_v2, &mut sides.bob_v2, chat, 10, 5).await;

    assert_everything_arrived(&mut sides, 30).await;
}

#[actix_web::test]
async fn a_killed_subscriber_connection_is_replaced_and_nothing_is_lost() {
    let Some((deployment, redis)) = cluster() else {
        return;
    };
    let mut sides = two_sides(&deployment, &redis).await;
    let chat = sides.chat;

    both_ways(&mut sides.alice_v2, &mut sides.bob_v2, chat, 0, 5).await;
    let killed = redis.command(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    assert!(
        killed.is_some_and(|answer| answer.starts_with(':')),
        "CLIENT KILL answered"
    );
    both_ways(&mut sides.alice_v2, &mut sides.bob_v2, chat, 5, 5).await;

    assert_everything_arrived(&mut sides, 20).await;
}

#[actix_web::test]
async fn an_instance_killed_mid_traffic_loses_nothing_its_clients_catch_up_on_another() {
    let Some((deployment, redis)) = cluster() else {
        return;
    };
    let one = instance(&deployment, &redis).await;
    let mut two = instance(&deployment, &redis).await;
    let (api1, api2) = (Api::new(one.port), Api::new(two.port));
    let alice = api1.user("alice").await;
    let bob = api2.user("bob").await;
    let chat = api1.chat(&alice, &bob).await;
    let mut alice_v2 = api1.connect_v2(&alice).await;
    let mut bob_v2 = api2.connect_v2(&bob).await;

    both_ways(&mut alice_v2, &mut bob_v2, chat, 0, 10).await;
    // Bob holds what reached him before the kill (acks and copies).
    let mut held = gather_v2(&mut bob_v2, 20).await;
    bob_v2
        .send(chat, "b-lost-ack", "sent as the instance dies")
        .await;
    common::deployment::kill_9(&mut two);
    for i in 10..20 {
        alice_v2
            .send(chat, &format!("a-{i}"), &format!("from alice {i}"))
            .await;
    }

    // Bob's client reconnects through the balancer to instance 1, resends
    // what had no ack (the same client_id), and catches up by the spec's
    // algorithm: page after what it holds up to hello's head, then live.
    let mut bob_v2 = api1.connect_v2(&bob).await;
    let head = bob_v2.chat_in_hello(chat)["head_seq"].as_i64().unwrap();
    bob_v2
        .send(chat, "b-lost-ack", "sent as the instance dies")
        .await;
    let mut last = held.last().unwrap().1;
    while last < head {
        let page = api1
            .messages_page(&bob, chat, &format!("after={last}&limit=200"))
            .await;
        for seq in common::v2::seqs(&page.body) {
            held.push((chat, seq));
            last = seq;
        }
    }
    // Live: alice's messages after the snapshot and the resend's answer.
    let total = 10 + 10 + 1 + 10;
    let mut live = Vec::new();
    while last < total {
        let frame = bob_v2.next().await;
        if matches!(frame["type"].as_str(), Some("message" | "ack")) {
            let seq = frame["message"]["seq"].as_i64().unwrap();
            assert!(!live.contains(&seq), "a live frame twice: {frame}");
            live.push(seq);
            // A duplicate ack repeats what paging gave; anything else is new.
            if seq > last {
                assert_eq!(seq, last + 1, "in order: {frame}");
                held.push((chat, seq));
                last = seq;
            }
        }
    }
    assert_exactly_once_in_order(&held, chat, total, "bob, across the kill");

    let alice_got = gather_v2(&mut alice_v2, total as usize).await;
    assert_exactly_once_in_order(&alice_got, chat, total, "alice on the surviving instance");
    stored_ids(&api1, &alice, chat, total as usize).await;
    assert_no_more_messages(&mut alice_v2, "alice").await;
    assert_no_panic_in_logs(&one);
}

/// The next `presence` frame about `user` (other frames skipped).
#[actix_web::test]
async fn a_password_changed_on_one_instance_closes_the_sockets_on_the_other_with_4001() {
    let Some((deployment, redis)) = cluster() else {
        return;
    };
    let one = instance(&deployment, &redis).await;
    let two = instance(&deployment, &redis).await;
    let (api1, api2) = (Api::new(one.port), Api::new(two.port));
    let alice = api1.user("alice").await;
    let bob = api1.user("bob").await;
    let chat = api1.chat(&alice, &bob).await;
    let mut seed_on_two = api2.connect(&alice, chat).await;
    let mut v2_on_two = api2.connect_v2(&alice).await;
    let mut bob_on_two = api2.connect_v2(&bob).await;

    let changed = api1
        .post_json(
            "/api/auth/password/",
            Some(&alice.token),
            &json!({"current_password": "correct horse battery", "new_password": "another long one"}),
        )
        .await;
    assert_eq!(changed.status, 200, "{changed:?}");

    assert_eq!(
        v2_on_two.expect_close(Duration::from_secs(10)).await,
        Some(4001)
    );
    let seed_closed = loop {
        match seed_on_two
            .receive_until_gone_within(Duration::from_secs(10))
            .await
        {
            Some(common::Received::Close(code)) => break code,
            Some(common::Received::Json(_)) => {}
            None => panic!("the seed socket on instance 2 stayed open"),
        }
    };
    assert_eq!(seed_closed, Some(4001));
    // Instance 2 refuses the old token too (the database says so).
    assert_eq!(
        api2.get("/api/chats/", Some(&alice.token)).await.status,
        401
    );
    // Bob's socket is untouched.
    bob_on_two.expect_quiet(Duration::from_millis(300)).await;
    assert_no_panic_in_logs(&one);
    assert_no_panic_in_logs(&two);
}

#[actix_web::test]
async fn the_per_user_message_rate_is_the_clusters_not_each_instances() {
    let Some((deployment, redis)) = cluster() else {
        return;
    };
    // Six messages per user, hardly refilled: each instance alone would
    // admit six.
    let limits = [
        ("CHAT_REDIS_URL", redis.url()),
        ("CHAT_CLUSTER_RESYNC", "300ms".to_owned()),
        ("CHAT_WS_RATE", "0.001".to_owned()),
        ("CHAT_WS_BURST", "6".to_owned()),
    ];
    let env: Vec<(&str, &str)> = limits.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let one = deployment.start_in_background(&env).await;
    let two = deployment.start_in_background(&env).await;
    let (api1, api2) = (Api::new(one.port), Api::new(two.port));
    let alice = api1.user("alice").await;
    let bob = api1.user("bob").await;
    let chat = api1.chat(&alice, &bob).await;
    let send = |api: Api, n: usize| {
        let alice = alice.clone();
        async move {
            api.post_message(&alice, chat, &format!("m{n}"), &format!("c{n}"))
                .await
                .status
        }
    };

    for n in 0..4 {
        assert_eq!(send(api1.clone(), n).await, 201);
    }
    // Instance 1 tells instance 2 within tens of milliseconds (a wide
    // margin: CI's machine is busy).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(send(api2.clone(), 4).await, 201);
    assert_eq!(send(api2.clone(), 5).await, 201);
    assert_eq!(send(api2.clone(), 6).await, 429);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(send(api1.clone(), 7).await, 429);
    // Six stored in all.
    let page = api1.messages_page(&alice, chat, "limit=50").await;
    assert_eq!(
        page.body["messages"].as_array().unwrap().len(),
        6,
        "{page:?}"
    );
    assert_no_panic_in_logs(&one);
    assert_no_panic_in_logs(&two);
}

async fn presence_of(client: &mut V2Client, user: &TestUser) -> serde_json::Value {
    loop {
        let frame = client.next_any().await;
        if frame["type"] == "presence" && frame["user_id"] == user.id {
            return frame;
        }
    }
}

/// No `presence` frame about `user` for `wait`.
async fn no_presence_of(client: &mut V2Client, user: &TestUser, wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(received) = tokio::time::timeout_at(deadline, client.socket.receive()).await {
        if let common::Received::Json(frame) = received {
            assert!(
                !(frame["type"] == "presence" && frame["user_id"] == user.id),
                "unexpected: {frame}"
            );
        }
    }
}

#[actix_web::test]
async fn presence_is_the_clusters_online_anywhere_offline_once_gone_everywhere() {
    let Some((deployment, redis)) = cluster() else {
        return;
    };
    let url = redis.url();
    let settings = [
        ("CHAT_REDIS_URL", url.as_str()),
        ("CHAT_CLUSTER_RESYNC", "300ms"),
        ("CHAT_PRESENCE_GRACE", "300ms"),
    ];
    let mut one = deployment.start_in_background(&settings).await;
    let two = deployment.start_in_background(&settings).await;
    let (api1, api2) = (Api::new(one.port), Api::new(two.port));
    let alice = api1.user("alice").await;
    let bob = api2.user("bob").await;
    api1.chat(&alice, &bob).await;
    let mut bob_v2 = api2.connect_v2(&bob).await;

    // Alice comes online on instance 1: bob, on 2, is told, and a new
    // socket of his sees her online in its hello.
    let alice_on_one = api1.connect_v2(&alice).await;
    assert_eq!(presence_of(&mut bob_v2, &alice).await["online"], true);
    let later = api2.connect_v2(&bob).await;
    assert_eq!(
        later.hello["chats"][0]["other_user"]["online"], true,
        "{}",
        later.hello
    );
    later.close().await;

    // A second device on instance 2, then the first closes: still online.
    let alice_on_two = api2.connect_v2(&alice).await;
    alice_on_one.close().await;
    no_presence_of(&mut bob_v2, &alice, Duration::from_millis(1500)).await;

    // The last one closes: offline, with a last_seen, after the grace.
    alice_on_two.close().await;
    let offline = presence_of(&mut bob_v2, &alice).await;
    assert_eq!(offline["online"], false);
    assert!(offline["last_seen"].is_string(), "{offline}");

    // Online on instance 1 again, which then dies: offline within the
    // heartbeat's lifetime (three resync intervals).
    let _alice_again = api1.connect_v2(&alice).await;
    assert_eq!(presence_of(&mut bob_v2, &alice).await["online"], true);
    let killed = tokio::time::Instant::now();
    common::deployment::kill_9(&mut one);
    let gone = presence_of(&mut bob_v2, &alice).await;
    assert_eq!(gone["online"], false);
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "{:?}",
        killed.elapsed()
    );
    assert_no_panic_in_logs(&two);
}

/// nginx (Debian's package) with the configuration of docs/deploy.md, its
/// upstreams pointed at `servers`; `None` (said why) without nginx, unless
/// REQUIRE_NGINX=1.
struct Nginx {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx_in_front_of(servers: &[u16]) -> Option<Nginx> {
    let binary = ["/usr/sbin/nginx", "nginx"]
        .into_iter()
        .find(|b| std::process::Command::new(b).arg("-v").output().is_ok());
    let Some(binary) = binary else {
        assert!(
            std::env::var("REQUIRE_NGINX").as_deref() != Ok("1"),
            "REQUIRE_NGINX=1 and nginx is not installed (apt-get install nginx-light)"
        );
        eprintln!("SKIPPED: nginx is not installed (apt-get install nginx-light)");
        return None;
    };
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/deploy.md")).unwrap();
    let block = docs
        .split("```nginx\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("an nginx block in docs/deploy.md");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let upstreams: String = servers
        .iter()
        .map(|p| format!("    server 127.0.0.1:{p};\n"))
        .collect();
    let start = block
        .find("    server 127.0.0.1:8001;")
        .expect("the documented upstreams");
    let end = block
        .find("}\n\nserver {")
        .expect("the upstream block's end");
    let http = format!("{}{}{}", &block[..start], upstreams, &block[end..])
        .replace("listen 80;", &format!("listen 127.0.0.1:{port};"));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let config = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 1024; }}\nhttp {{\naccess_log off;\n\
         client_body_temp_path {d}/body;\nproxy_temp_path {d}/proxy;\nfastcgi_temp_path {d}/fastcgi;\n\
         uwsgi_temp_path {d}/uwsgi;\nscgi_temp_path {d}/scgi;\n{http}\n}}\n"
    );
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, config).unwrap();
    let child = std::process::Command::new(binary)
        .args(["-p", &d.to_string(), "-c", path.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nginx starts");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "nginx did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(Nginx {
        child,
        port,
        _dir: dir,
    })
}

#[actix_web::test]
async fn chatting_through_nginx_in_front_of_two_instances_works_both_ways() {
    let Some((deployment, redis)) = cluster() else {
        return;
    };
    let one = instance(&deployment, &redis).await;
    let two = instance(&deployment, &redis).await;
    let Some(nginx) = nginx_in_front_of(&[one.port, two.port]) else {
        return;
    };
    let api = Api::new(nginx.port);
    let alice = api.user("alice").await;
    let bob = api.user("bob").await;
    let chat = api.chat(&alice, &bob).await;
    // Round robin, one connection after the other: each user gets a socket
    // on each instance.
    let mut sockets = Vec::new();
    for user in [&alice, &bob, &bob, &alice] {
        sockets.push(api.connect_v2(user).await);
    }
    let mut bob_seed = api.connect(&bob, chat).await;
    for round in 0..10 {
        sockets[0]
            .send(chat, &format!("a-{round}"), &format!("alice {round}"))
            .await;
        sockets[1]
            .send(chat, &format!("b-{round}"), &format!("bob {round}"))
            .await;
    }

    for (i, socket) in sockets.iter_mut().enumerate() {
        let got = gather_v2(socket, 20).await;
        assert_exactly_once_in_order(&got, chat, 20, &format!("socket {i} through nginx"));
    }
    let ids = stored_ids(&api, &alice, chat, 20).await;
    assert_eq!(
        gather_seed(&mut bob_seed, 20).await,
        ids,
        "a seed socket through nginx"
    );
    for server in [&one, &two] {
        assert!(
            server.logs().contains("/ws/v2/"),
            "both instances served sockets"
        );
    }
}
