//! `/metrics`: where it is served (its own loopback port by default, the
//! main port only when asked, or nowhere), that real traffic moves the
//! families it should, and that no label grows with users, chats or paths.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{spawn_app, spawn_app_with, TestApp};
use serde_json::json;

/// `GET /metrics` on `port`: the status and the body.
async fn get_metrics(app: &TestApp, port: u16) -> (u16, String) {
    let mut response = app
        .client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .expect("request sent");
    let body = response.body().limit(16 << 20).await.expect("body read");
    (
        response.status().as_u16(),
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

/// The metrics text from the app's own metrics port.
async fn scrape(app: &TestApp) -> String {
    let port = app.metrics_port.expect("a metrics port");
    let (status, text) = get_metrics(app, port).await;
    assert_eq!(status, 200, "{text}");
    text
}

/// Every sample line: (name, labels as written, value).
fn samples(text: &str) -> Vec<(String, String, f64)> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("name and value");
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            (name.to_owned(), labels.to_owned(), value.parse().unwrap())
        })
        .collect()
}

/// The sum of `name`'s samples whose labels contain every one of `labels`.
fn value(text: &str, name: &str, labels: &[&str]) -> f64 {
    samples(text)
        .into_iter()
        .filter(|(n, l, _)| n == name && labels.iter().all(|wanted| l.contains(wanted)))
        .map(|(_, _, v)| v)
        .sum()
}

fn memory_store() -> bool {
    std::env::var("TEST_STORE").as_deref() == Ok("memory")
}

#[actix_web::test]
async fn real_traffic_moves_the_families_it_should() {
    let app = spawn_app().await;
    let before = scrape(&app).await;
    assert_eq!(value(&before, "chat_messages_stored_total", &[]), 0.0);

    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    // REST (protocol v2's retry-safe send).
    let sent = app.post_message(&alice, chat, "over REST", "rest-1").await;
    assert!(matches!(sent.status, 200 | 201), "{sent:?}");
    // A seed socket: its own copy is its acknowledgement.
    let mut seed = app.connect(&alice, chat).await;
    assert_eq!(seed.next_message().await["body"], "over REST");
    seed.send_body("over the seed socket").await;
    assert_eq!(seed.next_message().await["body"], "over the seed socket");
    // A v2 socket, and the same send again: a duplicate, not stored.
    let mut v2 = app.connect_v2(&bob).await;
    v2.send_acked(chat, "v2-1", "over v2").await;
    v2.send(chat, "v2-1", "over v2").await;
    let again = v2.expect("ack").await;
    assert_eq!(again["duplicate"], true, "{again}");
    // The seed socket got the v2 message too.
    assert_eq!(seed.next_message().await["body"], "over v2");

    let during = scrape(&app).await;
    assert_eq!(value(&during, "chat_messages_stored_total", &[]), 3.0);
    assert_eq!(value(&during, "chat_v2_duplicates_total", &[]), 1.0);
    assert_eq!(
        value(&during, "chat_ws_sockets_open", &["protocol=\"seed\""]),
        1.0
    );
    assert_eq!(
        value(&during, "chat_ws_sockets_open", &["protocol=\"v2\""]),
        1.0
    );
    // Every message (and the duplicate's lookup) went through a commit.
    let batched = value(&during, "chat_commit_batch_messages_sum", &[]);
    assert_eq!(batched, 4.0, "{during}");
    assert!(value(&during, "chat_commit_duration_seconds_count", &[]) >= 1.0);
    // Copies and acks reached sockets: alice's seed copy of each of her
    // sends and of bob's, bob's ack.
    assert!(
        value(&during, "chat_commit_to_socket_seconds_count", &[]) >= 3.0,
        "{during}"
    );
    assert!(value(&during, "chat_ws_outbound_queue_depth_frames_count", &[]) >= 3.0);
    let route = "route=\"/api/chats/{chat_id}/messages/\"";
    assert_eq!(
        value(
            &during,
            "chat_http_requests_total",
            &[route, "method=\"POST\""]
        ),
        1.0,
        "{during}"
    );
    assert_eq!(
        value(
            &during,
            "chat_http_request_duration_seconds_count",
            &[route, "method=\"POST\""]
        ),
        1.0
    );
    assert_eq!(
        value(
            &during,
            "chat_http_requests_total",
            &["route=\"/api/auth/register/\"", "status=\"201\""]
        ),
        2.0
    );
    // Both handshakes, by their templates.
    assert_eq!(
        value(
            &during,
            "chat_http_requests_total",
            &["route=\"/ws/chat/{chat_id}/\"", "status=\"101\""]
        ),
        1.0,
        "{during}"
    );
    if !memory_store() {
        assert!(value(&during, "chat_db_pool_wait_seconds_count", &[]) >= 1.0);
        let pool = value(&during, "chat_db_pool_connections", &["state=\"idle\""])
            + value(&during, "chat_db_pool_connections", &["state=\"in_use\""]);
        assert!(pool >= 1.0, "{during}");
    }

    seed.close().await;
    v2.close().await;
    app.wait_for_connections(0).await;
    // The session counts itself closed after it leaves the hub.
    let mut after = scrape(&app).await;
    for _ in 0..100 {
        if value(&after, "chat_ws_sockets_open", &[]) == 0.0 {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        after = scrape(&app).await;
    }
    assert_eq!(value(&after, "chat_ws_sockets_open", &[]), 0.0, "{after}");
    // One close each (the code is the test client's: 1000, or 1002 when
    // it drops the connection before its close frame is read whole).
    for protocol in ["protocol=\"seed\"", "protocol=\"v2\""] {
        assert_eq!(
            value(&after, "chat_ws_sockets_closed_total", &[protocol]),
            1.0,
            "{after}"
        );
    }
}

/// A seed replay counts its frames by where they came from: the ones the
/// hub kept from live delivery, and the database for those it did not.
#[actix_web::test]
async fn seed_replays_count_their_frames_from_memory_and_from_the_database() {
    let app = spawn_app().await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let mut socket = app.connect(&alice, chat).await;
    for i in 0..3 {
        socket.send_body(&format!("live {i}")).await;
        socket.next_message().await;
    }
    socket.close().await;
    app.wait_for_connections(0).await;
    // Stored while no seed socket is open: nothing delivered it to one.
    let reply = app
        .post_json(
            &format!("/api/chats/{chat}/messages/"),
            Some(&alice.token),
            &serde_json::json!({"body": "over REST", "client_id": "r1"}),
        )
        .await;
    assert_eq!(reply.status, 201);
    let mut bob_socket = app.connect(&bob, chat).await;
    for _ in 0..4 {
        bob_socket.next_message().await;
    }
    let text = scrape(&app).await;
    let replayed = |source: &str| {
        value(
            &text,
            "chat_seed_replay_frames_total",
            &[&format!("source=\"{source}\"")],
        )
    };
    assert_eq!(replayed("memory"), 3.0, "{text}");
    assert_eq!(replayed("database"), 1.0, "{text}");
}

#[actix_web::test]
async fn refused_sends_are_counted_by_source() {
    let app = spawn_app_with(&["--ws-rate", "0.001", "--ws-burst", "1"]).await;
    let (alice, _bob, chat) = app.two_users_and_a_chat().await;
    let mut v2 = app.connect_v2(&alice).await;
    v2.send_acked(chat, "first", "one").await;
    v2.send(chat, "second", "two").await;
    v2.expect_error("rate_limited").await;
    let refused = app.post_message(&alice, chat, "three", "third").await;
    assert_eq!(refused.status, 429, "{refused:?}");

    let text = scrape(&app).await;
    assert_eq!(
        value(&text, "chat_rate_limited_total", &["source=\"v2\""]),
        1.0
    );
    assert_eq!(
        value(&text, "chat_rate_limited_total", &["source=\"rest\""]),
        1.0
    );
    assert_eq!(value(&text, "chat_messages_stored_total", &[]), 1.0);
}

/// Every label set of the HTTP families and the open sockets gauge (close
/// codes depend on how the test client closes; they are checked apart).
fn label_sets(text: &str) -> BTreeSet<String> {
    samples(text)
        .into_iter()
        .filter(|(name, _, _)| {
            name.starts_with("chat_http_") || name.starts_with("chat_ws_sockets_open")
        })
        // Histogram buckets repeat the same labels with `le`.
        .filter(|(name, _, _)| !name.ends_with("_bucket"))
        .map(|(name, labels, _)| format!("{name}{{{labels}}}"))
        .collect()
}

/// The same traffic, by other users, in other chats, at other garbage paths.
async fn round(app: &TestApp, tag: &str) {
    let a = app.user(&format!("{tag}-a")).await;
    let b = app.user(&format!("{tag}-b")).await;
    let chat = app.chat(&a, &b).await;
    app.post_message(&a, chat, "hi", &format!("{tag}-1")).await;
    app.messages_page(&b, chat, "limit=5").await;
    app.get(
        &format!("/api/chats/{}/messages/", chat + 1000),
        Some(&a.token),
    )
    .await;
    app.get(&format!("/no/such/{tag}/path"), None).await;
    app.get(&format!("/api/{tag}"), Some(&a.token)).await;
    app.get(&format!("/web/{tag}.js"), None).await;
    let mut socket = app.connect(&a, chat).await;
    socket.drain_messages(Duration::from_millis(200)).await;
    socket.close().await;
    let v2 = app.connect_v2(&b).await;
    v2.close().await;
    assert!(app
        .try_connect(&format!("/ws/chat/{chat}/?token={tag}"), None)
        .await
        .is_err());
    app.wait_for_connections(0).await;
}

#[actix_web::test]
async fn labels_never_carry_users_chats_tokens_or_paths() {
    let app = spawn_app().await;
    round(&app, "alphaqx").await;
    round(&app, "bravoqx").await;
    // Sessions count their close a moment after leaving the hub.
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    let known = label_sets(&scrape(&app).await);

    for tag in ["charlieqx", "deltaqx", "echoqx"] {
        round(&app, tag).await;
    }
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    let text = scrape(&app).await;
    assert_eq!(
        label_sets(&text),
        known,
        "new users, chats and paths made new series"
    );
    for tag in [
        "alphaqx",
        "bravoqx",
        "charlieqx",
        "deltaqx",
        "echoqx",
        "no/such",
    ] {
        assert!(!text.contains(tag), "{tag} reached a label: {text}");
    }
    let codes: BTreeSet<String> = samples(&text)
        .into_iter()
        .filter(|(name, _, _)| name == "chat_ws_sockets_closed_total")
        .map(|(_, labels, _)| labels)
        .collect();
    for labels in &codes {
        assert!(
            ["1000", "1001", "1002", "none"]
                .iter()
                .any(|code| labels.ends_with(&format!("code=\"{code}\""))),
            "{labels}"
        );
    }
    let routes: BTreeSet<String> = samples(&text)
        .into_iter()
        .filter_map(|(_, labels, _)| {
            labels.split(',').find_map(|l| {
                l.strip_prefix("route=\"")
                    .map(|r| r.trim_end_matches('"').to_owned())
            })
        })
        .collect();
    // Templates only: no digit (ids) but v2's, the unmatched ones pooled.
    assert!(routes.contains("unmatched"), "{routes:?}");
    assert!(routes.contains("/web/{name:.+}"), "{routes:?}");
    for route in &routes {
        assert!(
            !route
                .replace("/v2/", "/")
                .chars()
                .any(|c| c.is_ascii_digit()),
            "a route label with an id: {route}"
        );
    }
}

#[actix_web::test]
async fn by_default_metrics_are_on_their_own_port_and_the_public_one_says_404() {
    let app = spawn_app().await;
    let metrics_port = app.metrics_port.expect("a port of its own");
    assert_ne!(metrics_port, app.port);
    let (status, _) = get_metrics(&app, app.port).await;
    assert_eq!(status, 404);
    let (status, text) = get_metrics(&app, metrics_port).await;
    assert_eq!(status, 200);
    assert!(
        text.contains("# TYPE chat_messages_stored counter"),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
    // Nothing of the API is reachable there.
    let response = app
        .client
        .get(format!("http://127.0.0.1:{metrics_port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let response = app
        .client
        .post(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .send_json(&json!({}))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
}

#[actix_web::test]
async fn main_serves_them_on_the_public_port_and_off_nowhere() {
    let main = spawn_app_with(&["--metrics-addr", "main"]).await;
    assert_eq!(main.metrics_port, None);
    let (status, text) = get_metrics(&main, main.port).await;
    assert_eq!(status, 200);
    assert!(
        text.contains("chat_ws_sockets_open{protocol=\"seed\"} 0"),
        "{text}"
    );
    // The scrape itself is an HTTP request like any other.
    let (_, text) = get_metrics(&main, main.port).await;
    assert!(
        text.contains("route=\"/metrics\",method=\"GET\",status=\"200\""),
        "{text}"
    );

    let off = spawn_app_with(&["--metrics-addr", "off"]).await;
    assert_eq!(off.metrics_port, None);
    let (status, _) = get_metrics(&off, off.port).await;
    assert_eq!(status, 404);
}

#[actix_web::test]
async fn a_socket_dropped_as_too_slow_is_counted_as_such() {
    let app = spawn_app_with(&["--ws-queue", "4"]).await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    // Bob never reads; alice sends until the hub gives up on him.
    let mut stalled = app.connect_v2(&bob).await;
    let mut alice_v2 = app.connect_v2(&alice).await;
    let body = "x".repeat(4000);
    let mut sent = 0;
    while app.hub.dropped_slow_count() == 0 && sent < 5000 {
        alice_v2.send_acked(chat, &format!("c-{sent}"), &body).await;
        sent += 1;
    }
    assert_eq!(
        stalled.expect_close(Duration::from_secs(30)).await,
        Some(1013)
    );
    let text = scrape(&app).await;
    assert_eq!(
        value(
            &text,
            "chat_ws_slow_consumer_closes_total",
            &["reason=\"queue_full\""]
        ),
        app.hub.dropped_slow_count() as f64,
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "chat_ws_sockets_closed_total",
            &["protocol=\"v2\"", "code=\"1013\""]
        ),
        1.0,
        "{text}"
    );
    // Its queue was seen full.
    assert!(
        value(
            &text,
            "chat_ws_outbound_queue_depth_frames_bucket",
            &["le=\"2.0\""]
        ) < value(&text, "chat_ws_outbound_queue_depth_frames_count", &[])
    );
    assert_eq!(
        value(&text, "chat_messages_stored_total", &[]),
        f64::from(sent)
    );
}

#[actix_web::test]
async fn logins_refused_by_the_wrong_password_limit_are_counted() {
    let app = spawn_app_with(&["--login-failures-per-username", "1"]).await;
    app.user("alice").await;
    assert_eq!(
        value(&scrape(&app).await, "chat_login_throttled_total", &[]),
        0.0
    );

    assert_eq!(app.login("alice", "wrong password").await.status, 401);
    assert_eq!(app.login("alice", "wrong password").await.status, 429);
    assert_eq!(app.login("alice", "wrong password").await.status, 429);

    assert_eq!(
        value(&scrape(&app).await, "chat_login_throttled_total", &[]),
        2.0
    );
}
