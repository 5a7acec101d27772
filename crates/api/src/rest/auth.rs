//! `POST /api/auth/register/`, `POST /api/auth/login/`, and the session
//! routes `POST /api/auth/password/` and `POST /api/auth/logout/`.

use std::time::Instant;

use actix_web::{web, HttpRequest, HttpResponse};
use chat_domain::user::{Password, TokenGeneration, User, Username};
use tokio::sync::SemaphorePermit;

use super::dto::{CredentialsRequest, LoginResponse, PasswordChangeRequest, UserDto};
use super::JsonObject;
use crate::auth::throttle::Attempt;
use crate::auth::{CurrentUser, Revoked};
use crate::error::{run_blocking, ApiError, ErrorBody};
use crate::state::AppState;

// What `register` reads (into `CredentialsRequest`), described with the
// rules the handler checks, for the OpenAPI document.
/// A new account's username and password.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct Registration {
    /// 1 to 150 letters, digits and `@.+-_`, NFKC-normalised (the
    /// full-width `ａｌｉｃｅ` is stored as `alice`); unique without
    /// regard to case.
    #[schema(min_length = 1, max_length = 150)]
    username: String,
    /// At least 8 characters.
    #[schema(min_length = 8)]
    password: String,
}

/// Creates an account.
///
/// - `201 {"id", "username"}`
/// - `400` when the username is taken (in any case: `Alice` takes
///   `alice`), empty, over 150 characters, has characters other than
///   letters, digits and `@.+-_`, or invisible ones (U+3164 HANGUL FILLER
///   and the like), or the password is shorter than 8 characters
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
    let username =
        Username::new_account(&username).map_err(|e| ApiError::BadRequest(e.to_string()))?;
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
/// - `429` with `Retry-After` after too many wrong passwords for the
///   username or from the client's address
#[utoipa::path(post, path = "/api/auth/login/", tag = "seed",
    request_body = CredentialsRequest,
    responses(
        (status = 200, description = "A token", body = LoginResponse),
        (status = 400, description = "A malformed body", body = ErrorBody),
        (status = 401, description = "Unknown user or wrong password (one answer for both)", body = ErrorBody),
        (status = 408, description = "The request body did not arrive in time (the connection is closed)", body = ErrorBody),
        (status = 413, description = "The request body is over the size limit", body = ErrorBody),
        (status = 429, description = "Too many wrong passwords for this username or from this address: wait `Retry-After` seconds", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the next attempt may be made"))),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
pub async fn login(
    req: HttpRequest,
    JsonObject(request): JsonObject<CredentialsRequest>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let CredentialsRequest { username, password } = request;
    let attempt = password_attempt(&state, &req, &username)?;
    let _slot = password_slot(&state).await?;
    let auth = state.auth.clone();
    let result = run_blocking(move || auth.login(&username, &password)).await;
    let success = counted(&state, attempt, result)?;
    Ok(HttpResponse::Ok().json(LoginResponse::from(&success)))
}

/// Changes the caller's password. Every token issued before stops working
/// (on every device; their open sockets close with `4001`); the answer
/// carries a fresh token for this one.
///
/// - `200 {"token", "user"}`: the caller's new token
/// - `400` when the current password is wrong or the new one too short
/// - `401` without a valid token
/// - `429` with `Retry-After` after too many wrong passwords
#[utoipa::path(post, path = "/api/auth/password/", tag = "accounts",
    request_body = PasswordChangeRequest,
    responses(
        (status = 200, description = "Changed: a fresh token (every older one is revoked)", body = LoginResponse),
        (status = 400, description = "The current password is wrong, the new one is too short, or a malformed body", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 408, description = "The request body did not arrive in time (the connection is closed)", body = ErrorBody),
        (status = 413, description = "The request body is over the size limit", body = ErrorBody),
        (status = 429, description = "Too many wrong passwords for this account or from this address: wait `Retry-After` seconds", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the next attempt may be made"))),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn change_password(
    req: HttpRequest,
    CurrentUser(user): CurrentUser,
    JsonObject(request): JsonObject<PasswordChangeRequest>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let PasswordChangeRequest {
        current_password,
        new_password,
    } = request;
    let new_password =
        Password::parse(&new_password).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let attempt = password_attempt(&state, &req, user.username.as_ref())?;
    let _slot = password_slot(&state).await?;
    let (auth, me) = (state.auth.clone(), user.clone());
    let result =
        run_blocking(move || auth.change_password(&me, &current_password, &new_password)).await;
    let (success, generation) = counted(&state, attempt, result)?;
    revoke_sockets(&state, &user, generation);
    Ok(HttpResponse::Ok().json(LoginResponse::from(&success)))
}

/// Signs the caller out everywhere: every token of the account stops
/// working, this one included, and open sockets close with `4001`.
/// (Tokens are signed, not stored, so they can only be revoked all at
/// once; a client that wants to sign out on one device only forgets its
/// token.)
///
/// - `204`
/// - `401` without a valid token
#[utoipa::path(post, path = "/api/auth/logout/", tag = "accounts",
    responses(
        (status = 204, description = "Every token of the account is revoked"),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn logout(
    CurrentUser(user): CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (auth, id) = (state.auth.clone(), user.id);
    let generation = run_blocking(move || auth.log_out(id).map_err(ApiError::from)).await?;
    revoke_sockets(&state, &user, generation);
    Ok(HttpResponse::NoContent().finish())
}

/// Closes `user`'s sockets opened with older tokens, here and, in a
/// cluster, on the other instances.
fn revoke_sockets(state: &AppState, user: &User, generation: TokenGeneration) {
    let revoked = Revoked {
        user: user.id,
        generation,
    };
    state.revocations.announce(revoked);
    if let Some(relay) = &state.relay {
        relay.publish_revocation(revoked);
    }
}

/// Lets one password check through the login throttle, or answers `429`.
fn password_attempt(
    state: &AppState,
    req: &HttpRequest,
    username: &str,
) -> Result<Attempt, ApiError> {
    let address = req.peer_addr().map(|peer| peer.ip());
    state
        .login_throttle
        .attempt(username, address, Instant::now())
        .map_err(|wait| {
            state.metrics.login_throttled();
            ApiError::slow_down(
                "too many wrong passwords: try again later (see Retry-After)".into(),
                wait,
            )
        })
}

/// `result` of a password check: only a wrong password counts against the
/// throttle (a right one, or a server failure, gives the attempt back).
fn counted<T>(
    state: &AppState,
    attempt: Attempt,
    result: Result<T, ApiError>,
) -> Result<T, ApiError> {
    match &result {
        Ok(_) => state.login_throttle.succeeded(attempt),
        Err(ApiError::Unauthorized(_) | ApiError::BadRequest(_)) => {}
        Err(_) => state.login_throttle.not_counted(attempt),
    }
    result
}

/// Waits for a free password-hashing slot (see `AppState::password_slots`).
async fn password_slot(state: &AppState) -> Result<SemaphorePermit<'_>, ApiError> {
    state
        .password_slots
        .acquire()
        .await
        .map_err(ApiError::internal)
}
