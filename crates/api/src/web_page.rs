//! The web client: the files under `web/` at the repository's root,
//! embedded in the binary as they are (no build step) and served at `/`
//! (the page) and `/web/<file>` (its scripts, styles and icon).
//!
//! Every answer carries a strict Content-Security-Policy: scripts and
//! styles only from this origin, no inline code, no plugins, no framing. The
//! page renders message bodies as text; the policy is the second wall if a
//! bug ever let one through as HTML. Files are revalidated on every load
//! (`no-cache` with an `ETag`), so an upgraded server is never mixed with a
//! cached old script.

use std::sync::OnceLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};

use crate::error::ApiError;

struct Asset {
    /// The path under `/web/` (the page itself is `index.html`, served at `/`).
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../web/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("js/main.js", JS),
    asset!("js/api.js", JS),
    asset!("js/connection.js", JS),
    asset!("js/store.js", JS),
    asset!("js/outbox.js", JS),
    asset!("js/view.js", JS),
    asset!("js/conversation.js", JS),
    asset!("js/format.js", JS),
];

/// `connect-src 'self'` covers `ws:`/`wss:` to this origin in current
/// browsers (CSP level 3).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; manifest-src 'self'; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /`: the page.
pub async fn index(req: HttpRequest) -> HttpResponse {
    serve(&req, 0)
}

/// `GET /web/<name>`: one of the page's files, or a JSON `404`.
pub async fn asset(req: HttpRequest, name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    ASSETS
        .iter()
        .position(|a| a.name == name)
        .map(|index| serve(&req, index))
        .ok_or_else(|| ApiError::NotFound(format!("no such file: /web/{name}")))
}

/// The total size of the page's files, for the benchmark and the docs.
pub fn total_bytes() -> usize {
    ASSETS.iter().map(|a| a.body.len()).sum()
}

/// Answers with `ASSETS[index]`, or `304` when the client's copy is current.
fn serve(req: &HttpRequest, index: usize) -> HttpResponse {
    let asset = &ASSETS[index];
    let etag = etag_of(index);
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag));
    let mut response = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"));
    if fresh {
        return response.finish();
    }
    response
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        ))
        .body(asset.body)
}

/// A strong validator that changes with the file's bytes (FNV-1a; not a
/// security boundary, only a cache key), computed once per file.
fn etag_of(index: usize) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let hash = a.body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                    (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
                });
                format!("\"{hash:016x}\"")
            })
            .collect()
    });
    &tags[index]
}
