#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking
//! `docs/asyncapi.json` describes the frames the server really parses and
//! writes, on both sockets:
//!
//! - it is an AsyncAPI 3.0 document whose every `$ref` resolves, whose
//!   operations use only their channel's messages, whose channel
//!   parameters are those of the address, and whose examples (and those of
//!   docs/protocol.md) validate;
//! - real sessions against a spawned server, on the seed socket and the v2
//!   socket, send every client frame type and provoke every server frame
//!   type; every frame sent and received is captured, and each must match
//!   exactly one message of its channel and direction (deliberately
//!   malformed client frames, which the server answers as errors, must
//!   match none); every message of the document must have been seen, and
//!   every error code but `unavailable` (below); close codes seen must be
//!   the channel's documented ones;
//! - wrong frames (a missing field, an unknown type, an extra field on a
//!   server frame, a value out of range) validate against nothing, while
//!   the right frame they were made from does: the schemas are not
//!   vacuous.

mod common;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use awc::ws::{CloseCode, CloseReason, Message};
use common::{spawn_app_with, Api, Received, TestUser, WsClient};
use serde_json::{json, Value};

const DOCUMENT: &str = "docs/asyncapi.json";
const SEED: &str = "chat_socket";
const V2: &str = "v2_socket";

/// Error codes the sessions below cannot provoke, and why.
const CODES_NOT_PROVOKED: [(&str, &str); 1] = [(
    "unavailable",
    "needs the database unreachable mid-session; tests/faults.rs and tests/v2_storm.rs \
     provoke it (a locked SQLite file, a PostgreSQL link cut)",
)];

/// Messages of the document the sessions below cannot provoke, and why:
/// none. (Keep it that way: a message nobody can provoke is one the server
/// does not send.)
const MESSAGES_NOT_PROVOKED: [(&str, &str); 0] = [];

fn document() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DOCUMENT);
    let text = std::fs::read_to_string(&path).expect("docs/asyncapi.json");
    serde_json::from_str(&text).expect("docs/asyncapi.json is JSON")
}

/// `#/a/b~1c` within the document.
fn resolve<'a>(document: &'a Value, reference: &str) -> Option<&'a Value> {
    document.pointer(reference.strip_prefix('#')?)
}

fn refs(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(fields) => {
            for (key, field) in fields {
                match (key.as_str(), field) {
                    ("$ref", Value::String(reference)) => found.push(reference.clone()),
                    _ => refs(field, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| refs(item, found)),
        _ => {}
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Direction {
    /// What a client sends: the server's `receive` operations.
    ToServer,
    /// What the server writes: its `send` operations.
    ToClient,
}

/// The document's messages, compiled, by channel and direction.
struct Spec {
    document: Value,
    messages: BTreeMap<(String, Direction), Vec<(String, jsonschema::Validator)>>,
}

/// A validator for the schema at `pointer` in the document (the document
/// is the root resource, so its internal `$ref`s resolve). AsyncAPI's
/// default schema format is a superset of JSON Schema draft 7; with a
/// root `$ref`, draft 7 ignores the document's other members.
fn validator(document: &Value, pointer: &str) -> jsonschema::Validator {
    let mut root = document.clone();
    root["$ref"] = json!(pointer);
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft7)
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("{pointer} does not compile: {e}"))
}

impl Spec {
    fn load() -> Self {
        let document = document();
        let mut messages: BTreeMap<_, Vec<_>> = BTreeMap::new();
        let mut compiled = BTreeSet::new();
        for (id, operation) in document["operations"].as_object().unwrap() {
            let direction = match operation["action"].as_str() {
                Some("receive") => Direction::ToServer,
                Some("send") => Direction::ToClient,
                other => panic!("operation {id}: action {other:?}"),
            };
            let channel = operation["channel"]["$ref"]
                .as_str()
                .and_then(|r| r.strip_prefix("#/channels/"))
                .unwrap_or_else(|| panic!("operation {id}: channel is not a channel $ref"))
                .to_owned();
            for message in operation["messages"].as_array().unwrap() {
                let key = component_message(&document, &channel, message, id);
                if compiled.insert((channel.clone(), key.clone())) {
                    let pointer = format!("#/components/messages/{key}/payload");
                    let compiled = validator(&document, &pointer);
                    messages
                        .entry((channel.clone(), direction))
                        .or_default()
                        .push((key, compiled));
                }
            }
        }
        Self { document, messages }
    }

    /// The messages of `channel` and `direction` that `frame` is an
    /// instance of.
    fn matching(&self, channel: &str, direction: Direction, frame: &Value) -> Vec<String> {
        self.messages
            .get(&(channel.to_owned(), direction))
            .unwrap_or_else(|| panic!("no {direction:?} messages on {channel}"))
            .iter()
            .filter(|(_, validator)| validator.is_valid(frame))
            .map(|(key, _)| key.clone())
            .collect()
    }

    fn all_messages(&self) -> BTreeSet<String> {
        self.messages
            .values()
            .flatten()
            .map(|(key, _)| key.clone())
            .collect()
    }
}

/// The component message an operation's (or reply's) message reference
/// names: it must be a message of `channel`.
fn component_message(document: &Value, channel: &str, message: &Value, context: &str) -> String {
    let reference = message["$ref"].as_str().unwrap();
    let prefix = format!("#/channels/{channel}/messages/");
    assert!(
        reference.starts_with(&prefix),
        "{context}: {reference} is not a message of its channel {channel}"
    );
    let in_channel = resolve(document, reference)
        .unwrap_or_else(|| panic!("{context}: {reference} does not resolve"));
    in_channel["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix("#/components/messages/"))
        .unwrap_or_else(|| panic!("{reference} is not a component message"))
        .to_owned()
}

// ---- the document itself ------------------------------------------------

#[test]
fn the_document_is_asyncapi_3_and_every_reference_resolves() {
    // Tidy: two-space indent, one member per line, a final newline.
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(DOCUMENT)).unwrap();
    assert!(text.ends_with("}\n"), "{DOCUMENT}: no final newline");
    for (number, line) in text.lines().enumerate() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        assert!(
            indent % 2 == 0 && !line.contains('\t') && !line.ends_with(' '),
            "{DOCUMENT}:{}: not 2-space indented: {line:?}",
            number + 1
        );
    }
    let document = document();
    let version = document["asyncapi"].as_str().unwrap();
    assert!(version.starts_with("3.0."), "asyncapi: {version}");
    assert_eq!(document["info"]["title"], "chat-server");
    assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(document["defaultContentType"], "application/json");
    for member in ["channels", "operations", "components"] {
        assert!(document[member].is_object(), "{member} is missing");
    }
    let known: BTreeSet<&str> = [
        "asyncapi",
        "id",
        "info",
        "servers",
        "defaultContentType",
        "channels",
        "operations",
        "components",
    ]
    .into();
    for member in document.as_object().unwrap().keys() {
        assert!(known.contains(member.as_str()), "unknown member {member}");
    }

    let mut found = Vec::new();
    refs(&document, &mut found);
    assert!(found.len() > 50, "only {} $refs", found.len());
    for reference in &found {
        assert!(
            resolve(&document, reference).is_some(),
            "{reference} does not resolve"
        );
    }

    // The two sockets, with their addresses and parameters.
    let channels = document["channels"].as_object().unwrap();
    assert_eq!(
        channels.keys().map(String::as_str).collect::<Vec<_>>(),
        [SEED, V2]
    );
    assert_eq!(channels[SEED]["address"], "/ws/chat/{chat_id}/");
    assert_eq!(channels[V2]["address"], "/ws/v2/");
    for (id, channel) in channels {
        let address = channel["address"].as_str().unwrap();
        let in_address: BTreeSet<String> = address
            .split('{')
            .skip(1)
            .map(|rest| rest[..rest.find('}').unwrap()].to_owned())
            .collect();
        let declared: BTreeSet<String> = channel["parameters"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        assert_eq!(in_address, declared, "{id}: parameters");
        assert!(
            channel["messages"]
                .as_object()
                .is_some_and(|m| !m.is_empty()),
            "{id}: no messages"
        );
        // Every documented close code is in the description too.
        let description = channel["description"].as_str().unwrap();
        let codes = channel["x-close-codes"].as_object().unwrap();
        for code in codes.keys() {
            assert!(
                description.contains(&format!("| `{code}` |")),
                "{id}: close code {code} is not in the description"
            );
        }
        for code in ["1000", "1001", "1009", "1013"] {
            assert!(codes.contains_key(code), "{id}: close code {code}");
        }
    }
    assert!(channels[V2]["x-close-codes"]
        .as_object()
        .unwrap()
        .contains_key("4001"));
    // Seed sockets are closed with 4001 on a password change or logout
    // (not on expiry).
    assert!(channels[SEED]["x-close-codes"]
        .as_object()
        .unwrap()
        .contains_key("4001"));

    // Operations: a known action on a channel, with messages of that
    // channel; replies on the same channel.
    let mut used: BTreeSet<(String, String)> = BTreeSet::new();
    for (id, operation) in document["operations"].as_object().unwrap() {
        assert!(matches!(
            operation["action"].as_str(),
            Some("send" | "receive")
        ));
        let channel = operation["channel"]["$ref"]
            .as_str()
            .unwrap()
            .strip_prefix("#/channels/")
            .unwrap();
        for message in operation["messages"].as_array().unwrap() {
            let key = component_message(&document, channel, message, id);
            used.insert((channel.to_owned(), key));
        }
        if let Some(reply) = operation.get("reply") {
            assert_eq!(reply["channel"], operation["channel"], "{id}: reply");
            assert_eq!(operation["action"], "receive", "{id}: a reply to a send");
            for message in reply["messages"].as_array().unwrap() {
                component_message(&document, channel, message, id);
            }
        }
    }
    // Every message of a channel is used by some operation.
    for (id, channel) in channels {
        for (key, message) in channel["messages"].as_object().unwrap() {
            let component = message["$ref"]
                .as_str()
                .and_then(|r| r.strip_prefix("#/components/messages/"))
                .unwrap_or_else(|| panic!("{id}/{key} is not a component message"));
            assert!(
                used.contains(&(id.clone(), component.to_owned())),
                "{id}: no operation uses {key}"
            );
        }
    }

    // Both ways of giving the token, on the server.
    let schemes = document["components"]["securitySchemes"]
        .as_object()
        .unwrap();
    assert_eq!(schemes["bearer"]["type"], "http");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["token"]["type"], "httpApiKey");
    assert_eq!(schemes["token"]["in"], "query");
    assert_eq!(schemes["token"]["name"], "token");
    for server in document["servers"].as_object().unwrap().values() {
        assert_eq!(server["protocol"], "ws");
        assert_eq!(server["security"].as_array().unwrap().len(), 2);
    }

    // The HTTP description points here, and names the handshakes as the
    // channels are named.
    let openapi: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        openapi["paths"]["/ws/chat/{chat_id}/"]["get"]["operationId"],
        SEED
    );
    assert_eq!(openapi["paths"]["/ws/v2/"]["get"]["operationId"], V2);
}

#[test]
fn the_documents_examples_and_the_guides_validate() {
    let spec = Spec::load();
    for ((channel, direction), messages) in &spec.messages {
        for (key, validator) in messages {
            let message = &spec.document["components"]["messages"][key];
            let examples = message["examples"].as_array().unwrap();
            assert!(!examples.is_empty(), "{key} has no example");
            for example in examples {
                let payload = &example["payload"];
                assert!(validator.is_valid(payload), "{key}'s example: {payload}");
                assert_eq!(
                    spec.matching(channel, *direction, payload),
                    std::slice::from_ref(key),
                    "{key}'s example matches other messages: {payload}"
                );
            }
        }
    }

    // Every frame and object shown in docs/protocol.md.
    let guide =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/protocol.md"))
            .unwrap();
    let message_object = validator(&spec.document, "#/components/schemas/Message");
    let chat_object = validator(&spec.document, "#/components/schemas/ChatState");
    let mut checked = 0;
    let mut block: Option<(String, String)> = None;
    for line in guide.lines() {
        match (&mut block, line.strip_prefix("```")) {
            (None, Some(info)) if info.starts_with("json") => {
                block = Some((info.to_owned(), String::new()));
            }
            (Some(_), Some("")) => {
                let (info, text) = block.take().unwrap();
                let frame: Value = serde_json::from_str(&text).unwrap();
                let tags: Vec<&str> = info.split_whitespace().skip(1).collect();
                let valid = match tags.as_slice() {
                    ["v2-server"] => spec.matching(V2, Direction::ToClient, &frame).len() == 1,
                    ["v2-client"] => spec.matching(V2, Direction::ToServer, &frame).len() == 1,
                    ["seed-server"] => spec.matching(SEED, Direction::ToClient, &frame).len() == 1,
                    ["seed-client"] => spec.matching(SEED, Direction::ToServer, &frame).len() == 1,
                    ["v2-object", "message"] => message_object.is_valid(&frame),
                    ["v2-object", "chat"] => chat_object.is_valid(&frame),
                    ["rest"] => continue,
                    other => panic!("docs/protocol.md: unknown example kind {other:?}"),
                };
                assert!(
                    valid,
                    "docs/protocol.md ({info}) does not validate: {frame}"
                );
                checked += 1;
            }
            (Some((_, text)), _) => {
                text.push_str(line);
                text.push('\n');
            }
            _ => {}
        }
    }
    assert!(checked >= 20, "only {checked} examples in docs/protocol.md");
}

#[test]
fn wrong_frames_validate_against_nothing() {
    let spec = Spec::load();
    let message = json!({"id": 123, "chat_id": 1, "seq": 57, "sender_id": 1, "sender": "alice",
        "body": "Hello", "created": "2026-12-01T10:45:30.123Z", "client_id": "c-7f3a"});
    let seed_message = json!({"message": {"id": 1, "sender": "u", "body": "b",
        "created": "2025-05-02 10:45:30", "is_read": false}});
    // (channel, direction, a valid frame, what breaks it, the broken frame)
    let cases: Vec<(&str, Direction, Value, &str, Value)> = vec![
        (
            V2,
            Direction::ToServer,
            json!({"type": "send", "chat_id": 1, "client_id": "c-1", "body": "x"}),
            "no client_id",
            json!({"type": "send", "chat_id": 1, "body": "x"}),
        ),
        (
            V2,
            Direction::ToServer,
            json!({"type": "send", "chat_id": 1, "client_id": "c-1", "body": "x"}),
            "a client_id with a space",
            json!({"type": "send", "chat_id": 1, "client_id": "c 1", "body": "x"}),
        ),
        (
            V2,
            Direction::ToServer,
            json!({"type": "send", "chat_id": 1, "client_id": "c-1", "body": "x"}),
            "a chat_id that is a string",
            json!({"type": "send", "chat_id": "1", "client_id": "c-1", "body": "x"}),
        ),
        (
            V2,
            Direction::ToServer,
            json!({"type": "ping"}),
            "an unknown type",
            json!({"type": "shout"}),
        ),
        (
            V2,
            Direction::ToServer,
            json!({"type": "ping"}),
            "no type",
            json!({"ref": "p-1"}),
        ),
        (
            V2,
            Direction::ToServer,
            json!({"type": "ping", "ref": "x".repeat(64)}),
            "a ref of 65 characters",
            json!({"type": "ping", "ref": "x".repeat(65)}),
        ),
        (
            V2,
            Direction::ToServer,
            json!({"type": "ping", "ref": 7}),
            "a ref that is an object",
            json!({"type": "ping", "ref": {"a": 1}}),
        ),
        (
            V2,
            Direction::ToServer,
            json!({"type": "read", "chat_id": 1, "up_to": 0}),
            "a negative cursor",
            json!({"type": "read", "chat_id": 1, "up_to": -1}),
        ),
        (
            V2,
            Direction::ToServer,
            json!({"type": "typing", "chat_id": 1, "active": true}),
            "active as a string",
            json!({"type": "typing", "chat_id": 1, "active": "yes"}),
        ),
        (
            V2,
            Direction::ToServer,
            json!({"type": "history", "chat_id": 1, "before": 3, "after": null}),
            "before and after together",
            json!({"type": "history", "chat_id": 1, "before": 3, "after": 1}),
        ),
        (
            V2,
            Direction::ToServer,
            json!({"type": "history", "chat_id": 1, "limit": 200}),
            "a limit over 200",
            json!({"type": "history", "chat_id": 1, "limit": 201}),
        ),
        (
            V2,
            Direction::ToClient,
            json!({"type": "ack", "client_id": "c-7f3a", "duplicate": false, "message": message}),
            "an ack without duplicate",
            json!({"type": "ack", "client_id": "c-7f3a", "message": message}),
        ),
        (
            V2,
            Direction::ToClient,
            json!({"type": "pong", "ref": "p"}),
            "a field the server does not write",
            json!({"type": "pong", "ref": "p", "extra": 1}),
        ),
        (
            V2,
            Direction::ToClient,
            json!({"type": "pong"}),
            "an unknown type",
            json!({"type": "pang"}),
        ),
        (
            V2,
            Direction::ToClient,
            json!({"type": "error", "code": "conflict", "message": "m"}),
            "an undocumented error code",
            json!({"type": "error", "code": "nope", "message": "m"}),
        ),
        (
            V2,
            Direction::ToClient,
            json!({"type": "message", "message": message}),
            "a seed timestamp in a v2 message",
            json!({"type": "message",
                "message": with(&message, "created", json!("2026-12-01 10:45:30"))}),
        ),
        (
            V2,
            Direction::ToClient,
            json!({"type": "presence", "user_id": 2, "online": true, "last_seen": null}),
            "no last_seen",
            json!({"type": "presence", "user_id": 2, "online": true}),
        ),
        (
            SEED,
            Direction::ToServer,
            json!({"body": "x"}),
            "no body",
            json!({"text": "x"}),
        ),
        (
            SEED,
            Direction::ToServer,
            json!({"body": "x"}),
            "a body that is a number",
            json!({"body": 5}),
        ),
        (
            SEED,
            Direction::ToClient,
            seed_message.clone(),
            "a message without is_read",
            json!({"message": {"id": 1, "sender": "u", "body": "b", "created": "2025-05-02 10:45:30"}}),
        ),
        (
            SEED,
            Direction::ToClient,
            seed_message,
            "a v2 timestamp in a seed message",
            json!({"message": {"id": 1, "sender": "u", "body": "b",
                "created": "2025-05-02T10:45:30.000Z", "is_read": false}}),
        ),
        (
            SEED,
            Direction::ToClient,
            json!({"error": common::GENERIC_ERROR, "detail": "d"}),
            "another error text",
            json!({"error": "oops", "detail": "d"}),
        ),
    ];
    for (channel, direction, valid, why, wrong) in cases {
        assert_eq!(
            spec.matching(channel, direction, &valid).len(),
            1,
            "{channel} {direction:?}: the base of {why:?} does not validate: {valid}"
        );
        let matched = spec.matching(channel, direction, &wrong);
        assert!(
            matched.is_empty(),
            "{channel} {direction:?}: {why}: {wrong} validates as {matched:?}"
        );
    }
}

/// `object` with `field` set to `value`.
fn with(object: &Value, field: &str, value: Value) -> Value {
    let mut changed = object.clone();
    changed[field] = value;
    changed
}

// ---- real sessions ------------------------------------------------------

/// What a captured client frame is meant to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Intent {
    /// A frame the parser accepts (it may still be refused later, as an
    /// empty body is): it must match exactly one message.
    WellFormed,
    /// A frame the parser rejects: it must match no message.
    Malformed,
}

#[derive(Debug)]
struct Captured {
    channel: &'static str,
    direction: Direction,
    frame: Value,
    intent: Intent,
}

/// Every frame of every session, and the close codes the server closed
/// with, by channel.
#[derive(Default)]
struct Capture {
    frames: Vec<Captured>,
    /// Client frames that were not JSON at all (sent to provoke
    /// `bad_frame`): they cannot match a schema.
    not_json: Vec<(&'static str, String)>,
    closes: Vec<(&'static str, u16)>,
}

type Log = Rc<RefCell<Capture>>;

/// A socket whose every frame, both ways, goes into the log.
struct Tapped {
    socket: WsClient,
    channel: &'static str,
    log: Log,
}

impl Tapped {
    fn new(socket: WsClient, channel: &'static str, log: &Log) -> Self {
        Self {
            socket,
            channel,
            log: log.clone(),
        }
    }

    async fn send(&mut self, frame: Value) {
        self.record_sent(frame.clone(), Intent::WellFormed);
        self.socket.send_json(&frame).await;
    }

    /// Sends text the server's parser rejects.
    async fn send_malformed(&mut self, text: &str) {
        match serde_json::from_str::<Value>(text) {
            Ok(frame) => self.record_sent(frame, Intent::Malformed),
            Err(_) => self
                .log
                .borrow_mut()
                .not_json
                .push((self.channel, text.to_owned())),
        }
        self.socket.send_text(text).await;
    }

    async fn send_binary(&mut self) {
        self.socket
            .send_message(Message::Binary(vec![1, 2, 3].into()))
            .await;
    }

    fn record_sent(&self, frame: Value, intent: Intent) {
        self.log.borrow_mut().frames.push(Captured {
            channel: self.channel,
            direction: Direction::ToServer,
            frame,
            intent,
        });
    }

    fn record_received(&self, frame: &Value) {
        self.log.borrow_mut().frames.push(Captured {
            channel: self.channel,
            direction: Direction::ToClient,
            frame: frame.clone(),
            intent: Intent::WellFormed,
        });
    }

    /// The next frame, recorded; panics on close.
    async fn next(&mut self) -> Value {
        match self.socket.receive().await {
            Received::Json(frame) => {
                self.record_received(&frame);
                frame
            }
            Received::Close(code) => panic!("{}: closed ({code:?})", self.channel),
        }
    }

    /// Frames (all recorded) up to the first of `kind` for which `wanted`
    /// holds: the order of events of different sources is not fixed.
    async fn until(&mut self, kind: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        loop {
            let frame = self.next().await;
            if frame["type"] == kind && wanted(&frame) {
                return frame;
            }
        }
    }

    async fn expect(&mut self, kind: &str) -> Value {
        self.until(kind, |_| true).await
    }

    /// The next `error` with `code`, skipping (recording) anything else.
    async fn expect_error(&mut self, code: &str) -> Value {
        self.until("error", |f| f["code"] == code).await
    }

    /// The next seed frame, which must be an error.
    async fn expect_seed_error(&mut self) -> Value {
        let frame = self.next().await;
        assert_eq!(frame["error"], common::GENERIC_ERROR, "{frame}");
        frame
    }

    /// Records everything that arrives until nothing has for `quiet`.
    async fn drain(&mut self, quiet: Duration) {
        while let Some(received) = self.socket.receive_until_gone_within(quiet).await {
            match received {
                Received::Json(frame) => self.record_received(&frame),
                Received::Close(code) => {
                    panic!("{}: closed ({code:?}) while draining", self.channel)
                }
            }
        }
    }

    /// Reads (and records) frames until the server closes; its code.
    async fn closed_with(&mut self, within: Duration) -> u16 {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.socket.receive_until_gone_within(left).await {
                Some(Received::Json(frame)) => self.record_received(&frame),
                Some(Received::Close(Some(code))) => {
                    self.log.borrow_mut().closes.push((self.channel, code));
                    return code;
                }
                Some(Received::Close(None)) => panic!("{}: closed without a code", self.channel),
                None => panic!("{}: not closed within {within:?}", self.channel),
            }
        }
    }

    /// Closes with 1000 and reads the server's echo.
    async fn close(mut self) {
        self.socket
            .send_message(Message::Close(Some(CloseReason::from(CloseCode::Normal))))
            .await;
        assert_eq!(self.closed_with(Duration::from_secs(5)).await, 1000);
    }
}

/// How a socket gives its token.
#[derive(Clone, Copy)]
enum Auth {
    Query,
    Bearer,
}

async fn open(api: &Api, user: &TestUser, path: &str, auth: Auth) -> WsClient {
    let result = match auth {
        Auth::Query => {
            api.try_connect(&format!("{path}?token={}", user.token), None)
                .await
        }
        Auth::Bearer => api.try_connect(path, Some(&user.token)).await,
    };
    result.unwrap_or_else(|status| panic!("{path} refused with {status}"))
}

async fn seed_socket(api: &Api, user: &TestUser, chat: i64, auth: Auth, log: &Log) -> Tapped {
    let socket = open(api, user, &format!("/ws/chat/{chat}/"), auth).await;
    Tapped::new(socket, SEED, log)
}

/// A v2 socket, its `hello` read (and recorded).
async fn v2_socket(api: &Api, user: &TestUser, auth: Auth, log: &Log) -> (Tapped, Value) {
    let mut socket = Tapped::new(open(api, user, "/ws/v2/", auth).await, V2, log);
    let hello = socket.next().await;
    assert_eq!(hello["type"], "hello", "{hello}");
    (socket, hello)
}

fn send(chat: i64, client_id: &str, body: &str) -> Value {
    json!({"type": "send", "chat_id": chat, "client_id": client_id, "body": body})
}

/// The seed socket: sends, replays, errors of every kind it has.
async fn seed_session(api: &Api, log: &Log, alice: &TestUser, bob: &TestUser, chat: i64) {
    let mut socket = seed_socket(api, alice, chat, Auth::Query, log).await;
    socket.send(json!({"body": "Hello, seed"})).await;
    assert_eq!(socket.next().await["message"]["body"], "Hello, seed");
    // Unknown fields are ignored.
    socket
        .send(json!({"body": "with extras", "extra": [1], "type": "send"}))
        .await;
    assert_eq!(socket.next().await["message"]["body"], "with extras");
    // Parsed, then refused by the message rules.
    socket.send(json!({"body": ""})).await;
    socket.expect_seed_error().await;
    socket.send(json!({"body": "x".repeat(4097)})).await;
    socket.expect_seed_error().await;
    // Rejected by the parser.
    for text in [
        r#"{"text": "no body"}"#,
        r#"{"body": 5}"#,
        "[1]",
        "not json",
    ] {
        socket.send_malformed(text).await;
        socket.expect_seed_error().await;
    }
    socket.send_binary().await;
    socket.expect_seed_error().await;

    // Bob, by header: the history replayed, then live messages.
    let mut other = seed_socket(api, bob, chat, Auth::Bearer, log).await;
    assert_eq!(other.next().await["message"]["body"], "Hello, seed");
    assert_eq!(other.next().await["message"]["body"], "with extras");
    other.send(json!({"body": "Hi alice"})).await;
    for socket in [&mut socket, &mut other] {
        assert_eq!(socket.next().await["message"]["body"], "Hi alice");
    }
    // A frame over the limit closes with 1009.
    other.socket.send_text(&"x".repeat(70_000)).await;
    assert_eq!(other.closed_with(Duration::from_secs(5)).await, 1009);
    socket.close().await;
}

#[allow(clippy::too_many_lines)] // one session, read top to bottom
async fn v2_session(
    api: &Api,
    log: &Log,
    (alice, bob, carol): (&TestUser, &TestUser, &TestUser),
    chat: i64,
    not_alices: i64,
) {
    let (mut a, hello) = v2_socket(api, alice, Auth::Query, log).await;
    assert_eq!(hello["chats"][0]["id"], chat, "{hello}");
    let (mut b, _) = v2_socket(api, bob, Auth::Bearer, log).await;

    // send: ack, its duplicate, message to the other side; a conflict.
    a.send(send(chat, "a-1", "Hello, v2")).await;
    let ack = a.expect("ack").await;
    assert_eq!(ack["duplicate"], false, "{ack}");
    let seq = ack["message"]["seq"].as_i64().unwrap();
    b.until("message", |f| f["message"]["seq"] == seq).await;
    a.send(send(chat, "a-1", "Hello, v2")).await;
    assert_eq!(a.expect("ack").await["duplicate"], true);
    a.send(json!({"type": "send", "chat_id": chat, "client_id": "a-1",
        "body": "another body", "ref": 12}))
        .await;
    let conflict = a.expect_error("conflict").await;
    assert_eq!(
        (&conflict["client_id"], &conflict["ref"]),
        (&json!("a-1"), &json!(12))
    );

    // Refused after parsing, in the documented order.
    a.send(json!({"type": "send", "chat_id": 999_999, "client_id": "a-2", "body": "x"}))
        .await;
    a.expect_error("unknown_chat").await;
    a.send(send(not_alices, "a-2", "x")).await;
    a.expect_error("not_participant").await;
    a.send(json!({"type": "send", "chat_id": chat, "client_id": "a-2", "body": "", "ref": "s-1"}))
        .await;
    assert_eq!(a.expect_error("empty").await["ref"], "s-1");
    a.send(send(chat, "a-2", &"x".repeat(4097))).await;
    a.expect_error("too_long").await;
    // Parsed, but no message can hold a NUL: bad_frame too.
    a.send(send(chat, "a-2", "a\u{0}b")).await;
    a.expect_error("bad_frame").await;

    // Rejected by the parser: bad_frame, echoing what can be echoed.
    for (text, client_id, reference) in [
        (
            r#"{"type": "shout", "ref": 1}"#.to_owned(),
            None,
            Some(json!(1)),
        ),
        (
            format!(r#"{{"type": "send", "chat_id": {chat}, "body": "x"}}"#),
            None,
            None,
        ),
        (
            format!(
                r#"{{"type": "send", "chat_id": {chat}, "client_id": "has space", "body": "x"}}"#
            ),
            Some("has space"),
            None,
        ),
        (
            format!(
                r#"{{"type": "history", "chat_id": {chat}, "before": 3, "after": 1, "ref": "h-x"}}"#
            ),
            None,
            Some(json!("h-x")),
        ),
        (
            format!(r#"{{"type": "typing", "chat_id": {chat}}}"#),
            None,
            None,
        ),
        (
            format!(r#"{{"type": "read", "chat_id": {chat}, "up_to": -1}}"#),
            None,
            None,
        ),
        (
            format!(r#"{{"type": "ping", "ref": "{}"}}"#, "r".repeat(65)),
            None,
            None,
        ),
        (
            r#"{"ref": "no type"}"#.to_owned(),
            None,
            Some(json!("no type")),
        ),
        ("[1]".to_owned(), None, None),
        ("not json".to_owned(), None, None),
    ] {
        a.send_malformed(&text).await;
        let error = a.expect_error("bad_frame").await;
        assert_eq!(
            error.get("client_id").and_then(Value::as_str),
            client_id,
            "{text}: {error}"
        );
        assert_eq!(error.get("ref"), reference.as_ref(), "{text}: {error}");
    }
    a.send_binary().await;
    a.expect_error("bad_frame").await;

    // Cursors: bob reads (clamped to the head; reading implies delivery),
    // alice marks bob's message delivered, then read.
    b.send(json!({"type": "read", "chat_id": chat, "up_to": 1000}))
        .await;
    for socket in [&mut a, &mut b] {
        socket
            .until("read", |f| f["user_id"] == bob.id && f["up_to"] == seq)
            .await;
        socket.until("delivered", |f| f["user_id"] == bob.id).await;
    }
    b.send(send(chat, "b-1", "from bob")).await;
    let bobs = b.expect("ack").await["message"]["seq"].as_i64().unwrap();
    a.until("message", |f| f["message"]["seq"] == bobs).await;
    a.send(json!({"type": "delivered", "chat_id": chat, "up_to": bobs}))
        .await;
    b.until("delivered", |f| {
        f["user_id"] == alice.id && f["up_to"] == bobs
    })
    .await;
    a.send(json!({"type": "read", "chat_id": chat, "up_to": bobs, "ref": null}))
        .await;
    b.until("read", |f| f["user_id"] == alice.id && f["up_to"] == bobs)
        .await;
    a.send(json!({"type": "delivered", "chat_id": 999_999, "up_to": 1}))
        .await;
    a.expect_error("unknown_chat").await;

    // Typing, both ways; unknown chats are errors.
    b.send(json!({"type": "typing", "chat_id": chat, "active": true}))
        .await;
    a.until("typing", |f| f["active"] == true && f["user_id"] == bob.id)
        .await;
    b.send(json!({"type": "typing", "chat_id": chat, "active": false}))
        .await;
    a.until("typing", |f| f["active"] == false).await;
    b.send(json!({"type": "typing", "chat_id": 999_999, "active": true}))
        .await;
    b.expect_error("unknown_chat").await;

    // History: newest, after, before; errors echo the ref.
    a.send(json!({"type": "history", "chat_id": chat, "ref": "h-1"}))
        .await;
    let page = a.expect("history").await;
    assert_eq!(
        (&page["ref"], &page["has_more"]),
        (&json!("h-1"), &json!(false))
    );
    a.send(json!({"type": "history", "chat_id": chat, "after": 0, "limit": 1, "ref": 7}))
        .await;
    let page = a.expect("history").await;
    assert_eq!((&page["ref"], &page["has_more"]), (&json!(7), &json!(true)));
    a.send(json!({"type": "history", "chat_id": chat, "before": 2, "after": null, "limit": null}))
        .await;
    assert!(a.expect("history").await.get("ref").is_none());
    a.send(json!({"type": "history", "chat_id": not_alices, "ref": "h-2"}))
        .await;
    assert_eq!(a.expect_error("not_participant").await["ref"], "h-2");

    // Ping, with and without a ref; unknown fields are ignored.
    a.send(json!({"type": "ping", "ref": "p-1"})).await;
    assert_eq!(a.expect("pong").await["ref"], "p-1");
    a.send(json!({"type": "ping", "ref": 2.5, "extra": {"a": 1}}))
        .await;
    assert_eq!(a.expect("pong").await["ref"], 2.5);
    a.send(json!({"type": "ping"})).await;
    assert!(a.expect("pong").await.get("ref").is_none());

    // A new chat, then its other user's presence: online, then offline
    // once the grace period is over.
    let new_chat = api.chat(carol, alice).await;
    let event = a.until("chat", |f| f["chat"]["id"] == new_chat).await;
    assert_eq!(event["chat"]["other_user"]["online"], false, "{event}");
    let (c, _) = v2_socket(api, carol, Auth::Query, log).await;
    a.until("presence", |f| {
        f["user_id"] == carol.id && f["online"] == true
    })
    .await;
    c.close().await;
    let gone = a
        .until("presence", |f| {
            f["user_id"] == carol.id && f["online"] == false
        })
        .await;
    assert!(gone["last_seen"].is_string(), "{gone}");

    // A frame over the limit closes with 1009.
    b.socket.send_text(&"x".repeat(70_000)).await;
    assert_eq!(b.closed_with(Duration::from_secs(5)).await, 1009);
    a.drain(Duration::from_millis(300)).await;
    a.close().await;
}

/// A server with tight limits: the rate limit on both sockets, a v2
/// socket outliving its token (4001), and a logout closing a seed socket
/// (4001).
async fn limits_session(log: &Log) {
    let app = spawn_app_with(&["--ws-rate", "0.001", "--ws-burst", "2", "--token-ttl", "3s"]).await;
    let (dave, erin, chat) = app.two_users_and_a_chat().await;
    let (mut d, _) = v2_socket(&app, &dave, Auth::Query, log).await;
    d.send(send(chat, "d-1", "one")).await;
    d.send(send(chat, "d-2", "two")).await;
    d.send(
        json!({"type": "send", "chat_id": chat, "client_id": "d-3", "body": "three", "ref": "r-3"}),
    )
    .await;
    let limited = d.expect_error("rate_limited").await;
    assert_eq!(
        (&limited["client_id"], &limited["ref"]),
        (&json!("d-3"), &json!("r-3"))
    );
    // The seed socket's rate is the user's too.
    let mut seed = seed_socket(&app, &erin, chat, Auth::Bearer, log).await;
    seed.send(json!({"body": "one"})).await;
    seed.send(json!({"body": "two"})).await;
    seed.send(json!({"body": "three"})).await;
    loop {
        let frame = seed.next().await;
        if frame.get("error").is_some() {
            assert!(
                frame["detail"].as_str().unwrap().contains("too many"),
                "{frame}"
            );
            break;
        }
    }
    assert_eq!(d.closed_with(Duration::from_secs(10)).await, 4001);
    seed.close().await;

    // Logging out closes the account's sockets, seed ones too, with 4001.
    let dave = relogin(&app, &dave).await;
    let mut seed = seed_socket(&app, &dave, chat, Auth::Query, log).await;
    seed.drain(Duration::from_millis(200)).await;
    let out = app
        .post_json("/api/auth/logout/", Some(&dave.token), &json!({}))
        .await;
    assert_eq!(out.status, 204, "{out:?}");
    assert_eq!(seed.closed_with(Duration::from_secs(10)).await, 4001);

    // Shutting down closes every socket with 1001 (fresh tokens: the
    // first ones have expired or were revoked).
    let (erin, dave) = (relogin(&app, &erin).await, relogin(&app, &dave).await);
    let (mut v2, _) = v2_socket(&app, &erin, Auth::Bearer, log).await;
    let mut seed = seed_socket(&app, &dave, chat, Auth::Query, log).await;
    seed.drain(Duration::from_millis(200)).await;
    let stopping = app.stop();
    let closes = async {
        (
            v2.closed_with(Duration::from_secs(10)).await,
            seed.closed_with(Duration::from_secs(10)).await,
        )
    };
    let ((), codes) = futures_util::join!(stopping, closes);
    assert_eq!(codes, (1001, 1001));
}

async fn relogin(api: &Api, user: &TestUser) -> TestUser {
    let login = api.login(&user.username, "correct horse battery").await;
    assert_eq!(login.status, 200, "{login:?}");
    TestUser {
        token: login.body["token"].as_str().unwrap().to_owned(),
        ..user.clone()
    }
}

#[actix_web::test]
async fn every_frame_of_real_sessions_matches_the_document() {
    let spec = Spec::load();
    let log = Log::default();
    {
        let app = spawn_app_with(&["--typing-ttl", "400ms", "--presence-grace", "400ms"]).await;
        let (alice, bob, chat) = app.two_users_and_a_chat().await;
        let carol = app.user("carol").await;
        let not_alices = app.chat(&bob, &carol).await;
        seed_session(&app, &log, &alice, &bob, chat).await;
        v2_session(&app, &log, (&alice, &bob, &carol), chat, not_alices).await;
    }
    limits_session(&log).await;

    let capture = log.borrow();
    let mut failures = Vec::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut codes: BTreeSet<String> = BTreeSet::new();
    let mut variants: BTreeSet<String> = BTreeSet::new();
    for captured in &capture.frames {
        let matched = spec.matching(captured.channel, captured.direction, &captured.frame);
        let ok = match captured.intent {
            Intent::WellFormed => matched.len() == 1,
            Intent::Malformed => matched.is_empty(),
        };
        if !ok {
            failures.push(format!(
                "{} {:?} {:?} frame matches {matched:?}: {}",
                captured.channel, captured.direction, captured.intent, captured.frame
            ));
        }
        if captured.intent == Intent::WellFormed {
            seen.extend(matched);
        }
        let frame = &captured.frame;
        if captured.channel == V2 && captured.direction == Direction::ToClient {
            match frame["type"].as_str() {
                Some("error") => {
                    codes.insert(frame["code"].as_str().unwrap_or_default().to_owned());
                }
                Some(kind @ ("ack" | "presence" | "typing")) => {
                    let flag = &frame[match kind {
                        "ack" => "duplicate",
                        "presence" => "online",
                        _ => "active",
                    }];
                    variants.insert(format!("{kind} {flag}"));
                }
                _ => {}
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} frames do not match the document:\n{}",
        failures.len(),
        capture.frames.len(),
        failures.join("\n")
    );
    for (channel, text) in &capture.not_json {
        assert!(
            serde_json::from_str::<Value>(text).is_err(),
            "{channel}: {text}"
        );
    }

    // Every message of the document was seen.
    let not_provoked: BTreeSet<String> = MESSAGES_NOT_PROVOKED
        .iter()
        .map(|(key, _)| (*key).to_owned())
        .collect();
    let unseen: Vec<String> = spec
        .all_messages()
        .into_iter()
        .filter(|key| !seen.contains(key) && !not_provoked.contains(key))
        .collect();
    assert!(unseen.is_empty(), "never seen: {unseen:?}");
    // And every error code, but those listed with a reason.
    let documented: BTreeSet<String> = spec.document["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|code| code.as_str().unwrap().to_owned())
        .collect();
    let expected: BTreeSet<String> = documented
        .iter()
        .filter(|code| CODES_NOT_PROVOKED.iter().all(|(c, _)| c != code))
        .cloned()
        .collect();
    assert_eq!(codes, expected, "error codes seen");
    for variant in [
        "ack false",
        "ack true",
        "presence true",
        "presence false",
        "typing true",
        "typing false",
    ] {
        assert!(variants.contains(variant), "never seen: {variant}");
    }

    // Close codes seen are documented for their channel.
    for (channel, code) in &capture.closes {
        let documented = &spec.document["channels"][channel]["x-close-codes"];
        assert!(
            documented.get(code.to_string()).is_some(),
            "{channel} closed with {code}, which is not documented"
        );
    }
    let closes: BTreeSet<(&str, u16)> = capture.closes.iter().copied().collect();
    for close in [
        (SEED, 1000),
        (SEED, 1001),
        (SEED, 1009),
        (SEED, 4001),
        (V2, 1000),
        (V2, 1001),
        (V2, 1009),
        (V2, 4001),
    ] {
        assert!(closes.contains(&close), "never closed with {close:?}");
    }
    eprintln!(
        "{} frames ({} sent, {} not JSON), {} closes",
        capture.frames.len(),
        capture
            .frames
            .iter()
            .filter(|f| f.direction == Direction::ToServer)
            .count(),
        capture.not_json.len(),
        capture.closes.len()
    );
}
