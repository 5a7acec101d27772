//! Every metric the server exports, in one registry, and its rendering in
//! the Prometheus (OpenMetrics) text format for `GET /metrics`.
//!
//! One [`Metrics`] is made at start-up and shared (`Arc`) by whoever
//! counts: the writer thread, the hub, the sessions, the HTTP middleware,
//! the database pool. No global: tests run many servers in one process, and
//! each must count only its own.
//!
//! Cardinality is bounded by construction: labels take values from fixed
//! sets (protocols, close codes, methods, reasons) or from the route
//! templates the server registers (`/api/chats/{chat_id}/messages/`), never
//! a user, a chat, a token or a raw path.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix_web::http::Method;
use actix_web::{web, HttpResponse};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// The content type of [`Metrics::render`]: Prometheus scrapes it, and so
/// does any OpenMetrics collector.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The socket protocols, as labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Seed,
    V2,
}

impl Protocol {
    fn label(self) -> &'static str {
        match self {
            Self::Seed => "seed",
            Self::V2 => "v2",
        }
    }
}

/// Where a rate-limited frame or request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateLimited {
    Seed,
    V2,
    Rest,
}

/// Why a socket was closed as a slow consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SlowReason {
    /// Its outbound queue was full when the hub offered it an event.
    QueueFull,
    /// One write took longer than `CHAT_WS_WRITE_TIMEOUT`.
    WriteTimeout,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ProtocolLabels {
    protocol: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CloseLabels {
    protocol: &'static str,
    code: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: &'static str,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PoolLabels {
    state: &'static str,
}

/// What the database pool holds right now (r2d2's `state()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSnapshot {
    pub in_use: u32,
    pub idle: u32,
}

type PoolSource = Box<dyn Fn() -> Option<PoolSnapshot> + Send + Sync>;

/// Durations from 0.5 ms to about 4 s: a commit, a delivery.
fn short_latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0005, 2.0, 14)
}

/// The registry and every metric family in it.
pub struct Metrics {
    registry: Registry,
    sockets_open: Family<ProtocolLabels, Gauge>,
    sockets_closed: Family<CloseLabels, Counter>,
    slow_consumer_closes: Family<ReasonLabels, Counter>,
    rate_limited: Family<SourceLabels, Counter>,
    login_throttled: Counter,
    messages_stored: Counter,
    duplicates: Counter,
    commit_batch_size: Histogram,
    commit_duration: Histogram,
    delivery_latency: Histogram,
    outbound_queue_depth: Histogram,
    gap_repairs: Counter,
    replayed_frames: Family<SourceLabels, Counter>,
    http_requests: Family<RequestLabels, Counter>,
    http_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pool_connections: Family<PoolLabels, Gauge>,
    pool_wait: Histogram,
    pool_source: OnceLock<PoolSource>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn http_histogram() -> Histogram {
    // 1 ms to about 16 s: a login's Argon2 run, a long history page.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let sockets_open = Family::<ProtocolLabels, Gauge>::default();
        registry.register(
            "chat_ws_sockets_open",
            "Open WebSockets, by protocol",
            sockets_open.clone(),
        );
        let sockets_closed = Family::<CloseLabels, Counter>::default();
        registry.register(
            "chat_ws_sockets_closed",
            "WebSockets closed, by protocol and close code (none: the connection ended without a close frame)",
            sockets_closed.clone(),
        );
        let slow_consumer_closes = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "chat_ws_slow_consumer_closes",
            "WebSockets closed with 1013 because the client did not read fast enough, by reason",
            slow_consumer_closes.clone(),
        );
        let rate_limited = Family::<SourceLabels, Counter>::default();
        registry.register(
            "chat_rate_limited",
            "Frames and REST sends refused by the per-user message rate, by source",
            rate_limited.clone(),
        );
        let login_throttled = Counter::default();
        registry.register(
            "chat_login_throttled",
            "Logins and password changes refused with 429 by the wrong-password limits (per username, per address)",
            login_throttled.clone(),
        );
        let messages_stored = Counter::default();
        registry.register(
            "chat_messages_stored",
            "Messages committed to the database (retries of a stored message not counted)",
            messages_stored.clone(),
        );
        let duplicates = Counter::default();
        registry.register(
            "chat_v2_duplicates",
            "Protocol v2 sends whose client_id was already stored with the same body: answered with the original, not stored again",
            duplicates.clone(),
        );
        // Up to 512, the writer's batch limit.
        let commit_batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        registry.register(
            "chat_commit_batch_messages",
            "Messages per group commit of the writer thread",
            commit_batch_size.clone(),
        );
        let commit_duration = Histogram::new(short_latency_buckets());
        registry.register_with_unit(
            "chat_commit_duration",
            "Time of one group commit: the transaction, from begin to committed",
            Unit::Seconds,
            commit_duration.clone(),
        );
        let delivery_latency = Histogram::new(short_latency_buckets());
        registry.register_with_unit(
            "chat_commit_to_socket",
            "Time from a message's commit to its frame (copy or ack) handed to a socket's writer",
            Unit::Seconds,
            delivery_latency.clone(),
        );
        // Up to 16,384 frames (the largest useful CHAT_WS_QUEUE).
        let outbound_queue_depth = Histogram::new(exponential_buckets(1.0, 2.0, 15));
        registry.register(
            "chat_ws_outbound_queue_depth_frames",
            "Frames waiting in a socket's outbound queue, sampled each time the hub queues one",
            outbound_queue_depth.clone(),
        );
        let gap_repairs = Counter::default();
        registry.register(
            "chat_cluster_gap_repairs",
            "Messages a cluster instance read from the database because their Redis event was lost or late",
            gap_repairs.clone(),
        );
        let replayed_frames = Family::<SourceLabels, Counter>::default();
        registry.register(
            "chat_seed_replay_frames",
            "Messages sent in seed sockets' history replays, by where they came from: memory (the frames kept from live delivery, CHAT_REPLAY_CACHE_MB) or the database",
            replayed_frames.clone(),
        );
        let http_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "chat_http_requests",
            "HTTP requests answered, by route template (unmatched: no route), method and status",
            http_requests.clone(),
        );
        let http_duration =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                http_histogram,
            );
        registry.register_with_unit(
            "chat_http_request_duration",
            "Time to answer an HTTP request, by route template and method",
            Unit::Seconds,
            http_duration.clone(),
        );
        let pool_connections = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "chat_db_pool_connections",
            "Database pool connections, by state (in_use, idle), at scrape time",
            pool_connections.clone(),
        );
        // 0.1 ms to about 26 s (the pool's timeout is 30 s).
        let pool_wait = Histogram::new(exponential_buckets(0.0001, 4.0, 10));
        registry.register_with_unit(
            "chat_db_pool_wait",
            "Time to get a connection from the database pool",
            Unit::Seconds,
            pool_wait.clone(),
        );
        // The fixed label sets exist from the start, at zero: a series that
        // appears only at its first event hides that event from `rate()`.
        for protocol in [Protocol::Seed, Protocol::V2] {
            let _ = sockets_open.get_or_create(&ProtocolLabels {
                protocol: protocol.label(),
            });
        }
        for reason in ["queue_full", "write_timeout"] {
            let _ = slow_consumer_closes.get_or_create(&ReasonLabels { reason });
        }
        for source in ["seed", "v2", "rest"] {
            let _ = rate_limited.get_or_create(&SourceLabels { source });
        }
        for source in ["memory", "database"] {
            let _ = replayed_frames.get_or_create(&SourceLabels { source });
        }
        Self {
            registry,
            sockets_open,
            sockets_closed,
            slow_consumer_closes,
            rate_limited,
            login_throttled,
            messages_stored,
            duplicates,
            commit_batch_size,
            commit_duration,
            delivery_latency,
            outbound_queue_depth,
            gap_repairs,
            replayed_frames,
            http_requests,
            http_duration,
            pool_connections,
            pool_wait,
            pool_source: OnceLock::new(),
        }
    }

    /// Where the pool gauges are read at each scrape (set once, when the
    /// database is open; a store without a pool never sets it).
    /// (`None` from it: the database is closed, the gauges keep their last
    /// values).
    pub fn read_pool_from(
        &self,
        source: impl Fn() -> Option<PoolSnapshot> + Send + Sync + 'static,
    ) {
        let _ = self.pool_source.set(Box::new(source));
    }

    /// Everything, in the OpenMetrics text format.
    pub fn render(&self) -> String {
        if let Some(pool) = self.pool_source.get().and_then(|source| source()) {
            self.pool_connections
                .get_or_create(&PoolLabels { state: "in_use" })
                .set(i64::from(pool.in_use));
            self.pool_connections
                .get_or_create(&PoolLabels { state: "idle" })
                .set(i64::from(pool.idle));
        }
        let mut text = String::new();
        // Writing to a String cannot fail; a metric that could not encode
        // would be a bug in the crate, and the scrape shows what came before.
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!(%error, "encoding the metrics failed");
        }
        text
    }

    /// A socket opened; the guard counts it closed when dropped, however
    /// its session ends.
    pub fn socket_opened(self: &Arc<Self>, protocol: Protocol) -> OpenSocket {
        self.sockets_open
            .get_or_create(&ProtocolLabels {
                protocol: protocol.label(),
            })
            .inc();
        OpenSocket {
            metrics: self.clone(),
            protocol,
        }
    }

    /// A socket ended with `code` (`None`: without a close frame).
    pub fn socket_closed(&self, protocol: Protocol, code: Option<u16>) {
        self.sockets_closed
            .get_or_create(&CloseLabels {
                protocol: protocol.label(),
                code: close_code_label(code),
            })
            .inc();
    }

    pub fn slow_consumer_closed(&self, reason: SlowReason) {
        let reason = match reason {
            SlowReason::QueueFull => "queue_full",
            SlowReason::WriteTimeout => "write_timeout",
        };
        self.slow_consumer_closes
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn rate_limited(&self, source: RateLimited) {
        let source = match source {
            RateLimited::Seed => "seed",
            RateLimited::V2 => "v2",
            RateLimited::Rest => "rest",
        };
        self.rate_limited
            .get_or_create(&SourceLabels { source })
            .inc();
    }

    /// A password check refused by the login throttle.
    pub fn login_throttled(&self) {
        self.login_throttled.inc();
    }

    /// One group commit of `messages`, `stored` of them new and
    /// `duplicates` retries of stored ones, that took `took`.
    pub fn committed(&self, messages: usize, stored: usize, duplicates: usize, took: Duration) {
        self.commit_batch_size.observe(messages as f64);
        self.commit_duration.observe(took.as_secs_f64());
        self.messages_stored.inc_by(stored as u64);
        self.duplicates.inc_by(duplicates as u64);
    }

    /// A message's frame reached its socket `since_commit` after the commit.
    pub fn delivered(&self, since_commit: Duration) {
        self.delivery_latency.observe(since_commit.as_secs_f64());
    }

    pub fn outbound_queue_depth(&self, frames: usize) {
        self.outbound_queue_depth.observe(frames as f64);
    }

    pub fn gaps_repaired(&self, messages: usize) {
        self.gap_repairs.inc_by(messages as u64);
    }

    /// One seed socket's history replay: frames sent from memory and from
    /// the database.
    pub fn replayed(&self, from_memory: u64, from_database: u64) {
        for (source, frames) in [("memory", from_memory), ("database", from_database)] {
            if frames > 0 {
                self.replayed_frames
                    .get_or_create(&SourceLabels { source })
                    .inc_by(frames);
            }
        }
    }

    /// One HTTP request: `route` is the matched template (`None`: no route).
    pub fn http_request(
        &self,
        route: Option<String>,
        method: &Method,
        status: u16,
        took: Duration,
    ) {
        let route = route.unwrap_or_else(|| "unmatched".to_owned());
        let method = method_label(method);
        self.http_duration
            .get_or_create(&RouteLabels {
                route: route.clone(),
                method,
            })
            .observe(took.as_secs_f64());
        self.http_requests
            .get_or_create(&RequestLabels {
                route,
                method,
                status,
            })
            .inc();
    }

    pub fn pool_waited(&self, took: Duration) {
        self.pool_wait.observe(took.as_secs_f64());
    }
}

/// Held by an open socket's session; counts it closed when dropped.
pub struct OpenSocket {
    metrics: Arc<Metrics>,
    protocol: Protocol,
}

impl Drop for OpenSocket {
    fn drop(&mut self) {
        self.metrics
            .sockets_open
            .get_or_create(&ProtocolLabels {
                protocol: self.protocol.label(),
            })
            .dec();
    }
}

/// The close codes the server sends or a client may send, each its own
/// label; any other number a client chooses is `other`.
fn close_code_label(code: Option<u16>) -> &'static str {
    match code {
        None => "none",
        Some(1000) => "1000",
        Some(1001) => "1001",
        Some(1002) => "1002",
        Some(1003) => "1003",
        Some(1007) => "1007",
        Some(1008) => "1008",
        Some(1009) => "1009",
        Some(1011) => "1011",
        Some(1013) => "1013",
        Some(4001) => "4001",
        Some(_) => "other",
    }
}

/// Methods are what the client sends, so any token: the standard ones
/// keep their name, the rest are `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// `GET /metrics`.
pub async fn scrape(metrics: web::Data<Metrics>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(metrics.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_with_their_units_and_bounded_labels() {
        let metrics = Arc::new(Metrics::new());
        let socket = metrics.socket_opened(Protocol::V2);
        metrics.committed(3, 2, 1, Duration::from_millis(2));
        metrics.http_request(
            None,
            &Method::from_bytes(b"BREW").unwrap(),
            404,
            Duration::ZERO,
        );
        metrics.socket_closed(Protocol::Seed, Some(4999));
        let text = metrics.render();
        assert!(
            text.contains("chat_ws_sockets_open{protocol=\"v2\"} 1"),
            "{text}"
        );
        assert!(text.contains("chat_messages_stored_total 2"), "{text}");
        assert!(text.contains("chat_v2_duplicates_total 1"), "{text}");
        assert!(
            text.contains("chat_commit_batch_messages_count 1"),
            "{text}"
        );
        assert!(
            text.contains("# UNIT chat_commit_duration_seconds seconds"),
            "{text}"
        );
        assert!(
            text.contains(
                "chat_http_requests_total{route=\"unmatched\",method=\"other\",status=\"404\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("chat_ws_sockets_closed_total{protocol=\"seed\",code=\"other\"} 1"),
            "{text}"
        );
        drop(socket);
        assert!(metrics
            .render()
            .contains("chat_ws_sockets_open{protocol=\"v2\"} 0"));
    }

    #[test]
    fn the_pool_gauges_are_read_at_each_scrape() {
        let metrics = Metrics::new();
        metrics.read_pool_from(|| Some(PoolSnapshot { in_use: 3, idle: 5 }));
        let text = metrics.render();
        assert!(
            text.contains("chat_db_pool_connections{state=\"in_use\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("chat_db_pool_connections{state=\"idle\"} 5"),
            "{text}"
        );
    }
}
