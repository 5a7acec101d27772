//! Wiring: the one place adapters are plugged into the domain's ports, and
//! the server's life from bind to graceful stop.

use std::sync::Arc;

use actix_cors::Cors;
use actix_web::dev::{Server, ServerHandle};
use actix_web::http::header;
use actix_web::middleware::{from_fn, Condition};
use actix_web::{web, App, HttpServer};
use chat_api::auth::{Argon2Hasher, JwtTokens, LoginThrottle, Revocations};
use chat_api::connections::PreAuthLimits;
use chat_api::delivery::cluster_presence::{ClusterPresence, RemotePresence};
use chat_api::delivery::fanout::ClusterParts;
use chat_api::delivery::relay::{PresenceParts, SessionParts};
use chat_api::delivery::timers::{ClusterTimers, TimerWork};
use chat_api::delivery::{
    FanOut, Hub, LocalPresence, LocalTyping, MessageWriter, PresenceRegistry, ReplayTail, Timers,
};
use chat_api::metrics::{Metrics, PoolSnapshot};
use chat_api::rest::health::Readiness;
use chat_api::ws::{ConnectionLimits, RateLimit, UserMessageRates};
use chat_api::{ApiConfig, AppState};
use chat_domain::chat::{
    Broadcaster, ChatRepository, ChatService, MessageLimit, MessageRepository, MessageService,
};
use chat_domain::health::StoreHealth;
use chat_domain::user::{AuthService, UserRepository};
use chat_persistence::{CheckoutObserver, Database, DatabaseOptions, SqliteSynchronous};

use crate::configuration::{MetricsAddr, Settings, SqliteSync};
use crate::secret;

/// Why the server (or a command) could not start. Causes are kept as
/// `source`s; `chat_api::error::error_chain` prints the whole story in one
/// line.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Secret(#[from] secret::SecretError),
    #[error(transparent)]
    Database(#[from] chat_persistence::DatabaseError),
    #[error("password hasher")]
    Hasher(#[from] chat_domain::user::HashingError),
    #[error("cannot listen on {addr} (CHAT_ADDR)")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {addr} (CHAT_METRICS_ADDR)")]
    MetricsBind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid setting: {0}")]
    Setting(String),
    /// A command (`create-user`, ...) could not do what it was asked.
    #[error("{0}")]
    Refused(String),
}

/// Pending connections the kernel may queue for accept.
const LISTEN_BACKLOG: u32 = 8192;
/// Messages waiting for the writer before senders wait too.
const WRITE_QUEUE: usize = 16_384;
/// Committed messages waiting to be broadcast before the writer waits too.
const FAN_OUT_QUEUE: usize = 16_384;
/// How long a stopping server waits for the writer to store what is queued.
const WRITER_STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Most messages stored in one transaction.
const WRITE_BATCH_MAX: usize = 512;

/// The repositories, whichever store implements them.
#[derive(Clone)]
pub(crate) struct Store {
    pub(crate) users: Arc<dyn UserRepository>,
    chats: Arc<dyn ChatRepository>,
    messages: Arc<dyn MessageRepository>,
    health: Arc<dyn StoreHealth>,
    /// The database's pool, for its gauges (weak: the store alone decides
    /// when the database closes); none for the memory store.
    pool: Option<std::sync::Weak<Database>>,
}

impl Store {
    fn of<R: UserRepository + ChatRepository + MessageRepository + StoreHealth>(
        repositories: Arc<R>,
    ) -> Self {
        Self {
            users: repositories.clone(),
            chats: repositories.clone(),
            messages: repositories.clone(),
            health: repositories,
            pool: None,
        }
    }
}

/// How the settings open the database (the server and `chat-server
/// migrate` alike).
pub(crate) fn database_options(settings: &Settings) -> DatabaseOptions {
    DatabaseOptions {
        max_connections: settings.db_pool_size.get(),
        sqlite_synchronous: match settings.sqlite_synchronous {
            SqliteSync::Normal => SqliteSynchronous::Normal,
            SqliteSync::Full => SqliteSynchronous::Full,
        },
        // The data directory is ours to create; a directory named in
        // DATABASE_URL must exist (a typo is refused, not served as a new
        // empty database).
        create_directory: settings.database_url().is_none(),
        ..DatabaseOptions::default()
    }
}

/// The database at `url`, migrated; or, in a `memory` build, the in-memory
/// store for `memory://`.
pub(crate) fn open_store(url: &str, options: &DatabaseOptions) -> Result<Store, StartupError> {
    if url == "memory://" {
        #[cfg(feature = "memory")]
        {
            tracing::warn!(
                "DATABASE_URL=memory://: NOTHING IS STORED ON DISK; every message is lost at exit"
            );
            return Ok(Store::of(Arc::new(chat_persistence::MemoryStore::new())));
        }
        #[cfg(not(feature = "memory"))]
        return Err(StartupError::Setting(
            "DATABASE_URL=memory:// needs a build with the `memory` cargo feature".into(),
        ));
    }
    let database = Database::connect(url, options)?;
    tracing::info!(
        backend = %database.backend(),
        location = %without_credentials(url),
        "database ready, migrations applied"
    );
    let database = Arc::new(database);
    let pool = Arc::downgrade(&database);
    Ok(Store {
        pool: Some(pool),
        ..Store::of(database)
    })
}

/// CORS for `CHAT_CORS_ORIGINS` (applied only when the list is not empty):
/// exactly those origins may read answers and send preflighted requests
/// with a bearer token. A request from another origin is still served (a
/// non-browser client, or this server's own page, sends what it likes) but
/// gets no `Access-Control-Allow-Origin`, so a browser keeps the answer
/// from the page; its preflight is refused with `400`.
fn cross_origin_rules(origins: &[String]) -> Cors {
    origins
        .iter()
        .fold(Cors::default(), |cors, origin| cors.allowed_origin(origin))
        .allowed_methods(["GET", "POST"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            chat_api::REQUEST_ID,
        ])
        // What a client reads to back off or correlate a request.
        .expose_headers([header::RETRY_AFTER, header::ALLOW, chat_api::REQUEST_ID])
        .max_age(3600)
}

/// Where `url` points, without what may be secret: the user and password
/// of a URL's authority (`postgres://chat:pw@db/chat`, `redis://:pw@cache`)
/// and its parameters (`?password=...`). A path keeps its `@`s.
pub(crate) fn without_credentials(url: &str) -> String {
    let url = url.split('?').next().unwrap_or_default();
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_owned(),
    }
}

/// A bound, ready server. Build it, read its port, then run it.
pub struct Application {
    port: u16,
    server: Server,
    /// `/metrics` on an address of its own, and its port.
    metrics_server: Option<(Server, u16)>,
    hub: Hub,
    writer_thread: std::thread::JoinHandle<()>,
    fan_out_thread: std::thread::JoinHandle<()>,
    /// Ends the fan-out thread (in a cluster the relay holds its queue open).
    fan_out_stop: FanOut,
    timers: Timers,
    /// Held so the database closes here, last, on the thread that stops the
    /// server (see `run`).
    store: Store,
}

impl Application {
    pub fn build(settings: &Settings) -> Result<Self, StartupError> {
        // What `chat-server check-config` checks, first: one list of rules.
        settings.validate()?;
        let database_url = settings.effective_database_url();
        let secret = secret::load_or_create(settings.jwt_secret.as_deref(), &settings.data_dir)?;
        let metrics = Arc::new(Metrics::new());
        let options = DatabaseOptions {
            on_checkout: CheckoutObserver(Some(Arc::new({
                let metrics = metrics.clone();
                move |waited| metrics.pool_waited(waited)
            }))),
            ..database_options(settings)
        };
        let store = open_store(&database_url, &options)?;
        if let Some(pool) = store.pool.clone() {
            metrics.read_pool_from(move || {
                pool.upgrade().map(|database| {
                    let state = database.pool_state();
                    PoolSnapshot {
                        in_use: state.connections.saturating_sub(state.idle),
                        idle: state.idle,
                    }
                })
            });
        }

        let limit = usize::try_from(settings.max_message_chars)
            .ok()
            .and_then(MessageLimit::new)
            .ok_or_else(|| {
                StartupError::Setting("CHAT_MAX_MESSAGE_CHARS must be at least 1".into())
            })?;
        // The pipeline, from the inside out: presence and typing state, the
        // hub that reads them, the fan-out thread that feeds the hub, the
        // services that publish to it, the writer that stores through them.
        let presence = Arc::new(LocalPresence::new(settings.presence_grace));
        let typing = Arc::new(LocalTyping::new(settings.typing_ttl));
        // In a cluster, online means on any instance.
        let remote_presence = settings
            .cluster_redis_url()
            .map(|_| Arc::new(RemotePresence::new()));
        let presence_registry: Arc<dyn PresenceRegistry> = match &remote_presence {
            Some(remote) => Arc::new(ClusterPresence {
                local: presence.clone(),
                remote: remote.clone(),
            }),
            None => presence.clone(),
        };
        let replay_tail = Arc::new(ReplayTail::new(
            settings.replay_cache_mb.saturating_mul(1024 * 1024),
        ));
        let hub = Hub::new(
            presence_registry.clone(),
            typing.clone(),
            metrics.clone(),
            replay_tail,
        );
        let revocations = Revocations::default();
        let message_rate = RateLimit {
            per_second: settings.ws_rate,
            burst: settings.ws_burst,
        };
        // In a cluster the instances tell each other what they admit.
        let message_rates = Arc::new(if settings.cluster_redis_url().is_some() {
            UserMessageRates::shared(message_rate)
        } else {
            UserMessageRates::new(message_rate)
        });
        let fan_out_failed = |e: std::io::Error| {
            StartupError::Setting(format!("cannot start the fan-out thread: {e}"))
        };
        let (fan_out, relay, fan_out_thread) = match settings.cluster_redis_url() {
            None => {
                let (fan_out, thread) =
                    FanOut::start(hub.clone(), FAN_OUT_QUEUE).map_err(fan_out_failed)?;
                (fan_out, None, thread)
            }
            Some(redis_url) => {
                let (fan_out, relay, thread) = FanOut::start_clustered(
                    hub.clone(),
                    FAN_OUT_QUEUE,
                    ClusterParts {
                        messages: store.messages.clone(),
                        chats: store.chats.clone(),
                        redis_url: redis_url.to_owned(),
                        resync_every: settings.cluster_resync,
                        presence: PresenceParts {
                            local: presence.clone(),
                            remote: remote_presence.clone().unwrap_or_default(),
                        },
                        sessions: SessionParts {
                            revocations: revocations.clone(),
                            message_rates: message_rates.clone(),
                        },
                    },
                )
                .map_err(fan_out_failed)?;
                tracing::info!("cluster mode: events go through Redis, the database is the truth");
                (fan_out, Some(relay), thread)
            }
        };
        let fan_out_stop = fan_out.clone();
        let broadcaster: Arc<dyn Broadcaster> = Arc::new(fan_out);
        let messages = MessageService::new(store.messages.clone(), broadcaster.clone(), limit);
        let chats = ChatService::new(
            store.users.clone(),
            store.chats.clone(),
            broadcaster.clone(),
        );
        let (writer, writer_thread) = MessageWriter::start(
            messages.clone(),
            WRITE_QUEUE,
            WRITE_BATCH_MAX,
            metrics.clone(),
        )
        .map_err(|e| StartupError::Setting(format!("cannot start the message writer: {e}")))?;
        let timers = Timers::start(TimerWork {
            presence: presence.clone(),
            typing: typing.clone(),
            typing_ttl: settings.typing_ttl,
            chats: chats.clone(),
            users: store.users.clone(),
            broadcaster: broadcaster.clone(),
            cluster: match (&relay, &remote_presence) {
                (Some(relay), Some(remote)) => Some(ClusterTimers {
                    remote: remote.clone(),
                    relay: relay.clone(),
                }),
                _ => None,
            },
        })
        .map_err(|e| StartupError::Setting(format!("cannot start the timers thread: {e}")))?;
        let state = AppState {
            auth: AuthService::new(
                store.users.clone(),
                Arc::new(Argon2Hasher::new()?),
                Arc::new(JwtTokens::new(&secret, settings.token_ttl)),
            ),
            chats,
            messages,
            hub: hub.clone(),
            revocations,
            writer,
            broadcaster,
            relay,
            presence: presence_registry,
            typing,
            connections: ConnectionLimits::new(
                settings.max_connections.get(),
                settings.max_connections_per_user.get(),
            ),
            login_throttle: Arc::new(LoginThrottle::new(
                settings.login_failures_per_username.get(),
                settings.login_failures_per_address.get(),
                settings.login_failure_window,
            )),
            message_rates,
            config: ApiConfig {
                max_body_bytes: settings.max_body_bytes.get(),
                max_frame_bytes: settings.max_frame_bytes.get(),
                outbound_queue: settings.ws_queue.get(),
                write_timeout: settings.ws_write_timeout,
                allowed_origins: settings
                    .allowed_origins
                    .iter()
                    .map(|o| o.trim().to_owned())
                    .filter(|o| !o.is_empty())
                    .collect(),
                heartbeat_interval: settings.heartbeat_interval,
                body_timeout: settings.body_timeout,
                message_rate: RateLimit {
                    per_second: settings.ws_rate,
                    burst: settings.ws_burst,
                },
                ..ApiConfig::default()
            },
            password_slots: AppState::password_slots_for_this_machine(),
            readiness: Arc::new(Readiness::new(store.health.clone())),
            metrics: metrics.clone(),
        };
        let state = web::Data::new(state);

        let cors_origins = settings.cors_origins.clone();
        let pre_auth = PreAuthLimits::new(settings.preauth_connections_per_address);
        let metrics_data = web::Data::from(metrics);
        // On the main port only when asked: elsewhere `/metrics` is the
        // API's 404, like any unknown path.
        let metrics_on_main =
            (settings.metrics_addr == MetricsAddr::Main).then(|| metrics_data.clone());
        let mut server = HttpServer::new(move || {
            let metrics_route = metrics_on_main.clone().map(|metrics| {
                web::resource("/metrics")
                    .app_data(metrics)
                    .get(chat_api::metrics::scrape)
                    .default_service(chat_api::rest::other_methods("GET"))
            });
            App::new()
                .wrap(from_fn(chat_api::connections::pre_auth_gate))
                .wrap(Condition::new(
                    !cors_origins.is_empty(),
                    cross_origin_rules(&cors_origins),
                ))
                .wrap(from_fn(chat_api::access_log))
                .configure(|cfg| {
                    if let Some(route) = metrics_route {
                        cfg.service(route);
                    }
                })
                .configure(chat_api::configure(state.clone()))
                .default_service(web::to(chat_api::rest::not_found))
        })
        // Signals are handled in `run_until_stopped`, which closes sockets
        // with 1001 before stopping the server.
        .disable_signals()
        .on_connect(move |connection, extensions| pre_auth.on_connect(connection, extensions))
        // Thousands of clients may connect at once (reconnect storms); a
        // short accept queue would drop their SYNs into second-long retries.
        // The kernel caps it at net.core.somaxconn.
        .backlog(LISTEN_BACKLOG)
        // A chat server writes small frames, often two in a row to one
        // socket (a message, then the end of its sender's typing); with
        // Nagle's algorithm on, the second waits for the client's delayed
        // ACK, about 40 ms.
        .tcp_nodelay(true)
        // Slow-loris clients: headers must arrive in time, idle keep-alive
        // connections are closed.
        .client_request_timeout(settings.handshake_timeout)
        .keep_alive(settings.idle_timeout)
        .shutdown_timeout(settings.shutdown_timeout.as_secs().max(1));
        if let Some(workers) = settings.workers {
            server = server.workers(workers.get());
        }
        // Bound here (not from a std listener) so the backlog applies.
        let server = server
            .bind(settings.addr)
            .map_err(|source| StartupError::Bind {
                addr: settings.addr,
                source,
            })?;
        let port = server
            .addrs()
            .first()
            .map_or(settings.addr.port(), std::net::SocketAddr::port);
        let server = server.run();
        let metrics_server = match settings.metrics_addr {
            MetricsAddr::Separate(addr) => Some(serve_metrics(addr, metrics_data)?),
            MetricsAddr::Main => {
                tracing::info!(port, "metrics served at /metrics on the main port");
                None
            }
            MetricsAddr::Off => None,
        };
        // Last: "listening" means everything is bound (tests wait for it).
        tracing::info!(addr = %settings.addr, port, "listening");
        Ok(Self {
            port,
            server,
            metrics_server,
            hub,
            writer_thread,
            fan_out_thread,
            fan_out_stop,
            timers,
            store,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port `/metrics` is served on by itself (`None`: on the main
    /// port, or not at all).
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_server.as_ref().map(|(_, port)| *port)
    }

    /// A handle that stops the server gracefully (see [`stop`]).
    pub fn stopper(&self) -> Stopper {
        Stopper {
            server: self.server.handle(),
            hub: self.hub.clone(),
        }
    }

    /// The broadcast hub, to observe open connections.
    pub fn hub(&self) -> Hub {
        self.hub.clone()
    }

    /// Serves until SIGINT or SIGTERM (or a [`Stopper`]), then stops
    /// gracefully: sockets are closed with 1001, in-flight requests finish.
    pub async fn run_until_stopped(self, signals: ShutdownSignals) -> std::io::Result<()> {
        let stopper = self.stopper();
        actix_web::rt::spawn(async move {
            signals.received().await;
            tracing::info!("shutdown requested");
            stopper.stop().await;
        });
        self.run().await
    }

    /// Serves until a [`Stopper`] stops it; ignores signals (for tests that
    /// run many servers in one process). Then shuts down in order: the
    /// writer stores what is queued and stops, and the database connections
    /// close before this returns. (Left to process exit, PostgreSQL
    /// connections were torn down on other threads while the C libraries'
    /// exit handlers ran: "double free" aborts.)
    pub async fn run(self) -> std::io::Result<()> {
        let Self {
            server,
            metrics_server,
            writer_thread,
            fan_out_thread,
            fan_out_stop,
            timers,
            store,
            ..
        } = self;
        let metrics_server = metrics_server.map(|(server, _)| {
            let handle = server.handle();
            (handle, actix_web::rt::spawn(server))
        });
        let served = server.await;
        if let Some((handle, task)) = metrics_server {
            handle.stop(false).await;
            let _ = task.await;
        }
        // The server and its workers are gone, and with them every handle
        // to the writer; it stops once its queue is empty, and the fan-out
        // thread once the writer and the timers (the last publishers) are
        // gone.
        timers.stop();
        let deadline = std::time::Instant::now() + WRITER_STOP_TIMEOUT;
        join_by(writer_thread, deadline, "message writer").await;
        fan_out_stop.stop();
        drop(fan_out_stop);
        join_by(fan_out_thread, deadline, "fan-out").await;
        drop(store);
        served
    }
}

/// `GET /metrics` alone on `addr`, one worker: a scrape every few seconds
/// needs no more, and nothing of the API is reachable there.
fn serve_metrics(
    addr: std::net::SocketAddr,
    metrics: web::Data<Metrics>,
) -> Result<(Server, u16), StartupError> {
    let server = HttpServer::new(move || {
        App::new()
            .app_data(metrics.clone())
            .service(
                web::resource("/metrics")
                    .get(chat_api::metrics::scrape)
                    .default_service(chat_api::rest::other_methods("GET")),
            )
            .default_service(web::to(chat_api::rest::not_found))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .bind(addr)
    .map_err(|source| StartupError::MetricsBind { addr, source })?;
    let port = server
        .addrs()
        .first()
        .map_or(addr.port(), std::net::SocketAddr::port);
    tracing::info!(addr = %addr, port, "metrics listening");
    Ok((server.run(), port))
}

/// Joins `thread` if it finishes before `deadline`; otherwise leaves it.
async fn join_by(thread: std::thread::JoinHandle<()>, deadline: std::time::Instant, name: &str) {
    while !thread.is_finished() && std::time::Instant::now() < deadline {
        actix_web::rt::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    if thread.is_finished() {
        let _ = thread.join();
    } else {
        tracing::warn!(thread = name, "did not stop in time");
    }
}

/// Stops a running [`Application`].
#[derive(Clone)]
pub struct Stopper {
    server: ServerHandle,
    hub: Hub,
}

impl Stopper {
    pub async fn stop(&self) {
        self.hub.shut_down();
        self.server.stop(true).await;
    }

    /// Tells the server to stop at once (sockets get 1001, nothing waits
    /// for in-flight requests) without waiting for it: for a `Drop`.
    pub fn stop_now(&self) {
        self.hub.shut_down();
        // The command is sent here; the returned future only waits.
        drop(self.server.stop(false));
    }
}

/// SIGINT and SIGTERM, listened for from the moment this is made. `main`
/// makes it before the server binds: made later, a signal that came as
/// soon as the server said it was listening killed the process instead of
/// stopping it gracefully (seen in a test under load).
pub struct ShutdownSignals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignals {
    /// Needs the async runtime (call it inside `System::block_on`).
    pub fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let listen = |kind: SignalKind, name: &str| match signal(kind) {
                Ok(signal) => Some(signal),
                Err(error) => {
                    tracing::warn!(%error, signal = name, "cannot listen for a shutdown signal");
                    None
                }
            };
            Self {
                interrupt: listen(SignalKind::interrupt(), "SIGINT"),
                terminate: listen(SignalKind::terminate(), "SIGTERM"),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    async fn received(self) {
        #[cfg(unix)]
        {
            async fn one(signal: Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                () = one(self.interrupt) => {}
                () = one(self.terminate) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::without_credentials;

    #[test]
    fn the_logged_database_location_carries_no_credentials() {
        assert_eq!(
            without_credentials(
                "postgres://chat:hunter2@db.example:5432/chat?sslmode=require&password=x"
            ),
            "postgres://db.example:5432/chat"
        );
        assert_eq!(
            without_credentials("postgresql://a:p@ss@h/db"),
            "postgresql://h/db"
        );
        assert_eq!(
            without_credentials("sqlite://./data/chat.sqlite3"),
            "sqlite://./data/chat.sqlite3"
        );
        assert_eq!(
            without_credentials("sqlite:///srv/chat@2/chat.sqlite3"),
            "sqlite:///srv/chat@2/chat.sqlite3"
        );
        assert_eq!(
            without_credentials("redis://:s3cret@cache.internal:6379/0"),
            "redis://cache.internal:6379/0"
        );
        assert_eq!(
            without_credentials("rediss://user:pw@cache"),
            "rediss://cache"
        );
    }
}
