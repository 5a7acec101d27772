//! The seed protocol's socket frames (`/ws/chat/<id>/`): what a client may
//! send, and the frames the server writes, exactly as the original
//! application's documentation spells them.

use std::fmt::Write as _;

use bytestring::ByteString;
use chat_domain::chat::DirectMessage;
use chrono::{DateTime, Datelike as _, Timelike as _, Utc};
use serde::Serialize;

/// The documented error text; a more specific one goes in `detail`.
pub const GENERIC_ERROR: &str = "An error occurred while processing your message";

/// `created` in WebSocket frames, as in the seed: `YYYY-MM-DD HH:MM:SS`, UTC.
pub const WS_TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// `time` as [`WS_TIME_FORMAT`] says, written field by field: chrono's
/// `format` parses its pattern on every call, and this runs for every frame
/// of every history replay (it was a tenth of a replay's cost).
pub fn ws_timestamp(time: &DateTime<Utc>) -> String {
    let mut text = String::with_capacity(19);
    // Writing to a String cannot fail.
    let _ = write!(
        text,
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        time.year(),
        time.month(),
        time.day(),
        time.hour(),
        time.minute(),
        time.second()
    );
    text
}

#[derive(Serialize)]
struct MessageFrame<'a> {
    message: MessageDto<'a>,
}

#[derive(Serialize)]
struct MessageDto<'a> {
    id: i64,
    sender: &'a str,
    body: &'a str,
    created: String,
    is_read: bool,
}

#[derive(Serialize)]
struct ErrorFrame<'a> {
    error: &'static str,
    detail: &'a str,
}

/// `{"message": {"id", "sender", "body", "created", "is_read"}}`; whether
/// it is read comes from the recipient's cursor
/// ([`ReadCursors::is_read`](chat_domain::chat::ReadCursors::is_read)).
pub fn message_frame(message: &DirectMessage, is_read: bool) -> ByteString {
    let frame = MessageFrame {
        message: MessageDto {
            id: message.id.get(),
            sender: message.sender.username.as_ref(),
            body: &message.body,
            created: ws_timestamp(&message.created),
            is_read,
        },
    };
    // Sized for the whole frame up front: the fixed part is under 100 bytes,
    // and escaping rarely grows a body much.
    let capacity = 100 + message.body.len() + message.sender.username.as_ref().len();
    to_frame(&frame, capacity)
}

/// How a [`message_frame`] ends, by its `is_read` (the last field).
const UNREAD_END: &str = "\"is_read\":false}}";
const READ_END: &str = "\"is_read\":true}}";

/// A [`message_frame`] with its `is_read` set: the same frame when it
/// already says so (a reference, nothing copied), else a copy with its last
/// field changed. For frames kept from live delivery (`is_read: false`) and
/// replayed once their reader has read them.
pub fn with_is_read(frame: &ByteString, is_read: bool) -> ByteString {
    let (from, to) = if is_read {
        (UNREAD_END, READ_END)
    } else {
        (READ_END, UNREAD_END)
    };
    match frame.strip_suffix(from) {
        Some(head) => {
            let mut text = String::with_capacity(head.len() + to.len());
            text.push_str(head);
            text.push_str(to);
            text.into()
        }
        None => frame.clone(),
    }
}

/// `{"error": "An error occurred while processing your message", "detail": ...}`
pub fn error_frame(detail: &str) -> ByteString {
    let capacity = 80 + detail.len();
    to_frame(
        &ErrorFrame {
            error: GENERIC_ERROR,
            detail,
        },
        capacity,
    )
}

fn to_frame(value: &impl Serialize, capacity: usize) -> ByteString {
    let mut json = Vec::with_capacity(capacity);
    // These structs hold only strings, integers and booleans, which always
    // serialise; the fallback keeps the connection alive regardless.
    match serde_json::to_writer(&mut json, value).map(|()| String::from_utf8(json)) {
        Ok(Ok(text)) => text.into(),
        _ => format!("{{\"error\":\"{GENERIC_ERROR}\"}}").into(),
    }
}

/// Why an incoming text frame is not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame is not valid JSON")]
    NotJson,
    #[error("frame must be a JSON object like {{\"body\": \"...\"}}")]
    NotAnObject,
    #[error("frame has no \"body\" field")]
    MissingBody,
    #[error("\"body\" must be a string")]
    BodyNotAString,
}

/// The `body` of a `{"body": "..."}` frame. Other fields are ignored, as the
/// seed's server ignored them. Length and emptiness are domain rules,
/// checked by the message service.
pub fn parse_send_frame(text: &str) -> Result<String, FrameError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|_| FrameError::NotJson)?;
    let serde_json::Value::Object(mut fields) = value else {
        return Err(FrameError::NotAnObject);
    };
    match fields.remove("body") {
        Some(serde_json::Value::String(body)) => Ok(body),
        Some(_) => Err(FrameError::BodyNotAString),
        None => Err(FrameError::MissingBody),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_timestamp_is_the_documented_format() {
        for text in [
            "2025-05-02T10:45:30Z",
            "1999-12-31T23:59:59.999Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "2024-02-29T07:08:09.5Z",
        ] {
            let time = DateTime::parse_from_rfc3339(text)
                .unwrap()
                .with_timezone(&Utc);
            assert_eq!(ws_timestamp(&time), time.format(WS_TIME_FORMAT).to_string());
        }
    }
    use chat_domain::chat::{ChatId, MessageId, Seq};
    use chat_domain::user::{User, UserId, Username};
    use chrono::{TimeZone, Utc};
    use serde_json::{json, Value};

    #[test]
    fn a_message_frame_has_the_documented_shape() {
        let message = DirectMessage {
            id: MessageId::new(123),
            chat_id: ChatId::new(1),
            sender: User {
                id: UserId::new(1),
                username: Username::parse("user1").unwrap(),
            },
            body: "Hello, how are you?".into(),
            created: Utc.with_ymd_and_hms(2025, 5, 2, 10, 45, 30).unwrap(),
            seq: Seq::new(7).unwrap(),
            client_id: None,
        };
        let frame: Value = serde_json::from_str(&message_frame(&message, false)).unwrap();
        assert_eq!(
            frame,
            json!({"message": {"id": 123, "sender": "user1", "body": "Hello, how are you?",
                               "created": "2025-05-02 10:45:30", "is_read": false}})
        );
    }

    #[test]
    fn a_kept_frame_is_the_frame_of_either_read_state() {
        let message = DirectMessage {
            id: MessageId::new(9),
            chat_id: ChatId::new(1),
            sender: User {
                id: UserId::new(1),
                username: Username::parse("user1").unwrap(),
            },
            // A body that ends like a frame changes nothing: it is quoted.
            body: "\"is_read\":false}}".into(),
            created: Utc.with_ymd_and_hms(2025, 5, 2, 10, 45, 30).unwrap(),
            seq: Seq::new(9).unwrap(),
            client_id: None,
        };
        let (unread, read) = (
            message_frame(&message, false),
            message_frame(&message, true),
        );
        assert_eq!(with_is_read(&unread, true), read);
        assert_eq!(with_is_read(&read, false), unread);
        assert_eq!(with_is_read(&unread, false), unread);
        assert_eq!(with_is_read(&read, true), read);
    }

    #[test]
    fn an_error_frame_carries_the_documented_text() {
        let frame: Value = serde_json::from_str(&error_frame("why")).unwrap();
        assert_eq!(frame["error"], GENERIC_ERROR);
        assert_eq!(frame["detail"], "why");
    }

    #[test]
    fn the_body_is_taken_verbatim() {
        assert_eq!(
            parse_send_frame(r#"{"body": "  hi \u0000 👋 "}"#),
            Ok("  hi \u{0} 👋 ".into())
        );
        assert_eq!(
            parse_send_frame(r#"{"body": "x", "extra": [1]}"#),
            Ok("x".into())
        );
        // Emptiness is the domain's call, not the parser's.
        assert_eq!(parse_send_frame(r#"{"body": ""}"#), Ok(String::new()));
    }

    #[test]
    fn malformed_frames_are_told_apart() {
        assert_eq!(parse_send_frame("hello"), Err(FrameError::NotJson));
        assert_eq!(parse_send_frame(""), Err(FrameError::NotJson));
        assert_eq!(
            parse_send_frame(r#"{"body": "x""#),
            Err(FrameError::NotJson)
        );
        assert_eq!(
            parse_send_frame(r#"["body"]"#),
            Err(FrameError::NotAnObject)
        );
        assert_eq!(parse_send_frame(r#""body""#), Err(FrameError::NotAnObject));
        assert_eq!(parse_send_frame("null"), Err(FrameError::NotAnObject));
        assert_eq!(
            parse_send_frame(r#"{"text": "x"}"#),
            Err(FrameError::MissingBody)
        );
        for bad in ["1", "null", "true", "[\"x\"]", "{\"a\": 1}"] {
            assert_eq!(
                parse_send_frame(&format!("{{\"body\": {bad}}}")),
                Err(FrameError::BodyNotAString)
            );
        }
    }

    #[test]
    fn deeply_nested_input_is_an_error_not_a_crash() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(parse_send_frame(&deep), Err(FrameError::NotJson));
    }
}
