//! Property tests of the wire edges: WebSocket frame parsing and writing,
//! the bearer-token and `?token=` extraction, JWTs, and the DTOs' serde.
//! What a client sends is arbitrary, so these run on arbitrary input; the
//! frame parser and the token extractor are also fuzzed (`make fuzz`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use actix_web::http::header::{HeaderValue, AUTHORIZATION};
use actix_web::test::TestRequest;
use chat_api::auth::{bearer_token, query_token, JwtSecret, JwtTokens};
use chat_api::rest::dto::{CreateChatRequest, CredentialsRequest, UserDto};
use chat_api::wire::seed::{
    error_frame, message_frame, parse_send_frame, FrameError, GENERIC_ERROR, WS_TIME_FORMAT,
};
use chat_api::wire::v2::parse::parse_any_frame;
use chat_api::wire::v2::{parse_client_frame, ClientFrame};
use chat_domain::chat::{ChatId, ClientId, DirectMessage, MessageId, PageAnchor, PageLimit, Seq};
use chat_domain::user::{TokenError, TokenGeneration, TokenIssuer, User, UserId, Username};
use chrono::{DateTime, Utc};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

// --- Strategies -------------------------------------------------------------

/// Any JSON value, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((any::<String>(), inner), 0..4)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// Text that is often almost JSON, where a parser's corner cases are.
fn jsonish_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\\[\\]{}\":,.0-9a-z \\\\+eE-]{0,40}",
        "\\{ ?\"body\" ?: ?\"?[^\"]{0,12}\"?,? ?\\}?",
        "\\{\"body\": ?\"(\\\\u[0-9a-fA-F]{0,4}|\\\\.|[^\"\\\\]){0,6}\"\\}",
        json_value().prop_map(|v| v.to_string()),
    ]
}

fn username() -> impl Strategy<Value = String> {
    prop_oneof!["[a-zA-Z0-9@.+_-]{1,150}", "[a-zé用٣Ж_.]{1,40}",]
}

/// Times a message can have: 1970 to the end of year 9999 (four-digit years).
fn created() -> impl Strategy<Value = DateTime<Utc>> {
    (0i64..=253_402_300_799).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap())
}

/// Every byte outside RFC 3986's unreserved set as `%XX`.
fn percent_encode(raw: &str) -> String {
    raw.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Query parameters other than `token`.
fn other_params() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        ("[a-su-z][a-z_]{0,6}", any::<String>())
            .prop_map(|(k, v)| format!("{k}={}", percent_encode(&v))),
        0..3,
    )
}

const KEY: &[u8] = b"property-test-key-of-32-bytes!!!";

fn tokens() -> JwtTokens {
    JwtTokens::new(&JwtSecret::new(KEY).unwrap(), Duration::from_secs(3600))
}

fn request_with_authorization(value: HeaderValue) -> actix_web::HttpRequest {
    TestRequest::default()
        .insert_header((AUTHORIZATION, value))
        .to_http_request()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    // --- parse_send_frame ---------------------------------------------------

    #[test]
    fn any_text_parses_or_is_refused_without_panicking(text in jsonish_text()) {
        let parsed = parse_send_frame(&text);
        let is_json = serde_json::from_str::<Value>(&text).is_ok();
        prop_assert_eq!(parsed == Err(FrameError::NotJson), !is_json);
    }

    #[test]
    fn the_body_of_a_serialised_frame_comes_back_exactly(body in any::<String>()) {
        let frame = json!({ "body": body });
        prop_assert_eq!(parse_send_frame(&frame.to_string()), Ok(body.clone()));
        let pretty = serde_json::to_string_pretty(&frame).unwrap();
        prop_assert_eq!(parse_send_frame(&pretty), Ok(body));
    }

    #[test]
    fn other_fields_are_ignored_wherever_the_body_is(
        body in any::<String>(),
        extra in prop::collection::vec(
            (any::<String>().prop_filter("not body", |k| k != "body"), json_value()),
            0..5,
        ),
        at in any::<prop::sample::Index>(),
    ) {
        let mut fields: Vec<String> = extra
            .iter()
            .map(|(k, v)| format!("{}:{v}", Value::from(k.as_str())))
            .collect();
        fields.insert(at.index(fields.len() + 1), format!("\"body\":{}", Value::from(body.as_str())));
        let text = format!("{{{}}}", fields.join(","));
        prop_assert_eq!(parse_send_frame(&text), Ok(body));
    }

    #[test]
    fn a_body_that_is_not_a_string_is_refused_as_such(
        body in json_value().prop_filter("not a string", |v| !v.is_string()),
    ) {
        let text = json!({ "body": body }).to_string();
        prop_assert_eq!(parse_send_frame(&text), Err(FrameError::BodyNotAString));
    }

    #[test]
    fn a_frame_that_is_not_an_object_is_refused_as_such(
        value in json_value().prop_filter("not an object", |v| !v.is_object()),
    ) {
        prop_assert_eq!(parse_send_frame(&value.to_string()), Err(FrameError::NotAnObject));
    }

    #[test]
    fn an_object_without_a_body_is_refused_as_such(
        fields in prop::collection::vec(
            (any::<String>().prop_filter("not body", |k| k != "body"), json_value()),
            0..5,
        ),
    ) {
        let object: Map<String, Value> = fields.into_iter().collect();
        prop_assert_eq!(
            parse_send_frame(&Value::Object(object).to_string()),
            Err(FrameError::MissingBody)
        );
    }

    // --- message_frame and error_frame ----------------------------------------

    #[test]
    fn a_message_frame_always_has_the_documented_shape(
        id in any::<i64>(),
        sender in username(),
        body in any::<String>(),
        created in created(),
        is_read in any::<bool>(),
    ) {
        let message = DirectMessage {
            id: MessageId::new(id),
            chat_id: ChatId::new(1),
            sender: User { id: UserId::new(2), username: Username::parse(&sender).unwrap() },
            body: body.clone(),
            created,
            seq: Seq::new(1).unwrap(),
            client_id: None,
        };
        let frame: Value = serde_json::from_str(&message_frame(&message, is_read)).unwrap();
        let time = created.format(WS_TIME_FORMAT).to_string();
        prop_assert_eq!(
            frame,
            json!({"message": {"id": id, "sender": sender, "body": body,
                               "created": time, "is_read": is_read}})
        );
        // `YYYY-MM-DD HH:MM:SS`
        let shape: String = time
            .chars()
            .map(|c| if c.is_ascii_digit() { '9' } else { c })
            .collect();
        prop_assert_eq!(shape, "9999-99-99 99:99:99");
    }

    #[test]
    fn an_error_frame_always_has_the_documented_shape(detail in any::<String>()) {
        let frame: Value = serde_json::from_str(&error_frame(&detail)).unwrap();
        prop_assert_eq!(frame, json!({"error": GENERIC_ERROR, "detail": detail}));
    }

    // --- Token extraction -------------------------------------------------------

    #[test]
    fn a_bearer_header_yields_its_token_whatever_the_scheme_case(
        upper in prop::collection::vec(any::<bool>(), 6),
        token in "[A-Za-z0-9._~+/=-]{1,300}",
        padding in " {0,3}",
    ) {
        let scheme: String = "bearer"
            .chars()
            .zip(upper)
            .map(|(c, up)| if up { c.to_ascii_uppercase() } else { c })
            .collect();
        let value = HeaderValue::from_str(&format!("{scheme} {padding}{token}{padding}")).unwrap();
        let found = bearer_token(&request_with_authorization(value)).map_err(|e| e.to_string());
        prop_assert_eq!(found, Ok(Some(token)));
    }

    #[test]
    fn any_authorization_header_yields_a_bearer_token_or_a_refusal(
        raw in prop_oneof![
            any::<Vec<u8>>(),
            "(?i:bearer)?[ \t]{0,2}[ -~]{0,20}".prop_map(String::into_bytes),
        ],
    ) {
        // Bytes an HTTP header cannot carry never reach the extractor.
        let Ok(value) = HeaderValue::from_bytes(&raw) else { return Ok(()) };
        match bearer_token(&request_with_authorization(value)) {
            Ok(None) => prop_assert!(false, "a present header is never 'no token'"),
            Ok(Some(token)) => {
                let text = std::str::from_utf8(&raw).unwrap();
                prop_assert!(text[..7].eq_ignore_ascii_case("bearer "), "{text:?}");
                prop_assert_eq!(text[7..].trim(), token.as_str());
                prop_assert!(!token.is_empty());
            }
            Err(e) => prop_assert_eq!(e.to_string().is_empty(), false),
        }
    }

    #[test]
    fn a_query_token_is_percent_decoded_among_other_parameters(
        token in prop_oneof![any::<String>(), "[A-Za-z0-9._-]{1,300}"]
            .prop_filter("non-empty", |t| !t.is_empty()),
        before in other_params(),
        after in other_params(),
    ) {
        let mut params = before;
        params.push(format!("token={}", percent_encode(&token)));
        params.extend(after);
        prop_assert_eq!(query_token(&params.join("&")), Some(token));
    }

    #[test]
    fn any_query_yields_a_non_empty_token_or_none(query in prop_oneof![
        any::<String>(),
        "(token=)?[%&=+a-z0-9]{0,20}(&token=[%a-z0-9]{0,4})?",
    ]) {
        if let Some(token) = query_token(&query) {
            prop_assert!(!token.is_empty());
            prop_assert!(query.contains("token"));
        }
    }

    #[test]
    fn a_query_without_a_token_parameter_yields_none(params in other_params()) {
        prop_assert_eq!(query_token(&params.join("&")), None);
    }

    // --- DTOs --------------------------------------------------------------------

    #[test]
    fn a_create_chat_request_takes_any_integer_user_id(id in any::<i64>()) {
        let request: CreateChatRequest =
            serde_json::from_str(&format!("{{\"user_id\": {id}}}")).unwrap();
        prop_assert_eq!(request.try_into_domain().map_err(|e| e.to_string()), Ok(UserId::new(id)));
    }

    #[test]
    fn a_create_chat_request_refuses_fractions_and_ids_beyond_i64(
        user_id in prop_oneof![
            any::<f64>().prop_filter("a fraction", |f| f.is_finite() && f.fract() != 0.0)
                .prop_map(Value::from),
            ((i64::MAX as u64 + 1)..=u64::MAX).prop_map(Value::from),
        ],
    ) {
        let request: CreateChatRequest =
            serde_json::from_value(json!({ "user_id": user_id })).unwrap();
        prop_assert!(request.try_into_domain().is_err());
    }

    #[test]
    fn credentials_are_read_exactly_as_sent(username in any::<String>(), password in any::<String>()) {
        let text = json!({"username": username, "password": password}).to_string();
        let request: CredentialsRequest = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(request.username, username);
        prop_assert_eq!(request.password, password);
    }

    #[test]
    fn a_user_is_written_as_its_id_and_name(id in any::<i64>(), name in username()) {
        let user = User { id: UserId::new(id), username: Username::parse(&name).unwrap() };
        let written = serde_json::to_value(UserDto::from(&user)).unwrap();
        prop_assert_eq!(written, json!({"id": id, "username": name}));
    }
}

// JWTs: fewer cases, each signs or verifies an HMAC.
proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_token_issued_for_any_user_verifies_back_to_that_user(id in any::<i64>()) {
        let tokens = tokens();
        let token = tokens.issue(UserId::new(id), TokenGeneration(0)).unwrap();
        prop_assert_eq!(tokens.verify(token.as_ref()).map(|v| v.user), Ok(UserId::new(id)));
    }

    #[test]
    fn any_single_byte_change_to_a_token_is_refused(
        id in any::<i64>(),
        at in any::<prop::sample::Index>(),
        // ASCII, so the changed token is still text a client could send.
        byte in 0u8..0x80,
    ) {
        let tokens = tokens();
        let token = tokens.issue(UserId::new(id), TokenGeneration(0)).unwrap();
        let mut bytes = token.as_ref().as_bytes().to_vec();
        let i = at.index(bytes.len());
        prop_assume!(bytes[i] != byte);
        bytes[i] = byte;
        let changed = String::from_utf8(bytes).unwrap();
        prop_assert_eq!(tokens.verify(&changed), Err(TokenError::Invalid), "{} at {}", changed, i);
    }

    #[test]
    fn a_token_signed_with_any_other_key_is_refused(
        id in any::<i64>(),
        other in prop::collection::vec(any::<u8>(), 32..=64).prop_filter("another key", |k| k != KEY),
    ) {
        let forged = JwtTokens::new(&JwtSecret::new(other).unwrap(), Duration::from_secs(3600))
            .issue(UserId::new(id), TokenGeneration(0))
            .unwrap();
        prop_assert_eq!(tokens().verify(forged.as_ref()), Err(TokenError::Invalid));
    }

    #[test]
    fn arbitrary_text_is_never_a_valid_token(text in jsonish_text()) {
        prop_assert_eq!(tokens().verify(&text), Err(TokenError::Invalid));
    }
}

// --- The v2 client frame parser -------------------------------------------

/// A valid `client_id`: 1 to 64 printable ASCII characters without space.
fn client_id() -> impl Strategy<Value = String> {
    "[!-~]{1,64}"
}

/// Something that is not a valid `client_id`.
fn invalid_client_id() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[!-~]{65,80}",
        "[!-~]{0,10}[ \t\u{7f}\u{e9}\u{1F600}][!-~]{0,10}",
    ]
}

/// A well-formed client frame and its JSON.
fn client_frame() -> impl Strategy<Value = (ClientFrame, Value)> {
    let chat = any::<i64>();
    let cursor = 0..=i64::MAX;
    prop_oneof![
        (chat, client_id(), any::<String>()).prop_map(|(chat, client_id, body)| (
            ClientFrame::Send {
                chat_id: ChatId::new(chat),
                client_id: ClientId::parse(&client_id).unwrap(),
                body: body.clone(),
            },
            json!({"type": "send", "chat_id": chat, "client_id": client_id, "body": body}),
        )),
        (chat, cursor.clone(), any::<bool>()).prop_map(|(chat, up_to, read)| {
            let up_to_seq = Seq::new(up_to).unwrap();
            let frame = if read {
                ClientFrame::Read {
                    chat_id: ChatId::new(chat),
                    up_to: up_to_seq,
                }
            } else {
                ClientFrame::Delivered {
                    chat_id: ChatId::new(chat),
                    up_to: up_to_seq,
                }
            };
            let kind = if read { "read" } else { "delivered" };
            (
                frame,
                json!({"type": kind, "chat_id": chat, "up_to": up_to}),
            )
        }),
        (chat, any::<bool>()).prop_map(|(chat, active)| (
            ClientFrame::Typing {
                chat_id: ChatId::new(chat),
                active
            },
            json!({"type": "typing", "chat_id": chat, "active": active}),
        )),
        (
            chat,
            prop::option::of((any::<bool>(), cursor)),
            prop::option::of(1usize..=200)
        )
            .prop_map(|(chat, anchor, limit)| {
                let mut json = json!({"type": "history", "chat_id": chat});
                let anchor = match anchor {
                    None => PageAnchor::Newest,
                    Some((true, seq)) => {
                        json["before"] = json!(seq);
                        PageAnchor::Before(Seq::new(seq).unwrap())
                    }
                    Some((false, seq)) => {
                        json["after"] = json!(seq);
                        PageAnchor::After(Seq::new(seq).unwrap())
                    }
                };
                if let Some(limit) = limit {
                    json["limit"] = json!(limit);
                }
                let limit = limit.map_or(PageLimit::DEFAULT, |l| PageLimit::new(l).unwrap());
                (
                    ClientFrame::History {
                        chat_id: ChatId::new(chat),
                        anchor,
                        limit,
                    },
                    json,
                )
            }),
        Just((ClientFrame::Ping, json!({"type": "ping"}))),
    ]
}

/// A valid `ref`: a short string or a number.
fn reference() -> impl Strategy<Value = Value> {
    prop_oneof![
        "\\PC{0,64}".prop_map(Value::String),
        any::<i64>().prop_map(Value::from),
        // serde_json reads some long floats back one ULP off (without its
        // `float_roundtrip` feature): that is JSON's reader, not the parser.
        any::<f64>()
            .prop_filter("finite and read back exactly", |f| {
                f.is_finite()
                    && serde_json::to_string(f)
                        .ok()
                        .and_then(|text| serde_json::from_str::<f64>(&text).ok())
                        == Some(*f)
            })
            .prop_map(Value::from),
    ]
}

proptest! {
    #[test]
    fn the_v2_parser_never_panics_and_explains_every_refusal(text in jsonish_text()) {
        let parsed = parse_client_frame(&text);
        if let Err(bad) = parsed.frame {
            prop_assert!(!bad.0.is_empty());
        }
    }

    #[test]
    fn every_well_formed_v2_frame_is_understood_with_its_ref_and_extra_fields(
        (frame, mut json) in client_frame(),
        reference in prop::option::of(reference()),
        extra in json_value(),
    ) {
        if let Some(reference) = &reference {
            json["ref"] = reference.clone();
        }
        json["an_unknown_field"] = extra;
        let parsed = parse_client_frame(&json.to_string());
        prop_assert_eq!(parsed.frame, Ok(frame));
        prop_assert_eq!(parsed.reference, reference);
    }

    #[test]
    fn the_fast_path_for_sends_reads_every_frame_as_the_general_parser_does(
        text in prop_oneof![
            jsonish_text(),
            (client_frame(), prop::option::of(json_value()), prop::option::of(json_value()))
                .prop_map(|((_, mut json), reference, extra)| {
                    if let Some(reference) = reference {
                        json["ref"] = reference;
                    }
                    if let Some(extra) = extra {
                        json["chat_id"] = extra;
                    }
                    json.to_string()
                }),
            // Keys twice, escapes in the type.
            "\\{\"type\": ?\"(send|se\\\\u006ed)\", \"chat_id\": [0-9]{1,3}, \"client_id\": \"[a-c ]{0,3}\", \"body\": \"x\"(, \"body\": \"y\")?(, \"ref\": (1|\"r\"|null|\\[\\]))?\\}",
        ],
    ) {
        prop_assert_eq!(parse_client_frame(&text), parse_any_frame(&text), "{}", text);
    }

    #[test]
    fn an_invalid_client_id_is_a_bad_frame_that_still_names_it(
        chat in any::<i64>(),
        client_id in invalid_client_id(),
    ) {
        let text = json!({"type": "send", "chat_id": chat, "client_id": client_id, "body": "x"})
            .to_string();
        let parsed = parse_client_frame(&text);
        prop_assert!(parsed.frame.is_err());
        prop_assert_eq!(parsed.client_id, Some(client_id));
    }

    #[test]
    fn a_field_of_the_wrong_type_is_a_bad_frame(
        (_, json) in client_frame(),
        replacement in json_value(),
        pick in any::<prop::sample::Index>(),
    ) {
        let fields: Vec<String> = json
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| *k != "type")
            .cloned()
            .collect();
        prop_assume!(!fields.is_empty());
        let field = fields[pick.index(fields.len())].clone();
        let original = json[&field].clone();
        // Only values that cannot be read as the original's kind.
        let same_kind = match (&original, &replacement) {
            (Value::String(_), Value::String(_)) => field != "client_id",
            (Value::Bool(_), Value::Bool(_)) => true,
            (Value::Number(_), Value::Number(_)) => true,
            (_, Value::Null) => matches!(field.as_str(), "before" | "after" | "limit"),
            _ => false,
        };
        prop_assume!(!same_kind);
        let mut broken = json.clone();
        broken[&field] = replacement;
        prop_assert!(parse_client_frame(&broken.to_string()).frame.is_err(), "{}", broken);
    }
}
