//! Protocol v2's objects and server frames: the message and chat-state
//! objects (shared by the v2 socket and the v2 REST routes) and every frame
//! the server writes on `/ws/v2/`. Each frame is built once, into a buffer
//! sized up front, and shared by every socket it goes to.

use std::fmt::Write as _;

use bytestring::ByteString;
use chat_domain::chat::{ChatId, ChatSummary, CursorKind, DirectMessage, Seq};
use chat_domain::user::{User, UserId};
use chrono::{DateTime, Datelike as _, Timelike as _, Utc};
use serde::Serialize;
use serde_json::Value;

/// `created` and `last_seen` in v2: RFC 3339, UTC, milliseconds, `Z`
/// (`2026-12-01T10:45:30.123Z`), written field by field: this runs for
/// every message of every page and every live frame.
pub fn v2_timestamp(time: &DateTime<Utc>) -> String {
    let mut text = String::with_capacity(24);
    // Writing to a String cannot fail.
    let _ = write!(
        text,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        time.year(),
        time.month(),
        time.day(),
        time.hour(),
        time.minute(),
        time.second(),
        time.timestamp_subsec_millis().min(999)
    );
    text
}

/// A stored message as protocol v2 sends it (no `is_read`: read state is in
/// the cursors).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Message)]
pub struct MessageObject<'a> {
    pub id: i64,
    pub chat_id: i64,
    /// The message's place in its chat: 1, 2, 3, ... with no gaps.
    #[schema(minimum = 1)]
    pub seq: i64,
    pub sender_id: i64,
    /// The sender's username.
    pub sender: &'a str,
    pub body: &'a str,
    /// RFC 3339, UTC, milliseconds, `Z` suffix.
    #[schema(format = DateTime, example = "2025-05-01T12:00:00.123Z")]
    pub created: String,
    /// The sender's retry key, `null` for messages sent without one.
    #[schema(required = true)]
    pub client_id: Option<&'a str>,
}

impl<'a> From<&'a DirectMessage> for MessageObject<'a> {
    fn from(message: &'a DirectMessage) -> Self {
        Self {
            id: message.id.get(),
            chat_id: message.chat_id.get(),
            seq: message.seq.get(),
            sender_id: message.sender.id.get(),
            sender: message.sender.username.as_ref(),
            body: &message.body,
            created: v2_timestamp(&message.created),
            client_id: message.client_id.as_ref().map(AsRef::as_ref),
        }
    }
}

/// `{"id", "username", "online", "last_seen"}`: `last_seen` is null while
/// the user is online (the presence grace period included).
#[derive(Debug, Serialize)]
pub struct PresentUser<'a> {
    pub id: i64,
    pub username: &'a str,
    pub online: bool,
    pub last_seen: Option<String>,
}

/// A chat as one participant sees it, in `hello` and `chat` frames.
#[derive(Debug, Serialize)]
pub struct ChatState<'a> {
    pub id: i64,
    pub created: String,
    pub other_user: PresentUser<'a>,
    pub head_seq: i64,
    pub last_message: Option<MessageObject<'a>>,
    pub read_up_to: i64,
    pub other_read_up_to: i64,
    pub delivered_up_to: i64,
    pub other_delivered_up_to: i64,
    pub unread_count: u64,
}

impl<'a> ChatState<'a> {
    /// `other_online` is whether the other participant has a socket open
    /// now; `None` when the summary names no other participant (a bug the
    /// caller reports).
    pub fn new(summary: &'a ChatSummary, other_online: bool) -> Option<Self> {
        let other = summary.other_user()?;
        Some(Self {
            id: summary.chat.id.get(),
            created: v2_timestamp(&summary.chat.created),
            other_user: PresentUser {
                id: other.id.get(),
                username: other.username.as_ref(),
                online: other_online,
                last_seen: if other_online {
                    None
                } else {
                    summary.other_last_seen.as_ref().map(v2_timestamp)
                },
            },
            head_seq: summary.head_seq.get(),
            last_message: summary.last_message.as_ref().map(MessageObject::from),
            read_up_to: summary.mine.read_up_to.get(),
            other_read_up_to: summary.theirs.read_up_to.get(),
            delivered_up_to: summary.mine.delivered_up_to.get(),
            other_delivered_up_to: summary.theirs.delivered_up_to.get(),
            unread_count: summary.unread_count,
        })
    }
}

/// Why a client frame was not served: the `code` of an `error` frame, in
/// the order they are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Not JSON, not an object, binary, no or unknown `type`, a missing
    /// field or one of the wrong type, an invalid `client_id`, a `limit`
    /// or cursor out of range.
    BadFrame,
    UnknownChat,
    NotParticipant,
    Empty,
    TooLong,
    RateLimited,
    /// A `client_id` reused with another body.
    Conflict,
    /// The database is down: nothing was stored, try again.
    Unavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadFrame => "bad_frame",
            Self::UnknownChat => "unknown_chat",
            Self::NotParticipant => "not_participant",
            Self::Empty => "empty",
            Self::TooLong => "too_long",
            Self::RateLimited => "rate_limited",
            Self::Conflict => "conflict",
            Self::Unavailable => "unavailable",
        }
    }
}

fn to_frame(value: &impl Serialize, capacity: usize) -> ByteString {
    let mut json = Vec::with_capacity(capacity);
    // Strings, integers, booleans and JSON values always serialise; the
    // fallback keeps the connection alive regardless.
    match serde_json::to_writer(&mut json, value).map(|()| String::from_utf8(json)) {
        Ok(Ok(text)) => text.into(),
        _ => r#"{"type":"error","code":"unavailable","message":"could not encode a frame"}"#.into(),
    }
}

/// Room for a message object around its body.
fn message_capacity(message: &DirectMessage) -> usize {
    200 + message.body.len() + message.sender.username.as_ref().len()
}

#[derive(Serialize)]
struct Limits {
    max_message_chars: usize,
    max_frame_bytes: usize,
}

#[derive(Serialize)]
struct UserObject<'a> {
    id: i64,
    username: &'a str,
}

/// `{"type": "hello", "user", "chats", "heartbeat_ms", "limits"}`
pub fn hello_frame(
    user: &User,
    chats: &[ChatState<'_>],
    heartbeat_ms: u64,
    max_message_chars: usize,
    max_frame_bytes: usize,
) -> ByteString {
    #[derive(Serialize)]
    struct Hello<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        user: UserObject<'a>,
        chats: &'a [ChatState<'a>],
        heartbeat_ms: u64,
        limits: Limits,
    }
    to_frame(
        &Hello {
            kind: "hello",
            user: UserObject {
                id: user.id.get(),
                username: user.username.as_ref(),
            },
            chats,
            heartbeat_ms,
            limits: Limits {
                max_message_chars,
                max_frame_bytes,
            },
        },
        300 + chats.len() * 500,
    )
}

#[derive(Serialize)]
struct MessageFields<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: MessageObject<'a>,
}

/// `{"type": "message", "message"}`: to every socket of both participants
/// but the one that sent it.
pub fn message_frame(message: &DirectMessage) -> ByteString {
    to_frame(
        &MessageFields {
            kind: "message",
            message: message.into(),
        },
        message_capacity(message),
    )
}

/// `{"type": "ack", "client_id", "duplicate", "message"}`: to the socket
/// that sent it, after the commit.
pub fn ack_frame(message: &DirectMessage, duplicate: bool) -> ByteString {
    #[derive(Serialize)]
    struct Ack<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        client_id: Option<&'a str>,
        duplicate: bool,
        message: MessageObject<'a>,
    }
    to_frame(
        &Ack {
            kind: "ack",
            client_id: message.client_id.as_ref().map(AsRef::as_ref),
            duplicate,
            message: message.into(),
        },
        message_capacity(message) + 100,
    )
}

/// A message's v2 object, serialised once, from which the `message` frame
/// (for every other socket) and the `ack` (for the sending one) are both
/// made without serialising the message again.
pub struct EncodedMessage {
    object: String,
    client_id: Option<String>,
}

impl EncodedMessage {
    pub fn new(message: &DirectMessage) -> Self {
        let mut object = Vec::with_capacity(message_capacity(message));
        // A MessageObject holds only strings and integers, which always
        // serialise.
        let _ = serde_json::to_writer(&mut object, &MessageObject::from(message));
        Self {
            object: String::from_utf8(object).unwrap_or_default(),
            // Printable ASCII, but `"` and `\` need escaping.
            client_id: message
                .client_id
                .as_ref()
                .and_then(|c| serde_json::to_string(c.as_ref()).ok()),
        }
    }

    /// Exactly [`message_frame`]'s bytes.
    pub fn message_frame(&self) -> ByteString {
        let mut frame = String::with_capacity(self.object.len() + 32);
        frame.push_str(r#"{"type":"message","message":"#);
        frame.push_str(&self.object);
        frame.push('}');
        frame.into()
    }

    /// Exactly [`ack_frame`]'s bytes.
    pub fn ack_frame(&self, duplicate: bool) -> ByteString {
        let client_id = self.client_id.as_deref().unwrap_or("null");
        let mut frame = String::with_capacity(self.object.len() + client_id.len() + 64);
        frame.push_str(r#"{"type":"ack","client_id":"#);
        frame.push_str(client_id);
        frame.push_str(if duplicate {
            r#","duplicate":true,"message":"#
        } else {
            r#","duplicate":false,"message":"#
        });
        frame.push_str(&self.object);
        frame.push('}');
        frame.into()
    }
}

/// `{"type": "chat", "chat"}`: a chat with the user was created.
pub fn chat_frame(chat: &ChatState<'_>) -> ByteString {
    #[derive(Serialize)]
    struct Chat<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        chat: &'a ChatState<'a>,
    }
    to_frame(&Chat { kind: "chat", chat }, 600)
}

/// `{"type": "read" | "delivered", "chat_id", "user_id", "up_to"}`
pub fn cursor_frame(kind: CursorKind, chat: ChatId, user: UserId, up_to: Seq) -> ByteString {
    #[derive(Serialize)]
    struct Cursor {
        #[serde(rename = "type")]
        kind: &'static str,
        chat_id: i64,
        user_id: i64,
        up_to: i64,
    }
    let kind = match kind {
        CursorKind::Read => "read",
        CursorKind::Delivered => "delivered",
    };
    to_frame(
        &Cursor {
            kind,
            chat_id: chat.get(),
            user_id: user.get(),
            up_to: up_to.get(),
        },
        96,
    )
}

/// `{"type": "typing", "chat_id", "user_id", "active"}`
pub fn typing_frame(chat: ChatId, user: UserId, active: bool) -> ByteString {
    #[derive(Serialize)]
    struct Typing {
        #[serde(rename = "type")]
        kind: &'static str,
        chat_id: i64,
        user_id: i64,
        active: bool,
    }
    to_frame(
        &Typing {
            kind: "typing",
            chat_id: chat.get(),
            user_id: user.get(),
            active,
        },
        96,
    )
}

/// `{"type": "presence", "user_id", "online", "last_seen"}`
pub fn presence_frame(user: UserId, online: bool, last_seen: Option<&DateTime<Utc>>) -> ByteString {
    #[derive(Serialize)]
    struct Presence {
        #[serde(rename = "type")]
        kind: &'static str,
        user_id: i64,
        online: bool,
        last_seen: Option<String>,
    }
    to_frame(
        &Presence {
            kind: "presence",
            user_id: user.get(),
            online,
            last_seen: last_seen.map(v2_timestamp),
        },
        120,
    )
}

/// `{"type": "history", "ref", "chat_id", "messages", "has_more"}`:
/// `has_more` looks in the page's direction.
pub fn history_frame(
    reference: Option<&Value>,
    chat: ChatId,
    messages: &[DirectMessage],
    has_more: bool,
) -> ByteString {
    #[derive(Serialize)]
    struct History<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a Value>,
        chat_id: i64,
        messages: Vec<MessageObject<'a>>,
        has_more: bool,
    }
    let capacity = 100 + messages.iter().map(message_capacity).sum::<usize>();
    to_frame(
        &History {
            kind: "history",
            reference,
            chat_id: chat.get(),
            messages: messages.iter().map(MessageObject::from).collect(),
            has_more,
        },
        capacity,
    )
}

/// `{"type": "error", "code", "message"}`, with the `client_id` and `ref`
/// of the frame it answers when that frame had them.
pub fn error_frame(
    code: ErrorCode,
    message: &str,
    client_id: Option<&str>,
    reference: Option<&Value>,
) -> ByteString {
    #[derive(Serialize)]
    struct Error<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        code: &'static str,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        client_id: Option<&'a str>,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a Value>,
    }
    to_frame(
        &Error {
            kind: "error",
            code: code.as_str(),
            message,
            client_id,
            reference,
        },
        120 + message.len() + client_id.map_or(0, str::len),
    )
}

/// `{"type": "pong"}`, with the `ping`'s `ref` if it had one.
pub fn pong_frame(reference: Option<&Value>) -> ByteString {
    #[derive(Serialize)]
    struct Pong<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a Value>,
    }
    to_frame(
        &Pong {
            kind: "pong",
            reference,
        },
        48,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_domain::chat::{ClientId, MessageId};
    use chat_domain::user::Username;
    use chrono::TimeZone as _;
    use serde_json::json;

    fn message() -> DirectMessage {
        DirectMessage {
            id: MessageId::new(123),
            chat_id: ChatId::new(1),
            seq: Seq::new(57).unwrap(),
            sender: User {
                id: UserId::new(1),
                username: Username::parse("alice").unwrap(),
            },
            body: "Hello".into(),
            created: Utc.with_ymd_and_hms(2026, 12, 1, 10, 45, 30).unwrap()
                + chrono::Duration::milliseconds(123),
            client_id: Some(ClientId::parse("c-7f3a").unwrap()),
        }
    }

    fn parsed(frame: &ByteString) -> Value {
        serde_json::from_str(frame).unwrap()
    }

    #[test]
    fn a_message_frame_has_the_specified_shape() {
        assert_eq!(
            parsed(&message_frame(&message())),
            json!({"type": "message", "message": {
                "id": 123, "chat_id": 1, "seq": 57, "sender_id": 1, "sender": "alice",
                "body": "Hello", "created": "2026-12-01T10:45:30.123Z", "client_id": "c-7f3a"}})
        );
    }

    #[test]
    fn frames_made_from_the_encoded_object_are_the_serialised_frames_byte_for_byte() {
        let mut odd = message();
        odd.client_id = Some(ClientId::parse(r#"q"u\o~"#).unwrap());
        odd.body = "line\n\"quoted\" 👋 \u{7}".into();
        for message in [
            message(),
            odd,
            DirectMessage {
                client_id: None,
                ..message()
            },
        ] {
            let encoded = EncodedMessage::new(&message);
            assert_eq!(encoded.message_frame(), message_frame(&message));
            for duplicate in [false, true] {
                assert_eq!(encoded.ack_frame(duplicate), ack_frame(&message, duplicate));
            }
        }
    }

    #[test]
    fn an_ack_carries_the_client_id_and_whether_it_was_a_duplicate() {
        let ack = parsed(&ack_frame(&message(), true));
        assert_eq!(ack["type"], "ack");
        assert_eq!(ack["client_id"], "c-7f3a");
        assert_eq!(ack["duplicate"], true);
        assert_eq!(ack["message"]["seq"], 57);
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        for (text, expected) in [
            ("2026-12-01T10:45:30Z", "2026-12-01T10:45:30.000Z"),
            ("1999-12-31T23:59:59.9996Z", "1999-12-31T23:59:59.999Z"),
            ("2024-02-29T07:08:09.05Z", "2024-02-29T07:08:09.050Z"),
        ] {
            let time = DateTime::parse_from_rfc3339(text)
                .unwrap()
                .with_timezone(&Utc);
            assert_eq!(v2_timestamp(&time), expected);
        }
    }

    #[test]
    fn errors_echo_client_id_and_ref_only_when_given() {
        let bare = parsed(&error_frame(ErrorCode::BadFrame, "why", None, None));
        assert_eq!(
            bare,
            json!({"type": "error", "code": "bad_frame", "message": "why"})
        );
        let full = parsed(&error_frame(
            ErrorCode::Conflict,
            "x",
            Some("c-1"),
            Some(&json!(7)),
        ));
        assert_eq!(full["client_id"], "c-1");
        assert_eq!(full["ref"], 7);
        assert_eq!(full["code"], "conflict");
    }

    #[test]
    fn cursor_typing_presence_and_pong_frames_have_their_fields() {
        assert_eq!(
            parsed(&cursor_frame(
                CursorKind::Delivered,
                ChatId::new(1),
                UserId::new(2),
                Seq::new(9).unwrap()
            )),
            json!({"type": "delivered", "chat_id": 1, "user_id": 2, "up_to": 9})
        );
        assert_eq!(
            parsed(&typing_frame(ChatId::new(1), UserId::new(2), true)),
            json!({"type": "typing", "chat_id": 1, "user_id": 2, "active": true})
        );
        assert_eq!(
            parsed(&presence_frame(UserId::new(2), true, None)),
            json!({"type": "presence", "user_id": 2, "online": true, "last_seen": null})
        );
        assert_eq!(parsed(&pong_frame(None)), json!({"type": "pong"}));
        assert_eq!(
            parsed(&pong_frame(Some(&json!("r1")))),
            json!({"type": "pong", "ref": "r1"})
        );
    }

    #[test]
    fn error_codes_are_spelled_as_specified() {
        let codes = [
            ErrorCode::BadFrame,
            ErrorCode::UnknownChat,
            ErrorCode::NotParticipant,
            ErrorCode::Empty,
            ErrorCode::TooLong,
            ErrorCode::RateLimited,
            ErrorCode::Conflict,
            ErrorCode::Unavailable,
        ]
        .map(ErrorCode::as_str);
        assert_eq!(
            codes,
            [
                "bad_frame",
                "unknown_chat",
                "not_participant",
                "empty",
                "too_long",
                "rate_limited",
                "conflict",
                "unavailable"
            ]
        );
    }
}
