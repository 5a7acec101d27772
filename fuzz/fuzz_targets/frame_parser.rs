//! Arbitrary bytes as a seed WebSocket text frame: what `ws/seed/session.rs`
//! does with one, minus the socket. Parsing must never panic, a body it returns must
//! survive validation and the message frame, and the error frame must be
//! valid JSON whatever detail it carries.
#![no_main]

use chat_api::wire::seed::{error_frame, message_frame, parse_send_frame, GENERIC_ERROR};
use chat_domain::chat::{ChatId, DirectMessage, MessageBody, MessageId, MessageLimit, Seq};
use chat_domain::user::{User, UserId, Username};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    // actix-ws hands the session text frames only as valid UTF-8.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    match parse_send_frame(text) {
        Ok(body) => {
            let sent: Value = serde_json::from_str(text).expect("a parsed frame is JSON");
            assert_eq!(
                sent["body"],
                body.as_str(),
                "the body is the frame's body field"
            );
            if let Ok(valid) = MessageBody::parse(&body, MessageLimit::DEFAULT) {
                assert_eq!(valid.as_ref(), body, "a valid body is kept byte for byte");
                let message = DirectMessage {
                    id: MessageId::new(1),
                    chat_id: ChatId::new(1),
                    seq: Seq::new(1).expect("1 is a seq"),
                    sender: User {
                        id: UserId::new(1),
                        username: Username::parse("fuzz").expect("a valid username"),
                    },
                    body: valid.as_ref().to_owned(),
                    created: chrono::DateTime::UNIX_EPOCH,
                    client_id: None,
                };
                let frame: Value = serde_json::from_str(&message_frame(&message, false))
                    .expect("message frame is JSON");
                assert_eq!(frame["message"]["body"], body.as_str());
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }

    let frame: Value = serde_json::from_str(&error_frame(text)).expect("error frame is JSON");
    assert_eq!(frame["error"], GENERIC_ERROR);
    assert_eq!(frame["detail"], text);
});
