#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking
//! `docs/protocol.md` stays true: every JSON example in it parses; every
//! client frame is accepted by the server's parser; every server frame and
//! object has exactly the fields (and kinds of value) the server writes;
//! and every frame type of both directions has an example.

use std::collections::BTreeSet;

use chat_api::wire::seed;
use chat_api::wire::v2::{self, parse_client_frame, ChatState, ErrorCode, MessageObject};
use chat_domain::chat::{
    ChatId, ChatSummary, ClientId, CursorKind, Cursors, DirectChat, DirectMessage, MessageId,
    Participants, Seq,
};
use chat_domain::user::{User, UserId, Username};
use chrono::Utc;
use serde_json::{json, Value};

/// The examples: each fenced block whose info string starts with `json`,
/// with the words after it (`v2-server`, `v2-object chat`, ...).
fn examples() -> Vec<(Vec<String>, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/protocol.md");
    let text = std::fs::read_to_string(path).expect("docs/protocol.md");
    let mut examples = Vec::new();
    let mut current: Option<(Vec<String>, String)> = None;
    for line in text.lines() {
        match (&mut current, line.strip_prefix("```")) {
            (None, Some(info)) if info.starts_with("json") => {
                let tags = info.split_whitespace().skip(1).map(str::to_owned).collect();
                current = Some((tags, String::new()));
            }
            (Some(_), Some("")) => examples.extend(current.take()),
            (Some((_, body)), _) => {
                body.push_str(line);
                body.push('\n');
            }
            _ => {}
        }
    }
    assert!(current.is_none(), "an unterminated code block");
    examples
}

fn user(id: i64, name: &str) -> User {
    User {
        id: UserId::new(id),
        username: Username::parse(name).unwrap(),
    }
}

fn message() -> DirectMessage {
    DirectMessage {
        id: MessageId::new(1),
        chat_id: ChatId::new(1),
        seq: Seq::new(1).unwrap(),
        sender: user(1, "alice"),
        body: "x".into(),
        created: Utc::now(),
        client_id: Some(ClientId::parse("c").unwrap()),
    }
}

fn summary() -> ChatSummary {
    ChatSummary {
        viewer: UserId::new(1),
        chat: DirectChat {
            id: ChatId::new(1),
            participants: Participants::new(user(1, "alice"), user(2, "bob")).unwrap(),
            created: Utc::now(),
        },
        last_message: Some(message()),
        head_seq: Seq::new(1).unwrap(),
        mine: Cursors::default(),
        theirs: Cursors::default(),
        unread_count: 0,
        other_last_seen: Some(Utc::now()),
    }
}

fn parsed(frame: &str) -> Value {
    serde_json::from_str(frame).unwrap()
}

/// A frame of each type the server writes, every optional field present.
fn server_frame(kind: &str) -> Value {
    let message = message();
    let summary = summary();
    let state = ChatState::new(&summary, false).unwrap();
    let reference = json!("r");
    let frame = match kind {
        "hello" => v2::hello_frame(&user(1, "alice"), &[state], 30_000, 4096, 65536),
        "message" => v2::message_frame(&message),
        "ack" => v2::ack_frame(&message, false),
        "chat" => v2::chat_frame(&state),
        "read" => v2::cursor_frame(CursorKind::Read, ChatId::new(1), UserId::new(1), Seq::ZERO),
        "delivered" => v2::cursor_frame(
            CursorKind::Delivered,
            ChatId::new(1),
            UserId::new(1),
            Seq::ZERO,
        ),
        "typing" => v2::typing_frame(ChatId::new(1), UserId::new(1), true),
        "presence" => v2::presence_frame(UserId::new(1), false, Some(&Utc::now())),
        "history" => v2::history_frame(Some(&reference), ChatId::new(1), &[message], true),
        "error" => v2::error_frame(ErrorCode::Conflict, "m", Some("c"), Some(&reference)),
        "pong" => v2::pong_frame(Some(&reference)),
        other => panic!("the docs show a server frame of unknown type {other:?}"),
    };
    parsed(&frame)
}

const SERVER_TYPES: [&str; 11] = [
    "hello",
    "message",
    "ack",
    "chat",
    "read",
    "delivered",
    "typing",
    "presence",
    "history",
    "error",
    "pong",
];
const CLIENT_TYPES: [&str; 6] = ["send", "read", "delivered", "typing", "history", "ping"];

/// `documented` has the fields of `actual`, recursively, with values of
/// the same kind; a `null` matches anything (a nullable field shown empty,
/// or shown filled where the reference happens to be empty).
fn assert_same_shape(documented: &Value, actual: &Value, at: &str) {
    match (documented, actual) {
        (Value::Null, _) | (_, Value::Null) => {}
        // A `ref` is echoed as given: a string or a number.
        (Value::String(_) | Value::Number(_), Value::String(_) | Value::Number(_))
            if at.ends_with(".ref") => {}
        (Value::Object(doc), Value::Object(real)) => {
            let doc_keys: BTreeSet<_> = doc.keys().collect();
            let real_keys: BTreeSet<_> = real.keys().collect();
            assert_eq!(doc_keys, real_keys, "fields at {at}");
            for key in doc.keys() {
                assert_same_shape(&doc[key], &real[key], &format!("{at}.{key}"));
            }
        }
        (Value::Array(doc), Value::Array(real)) => {
            if let (Some(doc), Some(real)) = (doc.first(), real.first()) {
                assert_same_shape(doc, real, &format!("{at}[0]"));
            }
        }
        (Value::String(_), Value::String(_))
        | (Value::Number(_), Value::Number(_))
        | (Value::Bool(_), Value::Bool(_)) => {}
        (doc, real) => panic!("at {at}: documented {doc}, the server writes {real}"),
    }
}

#[test]
fn every_example_is_json() {
    let examples = examples();
    assert!(
        examples.len() > 20,
        "only {} examples found",
        examples.len()
    );
    for (tags, body) in &examples {
        serde_json::from_str::<Value>(body)
            .unwrap_or_else(|e| panic!("{tags:?} example is not JSON ({e}):\n{body}"));
    }
}

#[test]
fn every_documented_client_frame_is_accepted_and_every_type_is_shown() {
    let mut shown = BTreeSet::new();
    for (tags, body) in examples() {
        match tags.first().map(String::as_str) {
            Some("v2-client") => {
                let frame = parse_client_frame(&body);
                assert!(frame.frame.is_ok(), "refused: {body} ({:?})", frame.frame);
                shown.insert(parsed(&body)["type"].as_str().unwrap().to_owned());
            }
            Some("seed-client") => {
                assert!(seed::parse_send_frame(&body).is_ok(), "refused: {body}");
            }
            _ => {}
        }
    }
    let expected: BTreeSet<String> = CLIENT_TYPES.iter().map(|t| (*t).to_owned()).collect();
    assert_eq!(shown, expected);
}

#[test]
fn every_documented_server_frame_has_the_fields_the_server_writes() {
    let mut shown = BTreeSet::new();
    for (tags, body) in examples() {
        let documented = parsed(&body);
        match tags.first().map(String::as_str) {
            Some("v2-server") => {
                let kind = documented["type"].as_str().unwrap().to_owned();
                assert_same_shape(&documented, &server_frame(&kind), &kind);
                shown.insert(kind);
            }
            Some("v2-object") => {
                let message = message();
                let summary = summary();
                let actual = match tags.get(1).map(String::as_str) {
                    Some("message") => serde_json::to_value(MessageObject::from(&message)),
                    Some("chat") => serde_json::to_value(ChatState::new(&summary, false).unwrap()),
                    other => panic!("unknown object {other:?}"),
                }
                .unwrap();
                assert_same_shape(&documented, &actual, &tags.join(" "));
            }
            Some("seed-server") => {
                let actual = if documented.get("message").is_some() {
                    parsed(&seed::message_frame(&message(), false))
                } else {
                    parsed(&seed::error_frame("detail"))
                };
                assert_same_shape(&documented, &actual, "seed");
            }
            _ => {}
        }
    }
    let expected: BTreeSet<String> = SERVER_TYPES.iter().map(|t| (*t).to_owned()).collect();
    assert_eq!(shown, expected);
}

#[test]
fn every_error_code_is_in_the_table() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/protocol.md");
    let text = std::fs::read_to_string(path).unwrap();
    for code in [
        ErrorCode::BadFrame,
        ErrorCode::UnknownChat,
        ErrorCode::NotParticipant,
        ErrorCode::Empty,
        ErrorCode::TooLong,
        ErrorCode::RateLimited,
        ErrorCode::Conflict,
        ErrorCode::Unavailable,
    ] {
        assert!(
            text.contains(&format!("| `{}` |", code.as_str())),
            "{} is not in the table",
            code.as_str()
        );
    }
}
