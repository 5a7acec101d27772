//! REST handlers: parse the request DTO, call one service method, map the
//! result to a response DTO.

pub mod auth;
pub mod chats;
pub mod dto;
pub mod users;

use actix_web::error::JsonPayloadError;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::error::ApiError;

/// JSON bodies are parsed whatever their `Content-Type` (clients of the seed
/// API do not all send one), up to the configured size.
pub fn json_config(max_body_bytes: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(max_body_bytes)
        .content_type_required(false)
        .content_type(|_| true)
        .error_handler(move |error, _req| json_error(error, max_body_bytes).into())
}

fn json_error(error: JsonPayloadError, max_body_bytes: usize) -> ApiError {
    match error {
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            ApiError::PayloadTooLarge(format!(
                "request body is larger than {max_body_bytes} bytes"
            ))
        }
        JsonPayloadError::ContentType => {
            ApiError::UnsupportedMediaType("request body must be JSON".into())
        }
        JsonPayloadError::Deserialize(e) if e.is_data() => {
            ApiError::BadRequest(format!("invalid request body: {e}"))
        }
        JsonPayloadError::Deserialize(e) => {
            ApiError::BadRequest(format!("request body is not valid JSON: {e}"))
        }
        other => ApiError::BadRequest(format!("could not read request body: {other}")),
    }
}

/// Any path no route matches.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no such endpoint: {} {}",
        req.method(),
        req.path()
    )))
}

/// A known path with a method it does not support.
pub async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}
