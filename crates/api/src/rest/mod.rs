//! REST handlers: parse the request DTO, call one service method, map the
//! result to a response DTO.

pub mod auth;
pub mod chats;
pub mod dto;
pub mod health;
pub mod messages;
pub mod openapi;
pub mod users;

use std::future::Future;
use std::pin::Pin;

use actix_web::error::JsonPayloadError;
use actix_web::{dev::Payload, web, FromRequest, HttpRequest, HttpResponse};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::state::{ApiConfig, AppState};

/// JSON bodies are parsed whatever their `Content-Type` (clients of the seed
/// API do not all send one), up to the configured size.
pub fn json_config(max_body_bytes: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(max_body_bytes)
        // Both: the first admits a missing header, the second any value.
        .content_type_required(false)
        .content_type(|_| true)
        .error_handler(move |error, _req| json_error(error, max_body_bytes).into())
}

/// A request body that must be a JSON object, deserialised into `T`.
/// (serde alone would also fill a struct from an array such as
/// `["alice", "secret"]`; the API takes objects only.)
pub struct JsonObject<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for JsonObject<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let object = web::Json::<Map<String, Value>>::from_request(req, payload);
        let timeout = req
            .app_data::<web::Data<AppState>>()
            .map_or(ApiConfig::default().body_timeout, |state| {
                state.config.body_timeout
            });
        Box::pin(async move {
            // A client that sends headers and then trickles (or never sends)
            // its body would otherwise hold the connection for ever.
            let web::Json(object) =
                tokio::time::timeout(timeout, object).await.map_err(|_| {
                    ApiError::RequestTimeout(format!(
                        "the request body did not arrive within {} s",
                        timeout.as_secs_f64()
                    ))
                })??;
            serde_json::from_value(Value::Object(object))
                .map(JsonObject)
                .map_err(|e| ApiError::BadRequest(format!("invalid request body: {e}")).into())
        })
    }
}

fn json_error(error: JsonPayloadError, max_body_bytes: usize) -> ApiError {
    match error {
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            ApiError::PayloadTooLarge(format!(
                "request body is larger than {max_body_bytes} bytes"
            ))
        }
        JsonPayloadError::Deserialize(e) if e.is_data() => {
            ApiError::BadRequest("request body must be a JSON object".into())
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

/// A known path's answer to a method it does not support: `405` with the
/// `Allow` header listing `allow` (e.g. `"GET, POST"`), as RFC 9110 asks.
pub fn other_methods(allow: &'static str) -> actix_web::Route {
    web::to(move || async move { Err::<HttpResponse, _>(ApiError::MethodNotAllowed { allow }) })
}

/// The values of the query parameters `names`, in that order, each given at
/// most once (twice is a `400`); other parameters are ignored.
pub(crate) fn query_params<const N: usize>(
    query: &str,
    names: [&str; N],
) -> Result<[Option<String>; N], ApiError> {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(query)
        .map_err(|e| ApiError::BadRequest(format!("invalid query string: {e}")))?
        .into_inner();
    let mut values: [Option<String>; N] = std::array::from_fn(|_| None);
    for (name, value) in pairs {
        let Some(slot) = names.iter().position(|n| *n == name) else {
            continue;
        };
        if values[slot].is_some() {
            return Err(ApiError::BadRequest(format!("{name} is given twice")));
        }
        values[slot] = Some(value);
    }
    Ok(values)
}

/// Plain decimal digits only (no sign, space or exponent).
pub(crate) fn parse_decimal(text: &str) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}
