//! `POST /api/auth/register/` and `POST /api/auth/login/`

use actix_web::{web, HttpResponse};
use chat_domain::user::{Password, Username};
use tokio::sync::SemaphorePermit;

use super::dto::{CredentialsRequest, LoginResponse, UserDto};
use super::JsonObject;
use crate::error::{run_blocking, ApiError, ErrorBody};
use crate::state::AppState;

// What `register` reads (into `CredentialsRequest`), described with the
// rules the handler checks, for the OpenAPI document.
/// A new account's username and password.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct Registration {
    /// 1 to 150 letters, digits and `@.+-_`; unique.
    #[schema(min_length = 1, max_length = 150)]
    username: String,
    /// At least 8 characters.
    #[schema(min_length = 8)]
    password: String,
}

/// Creates an account.
///
/// - `201 {"id", "username"}`
/// - `400` when the username is taken, empty, over 150 characters or has
///   characters other than letters, digits and `@.+-_`, or the password is
///   shorter than 8 characters
#[utoipa::path(post, path = "/api/auth/register/", tag = "seed",
    request_body = Registration,
    responses(
        (status = 201, description = "The new account", body = UserDto, links(
            ("LogIn" = (operation_id = "login", request_body = json!({"username": "$request.body#/username", "password": "$request.body#/password"}),
                description = "Log in as the new account")),
            ("StartChat" = (operation_id = "create_chat", request_body = json!({"user_id": "$response.body#/id"}),
                description = "Start a chat with the new account")),
        )),
        (status = 400, description = "Username taken or invalid, password too short, or a malformed body", body = ErrorBody),
        (status = 408, description = "The request body did not arrive in time (the connection is closed)", body = ErrorBody),
        (status = 413, description = "The request body is over the size limit", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
pub async fn register(
    JsonObject(request): JsonObject<CredentialsRequest>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let CredentialsRequest { username, password } = request;
    let username = Username::parse(&username).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let password = Password::parse(&password).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let _slot = password_slot(&state).await?;
    let auth = state.auth.clone();
    let user = run_blocking(move || auth.register(username, &password)).await?;
    Ok(HttpResponse::Created().json(UserDto::from(&user)))
}

/// Exchanges a username and password for a bearer token.
///
/// - `200 {"token", "user": {"id", "username"}}`
/// - `401` with the same text for an unknown user and a wrong password
#[utoipa::path(post, path = "/api/auth/login/", tag = "seed",
    request_body = CredentialsRequest,
    responses(
        (status = 200, description = "A token", body = LoginResponse),
        (status = 400, description = "A malformed body", body = ErrorBody),
        (status = 401, description = "Unknown user or wrong password (one answer for both)", body = ErrorBody),
        (status = 408, description = "The request body did not arrive in time (the connection is closed)", body = ErrorBody),
        (status = 413, description = "The request body is over the size limit", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
pub async fn login(
    JsonObject(request): JsonObject<CredentialsRequest>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let CredentialsRequest { username, password } = request;
    let _slot = password_slot(&state).await?;
    let auth = state.auth.clone();
    let success = run_blocking(move || auth.login(&username, &password)).await?;
    Ok(HttpResponse::Ok().json(LoginResponse::from(&success)))
}

/// Waits for a free password-hashing slot (see `AppState::password_slots`).
async fn password_slot(state: &AppState) -> Result<SemaphorePermit<'_>, ApiError> {
    state
        .password_slots
        .acquire()
        .await
        .map_err(ApiError::internal)
}
