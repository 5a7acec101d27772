//! `GET /api/chats/` and `POST /api/chats/create/`

use actix_web::{web, HttpResponse};
use chat_domain::chat::Creation;

use super::dto::{ChatDto, CreateChatRequest};
use super::JsonObject;
use crate::auth::CurrentUser;
use crate::error::{run_blocking, ApiError, ErrorBody};
use crate::state::AppState;

/// The caller's chats, most recent activity first.
///
/// - `200 [ChatDto, ...]`
/// - `401` without a valid token
#[utoipa::path(get, path = "/api/chats/", tag = "seed",
    responses(
        (status = 200, description = "The caller's chats", body = Vec<ChatDto>),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list_chats(
    CurrentUser(me): CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let chats = state.chats.clone();
    let viewer = me.id;
    let summaries = run_blocking(move || chats.list_chats(&me)).await?;
    let body = summaries
        .iter()
        .map(|summary| ChatDto::for_viewer(summary, viewer))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(body))
}

/// Starts (or finds) the caller's chat with `user_id`.
///
/// - `201 ChatDto` when the chat is new, `200 ChatDto` when it existed
/// - `400` when `user_id` is missing, not an integer, unknown, or the caller
/// - `401` without a valid token
#[utoipa::path(post, path = "/api/chats/create/", tag = "seed",
    request_body = CreateChatRequest,
    responses(
        (status = 201, description = "A new chat", body = ChatDto, links(
            ("PageMessages" = (operation_id = "list_messages", parameters(("chat_id" = "$response.body#/id")))),
            ("SendMessage" = (operation_id = "send_message", parameters(("chat_id" = "$response.body#/id")))),
            ("MarkRead" = (operation_id = "mark_read", parameters(("chat_id" = "$response.body#/id")))),
        )),
        (status = 200, description = "The chat already existed", body = ChatDto, links(
            ("PageMessages" = (operation_id = "list_messages", parameters(("chat_id" = "$response.body#/id")))),
            ("SendMessage" = (operation_id = "send_message", parameters(("chat_id" = "$response.body#/id")))),
            ("MarkRead" = (operation_id = "mark_read", parameters(("chat_id" = "$response.body#/id")))),
        )),
        (status = 400, description = "`user_id` missing, not an integer, unknown, or the caller", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 408, description = "The request body did not arrive in time (the connection is closed)", body = ErrorBody),
        (status = 413, description = "The request body is over the size limit", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn create_chat(
    CurrentUser(me): CurrentUser,
    JsonObject(request): JsonObject<CreateChatRequest>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let other = request.try_into_domain()?;
    let chats = state.chats.clone();
    let viewer = me.id;
    let created = run_blocking(move || chats.create_chat(&me, other)).await?;
    let body = ChatDto::for_viewer(&created.summary, viewer)?;
    Ok(match created.creation {
        Creation::Created => HttpResponse::Created().json(body),
        Creation::Existing => HttpResponse::Ok().json(body),
    })
}
