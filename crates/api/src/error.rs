//! One error type for every HTTP failure: a status per variant and the
//! documented `{"error": "..."}` body. Causes of 5xx answers are logged in
//! full and never sent to the client.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use chat_domain::chat::{CreateChatError, OpenChatError};
use chat_domain::error::BoxError;
use chat_domain::user::{AuthenticateError, ChangePasswordError, LoginError, RegisterError};
use chat_domain::RepositoryError;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// `allow`: the path's methods, for the `Allow` header.
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    /// The request contradicts what is stored (a retry key reused for
    /// another message).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The request body did not arrive in time; the connection is closed.
    #[error("{0}")]
    RequestTimeout(String),
    /// The caller is over one of its own limits (e.g. open sockets).
    #[error("{0}")]
    TooManyRequests(String),
    /// The caller is sending faster than allowed: try again in
    /// `retry_after_s` seconds (the `Retry-After` header).
    #[error("{detail}")]
    SlowDown { detail: String, retry_after_s: u64 },
    /// The server is at one of its limits (e.g. open sockets in total).
    #[error("{0}")]
    AtCapacity(String),
    #[error("the service is temporarily unavailable, try again shortly")]
    Unavailable(#[source] BoxError),
    #[error("internal server error")]
    Internal(#[source] BoxError),
}

/// The body of every error response: one sentence saying what was wrong.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Error, example = json!({"error": "chat not found"}))]
pub struct ErrorBody {
    pub error: String,
}

impl ApiError {
    pub fn internal(cause: impl Into<BoxError>) -> Self {
        Self::Internal(cause.into())
    }

    /// `429` with `Retry-After`: `wait` in whole seconds, rounded up, at
    /// least one (`Retry-After: 0` would invite an immediate retry).
    pub fn slow_down(detail: String, wait: std::time::Duration) -> Self {
        let seconds = wait.as_millis().div_ceil(1000).max(1);
        Self::SlowDown {
            detail,
            retry_after_s: u64::try_from(seconds).unwrap_or(u64::MAX),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::TooManyRequests(_) | Self::SlowDown { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::AtCapacity(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            tracing::error!(error = %error_chain(self), "request failed");
        }
        let mut response = HttpResponse::build(status);
        if status == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        if let Self::SlowDown { retry_after_s, .. } = self {
            response.insert_header((header::RETRY_AFTER, retry_after_s.to_string()));
        }
        if let Self::RequestTimeout(_) = self {
            // The rest of the body may still come; nothing else can follow.
            response.force_close();
        }
        if let Self::MethodNotAllowed { allow } = self {
            response.insert_header((header::ALLOW, *allow));
        }
        response.json(ErrorBody {
            error: self.to_string(),
        })
    }
}

/// "outer: cause: root cause", for logs.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl From<RepositoryError> for ApiError {
    fn from(error: RepositoryError) -> Self {
        match error {
            RepositoryError::Unavailable(_) => Self::Unavailable(Box::new(error)),
            RepositoryError::Unexpected(_) => Self::Internal(Box::new(error)),
        }
    }
}

impl From<RegisterError> for ApiError {
    fn from(error: RegisterError) -> Self {
        match error {
            RegisterError::UsernameTaken => Self::BadRequest(error.to_string()),
            RegisterError::Hashing(e) => Self::internal(e),
            RegisterError::Repository(e) => e.into(),
        }
    }
}

impl From<LoginError> for ApiError {
    fn from(error: LoginError) -> Self {
        match error {
            LoginError::InvalidCredentials => Self::Unauthorized(error.to_string()),
            LoginError::Token(e) => Self::internal(e),
            LoginError::Repository(e) => e.into(),
        }
    }
}

impl From<ChangePasswordError> for ApiError {
    fn from(error: ChangePasswordError) -> Self {
        match error {
            // Not 401: the token is fine, and a client must not take this
            // for being signed out.
            ChangePasswordError::WrongPassword => Self::BadRequest(error.to_string()),
            ChangePasswordError::Hashing(e) => Self::internal(e),
            ChangePasswordError::Token(e) => Self::internal(e),
            ChangePasswordError::Repository(e) => e.into(),
        }
    }
}

impl From<AuthenticateError> for ApiError {
    fn from(error: AuthenticateError) -> Self {
        match error {
            AuthenticateError::InvalidToken => Self::Unauthorized(error.to_string()),
            AuthenticateError::Repository(e) => e.into(),
        }
    }
}

impl From<CreateChatError> for ApiError {
    fn from(error: CreateChatError) -> Self {
        match error {
            CreateChatError::SameUser | CreateChatError::UnknownUser(_) => {
                Self::BadRequest(error.to_string())
            }
            CreateChatError::Repository(e) => e.into(),
        }
    }
}

impl From<OpenChatError> for ApiError {
    fn from(error: OpenChatError) -> Self {
        match error {
            OpenChatError::NotFound => Self::NotFound(error.to_string()),
            OpenChatError::NotParticipant => Self::Forbidden(error.to_string()),
            OpenChatError::Repository(e) => e.into(),
        }
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(error: actix_web::error::BlockingError) -> Self {
        Self::internal(error)
    }
}

/// Runs blocking work (Diesel, Argon2) on the blocking thread pool, never on
/// an executor thread.
pub async fn run_blocking<T, E>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    actix_web::web::block(work).await?.map_err(Into::into)
}
