//! Logging setup: `RUST_LOG` filters (default `info`), `CHAT_LOG_FORMAT`
//! picks text or JSON lines. Both carry the spans an event happened in:
//! `request` (with its `request_id`) and `socket` (with its `socket_id`),
//! so every line of one request or one socket can be found by its id.

use std::io::IsTerminal as _;

use tracing::{Level, Metadata};
use tracing_subscriber::filter::{filter_fn, FilterExt as _};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{fmt, EnvFilter, Layer as _};

use crate::configuration::LogFormat;

/// Where actix-http reports, at ERROR, what is the client's mistake and
/// not the server's: a malformed request (`h1::dispatcher`: "stream error:
/// request parse error", `h1::decoder`: too much unparsed data) or a
/// WebSocket control frame sent in fragments (`ws::codec`: "Unfinished
/// fragment"). The client gets its 400 or its close code; nothing here is
/// for an operator to act on, and an ERROR line would page someone.
const CLIENT_MISTAKE_TARGETS: [&str; 3] = [
    "actix_http::h1::dispatcher",
    "actix_http::h1::decoder",
    "actix_http::ws::codec",
];

fn is_client_mistake(metadata: &Metadata<'_>) -> bool {
    *metadata.level() == Level::ERROR && CLIENT_MISTAKE_TARGETS.contains(&metadata.target())
}

/// Installs the global subscriber. Safe to call more than once (tests):
/// later calls are no-ops.
pub fn init(format: LogFormat) {
    let rust_log = std::env::var("RUST_LOG").unwrap_or_default();
    let filter = EnvFilter::try_new(&rust_log)
        .ok()
        .filter(|_| !rust_log.trim().is_empty())
        .unwrap_or_else(|| EnvFilter::new("info"));
    // Those ERROR lines are dropped (their lower levels stay) unless
    // RUST_LOG names actix_http: whoever asks for it gets all of it.
    let keep_actix_errors = rust_log.contains("actix_http");
    let filter = filter.and(filter_fn(move |metadata| {
        keep_actix_errors || !is_client_mistake(metadata)
    }));
    // Colours only for a person at a terminal, never into files or collectors.
    let text = fmt::layer().with_ansi(std::io::stdout().is_terminal());
    let _ = match format {
        LogFormat::Text => tracing_subscriber::registry()
            .with(text.with_filter(filter))
            .try_init(),
        // `span`: the innermost span's fields; `spans`: every enclosing
        // span's, so a socket's lines carry its handshake's request id too.
        LogFormat::Json => tracing_subscriber::registry()
            .with(
                text.json()
                    .with_current_span(true)
                    .with_span_list(true)
                    .with_filter(filter),
            )
            .try_init(),
    };
}
