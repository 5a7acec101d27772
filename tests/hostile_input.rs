#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking
//! Hostile input end to end: thousands of malformed WebSocket frames on one
//! connection, the protocol violations that close a socket by design, and
//! malformed REST requests on every endpoint. The promise under test
//! (CONTRACT.md, docs/api.md): every bad frame gets exactly one error frame
//! and the connection stays open; every bad request gets a 4xx with
//! `{"error": "..."}`; nothing a client sends panics the server or gets a
//! 5xx.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use awc::ws::{Frame, Message};
use common::hostile::{
    client_frame, frame_with_length, hostile_app, nested_arrays, nested_objects, open_raw,
    server_panics, watch_for_server_panics, write_raw, HostileApp, Junk, RawSocket, BINARY, CLOSE,
    CONTINUATION, PING, SELF_CHECK, TEXT,
};
use common::{Received, Rng, TestApp, TestUser, GENERIC_ERROR};
use futures_util::StreamExt as _;
use serde_json::{json, Value};

// ---- panics ---------------------------------------------------------------------
//
// The watch is in `common::hostile`, shared with `v2_hostile_input.rs`; its
// one self-check is here.

#[test]
fn the_panic_watch_sees_a_panic_on_a_server_thread() {
    watch_for_server_panics();
    let before = server_panics().len();
    let worker = std::thread::Builder::new()
        .name("actix-server worker (self-check)".into())
        .spawn(|| panic!("{SELF_CHECK}"))
        .unwrap();
    assert!(worker.join().is_err());
    let panics = server_panics();
    assert!(
        panics[before..].iter().any(|p| p.contains(SELF_CHECK)),
        "{panics:?}"
    );
}

// ---- the catalogue of malformed frames ------------------------------------------

/// The defaults of CONTRACT.md, which the barrage runs against.
const MAX_CHARS: usize = 4096;
const MAX_FRAME_BYTES: usize = 65_536;

/// One malformed frame, with where it came from for failure messages.
struct Case {
    category: &'static str,
    frame: Junk,
}

impl Case {
    fn describe(&self) -> String {
        let shown = match &self.frame {
            Junk::Text(text) => format!("text {:?}", text.chars().take(80).collect::<String>()),
            Junk::Binary(bytes) => format!("binary {:?}", &bytes[..bytes.len().min(40)]),
        };
        let len = match &self.frame {
            Junk::Text(text) => text.len(),
            Junk::Binary(bytes) => bytes.len(),
        };
        format!("[{}] {shown} ({len} bytes)", self.category)
    }
}

/// What the contract accepts: a JSON object whose `body` is a non-empty
/// string of at most `MAX_CHARS` characters without NUL. The catalogue
/// checks every frame against it, so a "malformed" frame that is in fact
/// valid is a mistake in the test, caught before anything is sent.
fn would_be_accepted(text: &str) -> bool {
    let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(text) else {
        return false;
    };
    matches!(fields.get("body"), Some(Value::String(body))
        if !body.is_empty() && body.chars().count() <= MAX_CHARS && !body.contains('\0'))
}

/// `{"body": <value>}` and the same value beside other fields, before and
/// after them, and after a valid `body` (a repeated key: the last one wins).
fn as_body(value: &str) -> [String; 4] {
    [
        format!(r#"{{"body":{value}}}"#),
        format!(r#"{{"body": {value}, "extra": "x"}}"#),
        format!(r#"{{"extra":[1,2],"body":{value}}}"#),
        format!(r#"{{"body":"fine","body":{value}}}"#),
    ]
}

/// Each category of malformed frame with hand-picked variants, then
/// generated frames: some 4,600 in all. (A body of whitespace only is not
/// among them: CONTRACT.md makes whitespace content, and
/// `tests/websocket.rs` checks it is stored as sent.)
fn catalogue() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut text = |category: &'static str, frame: String| {
        cases.push(Case {
            category,
            frame: Junk::Text(frame),
        });
    };

    for frame in [
        "hello",
        "{",
        "}",
        "{{}}",
        "{body: \"hi\"}",
        "{'body': 'hi'}",
        "{\"body\" \"hi\"}",
        "{\"body\":}",
        "{\"body\"::\"hi\"}",
        "{\"body\":\"hi\",}",
        "{,\"body\":\"hi\"}",
        "{\"body\":\"hi\"}}",
        "{\"body\":'hi'}",
        "{\"body\":`hi`}",
        "{\"body\":\"a\" \"b\"}",
        "{\"body\":\"hi\"} trailing",
        "{\"body\":\"hi\"}{\"body\":\"hi\"}",
        "{\"body\":\"hi\"}\n{\"body\":\"hi\"}",
        "{\"body\":\"hi\"},",
        "/* comment */ {\"body\":\"hi\"}",
        "{\"body\":\"hi\"} // comment",
        "undefined",
        "NaN",
        "Infinity",
        "-Infinity",
        "True",
        "None",
        "nil",
        "<body>hi</body>",
        "body=hi",
        "\\",
        "\"",
        "\"\\\"",
        "\"unterminated",
        "{\"body\":\"hi\\\"}",
        "{\"body\":\"\\x41\"}",
        "{\"body\":\"\\u12\"}",
        "{\"body\":\"\\u12G4\"}",
        "{\"body\":\"\\uZZZZ\"}",
        "{\"body\":\"\\'\"}",
        "{\"body\":\"\\U0041\"}",
        "{\"body\":\"\\a\"}",
        "{\"body\":\"\\\"}",
        "{\"body\":\"hi\"\u{0}}",
        "{\"body\":\"hi\u{a0}\"\u{a0}}\u{a0}",
        "{\"body\":\"hi\"}\u{2028}",
        "{\u{3000}\"body\":\"hi\"}",
    ] {
        text("invalid JSON", frame.to_owned());
    }
    // JSON strings may not hold raw control characters, NUL included.
    for byte in 0u8..0x20 {
        let c = char::from(byte);
        text("raw control character", format!("{{\"body\":\"a{c}b\"}}"));
        text("raw control character", format!("{{\"body\":\"{c}\"}}"));
    }

    // Every strict prefix of valid frames (at character boundaries).
    for valid in [
        r#"{"body": "hello"}"#,
        r#"{"body":"h\u00e9llo \ud83d\udc4b","extra":[1,2.5,{"a":null,"b":true}]}"#,
        "{\"body\":\"👋🏽 emoji and 中文\"}",
        r#"{"extra":{"deep":[[[]]],"n":-1e10},"body":"last"}"#,
        "  {\n  \"body\" :\t\"spaced\"\r\n}",
    ] {
        assert!(would_be_accepted(valid), "{valid}");
        for (end, _) in valid.char_indices() {
            text("truncated JSON", valid[..end].to_owned());
        }
    }

    let wrong_values = [
        "0",
        "-1",
        "1",
        "1.5",
        "-0.0",
        "1e10",
        "1E-10",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775809",
        "18446744073709551616",
        "1.7976931348623157e308",
        "5e-324",
        "null",
        "true",
        "false",
        "[]",
        "[\"hi\"]",
        "[1, \"two\", null]",
        "{}",
        "{\"body\":\"hi\"}",
        "{\"text\":\"hi\"}",
        "[[[[\"hi\"]]]]",
        "[null]",
    ];
    for value in wrong_values {
        for frame in as_body(value) {
            text("wrong type for body", frame);
        }
        if !value.starts_with('{') {
            text("not an object", value.to_owned());
        }
    }
    for frame in [
        "\"hi\"",
        "\"{\\\"body\\\":\\\"hi\\\"}\"",
        "[{\"body\":\"hi\"}]",
        "[{\"body\":\"hi\"},{\"body\":\"hi\"}]",
        "\"\"",
        "[\"body\", \"hi\"]",
    ] {
        text("not an object", frame.to_owned());
    }

    for frame in [
        "{}",
        r#"{"Body":"hi"}"#,
        r#"{"BODY":"hi"}"#,
        r#"{"body ":"hi"}"#,
        r#"{" body":"hi"}"#,
        r#"{"bod":"hi"}"#,
        r#"{"bodyy":"hi"}"#,
        "{\"bоdy\":\"hi\"}", // a Cyrillic "о"
        r#"{"body\u0000":"hi"}"#,
        r#"{"":"hi"}"#,
        r#"{"message":{"body":"hi"}}"#,
        r#"{"text":"hi"}"#,
        r#"{"data":{"body":"hi"}}"#,
        r#"{"0":"hi"}"#,
        r#"{"extra":"body"}"#,
    ] {
        text("missing body", frame.to_owned());
    }

    // Past serde_json's recursion limit (128) a frame is not JSON at all,
    // wherever the nesting is; within it, a nested body is not a string.
    for depth in [129, 1_000, 10_000, 30_000] {
        let arrays = nested_arrays(depth);
        text("deeply nested", arrays.clone());
        text("deeply nested", format!(r#"{{"body":{arrays}}}"#));
        text(
            "deeply nested",
            format!(r#"{{"body":"hi","extra":{arrays}}}"#),
        );
        text("deeply nested", "[".repeat(depth));
    }
    for depth in [129, 1_000, 5_000, 10_000] {
        let objects = nested_objects(depth);
        text("deeply nested", objects.clone());
        text("deeply nested", format!(r#"{{"body":{objects}}}"#));
        text(
            "deeply nested",
            format!(r#"{{"body":"hi","extra":{objects}}}"#),
        );
        text("deeply nested", r#"{"a":"#.repeat(depth));
    }
    for depth in [1, 2, 10, 100, 126] {
        text(
            "deeply nested",
            format!(r#"{{"body":{}}}"#, nested_arrays(depth)),
        );
        text(
            "deeply nested",
            format!(r#"{{"body":{}}}"#, nested_objects(depth)),
        );
    }
    let wide: Vec<u32> = (0..10_000).collect();
    text("deeply nested", json!({ "body": wide }).to_string());
    text(
        "deeply nested",
        json!({ "text": "hi", "extra": wide }).to_string(),
    );

    for number in [
        "1e309",
        "-1e309",
        "1e99999",
        "-1e99999",
        &format!("1{}", "0".repeat(400)),
        &format!("-1{}", "0".repeat(400)),
        &format!("0.{}1", "0".repeat(1_000)),
        &format!("1{}", "0".repeat(50_000)),
        "-",
        "1.",
        ".5",
        "01",
        "+1",
        "0x10",
        "1e",
        "1e+",
        "--1",
        "1_000",
        "١",
        "1.2.3",
    ] {
        text("numbers out of range", number.to_owned());
        text("numbers out of range", format!(r#"{{"body":{number}}}"#));
        // Beside a valid body, only a number that is not JSON spoils the
        // frame (an underflow parses, as 0).
        let beside = format!(r#"{{"body":"hi","n":{number}}}"#);
        if !would_be_accepted(&beside) {
            text("numbers out of range", beside);
        }
    }

    // Over the message limit, under the frame limit.
    let over = MAX_CHARS + 1;
    for (unit, count) in [
        ("x", over),
        ("x", over + 1),
        ("x", MAX_CHARS * 2),
        ("x", 10_000),
        ("x", 30_000),
        ("x", 60_000),
        (" ", over),
        ("é", over),
        ("é", 10_000),
        ("中", over),
        ("👋", over),
        ("👋", 10_000),
        ("\\u00e9", over),
        ("\\ud83d\\udc4b", over),
        ("\\n", over),
        ("e\u{301}", over / 2 + 1),
    ] {
        text(
            "too long",
            format!(r#"{{"body":"{}"}}"#, unit.repeat(count)),
        );
    }
    text(
        "too long",
        format!(r#"{{"body":"{}\u0000"}}"#, "x".repeat(MAX_CHARS - 1)),
    );

    for frame in [
        "",
        " ",
        "\n",
        "\r\n",
        "\t",
        " \t\r\n ",
        &" ".repeat(60_000),
        "\u{feff}",
        "\u{a0}",
        "\u{2028}",
        "\u{3000}",
        r#"{"body":""}"#,
        r#"{"body":"","extra":1}"#,
        r#"{"extra":1,"body":""}"#,
        r#"{"body":"hi","body":""}"#,
    ] {
        text("empty", frame.to_owned());
    }

    for frame in [
        r#"{"body":"\u0000"}"#,
        r#"{"body":"a\u0000b"}"#,
        r#"{"body":"\u0000\u0000"}"#,
        r#"{"body":"trailing\u0000"}"#,
        r#"{"body":"\u0000","extra":"x"}"#,
        "\u{0}",
        "\u{0}{\"body\":\"hi\"}",
        "{\"body\":\"hi\"}\u{0}",
    ] {
        text("NUL", frame.to_owned());
    }

    for escape in [
        r"\ud800",
        r"\udbff",
        r"\udc00",
        r"\udfff",
        r"\ud800\ud800",
        r"\udc00\ud800",
        r"\ud800a",
        r"a\ud800",
        r"\ud800\u0041",
        r"\uD800",
        r"\ud83d",
        r"\ude00",
        r"\ud83d\n",
    ] {
        text("lone surrogate", format!(r#"{{"body":"{escape}"}}"#));
        text(
            "lone surrogate",
            format!(r#"{{"body":"fine","extra":"{escape}"}}"#),
        );
        text(
            "lone surrogate",
            format!(r#"{{"{escape}":"x","body":"fine"}}"#),
        );
    }

    for frame in [
        "\u{feff}{\"body\":\"hi\"}",
        "\u{feff}\u{feff}{\"body\":\"hi\"}",
        "{\"body\":\"hi\"}\u{feff}",
        "{\u{feff}\"body\":\"hi\"}",
        "\u{fffe}{\"body\":\"hi\"}",
        "\u{feff}[]",
    ] {
        text("BOM", frame.to_owned());
    }

    // Binary frames get the error frame too (docs/api.md, "Errors").
    for bytes in [
        b"{\"body\":\"hi\"}".to_vec(),
        Vec::new(),
        vec![0xff, 0xfe, 0xfd],
        vec![0; 1_000],
        b"\xef\xbb\xbf{\"body\":\"hi\"}".to_vec(),
        vec![0x80; 60_000],
        (0..=255).collect(),
    ] {
        cases.push(Case {
            category: "binary",
            frame: Junk::Binary(bytes),
        });
    }

    generated(&mut cases);

    for case in &cases {
        let len = match &case.frame {
            Junk::Text(text) => {
                assert!(
                    !would_be_accepted(text),
                    "catalogue error, valid: {}",
                    case.describe()
                );
                text.len()
            }
            Junk::Binary(bytes) => bytes.len(),
        };
        assert!(
            len <= MAX_FRAME_BYTES,
            "over the frame limit: {}",
            case.describe()
        );
    }
    cases
}

const GENERATED_TOKEN_SOUP: usize = 2_000;
const GENERATED_MUTANTS: usize = 2_000;

/// Frames stitched from JSON-ish tokens, and valid frames with one to three
/// random edits; the (rare) ones that come out valid are left out.
fn generated(cases: &mut Vec<Case>) {
    let tokens = [
        "{",
        "}",
        "[",
        "]",
        "\"body\"",
        ":",
        ",",
        "\"hi\"",
        "\"\"",
        "null",
        "true",
        "1",
        "-1e999",
        "\"\\u0000\"",
        "\"\\ud800\"",
        " ",
        "\n",
        "\"",
        "\\",
        "x",
        "👋",
        "é",
        "{\"body\":",
        "\"}",
        "\u{feff}",
        "\u{0}",
        "1e5",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut made = 0;
    while made < GENERATED_TOKEN_SOUP {
        let count = rng.below(13);
        let frame: String = (0..count).map(|_| rng.pick(&tokens)).collect();
        if !would_be_accepted(&frame) {
            cases.push(Case {
                category: "generated: token soup",
                frame: Junk::Text(frame),
            });
            made += 1;
        }
    }
    let seeds = [
        r#"{"body":"hello"}"#,
        r#"{"body":"h\u00e9llo","extra":[1,{"a":null}]}"#,
        "{\"body\":\"👋 hi\"}",
    ];
    let inserts = [
        "{", "}", "\"", "\\", ":", ",", "[", "]", "\u{0}", " ", "x", "é", "\u{feff}",
    ];
    made = 0;
    while made < GENERATED_MUTANTS {
        let mut chars: Vec<char> = rng.pick(&seeds).chars().collect();
        for _ in 0..=rng.below(3) {
            let at = rng.below(chars.len() + 1);
            match rng.below(3) {
                0 if at < chars.len() => {
                    chars.remove(at);
                }
                1 if at < chars.len() => {
                    chars[at] = rng.pick(&inserts).chars().next().unwrap();
                }
                _ => {
                    let insert = rng.pick(&inserts).chars().next().unwrap();
                    chars.insert(at, insert);
                }
            }
        }
        let frame: String = chars.into_iter().collect();
        if !would_be_accepted(&frame) {
            cases.push(Case {
                category: "generated: mutant",
                frame: Junk::Text(frame),
            });
            made += 1;
        }
    }
}

// ---- WebSocket: the barrage -----------------------------------------------------

/// The documented error frame: the generic text and a non-empty `detail`,
/// nothing else.
fn assert_error_frame(frame: &Value, what: &str) {
    let fields = frame
        .as_object()
        .unwrap_or_else(|| panic!("{what}: not an object: {frame}"));
    assert_eq!(
        fields.get("error"),
        Some(&json!(GENERIC_ERROR)),
        "{what}: {frame}"
    );
    assert!(
        fields
            .get("detail")
            .and_then(Value::as_str)
            .is_some_and(|d| !d.is_empty()),
        "{what}: {frame}"
    );
    assert_eq!(fields.len(), 2, "{what}: {frame}");
}

#[actix_web::test]
async fn thousands_of_malformed_frames_on_one_connection_each_get_one_error_frame() {
    let app = hostile_app(&[]).await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let cases = catalogue();
    assert!(cases.len() >= 4_000, "{} frames", cases.len());
    let mut bob_socket = app.connect(&bob, chat).await;
    let mut socket = app.connect(&alice, chat).await;

    let started = Instant::now();
    let mut per_category: std::collections::BTreeMap<&str, usize> = Default::default();
    for (index, case) in cases.iter().enumerate() {
        match &case.frame {
            Junk::Text(text) => socket.send_text(text).await,
            Junk::Binary(bytes) => {
                socket
                    .send_message(Message::Binary(Bytes::copy_from_slice(bytes)))
                    .await;
            }
        }
        let what = format!("frame #{index} {}", case.describe());
        match socket.receive().await {
            Received::Json(frame) => assert_error_frame(&frame, &what),
            Received::Close(code) => panic!("{what}: the server closed the socket ({code:?})"),
        }
        *per_category.entry(case.category).or_default() += 1;
    }
    eprintln!(
        "{} malformed frames in {:?}: {per_category:?}",
        cases.len(),
        started.elapsed()
    );

    // Still open, one error per frame (an extra one would come before this
    // message), and nothing reached Bob.
    socket.send_body("after the barrage").await;
    assert_eq!(socket.next_message().await["body"], "after the barrage");
    let to_bob = bob_socket.next_message().await;
    assert_eq!(to_bob["body"], "after the barrage");
    assert_eq!(to_bob["sender"], "alice");
    // Nothing was stored: the history is that one message, and the next
    // live one follows it directly.
    let mut bob_again = app.connect(&bob, chat).await;
    assert_eq!(bob_again.next_message().await["body"], "after the barrage");
    socket.send_body("fence").await;
    assert_eq!(bob_again.next_message().await["body"], "fence");
    let chats = app.chats_of(&bob).await;
    assert_eq!(chats[0]["last_message"]["body"], "fence");
    app.assert_no_server_panics();
}

// ---- WebSocket: protocol violations that close by design -------------------------

/// Reads `history` message frames (replayed on connect), then expects the
/// server's close and returns its code.
async fn expect_close(socket: &mut RawSocket, history: usize, what: &str) -> Option<u16> {
    let mut replayed = 0;
    loop {
        let frame = actix_web::rt::time::timeout(common::FRAME_TIMEOUT, socket.next())
            .await
            .unwrap_or_else(|_| panic!("{what}: no close within the timeout"));
        match frame {
            Some(Ok(Frame::Text(bytes))) if replayed < history => {
                let frame: Value = serde_json::from_slice(&bytes).unwrap();
                assert!(frame.get("message").is_some(), "{what}: {frame}");
                replayed += 1;
            }
            Some(Ok(Frame::Ping(_) | Frame::Pong(_))) => {}
            Some(Ok(Frame::Close(reason))) => {
                assert_eq!(replayed, history, "{what}: history before the close");
                return reason.map(|r| r.code.into());
            }
            other => panic!("{what}: expected the close, got {other:?}"),
        }
    }
}

/// After a socket was closed: a new connection still opens, and a valid
/// message reaches both participants. `history` counts the messages so far.
async fn still_serves(
    app: &TestApp,
    users: (&TestUser, &TestUser),
    chat: i64,
    history: &mut usize,
) {
    let (alice, bob) = users;
    let mut alice_socket = app.connect(alice, chat).await;
    let mut bob_socket = app.connect(bob, chat).await;
    for _ in 0..*history {
        alice_socket.next_message().await;
        bob_socket.next_message().await;
    }
    let body = format!("still serving #{history}");
    alice_socket.send_body(&body).await;
    assert_eq!(alice_socket.next_message().await["body"], body);
    assert_eq!(bob_socket.next_message().await["body"], body);
    *history += 1;
    alice_socket.close().await;
    bob_socket.close().await;
}

/// Each byte string on a fresh socket: the close code it must get.
async fn each_closes_with(app: &HostileApp, violations: Vec<(&str, Vec<u8>, u16)>) {
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let mut history = 0;
    for (what, bytes, code) in violations {
        let socket = open_raw(app, &format!("/ws/chat/{chat}/?token={}", alice.token)).await;
        let mut socket = write_raw(socket, &bytes).await;
        assert_eq!(
            expect_close(&mut socket, history, what).await,
            Some(code),
            "{what}"
        );
        still_serves(app, (&alice, &bob), chat, &mut history).await;
    }
    app.wait_for_connections(0).await;
    app.assert_no_server_panics();
}

#[actix_web::test]
async fn a_text_frame_that_is_not_utf8_closes_the_socket_with_1007() {
    let app = hostile_app(&[]).await;
    let mut violations = Vec::new();
    for (what, bytes) in [
        ("a lone 0xff", &b"{\"body\":\"\xff\"}"[..]),
        ("an overlong NUL", b"{\"body\":\"\xc0\x80\"}"),
        ("an encoded surrogate", b"{\"body\":\"\xed\xa0\x80\"}"),
        ("a truncated sequence", b"{\"body\":\"\xe2\x82\"}"),
        (
            "a five-byte sequence",
            b"{\"body\":\"\xf8\x88\x80\x80\x80\"}",
        ),
        ("beyond U+10FFFF", b"{\"body\":\"\xf4\x90\x80\x80\"}"),
        ("a continuation byte first", b"\x80{\"body\":\"hi\"}"),
        ("Latin-1", b"{\"body\":\"caf\xe9\"}"),
    ] {
        violations.push((what, client_frame(true, TEXT, bytes), 1007));
    }
    // Invalid only once the fragments are put together.
    let mut split = client_frame(false, TEXT, b"{\"body\":\"\xe2\x82");
    split.extend(client_frame(true, CONTINUATION, b"\"}"));
    violations.push(("a sequence cut short across fragments", split, 1007));
    each_closes_with(&app, violations).await;
}

#[actix_web::test]
async fn a_character_split_across_fragments_is_put_back_together() {
    let app = hostile_app(&[]).await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let mut bob_socket = app.connect(&bob, chat).await;
    let socket = open_raw(&app, &format!("/ws/chat/{chat}/?token={}", alice.token)).await;
    let whole = "{\"body\":\"👋 split\"}".as_bytes();
    let cut = whole.iter().position(|&b| b == 0xf0).unwrap() + 2; // inside 👋
    let mut bytes = client_frame(false, TEXT, &whole[..cut]);
    // A ping between fragments is allowed (RFC 6455 5.4) and answered.
    bytes.extend(client_frame(true, PING, b"mid"));
    // So are empty fragments, any number of them.
    for _ in 0..10_000 {
        bytes.extend(client_frame(false, CONTINUATION, b""));
    }
    bytes.extend(client_frame(true, CONTINUATION, &whole[cut..]));
    let mut socket = write_raw(socket, &bytes).await;

    let mut pong = false;
    let message = loop {
        match actix_web::rt::time::timeout(common::FRAME_TIMEOUT, socket.next())
            .await
            .expect("a frame within the timeout")
        {
            Some(Ok(Frame::Pong(bytes))) => pong = &bytes[..] == b"mid",
            Some(Ok(Frame::Text(bytes))) => break serde_json::from_slice::<Value>(&bytes).unwrap(),
            Some(Ok(Frame::Ping(_))) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(pong);
    assert_eq!(message["message"]["body"], "👋 split");
    assert_eq!(bob_socket.next_message().await["body"], "👋 split");
    app.assert_no_server_panics();
}

#[actix_web::test]
async fn a_frame_over_the_frame_limit_closes_the_socket_with_1009() {
    let app = hostile_app(&[]).await;
    let over = vec![b'x'; MAX_FRAME_BYTES + 1];
    let mut body = br#"{"body":""#.to_vec();
    body.extend(vec![b'x'; MAX_FRAME_BYTES]);
    body.extend(br#""}"#);
    each_closes_with(
        &app,
        vec![
            (
                "a text frame one byte over",
                client_frame(true, TEXT, &over),
                1009,
            ),
            ("a JSON message over", client_frame(true, TEXT, &body), 1009),
            (
                "a binary frame over",
                client_frame(true, BINARY, &over),
                1009,
            ),
            // Not even a valid length (RFC 6455 5.2: the top bit is 0).
            (
                "a 64-bit length with its top bit set",
                frame_with_length(true, TEXT, b"", 1 << 63, true),
                1009,
            ),
        ],
    )
    .await;
}

/// RSS of this process (the server runs in it), in KiB.
fn resident_kib() -> u64 {
    chat_bench::resources::rss_kib(std::process::id()).unwrap_or(0)
}

#[actix_web::test]
async fn a_frame_header_claiming_more_than_the_limit_closes_before_its_payload_is_buffered() {
    const OFFERED_MIB: u64 = 512;
    let app = hostile_app(&[]).await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let socket = open_raw(&app, &format!("/ws/chat/{chat}/?token={}", alice.token)).await;
    let header = frame_with_length(true, TEXT, b"", 1 << 40, true);
    let mut socket = write_raw(socket, &header).await;
    let before = resident_kib();
    // 8,192 times the limit (512 MiB), then the server must have refused.
    // A server that buffers the payload grows by all of it; one that
    // refused at the header reads no more for the session (actix discards
    // what arrives while it lingers before closing the connection).
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..OFFERED_MIB {
        socket = write_raw(socket, &chunk).await;
    }
    let code = expect_close(&mut socket, 0, "a header claiming 2^40 bytes").await;
    let grown_mib = resident_kib().saturating_sub(before) / 1024;
    eprintln!("resident memory grew by {grown_mib} MiB");
    assert_eq!(code, Some(1009));
    // The process also holds the client and the tests running beside this
    // one (up to ~100 MiB between them, measured); half of what was sent
    // leaves room for them, not for the payload.
    assert!(
        grown_mib < OFFERED_MIB / 2,
        "resident memory grew by {grown_mib} MiB after {OFFERED_MIB} MiB were sent"
    );
    let mut history = 0;
    still_serves(&app, (&alice, &bob), chat, &mut history).await;
    app.assert_no_server_panics();
}

#[actix_web::test]
async fn a_frame_with_reserved_bits_set_closes_the_socket_with_1002() {
    let app = hostile_app(&[]).await;
    let mut violations = Vec::new();
    for rsv in [0x40, 0x20, 0x10, 0x70] {
        let mut frame = client_frame(true, TEXT, br#"{"body":"hi"}"#);
        frame[0] |= rsv;
        violations.push(("reserved bits without an extension", frame, 1002));
    }
    each_closes_with(&app, violations).await;
}

#[actix_web::test]
async fn a_fragmented_message_over_the_frame_limit_closes_the_socket_with_1009() {
    let app = hostile_app(&[]).await;
    let mut bytes = client_frame(false, TEXT, &[b'x'; 16_384]);
    for _ in 0..4 {
        bytes.extend(client_frame(false, CONTINUATION, &[b'x'; 16_384]));
    }
    bytes.extend(client_frame(true, CONTINUATION, b"x"));
    each_closes_with(&app, vec![("five 16 KiB fragments", bytes, 1009)]).await;
}

#[actix_web::test]
async fn protocol_violations_close_the_socket_with_1002() {
    let app = hostile_app(&[]).await;
    let first_half = client_frame(false, TEXT, br#"{"body":"#);
    let with = |tail: Vec<u8>| [first_half.clone(), tail].concat();
    let mut violations = vec![
        (
            "a continuation with nothing to continue",
            client_frame(true, CONTINUATION, b"\"}"),
        ),
        (
            "an unfinished continuation with nothing to continue",
            client_frame(false, CONTINUATION, b"\"}"),
        ),
        (
            "a new text frame inside a fragmented message",
            with(client_frame(true, TEXT, br#""hi"}"#)),
        ),
        (
            "a new fragmented text inside a fragmented message",
            with(client_frame(false, TEXT, br#""hi"}"#)),
        ),
        (
            "a binary frame inside a fragmented message",
            with(client_frame(true, BINARY, br#""hi"}"#)),
        ),
        ("a fragmented ping", client_frame(false, PING, b"ping")),
        (
            "a ping of 126 bytes",
            client_frame(true, PING, &[b'p'; 126]),
        ),
        (
            "a close of 126 bytes",
            client_frame(true, CLOSE, &[b'c'; 126]),
        ),
        (
            "an unmasked frame",
            frame_with_length(true, TEXT, br#"{"body":"hi"}"#, 13, false),
        ),
    ];
    for opcode in [0x3, 0x4, 0x5, 0x6, 0x7, 0xb, 0xc, 0xd, 0xe, 0xf] {
        violations.push(("a reserved opcode", client_frame(true, opcode, b"{}")));
    }
    each_closes_with(
        &app,
        violations
            .into_iter()
            .map(|(what, bytes)| (what, bytes, 1002))
            .collect(),
    )
    .await;
}

#[actix_web::test]
async fn a_valid_close_is_echoed_and_an_invalid_one_is_answered_with_1002() {
    let app = hostile_app(&[]).await;
    let code = |code: u16| code.to_be_bytes().to_vec();
    let mut closes = vec![
        ("no payload", Vec::new(), 1000),
        ("a normal close", code(1000), 1000),
        ("going away", code(1001), 1001),
        ("a registered code", code(3000), 3000),
        ("an application code", code(4999), 4999),
        (
            "a code and a reason",
            [code(1001), b"bye".to_vec()].concat(),
            1001,
        ),
        // RFC 6455 5.5.1 and 7.4: a one-byte payload, a reason that is not
        // UTF-8, and codes no endpoint may send are protocol errors.
        ("a one-byte payload", vec![0x03], 1002),
        (
            "a reason that is not UTF-8",
            [code(1000), b"\xff\xfe".to_vec()].concat(),
            1002,
        ),
    ];
    for reserved in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65_535] {
        closes.push(("a code no endpoint may send", code(reserved), 1002));
    }
    each_closes_with(
        &app,
        closes
            .into_iter()
            .map(|(what, payload, answer)| (what, client_frame(true, CLOSE, &payload), answer))
            .collect(),
    )
    .await;
}

// ---- REST: a raw HTTP client ------------------------------------------------------
//
// awc refuses to send much of what follows (bytes that are not UTF-8 in a
// header, a length that lies, two lengths), so these requests are written
// byte for byte on a plain TCP socket.

#[derive(Debug)]
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    fn describe(&self) -> String {
        format!(
            "{} {:?}",
            self.status,
            String::from_utf8_lossy(&self.body[..self.body.len().min(300)])
        )
    }
}

/// Sends `request` as it is and reads one response, on a thread of its
/// own (named so that the panic watch does not take it for the server's).
async fn send_raw(port: u16, request: Vec<u8>) -> RawResponse {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("test raw http client".into())
        .spawn(move || {
            let _ = sender.send(send_raw_blocking(port, request));
        })
        .expect("spawn the client thread");
    receiver
        .await
        .expect("the raw request failed (see its panic above)")
}

fn send_raw_blocking(port: u16, request: Vec<u8>) -> RawResponse {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Written from another thread while this one reads: the server may
    // answer before it has read the whole body (a declared length over the
    // limit needs no reading), and the answer is what counts.
    let request_is_head = request.starts_with(b"HEAD ");
    let mut writer = stream.try_clone().expect("clone the socket");
    writer
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let writing = std::thread::spawn(move || {
        let _ = writer.write_all(&request);
    });
    let response = read_response(&mut stream, !request_is_head);
    let _ = stream.shutdown(std::net::Shutdown::Both);
    writing.join().expect("writer thread");
    response
}

fn read_response(stream: &mut TcpStream, has_body: bool) -> RawResponse {
    let mut received = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        if let Some(response) = parse_response(&received, has_body) {
            return response;
        }
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(error) => panic!(
                "reading the response: {error}; got {:?}",
                String::from_utf8_lossy(&received)
            ),
        }
    }
    parse_response(&received, has_body).unwrap_or_else(|| {
        panic!(
            "no complete response before the connection closed: {:?}",
            String::from_utf8_lossy(&received)
        )
    })
}

/// A complete response in `bytes`, if there is one yet. (A response to
/// `HEAD` has no body, whatever its `Content-Length` says.)
fn parse_response(bytes: &[u8], has_body: bool) -> Option<RawResponse> {
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&bytes[..head_end]);
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let rest = &bytes[head_end + 4..];
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let body = if !has_body {
        Vec::new()
    } else if let Some(length) = find("content-length") {
        let length: usize = length.parse().ok()?;
        rest.get(..length)?.to_vec()
    } else if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)?
    } else {
        return None; // read to the end
    };
    Some(RawResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut bytes: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = bytes.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(std::str::from_utf8(&bytes[..line_end]).ok()?, 16).ok()?;
        bytes = &bytes[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(bytes.get(..size)?);
        bytes = bytes.get(size + 2..)?;
    }
}

/// A request line, `Host`, the given headers, a `Content-Length` for the
/// body (unless the headers bring their own framing), and the body.
fn http_request(method: &str, target: &str, headers: &[(&str, &[u8])], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n").into_bytes();
    let framed = headers.iter().any(|(n, _)| {
        n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("transfer-encoding")
    });
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if !framed {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// A 4xx whose body is JSON `{"error": "<non-empty text>"}` and nothing
/// else.
fn assert_json_error(response: &RawResponse, what: &str) {
    assert!(
        (400..500).contains(&response.status),
        "{what}: wanted a 4xx, got {}",
        response.describe()
    );
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{what}: content type {:?}, {}",
        response.header("content-type"),
        response.describe()
    );
    let body = response
        .json()
        .unwrap_or_else(|| panic!("{what}: body is not JSON: {}", response.describe()));
    let fields = body
        .as_object()
        .unwrap_or_else(|| panic!("{what}: not an object: {body}"));
    assert!(
        fields
            .get("error")
            .and_then(Value::as_str)
            .is_some_and(|e| !e.is_empty()),
        "{what}: {body}"
    );
    assert_eq!(fields.len(), 1, "{what}: {body}");
}

/// One REST endpoint that takes a JSON body, and a valid body for it.
struct Endpoint {
    path: &'static str,
    token: Option<String>,
    fields: Vec<(&'static str, Value)>,
}

impl Endpoint {
    fn valid_body(&self) -> serde_json::Map<String, Value> {
        self.fields
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone()))
            .collect()
    }

    fn post(&self, content_type: Option<&[u8]>, body: &[u8]) -> Vec<u8> {
        let bearer = self
            .token
            .as_ref()
            .map(|t| format!("Bearer {t}").into_bytes());
        let mut headers: Vec<(&str, &[u8])> = Vec::new();
        if let Some(bearer) = &bearer {
            headers.push(("Authorization", bearer));
        }
        if let Some(content_type) = content_type {
            headers.push(("Content-Type", content_type));
        }
        http_request("POST", self.path, &headers, body)
    }
}

/// The three endpoints with bodies, as `alice` (who exists, with a chat
/// partner `bob`) would call them.
async fn endpoints(app: &TestApp) -> (Vec<Endpoint>, TestUser, TestUser) {
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let credentials = || {
        vec![
            ("username", json!("alice")),
            ("password", json!("correct horse battery")),
        ]
    };
    let endpoints = vec![
        Endpoint {
            path: "/api/auth/register/",
            token: None,
            fields: credentials(),
        },
        Endpoint {
            path: "/api/auth/login/",
            token: None,
            fields: credentials(),
        },
        Endpoint {
            path: "/api/chats/create/",
            token: Some(alice.token.clone()),
            fields: vec![("user_id", json!(bob.id))],
        },
    ];
    (endpoints, alice, bob)
}

/// Values that are the wrong JSON type for every field of every endpoint
/// (strings for `user_id`, everything but strings for the others).
fn wrong_field_values(field: &str) -> Vec<String> {
    let mut values: Vec<String> = [
        "null",
        "true",
        "false",
        "0",
        "-1",
        "1.5",
        "1e400",
        "9223372036854775808",
        "[]",
        "[\"alice\"]",
        "{}",
        "{\"username\":\"alice\"}",
        "\"\\ud800\"",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    values.push(nested_arrays(50));
    values.push(nested_arrays(10_000));
    values.push(nested_objects(200));
    if field == "user_id" {
        values.retain(|v| !matches!(v.as_str(), "0" | "-1"));
        for string in [
            "\"1\"",
            "\"\"",
            "\"alice\"",
            "1.0",
            "2e0",
            "-0.5",
            "18446744073709551616",
        ] {
            values.push(string.to_owned());
        }
    }
    values
}

/// Bodies that are not a JSON object of the right shape, whatever the
/// endpoint.
fn malformed_bodies() -> Vec<(&'static str, Vec<u8>)> {
    let mut bodies: Vec<(&'static str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("whitespace", b" \r\n\t ".to_vec()),
        ("null", b"null".to_vec()),
        ("true", b"true".to_vec()),
        ("a number", b"42".to_vec()),
        ("a string", b"\"alice\"".to_vec()),
        ("an array", b"[]".to_vec()),
        (
            "an array of the object",
            b"[{\"user_id\":1,\"username\":\"a\"}]".to_vec(),
        ),
        ("an empty object", b"{}".to_vec()),
        ("an opening brace", b"{".to_vec()),
        ("a closing brace", b"}".to_vec()),
        (
            "truncated",
            b"{\"username\":\"alice\",\"password\":".to_vec(),
        ),
        ("trailing garbage", b"{} x".to_vec()),
        ("two objects", b"{}{}".to_vec()),
        ("single quotes", b"{'username':'alice'}".to_vec()),
        ("not JSON", b"hello".to_vec()),
        ("bytes that are not UTF-8", b"\xff\xfe\xfd".to_vec()),
        (
            "a string that is not UTF-8",
            b"{\"username\":\"\xff\xfe\",\"password\":\"\xc0\x80\"}".to_vec(),
        ),
        ("a BOM", b"\xef\xbb\xbf{}".to_vec()),
        (
            "UTF-16",
            "{}".encode_utf16().flat_map(u16::to_le_bytes).collect(),
        ),
        ("NUL", b"\0".to_vec()),
        ("a lone surrogate key", b"{\"\\ud800\":1}".to_vec()),
        ("deep arrays", nested_arrays(10_000).into_bytes()),
        ("deep objects", nested_objects(10_000).into_bytes()),
        ("unclosed arrays", "[".repeat(50_000).into_bytes()),
        (
            "a huge number",
            format!("1{}", "0".repeat(50_000)).into_bytes(),
        ),
        (
            "form data",
            b"username=alice&password=correct+horse+battery&user_id=2".to_vec(),
        ),
        ("XML", b"<user><id>2</id></user>".to_vec()),
    ];
    bodies.push((
        "multipart",
        b"--X\r\nContent-Disposition: form-data; name=\"user_id\"\r\n\r\n2\r\n--X--\r\n".to_vec(),
    ));
    bodies
}

// ---- REST: bodies ------------------------------------------------------------------

#[actix_web::test]
async fn every_endpoint_answers_malformed_bodies_with_400_json() {
    let app = hostile_app(&[]).await;
    let (endpoints, alice, _) = endpoints(&app).await;
    let mut sent = 0;
    for endpoint in &endpoints {
        let json_type: &[u8] = b"application/json";
        let mut cases: Vec<(String, Vec<u8>)> = malformed_bodies()
            .into_iter()
            .map(|(what, body)| (what.to_owned(), body))
            .collect();
        for (field, _) in &endpoint.fields {
            // The field missing, alone or beside junk.
            let mut without = endpoint.valid_body();
            without.remove(*field);
            cases.push((
                format!("{field} missing"),
                Value::Object(without.clone()).to_string().into_bytes(),
            ));
            without.insert("junk".into(), json!({"nested": [1, {"deep": null}]}));
            cases.push((
                format!("{field} missing, junk beside"),
                Value::Object(without).to_string().into_bytes(),
            ));
            // The field with every wrong type; the rest valid.
            for value in wrong_field_values(field) {
                let others: Vec<String> = endpoint
                    .fields
                    .iter()
                    .filter(|(name, _)| name != field)
                    .map(|(name, v)| format!("{}:{v}", json!(name)))
                    .collect();
                let mut members = others.clone();
                members.push(format!("{}:{value}", json!(field)));
                let body = format!("{{{}}}", members.join(","));
                let shown: String = value.chars().take(30).collect();
                cases.push((format!("{field} = {shown}"), body.into_bytes()));
                // And with an unknown field beside it.
                members.push("\"extra\":[1,2,3]".to_owned());
                let body = format!("{{{}}}", members.join(","));
                cases.push((format!("{field} = {shown}, extra"), body.into_bytes()));
            }
        }
        // Every field null at once, and the valid object wrapped in another.
        let nulls: serde_json::Map<String, Value> = endpoint
            .fields
            .iter()
            .map(|(name, _)| ((*name).to_owned(), Value::Null))
            .collect();
        cases.push((
            "all null".into(),
            Value::Object(nulls).to_string().into_bytes(),
        ));
        cases.push((
            "wrapped".into(),
            json!({ "data": endpoint.valid_body() })
                .to_string()
                .into_bytes(),
        ));
        for (what, body) in cases {
            let what = format!("POST {} {what}", endpoint.path);
            let response = send_raw(app.port, endpoint.post(Some(json_type), &body)).await;
            assert_eq!(response.status, 400, "{what}: {}", response.describe());
            assert_json_error(&response, &what);
            sent += 1;
        }
    }
    eprintln!("{sent} malformed bodies");
    // Nothing was created along the way.
    assert!(app.chats_of(&alice).await.is_empty());
    assert_eq!(
        app.get("/api/users/", Some(&alice.token))
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
    app.assert_no_server_panics();
}

#[actix_web::test]
async fn unknown_fields_are_ignored_even_when_they_are_junk() {
    let app = hostile_app(&[]).await;
    let (endpoints, _, _) = endpoints(&app).await;
    let junk = [
        json!(null),
        json!([1, "two", {"three": [null]}]),
        json!({"username": 5, "password": [], "user_id": "x"}),
        json!("x".repeat(10_000)),
        json!(nested_arrays(100)),
    ];
    for (index, extra) in junk.iter().enumerate() {
        let mut register = endpoints[0].valid_body();
        register.insert("username".into(), json!(format!("carol{index}")));
        register.insert("extra".into(), extra.clone());
        let reply = app
            .post_json("/api/auth/register/", None, &Value::Object(register))
            .await;
        assert_eq!(reply.status, 201, "register with extra {extra}: {reply:?}");

        let mut create = endpoints[2].valid_body();
        create.insert("extra".into(), extra.clone());
        let reply = app
            .post_json(
                "/api/chats/create/",
                endpoints[2].token.as_deref(),
                &Value::Object(create),
            )
            .await;
        assert!(
            matches!(reply.status, 200 | 201),
            "create with extra {extra}: {reply:?}"
        );
    }
    let mut login = endpoints[1].valid_body();
    login.insert("extra".into(), json!({"is_admin": true}));
    let reply = app
        .post_json("/api/auth/login/", None, &Value::Object(login))
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    app.assert_no_server_panics();
}

#[actix_web::test]
async fn the_content_type_never_matters_only_the_body_does() {
    let app = hostile_app(&[]).await;
    let (endpoints, _, _) = endpoints(&app).await;
    let content_types: [Option<&[u8]>; 11] = [
        None,
        Some(b"application/json"),
        Some(b"text/plain"),
        Some(b"application/x-www-form-urlencoded"),
        Some(b"multipart/form-data; boundary=X"),
        Some(b"application/xml"),
        Some(b"application/json; charset=utf-16"),
        Some(b"application/octet-stream"),
        Some(b";;;"),
        Some(b""),
        Some(b"application/\xff\xfe"),
    ];
    let mut sent = 0;
    for endpoint in &endpoints {
        for content_type in content_types {
            let shown = content_type.map(String::from_utf8_lossy);
            for (what, body) in malformed_bodies() {
                let what = format!("POST {} as {shown:?}: {what}", endpoint.path);
                let response = send_raw(app.port, endpoint.post(content_type, &body)).await;
                assert_eq!(response.status, 400, "{what}: {}", response.describe());
                assert_json_error(&response, &what);
                sent += 1;
            }
        }
    }
    // A valid body is accepted under any of them (docs/api.md); creating
    // the chat needs no password hashing, so it is the one tried each time.
    let create = &endpoints[2];
    let body = Value::Object(create.valid_body()).to_string();
    for content_type in content_types {
        let response = send_raw(app.port, create.post(content_type, body.as_bytes())).await;
        assert!(
            matches!(response.status, 200 | 201),
            "{:?}: {}",
            content_type.map(String::from_utf8_lossy),
            response.describe()
        );
        sent += 1;
    }
    eprintln!("{sent} requests with odd content types");
    app.assert_no_server_panics();
}

#[actix_web::test]
async fn bodies_over_the_limit_get_413_json_however_they_arrive() {
    let app = hostile_app(&[]).await;
    let (endpoints, alice, _) = endpoints(&app).await;
    let limit = 65_536;
    for endpoint in &endpoints {
        let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
        for size in [limit + 1, limit + 1_000, 1 << 20] {
            // A valid object, made big by one long field...
            let mut body = endpoint.valid_body();
            body.insert("padding".into(), json!(""));
            let overhead = Value::Object(body.clone()).to_string().len();
            body.insert("padding".into(), json!("x".repeat(size - overhead)));
            let body = Value::Object(body).to_string().into_bytes();
            assert_eq!(body.len(), size);
            cases.push((
                format!("{size} bytes of JSON"),
                endpoint.post(Some(b"application/json"), &body),
            ));
            // ... or junk.
            cases.push((
                format!("{size} bytes of junk"),
                endpoint.post(None, &vec![0xff; size]),
            ));
        }
        let bearer = endpoint.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut base: Vec<(&str, &[u8])> = Vec::new();
        if let Some(bearer) = &bearer {
            base.push(("Authorization", bearer.as_bytes()));
        }
        // A length that is too large is enough; nothing needs to follow.
        for length in ["65537", "99999999999", "18446744073709551615"] {
            let mut headers = base.clone();
            headers.push(("Content-Length", length.as_bytes()));
            cases.push((
                format!("Content-Length {length}, no body"),
                http_request("POST", endpoint.path, &headers, b""),
            ));
        }
        // Chunked: no length up front, so the limit is found while reading.
        let mut headers = base.clone();
        headers.push(("Transfer-Encoding", b"chunked"));
        let mut chunked = Vec::new();
        for _ in 0..20 {
            chunked.extend_from_slice(format!("{:x}\r\n", 4096).as_bytes());
            chunked.extend(vec![b' '; 4096]);
            chunked.extend_from_slice(b"\r\n");
        }
        chunked.extend_from_slice(b"0\r\n\r\n");
        cases.push((
            "chunked, 80 KiB".into(),
            http_request("POST", endpoint.path, &headers, &chunked),
        ));

        for (what, request) in cases {
            let what = format!("POST {} {what}", endpoint.path);
            let response = send_raw(app.port, request).await;
            assert_eq!(response.status, 413, "{what}: {}", response.describe());
            assert_json_error(&response, &what);
        }
    }
    // Just under the limit is parsed (and refused for what it says).
    let mut body = endpoints[2].valid_body();
    body.insert("user_id".into(), json!("x".repeat(limit - 20)));
    let reply = app
        .post_json(
            "/api/chats/create/",
            Some(&alice.token),
            &Value::Object(body),
        )
        .await;
    assert_eq!(reply.status, 400, "{reply:?}");
    app.assert_no_server_panics();
}

// ---- REST: methods, queries, headers ---------------------------------------------

const PATHS: [&str; 6] = [
    "/api/auth/register/",
    "/api/auth/login/",
    "/api/users/",
    "/api/chats/",
    "/api/chats/create/",
    "/ws/chat/1/",
];

#[actix_web::test]
async fn every_path_answers_a_wrong_method_with_405_json() {
    let app = hostile_app(&[]).await;
    let alice = app.user("alice").await;
    let bearer = format!("Bearer {}", alice.token);
    let mut sent = 0;
    for path in PATHS {
        let allowed = if path.starts_with("/api/auth/") || path.ends_with("create/") {
            "POST"
        } else {
            "GET"
        };
        for method in [
            "GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "FOO", "HEAD",
        ] {
            if method == allowed {
                continue;
            }
            for auth in [None, Some(bearer.as_bytes())] {
                let mut headers: Vec<(&str, &[u8])> = vec![("Content-Type", b"application/json")];
                if let Some(auth) = auth {
                    headers.push(("Authorization", auth));
                }
                let request = http_request(method, path, &headers, b"{\"junk\": [1]}");
                let response = send_raw(app.port, request).await;
                let what = format!("{method} {path} (token: {})", auth.is_some());
                assert_eq!(response.status, 405, "{what}: {}", response.describe());
                // A HEAD response has no body, by definition.
                if method != "HEAD" {
                    assert_json_error(&response, &what);
                }
                sent += 1;
            }
        }
    }
    eprintln!("{sent} wrong methods");
    app.assert_no_server_panics();
}

#[actix_web::test]
async fn absurd_query_strings_change_nothing() {
    let app = hostile_app(&[]).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let chat = app.chat(&alice, &bob).await;
    let bearer = format!("Bearer {}", alice.token);
    let long_pairs = format!("?{}", "a=b&".repeat(2_000));
    let long_value = format!("?token={}", "x".repeat(60_000));
    let queries = [
        "?",
        "?&&&",
        "?=",
        "?==&=",
        "?a",
        "?%",
        "?%%",
        "?%zz",
        "?%ff%fe",
        "?%00",
        "?a=%00",
        "?token",
        "?token=",
        "?token=%ff",
        "?token[]=x",
        "?token=a&token=b",
        "?;",
        "?a=1;b=2",
        "?a[b][c]=d",
        "??",
        "?/../../etc/passwd",
        long_pairs.as_str(),
        long_value.as_str(),
    ];
    let mut sent = 0;
    for query in queries {
        let shown: String = query.chars().take(30).collect();
        // Read-only endpoints: the query is ignored.
        for path in ["/api/users/", "/api/chats/"] {
            let request = http_request(
                "GET",
                &format!("{path}{query}"),
                &[("Authorization", bearer.as_bytes())],
                b"",
            );
            let response = send_raw(app.port, request).await;
            assert_eq!(
                response.status,
                200,
                "GET {path}{shown}: {}",
                response.describe()
            );
            assert!(response.json().is_some_and(|v| v.is_array()));
            // Without a token, still a 401.
            let request = http_request("GET", &format!("{path}{query}"), &[], b"");
            let response = send_raw(app.port, request).await;
            assert_eq!(response.status, 401, "GET {path}{shown}");
            assert_json_error(&response, &shown);
            sent += 2;
        }
        // Bodies: the query is ignored, the body decides.
        let request = http_request(
            "POST",
            &format!("/api/chats/create/{query}"),
            &[("Authorization", bearer.as_bytes())],
            json!({"user_id": bob.id}).to_string().as_bytes(),
        );
        let response = send_raw(app.port, request).await;
        assert_eq!(
            response.status,
            200,
            "create{shown}: {}",
            response.describe()
        );
        for path in ["/api/auth/register/", "/api/auth/login/"] {
            let request = http_request("POST", &format!("{path}{query}"), &[], b"[]");
            let response = send_raw(app.port, request).await;
            assert_eq!(
                response.status,
                400,
                "POST {path}{shown}: {}",
                response.describe()
            );
            assert_json_error(&response, &shown);
        }
        // The socket's query carries its token: none of these is one.
        let request = http_request("GET", &format!("/ws/chat/{chat}/{query}"), &[], b"");
        let response = send_raw(app.port, request).await;
        assert_eq!(
            response.status,
            401,
            "socket{shown}: {}",
            response.describe()
        );
        assert_json_error(&response, &shown);
        sent += 4;
    }
    eprintln!("{sent} requests with absurd query strings");
    app.assert_no_server_panics();
}

#[actix_web::test]
async fn odd_paths_answer_404_json() {
    let app = hostile_app(&[]).await;
    let alice = app.user("alice").await;
    let bearer = format!("Bearer {}", alice.token);
    let long = format!("/api/{}/", "a".repeat(60_000));
    // `/` is the web page (tests/web_page.rs); its files are a fixed list.
    for path in [
        "/web/",
        "/web/%2e%2e/Cargo.toml",
        "/web/..%2fCargo.toml",
        "/web/js/%00",
        "/web/index.html%00.js",
        "/api/",
        "/api/users",
        "/api//users/",
        "/api/users//",
        "/API/USERS/",
        "/api/users/%2e%2e/",
        "/api/users/../users/",
        "/api/%00/",
        "/api/%ff/",
        "/api/%/",
        "/ws/chat/",
        "/ws/chat//",
        "/ws/chat/%ff/",
        "/ws/chat/%00/",
        "/ws/chat/1%2F/",
        "/ws/chat/99999999999999999999999/",
        "/ws/chat/1e3/",
        "/ws/chat/0x10/",
        "/ws/chat/1/extra/",
        long.as_str(),
        "*",
    ] {
        let request = http_request("GET", path, &[("Authorization", bearer.as_bytes())], b"");
        let response = send_raw(app.port, request).await;
        let shown: String = path.chars().take(40).collect();
        assert_eq!(response.status, 404, "GET {shown}: {}", response.describe());
        assert_json_error(&response, &shown);
    }
    app.assert_no_server_panics();
}

/// The largest and smallest ids there are, where a chat or a user id is
/// looked up: nothing to find, never an overflow.
#[actix_web::test]
async fn the_extreme_ids_find_nothing_and_overflow_nothing() {
    let app = hostile_app(&[]).await;
    let alice = app.user("alice").await;
    for id in [i64::MIN, i64::MIN + 1, -1, 0, i64::MAX - 1, i64::MAX] {
        let socket = app
            .get(&format!("/ws/chat/{id}/"), Some(&alice.token))
            .await;
        assert_eq!(socket.status, 404, "chat {id}: {socket:?}");
        assert!(socket.body["error"].as_str().is_some());
        let create = app
            .post_json(
                "/api/chats/create/",
                Some(&alice.token),
                &json!({ "user_id": id }),
            )
            .await;
        assert_eq!(create.status, 400, "user {id}: {create:?}");
        assert!(create.body["error"].as_str().is_some());
    }
    assert!(app.chats_of(&alice).await.is_empty());
    app.assert_no_server_panics();
}

#[actix_web::test]
async fn huge_or_malformed_headers_get_4xx_never_5xx() {
    let app = hostile_app(&[]).await;
    let alice = app.user("alice").await;
    let bearer = format!("Bearer {}", alice.token);
    let get_users = |headers: &[(&str, &[u8])]| http_request("GET", "/api/users/", headers, b"");

    // Answered by the app: a 401 or a 200, with a JSON body.
    let long_token = format!("Bearer {}", "x".repeat(60_000));
    let long_cookie = "c".repeat(60_000);
    let app_level: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "a 60 KB token",
            get_users(&[("Authorization", long_token.as_bytes())]),
            401,
        ),
        (
            "a token that is not UTF-8",
            get_users(&[("Authorization", b"Bearer \xff\xfe")]),
            401,
        ),
        (
            "a scheme that is not UTF-8",
            get_users(&[("Authorization", b"\xffearer x")]),
            401,
        ),
        (
            "a token with spaces",
            get_users(&[(
                "Authorization",
                format!("Bearer  {} x", alice.token).as_bytes(),
            )]),
            401,
        ),
        (
            "a 60 KB cookie, ignored",
            get_users(&[
                ("Authorization", bearer.as_bytes()),
                ("Cookie", long_cookie.as_bytes()),
            ]),
            200,
        ),
        (
            "an odd accept, ignored",
            get_users(&[
                ("Authorization", bearer.as_bytes()),
                ("Accept", b"text/html;q=\xff"),
            ]),
            200,
        ),
        (
            "a gzip body that is not gzip",
            http_request(
                "POST",
                "/api/auth/login/",
                &[("Content-Encoding", b"gzip")],
                b"not gzip",
            ),
            400,
        ),
    ];
    for (what, request, status) in app_level {
        let response = send_raw(app.port, request).await;
        assert_eq!(response.status, status, "{what}: {}", response.describe());
        if status != 200 {
            assert_json_error(&response, what);
        }
    }

    // Refused by actix-http's parser before any application code runs: it
    // answers with a status and an empty body, which the app cannot
    // change. A 4xx, never a 5xx, and the server carries on.
    let huge_header = "h".repeat(200_000);
    let many_headers: Vec<(String, &[u8])> = (0..120)
        .map(|i| (format!("X-Junk-{i}"), &b"1"[..]))
        .collect();
    let many: Vec<(&str, &[u8])> = many_headers.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    let codec_level: Vec<(&str, Vec<u8>)> = vec![
        (
            "a 200 KB header",
            get_users(&[("X-Huge", huge_header.as_bytes())]),
        ),
        ("120 headers", get_users(&many)),
        ("a NUL in a header", get_users(&[("X-Nul", b"a\0b")])),
        ("a header name with a space", get_users(&[("X Bad", b"1")])),
        (
            "a header without a colon",
            b"GET /api/users/ HTTP/1.1\r\nHost: x\r\nnocolon\r\n\r\n".to_vec(),
        ),
        (
            "a folded header",
            b"GET /api/users/ HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n".to_vec(),
        ),
        (
            "a path that is not ASCII",
            b"GET /api/\xff/ HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "HTTP/9.9",
            b"GET /api/users/ HTTP/9.9\r\nHost: x\r\n\r\n".to_vec(),
        ),
        ("no version", b"GET /api/users/\r\n\r\n".to_vec()),
        (
            "garbage",
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n".to_vec(),
        ),
        (
            "a negative length",
            http_request(
                "POST",
                "/api/auth/login/",
                &[("Content-Length", b"-1")],
                b"",
            ),
        ),
        (
            "a length that is not a number",
            http_request(
                "POST",
                "/api/auth/login/",
                &[("Content-Length", b"abc")],
                b"",
            ),
        ),
        (
            "two lengths",
            http_request(
                "POST",
                "/api/auth/login/",
                &[("Content-Length", b"2"), ("Content-Length", b"3")],
                b"{}",
            ),
        ),
        (
            "a length and chunked",
            http_request(
                "POST",
                "/api/auth/login/",
                &[("Content-Length", b"2"), ("Transfer-Encoding", b"chunked")],
                b"{}",
            ),
        ),
        (
            "an unknown transfer encoding",
            http_request(
                "POST",
                "/api/auth/login/",
                &[("Transfer-Encoding", b"gzip")],
                b"{}",
            ),
        ),
        (
            "a chunk size that is not hex",
            http_request(
                "POST",
                "/api/auth/login/",
                &[("Transfer-Encoding", b"chunked")],
                b"zz\r\n{}\r\n0\r\n\r\n",
            ),
        ),
    ];
    let mut refused = Vec::new();
    for (what, request) in codec_level {
        let response = send_raw(app.port, request).await;
        assert!(
            (400..500).contains(&response.status),
            "{what}: {}",
            response.describe()
        );
        if !response.body.is_empty() {
            assert_json_error(&response, what);
        }
        refused.push(format!("{what}: {}", response.status));
    }
    eprintln!("refused by the HTTP parser: {refused:#?}");

    // The server carries on.
    assert_eq!(app.get("/api/users/", Some(&alice.token)).await.status, 200);
    app.assert_no_server_panics();
}

#[actix_web::test]
async fn hostile_strings_in_credentials_get_4xx_never_5xx() {
    // Dozens of wrong passwords for names that share the key `alice`: the
    // login throttle (tested in accounts.rs) is out of the way here.
    let app = hostile_app(&[
        "--login-failures-per-username",
        "1000000",
        "--login-failures-per-address",
        "1000000",
    ])
    .await;
    let long = "é".repeat(10_000);
    let strings = [
        "\u{0}",
        "alice\u{0}",
        "\u{0}alice",
        "\u{202e}ecila",
        "ali\u{200d}ce",
        "👋",
        "ａｌｉｃｅ",
        " alice",
        "alice ",
        "alice\n",
        "alice\r\nX-Injected: 1",
        "'; DROP TABLE users; --",
        "%00",
        "../../etc/passwd",
        "\u{feff}alice",
        "\u{fffd}",
        long.as_str(),
    ];
    let mut sent = 0;
    for string in strings {
        let shown: String = string.chars().take(20).collect();
        for (username, password) in [
            (string, "correct horse battery"),
            ("dave", string),
            (string, string),
        ] {
            let credentials = json!({"username": username, "password": password});
            let register = app
                .post_json("/api/auth/register/", None, &credentials)
                .await;
            assert!(
                matches!(register.status, 201 | 400),
                "register {shown:?}: {register:?}"
            );
            let login = app.post_json("/api/auth/login/", None, &credentials).await;
            assert!(
                matches!(login.status, 200 | 401),
                "login {shown:?}: {login:?}"
            );
            // A login works exactly when the registration did.
            assert_eq!(login.status == 200, register.status == 201, "{shown:?}");
            for reply in [&register, &login] {
                if reply.status >= 400 {
                    assert!(reply.body["error"].as_str().is_some_and(|e| !e.is_empty()));
                }
            }
            sent += 2;
        }
    }
    eprintln!("{sent} registrations and logins with hostile strings");
    app.assert_no_server_panics();
}

#[actix_web::test]
async fn junk_tokens_get_401_json_at_every_door() {
    let app = hostile_app(&[]).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let chat = app.chat(&alice, &bob).await;
    let valid = alice.token.clone();
    let parts: Vec<&str> = valid.split('.').collect();
    let flipped_signature = {
        let mut signature = parts[2].to_owned();
        let last = if signature.ends_with('A') { "B" } else { "A" };
        signature.replace_range(signature.len() - 1.., last);
        format!("{}.{}.{signature}", parts[0], parts[1])
    };
    let deep_header = format!("{}.{}.{}", nested_arrays(5_000), parts[1], parts[2]);
    let tokens = [
        "x".to_owned(),
        ".".to_owned(),
        "..".to_owned(),
        "...".to_owned(),
        format!("{}.{}", parts[0], parts[1]),
        format!("{}.{}.", parts[0], parts[1]),
        format!("{valid}."),
        format!("{valid}.{}", parts[2]),
        format!("{}.{}.{}", parts[1], parts[0], parts[2]),
        flipped_signature,
        // {"alg":"none","typ":"JWT"} over Alice's claims, unsigned.
        format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1]),
        format!("{}.{}.{}", parts[0], "e30", parts[2]), // `{}` as claims
        format!("{}.!!!.{}", parts[0], parts[2]),
        deep_header,
        "a".repeat(60_000),
        valid.to_uppercase(),
        valid.chars().rev().collect(),
    ];
    let mut sent = 0;
    for token in &tokens {
        let shown: String = token.chars().take(30).collect();
        for reply in [
            app.get("/api/users/", Some(token)).await,
            app.get("/api/chats/", Some(token)).await,
            app.post_json(
                "/api/chats/create/",
                Some(token),
                &json!({"user_id": bob.id}),
            )
            .await,
            app.get(&format!("/ws/chat/{chat}/"), Some(token)).await,
        ] {
            assert_eq!(reply.status, 401, "{shown}: {reply:?}");
            assert!(reply.body["error"].as_str().is_some(), "{shown}");
        }
        let encoded: String = token
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    char::from(b).to_string()
                }
                other => format!("%{other:02X}"),
            })
            .collect();
        let query = app
            .try_connect(&format!("/ws/chat/{chat}/?token={encoded}"), None)
            .await;
        assert_eq!(query.err(), Some(401), "{shown} in the query");
        let header = app
            .try_connect(&format!("/ws/chat/{chat}/"), Some(token))
            .await;
        assert_eq!(header.err(), Some(401), "{shown} in the header");
        sent += 6;
    }
    eprintln!("{sent} requests with junk tokens");
    assert_eq!(app.get("/api/users/", Some(&valid)).await.status, 200);
    app.assert_no_server_panics();
}

#[actix_web::test]
async fn a_broken_websocket_handshake_gets_4xx_json() {
    let app = hostile_app(&[]).await;
    let (alice, _, chat) = app.two_users_and_a_chat().await;
    let path = format!("/ws/chat/{chat}/");
    let bearer = format!("Bearer {}", alice.token);
    let auth: (&str, &[u8]) = ("Authorization", bearer.as_bytes());
    let key: (&str, &[u8]) = ("Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ==");
    let version: (&str, &[u8]) = ("Sec-WebSocket-Version", b"13");
    let upgrade: (&str, &[u8]) = ("Upgrade", b"websocket");
    let connection: (&str, &[u8]) = ("Connection", b"Upgrade");
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("a plain GET", http_request("GET", &path, &[auth], b""), 400),
        (
            "no Connection: upgrade",
            http_request("GET", &path, &[auth, upgrade, key, version], b""),
            400,
        ),
        (
            "no key",
            http_request("GET", &path, &[auth, upgrade, connection, version], b""),
            400,
        ),
        (
            "version 12",
            http_request(
                "GET",
                &path,
                &[
                    auth,
                    upgrade,
                    connection,
                    key,
                    ("Sec-WebSocket-Version", b"12"),
                ],
                b"",
            ),
            400,
        ),
        (
            "no version",
            http_request("GET", &path, &[auth, upgrade, connection, key], b""),
            400,
        ),
        (
            "an upgrade to something else",
            http_request(
                "GET",
                &path,
                &[auth, ("Upgrade", b"h2c"), connection, key, version],
                b"",
            ),
            400,
        ),
        (
            "a POST upgrade",
            http_request(
                "POST",
                &path,
                &[auth, upgrade, connection, key, version],
                b"",
            ),
            405,
        ),
    ];
    for (what, request, status) in cases {
        let response = send_raw(app.port, request).await;
        assert_eq!(response.status, status, "{what}: {}", response.describe());
        assert_json_error(&response, what);
    }
    // The checks before the upgrade still come first: no token, 401.
    let response = send_raw(
        app.port,
        http_request("GET", &path, &[upgrade, connection, key, version], b""),
    )
    .await;
    assert_eq!(response.status, 401, "{}", response.describe());
    app.assert_no_server_panics();
}

#[actix_web::test]
async fn after_every_kind_of_hostile_input_the_server_still_serves() {
    let app = hostile_app(&[]).await;
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    // A little of everything, at once, on many connections.
    let port = app.port;
    let junk = malformed_bodies();
    let requests = junk.into_iter().map(|(_, body)| {
        let request = http_request("POST", "/api/auth/register/", &[], &body);
        send_raw(port, request)
    });
    let cases = catalogue();
    let sockets = (0..8).map(|i| {
        let (app, alice, cases) = (&app, &alice, &cases);
        async move {
            let mut socket = app.connect(alice, chat).await;
            for case in cases.iter().skip(i * 50).take(50) {
                if let Junk::Text(text) = &case.frame {
                    socket.send_text(text).await;
                    assert_error_frame(&socket.next_json().await, &case.describe());
                }
            }
            socket.close().await;
        }
    });
    let (responses, _) = futures_util::future::join(
        futures_util::future::join_all(requests),
        futures_util::future::join_all(sockets),
    )
    .await;
    for response in responses {
        assert_eq!(response.status, 400, "{}", response.describe());
    }

    app.wait_for_connections(0).await;
    let mut history = 0;
    still_serves(&app, (&alice, &bob), chat, &mut history).await;
    assert_eq!(app.chats_of(&alice).await.len(), 1);
    app.assert_no_server_panics();
}
