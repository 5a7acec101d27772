//! `GET /api/users/`

use actix_web::{web, HttpRequest, HttpResponse};

use super::dto::UserDto;
use super::{parse_decimal, query_params};
use crate::auth::CurrentUser;
use crate::error::{run_blocking, ApiError, ErrorBody};
use crate::state::AppState;

/// How many users a search answers when the client names no `limit`.
const DEFAULT_SEARCH_LIMIT: usize = 20;
const MAX_SEARCH_LIMIT: usize = 100;
/// A username has at most 150 characters, so a longer needle matches nobody.
const MAX_SEARCH_CHARS: usize = 150;

/// Every user but the caller, ordered by id: the seed's route, unchanged.
///
/// With `?search=<text>` (an extension for people pickers, so a client never
/// has to download every account): at most `limit` (default 20, 1 to 100)
/// users whose username contains the text, ASCII case ignored, ordered by
/// username, also ignoring case.
///
/// - `200 [{"id", "username"}, ...]`
/// - `400` for a `search` over 150 characters, a bad `limit`, a `limit`
///   without `search`, or a parameter given twice
/// - `401` without a valid token
#[utoipa::path(get, path = "/api/users/", tag = "seed",
    params(
        ("search" = Option<String>, Query, max_length = 150, description = "Only users whose username contains this text (ASCII case ignored), ordered by username"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "With `search` only: at most this many, default 20"),
    ),
    responses(
        (status = 200, description = "Every other user by id, or the search's matches", body = Vec<UserDto>),
        (status = 400, description = "A bad `search` or `limit`, or a parameter given twice", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list_users(
    CurrentUser(me): CurrentUser,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let search = search_query(req.query_string())?;
    let auth = state.auth.clone();
    let users = run_blocking(move || match search {
        None => auth.list_other_users(me.id),
        Some((needle, limit)) => auth.search_other_users(me.id, &needle, limit),
    })
    .await?;
    Ok(HttpResponse::Ok().json(users.iter().map(UserDto::from).collect::<Vec<_>>()))
}

/// `None` for the seed's plain listing, else the needle and the limit.
fn search_query(query: &str) -> Result<Option<(String, usize)>, ApiError> {
    let [search, limit] = query_params(query, ["search", "limit"])?;
    let Some(needle) = search else {
        return match limit {
            None => Ok(None),
            Some(_) => Err(ApiError::BadRequest("limit needs search".into())),
        };
    };
    if needle.chars().count() > MAX_SEARCH_CHARS {
        return Err(ApiError::BadRequest(format!(
            "search must be at most {MAX_SEARCH_CHARS} characters"
        )));
    }
    let limit = match limit {
        None => DEFAULT_SEARCH_LIMIT,
        Some(value) => parse_decimal(&value)
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| (1..=MAX_SEARCH_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "limit must be an integer from 1 to {MAX_SEARCH_LIMIT}"
                ))
            })?,
    };
    Ok(Some((needle, limit)))
}
