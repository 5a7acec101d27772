//! `CurrentUser`: the authenticated caller of a REST handler.

use std::future::Future;
use std::pin::Pin;

use actix_web::http::header;
use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use chat_domain::user::User;

use crate::error::{run_blocking, ApiError};
use crate::state::AppState;

/// The user whose bearer token came with the request. Extracting it answers
/// `401 {"error"}` for a missing, malformed, expired or forged token, or one
/// whose user no longer exists.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub User);

/// The token from `Authorization: Bearer <token>`, if the header is there.
/// `Err` when the header is present but not a bearer token.
pub fn bearer_token(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthorized("malformed Authorization header".into()))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim().to_owned()))
        }
        _ => Err(ApiError::Unauthorized(
            "the Authorization header must be 'Bearer <token>'".into(),
        )),
    }
}

/// The `?token=` fallback that WebSocket clients use (browsers cannot set an
/// `Authorization` header on a socket): the percent-decoded value of a single
/// `token` parameter in `query` (a request's query string, without the `?`),
/// or `None` when there is none, it is empty, or the query is malformed.
/// Public so the fuzz target (`fuzz/`) can drive it.
pub fn query_token(query: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct TokenQuery {
        token: Option<String>,
    }
    web::Query::<TokenQuery>::from_query(query)
        .ok()
        .and_then(|q| q.into_inner().token)
        .filter(|t| !t.is_empty())
}

/// Checks `token` and loads its user, off the executor threads.
pub async fn authenticate(state: &AppState, token: String) -> Result<User, ApiError> {
    let auth = state.auth.clone();
    run_blocking(move || auth.authenticate(&token)).await
}

impl FromRequest for CurrentUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer_token(req);
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let token = token?.ok_or_else(|| {
                ApiError::Unauthorized(
                    "authentication required: send 'Authorization: Bearer <token>'".into(),
                )
            })?;
            let state = state.ok_or_else(|| ApiError::internal("application state missing"))?;
            authenticate(&state, token).await.map(CurrentUser)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_token_is_found_among_other_parameters_and_decoded() {
        assert_eq!(query_token("token=abc.def"), Some("abc.def".into()));
        assert_eq!(query_token("a=1&token=x%2Ey&b=2"), Some("x.y".into()));
    }

    #[test]
    fn an_empty_missing_or_repeated_query_token_is_no_token() {
        assert_eq!(query_token(""), None);
        assert_eq!(query_token("token="), None);
        assert_eq!(query_token("tok=abc"), None);
        // Two values are ambiguous: refuse rather than pick one.
        assert_eq!(query_token("token=a&token=b"), None);
    }
}
