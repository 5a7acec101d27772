//! `GET /api/users/`

use actix_web::{web, HttpResponse};

use super::dto::UserDto;
use crate::auth::CurrentUser;
use crate::error::{run_blocking, ApiError};
use crate::state::AppState;

/// Every user but the caller, ordered by id.
///
/// - `200 [{"id", "username"}, ...]`
/// - `401` without a valid token
pub async fn list_users(
    CurrentUser(me): CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let auth = state.auth.clone();
    let users = run_blocking(move || auth.list_other_users(me.id)).await?;
    Ok(HttpResponse::Ok().json(users.iter().map(UserDto::from).collect::<Vec<_>>()))
}
