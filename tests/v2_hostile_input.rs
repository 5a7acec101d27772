#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking
//! Hostile input against protocol v2, end to end: `tests/hostile_input.rs`
//! does this for the seed socket; this file does it for `/ws/v2/` and the
//! v2 REST routes. The promises under test (PROTOCOL-V2.md):
//!
//! - every frame the server cannot serve gets exactly one `error` frame,
//!   with the right `code` (`bad_frame` for anything malformed, else the
//!   first failing check: `unknown_chat`, `not_participant`, `empty`,
//!   `too_long`), its `client_id` and valid `ref` echoed, and the socket
//!   stays open; nothing of it reaches the other participant; a normal
//!   send afterwards is acknowledged;
//! - what the WebSocket layer refuses closes the socket with its code
//!   (`1007` for text that is not UTF-8, `1009` for frames over
//!   `CHAT_MAX_FRAME_BYTES`), and the server goes on serving;
//! - floods of bad frames are answered one for one, in order, and do not
//!   use up the message rate;
//! - the v2 REST routes answer malformed input with a 4xx and a JSON
//!   `{"error"}`, never a 5xx;
//! - nothing a client sends panics the server (watched by
//!   `common::hostile`, as in `hostile_input.rs`: the server runs in this
//!   process).

mod common;

use std::time::Instant;

use actix_web::web::Bytes;
use awc::ws::{Frame, Message};
use common::hostile::{
    client_frame, frame_with_length, hostile_app, nested_arrays, nested_objects, open_raw,
    write_raw, HostileApp, Junk, RawSocket, BINARY, CONTINUATION, TEXT,
};
use common::v2::V2Client;
use common::{Rng, TestApp, TestUser};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};

/// Alice and Bob in a chat, and a chat between Carol and Dave that Alice
/// is not in.
async fn cast(app: &TestApp) -> (TestUser, TestUser, i64, i64) {
    let (alice, bob, chat) = app.two_users_and_a_chat().await;
    let carol = app.user("carol").await;
    let dave = app.user("dave").await;
    let others = app.chat(&carol, &dave).await;
    (alice, bob, chat, others)
}

// ---- what the spec accepts ------------------------------------------------------

/// The server's defaults (PROTOCOL-V2.md via the seed's limits).
const MAX_CHARS: usize = 4096;
const MAX_FRAME_BYTES: usize = 65_536;
const MAX_REF_CHARS: usize = 64;

fn is_integer(value: &Value) -> bool {
    value.as_i64().is_some()
}

fn is_cursor(value: Option<&Value>) -> bool {
    value.is_some_and(|v| v.as_i64().is_some_and(|n| n >= 0))
}

/// Absent and `null` are the same for optional fields.
fn absent(value: Option<&Value>) -> bool {
    matches!(value, None | Some(Value::Null))
}

fn is_client_id(value: Option<&Value>) -> bool {
    value.and_then(Value::as_str).is_some_and(|id| {
        (1..=64).contains(&id.len()) && id.chars().all(|c| matches!(c, '!'..='~'))
    })
}

/// Whether `text` is a well-formed client frame, as PROTOCOL-V2.md
/// describes them, written apart from the server's parser: the catalogue
/// checks each of its frames against it, so a "malformed" frame that is in
/// fact well-formed is a mistake in the test, caught before it is sent.
fn well_formed(text: &str) -> bool {
    let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(text) else {
        return false;
    };
    let valid_ref = match fields.get("ref") {
        None | Some(Value::Null | Value::Number(_)) => true,
        Some(Value::String(r)) => r.chars().count() <= MAX_REF_CHARS,
        Some(_) => false,
    };
    let chat_id = fields.get("chat_id").is_some_and(is_integer);
    valid_ref
        && match fields.get("type").and_then(Value::as_str) {
            Some("send") => {
                chat_id
                    && is_client_id(fields.get("client_id"))
                    && fields.get("body").is_some_and(Value::is_string)
            }
            Some("read" | "delivered") => chat_id && is_cursor(fields.get("up_to")),
            Some("typing") => chat_id && fields.get("active").is_some_and(Value::is_boolean),
            Some("history") => {
                let (before, after) = (fields.get("before"), fields.get("after"));
                let limit = fields.get("limit");
                chat_id
                    && (absent(before) || is_cursor(before))
                    && (absent(after) || is_cursor(after))
                    && (absent(before) || absent(after))
                    && (absent(limit)
                        || limit
                            .and_then(Value::as_u64)
                            .is_some_and(|n| (1..=200).contains(&n)))
            }
            Some("ping") => true,
            _ => false,
        }
}

/// The `ref` an answer to `text` must echo: a string of at most 64
/// characters or a number, in a frame that is a JSON object.
fn echoed_ref(text: &str) -> Option<Value> {
    let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(text) else {
        return None;
    };
    match fields.get("ref") {
        Some(Value::String(r)) if r.chars().count() <= MAX_REF_CHARS => {
            Some(Value::String(r.clone()))
        }
        Some(number @ Value::Number(_)) => Some(number.clone()),
        _ => None,
    }
}

/// The `client_id` an error about `text` must name: the frame's, when it is
/// a string (even an invalid one).
fn echoed_client_id(text: &str) -> Option<String> {
    let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(text) else {
        return None;
    };
    fields.get("client_id")?.as_str().map(str::to_owned)
}

// ---- the catalogue of frames the server cannot serve ----------------------------

/// One frame and the error code it must get.
struct Case {
    category: &'static str,
    frame: Junk,
    code: &'static str,
}

impl Case {
    fn describe(&self) -> String {
        match &self.frame {
            Junk::Text(text) => format!(
                "[{}] text {:?} ({} bytes)",
                self.category,
                text.chars().take(100).collect::<String>(),
                text.len()
            ),
            Junk::Binary(bytes) => format!(
                "[{}] binary {:?} ({} bytes)",
                self.category,
                &bytes[..bytes.len().min(40)],
                bytes.len()
            ),
        }
    }
}

/// A JSON object from raw field texts, in order (a field may repeat).
fn object(fields: &[(&str, String)]) -> String {
    let fields: Vec<String> = fields
        .iter()
        .map(|(name, value)| format!("{}:{value}", Value::from(*name)))
        .collect();
    format!("{{{}}}", fields.join(","))
}

fn quoted(text: &str) -> String {
    Value::from(text).to_string()
}

/// A well-formed frame of each type in `chat`, as raw fields.
fn valid_frames(chat: i64) -> Vec<Vec<(&'static str, String)>> {
    let chat = chat.to_string();
    vec![
        vec![
            ("type", quoted("send")),
            ("chat_id", chat.clone()),
            ("client_id", quoted("c-1")),
            ("body", quoted("hi")),
        ],
        vec![
            ("type", quoted("read")),
            ("chat_id", chat.clone()),
            ("up_to", "0".into()),
        ],
        vec![
            ("type", quoted("delivered")),
            ("chat_id", chat.clone()),
            ("up_to", "0".into()),
        ],
        vec![
            ("type", quoted("typing")),
            ("chat_id", chat.clone()),
            ("active", "true".into()),
        ],
        vec![
            ("type", quoted("history")),
            ("chat_id", chat.clone()),
            ("after", "0".into()),
            ("limit", "10".into()),
        ],
        vec![("type", quoted("ping"))],
    ]
}

/// Values of no use as any field: wrong types, numbers that are not
/// integers or out of range, nesting.
const WRONG_VALUES: [&str; 22] = [
    "null",
    "true",
    "false",
    "\"\"",
    "\"1\"",
    "\"x\"",
    "1.5",
    "1.0",
    "-0.0",
    "1e3",
    "1e20",
    "-1e20",
    "18446744073709551615",
    "9223372036854775808",
    "-9223372036854775809",
    "[]",
    "[1]",
    "{}",
    "{\"id\":1}",
    "[[[[]]]]",
    "\"\\u0000\"",
    "-1",
];

/// Valid refs of every kind, as raw JSON: each must come back as sent.
fn valid_refs() -> Vec<String> {
    let mut refs: Vec<String> = [
        "\"\"",
        "\"r\"",
        "\"\\u0000\"",
        "\"\\n\\t\"",
        "\"\\\"quoted\\\"\"",
        "0",
        "-1",
        "7",
        "1.5",
        "-0.0",
        "1e300",
        "-1e-300",
        "5e-324",
        "18446744073709551615",
        "-9223372036854775808",
        "12345678901234567890123",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    refs.push(quoted(&"r".repeat(MAX_REF_CHARS)));
    refs.push(quoted(&"é".repeat(MAX_REF_CHARS)));
    refs.push(quoted(&"👋".repeat(MAX_REF_CHARS)));
    refs.push(quoted("{\"type\":\"send\"}"));
    refs
}

/// Refs that make a frame malformed: too long, or neither string nor
/// number.
fn invalid_refs() -> Vec<String> {
    let mut refs: Vec<String> = ["true", "false", "[]", "[1]", "{}", "{\"ref\":1}"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    refs.push(quoted(&"r".repeat(MAX_REF_CHARS + 1)));
    refs.push(quoted(&"é".repeat(MAX_REF_CHARS + 1)));
    refs.push(quoted(&"x".repeat(10_000)));
    refs.push(nested_arrays(10));
    refs
}

/// Every kind of frame the server cannot serve, with the code each gets:
/// some 5,000 in all. `own` is the sender's chat, `others` a chat it is not
/// in.
fn catalogue(own: i64, others: i64) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut text = |category: &'static str, code: &'static str, frame: String| {
        cases.push(Case {
            category,
            frame: Junk::Text(frame),
            code,
        });
    };
    let bad = "bad_frame";

    for frame in [
        "",
        " ",
        "\n",
        "hello",
        "ping",
        "{",
        "}",
        "{{}}",
        "{type: \"ping\"}",
        "{'type': 'ping'}",
        "{\"type\" \"ping\"}",
        "{\"type\":}",
        "{\"type\"::\"ping\"}",
        "{\"type\":\"ping\",}",
        "{,\"type\":\"ping\"}",
        "{\"type\":\"ping\"}}",
        "{\"type\":\"ping\"} trailing",
        "{\"type\":\"ping\"}{\"type\":\"ping\"}",
        "{\"type\":\"ping\"}\n{\"type\":\"ping\"}",
        "/* comment */ {\"type\":\"ping\"}",
        "{\"type\":\"ping\"} // comment",
        "undefined",
        "NaN",
        "Infinity",
        "{\"type\":\"ping\",\"ref\":NaN}",
        "{\"type\":\"ping\",\"ref\":Infinity}",
        "{\"type\":\"ping\",\"ref\":0x10}",
        "{\"type\":\"ping\",\"ref\":01}",
        "{\"type\":\"ping\",\"ref\":+1}",
        "{\"type\":\"ping\",\"ref\":.5}",
        "{\"type\":\"ping\",\"ref\":1.}",
        "{\"type\":\"ping\",\"ref\":1e}",
        "{\"type\":\"ping\",\"ref\":'r'}",
        "<ping/>",
        "type=ping",
        "\\",
        "\"",
        "\"unterminated",
        "{\"type\":\"ping\\\"}",
        "{\"type\":\"\\x70ing\"}",
        "{\"type\":\"\\u70\"}",
        "{\"type\":\"\\uZZZZ\"}",
        "{\"type\":\"\\a\"}",
        "{\"type\":\"ping\"\u{0}}",
        "\u{0}",
        "\u{0}{\"type\":\"ping\"}",
        "{\"type\":\"ping\"}\u{0}",
        "\u{feff}{\"type\":\"ping\"}",
        "{\"type\":\"ping\"}\u{feff}",
        "{\u{feff}\"type\":\"ping\"}",
        "{\u{a0}\"type\":\"ping\"}",
        "{\u{3000}\"type\":\"ping\"}",
        "{\"type\":\"ping\"}\u{2028}",
    ] {
        text("invalid JSON", bad, frame.to_owned());
    }
    for byte in 0u8..0x20 {
        let c = char::from(byte);
        text(
            "raw control character",
            bad,
            format!("{{\"type\":\"pi{c}ng\"}}"),
        );
        text(
            "raw control character",
            bad,
            format!(
                "{{\"type\":\"send\",\"chat_id\":{own},\"client_id\":\"c\",\"body\":\"a{c}b\"}}"
            ),
        );
    }
    for escape in [
        r"\ud800",
        r"\udfff",
        r"\ud83d",
        r"\ude00",
        r"\ud800\ud800",
        r"\udc00\ud800",
    ] {
        text(
            "lone surrogate",
            bad,
            format!(r#"{{"type":"ping","ref":"{escape}"}}"#),
        );
        text("lone surrogate", bad, format!(r#"{{"type":"{escape}"}}"#));
        text(
            "lone surrogate",
            bad,
            format!(r#"{{"type":"send","chat_id":{own},"client_id":"c{escape}","body":"x"}}"#),
        );
        text(
            "lone surrogate",
            bad,
            format!(r#"{{"type":"send","chat_id":{own},"client_id":"c","body":"{escape}"}}"#),
        );
    }

    // Every strict prefix of well-formed frames.
    for fields in valid_frames(own) {
        let mut with_ref = fields.clone();
        with_ref.push(("ref", quoted("prefix")));
        for frame in [object(&fields), object(&with_ref)] {
            assert!(well_formed(&frame), "{frame}");
            for (end, _) in frame.char_indices() {
                text("truncated JSON", bad, frame[..end].to_owned());
            }
        }
    }

    for value in WRONG_VALUES.iter().map(|v| (*v).to_owned()).chain([
        quoted("ping"),
        "[{\"type\":\"ping\"}]".into(),
        quoted("{\"type\":\"ping\"}"),
        "7".into(),
    ]) {
        if !value.starts_with('{') {
            text("not an object", bad, value);
        }
    }

    // No type, a type that is not a string, a type that is not one.
    text("no type", bad, "{}".into());
    text("no type", bad, object(&[("ref", "1".into())]));
    text(
        "no type",
        bad,
        object(&[("chat_id", own.to_string()), ("body", quoted("hi"))]),
    );
    text("no type", bad, object(&[("Type", quoted("ping"))]));
    text("no type", bad, object(&[("type ", quoted("ping"))]));
    for value in WRONG_VALUES {
        text(
            "type of the wrong type",
            bad,
            object(&[("type", value.to_owned())]),
        );
    }
    for kind in [
        "",
        " ",
        "Ping",
        "PING",
        " ping",
        "ping ",
        "ping\n",
        "pіng", // a Cyrillic "і"
        "ping\u{0}",
        "pin",
        "pingg",
        "hello",
        "ack",
        "message",
        "error",
        "pong",
        "chat",
        "presence",
        "subscribe",
        "join",
        "read_all",
        "edit",
        "delete",
        "__proto__",
        "constructor",
        "👋",
        &"x".repeat(10_000),
    ] {
        text("unknown type", bad, object(&[("type", quoted(kind))]));
        text(
            "unknown type",
            bad,
            object(&[
                ("type", quoted(kind)),
                ("chat_id", own.to_string()),
                ("client_id", quoted("c-1")),
                ("body", quoted("hi")),
            ]),
        );
    }
    // A repeated key: the last one counts.
    text(
        "repeated key",
        bad,
        object(&[("type", quoted("ping")), ("type", quoted("shout"))]),
    );
    text(
        "repeated key",
        bad,
        object(&[
            ("type", quoted("send")),
            ("chat_id", own.to_string()),
            ("client_id", quoted("c-1")),
            ("body", quoted("hi")),
            ("body", "5".into()),
        ]),
    );

    // Every field of every frame missing, and each wrong value in it.
    for fields in valid_frames(own) {
        for (index, (name, _)) in fields.iter().enumerate().skip(1) {
            let mut missing = fields.clone();
            missing.remove(index);
            let frame = object(&missing);
            // `after` and `limit` may be left out of a history request.
            if !well_formed(&frame) {
                text("missing field", bad, frame);
            }
            for value in WRONG_VALUES {
                let mut wrong = fields.clone();
                wrong[index].1 = value.to_owned();
                let frame = object(&wrong);
                if !well_formed(&frame) {
                    text("field of the wrong type", bad, frame.clone());
                    let mut with_ref = wrong.clone();
                    with_ref.push(("ref", quoted(name)));
                    text("field of the wrong type", bad, object(&with_ref));
                }
            }
        }
    }
    // Cursors and limits out of range.
    let history = |extra: &[(&'static str, String)]| {
        let mut fields = vec![("type", quoted("history")), ("chat_id", own.to_string())];
        fields.extend_from_slice(extra);
        object(&fields)
    };
    for (before, after) in [
        ("0", "0"),
        ("5", "1"),
        ("1", "5"),
        ("9223372036854775807", "0"),
    ] {
        text(
            "both cursors",
            bad,
            history(&[("before", before.into()), ("after", after.into())]),
        );
    }
    for limit in [
        "0",
        "201",
        "-1",
        "1000",
        "9223372036854775807",
        "18446744073709551616",
        "1.5",
        "2e1",
    ] {
        text(
            "limit out of range",
            bad,
            history(&[("limit", limit.into())]),
        );
        text(
            "limit out of range",
            bad,
            history(&[("after", "0".into()), ("limit", limit.into())]),
        );
    }
    for cursor in [
        "-1",
        "-9223372036854775808",
        "1e3",
        "18446744073709551615",
        "1.0",
    ] {
        for name in ["before", "after"] {
            text(
                "cursor out of range",
                bad,
                history(&[(name, cursor.into())]),
            );
        }
        for kind in ["read", "delivered"] {
            text(
                "cursor out of range",
                bad,
                object(&[
                    ("type", quoted(kind)),
                    ("chat_id", own.to_string()),
                    ("up_to", cursor.into()),
                ]),
            );
        }
    }

    // Invalid client_ids: a bad frame that names them.
    let send = |client_id: String, body: &str| {
        object(&[
            ("type", quoted("send")),
            ("chat_id", own.to_string()),
            ("client_id", client_id),
            ("body", quoted(body)),
        ])
    };
    for client_id in [
        "",
        " ",
        "a b",
        " a",
        "a ",
        "a\tb",
        "a\nb",
        "é",
        "c-é",
        "👋",
        "a\u{0}b",
        "\u{0}",
        "\u{1}",
        "\u{7f}",
        "a\u{a0}b",
        "\u{feff}c",
        "ｃ", // fullwidth
        &"c".repeat(65),
        &"c".repeat(1_000),
        &"é".repeat(64),
    ] {
        text("invalid client_id", bad, send(quoted(client_id), "hi"));
        text("invalid client_id", bad, send(quoted(client_id), ""));
    }

    // Refs: invalid ones spoil any frame; valid ones are echoed on every
    // error, whatever else is wrong.
    for reference in invalid_refs() {
        text(
            "invalid ref",
            bad,
            object(&[("type", quoted("ping")), ("ref", reference.clone())]),
        );
        text(
            "invalid ref",
            bad,
            object(&[
                ("type", quoted("send")),
                ("chat_id", own.to_string()),
                ("client_id", quoted("c-ref")),
                ("body", quoted("hi")),
                ("ref", reference),
            ]),
        );
    }
    for reference in valid_refs() {
        text(
            "valid ref, bad frame",
            bad,
            object(&[("type", quoted("shout")), ("ref", reference.clone())]),
        );
        text(
            "valid ref, bad frame",
            bad,
            object(&[("ref", reference.clone())]),
        );
        text(
            "valid ref, bad frame",
            bad,
            object(&[
                ("ref", reference.clone()),
                ("type", quoted("send")),
                ("chat_id", own.to_string()),
                ("client_id", quoted("bad id")),
                ("body", quoted("hi")),
            ]),
        );
        text(
            "valid ref, unknown chat",
            "unknown_chat",
            object(&[
                ("type", quoted("history")),
                ("chat_id", "9223372036854775807".into()),
                ("ref", reference),
            ]),
        );
    }

    // Past serde_json's recursion limit (128) a frame is not JSON at all;
    // within it, nesting where a string, number or boolean belongs is the
    // wrong type.
    for depth in [129, 1_000, 10_000, 30_000] {
        let arrays = nested_arrays(depth);
        text("deeply nested", bad, arrays.clone());
        text(
            "deeply nested",
            bad,
            format!(r#"{{"type":"ping","extra":{arrays}}}"#),
        );
        text(
            "deeply nested",
            bad,
            format!(r#"{{"type":"ping","ref":{arrays}}}"#),
        );
        text("deeply nested", bad, "[".repeat(depth));
    }
    for depth in [129, 1_000, 5_000] {
        let objects = nested_objects(depth);
        text("deeply nested", bad, objects.clone());
        text(
            "deeply nested",
            bad,
            format!(r#"{{"type":"ping","extra":{objects}}}"#),
        );
        text("deeply nested", bad, r#"{"a":"#.repeat(depth));
    }
    for depth in [1, 10, 100, 126] {
        for field in ["chat_id", "client_id", "body"] {
            let mut fields = valid_frames(own)[0].clone();
            let slot = fields.iter_mut().find(|(name, _)| *name == field).unwrap();
            slot.1 = nested_arrays(depth);
            text("deeply nested", bad, object(&fields));
        }
        text(
            "deeply nested",
            bad,
            object(&[("type", nested_objects(depth))]),
        );
    }

    // Numbers JSON cannot hold, or that are no integer.
    for number in [
        "1e309",
        "-1e309",
        "1e99999",
        &format!("1{}", "0".repeat(400)),
        &format!("-1{}", "0".repeat(400)),
        &format!("1{}", "0".repeat(50_000)),
        &format!("0.{}1", "0".repeat(1_000)),
        "-",
        "1.",
        ".5",
        "01",
        "+1",
        "0x10",
        "1_000",
        "١",
        "1.2.3",
    ] {
        for fields in valid_frames(own).into_iter().take(5) {
            let mut fields = fields;
            fields[1].1 = number.to_owned();
            text("numbers out of range", bad, object(&fields));
        }
        // (A decimal that underflows parses, as 0: a valid ref.)
        let as_ref = object(&[("type", quoted("ping")), ("ref", number.to_owned())]);
        if !well_formed(&as_ref) {
            text("numbers out of range", bad, as_ref);
        }
    }

    // NUL: raw it is not JSON; escaped in a body it is refused (no message
    // may hold it); in a ref it is a string like any other.
    for body in ["\u{0}", "a\u{0}b", "\u{0}\u{0}", "trailing\u{0}"] {
        text("NUL in the body", bad, send(quoted("c-nul"), body));
    }

    // Well-formed, refused by a later check, in the specified order.
    let long = "x".repeat(MAX_CHARS + 1);
    for chat in [
        "9223372036854775807",
        "-1",
        "0",
        "-9223372036854775808",
        "424242",
    ] {
        for body in ["hi", "", long.as_str()] {
            text(
                "unknown chat",
                "unknown_chat",
                object(&[
                    ("type", quoted("send")),
                    ("chat_id", chat.into()),
                    ("client_id", quoted("c-unknown")),
                    ("body", quoted(body)),
                ]),
            );
        }
        for mut fields in valid_frames(0).into_iter().skip(1).take(4) {
            fields[1].1 = chat.into();
            text("unknown chat", "unknown_chat", object(&fields));
        }
    }
    for body in ["hi", "", long.as_str()] {
        text(
            "someone else's chat",
            "not_participant",
            object(&[
                ("type", quoted("send")),
                ("chat_id", others.to_string()),
                ("client_id", quoted("c-theirs")),
                ("body", quoted(body)),
            ]),
        );
    }
    for fields in valid_frames(others).into_iter().skip(1).take(4) {
        text("someone else's chat", "not_participant", object(&fields));
    }
    for (body, code) in [
        (String::new(), "empty"),
        (long.clone(), "too_long"),
        ("x".repeat(MAX_CHARS * 3), "too_long"),
        ("é".repeat(MAX_CHARS + 1), "too_long"),
        ("👋".repeat(MAX_CHARS + 1), "too_long"),
        ("e\u{301}".repeat(MAX_CHARS / 2 + 1), "too_long"),
    ] {
        text("body rules", code, send(quoted("c-rules"), &body));
    }

    // Binary frames are bad frames, whatever they hold.
    for bytes in [
        br#"{"type":"ping","ref":1}"#.to_vec(),
        format!(r#"{{"type":"send","chat_id":{own},"client_id":"bin","body":"hi"}}"#).into_bytes(),
        Vec::new(),
        vec![0xff, 0xfe, 0xfd],
        vec![0; 1_000],
        vec![0x80; 60_000],
        (0..=255).collect(),
    ] {
        cases.push(Case {
            category: "binary",
            frame: Junk::Binary(bytes),
            code: bad,
        });
    }

    generated(&mut cases, own);

    for case in &cases {
        if let Junk::Text(text) = &case.frame {
            // A NUL in the body is the server's own refusal, as bad_frame:
            // the spec lists it under no rule.
            let expected_well_formed =
                case.code != "bad_frame" || case.category == "NUL in the body";
            assert_eq!(
                well_formed(text),
                expected_well_formed,
                "catalogue error: {}",
                case.describe()
            );
            assert!(text.len() <= MAX_FRAME_BYTES, "{}", case.describe());
        }
    }
    cases
}

const GENERATED_TOKEN_SOUP: usize = 1_500;
const GENERATED_MUTANTS: usize = 1_500;

/// Frames stitched from v2-ish tokens, and well-formed frames with one to
/// three random edits; the ones that come out well-formed are left out.
fn generated(cases: &mut Vec<Case>, own: i64) {
    let chat = own.to_string();
    let tokens = [
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        "\"type\"",
        "\"send\"",
        "\"ping\"",
        "\"history\"",
        "\"chat_id\"",
        "\"client_id\"",
        "\"body\"",
        "\"ref\"",
        "\"up_to\"",
        "\"limit\"",
        "\"after\"",
        &chat,
        "-1",
        "0",
        "1e999",
        "null",
        "true",
        "\"\"",
        "\"\\u0000\"",
        "\"\\ud800\"",
        " ",
        "\"",
        "\\",
        "x",
        "👋",
        "\u{0}",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut made = 0;
    while made < GENERATED_TOKEN_SOUP {
        let count = rng.below(16);
        let frame: String = (0..count).map(|_| rng.pick(&tokens)).collect();
        if !well_formed(&frame) {
            cases.push(Case {
                category: "generated: token soup",
                frame: Junk::Text(frame),
                code: "bad_frame",
            });
            made += 1;
        }
    }
    let seeds: Vec<String> = valid_frames(own).iter().map(|f| object(f)).collect();
    let seeds: Vec<&str> = seeds.iter().map(String::as_str).collect();
    let inserts = [
        "{", "}", "\"", "\\", ":", ",", "[", "]", "\u{0}", " ", "x", "é", "-", "1", ".",
    ];
    made = 0;
    while made < GENERATED_MUTANTS {
        let mut chars: Vec<char> = rng.pick(&seeds).chars().collect();
        for _ in 0..=rng.below(3) {
            let at = rng.below(chars.len() + 1);
            let insert = rng.pick(&inserts).chars().next().unwrap();
            match rng.below(3) {
                0 if at < chars.len() => {
                    chars.remove(at);
                }
                1 if at < chars.len() => chars[at] = insert,
                _ => chars.insert(at, insert),
            }
        }
        let frame: String = chars.into_iter().collect();
        if !well_formed(&frame) {
            cases.push(Case {
                category: "generated: mutant",
                frame: Junk::Text(frame),
                code: "bad_frame",
            });
            made += 1;
        }
    }
}

// ---- the v2 socket: the barrage --------------------------------------------------

/// An `error` frame with `code` and a non-empty `message`, echoing exactly
/// the `client_id` and `ref` given, and nothing else.
fn assert_error(
    frame: &Value,
    code: &str,
    client_id: Option<&str>,
    reference: Option<&Value>,
    what: &str,
) {
    let fields = frame
        .as_object()
        .unwrap_or_else(|| panic!("{what}: not an object: {frame}"));
    assert_eq!(fields.get("type"), Some(&json!("error")), "{what}: {frame}");
    assert_eq!(fields.get("code"), Some(&json!(code)), "{what}: {frame}");
    assert!(
        fields
            .get("message")
            .and_then(Value::as_str)
            .is_some_and(|m| !m.is_empty()),
        "{what}: {frame}"
    );
    assert_eq!(
        fields.get("client_id").and_then(Value::as_str),
        client_id,
        "{what}: the client_id echoed: {frame}"
    );
    assert_eq!(
        fields.get("ref"),
        reference,
        "{what}: the ref echoed: {frame}"
    );
    let expected_len = 3 + usize::from(client_id.is_some()) + usize::from(reference.is_some());
    assert_eq!(fields.len(), expected_len, "{what}: {frame}");
}

/// Sends `case` and checks its one answer.
async fn send_case(socket: &mut V2Client, index: usize, case: &Case) {
    let what = format!("frame #{index} {}", case.describe());
    let (client_id, reference) = match &case.frame {
        Junk::Text(text) => {
            socket.socket.send_text(text).await;
            (echoed_client_id(text), echoed_ref(text))
        }
        Junk::Binary(bytes) => {
            socket
                .socket
                .send_message(Message::Binary(Bytes::copy_from_slice(bytes)))
                .await;
            (None, None)
        }
    };
    let answer = socket.next().await;
    assert_error(
        &answer,
        case.code,
        client_id.as_deref(),
        reference.as_ref(),
        &what,
    );
}

#[actix_web::test]
async fn thousands_of_bad_v2_frames_on_one_socket_each_get_one_error_and_reach_no_one() {
    let app = hostile_app(&[]).await;
    let (alice, bob, chat, others) = cast(&app).await;
    let cases = catalogue(chat, others);
    assert!(cases.len() >= 4_000, "{} frames", cases.len());
    let mut bob_socket = app.connect_v2(&bob).await;
    let mut socket = app.connect_v2(&alice).await;

    let started = Instant::now();
    let mut per_category: std::collections::BTreeMap<&str, usize> = Default::default();
    for (index, case) in cases.iter().enumerate() {
        send_case(&mut socket, index, case).await;
        *per_category.entry(case.category).or_default() += 1;
    }
    eprintln!(
        "{} bad v2 frames in {:?}: {per_category:?}",
        cases.len(),
        started.elapsed()
    );

    // Valid frames with junk around them are served, refs echoed.
    for reference in valid_refs() {
        let frame = format!(r#"{{"type":"ping","ref":{reference}}}"#);
        socket.socket.send_text(&frame).await;
        let pong = socket.expect("pong").await;
        assert_eq!(pong.get("ref"), echoed_ref(&frame).as_ref(), "{frame}");
    }
    for frame in [
        r#"{"type":"ping","ref":null}"#.to_owned(),
        format!(r#"{{"type":"ping","extra":{}}}"#, nested_arrays(126)),
        format!(r#"{{"extra":{},"type":"ping"}}"#, nested_objects(100)),
        r#"{"type":"shout","type":"ping"}"#.to_owned(),
        format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(60_000)),
    ] {
        socket.socket.send_text(&frame).await;
        assert_eq!(socket.expect("pong").await.get("ref"), None, "{frame}");
    }
    let page = socket
        .history(json!({"chat_id": chat, "before": null, "after": null, "limit": null, "ref": "h"}))
        .await;
    assert_eq!(page["ref"], "h");
    assert_eq!(page["messages"], json!([]));

    // Still open; nothing was stored and nothing reached Bob: his next frame
    // is the first message.
    let acked = socket
        .send_acked(chat, "after-1", "after the barrage")
        .await;
    assert_eq!(acked["seq"], 1, "nothing was stored before: {acked}");
    let to_bob = bob_socket.expect("message").await;
    assert_eq!(to_bob["message"]["id"], acked["id"]);
    bob_socket
        .expect_quiet(std::time::Duration::from_millis(200))
        .await;
    app.assert_no_server_panics();
}

/// An `error` answers a frame "with its client_id and/or ref when it
/// answers a frame that had them" (PROTOCOL-V2.md, server to client): that
/// holds for a `conflict`, which is found only once the writer has looked
/// the `client_id` up, as for the errors found at once.
#[actix_web::test]
async fn a_conflict_echoes_the_ref_of_the_send_it_answers() {
    let app = hostile_app(&[]).await;
    let (alice, _, chat, _) = cast(&app).await;
    let mut socket = app.connect_v2(&alice).await;
    socket.send_acked(chat, "taken", "the first body").await;
    let mut missing = Vec::new();
    for reference in valid_refs() {
        let frame = format!(
            r#"{{"type":"send","chat_id":{chat},"client_id":"taken","body":"another body","ref":{reference}}}"#
        );
        socket.socket.send_text(&frame).await;
        let answer = socket.expect("error").await;
        assert_eq!(answer["code"], "conflict", "{answer}");
        assert_eq!(answer["client_id"], "taken", "{answer}");
        if answer.get("ref") != echoed_ref(&frame).as_ref() {
            missing.push(format!("sent ref {reference}, got {answer}"));
        }
    }
    // The errors found before the writer is asked do echo it.
    let frame = format!(
        r#"{{"type":"send","chat_id":{chat},"client_id":"taken","body":"","ref":"r-empty"}}"#
    );
    socket.socket.send_text(&frame).await;
    assert_error(
        &socket.expect("error").await,
        "empty",
        Some("taken"),
        Some(&json!("r-empty")),
        "empty",
    );
    assert!(
        missing.is_empty(),
        "conflict errors without their ref: {missing:#?}"
    );
    app.assert_no_server_panics();
}

/// Sends `frames` on a new v2 socket of `user` while reading the answers,
/// and returns the first `answers` frames after the hello.
async fn flood(app: &TestApp, user: &TestUser, frames: Vec<Message>, answers: usize) -> Vec<Value> {
    let url = app.ws_url(&format!("/ws/v2/?token={}", user.token));
    let (_, socket) = app
        .client
        .ws(url)
        .max_frame_size(1 << 20)
        .connect()
        .await
        .unwrap();
    let (mut sink, mut stream) = socket.split();
    let write = async move {
        for frame in frames {
            sink.feed(frame).await.unwrap();
        }
        sink.flush().await.unwrap();
        sink
    };
    let read = async {
        let mut received = Vec::new();
        while received.len() < answers + 1 {
            let frame = actix_web::rt::time::timeout(common::FRAME_TIMEOUT, stream.next())
                .await
                .expect("an answer within the timeout");
            match frame {
                Some(Ok(Frame::Text(bytes))) => {
                    let frame: Value = serde_json::from_slice(&bytes).unwrap();
                    if frame["type"] != "presence" {
                        received.push(frame);
                    }
                }
                Some(Ok(Frame::Ping(_) | Frame::Pong(_))) => {}
                other => panic!("the flood ended the socket: {other:?}"),
            }
        }
        received
    };
    let (_sink, received) = futures_util::join!(write, read);
    assert_eq!(received[0]["type"], "hello");
    received[1..].to_vec()
}

#[actix_web::test]
async fn a_flood_of_bad_frames_is_answered_one_for_one_in_order() {
    const FLOOD: usize = 6_000;
    let app = hostile_app(&[]).await;
    let (alice, bob, chat, _) = cast(&app).await;
    let mut bob_socket = app.connect_v2(&bob).await;
    let kinds: [fn(usize, i64) -> String; 5] = [
        |i: usize, _: i64| format!(r#"{{"type":"nope","ref":{i}}}"#),
        |i: usize, chat: i64| {
            format!(r#"{{"type":"send","chat_id":{chat},"client_id":"a b","body":"x","ref":{i}}}"#)
        },
        |i: usize, chat: i64| {
            format!(r#"{{"type":"history","chat_id":{chat},"limit":0,"ref":{i}}}"#)
        },
        |i: usize, chat: i64| {
            format!(r#"{{"type":"typing","chat_id":{chat},"active":"yes","ref":{i}}}"#)
        },
        |i: usize, _: i64| format!(r#"{{"type":"ping","ref":{i}}}"#),
    ];
    let frames: Vec<Message> = (0..FLOOD)
        .map(|i| Message::Text(kinds[i % kinds.len()](i, chat).into()))
        .collect();
    let started = Instant::now();
    let answers = flood(&app, &alice, frames, FLOOD).await;
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer["ref"], i, "answers in order: {answer}");
        if i % kinds.len() == 4 {
            assert_eq!(answer["type"], "pong", "{answer}");
        } else {
            assert_eq!(answer["code"], "bad_frame", "{answer}");
        }
    }
    eprintln!(
        "{FLOOD} frames answered in order in {:?}",
        started.elapsed()
    );

    // Binary frames too.
    let binary: Vec<Message> = (0..1_000)
        .map(|i| Message::Binary(Bytes::from(format!(r#"{{"type":"ping","ref":{i}}}"#))))
        .collect();
    for answer in flood(&app, &alice, binary, 1_000).await {
        assert_error(&answer, "bad_frame", None, None, "binary flood");
    }
    let mut socket = app.connect_v2(&alice).await;
    let acked = socket.send_acked(chat, "after-flood", "still here").await;
    assert_eq!(
        bob_socket.expect("message").await["message"]["id"],
        acked["id"]
    );
    bob_socket
        .expect_quiet(std::time::Duration::from_millis(200))
        .await;
    app.assert_no_server_panics();
}

#[actix_web::test]
async fn bad_frames_do_not_use_up_the_message_rate() {
    let app = hostile_app(&["--ws-rate", "1", "--ws-burst", "3"]).await;
    let (alice, bob, chat, others) = cast(&app).await;
    let mut bob_socket = app.connect_v2(&bob).await;
    let cases = catalogue(chat, others);
    let mut frames: Vec<Message> = cases
        .iter()
        .filter(|case| case.code == "bad_frame")
        .take(2_000)
        .map(|case| match &case.frame {
            Junk::Text(text) => Message::Text(text.clone().into()),
            Junk::Binary(bytes) => Message::Binary(Bytes::copy_from_slice(bytes)),
        })
        .collect();
    let bad = frames.len();
    // Then, on the same socket, the whole burst and one send more.
    for client_id in ["burst-0", "burst-1", "burst-2", "over"] {
        let send = json!({"type": "send", "chat_id": chat, "client_id": client_id, "body": "hi"});
        frames.push(Message::Text(send.to_string().into()));
    }
    let answers = flood(&app, &alice, frames, bad + 4).await;
    for answer in &answers[..bad] {
        assert_eq!(answer["code"], "bad_frame", "{answer}");
    }
    // Acks come after their commit, the refusal at once: in any order.
    let mut last: Vec<(String, String)> = answers[bad..]
        .iter()
        .map(|a| {
            let kind = a["code"].as_str().unwrap_or(a["type"].as_str().unwrap());
            (kind.to_owned(), a["client_id"].as_str().unwrap().to_owned())
        })
        .collect();
    last.sort();
    let expected: Vec<(String, String)> = [
        ("ack", "burst-0"),
        ("ack", "burst-1"),
        ("ack", "burst-2"),
        ("rate_limited", "over"),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect();
    assert_eq!(last, expected, "{:?}", &answers[bad..]);
    for _ in 0..3 {
        bob_socket.expect("message").await;
    }
    bob_socket
        .expect_quiet(std::time::Duration::from_millis(200))
        .await;
    app.assert_no_server_panics();
}

// ---- the v2 socket: what the WebSocket layer closes ------------------------------

/// Reads the hello, then expects the server's close and returns its code.
async fn expect_close(socket: &mut RawSocket, what: &str) -> Option<u16> {
    let mut hello = false;
    loop {
        let frame = actix_web::rt::time::timeout(common::FRAME_TIMEOUT, socket.next())
            .await
            .unwrap_or_else(|_| panic!("{what}: no close within the timeout"));
        match frame {
            Some(Ok(Frame::Text(bytes))) if !hello => {
                let frame: Value = serde_json::from_slice(&bytes).unwrap();
                assert_eq!(frame["type"], "hello", "{what}: {frame}");
                hello = true;
            }
            Some(Ok(Frame::Ping(_) | Frame::Pong(_))) => {}
            Some(Ok(Frame::Close(reason))) => return reason.map(|r| r.code.into()),
            other => panic!("{what}: expected the close, got {other:?}"),
        }
    }
}

/// Each byte string on a fresh v2 socket must close it with its code; after
/// each, a new socket is served and its message reaches the other side.
async fn each_closes_with(app: &HostileApp, violations: Vec<(&str, Vec<u8>, u16)>) {
    let (alice, bob, chat, _) = cast(app).await;
    let mut bob_socket = app.connect_v2(&bob).await;
    // The largest frame allowed is served...
    let mut socket = app.connect_v2(&alice).await;
    let exact = padded_ping(MAX_FRAME_BYTES);
    assert_eq!(exact.len(), MAX_FRAME_BYTES);
    socket.socket.send_text(&exact).await;
    assert_eq!(socket.expect("pong").await["ref"], "edge");
    socket.close().await;
    // ...and each violation closes its socket, not the server.
    for (index, (what, bytes, code)) in violations.into_iter().enumerate() {
        let socket = open_raw(app, &format!("/ws/v2/?token={}", alice.token)).await;
        let mut socket = write_raw(socket, &bytes).await;
        assert_eq!(expect_close(&mut socket, what).await, Some(code), "{what}");
        let mut fresh = app.connect_v2(&alice).await;
        let acked = fresh
            .send_acked(chat, &format!("still-{index}"), "still serving")
            .await;
        let to_bob = bob_socket.expect("message").await;
        assert_eq!(to_bob["message"]["id"], acked["id"], "{what}");
        fresh.close().await;
    }
    bob_socket
        .expect_quiet(std::time::Duration::from_millis(200))
        .await;
    app.assert_no_server_panics();
}

#[actix_web::test]
async fn a_v2_text_frame_that_is_not_utf8_closes_the_socket_with_1007() {
    let app = hostile_app(&[]).await;
    let mut violations = Vec::new();
    for (what, bytes) in [
        (
            "a lone 0xff in the body",
            &b"{\"type\":\"send\",\"chat_id\":1,\"client_id\":\"c\",\"body\":\"\xff\"}"[..],
        ),
        ("an overlong NUL in the type", b"{\"type\":\"\xc0\x80\"}"),
        (
            "an encoded surrogate in the ref",
            b"{\"type\":\"ping\",\"ref\":\"\xed\xa0\x80\"}",
        ),
        (
            "a truncated sequence",
            b"{\"type\":\"ping\",\"ref\":\"\xe2\x82\"}",
        ),
        (
            "beyond U+10FFFF",
            b"{\"type\":\"ping\",\"ref\":\"\xf4\x90\x80\x80\"}",
        ),
        ("a continuation byte first", b"\x80{\"type\":\"ping\"}"),
        (
            "Latin-1 in the client_id",
            b"{\"type\":\"send\",\"chat_id\":1,\"client_id\":\"caf\xe9\",\"body\":\"x\"}",
        ),
    ] {
        violations.push((what, client_frame(true, TEXT, bytes), 1007));
    }
    let mut split = client_frame(false, TEXT, b"{\"type\":\"ping\",\"ref\":\"\xe2\x82");
    split.extend(client_frame(true, CONTINUATION, b"\"}"));
    violations.push(("a sequence cut short across fragments", split, 1007));
    each_closes_with(&app, violations).await;
}

/// A ping of exactly `bytes` bytes, with the ref "edge".
fn padded_ping(bytes: usize) -> String {
    let head = r#"{"type":"ping","ref":"edge","pad":""#;
    let tail = r#""}"#;
    format!(
        "{head}{}{tail}",
        "x".repeat(bytes - head.len() - tail.len())
    )
}

#[actix_web::test]
async fn a_v2_frame_over_the_frame_limit_closes_the_socket_with_1009() {
    let app = hostile_app(&[]).await;
    // One byte more than the limit, however it comes.
    let over = padded_ping(MAX_FRAME_BYTES + 1);
    let mut fragmented = client_frame(false, TEXT, &over.as_bytes()[..40_000]);
    fragmented.extend(client_frame(true, CONTINUATION, &over.as_bytes()[40_000..]));
    each_closes_with(
        &app,
        vec![
            (
                "a ping one byte over",
                client_frame(true, TEXT, over.as_bytes()),
                1009,
            ),
            (
                "a binary frame over",
                client_frame(true, BINARY, over.as_bytes()),
                1009,
            ),
            ("fragments adding up to one byte over", fragmented, 1009),
            (
                "a header claiming 2^40 bytes",
                frame_with_length(true, TEXT, b"", 1 << 40, true),
                1009,
            ),
            (
                "a 64-bit length with its top bit set",
                frame_with_length(true, TEXT, b"", 1 << 63, true),
                1009,
            ),
        ],
    )
    .await;
}

// ---- v2 REST: malformed input ------------------------------------------------------

/// A 4xx (never a 5xx) with a JSON `{"error": "<non-empty>"}`.
fn assert_refused(reply: &common::Reply, what: &str) {
    assert!(
        (400..500).contains(&reply.status),
        "{what}: status {} {:?}",
        reply.status,
        reply.body
    );
    assert!(
        reply.body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: {:?}",
        reply.body
    );
}

/// Chat ids in a path that name no chat the caller may see.
const ODD_CHAT_IDS: [&str; 14] = [
    "abc",
    "-1",
    "0",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "99999999999999999999999",
    "1e3",
    "0x10",
    "%00",
    "%FF",
    "%E2%82",
    "%EF%BC%91", // a fullwidth 1
    "1%20",
];

#[actix_web::test]
async fn the_v2_message_page_answers_absurd_queries_and_ids_with_4xx_json() {
    let app = hostile_app(&[]).await;
    let (alice, _, chat, others) = cast(&app).await;
    let mut queries: Vec<String> = [
        "before=-1",
        "after=-1",
        "before=x",
        "after=",
        "before=",
        "limit=",
        "after=1e3",
        "after=+1",
        "after=%201",
        "after=1%00",
        "after=%00",
        "after=0x1",
        "after=%D9%A1",
        "after=1.0",
        "after=9223372036854775808",
        "after=99999999999999999999999999",
        "before=1&after=1",
        "after=1&before=1",
        "before=0&after=0",
        "after=1&after=2",
        "limit=1&limit=1",
        "limit=0",
        "limit=201",
        "limit=-1",
        "limit=1.5",
        "limit=18446744073709551616",
        "limit=%FF",
        "after=%ZZ",
        "after=%",
        "after=%E2%82",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    queries.push(format!("after={}", "1".repeat(5_000)));
    queries.push(format!("limit={}", "9".repeat(5_000)));
    let mut asked = 0;
    for query in &queries {
        let reply = app.messages_page(&alice, chat, query).await;
        assert_eq!(reply.status, 400, "{query}: {:?}", reply.body);
        assert_refused(&reply, query);
        asked += 1;
    }
    // Ignored junk beside a valid query changes nothing.
    for query in [
        "junk=%00",
        "%=1",
        "x=1&&&y",
        "&&&",
        "a[]=1&after=0",
        &format!("{}=1", "k".repeat(4_000)),
    ] {
        let reply = app.messages_page(&alice, chat, query).await;
        assert_eq!(reply.status, 200, "{query}: {:?}", reply.body);
        assert_eq!(reply.body["messages"], json!([]), "{query}");
        asked += 1;
    }
    for id in ODD_CHAT_IDS {
        let reply = app
            .get(
                &format!("/api/chats/{id}/messages/?limit=1"),
                Some(&alice.token),
            )
            .await;
        assert_eq!(reply.status, 404, "{id}: {:?}", reply.body);
        assert_refused(&reply, id);
        // Authentication is checked first, then the query.
        let reply = app
            .get(&format!("/api/chats/{id}/messages/?limit=0"), None)
            .await;
        assert_eq!(reply.status, 401, "{id}");
        asked += 2;
    }
    let theirs = app.messages_page(&alice, others, "after=0").await;
    assert_eq!(theirs.status, 403, "{theirs:?}");
    let bad_query_first = app.messages_page(&alice, others, "limit=0").await;
    assert_eq!(bad_query_first.status, 400, "{bad_query_first:?}");
    eprintln!("{asked} page requests, none a 5xx");
    app.assert_no_server_panics();
}

/// Bodies that are not a JSON object, for any v2 POST route.
fn malformed_bodies() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("empty", Vec::new()),
        ("whitespace", b" \r\n ".to_vec()),
        ("null", b"null".to_vec()),
        ("a number", b"7".to_vec()),
        ("a string", b"\"hi\"".to_vec()),
        ("an array", b"[]".to_vec()),
        (
            "an array of the object",
            br#"[{"body":"hi","client_id":"c","up_to":1}]"#.to_vec(),
        ),
        ("truncated", br#"{"body":"hi","client_id":"#.to_vec()),
        (
            "trailing garbage",
            br#"{"body":"hi","client_id":"c"} x"#.to_vec(),
        ),
        ("two objects", br#"{"up_to":1}{"up_to":2}"#.to_vec()),
        ("single quotes", b"{'body':'hi'}".to_vec()),
        ("not UTF-8", b"\xff\xfe\xfd".to_vec()),
        (
            "a string that is not UTF-8",
            b"{\"body\":\"\xff\",\"client_id\":\"c\"}".to_vec(),
        ),
        ("a BOM", b"\xef\xbb\xbf{\"up_to\":1}".to_vec()),
        ("NUL", b"\0".to_vec()),
        (
            "a lone surrogate",
            br#"{"body":"\ud800","client_id":"c"}"#.to_vec(),
        ),
        ("deep arrays", nested_arrays(10_000).into_bytes()),
        ("deep objects", nested_objects(10_000).into_bytes()),
        (
            "a huge number",
            format!("1{}", "0".repeat(50_000)).into_bytes(),
        ),
        ("form data", b"body=hi&client_id=c&up_to=1".to_vec()),
    ]
}

#[actix_web::test]
async fn the_v2_post_routes_answer_malformed_bodies_with_4xx_json_and_store_nothing() {
    let app = hostile_app(&[]).await;
    let (alice, bob, chat, others) = cast(&app).await;
    let mut bob_socket = app.connect_v2(&bob).await;
    let send_path = format!("/api/chats/{chat}/messages/");
    let read_path = format!("/api/chats/{chat}/read/");
    let mut sent = 0;

    for path in [&send_path, &read_path] {
        for (what, body) in malformed_bodies() {
            for content_type in [Some("application/json"), None, Some("text/plain")] {
                let reply = app
                    .post_raw(path, Some(&alice.token), content_type, body.clone())
                    .await;
                assert_refused(&reply, &format!("{path} {what}"));
                sent += 1;
            }
        }
        let huge = format!(
            r#"{{"body":"{}","client_id":"c","up_to":1}}"#,
            "x".repeat(70_000)
        );
        let reply = app
            .post_raw(path, Some(&alice.token), Some("application/json"), huge)
            .await;
        assert_eq!(reply.status, 413, "{path}: {:?}", reply.body);
        assert_refused(&reply, "over the body limit");
    }

    // Each field of a send missing or of the wrong type, or invalid.
    let long = quoted(&"x".repeat(MAX_CHARS + 1));
    let mut bad_sends: Vec<(String, String, u16)> = Vec::new();
    for value in WRONG_VALUES
        .iter()
        .map(|v| (*v).to_owned())
        .chain([nested_arrays(100)])
    {
        // Strings that make a valid body or client_id are no junk here.
        if !value.starts_with('"') {
            bad_sends.push((value.clone(), quoted("c-1"), 400));
        }
        if !matches!(value.as_str(), "\"1\"" | "\"x\"") {
            bad_sends.push((quoted("hi"), value, 400));
        }
    }
    for client_id in ["", " ", "a b", "é", "\u{0}", "\u{7f}", &"c".repeat(65)] {
        bad_sends.push((quoted("hi"), quoted(client_id), 400));
    }
    for body in ["", "a\u{0}b"] {
        bad_sends.push((quoted(body), quoted("c-1"), 400));
    }
    bad_sends.push((long.clone(), quoted("c-1"), 400));
    for (body, client_id, status) in &bad_sends {
        let request = format!(r#"{{"body":{body},"client_id":{client_id}}}"#);
        let reply = app
            .post_raw(
                &send_path,
                Some(&alice.token),
                Some("application/json"),
                request.clone(),
            )
            .await;
        assert_eq!(reply.status, *status, "{request}: {:?}", reply.body);
        assert_refused(&reply, &request);
        sent += 1;
    }
    for request in [
        r#"{"body":"hi"}"#,
        r#"{"client_id":"c-1"}"#,
        "{}",
        r#"{"Body":"hi","Client_id":"c"}"#,
    ] {
        let reply = app
            .post_raw(
                &send_path,
                Some(&alice.token),
                Some("application/json"),
                request,
            )
            .await;
        assert_eq!(reply.status, 400, "{request}");
        assert_refused(&reply, request);
        sent += 1;
    }
    // The order of checks: shape, chat, participant, body rules.
    for id in ODD_CHAT_IDS {
        let path = format!("/api/chats/{id}/messages/");
        let reply = app
            .post_json(
                &path,
                Some(&alice.token),
                &json!({"body": "", "client_id": "c"}),
            )
            .await;
        assert_eq!(reply.status, 404, "{id}: {:?}", reply.body);
        let reply = app
            .post_json(
                &path,
                Some(&alice.token),
                &json!({"body": 5, "client_id": "c"}),
            )
            .await;
        assert_eq!(reply.status, 400, "{id}: {:?}", reply.body);
        let reply = app
            .post_json(&path, None, &json!({"body": "hi", "client_id": "c"}))
            .await;
        assert_eq!(reply.status, 401, "{id}: {:?}", reply.body);
        let path = format!("/api/chats/{id}/read/");
        let reply = app
            .post_json(&path, Some(&alice.token), &json!({"up_to": 1}))
            .await;
        assert_eq!(reply.status, 404, "{id}: {:?}", reply.body);
        sent += 4;
    }
    let theirs = app.post_message(&alice, others, "", "c-1").await;
    assert_eq!(theirs.status, 403, "{theirs:?}");
    let theirs = app.post_read(&alice, others, 1).await;
    assert_eq!(theirs.status, 403, "{theirs:?}");

    // up_to of every wrong kind.
    for value in WRONG_VALUES
        .iter()
        .map(|v| (*v).to_owned())
        .chain(["-9223372036854775808".to_owned()])
    {
        let request = format!(r#"{{"up_to":{value}}}"#);
        let reply = app
            .post_raw(
                &read_path,
                Some(&alice.token),
                Some("application/json"),
                request.clone(),
            )
            .await;
        assert_eq!(reply.status, 400, "{request}: {:?}", reply.body);
        assert_refused(&reply, &request);
        sent += 1;
    }
    // The largest cursor there is: clamped to the head, not an overflow.
    let read = app.post_read(&alice, chat, i64::MAX).await;
    assert_eq!(read.status, 200, "{read:?}");
    assert_eq!(read.body["read_up_to"], 0);

    // Nothing was stored, nothing announced; a valid send still works.
    let page = app.messages_page(&alice, chat, "").await;
    assert_eq!(page.body["head_seq"], 0, "{page:?}");
    let stored = app
        .post_message(&alice, chat, "after the junk", "fine-1")
        .await;
    assert_eq!(stored.status, 201, "{stored:?}");
    let to_bob = bob_socket.expect("message").await;
    assert_eq!(to_bob["message"]["id"], stored.body["id"]);
    eprintln!("{sent} malformed v2 POSTs, none a 5xx");
    app.assert_no_server_panics();
}
