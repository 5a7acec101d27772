//! Protocol v2's REST routes: pages of a chat's messages, retry-safe sends,
//! and the read cursor.
//!
//! - `GET /api/chats/<id>/messages/`
//! - `POST /api/chats/<id>/messages/`
//! - `POST /api/chats/<id>/read/`
//!
//! Checks run in this order: authentication, request shape, chat exists,
//! participant, body rules, then `client_id` conflict. A message sent here
//! is stored by the same writer and delivered exactly like one sent over a
//! socket.

use std::sync::Arc;
use std::time::Instant;

use actix_web::{web, HttpRequest, HttpResponse};
use chat_domain::chat::{
    ChatId, ClientId, CursorKind, OpenChat, Outgoing, PageAnchor, PageLimit, SendOutcome, Seq,
};
use serde::Serialize;
use serde_json::{Map, Value};

use super::{parse_decimal, query_params, JsonObject};
use crate::auth::CurrentUser;
use crate::delivery::StoreFailure;
use crate::error::{run_blocking, ApiError, ErrorBody};
use crate::state::AppState;
use crate::wire::v2::MessageObject;

/// A page of a chat's messages, oldest first.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = MessagePage)]
struct MessagePageBody<'a> {
    messages: Vec<MessageObject<'a>>,
    /// Older messages exist before this page.
    has_more_before: bool,
    /// Newer messages exist after this page.
    has_more_after: bool,
    /// The chat's newest `seq` (0 while it has none).
    #[schema(minimum = 0)]
    head_seq: i64,
}

// `send_message` and `mark_read` check their JSON objects by hand (for
// their error messages); the next two types only describe the bodies to
// the OpenAPI document (rest/openapi.rs).

/// A message to send, with the client's retry key.
#[derive(utoipa::ToSchema)]
#[schema(as = SendMessage)]
#[allow(dead_code)]
pub(crate) struct SendMessageRequest {
    /// Not empty, no NUL character, at most the server's message limit
    /// (4096 characters by default).
    #[schema(min_length = 1)]
    body: String,
    /// The client's retry key for this message: 1 to 64 printable ASCII
    /// characters without spaces. Sending the same key again returns the
    /// stored message instead of storing a second one.
    #[schema(min_length = 1, max_length = 64, pattern = "^[!-~]{1,64}$")]
    client_id: String,
}

/// How far the caller has read.
#[derive(utoipa::ToSchema)]
#[schema(as = MarkRead)]
#[allow(dead_code)]
pub(crate) struct MarkReadRequest {
    /// The `seq` read up to (inclusive); clamped to the chat's newest.
    #[schema(minimum = 0)]
    up_to: i64,
}

/// A page of the chat's messages, oldest first: the newest `limit` (50 by
/// default, 1 to 200), or those just `before` or `after` a `seq`
/// (exclusive; not both).
///
/// - `200 {"messages", "has_more_before", "has_more_after", "head_seq"}`
/// - `400` for a bad query (a cursor not an integer >= 0, both cursors, a
///   limit out of range, a parameter given twice)
/// - `401` without a valid token
/// - `404` when the chat does not exist, `403` when the caller is not in it
#[utoipa::path(get, path = "/api/chats/{chat_id}/messages/", tag = "v2",
    params(
        ("chat_id" = i64, Path, description = "The chat's id"),
        ("before" = Option<i64>, Query, minimum = 0, description = "Messages with a smaller `seq` (not with `after`)"),
        ("after" = Option<i64>, Query, minimum = 0, description = "Messages with a larger `seq` (not with `before`)"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "Page size, default 50"),
    ),
    responses(
        (status = 200, description = "A page, oldest first", body = MessagePageBody),
        (status = 400, description = "A bad query", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The caller is not in the chat", body = ErrorBody),
        (status = 404, description = "No such chat", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list_messages(
    CurrentUser(me): CurrentUser,
    req: HttpRequest,
    chat_id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (anchor, limit) = page_query(req.query_string())?;
    let chat = open(&state, me, &chat_id).await?;
    let messages = state.messages.clone();
    let page = run_blocking(move || messages.page(&chat, anchor, limit)).await?;
    Ok(HttpResponse::Ok().json(MessagePageBody {
        messages: page.messages.iter().map(MessageObject::from).collect(),
        has_more_before: page.has_more_before,
        has_more_after: page.has_more_after,
        head_seq: page.head_seq.get(),
    }))
}

/// Sends a message, safely retried by `client_id`.
///
/// - `201` the stored v2 message
/// - `200` the original message when this `client_id` was already used for
///   the same body (nothing new is stored)
/// - `400` when `body` or `client_id` is missing, not a string, or invalid,
///   or the body breaks the message rules (empty, too long, NUL)
/// - `401` without a valid token
/// - `404` when the chat does not exist, `403` when the caller is not in it
/// - `409` when this `client_id` was already used for another body
/// - `429` (with `Retry-After`) over the sender's message rate
/// - `503` when the database is unavailable (nothing was stored)
#[utoipa::path(post, path = "/api/chats/{chat_id}/messages/", tag = "v2",
    params(("chat_id" = i64, Path, description = "The chat's id")),
    request_body = SendMessageRequest,
    responses(
        (status = 201, description = "Stored", body = MessageObject, links(
            ("PageBefore" = (operation_id = "list_messages", parameters(("chat_id" = "$response.body#/chat_id"), ("before" = "$response.body#/seq")))),
            ("MarkRead" = (operation_id = "mark_read", parameters(("chat_id" = "$response.body#/chat_id")),
                request_body = json!({"up_to": "$response.body#/seq"}))),
            ("Resend" = (operation_id = "send_message", parameters(("chat_id" = "$response.body#/chat_id")),
                request_body = json!({"body": "$response.body#/body", "client_id": "$response.body#/client_id"}),
                description = "The same message again: answered 200 with the original")),
        )),
        (status = 200, description = "A retry: the message first stored under this `client_id`", body = MessageObject),
        (status = 400, description = "A missing or invalid field, or a body that breaks the message rules", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The caller is not in the chat", body = ErrorBody),
        (status = 404, description = "No such chat", body = ErrorBody),
        (status = 409, description = "This `client_id` was used for another body", body = ErrorBody),
        (status = 429, description = "Over the sender's message rate (shared with their sockets); `Retry-After` says when to retry", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 408, description = "The request body did not arrive in time (the connection is closed)", body = ErrorBody),
        (status = 413, description = "The request body is over the size limit", body = ErrorBody),
        (status = 503, description = "The database is unavailable; nothing was stored", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn send_message(
    CurrentUser(me): CurrentUser,
    JsonObject(request): JsonObject<Map<String, Value>>,
    chat_id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = required_string(&request, "body")?;
    let client_id = match request.get("client_id") {
        Some(Value::String(raw)) => {
            ClientId::parse(raw).map_err(|e| ApiError::BadRequest(e.to_string()))?
        }
        Some(_) => return Err(ApiError::BadRequest("client_id must be a string".into())),
        None => return Err(ApiError::BadRequest("client_id is required".into())),
    };
    let sender = me.id;
    let chat = open(&state, me, &chat_id).await?;
    let body = state
        .messages
        .validate(body)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    // The same budget as the sender's sockets (a retry counts too: it
    // costs a lookup in the writer).
    if let Err(wait) = state.message_rates.take(sender, Instant::now()) {
        state
            .metrics
            .rate_limited(crate::metrics::RateLimited::Rest);
        return Err(ApiError::slow_down(
            format!(
                "too many messages: this one was not sent; wait {} ms",
                wait.as_millis().max(1)
            ),
            wait,
        ));
    }
    let outcome = state
        .writer
        .store(Outgoing {
            chat,
            body,
            client_id: Some(client_id),
            origin: None,
        })
        .await;
    match outcome {
        Ok(SendOutcome::Stored(message)) => {
            Ok(HttpResponse::Created().json(MessageObject::from(&message)))
        }
        Ok(SendOutcome::Duplicate(original)) => {
            Ok(HttpResponse::Ok().json(MessageObject::from(&original)))
        }
        Ok(SendOutcome::Conflict(_)) => Err(ApiError::Conflict(
            "this client_id was already used for a message with another body".into(),
        )),
        Err(StoreFailure::Unavailable) => Err(ApiError::Unavailable(
            "the message could not be stored right now".into(),
        )),
        Err(StoreFailure::Failed) => Err(ApiError::internal("the message could not be stored")),
    }
}

/// The caller's read cursor after the request.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ReadCursor)]
struct ReadBody {
    chat_id: i64,
    #[schema(minimum = 0)]
    read_up_to: i64,
    unread_count: u64,
}

/// Moves the caller's read cursor to `up_to` (forward only, clamped to the
/// chat's newest `seq`; reading implies delivery); each move is announced
/// to both participants' v2 sockets.
///
/// - `200 {"chat_id", "read_up_to", "unread_count"}` (also when nothing
///   moved)
/// - `400` when `up_to` is missing or not an integer >= 0
/// - `401` without a valid token
/// - `404` when the chat does not exist, `403` when the caller is not in it
#[utoipa::path(post, path = "/api/chats/{chat_id}/read/", tag = "v2",
    params(("chat_id" = i64, Path, description = "The chat's id")),
    request_body = MarkReadRequest,
    responses(
        (status = 200, description = "The cursor (moved or not)", body = ReadBody),
        (status = 400, description = "`up_to` missing or not an integer >= 0", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The caller is not in the chat", body = ErrorBody),
        (status = 404, description = "No such chat", body = ErrorBody),
        (status = 408, description = "The request body did not arrive in time (the connection is closed)", body = ErrorBody),
        (status = 413, description = "The request body is over the size limit", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn mark_read(
    CurrentUser(me): CurrentUser,
    JsonObject(request): JsonObject<Map<String, Value>>,
    chat_id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let up_to = match request.get("up_to") {
        Some(Value::Number(n)) => n.as_i64().and_then(Seq::new),
        None => return Err(ApiError::BadRequest("up_to is required".into())),
        Some(_) => None,
    }
    .ok_or_else(|| ApiError::BadRequest("up_to must be an integer of at least 0".into()))?;
    let chat = open(&state, me, &chat_id).await?;
    let id = chat.id().get();
    let messages = state.messages.clone();
    let change = run_blocking(move || messages.move_cursor(&chat, CursorKind::Read, up_to)).await?;
    Ok(HttpResponse::Ok().json(ReadBody {
        chat_id: id,
        read_up_to: change.after.read_up_to.get(),
        unread_count: change.unread_count,
    }))
}

/// The chat of the path, checked: `404` when it does not exist (a
/// non-numeric id names no chat), `403` when the caller is not in it.
async fn open(
    state: &AppState,
    me: chat_domain::user::User,
    chat_id: &str,
) -> Result<Arc<OpenChat>, ApiError> {
    let chat_id = chat_id
        .parse::<i64>()
        .map(ChatId::new)
        .map_err(|_| ApiError::NotFound("chat not found".into()))?;
    let chats = state.chats.clone();
    run_blocking(move || chats.open_chat(me, chat_id))
        .await
        .map(Arc::new)
}

fn required_string<'a>(request: &'a Map<String, Value>, field: &str) -> Result<&'a str, ApiError> {
    match request.get(field) {
        Some(Value::String(text)) => Ok(text),
        Some(_) => Err(ApiError::BadRequest(format!("{field} must be a string"))),
        None => Err(ApiError::BadRequest(format!("{field} is required"))),
    }
}

/// `before=<seq>` or `after=<seq>` (integers >= 0, not both) and
/// `limit=<1..200>`; other parameters are ignored.
fn page_query(query: &str) -> Result<(PageAnchor, PageLimit), ApiError> {
    let [before, after, limit] = query_params(query, ["before", "after", "limit"])?;
    let cursor = |name: &str, value: Option<String>| -> Result<Option<Seq>, ApiError> {
        value
            .map(|v| {
                parse_decimal(&v).and_then(Seq::new).ok_or_else(|| {
                    ApiError::BadRequest(format!("{name} must be an integer of at least 0"))
                })
            })
            .transpose()
    };
    let anchor = match (cursor("before", before)?, cursor("after", after)?) {
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "give before or after, not both".into(),
            ))
        }
        (Some(before), None) => PageAnchor::Before(before),
        (None, Some(after)) => PageAnchor::After(after),
        (None, None) => PageAnchor::Newest,
    };
    let limit = match limit {
        None => PageLimit::DEFAULT,
        Some(value) => parse_decimal(&value)
            .and_then(|n| usize::try_from(n).ok())
            .and_then(PageLimit::new)
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "limit must be an integer from 1 to {}",
                    PageLimit::MAX.get()
                ))
            })?,
    };
    Ok((anchor, limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(n: i64) -> Seq {
        Seq::new(n).unwrap()
    }

    #[test]
    fn the_page_query_takes_one_cursor_and_a_limit() {
        assert_eq!(
            page_query("").unwrap(),
            (PageAnchor::Newest, PageLimit::DEFAULT)
        );
        assert_eq!(
            page_query("before=10&limit=200").unwrap(),
            (PageAnchor::Before(seq(10)), PageLimit::MAX)
        );
        assert_eq!(
            page_query("after=0&other=x").unwrap(),
            (PageAnchor::After(seq(0)), PageLimit::DEFAULT)
        );
    }

    #[test]
    fn a_bad_page_query_is_refused() {
        for query in [
            "before=1&after=2",
            "before=-1",
            "after=+3",
            "after=1e3",
            "after=",
            "after=abc",
            "before=99999999999999999999",
            "limit=0",
            "limit=201",
            "limit=ten",
            "limit=5&limit=6",
            "after=1&after=1",
        ] {
            assert!(page_query(query).is_err(), "{query} was accepted");
        }
    }
}
