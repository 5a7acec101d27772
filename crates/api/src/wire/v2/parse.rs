//! What a client may send on `/ws/v2/`: every frame is a JSON object with a
//! `"type"`, and may carry a `ref` (a string of at most 64 characters, or a
//! number) that the answer echoes. [`parse_client_frame`] either says which
//! frame it is, with every field checked for shape, or why not
//! (`bad_frame`). Whether the chat exists, the body's rules and the rate
//! limit are checked later, in that order, by the session.

use chat_domain::chat::{ChatId, ClientId, PageAnchor, PageLimit, Seq};
use serde_json::{Map, Value};

/// The longest `ref`, in characters.
pub const MAX_REF_CHARS: usize = 64;

/// A well-formed client frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    Send {
        chat_id: ChatId,
        client_id: ClientId,
        /// As sent; the message rules are checked by the message service.
        body: String,
    },
    Read {
        chat_id: ChatId,
        up_to: Seq,
    },
    Delivered {
        chat_id: ChatId,
        up_to: Seq,
    },
    Typing {
        chat_id: ChatId,
        active: bool,
    },
    History {
        chat_id: ChatId,
        anchor: PageAnchor,
        limit: PageLimit,
    },
    Ping,
}

/// A text frame as read: what it asks for (or why it is malformed), and
/// what its answer must echo.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub frame: Result<ClientFrame, BadFrame>,
    /// The frame's `ref`, when it had a valid one.
    pub reference: Option<Value>,
    /// The frame's `client_id` when it had one that is a string, even an
    /// invalid one: an error about that frame names it.
    pub client_id: Option<String>,
}

/// Why a frame is not one the server understands: the `message` of a
/// `bad_frame` error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadFrame(pub String);

fn bad(message: impl Into<String>) -> BadFrame {
    BadFrame(message.into())
}

/// Reads one text frame. Never panics, whatever the input.
pub fn parse_client_frame(text: &str) -> Parsed {
    if let Some(parsed) = parse_plain_send(text) {
        return parsed;
    }
    parse_any_frame(text)
}

/// The frame nearly every client frame is, a `send`, read straight into
/// its fields without building a JSON tree first (a tenth of a v2 send's
/// cost on the server). Anything unusual (another type, a field of the
/// wrong type, a key twice) returns `None` and is read by
/// [`parse_any_frame`], which has the precise errors; both read the same
/// frames the same way (a property test says so).
fn parse_plain_send(text: &str) -> Option<Parsed> {
    #[derive(serde::Deserialize)]
    struct PlainSend<'a> {
        #[serde(rename = "type", borrow)]
        kind: std::borrow::Cow<'a, str>,
        chat_id: i64,
        #[serde(borrow)]
        client_id: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        body: std::borrow::Cow<'a, str>,
        #[serde(rename = "ref", default)]
        reference: Option<Value>,
    }
    let send: PlainSend<'_> = serde_json::from_str(text).ok()?;
    if send.kind != "send" {
        return None;
    }
    let mut fields = Map::new();
    if let Some(reference) = send.reference {
        fields.insert("ref".to_owned(), reference);
    }
    let reference = reference(&fields).ok()?;
    let client_id = send.client_id.into_owned();
    Some(Parsed {
        frame: ClientId::parse(&client_id)
            .map(|parsed| ClientFrame::Send {
                chat_id: ChatId::new(send.chat_id),
                client_id: parsed,
                body: send.body.into_owned(),
            })
            .map_err(|e| bad(e.to_string())),
        reference,
        client_id: Some(client_id),
    })
}

/// Reads any frame through a JSON tree, saying exactly what is wrong.
pub fn parse_any_frame(text: &str) -> Parsed {
    let value: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(_) => return unanswerable(bad("frame is not valid JSON")),
    };
    let Value::Object(fields) = value else {
        return unanswerable(bad("frame must be a JSON object like {\"type\": \"ping\"}"));
    };
    let client_id = match fields.get("client_id") {
        Some(Value::String(raw)) => Some(raw.clone()),
        _ => None,
    };
    let reference = match reference(&fields) {
        Ok(reference) => reference,
        Err(error) => {
            return Parsed {
                frame: Err(error),
                reference: None,
                client_id,
            }
        }
    };
    Parsed {
        frame: frame(&fields),
        reference,
        client_id,
    }
}

fn unanswerable(error: BadFrame) -> Parsed {
    Parsed {
        frame: Err(error),
        reference: None,
        client_id: None,
    }
}

fn reference(fields: &Map<String, Value>) -> Result<Option<Value>, BadFrame> {
    match fields.get("ref") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.chars().count() <= MAX_REF_CHARS => {
            Ok(Some(Value::String(text.clone())))
        }
        Some(Value::String(_)) => Err(bad(format!(
            "\"ref\" may be at most {MAX_REF_CHARS} characters long"
        ))),
        Some(number @ Value::Number(_)) => Ok(Some(number.clone())),
        Some(_) => Err(bad("\"ref\" must be a string or a number")),
    }
}

fn frame(fields: &Map<String, Value>) -> Result<ClientFrame, BadFrame> {
    let kind = match fields.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        Some(_) => return Err(bad("\"type\" must be a string")),
        None => return Err(bad("frame has no \"type\"")),
    };
    match kind {
        "send" => Ok(ClientFrame::Send {
            chat_id: chat_id(fields)?,
            client_id: client_id(fields)?,
            body: string(fields, "body")?,
        }),
        "read" => Ok(ClientFrame::Read {
            chat_id: chat_id(fields)?,
            up_to: cursor(fields, "up_to")?.ok_or_else(|| missing("up_to"))?,
        }),
        "delivered" => Ok(ClientFrame::Delivered {
            chat_id: chat_id(fields)?,
            up_to: cursor(fields, "up_to")?.ok_or_else(|| missing("up_to"))?,
        }),
        "typing" => Ok(ClientFrame::Typing {
            chat_id: chat_id(fields)?,
            active: match fields.get("active") {
                Some(Value::Bool(active)) => *active,
                Some(_) => return Err(wrong_type("active", "a boolean")),
                None => return Err(missing("active")),
            },
        }),
        "history" => {
            let chat_id = chat_id(fields)?;
            let anchor = match (cursor(fields, "before")?, cursor(fields, "after")?) {
                (Some(_), Some(_)) => {
                    return Err(bad("give \"before\" or \"after\", not both"));
                }
                (Some(before), None) => PageAnchor::Before(before),
                (None, Some(after)) => PageAnchor::After(after),
                (None, None) => PageAnchor::Newest,
            };
            Ok(ClientFrame::History {
                chat_id,
                anchor,
                limit: limit(fields)?,
            })
        }
        "ping" => Ok(ClientFrame::Ping),
        other => Err(bad(format!(
            "unknown frame type {}: expected send, read, delivered, typing, history or ping",
            Value::String(other.chars().take(40).collect())
        ))),
    }
}

fn missing(field: &str) -> BadFrame {
    bad(format!("frame has no \"{field}\""))
}

fn wrong_type(field: &str, expected: &str) -> BadFrame {
    bad(format!("\"{field}\" must be {expected}"))
}

fn chat_id(fields: &Map<String, Value>) -> Result<ChatId, BadFrame> {
    match fields.get("chat_id") {
        Some(Value::Number(n)) => n
            .as_i64()
            .map(ChatId::new)
            .ok_or_else(|| wrong_type("chat_id", "an integer chat id")),
        Some(_) => Err(wrong_type("chat_id", "an integer chat id")),
        None => Err(missing("chat_id")),
    }
}

fn client_id(fields: &Map<String, Value>) -> Result<ClientId, BadFrame> {
    match fields.get("client_id") {
        Some(Value::String(raw)) => ClientId::parse(raw).map_err(|e| bad(e.to_string())),
        Some(_) => Err(wrong_type("client_id", "a string")),
        None => Err(missing("client_id")),
    }
}

fn string(fields: &Map<String, Value>, field: &str) -> Result<String, BadFrame> {
    match fields.get(field) {
        Some(Value::String(text)) => Ok(text.clone()),
        Some(_) => Err(wrong_type(field, "a string")),
        None => Err(missing(field)),
    }
}

/// A cursor or anchor: an integer >= 0, or absent (`null` counts as absent).
fn cursor(fields: &Map<String, Value>, field: &str) -> Result<Option<Seq>, BadFrame> {
    match fields.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .and_then(Seq::new)
            .map(Some)
            .ok_or_else(|| wrong_type(field, "an integer of at least 0")),
        Some(_) => Err(wrong_type(field, "an integer of at least 0")),
    }
}

fn limit(fields: &Map<String, Value>) -> Result<PageLimit, BadFrame> {
    let out_of_range = || {
        wrong_type(
            "limit",
            &format!("an integer from 1 to {}", PageLimit::MAX.get()),
        )
    };
    match fields.get("limit") {
        None | Some(Value::Null) => Ok(PageLimit::DEFAULT),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .and_then(PageLimit::new)
            .ok_or_else(out_of_range),
        Some(_) => Err(out_of_range()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Parsed {
        parse_client_frame(&value.to_string())
    }

    fn seq(n: i64) -> Seq {
        Seq::new(n).unwrap()
    }

    #[test]
    fn every_client_frame_of_the_spec_is_understood() {
        let cases = [
            (
                json!({"type": "send", "chat_id": 1, "client_id": "c-1", "body": "hi"}),
                ClientFrame::Send {
                    chat_id: ChatId::new(1),
                    client_id: ClientId::parse("c-1").unwrap(),
                    body: "hi".into(),
                },
            ),
            (
                json!({"type": "read", "chat_id": 1, "up_to": 5}),
                ClientFrame::Read {
                    chat_id: ChatId::new(1),
                    up_to: seq(5),
                },
            ),
            (
                json!({"type": "delivered", "chat_id": 1, "up_to": 0}),
                ClientFrame::Delivered {
                    chat_id: ChatId::new(1),
                    up_to: seq(0),
                },
            ),
            (
                json!({"type": "typing", "chat_id": 1, "active": false}),
                ClientFrame::Typing {
                    chat_id: ChatId::new(1),
                    active: false,
                },
            ),
            (
                json!({"type": "history", "chat_id": 1}),
                ClientFrame::History {
                    chat_id: ChatId::new(1),
                    anchor: PageAnchor::Newest,
                    limit: PageLimit::DEFAULT,
                },
            ),
            (
                json!({"type": "history", "chat_id": 1, "before": 9, "limit": 200}),
                ClientFrame::History {
                    chat_id: ChatId::new(1),
                    anchor: PageAnchor::Before(seq(9)),
                    limit: PageLimit::MAX,
                },
            ),
            (
                json!({"type": "history", "chat_id": 1, "after": 0, "limit": 1}),
                ClientFrame::History {
                    chat_id: ChatId::new(1),
                    anchor: PageAnchor::After(seq(0)),
                    limit: PageLimit::new(1).unwrap(),
                },
            ),
            (json!({"type": "ping"}), ClientFrame::Ping),
        ];
        for (frame, expected) in cases {
            assert_eq!(parse(frame.clone()).frame, Ok(expected), "{frame}");
        }
    }

    #[test]
    fn a_ref_is_echoed_when_it_is_a_short_string_or_a_number() {
        assert_eq!(
            parse(json!({"type": "ping", "ref": "r-1"})).reference,
            Some(json!("r-1"))
        );
        assert_eq!(
            parse(json!({"type": "ping", "ref": 7.5})).reference,
            Some(json!(7.5))
        );
        assert_eq!(parse(json!({"type": "ping", "ref": null})).reference, None);
        let long = parse(json!({"type": "ping", "ref": "x".repeat(65)}));
        assert!(long.frame.is_err());
        assert_eq!(long.reference, None);
        assert!(parse(json!({"type": "ping", "ref": {"a": 1}}))
            .frame
            .is_err());
        assert!(parse(json!({"type": "ping", "ref": "é".repeat(64)}))
            .frame
            .is_ok());
    }

    #[test]
    fn malformed_frames_are_bad_frames() {
        for text in [
            "",
            "hello",
            "[1]",
            "\"ping\"",
            "null",
            "{}",
            r#"{"type": 1}"#,
            r#"{"type": "shout"}"#,
            r#"{"type": "send", "chat_id": 1, "body": "x"}"#,
            r#"{"type": "send", "chat_id": 1, "client_id": "c", "body": 5}"#,
            r#"{"type": "send", "chat_id": "1", "client_id": "c", "body": "x"}"#,
            r#"{"type": "send", "chat_id": 1.5, "client_id": "c", "body": "x"}"#,
            r#"{"type": "send", "chat_id": 1, "client_id": "has space", "body": "x"}"#,
            r#"{"type": "send", "chat_id": 1, "client_id": "", "body": "x"}"#,
            r#"{"type": "send", "chat_id": 1, "client_id": 7, "body": "x"}"#,
            r#"{"type": "read", "chat_id": 1}"#,
            r#"{"type": "read", "chat_id": 1, "up_to": -1}"#,
            r#"{"type": "read", "chat_id": 1, "up_to": 1e3}"#,
            r#"{"type": "delivered", "chat_id": 1, "up_to": "3"}"#,
            r#"{"type": "typing", "chat_id": 1, "active": "yes"}"#,
            r#"{"type": "typing", "chat_id": 1}"#,
            r#"{"type": "history", "chat_id": 1, "before": 3, "after": 1}"#,
            r#"{"type": "history", "chat_id": 1, "limit": 0}"#,
            r#"{"type": "history", "chat_id": 1, "limit": 201}"#,
            r#"{"type": "history", "chat_id": 1, "limit": -5}"#,
            r#"{"type": "history", "chat_id": 1, "after": 18446744073709551615}"#,
            r#"{"type": "history"}"#,
        ] {
            assert!(
                parse_client_frame(text).frame.is_err(),
                "{text} was accepted"
            );
        }
    }

    #[test]
    fn an_invalid_client_id_is_still_named_in_the_answer() {
        let parsed = parse(json!({"type": "send", "chat_id": 1, "client_id": "a b", "body": "x"}));
        assert!(parsed.frame.is_err());
        assert_eq!(parsed.client_id.as_deref(), Some("a b"));
    }

    #[test]
    fn unknown_fields_are_ignored() {
        assert_eq!(
            parse(json!({"type": "ping", "extra": [1, 2]})).frame,
            Ok(ClientFrame::Ping)
        );
    }

    #[test]
    fn deeply_nested_input_is_an_error_not_a_crash() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse_client_frame(&deep).frame.is_err());
    }
}
