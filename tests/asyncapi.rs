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
            channel["messages"].as_object().is_some_and(|m| !m.is_empty()),
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
    // Seed sockets are not closed on expiry.
    assert!(!channels[SEED]["x-close-codes"]
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
                    [key.clone()],
                    "{key}'s example matches other messages: {payload}"
                );
            }
        }
    }

    // Every frame and object shown in docs/protocol.md.
    let guide = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/protocol.md"),
    )
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
                assert!(valid, "docs/protocol.md ({info}) does not validate: {frame}");
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
