//! The little HTTP/1.1 the relay needs: a request head parsed with
//! `httparse` (the crate tungstenite already uses), a body by
//! `Content-Length` only, keep-alive by the version's default and the
//! `Connection` header, the routes the benchmark calls, and JSON answers.

use std::fmt::Write as _;

/// A head longer than this is refused with `431` (the server's own limit
/// is of the same order).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// A body longer than this is refused with `413` (the server's default
/// `CHAT_MAX_BODY_BYTES`).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

const MAX_HEADERS: usize = 32;

/// What the relay reads of a request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    /// The request target as sent: path and query.
    pub target: String,
    /// Bytes of the head, blank line included.
    pub len: usize,
    pub content_length: usize,
    /// The token of `Authorization: Bearer <token>`.
    pub bearer: Option<String>,
    /// `Upgrade: websocket` (any case).
    pub upgrade_websocket: bool,
    pub websocket_key: Option<String>,
    /// Whether the connection stays open after the answer.
    pub keep_alive: bool,
}

/// Why a head cannot be served; each is answered, then the connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Not HTTP/1.x as httparse reads it.
    Malformed,
    TooLarge,
    /// A body the relay does not read (chunked) or a length it cannot.
    BadLength,
}

impl HeadError {
    pub fn status(self) -> u16 {
        match self {
            HeadError::Malformed | HeadError::BadLength => 400,
            HeadError::TooLarge => 431,
        }
    }
}

/// The head at the start of `buf`: `Ok(None)` while it is incomplete.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
            return Err(HeadError::TooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed),
    };
    if len > MAX_HEAD_BYTES {
        return Err(HeadError::TooLarge);
    }
    let (Some(method), Some(target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        return Err(HeadError::Malformed);
    };
    let mut head = Head {
        method: method.to_owned(),
        target: target.to_owned(),
        len,
        content_length: 0,
        bearer: None,
        upgrade_websocket: false,
        websocket_key: None,
        // HTTP/1.1 keeps the connection by default, 1.0 closes it.
        keep_alive: version == 1,
    };
    let mut lengths = 0;
    for header in request.headers.iter() {
        let value = std::str::from_utf8(header.value)
            .map_err(|_| HeadError::Malformed)?
            .trim();
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            lengths += 1;
            head.content_length = value.parse().map_err(|_| HeadError::BadLength)?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HeadError::BadLength);
        } else if name.eq_ignore_ascii_case("authorization") {
            head.bearer = value
                .strip_prefix("Bearer ")
                .map(|token| token.trim().to_owned());
        } else if name.eq_ignore_ascii_case("upgrade") {
            head.upgrade_websocket = value.eq_ignore_ascii_case("websocket");
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            head.websocket_key = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("connection") {
            for option in value.split(',').map(str::trim) {
                if option.eq_ignore_ascii_case("close") {
                    head.keep_alive = false;
                } else if option.eq_ignore_ascii_case("keep-alive") {
                    head.keep_alive = true;
                }
            }
        }
    }
    if lengths > 1 {
        return Err(HeadError::BadLength);
    }
    Ok(Some(head))
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Register,
    Login,
    CreateChat,
    ListChats,
    /// `/ws/chat/<id>/`; `None` for an id that is not a number (names no chat).
    ChatSocket(Option<i64>),
    /// A known path with another method: the methods it has.
    MethodNotAllowed(&'static str),
    NotFound,
}

/// The route of `method` and `path` (the target without its query).
pub fn route(method: &str, path: &str) -> Route {
    let fixed = match path {
        "/api/auth/register/" => Some(("POST", Route::Register)),
        "/api/auth/login/" => Some(("POST", Route::Login)),
        "/api/chats/create/" => Some(("POST", Route::CreateChat)),
        "/api/chats/" => Some(("GET", Route::ListChats)),
        _ => None,
    };
    if let Some((allowed, route)) = fixed {
        return if method == allowed {
            route
        } else {
            Route::MethodNotAllowed(allowed)
        };
    }
    match path
        .strip_prefix("/ws/chat/")
        .and_then(|rest| rest.strip_suffix('/'))
    {
        Some(id) if !id.is_empty() && !id.contains('/') => {
            if method == "GET" {
                Route::ChatSocket(id.parse().ok())
            } else {
                Route::MethodNotAllowed("GET")
            }
        }
        _ => Route::NotFound,
    }
}

/// The target split into its path and its query (without the `?`).
pub fn split_target(target: &str) -> (&str, &str) {
    target.split_once('?').unwrap_or((target, ""))
}

/// The value of `name` in a query string (`a=1&token=xyz`), as sent: the
/// relay's tokens are digits, nothing needs decoding.
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    }
}

/// A whole JSON answer. `401` carries `WWW-Authenticate: Bearer`, `405`
/// its `Allow`.
pub fn response(status: u16, body: &str, keep_alive: bool, allow: Option<&str>) -> Vec<u8> {
    let mut head = String::with_capacity(160);
    let _ = write!(
        head,
        "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        reason(status),
        body.len()
    );
    if status == 401 {
        head.push_str("www-authenticate: Bearer\r\n");
    }
    if let Some(allow) = allow {
        let _ = write!(head, "allow: {allow}\r\n");
    }
    if !keep_alive {
        head.push_str("connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

/// `{"error": text}`.
pub fn error_body(text: &str) -> String {
    serde_json::json!({ "error": text }).to_string()
}

/// The `101` that completes a WebSocket handshake for `key`.
pub fn switching_protocols(key: &str) -> Vec<u8> {
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
         sec-websocket-accept: {accept}\r\n\r\n"
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_is_read_only_once_complete() {
        let text = "POST /api/auth/login/ HTTP/1.1\r\nHost: x\r\ncontent-length: 12\r\n\
                    Authorization: Bearer 42\r\n\r\n{\"a\":1}";
        assert_eq!(parse_head(&text.as_bytes()[..20]), Ok(None));
        let head = parse_head(text.as_bytes()).unwrap().unwrap();
        assert_eq!(
            (head.method.as_str(), head.target.as_str()),
            ("POST", "/api/auth/login/")
        );
        assert_eq!(head.len, text.find("{").unwrap());
        assert_eq!(head.content_length, 12);
        assert_eq!(head.bearer.as_deref(), Some("42"));
        assert!(head.keep_alive && !head.upgrade_websocket);
    }

    #[test]
    fn keep_alive_follows_the_version_and_the_connection_header() {
        let keep = |text: &str| parse_head(text.as_bytes()).unwrap().unwrap().keep_alive;
        assert!(keep("GET / HTTP/1.1\r\n\r\n"));
        assert!(!keep("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
        assert!(!keep("GET / HTTP/1.0\r\n\r\n"));
        assert!(keep("GET / HTTP/1.0\r\nconnection: Keep-Alive\r\n\r\n"));
    }

    #[test]
    fn an_upgrade_is_recognised_with_its_key() {
        let text = "GET /ws/chat/3/?token=7 HTTP/1.1\r\nUpgrade: WebSocket\r\n\
                    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                    Sec-WebSocket-Version: 13\r\n\r\n";
        let head = parse_head(text.as_bytes()).unwrap().unwrap();
        assert!(head.upgrade_websocket);
        assert_eq!(
            head.websocket_key.as_deref(),
            Some("dGhlIHNhbXBsZSBub25jZQ==")
        );
        // RFC 6455's own example.
        let answer = String::from_utf8(switching_protocols("dGhlIHNhbXBsZSBub25jZQ==")).unwrap();
        assert!(answer.starts_with("HTTP/1.1 101 "), "{answer}");
        assert!(answer.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(answer.ends_with("\r\n\r\n"));
    }

    #[test]
    fn bodies_the_relay_cannot_frame_and_oversized_heads_are_refused() {
        let chunked = "POST /api/auth/login/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse_head(chunked.as_bytes()), Err(HeadError::BadLength));
        let twice = "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(parse_head(twice.as_bytes()), Err(HeadError::BadLength));
        let nan = "POST / HTTP/1.1\r\nContent-Length: ten\r\n\r\n";
        assert_eq!(parse_head(nan.as_bytes()), Err(HeadError::BadLength));
        assert_eq!(
            parse_head(b"\x01\x02 nonsense\r\n\r\n"),
            Err(HeadError::Malformed)
        );
        let huge = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD_BYTES + 1));
        assert_eq!(parse_head(huge.as_bytes()), Err(HeadError::TooLarge));
        let many: String = (0..40).map(|i| format!("X{i}: y\r\n")).collect();
        let many = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(parse_head(many.as_bytes()), Err(HeadError::TooLarge));
        assert_eq!(HeadError::TooLarge.status(), 431);
    }

    #[test]
    fn routes_are_the_seed_paths_exactly() {
        assert_eq!(route("POST", "/api/auth/register/"), Route::Register);
        assert_eq!(route("POST", "/api/auth/login/"), Route::Login);
        assert_eq!(route("POST", "/api/chats/create/"), Route::CreateChat);
        assert_eq!(route("GET", "/api/chats/"), Route::ListChats);
        assert_eq!(route("GET", "/ws/chat/12/"), Route::ChatSocket(Some(12)));
        assert_eq!(route("GET", "/ws/chat/abc/"), Route::ChatSocket(None));
        assert_eq!(
            route("GET", "/api/auth/login/"),
            Route::MethodNotAllowed("POST")
        );
        assert_eq!(route("POST", "/ws/chat/1/"), Route::MethodNotAllowed("GET"));
        for path in [
            "/api/chats",
            "/ws/chat/1",
            "/ws/chat//",
            "/ws/chat/1/2/",
            "/",
        ] {
            assert_eq!(route("GET", path), Route::NotFound, "{path}");
        }
    }

    #[test]
    fn the_token_comes_from_the_query() {
        let (path, query) = split_target("/ws/chat/3/?a=b&token=17&c");
        assert_eq!(path, "/ws/chat/3/");
        assert_eq!(query_param(query, "token"), Some("17"));
        assert_eq!(query_param(query, "nope"), None);
        assert_eq!(split_target("/api/chats/"), ("/api/chats/", ""));
        assert_eq!(query_param("", "token"), None);
    }

    #[test]
    fn answers_carry_their_length_and_headers() {
        let text = String::from_utf8(response(401, "{}", true, None)).unwrap();
        assert!(text.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{text}");
        assert!(
            text.contains("content-length: 2\r\n") && text.contains("www-authenticate: Bearer")
        );
        assert!(!text.contains("connection: close"));
        assert!(text.ends_with("\r\n\r\n{}"));
        let text = String::from_utf8(response(405, "", false, Some("POST"))).unwrap();
        assert!(text.contains("allow: POST\r\n") && text.contains("connection: close\r\n"));
        assert_eq!(error_body("a \"b\""), r#"{"error":"a \"b\""}"#);
    }
}
