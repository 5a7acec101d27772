//! Protocol v2 as the benchmark speaks it (`ws://host/ws/v2/`, one socket per
//! user for all of the user's chats): the frames it sends, the server frames
//! it reads (only as far as it needs them), a connect that waits for
//! `hello`, and a pipelined fill of one chat.
//!
//! Every server frame is a JSON object with a `"type"`; frames the benchmark
//! does not need (`read`, `delivered`, `presence`, `chat`, `pong`) are valid
//! and are told apart from frames that are not the protocol at all.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde::Deserialize;
use tokio_tungstenite::tungstenite::Message;

use crate::conn::{self, ConnectError, Ws};
use crate::tag::Tag;

/// Sends a filling socket keeps unacknowledged: enough for the server's
/// group commit to store big batches, well under its per-socket outbound
/// queue (1,024 frames by default), which the acks travel through.
pub const FILL_WINDOW: u64 = 256;

/// A socket that hears nothing for this long while it is owed an answer is
/// given up on.
pub const IDLE_LIMIT: Duration = Duration::from_secs(15);

/// A chat's position, from `hello`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatHead {
    pub id: i64,
    pub head_seq: u64,
}

/// The `hello` frame, as far as the benchmark reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hello {
    pub chats: Vec<ChatHead>,
}

impl Hello {
    /// The `head_seq` of `chat_id`, if the user has that chat.
    pub fn head_of(&self, chat_id: i64) -> Option<u64> {
        self.chats
            .iter()
            .find(|c| c.id == chat_id)
            .map(|c| c.head_seq)
    }
}

/// A v2 message object, as far as the accounting reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msg {
    pub chat_id: i64,
    pub seq: u64,
    /// The body's tag, when this tool wrote the body.
    pub tag: Option<Tag>,
    /// Whether the message carries the `client_id` its tag says it was sent
    /// with (always `true` for untagged messages: nothing to check).
    pub client_id_ok: bool,
}

/// A server frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Hello(Hello),
    /// A message sent from anywhere but this socket.
    Message(Msg),
    /// This socket's `send`, committed.
    Ack {
        message: Msg,
        duplicate: bool,
    },
    /// The answer to a `history` request, oldest first.
    History {
        chat_id: i64,
        reference: Option<String>,
        messages: Vec<Msg>,
        has_more: bool,
    },
    Error {
        code: String,
    },
    Typing,
    /// `read`, `delivered`, `presence`, `chat`, `pong`: valid, not needed.
    Event,
    /// Not a protocol frame: not JSON, no or an unknown `type`, or a known
    /// type without its fields.
    Other,
}

/// A string that is borrowed from the frame unless it holds escapes
/// (`Option<Cow<str>>` alone would always copy).
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

#[derive(Deserialize)]
struct RawFrame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Text<'a>,
    // A message object, or the text of an `error`.
    #[serde(borrow, default, deserialize_with = "message_or_text")]
    message: Option<RawMessage<'a>>,
    #[serde(borrow, default)]
    messages: Option<Vec<RawMessage<'a>>>,
    #[serde(default)]
    chats: Option<Vec<RawChat>>,
    #[serde(default)]
    chat_id: Option<i64>,
    #[serde(default)]
    duplicate: Option<bool>,
    #[serde(default)]
    has_more: Option<bool>,
    // A string or a number: whatever the client sent.
    #[serde(rename = "ref", default)]
    reference: Option<serde_json::Value>,
    #[serde(borrow, default)]
    code: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct RawMessage<'a> {
    chat_id: i64,
    seq: u64,
    #[serde(borrow)]
    body: Cow<'a, str>,
    #[serde(borrow, default)]
    client_id: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct RawChat {
    id: i64,
    head_seq: u64,
}

/// `message` is a message object in `message`, `ack` and `chat` frames and
/// a human-readable text in `error` frames; the text is not needed.
fn message_or_text<'de, D>(deserializer: D) -> Result<Option<RawMessage<'de>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Option<RawMessage<'de>>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a message object or a text")
        }

        fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            RawMessage::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Some)
        }
    }
    deserializer.deserialize_any(Visitor)
}

impl RawMessage<'_> {
    fn read(&self) -> Msg {
        let tag = Tag::parse(&self.body);
        let client_id_ok = match (tag, &self.client_id) {
            (Some(tag), Some(id)) => tag.has_client_id(&id.0),
            (Some(_), None) => false,
            (None, _) => true,
        };
        Msg {
            chat_id: self.chat_id,
            seq: self.seq,
            tag,
            client_id_ok,
        }
    }
}

impl Frame {
    pub fn parse(text: &str) -> Frame {
        let Ok(raw) = serde_json::from_str::<RawFrame<'_>>(text) else {
            return Frame::Other;
        };
        match &*raw.kind.0 {
            "message" => raw
                .message
                .map_or(Frame::Other, |m| Frame::Message(m.read())),
            "ack" => match (raw.message, raw.duplicate) {
                (Some(m), Some(duplicate)) => Frame::Ack {
                    message: m.read(),
                    duplicate,
                },
                _ => Frame::Other,
            },
            "history" => match (raw.chat_id, raw.messages, raw.has_more) {
                (Some(chat_id), Some(messages), Some(has_more)) => Frame::History {
                    chat_id,
                    reference: raw.reference.map(|r| match r {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    }),
                    messages: messages.iter().map(RawMessage::read).collect(),
                    has_more,
                },
                _ => Frame::Other,
            },
            "hello" => raw.chats.map_or(Frame::Other, |chats| {
                Frame::Hello(Hello {
                    chats: chats
                        .into_iter()
                        .map(|c| ChatHead {
                            id: c.id,
                            head_seq: c.head_seq,
                        })
                        .collect(),
                })
            }),
            "error" => Frame::Error {
                code: raw.code.map(|c| c.0.into_owned()).unwrap_or_default(),
            },
            "typing" => Frame::Typing,
            "read" | "delivered" | "presence" | "chat" | "pong" => Frame::Event,
            _ => Frame::Other,
        }
    }
}

/// `{"type":"send",...}` for `tag`'s message in `chat_id`, its body padded
/// to at least `min_len` bytes and its `client_id` derived from the tag.
/// Tag bodies and ids need no JSON escaping.
pub fn send_frame(chat_id: i64, tag: &Tag, min_len: usize) -> String {
    let body = tag.encode(min_len);
    let mut frame = String::with_capacity(body.len() + 96);
    let _ = write!(
        frame,
        r#"{{"type":"send","chat_id":{chat_id},"client_id":"{}","body":""#,
        tag.client_id()
    );
    frame.push_str(&body);
    frame.push_str("\"}");
    frame
}

pub fn typing_frame(chat_id: i64, active: bool) -> String {
    format!(r#"{{"type":"typing","chat_id":{chat_id},"active":{active}}}"#)
}

/// A `history` request for the page after `after` (exclusive).
pub fn history_after_frame(chat_id: i64, after: u64, limit: usize, reference: &str) -> String {
    format!(
        r#"{{"type":"history","chat_id":{chat_id},"after":{after},"limit":{limit},"ref":"{reference}"}}"#
    )
}

/// Opens a v2 socket and waits for its `hello`: the socket is ready (it has
/// joined the fan-out) only then. The time is from the TCP connect to the
/// `hello`.
pub async fn connect(
    addr: SocketAddr,
    url: &str,
    source: Option<IpAddr>,
    timeout: Duration,
) -> Result<(Ws, Duration, Hello), ConnectError> {
    let started = Instant::now();
    let (mut ws, _) = conn::connect(addr, url, source, timeout).await?;
    let deadline = started + timeout;
    loop {
        let frame = tokio::time::timeout_at(deadline.into(), ws.next())
            .await
            .map_err(|_| ConnectError::Timeout(timeout))?;
        let text = match frame {
            Some(Ok(Message::Text(text))) => text,
            // Control frames may come first; tungstenite answers pings.
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(other)) => return Err(ConnectError::NoHello(format!("{other:?}"))),
            Some(Err(error)) => return Err(ConnectError::Handshake(Box::new(error))),
            None => return Err(ConnectError::NoHello("the socket closed".into())),
        };
        return match Frame::parse(&text) {
            Frame::Hello(hello) => Ok((ws, started.elapsed(), hello)),
            _ => Err(ConnectError::NoHello(text.chars().take(200).collect())),
        };
    }
}

/// What a fill did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filled {
    pub sent: u64,
    /// Sends answered by an `ack`.
    pub acked: u64,
    /// Sends answered by an `error`.
    pub errors: u64,
    /// The highest `seq` acknowledged.
    pub head_seq: u64,
}

/// Sends `count` messages into `chat_id`, tagged `run`/`sender` with
/// sequence numbers from 0, at most [`FILL_WINDOW`] unanswered, and waits
/// for every answer (or [`IDLE_LIMIT`] of silence). `progress` names the
/// fill in a line on stderr every 100,000 answers.
pub async fn fill(
    ws: &mut Ws,
    chat_id: i64,
    sender: u32,
    run: u64,
    count: u64,
    body_bytes: usize,
    progress: Option<&str>,
) -> Filled {
    let mut done = Filled::default();
    let started = Instant::now();
    while done.acked + done.errors < count {
        while done.sent < count && done.sent - done.acked - done.errors < FILL_WINDOW {
            let tag = Tag {
                run,
                sender,
                seq: done.sent,
                sent_at_ns: 0,
            };
            if !conn::send_text(ws, send_frame(chat_id, &tag, body_bytes)).await {
                return done;
            }
            done.sent += 1;
        }
        let text = match tokio::time::timeout(IDLE_LIMIT, ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => text,
            Ok(Some(Ok(_))) => continue,
            _ => {
                eprintln!(
                    "fill: chat {chat_id} stalled at {} of {count} answered",
                    done.acked + done.errors
                );
                return done;
            }
        };
        let answered = match Frame::parse(&text) {
            Frame::Ack { message, .. } => {
                done.acked += 1;
                done.head_seq = done.head_seq.max(message.seq);
                true
            }
            Frame::Error { .. } => {
                done.errors += 1;
                true
            }
            _ => false,
        };
        let answers = done.acked + done.errors;
        if let (true, Some(name), 0) = (answered, progress, answers % 100_000) {
            eprintln!(
                "{name}: {answers} of {count} stored ({:.0} msg/s)",
                answers as f64 / started.elapsed().as_secs_f64().max(1e-9)
            );
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAG: Tag = Tag {
        run: 0xab,
        sender: 3,
        seq: 9,
        sent_at_ns: 1000,
    };

    fn message(tag: &Tag, client_id: &str) -> serde_json::Value {
        serde_json::json!({"id": 7, "chat_id": 5, "seq": 12, "sender_id": 2, "sender": "u",
            "body": tag.encode(40), "created": "2026-12-01T10:45:30.123Z", "client_id": client_id})
    }

    #[test]
    fn the_send_frame_is_the_documented_object() {
        let frame: serde_json::Value = serde_json::from_str(&send_frame(5, &TAG, 40)).unwrap();
        assert_eq!(frame["type"], "send");
        assert_eq!(frame["chat_id"], 5);
        assert_eq!(frame["client_id"], "00000000000003e8.ab.3.9");
        assert_eq!(frame["body"].as_str().and_then(Tag::parse), Some(TAG));
        let typing: serde_json::Value = serde_json::from_str(&typing_frame(5, true)).unwrap();
        assert_eq!(
            typing,
            serde_json::json!({"type": "typing", "chat_id": 5, "active": true})
        );
        let history: serde_json::Value =
            serde_json::from_str(&history_after_frame(5, 20, 200, "h1")).unwrap();
        assert_eq!(
            history,
            serde_json::json!({"type": "history", "chat_id": 5, "after": 20, "limit": 200, "ref": "h1"})
        );
    }

    #[test]
    fn messages_and_acks_are_read_with_their_tag_and_seq() {
        let m = message(&TAG, "00000000000003e8.ab.3.9");
        let read = Msg {
            chat_id: 5,
            seq: 12,
            tag: Some(TAG),
            client_id_ok: true,
        };
        let frame = serde_json::json!({"type": "message", "message": m}).to_string();
        assert_eq!(Frame::parse(&frame), Frame::Message(read));
        let ack = serde_json::json!({"type": "ack", "client_id": "00000000000003e8.ab.3.9", "duplicate": false, "message": m});
        assert_eq!(
            Frame::parse(&ack.to_string()),
            Frame::Ack {
                message: read,
                duplicate: false
            }
        );
        // A tagged message with another message's client_id.
        let wrong = serde_json::json!({"type": "message", "message": message(&TAG, "ab.3.8")});
        assert!(matches!(
            Frame::parse(&wrong.to_string()),
            Frame::Message(Msg {
                client_id_ok: false,
                ..
            })
        ));
        // Someone else's message: no tag, nothing to check.
        let plain = r#"{"type":"message","message":{"id":1,"chat_id":5,"seq":1,"sender_id":1,"sender":"a","body":"Hi \"you\"","created":"x","client_id":null}}"#;
        assert!(matches!(
            Frame::parse(plain),
            Frame::Message(Msg {
                tag: None,
                client_id_ok: true,
                ..
            })
        ));
    }

    #[test]
    fn hello_and_history_are_read() {
        let hello = serde_json::json!({"type": "hello", "user": {"id": 1, "username": "a"},
            "chats": [{"id": 5, "head_seq": 57, "last_message": null, "read_up_to": 50,
                       "other_read_up_to": 57, "delivered_up_to": 57, "other_delivered_up_to": 57,
                       "unread_count": 3, "created": "x",
                       "other_user": {"id": 2, "username": "b", "online": true, "last_seen": null}},
                      {"id": 6, "head_seq": 0}],
            "heartbeat_ms": 30000, "limits": {"max_message_chars": 4000, "max_frame_bytes": 65536}});
        let Frame::Hello(hello) = Frame::parse(&hello.to_string()) else {
            panic!("not a hello");
        };
        assert_eq!(
            (hello.head_of(5), hello.head_of(6), hello.head_of(7)),
            (Some(57), Some(0), None)
        );
        let history = serde_json::json!({"type": "history", "ref": "h1", "chat_id": 5,
            "messages": [message(&TAG, "00000000000003e8.ab.3.9")], "has_more": true});
        let Frame::History {
            chat_id,
            reference,
            messages,
            has_more,
        } = Frame::parse(&history.to_string())
        else {
            panic!("not a history");
        };
        assert_eq!(
            (chat_id, reference.as_deref(), messages.len(), has_more),
            (5, Some("h1"), 1, true)
        );
        let numbered = serde_json::json!({"type": "history", "ref": 7, "chat_id": 5, "messages": [], "has_more": false});
        assert!(
            matches!(Frame::parse(&numbered.to_string()), Frame::History { reference: Some(r), .. } if r == "7")
        );
    }

    #[test]
    fn other_frames_are_events_errors_or_not_the_protocol() {
        for event in [
            r#"{"type":"read","chat_id":1,"user_id":2,"up_to":3}"#,
            r#"{"type":"delivered","chat_id":1,"user_id":2,"up_to":3}"#,
            r#"{"type":"presence","user_id":2,"online":false,"last_seen":"x"}"#,
            r#"{"type":"chat","chat":{"id":1}}"#,
            r#"{"type":"pong","ref":"p"}"#,
        ] {
            assert_eq!(Frame::parse(event), Frame::Event, "{event}");
        }
        assert_eq!(
            Frame::parse(r#"{"type":"typing","chat_id":1,"user_id":2,"active":true}"#),
            Frame::Typing
        );
        assert_eq!(
            Frame::parse(
                r#"{"type":"error","code":"rate_limited","message":"slow down","client_id":"x"}"#
            ),
            Frame::Error {
                code: "rate_limited".into()
            }
        );
        for other in [
            "nope",
            "[1]",
            r#"{"message":{}}"#,
            r#"{"type":"surprise"}"#,
            r#"{"type":"ack","client_id":"x"}"#,
            r#"{"type":"hello"}"#,
        ] {
            assert_eq!(Frame::parse(other), Frame::Other, "{other}");
        }
    }
}
