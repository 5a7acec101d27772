//! Arbitrary bytes as a `/ws/v2/` text frame: what `ws/v2/session.rs` does
//! with one before it looks anything up. `parse_client_frame` must never
//! panic; a frame it accepts must say what the JSON says (every field read
//! back equals the JSON's, defaults where the JSON has none) and re-encode
//! to a frame that parses to the same thing; the `ref` and `client_id` it
//! keeps for the answer must be the JSON's; and every error frame, built
//! from any message, client_id and ref, must be a JSON object holding
//! exactly those. An accepted `send` whose body passes the message rules
//! must come back byte for byte in the `message` and `ack` frames.
#![no_main]

use chat_api::wire::v2::{
    ack_frame, error_frame, message_frame, parse_client_frame, ClientFrame, ErrorCode,
};
use chat_domain::chat::{
    ChatId, DirectMessage, MessageBody, MessageId, MessageLimit, PageAnchor, PageLimit, Seq,
};
use chat_domain::user::{User, UserId, Username};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

const CODES: [ErrorCode; 8] = [
    ErrorCode::BadFrame,
    ErrorCode::UnknownChat,
    ErrorCode::NotParticipant,
    ErrorCode::Empty,
    ErrorCode::TooLong,
    ErrorCode::RateLimited,
    ErrorCode::Conflict,
    ErrorCode::Unavailable,
];

/// Equal JSON values, floats compared as numbers: serde_json's default
/// float parsing is best-effort (no `float_roundtrip`), so a float written
/// and read again may come back one unit in the last place off.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            x == y || (x - y).abs() <= f64::EPSILON * 4.0 * x.abs().max(y.abs())
        }
        _ => a == b,
    }
}

/// A field the spec lets a client leave out or send as `null`.
fn absent(fields: &Map<String, Value>, name: &str) -> bool {
    matches!(fields.get(name), None | Some(Value::Null))
}

fn seq_field(fields: &Map<String, Value>, name: &str) -> Option<i64> {
    fields.get(name).and_then(Value::as_i64)
}

/// The frame written back as JSON, the way a client would send it.
fn encode(frame: &ClientFrame, reference: Option<&Value>) -> Value {
    let mut value = match frame {
        ClientFrame::Send {
            chat_id,
            client_id,
            body,
        } => {
            json!({"type": "send", "chat_id": chat_id.get(), "client_id": client_id.as_ref(), "body": body})
        }
        ClientFrame::Read { chat_id, up_to } => {
            json!({"type": "read", "chat_id": chat_id.get(), "up_to": up_to.get()})
        }
        ClientFrame::Delivered { chat_id, up_to } => {
            json!({"type": "delivered", "chat_id": chat_id.get(), "up_to": up_to.get()})
        }
        ClientFrame::Typing { chat_id, active } => {
            json!({"type": "typing", "chat_id": chat_id.get(), "active": active})
        }
        ClientFrame::History {
            chat_id,
            anchor,
            limit,
        } => {
            let mut history =
                json!({"type": "history", "chat_id": chat_id.get(), "limit": limit.get()});
            match anchor {
                PageAnchor::Newest => {}
                PageAnchor::Before(seq) => history["before"] = json!(seq.get()),
                PageAnchor::After(seq) => history["after"] = json!(seq.get()),
            }
            history
        }
        ClientFrame::Ping => json!({"type": "ping"}),
    };
    if let Some(reference) = reference {
        value["ref"] = reference.clone();
    }
    value
}

/// Every field of an accepted frame is what the JSON says.
fn check_fields(frame: &ClientFrame, fields: &Map<String, Value>) {
    let chat = |chat_id: &ChatId| {
        assert_eq!(
            fields.get("chat_id").and_then(Value::as_i64),
            Some(chat_id.get())
        );
    };
    let kind = fields.get("type").and_then(Value::as_str);
    match frame {
        ClientFrame::Send {
            chat_id,
            client_id,
            body,
        } => {
            assert_eq!(kind, Some("send"));
            chat(chat_id);
            assert_eq!(
                fields.get("client_id").and_then(Value::as_str),
                Some(client_id.as_ref())
            );
            assert_eq!(
                fields.get("body").and_then(Value::as_str),
                Some(body.as_str())
            );
        }
        ClientFrame::Read { chat_id, up_to } | ClientFrame::Delivered { chat_id, up_to } => {
            let expected = if matches!(frame, ClientFrame::Read { .. }) {
                "read"
            } else {
                "delivered"
            };
            assert_eq!(kind, Some(expected));
            chat(chat_id);
            assert!(up_to.get() >= 0);
            assert_eq!(seq_field(fields, "up_to"), Some(up_to.get()));
        }
        ClientFrame::Typing { chat_id, active } => {
            assert_eq!(kind, Some("typing"));
            chat(chat_id);
            assert_eq!(fields.get("active").and_then(Value::as_bool), Some(*active));
        }
        ClientFrame::History {
            chat_id,
            anchor,
            limit,
        } => {
            assert_eq!(kind, Some("history"));
            chat(chat_id);
            match anchor {
                PageAnchor::Newest => {
                    assert!(absent(fields, "before") && absent(fields, "after"));
                }
                PageAnchor::Before(seq) => {
                    assert!(seq.get() >= 0 && absent(fields, "after"));
                    assert_eq!(seq_field(fields, "before"), Some(seq.get()));
                }
                PageAnchor::After(seq) => {
                    assert!(seq.get() >= 0 && absent(fields, "before"));
                    assert_eq!(seq_field(fields, "after"), Some(seq.get()));
                }
            }
            assert!((1..=PageLimit::MAX.get()).contains(&limit.get()));
            if absent(fields, "limit") {
                assert_eq!(*limit, PageLimit::DEFAULT);
            } else {
                let sent = fields.get("limit").and_then(Value::as_u64);
                assert_eq!(sent, u64::try_from(limit.get()).ok());
            }
        }
        ClientFrame::Ping => assert_eq!(kind, Some("ping")),
    }
}

/// An error frame is a JSON object holding exactly what it was built from.
fn check_error_frame(
    code: ErrorCode,
    message: &str,
    client_id: Option<&str>,
    reference: Option<&Value>,
) {
    let frame: Value = serde_json::from_str(&error_frame(code, message, client_id, reference))
        .expect("error frame is JSON");
    let fields = frame.as_object().expect("error frame is an object");
    assert_eq!(fields.get("type"), Some(&json!("error")));
    assert_eq!(fields.get("code"), Some(&json!(code.as_str())));
    assert_eq!(fields.get("message").and_then(Value::as_str), Some(message));
    assert_eq!(fields.get("client_id").and_then(Value::as_str), client_id);
    match (fields.get("ref"), reference) {
        (Some(echoed), Some(reference)) => {
            assert!(same(echoed, reference), "{echoed} vs {reference}")
        }
        (None, None) => {}
        other => panic!("ref {other:?}"),
    }
    let expected = 3 + usize::from(client_id.is_some()) + usize::from(reference.is_some());
    assert_eq!(fields.len(), expected);
}

/// An accepted send whose body is a valid message survives the message and
/// ack frames byte for byte.
fn check_message_frames(frame: &ClientFrame) {
    let ClientFrame::Send {
        chat_id,
        client_id,
        body,
    } = frame
    else {
        return;
    };
    let Ok(valid) = MessageBody::parse(body, MessageLimit::DEFAULT) else {
        return;
    };
    let message = DirectMessage {
        id: MessageId::new(1),
        chat_id: *chat_id,
        seq: Seq::new(1).expect("1 is a seq"),
        sender: User {
            id: UserId::new(1),
            username: Username::parse("fuzz").expect("a valid username"),
        },
        body: valid.as_ref().to_owned(),
        created: chrono::DateTime::UNIX_EPOCH,
        client_id: Some(client_id.clone()),
    };
    let live: Value =
        serde_json::from_str(&message_frame(&message)).expect("message frame is JSON");
    let ack: Value = serde_json::from_str(&ack_frame(&message, true)).expect("ack frame is JSON");
    for (frame, kind) in [(&live, "message"), (&ack, "ack")] {
        assert_eq!(frame["type"], kind);
        assert_eq!(frame["message"]["body"].as_str(), Some(body.as_str()));
        assert_eq!(
            frame["message"]["client_id"].as_str(),
            Some(client_id.as_ref())
        );
        assert_eq!(frame["message"]["chat_id"].as_i64(), Some(chat_id.get()));
    }
    assert_eq!(ack["client_id"].as_str(), Some(client_id.as_ref()));
}

fuzz_target!(|data: &[u8]| {
    // actix-ws hands the session text frames only as valid UTF-8.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = parse_client_frame(text);
    let json: Option<Value> = serde_json::from_str(text).ok();
    let fields = json.as_ref().and_then(Value::as_object);

    // What the answer echoes is the frame's own.
    match (&parsed.reference, fields) {
        (Some(reference), Some(fields)) => {
            assert_eq!(fields.get("ref"), Some(reference));
            match reference {
                Value::String(r) => assert!(r.chars().count() <= 64),
                Value::Number(_) => {}
                other => panic!("kept a ref that is neither string nor number: {other}"),
            }
        }
        (Some(reference), None) => panic!("a ref {reference} from a frame that is no object"),
        (None, Some(fields)) if parsed.frame.is_ok() => assert!(absent(fields, "ref")),
        (None, _) => {}
    }
    let json_client_id = fields
        .and_then(|f| f.get("client_id"))
        .and_then(Value::as_str);
    assert_eq!(parsed.client_id.as_deref(), json_client_id);

    match &parsed.frame {
        Ok(frame) => {
            let fields = fields.expect("an accepted frame is a JSON object");
            check_fields(frame, fields);
            let again = parse_client_frame(&encode(frame, parsed.reference.as_ref()).to_string());
            assert_eq!(again.frame.as_ref(), Ok(frame), "re-encoded: {text}");
            match (&again.reference, &parsed.reference) {
                (Some(a), Some(b)) => assert!(same(a, b), "{a} vs {b}"),
                (None, None) => {}
                other => panic!("ref after re-encoding {other:?}"),
            }
            check_message_frames(frame);
        }
        Err(bad) => {
            assert!(!bad.0.is_empty(), "a bad frame says why");
            check_error_frame(
                ErrorCode::BadFrame,
                &bad.0,
                parsed.client_id.as_deref(),
                parsed.reference.as_ref(),
            );
        }
    }

    // Error frames from anything at all.
    let reference = Value::String(text.to_owned());
    for code in CODES {
        check_error_frame(code, text, Some(text), Some(&reference));
        check_error_frame(code, text, None, json.as_ref().filter(|v| v.is_number()));
    }
});
