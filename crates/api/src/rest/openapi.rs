//! The OpenAPI 3.1 description of every HTTP route, generated from the
//! handlers' `#[utoipa::path]` attributes and the bodies' `ToSchema`
//! derives, so it changes with the code. Served at `/api/openapi.json`,
//! browsable at `/api/docs/`; a copy is committed as `docs/openapi.json`
//! and `tests/openapi.rs` fails when the two differ.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{auth, chats, health, messages, users};
use crate::ws::handshake;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "chat-server",
        description = "Direct-message chat: accounts, chats, messages (seed protocol and v2), health. \
            Every error answers `{\"error\": \"...\"}`. The WebSocket frames are described in docs/asyncapi.json.",
        license(name = "MIT"),
    ),
    paths(
        auth::register,
        auth::login,
        auth::change_password,
        auth::logout,
        users::list_users,
        chats::list_chats,
        chats::create_chat,
        messages::list_messages,
        messages::send_message,
        messages::mark_read,
        handshake::chat_socket,
        handshake::v2_socket,
        health::healthz,
        health::readyz,
    ),
    modifiers(&BearerToken),
    tags(
        (name = "seed", description = "The original API; existing clients depend on it byte for byte."),
        (name = "accounts", description = "Password changes and signing out (revoking tokens)."),
        (name = "v2", description = "Protocol v2's REST routes: paging, retry-safe sends, read cursors."),
        (name = "websocket", description = "WebSocket handshakes (HTTP until the upgrade)."),
        (name = "operations", description = "Health checks for load balancers and orchestrators."),
    ),
)]
pub struct ApiDoc;

/// `security(("bearer" = []))` on a route refers to this scheme.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "The token from `POST /api/auth/login/`, as `Authorization: Bearer <token>`",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document as committed in `docs/openapi.json`: pretty JSON with a
/// final newline.
pub fn document_json() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}
