//! `POST /api/auth/register/` and `POST /api/auth/login/`

use actix_web::{web, HttpResponse};
use chat_domain::user::{Password, Username};
use tokio::sync::SemaphorePermit;

use super::dto::{CredentialsRequest, LoginResponse, UserDto};
use super::JsonObject;
use crate::error::{run_blocking, ApiError};
use crate::state::AppState;

/// Creates an account.
///
/// - `201 {"id", "username"}`
/// - `400` when the username is taken, empty, over 150 characters or has
///   characters other than letters, digits and `@.+-_`, or the password is
///   shorter than 8 characters
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
