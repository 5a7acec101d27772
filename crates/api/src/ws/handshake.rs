//! The checks that run before a socket opens: `GET /ws/chat/<chat_id>/`
//! (seed) and `GET /ws/v2/`. Both take the token from the `Authorization`
//! header, else `?token=` (when the header is there it decides, even if
//! invalid), check the origin first and the socket limits last, and refuse
//! with a status and a JSON error body.

use std::pin::Pin;

use actix_web::error::PayloadError;
use actix_web::web::Bytes;
use actix_web::{dev, web, FromRequest as _, HttpRequest, HttpResponse};
use chat_domain::chat::ChatId;
use chat_domain::user::SignedIn;
use tracing::Instrument as _;

use super::frame_guard::FrameGuard;
use super::{seed, v2};
use crate::auth::{bearer_token, query_token};
use crate::error::{run_blocking, ApiError, ErrorBody};
use crate::state::AppState;

/// Upgrades to a chat socket once the caller is authenticated, the chat
/// exists and the caller is in it.
///
/// - `101` and the session starts
/// - `403` when an allowed-origins list is set and the `Origin` header is
///   not on it (checked first)
/// - `401` without a valid token (from `Authorization: Bearer` or `?token=`)
/// - `404` when the chat does not exist
/// - `403` when the caller is not a participant
/// - `429` when the caller has the most sockets allowed per user open
/// - `503` when the server has the most sockets allowed open
/// - `400` when the request is not a WebSocket upgrade
#[utoipa::path(get, path = "/ws/chat/{chat_id}/", tag = "websocket",
    description = "The seed protocol's socket for one chat (frames: docs/asyncapi.json). A WebSocket upgrade; the token comes in `Authorization: Bearer` or `?token=`.",
    params(
        ("chat_id" = i64, Path, description = "The chat's id"),
        ("token" = Option<String>, Query, description = "The bearer token, for clients that cannot set headers (browsers)"),
    ),
    responses(
        (status = 101, description = "Switching protocols: the session starts"),
        (status = 400, description = "Not a WebSocket upgrade", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Origin not allowed, or the caller is not in the chat", body = ErrorBody),
        (status = 404, description = "No such chat", body = ErrorBody),
        (status = 429, description = "The caller has the most sockets allowed per user open", body = ErrorBody),
        (status = 503, description = "The server has the most sockets allowed open, or the database is unavailable", body = ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub async fn chat_socket(
    req: HttpRequest,
    body: web::Payload,
    chat_id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    open_chat_socket(req, body, chat_id, state)
        .instrument(socket_span("seed"))
        .await
}

/// A socket's span, from its handshake to its close: every line logged for
/// it carries its `socket_id` (and, as its parent, the handshake's
/// `request` span with the `request_id`).
fn socket_span(protocol: &'static str) -> tracing::Span {
    // ERROR level, like the request's: present at any RUST_LOG.
    tracing::error_span!("socket", socket_id = %crate::new_id(), protocol)
}

async fn open_chat_socket(
    req: HttpRequest,
    body: web::Payload,
    chat_id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let session = authenticate_handshake(&req, &state).await?;
    let user = session.user.clone();
    // A non-numeric id names no chat.
    let chat_id = chat_id
        .parse::<i64>()
        .map(ChatId::new)
        .map_err(|_| ApiError::NotFound("chat not found".into()))?;
    let chats = state.chats.clone();
    let chat = run_blocking(move || chats.open_chat(user, chat_id)).await?;
    let permit = state.connections.admit(chat.member().id)?;

    let (response, socket, stream) = upgrade(&req, body, &state).await?;
    // The session runs in this socket's span, the handshake's.
    actix_web::rt::spawn(
        seed::session::run(
            socket,
            stream,
            chat,
            session.generation,
            permit,
            state.into_inner(),
        )
        .instrument(tracing::Span::current()),
    );
    Ok(response)
}

/// Upgrades to a v2 socket once the caller is authenticated.
///
/// - `101` and the session starts with `hello`
/// - `403` when an allowed-origins list is set and the `Origin` header is
///   not on it (checked first)
/// - `401` without a valid token (from `Authorization: Bearer` or `?token=`)
/// - `429` when the caller has the most sockets allowed per user open
/// - `503` when the server has the most sockets allowed open
/// - `400` when the request is not a WebSocket upgrade
#[utoipa::path(get, path = "/ws/v2/", tag = "websocket",
    description = "Protocol v2's socket: every chat of the caller on one connection (frames: docs/asyncapi.json). A WebSocket upgrade; the token comes in `Authorization: Bearer` or `?token=`.",
    params(("token" = Option<String>, Query, description = "The bearer token, for clients that cannot set headers (browsers)")),
    responses(
        (status = 101, description = "Switching protocols: the session starts with `hello`"),
        (status = 400, description = "Not a WebSocket upgrade", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Origin not allowed", body = ErrorBody),
        (status = 429, description = "The caller has the most sockets allowed per user open", body = ErrorBody),
        (status = 503, description = "The server has the most sockets allowed open, or the database is unavailable", body = ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub async fn v2_socket(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    open_v2_socket(req, body, state)
        .instrument(socket_span("v2"))
        .await
}

async fn open_v2_socket(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let session = authenticate_handshake(&req, &state).await?;
    let permit = state.connections.admit(session.user.id)?;

    let (response, socket, stream) = upgrade(&req, body, &state).await?;
    actix_web::rt::spawn(
        v2::session::run(socket, stream, session, permit, state.into_inner())
            .instrument(tracing::Span::current()),
    );
    Ok(response)
}

/// The origin check, then the token (header first, else `?token=`): its
/// user, when it expires and its generation.
async fn authenticate_handshake(req: &HttpRequest, state: &AppState) -> Result<SignedIn, ApiError> {
    check_origin(req, &state.config.allowed_origins)?;
    let token = match bearer_token(req)? {
        Some(token) => token,
        None => query_token(req.query_string()).ok_or_else(|| {
            ApiError::Unauthorized(
                "authentication required: send 'Authorization: Bearer <token>' or ?token=<token>"
                    .into(),
            )
        })?,
    };
    let auth = state.auth.clone();
    run_blocking(move || auth.authenticate_session(&token)).await
}

/// The WebSocket handshake's answer and the socket, with frame sizes
/// limited from the first byte.
async fn upgrade(
    req: &HttpRequest,
    body: web::Payload,
    state: &AppState,
) -> Result<
    (
        HttpResponse,
        actix_ws::Session,
        actix_ws::AggregatedMessageStream,
    ),
    ApiError,
> {
    let body = guard_frame_sizes(req, body, state.config.max_frame_bytes).await?;
    let (response, socket, stream) = actix_ws::handle(req, body)
        .map_err(|e| ApiError::BadRequest(format!("not a WebSocket upgrade: {e}")))?;
    let stream = stream
        .max_frame_size(state.config.max_frame_bytes)
        .aggregate_continuations()
        .max_continuation_size(state.config.max_frame_bytes);
    Ok((response, socket, stream))
}

/// The request body with every frame header checked against the limit as
/// it passes, so that a frame declared too large fails the socket at its
/// header (see `frame_guard`), rather than once its payload is buffered.
async fn guard_frame_sizes(
    req: &HttpRequest,
    body: web::Payload,
    max_frame_bytes: usize,
) -> Result<web::Payload, ApiError> {
    let guarded = FrameGuard::new(body.into_inner(), max_frame_bytes);
    let mut payload = dev::Payload::from(Box::pin(guarded) as BoxedPayloadStream);
    // `web::Payload` has no public constructor; its extractor takes
    // whatever payload it is given, and cannot fail.
    web::Payload::from_request(req, &mut payload)
        .await
        .map_err(|e| ApiError::internal(format!("re-wrapping the socket payload: {e}")))
}

/// What `dev::Payload::Stream` holds.
type BoxedPayloadStream = Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, PayloadError>>>>;

/// Browsers always send `Origin` on a WebSocket handshake; other clients
/// (apps, scripts) need not, and are not what this check protects against.
fn check_origin(req: &HttpRequest, allowed: &[String]) -> Result<(), ApiError> {
    if allowed.is_empty() {
        return Ok(());
    }
    let Some(origin) = req.headers().get(actix_web::http::header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or_default().trim_end_matches('/');
    if allowed
        .iter()
        .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "this origin may not open chat sockets".into(),
        ))
    }
}
