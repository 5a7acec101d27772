//! What every handler can reach: the domain services, the delivery
//! pipeline (writer, hub, presence, typing) and the limits.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use chat_domain::chat::{Broadcaster, ChatService, MessageService};
use chat_domain::user::AuthService;

use crate::delivery::{Hub, MessageWriter, PresenceRegistry, TypingRegistry};
use crate::ws::{ConnectionLimits, RateLimit, UserMessageRates};

/// Limits and timings of the HTTP and WebSocket adapters.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Largest accepted REST request body; larger ones get `413`.
    pub max_body_bytes: usize,
    /// Largest accepted WebSocket frame; larger ones close the socket (1009).
    pub max_frame_bytes: usize,
    /// Frames a connection may have waiting to be written before it is
    /// considered too slow and closed (1013).
    pub outbound_queue: usize,
    /// How long one write to a client may take before the client is
    /// considered too slow and closed (1013).
    pub write_timeout: Duration,
    /// How often the server pings; a peer silent for two intervals is
    /// dropped.
    pub heartbeat_interval: Duration,
    /// Messages fetched per query while replaying history.
    pub history_page_size: usize,
    /// Browser origins allowed to open a chat socket (`https://chat.example`),
    /// compared without case. Empty: any origin. A handshake from another
    /// origin is refused with 403, which stops other sites' pages from
    /// opening sockets in their visitors' name.
    pub allowed_origins: Vec<String>,
    /// Messages one user may send (over all their sockets and REST sends
    /// on this instance): beyond it, an error frame or a `429` each.
    pub message_rate: RateLimit,
    /// How long a request body may take to arrive once its headers have:
    /// then `408` and the connection is closed (headers have their own
    /// limit, in the HTTP server).
    pub body_timeout: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            max_frame_bytes: 64 * 1024,
            outbound_queue: 1024,
            write_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(30),
            history_page_size: 200,
            allowed_origins: Vec::new(),
            message_rate: RateLimit {
                per_second: 100.0,
                burst: 200,
            },
            body_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub auth: AuthService,
    pub chats: ChatService,
    pub messages: MessageService,
    pub hub: Hub,
    /// Password changes and logouts, told to the sockets they close.
    pub revocations: crate::auth::Revocations,
    /// Where sessions and REST send messages to be stored (in batches) and
    /// published.
    pub writer: MessageWriter,
    /// Where events that are not stored (typing) are published.
    pub broadcaster: Arc<dyn Broadcaster>,
    /// In a cluster (`CHAT_REDIS_URL`), where sockets say which chats they
    /// follow; `None` for a single instance.
    pub relay: Option<crate::delivery::relay::Relay>,
    pub presence: Arc<dyn PresenceRegistry>,
    pub typing: Arc<dyn TypingRegistry>,
    /// Open chat sockets, in total and per user.
    pub connections: ConnectionLimits,
    /// Wrong passwords allowed per username and per client address.
    pub login_throttle: Arc<crate::auth::LoginThrottle>,
    /// `config.message_rate`, per user over all their sockets and REST
    /// sends.
    pub message_rates: Arc<UserMessageRates>,
    pub config: ApiConfig,
    /// Password hashes computed at once (register, login). Each Argon2 run
    /// takes ~19 MiB and a core for tens of milliseconds; unbounded, a burst
    /// of logins would fill memory and the blocking pool that Diesel needs.
    pub password_slots: Arc<Semaphore>,
    /// The database check behind `/readyz`.
    pub readiness: Arc<crate::rest::health::Readiness>,
    /// What `/metrics` exports; every part of the pipeline counts into it.
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl AppState {
    /// One concurrent password hash per core.
    pub fn password_slots_for_this_machine() -> Arc<Semaphore> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Arc::new(Semaphore::new(cores))
    }
}
