//! Arbitrary bytes where a client's token comes from: as the `Authorization`
//! header value (through `bearer_token`, on a real actix request), as the
//! query string of `GET /ws/chat/<id>/?...` (through `query_token`), and as
//! a token handed straight to the JWT verifier. None of it may panic, and
//! whatever the extractors return must be a non-empty token.
#![no_main]

use std::sync::LazyLock;
use std::time::Duration;

use actix_web::http::header::{HeaderValue, AUTHORIZATION};
use actix_web::http::Uri;
use actix_web::test::TestRequest;
use chat_api::auth::{bearer_token, query_token, JwtSecret, JwtTokens};
use chat_domain::user::TokenIssuer;
use libfuzzer_sys::fuzz_target;

/// The key the valid tokens in `corpus/token_extractor/` are signed with, so
/// the fuzzer starts from inputs that reach the claims checks.
const FUZZ_KEY: &[u8] = b"fuzz-target-key-of-32-bytes!!!!!";

static TOKENS: LazyLock<JwtTokens> = LazyLock::new(|| {
    let secret = JwtSecret::new(FUZZ_KEY).expect("the fuzz key is 32 bytes");
    JwtTokens::new(&secret, Duration::from_secs(3600))
});

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = HeaderValue::from_bytes(data) {
        let req = TestRequest::default()
            .insert_header((AUTHORIZATION, value))
            .to_http_request();
        if let Ok(Some(token)) = bearer_token(&req) {
            assert!(!token.is_empty() && token.trim() == token);
            let _ = TOKENS.verify(&token);
        }
    }

    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The query string as actix hands it to the handshake, when the bytes
    // can be a request target at all.
    if let Ok(uri) = format!("/ws/chat/1/?{text}").parse::<Uri>() {
        let req = TestRequest::default()
            .uri(&uri.to_string())
            .to_http_request();
        if let Some(token) = query_token(req.query_string()) {
            assert!(!token.is_empty());
            let _ = TOKENS.verify(&token);
        }
    }
    if let Some(token) = query_token(text) {
        assert!(!token.is_empty());
        let _ = TOKENS.verify(&token);
    }
    let _ = TOKENS.verify(text);
});
