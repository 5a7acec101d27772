//! Settings: every one an environment variable with a matching flag and a
//! safe default, as CONTRACT.md names them.

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// The command line: `chat-server [COMMAND] [SETTINGS]`; no command serves.
#[derive(Debug, Parser)]
#[command(
    name = "chat-server",
    version,
    about = "Real-time direct-message chat server (REST + WebSocket)",
    long_about = "Real-time direct-message chat server (REST + WebSocket) on SQLite or PostgreSQL.\n\n\
        Without a command it serves (as `chat-server serve`). Every setting is a flag and an \
        environment variable (shown as [env: ...]); a flag wins over its variable.",
    after_help = "Examples:\n  \
        chat-server                                   serve on 127.0.0.1:8000, SQLite in ./data\n  \
        DATABASE_URL=postgres://chat@db/chat chat-server migrate --check\n  \
        echo 'a long password' | chat-server create-user alice\n  \
        chat-server import-django --from sqlite:///srv/django/db.sqlite3 --dry-run\n  \
        CHAT_ADDR=0.0.0.0:8000 chat-server check-config",
    args_conflicts_with_subcommands = true,
    args_override_self = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The settings when no command is given (serving).
    #[command(flatten)]
    pub settings: Settings,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve HTTP and WebSockets (the default): migrations are applied first.
    Serve(Settings),
    /// Apply the database's pending migrations and exit.
    ///
    /// Useful before a rolling upgrade: migrate once, then restart the
    /// instances (each would also migrate at start).
    Migrate {
        /// Apply nothing: list what is pending and exit 1 if anything is
        /// (0 when up to date, 2 when the database cannot be checked).
        #[arg(long)]
        check: bool,
        #[command(flatten)]
        settings: Settings,
    },
    /// Create an account (the database is migrated first).
    ///
    /// The password is read from CHAT_NEW_PASSWORD, or else from the first
    /// line of standard input; never from a flag, which other users could
    /// read in the process list.
    CreateUser {
        /// The new account's username (the same rules as registration).
        username: String,
        #[command(flatten)]
        settings: Settings,
    },
    /// Print the effective configuration (secrets redacted) and check it.
    ///
    /// Exits 1 when start-up would refuse it. Nothing is started,
    /// connected to or created.
    CheckConfig(Settings),
    /// Import the original Django app's database into this server's.
    ///
    /// Reads auth_user and the app's direct chats, participants and
    /// messages from --from (never written to), checks every row against
    /// this server's rules, and writes them to DATABASE_URL (migrated
    /// first), keeping ids. Safe to re-run: rows already there are left
    /// alone. See docs/migrating-from-django.md.
    ImportDjango {
        /// The Django database: sqlite://<path> (opened read-only) or
        /// postgres://... (postgres build; one read-only snapshot).
        #[arg(long = "from", value_name = "DATABASE URL")]
        from: String,
        /// The Django app's label: the prefix of its tables
        /// (<label>_directchat, ...).
        #[arg(long = "app-label", default_value = "chat")]
        app_label: String,
        /// Skip the rows the server would refuse (and the rows that depend
        /// on them), listing each, instead of refusing to import.
        #[arg(long = "skip-invalid")]
        skip_invalid: bool,
        /// Read and check only: print the counts and every problem, write
        /// nothing.
        #[arg(long = "dry-run")]
        dry_run: bool,
        #[command(flatten)]
        settings: Settings,
    },
}

/// How `import-django` was asked to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOptions {
    pub from: String,
    pub app_label: String,
    pub skip_invalid: bool,
    pub dry_run: bool,
}

/// What to do, once the command line is parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    Serve,
    Migrate { check: bool },
    CreateUser { username: String },
    CheckConfig,
    ImportDjango(ImportOptions),
}

impl Cli {
    /// The task (serving when no command was named) and its settings.
    pub fn into_task(self) -> (Task, Settings) {
        match self.command {
            None => (Task::Serve, self.settings),
            Some(Command::Serve(settings)) => (Task::Serve, settings),
            Some(Command::Migrate { check, settings }) => (Task::Migrate { check }, settings),
            Some(Command::CreateUser { username, settings }) => {
                (Task::CreateUser { username }, settings)
            }
            Some(Command::CheckConfig(settings)) => (Task::CheckConfig, settings),
            Some(Command::ImportDjango {
                from,
                app_label,
                skip_invalid,
                dry_run,
                settings,
            }) => (
                Task::ImportDjango(ImportOptions {
                    from,
                    app_label,
                    skip_invalid,
                    dry_run,
                }),
                settings,
            ),
        }
    }
}

/// `CHAT_METRICS_ADDR`'s default: loopback, next to nothing else (9100 is
/// node_exporter's, often on the same machine).
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9180";

/// Where `/metrics` is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsAddr {
    /// A listener of its own.
    Separate(SocketAddr),
    /// On the main address, beside the API.
    Main,
    Off,
}

fn parse_metrics_addr(text: &str) -> Result<MetricsAddr, String> {
    match text.trim() {
        "off" => Ok(MetricsAddr::Off),
        "main" => Ok(MetricsAddr::Main),
        addr => addr.parse().map(MetricsAddr::Separate).map_err(|_| {
            format!("'{addr}' is not an address (e.g. 127.0.0.1:9180), `main` or `off`")
        }),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `PRAGMA synchronous` for SQLite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SqliteSync {
    Normal,
    Full,
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "chat-server",
    version,
    about = "Real-time direct-message chat server (REST + WebSocket)",
    // A flag given twice: the last one counts (scripts append overrides).
    args_override_self = true
)]
pub struct Settings {
    /// Address to listen on.
    #[arg(long = "addr", env = "CHAT_ADDR", default_value = "127.0.0.1:8000")]
    pub addr: SocketAddr,

    /// Where the default SQLite file and the generated JWT secret live.
    #[arg(long = "data-dir", env = "CHAT_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// `sqlite://path`, or `postgres://...` with the postgres build.
    /// Defaults to `chat.sqlite3` in the data directory.
    #[arg(long = "database-url", env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// HS256 key, at least 32 bytes. Generated once into the data directory
    /// (mode 0600) when not set.
    #[arg(long = "jwt-secret", env = "CHAT_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Token lifetime, e.g. `24h`, `90m`, `3600s`.
    #[arg(long = "token-ttl", env = "CHAT_TOKEN_TTL", default_value = "24h", value_parser = humantime::parse_duration)]
    pub token_ttl: Duration,

    /// Longest message body, in characters.
    #[arg(long = "max-message-chars", env = "CHAT_MAX_MESSAGE_CHARS", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_message_chars: u32,

    /// Largest REST request body, in bytes (larger: 413).
    #[arg(
        long = "max-body-bytes",
        env = "CHAT_MAX_BODY_BYTES",
        default_value = "65536"
    )]
    pub max_body_bytes: NonZeroUsize,

    /// Largest WebSocket frame, in bytes (larger: close 1009).
    #[arg(
        long = "max-frame-bytes",
        env = "CHAT_MAX_FRAME_BYTES",
        default_value = "65536"
    )]
    pub max_frame_bytes: NonZeroUsize,

    /// Frames queued per WebSocket before the connection is closed as too
    /// slow (1013).
    #[arg(long = "ws-queue", env = "CHAT_WS_QUEUE", default_value = "1024")]
    pub ws_queue: NonZeroUsize,

    /// Memory, in MB, for the seed frames each chat delivered lately: a seed
    /// socket's history replay sends them without reading the database
    /// (the rest, older or newer, it reads). 0 turns it off; past the
    /// budget the chats used least recently are forgotten.
    #[arg(
        long = "replay-cache-mb",
        env = "CHAT_REPLAY_CACHE_MB",
        default_value_t = 64
    )]
    pub replay_cache_mb: usize,

    /// How long one write to a WebSocket client may take before the client
    /// is closed as too slow (1013).
    #[arg(long = "ws-write-timeout", env = "CHAT_WS_WRITE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub ws_write_timeout: Duration,

    /// Server ping interval; peers silent for two intervals are dropped.
    #[arg(long = "heartbeat-interval", env = "CHAT_HEARTBEAT_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub heartbeat_interval: Duration,

    /// How long a v2 `typing` (active) lasts unless repeated.
    #[arg(long = "typing-ttl", env = "CHAT_TYPING_TTL", default_value = "6s", value_parser = parse_positive_duration)]
    pub typing_ttl: Duration,

    /// How long a user with no socket left still counts as online, so a
    /// reload does not flap; `last_seen` is stored when it ends.
    #[arg(long = "presence-grace", env = "CHAT_PRESENCE_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub presence_grace: Duration,

    /// Messages one user may send per second on average, over all of their
    /// sockets and REST sends on this instance; beyond it each message gets
    /// an error frame (REST: `429`) and is not stored, e.g. `100`.
    #[arg(long = "ws-rate", env = "CHAT_WS_RATE", default_value_t = 100.0,
          value_parser = parse_rate)]
    pub ws_rate: f64,

    /// Messages one user may send at once before the rate applies, e.g.
    /// `200`.
    #[arg(long = "ws-burst", env = "CHAT_WS_BURST", default_value_t = 200,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub ws_burst: u32,

    /// Open chat sockets in total; beyond it handshakes get 503.
    #[arg(
        long = "max-connections",
        env = "CHAT_MAX_CONNECTIONS",
        default_value = "20000"
    )]
    pub max_connections: NonZeroUsize,

    /// Open chat sockets per user; beyond it handshakes get 429.
    #[arg(
        long = "max-connections-per-user",
        env = "CHAT_MAX_CONNECTIONS_PER_USER",
        default_value = "256"
    )]
    pub max_connections_per_user: NonZeroUsize,

    /// How long a client has to send a request's headers (a handshake
    /// included) once connected; slower ones get 408 and are closed.
    #[arg(long = "handshake-timeout", env = "CHAT_HANDSHAKE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub handshake_timeout: Duration,

    /// How long a request body may take to arrive once its headers have
    /// (then `408` and the connection is closed), e.g. `10s`.
    #[arg(long = "body-timeout", env = "CHAT_BODY_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    pub body_timeout: Duration,

    /// Connections one client address may hold before it authenticates
    /// (0: no limit). Beyond it, requests without a token get `429` and
    /// the connection is closed. Behind a reverse proxy every client has
    /// the proxy's address: raise it or set 0 there, e.g. `256`.
    #[arg(
        long = "preauth-connections-per-address",
        env = "CHAT_PREAUTH_CONNECTIONS_PER_ADDRESS",
        default_value_t = 256
    )]
    pub preauth_connections_per_address: usize,

    /// Wrong passwords one username may be tried with per
    /// `CHAT_LOGIN_FAILURE_WINDOW` (logins and password changes; right
    /// ones do not count), on each instance; beyond it `429` and
    /// `Retry-After`.
    #[arg(
        long = "login-failures-per-username",
        env = "CHAT_LOGIN_FAILURES_PER_USERNAME",
        default_value = "10"
    )]
    pub login_failures_per_username: NonZeroU32,

    /// Wrong passwords one client address (an IPv6 client: its /64) may
    /// try per `CHAT_LOGIN_FAILURE_WINDOW`, over all usernames. Behind a
    /// reverse proxy every client has the proxy's address: raise it.
    #[arg(
        long = "login-failures-per-address",
        env = "CHAT_LOGIN_FAILURES_PER_ADDRESS",
        default_value = "100"
    )]
    pub login_failures_per_address: NonZeroU32,

    /// The window the login failure limits count over; the allowance
    /// comes back evenly over it.
    #[arg(long = "login-failure-window", env = "CHAT_LOGIN_FAILURE_WINDOW", default_value = "15m", value_parser = humantime::parse_duration)]
    pub login_failure_window: Duration,

    /// How long an idle HTTP keep-alive connection stays open.
    #[arg(long = "idle-timeout", env = "CHAT_IDLE_TIMEOUT", default_value = "15s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,

    /// Browser origins allowed to open chat sockets, comma-separated
    /// (`https://chat.example,https://app.example`). Empty: any origin.
    #[arg(
        long = "allowed-origins",
        env = "CHAT_ALLOWED_ORIGINS",
        value_delimiter = ',',
        default_value = ""
    )]
    pub allowed_origins: Vec<String>,

    /// Web origins allowed to call the REST API from a browser page served
    /// elsewhere (CORS), comma-separated, exact: scheme, host and port, no
    /// path (`https://app.example,http://localhost:5173`). Default: none,
    /// so only pages served by this server can read its answers. Tokens
    /// travel in the Authorization header, not cookies, so credentials mode
    /// is neither needed nor allowed.
    #[arg(long = "cors-origins", env = "CHAT_CORS_ORIGINS", value_delimiter = ',', value_parser = parse_origin)]
    pub cors_origins: Vec<String>,

    /// SQLite only: `normal` (default) survives a crash of the server
    /// process with nothing lost; `full` also survives power loss, at a
    /// cost in write throughput.
    #[arg(
        long = "sqlite-synchronous",
        env = "CHAT_SQLITE_SYNCHRONOUS",
        value_enum,
        default_value = "normal"
    )]
    pub sqlite_synchronous: SqliteSync,

    /// Database connections in the pool.
    #[arg(long = "db-pool-size", env = "CHAT_DB_POOL_SIZE", default_value = "8")]
    pub db_pool_size: NonZeroU32,

    /// HTTP worker threads (default: one per core).
    #[arg(long = "workers", env = "CHAT_WORKERS")]
    pub workers: Option<NonZeroUsize>,

    /// `redis://host:port`: run as one instance of a cluster (PostgreSQL
    /// only), publishing every event to Redis and receiving the others'.
    /// Unset: one process, no Redis.
    #[arg(long = "redis-url", env = "CHAT_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// In a cluster, how often each followed chat is compared with the
    /// database, so a message whose Redis event was lost still arrives.
    #[arg(long = "cluster-resync", env = "CHAT_CLUSTER_RESYNC", default_value = "2s", value_parser = parse_positive_duration)]
    pub cluster_resync: Duration,

    /// How long a graceful shutdown waits for in-flight requests.
    #[arg(long = "shutdown-timeout", env = "CHAT_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,

    /// Where `GET /metrics` (Prometheus text format) is served: an address
    /// of its own (default: loopback only, so it is never public by
    /// accident; port 0 picks a free one), `main` for the main address, or
    /// `off`.
    #[arg(
        long = "metrics-addr",
        env = "CHAT_METRICS_ADDR",
        default_value = DEFAULT_METRICS_ADDR,
        value_parser = parse_metrics_addr
    )]
    pub metrics_addr: MetricsAddr,

    /// `text` for people, `json` for log collectors. The filter is RUST_LOG.
    #[arg(
        long = "log-format",
        env = "CHAT_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
}

impl Settings {
    /// The Redis URL when one is set (an empty value counts as unset).
    pub fn cluster_redis_url(&self) -> Option<&str> {
        self.redis_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
    }

    /// `DATABASE_URL` when one is set (an empty value counts as unset).
    pub fn database_url(&self) -> Option<&str> {
        self.database_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
    }

    /// The database URL in force: the configured one, or the SQLite file in
    /// the data directory.
    pub fn effective_database_url(&self) -> String {
        match &self.database_url {
            Some(url) if !url.trim().is_empty() => url.clone(),
            _ => format!("sqlite://{}", self.data_dir.join("chat.sqlite3").display()),
        }
    }
}

fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        Ok(_) => Err("must be longer than zero".to_owned()),
        Err(error) => Err(error.to_string()),
    }
}

/// One exact web origin, `scheme://host[:port]`, as browsers send it in
/// `Origin` (so no path, no trailing slash, no wildcard).
fn parse_origin(text: &str) -> Result<String, String> {
    let origin = text.trim();
    let refuse = |why: &str| {
        Err(format!("'{origin}' is not a web origin: {why} (e.g. https://app.example or http://localhost:5173)"))
    };
    if origin == "*" {
        return refuse("a wildcard would let any site read any user's chats; list the origins");
    }
    let Some((scheme, authority)) = origin.split_once("://") else {
        return refuse("it needs http:// or https://");
    };
    if scheme != "http" && scheme != "https" {
        return refuse("the scheme must be http or https");
    }
    if authority.is_empty()
        || authority.contains(['/', '?', '#', '@', ' '])
        || authority.ends_with(':')
    {
        return refuse("only scheme, host and port, with no path or trailing slash");
    }
    if origin.bytes().any(|b| b.is_ascii_uppercase()) {
        return refuse("browsers send origins in lower case");
    }
    Ok(origin.to_owned())
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "'{text}' is not a positive number of messages per second"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Settings, clap::Error> {
        Settings::try_parse_from(std::iter::once("chat-server").chain(args.iter().copied()))
    }

    #[test]
    fn the_defaults_are_those_of_the_contract() {
        let settings = parse(&[]).unwrap();
        assert_eq!(settings.addr, "127.0.0.1:8000".parse().unwrap());
        assert_eq!(settings.data_dir, PathBuf::from("./data"));
        assert_eq!(settings.token_ttl, Duration::from_secs(24 * 3600));
        assert_eq!(settings.max_message_chars, 4096);
        assert_eq!(settings.max_body_bytes.get(), 65536);
        assert_eq!(settings.log_format, LogFormat::Text);
        assert_eq!(settings.typing_ttl, Duration::from_secs(6));
        assert_eq!(settings.presence_grace, Duration::from_secs(10));
        assert_eq!(
            settings.metrics_addr,
            MetricsAddr::Separate("127.0.0.1:9180".parse().unwrap())
        );
        assert_eq!(
            settings.effective_database_url(),
            "sqlite://./data/chat.sqlite3"
        );
    }

    #[test]
    fn flags_override_defaults() {
        let settings = parse(&[
            "--typing-ttl",
            "1500ms",
            "--presence-grace",
            "1m",
            "--token-ttl",
            "90m",
            "--database-url",
            "postgres://x/y",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert_eq!(settings.token_ttl, Duration::from_secs(90 * 60));
        assert_eq!(settings.typing_ttl, Duration::from_millis(1500));
        assert_eq!(settings.presence_grace, Duration::from_secs(60));
        assert_eq!(settings.effective_database_url(), "postgres://x/y");
        assert_eq!(settings.log_format, LogFormat::Json);
        assert_eq!(
            parse(&["--metrics-addr", "main"]).unwrap().metrics_addr,
            MetricsAddr::Main
        );
        assert_eq!(
            parse(&["--metrics-addr", "off"]).unwrap().metrics_addr,
            MetricsAddr::Off
        );
    }

    #[test]
    fn nonsense_values_are_refused() {
        assert!(parse(&["--max-message-chars", "0"]).is_err());
        assert!(parse(&["--token-ttl", "soon"]).is_err());
        assert!(parse(&["--addr", "localhost"]).is_err());
        assert!(parse(&["--ws-rate", "0"]).is_err());
        assert!(parse(&["--ws-rate", "NaN"]).is_err());
        assert!(parse(&["--ws-burst", "0"]).is_err());
        assert!(parse(&["--typing-ttl", "0s"]).is_err());
        assert!(parse(&["--presence-grace", "soon"]).is_err());
        assert!(parse(&["--metrics-addr", "9180"]).is_err());
        assert!(parse(&["--metrics-addr", "on"]).is_err());
        // Sizes and counts are refused at zero, not clamped later.
        for flag in [
            "--db-pool-size",
            "--ws-queue",
            "--workers",
            "--max-connections",
            "--max-connections-per-user",
            "--max-body-bytes",
            "--max-frame-bytes",
        ] {
            assert!(parse(&[flag, "0"]).is_err(), "{flag} 0 was accepted");
        }
    }

    #[test]
    fn cors_origins_are_exact_web_origins() {
        let settings = parse(&[
            "--cors-origins",
            "https://app.example, http://localhost:5173",
        ])
        .unwrap();
        assert_eq!(
            settings.cors_origins,
            ["https://app.example", "http://localhost:5173"]
        );
        assert!(parse(&[]).unwrap().cors_origins.is_empty());
        for bad in [
            "*",
            "app.example",
            "https://app.example/",
            "https://app.example/chat",
            "ftp://app.example",
            "https://",
            "https://App.Example",
            "https://user@app.example",
            "https://app.example:",
        ] {
            let error = parse(&["--cors-origins", bad]).unwrap_err().to_string();
            assert!(error.contains("is not a web origin"), "{bad}: {error}");
        }
    }
}
