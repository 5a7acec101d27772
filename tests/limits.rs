//! The configurable limits on chat sockets and HTTP connections, each
//! answered clearly: message rate per user across sockets (error frame,
//! socket stays open; 429 on REST), sockets
//! per user (429) and in total (503), slow headers and bodies (408, closed) and idle
//! keep-alive connections (closed).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{spawn_app_with, TestApp, WsClient};

#[actix_web::test]
async fn messages_over_the_rate_get_an_error_frame_and_the_socket_stays_open() {
    let app = spawn_app_with(&["--ws-rate", "2", "--ws-burst", "3"]).await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let mut sender = app.connect(&alice, chat).await;
    let mut receiver = app.connect(&bob, chat).await;

    for i in 0..6 {
        sender.send_body(&format!("m{i}")).await;
    }

    // The burst of three is stored; the three after it are refused.
    let mut delivered = Vec::new();
    let mut refused = 0;
    while delivered.len() + refused < 6 {
        let frame = sender.next_json().await;
        if let Some(message) = frame.get("message") {
            delivered.push(message["body"].as_str().unwrap().to_owned());
        } else {
            assert_eq!(frame["error"], common::GENERIC_ERROR, "{frame}");
            assert!(
                frame["detail"]
                    .as_str()
                    .unwrap()
                    .contains("too many messages"),
                "{frame}"
            );
            refused += 1;
        }
    }
    assert_eq!(delivered, ["m0", "m1", "m2"]);
    assert_eq!(refused, 3);
    for expected in ["m0", "m1", "m2"] {
        assert_eq!(receiver.next_message().await["body"], expected);
    }
    receiver.expect_silence(Duration::from_millis(200)).await;

    // Half a second later (2 per second) one more token has come: the
    // same socket sends again.
    actix_web::rt::time::sleep(Duration::from_millis(600)).await;
    sender.send_body("after the pause").await;
    assert_eq!(sender.next_message().await["body"], "after the pause");
    assert_eq!(receiver.next_message().await["body"], "after the pause");

    // Only the stored messages are in the history.
    let bodies: Vec<String> = {
        let mut again = app.connect(&bob, chat).await;
        let mut bodies = Vec::new();
        for _ in 0..4 {
            bodies.push(
                again.next_message().await["body"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        again.expect_silence(Duration::from_millis(200)).await;
        bodies
    };
    assert_eq!(bodies, ["m0", "m1", "m2", "after the pause"]);
}

#[actix_web::test]
async fn the_rate_is_per_user_across_sockets_and_rest_sends() {
    // Without a shared budget, 256 sockets would buy 256 times the rate.
    let app = spawn_app_with(&["--ws-rate", "0.5", "--ws-burst", "3"]).await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let mut first = app.connect(&alice, chat).await;
    let mut second = app.connect(&alice, chat).await;
    let mut receiver = app.connect(&bob, chat).await;

    first.send_body("a1").await;
    assert_eq!(first.next_message().await["body"], "a1");
    second.send_body("b1").await;
    second.send_body("b2").await;
    second.send_body("b3").await;
    let mut stored = Vec::new();
    let mut refused = 0;
    while stored.len() + refused < 3 {
        let frame = second.next_json().await;
        match frame.get("message") {
            // The first socket's message reaches this one too, in an
            // order against the refusal that nothing fixes.
            Some(message) if message["body"] == "a1" => {}
            Some(message) => stored.push(message["body"].as_str().unwrap().to_owned()),
            None => {
                assert!(
                    frame["detail"]
                        .as_str()
                        .unwrap()
                        .contains("too many messages"),
                    "{frame}"
                );
                refused += 1;
            }
        }
    }
    assert_eq!((stored.len(), refused), (2, 1), "{stored:?}");

    // The REST route draws on the same budget: 429 with Retry-After.
    let response = app
        .client
        .post(app.url(&format!("/api/chats/{chat}/messages/")))
        .bearer_auth(&alice.token)
        .send_json(&serde_json::json!({"body": "rest", "client_id": "rest-1"}))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");

    // Bob's budget is his own.
    receiver.send_body("from bob").await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(
            receiver.next_message().await["body"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(seen, ["a1", "b1", "b2", "from bob"]);
}

#[actix_web::test]
async fn malformed_frames_do_not_use_up_the_rate() {
    let app = spawn_app_with(&["--ws-rate", "1", "--ws-burst", "1"]).await;
    let (alice, _, chat) = app.two_users_and_a_chat().await;
    let mut socket = app.connect(&alice, chat).await;

    for _ in 0..20 {
        socket.send_text("not json").await;
        let frame = socket.expect_error().await;
        assert!(
            !frame["detail"]
                .as_str()
                .unwrap()
                .contains("too many messages"),
            "{frame}"
        );
    }
    socket.send_body("still allowed").await;
    assert_eq!(socket.next_message().await["body"], "still allowed");
}

#[actix_web::test]
async fn a_user_over_the_socket_limit_gets_429_and_others_are_unaffected() {
    let app = spawn_app_with(&["--max-connections-per-user", "2"]).await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let path = format!("/ws/chat/{chat}/?token={}", alice.token);

    let first = app.connect(&alice, chat).await;
    let _second = app.connect(&alice, chat).await;
    assert_eq!(app.try_connect(&path, None).await.err(), Some(429));
    let refusal = app
        .get(&format!("/ws/chat/{chat}/"), Some(&alice.token))
        .await;
    assert_eq!(refusal.status, 429);
    assert!(refusal.body["error"]
        .as_str()
        .unwrap()
        .contains("open chat sockets"));

    // Bob has his own allowance.
    let _bob = app.connect(&bob, chat).await;

    // Closing a socket gives its place back.
    first.close().await;
    assert!(connects_within(&app, &path, Duration::from_secs(5)).await);
}

#[actix_web::test]
async fn a_server_at_its_socket_limit_answers_503_until_one_closes() {
    let app = spawn_app_with(&["--max-connections", "2"]).await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let carol = app.user("carol").await;
    let carols_chat = app.chat(&carol, &alice).await;

    let first = app.connect(&alice, chat).await;
    let _second = app.connect(&bob, chat).await;
    let carols_path = format!("/ws/chat/{carols_chat}/?token={}", carol.token);
    assert_eq!(app.try_connect(&carols_path, None).await.err(), Some(503));
    let refusal = app
        .get(&format!("/ws/chat/{carols_chat}/"), Some(&carol.token))
        .await;
    assert_eq!(refusal.status, 503);
    assert!(refusal.body["error"].as_str().is_some());

    first.close().await;
    assert!(connects_within(&app, &carols_path, Duration::from_secs(5)).await);
}

#[actix_web::test]
async fn many_connect_and_drop_cycles_leave_every_count_at_zero() {
    let app = spawn_app_with(&["--max-connections", "5", "--max-connections-per-user", "5"]).await;
    let (alice, _, chat) = app.two_users_and_a_chat().await;
    let path = format!("/ws/chat/{chat}/?token={}", alice.token);

    // A closed socket's place comes back once its session has ended, a
    // moment after the hub forgets it (the close is written in between),
    // so each connect may wait for the last round's places.
    let limit = Duration::from_secs(5);
    for _ in 0..40 {
        let mut sockets = Vec::new();
        for _ in 0..3 {
            sockets.push(connect_within(&app, &path, limit).await.expect("a place"));
        }
        for socket in sockets {
            socket.close().await;
        }
        app.wait_for_connections(0).await;
    }
    // Were a single place leaked, five would no longer fit.
    let mut open = Vec::new();
    for _ in 0..5 {
        open.push(
            connect_within(&app, &path, limit)
                .await
                .expect("five places"),
        );
    }
    app.wait_for_connections(5).await;
    assert_eq!(app.try_connect(&path, None).await.err(), Some(503));
}

/// Retries the handshake until it succeeds (the place of a closed socket
/// comes back once its session has ended), for up to `limit`.
async fn connect_within(app: &TestApp, path: &str, limit: Duration) -> Option<WsClient> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(socket) = app.try_connect(path, None).await {
            return Some(socket);
        }
        actix_web::rt::time::sleep(Duration::from_millis(25)).await;
    }
    None
}

/// [`connect_within`], and the socket closed again.
async fn connects_within(app: &TestApp, path: &str, limit: Duration) -> bool {
    match connect_within(app, path, limit).await {
        Some(socket) => {
            socket.close().await;
            true
        }
        None => false,
    }
}

/// Reads from `stream` until the server closes it; returns what it sent.
fn read_until_closed(mut stream: TcpStream, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the server kept the connection open past {limit:?}: {e}"),
        }
    }
    (
        String::from_utf8_lossy(&received).into_owned(),
        started.elapsed(),
    )
}

#[actix_web::test]
async fn a_client_that_never_finishes_its_headers_gets_408_and_is_closed() {
    let app = spawn_app_with(&["--handshake-timeout", "1s"]).await;
    let port = app.port;

    let (answer, took) = actix_web::rt::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        // A slow-loris handshake: headers begun, never ended.
        stream
            .write_all(b"GET /ws/chat/1/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
            .unwrap();
        read_until_closed(stream, Duration::from_secs(10))
    })
    .await
    .unwrap();

    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
    // The server still serves everyone else.
    assert_eq!(app.get("/api/users/", None).await.status, 401);
}

#[actix_web::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let app = spawn_app_with(&["--idle-timeout", "1s"]).await;
    let port = app.port;

    let (answer, took) = actix_web::rt::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .write_all(b"GET /api/users/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .unwrap();
        // The answer, then nothing more: the server ends the idle connection.
        read_until_closed(stream, Duration::from_secs(10))
    })
    .await
    .unwrap();

    assert!(answer.starts_with("HTTP/1.1 401"), "{answer:?}");
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
}

#[actix_web::test]
async fn a_body_that_never_arrives_gets_408_and_the_connection_is_closed() {
    let app = spawn_app_with(&["--body-timeout", "1s"]).await;
    let port = app.port;

    let (answer, took) = actix_web::rt::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        // Headers in full, then 10 of the 100 bytes promised, then nothing.
        stream
            .write_all(
                b"POST /api/auth/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                  Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"usernam",
            )
            .unwrap();
        read_until_closed(stream, Duration::from_secs(10))
    })
    .await
    .unwrap();

    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("did not arrive within 1 s"), "{answer:?}");
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
    assert_eq!(app.get("/api/users/", None).await.status, 401);
}

#[actix_web::test]
async fn a_slow_body_that_arrives_in_time_is_served() {
    let app = spawn_app_with(&["--body-timeout", "3s"]).await;
    let port = app.port;

    let answer = actix_web::rt::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let body = br#"{"username": "nobody", "password": "not a password"}"#;
        let head = format!(
            "POST /api/auth/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        for chunk in body.chunks(10) {
            stream.write_all(chunk).unwrap();
            std::thread::sleep(Duration::from_millis(200));
        }
        read_until_closed(stream, Duration::from_secs(10)).0
    })
    .await
    .unwrap();

    assert!(answer.starts_with("HTTP/1.1 401"), "{answer:?}");
}

/// Sends one request on a new connection and reads until the server closes
/// it (or `limit` passes with the connection still open: `None`).
fn one_request(port: u16, request: &str, limit: Duration) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return Some(String::from_utf8_lossy(&received).into_owned()),
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(String::from_utf8_lossy(&received).into_owned())
            }
            Err(_) => return None,
        }
    }
}

#[actix_web::test]
async fn one_address_may_hold_only_so_many_connections_before_signing_in() {
    let app = spawn_app_with(&[
        "--preauth-connections-per-address",
        "3",
        "--handshake-timeout",
        "30s",
        "--idle-timeout",
        "1s",
    ])
    .await;
    let user = app.user("preauth").await;
    // The test client's own keep-alive connections close first.
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    let port = app.port;
    let token = user.token.clone();

    let answers = actix_web::rt::task::spawn_blocking(move || {
        // Three connections that send nothing: the address's three places.
        let held: Vec<TcpStream> = (0..3)
            .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let anonymous = "GET /api/users/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
        let refused = one_request(port, anonymous, Duration::from_secs(5));
        // With a token the fourth connection is served all the same...
        let signed_in = one_request(
            port,
            &format!(
                "GET /api/users/ HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
            ),
            Duration::from_secs(5),
        );
        // ...but a forged one is answered and the connection closed.
        let forged = one_request(
            port,
            "GET /api/users/ HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer forged\r\n\r\n",
            Duration::from_secs(5),
        );
        drop(held);
        std::thread::sleep(Duration::from_millis(300));
        let after = one_request(
            port,
            "GET /api/users/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        );
        [refused, signed_in, forged, after]
    })
    .await
    .unwrap();
    let [refused, signed_in, forged, after] =
        answers.map(|a| a.expect("the server closed the connection"));

    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    assert!(
        refused.to_lowercase().contains("retry-after: 5"),
        "{refused}"
    );
    assert!(
        refused.contains("too many connections from your address (3)"),
        "{refused}"
    );
    assert!(signed_in.starts_with("HTTP/1.1 200"), "{signed_in}");
    assert!(forged.starts_with("HTTP/1.1 401"), "{forged}");
    // The places came back when the connections closed.
    assert!(after.starts_with("HTTP/1.1 401"), "{after}");
}
