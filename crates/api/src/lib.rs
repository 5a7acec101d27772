//! The HTTP and WebSocket face of the chat server.
//!
//! actix-web handlers (`rest`) and WebSocket sessions (`ws`, one module per
//! protocol: the seed's and v2) translate between the wire formats
//! (`wire`) and the domain services; `delivery` is the pipeline from a
//! validated message to the sockets (group-commit writer, fan-out thread,
//! hub, presence, typing); `auth` holds the Argon2 and JWT adapters and the
//! bearer-token extractor; `error` maps every failure to a status and
//! `{"error": ...}`. Blocking work (Diesel, Argon2) always runs on the
//! blocking pool.

pub mod auth;
pub mod connections;
pub mod delivery;
pub mod error;
pub mod metrics;
pub mod rest;
pub mod state;
pub mod web_page;
pub mod wire;
pub mod ws;

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;
use tracing::Instrument as _;
use utoipa::OpenApi as _;

pub use error::ApiError;
pub use state::{ApiConfig, AppState};

/// Registers every route of the API. The app's default service must be
/// [`rest::not_found`] so unknown paths answer JSON too.
pub fn configure(state: web::Data<AppState>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        let json = rest::json_config(state.config.max_body_bytes);
        cfg.app_data(state)
            .app_data(json)
            .service(
                web::resource("/api/auth/register/")
                    .post(rest::auth::register)
                    .default_service(rest::other_methods("POST")),
            )
            .service(
                web::resource("/api/auth/login/")
                    .post(rest::auth::login)
                    .default_service(rest::other_methods("POST")),
            )
            .service(
                web::resource("/api/auth/password/")
                    .post(rest::auth::change_password)
                    .default_service(rest::other_methods("POST")),
            )
            .service(
                web::resource("/api/auth/logout/")
                    .post(rest::auth::logout)
                    .default_service(rest::other_methods("POST")),
            )
            .service(
                web::resource("/api/users/")
                    .get(rest::users::list_users)
                    .default_service(rest::other_methods("GET")),
            )
            .service(
                web::resource("/api/chats/")
                    .get(rest::chats::list_chats)
                    .default_service(rest::other_methods("GET")),
            )
            .service(
                web::resource("/api/chats/create/")
                    .post(rest::chats::create_chat)
                    .default_service(rest::other_methods("POST")),
            )
            .service(
                web::resource("/api/chats/{chat_id}/messages/")
                    .get(rest::messages::list_messages)
                    .post(rest::messages::send_message)
                    .default_service(rest::other_methods("GET, POST")),
            )
            .service(
                web::resource("/api/chats/{chat_id}/read/")
                    .post(rest::messages::mark_read)
                    .default_service(rest::other_methods("POST")),
            )
            .service(
                web::resource("/ws/chat/{chat_id}/")
                    .get(ws::chat_socket)
                    .default_service(rest::other_methods("GET")),
            )
            .service(
                web::resource("/ws/v2/")
                    .get(ws::v2_socket)
                    .default_service(rest::other_methods("GET")),
            )
            .service(
                web::resource("/healthz")
                    .get(rest::health::healthz)
                    .default_service(rest::other_methods("GET")),
            )
            .service(
                web::resource("/readyz")
                    .get(rest::health::readyz)
                    .default_service(rest::other_methods("GET")),
            )
            // The OpenAPI document and its browsable page (assets embedded).
            .service(
                utoipa_swagger_ui::SwaggerUi::new("/api/docs/{_:.*}")
                    .url("/api/openapi.json", rest::openapi::ApiDoc::openapi()),
            )
            .service(web::resource("/api/docs").to(|| async {
                actix_web::HttpResponse::PermanentRedirect()
                    .insert_header(("location", "/api/docs/"))
                    .finish()
            }))
            .service(
                web::resource("/")
                    .get(web_page::index)
                    .default_service(rest::other_methods("GET")),
            )
            .service(
                web::resource("/web/{name:.+}")
                    .get(web_page::asset)
                    .default_service(rest::other_methods("GET")),
            );
    }
}

/// The header that carries a request's id, both ways.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest `X-Request-Id` taken from a client.
const MAX_REQUEST_ID: usize = 128;

/// The client's `X-Request-Id` if it is sane (1 to 128 visible ASCII
/// characters: nothing that could forge a log line or grow without bound),
/// else a new one: 16 random hex digits.
fn request_id(req: &ServiceRequest) -> String {
    let given = req
        .headers()
        .get(&REQUEST_ID)
        .map(HeaderValue::as_bytes)
        .filter(|id| {
            (1..=MAX_REQUEST_ID).contains(&id.len()) && id.iter().all(u8::is_ascii_graphic)
        })
        .and_then(|id| std::str::from_utf8(id).ok());
    given.map_or_else(new_id, str::to_owned)
}

/// A new id for a request or a socket: 16 random hex digits.
pub fn new_id() -> String {
    let mut bytes = [0u8; 8];
    // Without randomness an id is still unique enough within a log: the
    // time in nanoseconds.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = (nanos as u64).to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Gives each request its id (echoed in `X-Request-Id`) and a `request`
/// span carrying it, so every line logged while serving it (this one
/// included) names it; then logs one line per request: method, path,
/// status, time, and counts it for the metrics. The query string is never
/// logged, because WebSocket clients put their token there.
pub async fn access_log(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = request_id(&req);
    // At ERROR level so that it exists whatever RUST_LOG lets through: a
    // span's level only decides whether it is recorded, and the warnings
    // and errors are the lines that most need their request's id.
    let span = tracing::error_span!("request", request_id = %id);
    let mut response = log_request(req, next).instrument(span).await;
    if let (Ok(response), Ok(id)) = (&mut response, HeaderValue::from_str(&id)) {
        response.headers_mut().insert(REQUEST_ID, id);
    }
    response
}

async fn log_request<B: MessageBody>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<B>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.path().to_owned();
    let peer = req.peer_addr();
    // The route's template (`/api/chats/{chat_id}/messages/`), never the
    // path itself: metrics must not grow with ids or garbage paths.
    let route = req.match_pattern();
    let metrics = req
        .app_data::<web::Data<AppState>>()
        .map(|state| state.metrics.clone());
    let response = next.call(req).await;
    let status = match &response {
        Ok(r) => r.status().as_u16(),
        Err(e) => e.as_response_error().status_code().as_u16(),
    };
    let elapsed = started.elapsed();
    if let Some(metrics) = metrics {
        metrics.http_request(route, &method, status, elapsed);
    }
    let elapsed_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    let peer = peer.map(|p| p.to_string()).unwrap_or_default();
    // A load balancer probes every few seconds; a passing probe is noise.
    if status == 200 && (path == "/healthz" || path == "/readyz") {
        tracing::debug!(target: "access", %method, path, status, elapsed_us, peer, "request");
    } else {
        tracing::info!(target: "access", %method, path, status, elapsed_us, peer, "request");
    }
    response
}
