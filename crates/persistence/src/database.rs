//! Opening a database: URL parsing, per-connection settings, migrations, the
//! connection pool, and the macro that runs a query on whichever backend the
//! pool holds.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chat_domain::error::BoxError;
use chat_domain::health::StoreProblem;
use diesel::r2d2::{ConnectionManager, HandleError, Pool};
use diesel::{Connection, QueryResult};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

#[cfg(feature = "postgres")]
use diesel::PgConnection;
#[cfg(feature = "sqlite")]
use {diesel::connection::SimpleConnection, diesel::SqliteConnection, std::path::Path};

#[cfg(feature = "sqlite")]
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");
#[cfg(feature = "postgres")]
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");

/// How long a SQLite statement waits for another connection's write lock
/// before failing with "database is locked".
#[cfg(feature = "sqlite")]
const SQLITE_BUSY_TIMEOUT_MS: u32 = 5_000;

/// Which database engine a [`Database`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        })
    }
}

/// Pool settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseOptions {
    /// Most connections the pool holds open (at least 1).
    pub max_connections: u32,
    /// How long to wait for a connection, both when connecting to
    /// PostgreSQL and when every pooled connection is busy; after that a
    /// call fails as `RepositoryError::Unavailable`. Must not be zero.
    pub connect_timeout: Duration,
    /// SQLite's `PRAGMA synchronous` (ignored by PostgreSQL).
    pub sqlite_synchronous: SqliteSynchronous,
    /// Create a SQLite file's missing directory (owner-only). Off, a
    /// missing directory is an error: a mistyped path is refused instead
    /// of served as a new, empty database.
    pub create_directory: bool,
    /// Told how long each checkout from the pool waited (a metric).
    pub on_checkout: CheckoutObserver,
}

/// A callback given each pool checkout's wait, timeouts included; none by
/// default.
#[derive(Clone, Default)]
pub struct CheckoutObserver(pub Option<Arc<dyn Fn(Duration) + Send + Sync>>);

impl fmt::Debug for CheckoutObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "Some(..)" } else { "None" })
    }
}

/// The same callback, or none on both sides.
impl PartialEq for CheckoutObserver {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

impl Eq for CheckoutObserver {}

impl diesel::r2d2::HandleEvent for CheckoutObserver {
    fn handle_checkout(&self, event: diesel::r2d2::event::CheckoutEvent) {
        if let Some(observe) = &self.0 {
            observe(event.duration());
        }
    }

    fn handle_timeout(&self, event: diesel::r2d2::event::TimeoutEvent) {
        if let Some(observe) = &self.0 {
            observe(event.timeout());
        }
    }
}

/// What the pool holds now: connections open, and how many of them idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    pub connections: u32,
    pub idle: u32,
}

/// When SQLite waits for the disk (`PRAGMA synchronous`). Both survive a
/// crash of the server process: a committed message is never lost to
/// `kill -9`. They differ on power loss or an OS crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SqliteSynchronous {
    /// fsync at checkpoints only: the last commits before a power loss may
    /// be rolled back (never corrupted). Much faster.
    #[default]
    Normal,
    /// fsync at every commit: committed means on disk.
    Full,
}

impl SqliteSynchronous {
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    fn pragma(self) -> &'static str {
        match self {
            Self::Normal => "NORMAL",
            Self::Full => "FULL",
        }
    }
}

impl Default for DatabaseOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            connect_timeout: Duration::from_secs(5),
            sqlite_synchronous: SqliteSynchronous::default(),
            create_directory: false,
            on_checkout: CheckoutObserver::default(),
        }
    }
}

/// Why [`Database::connect`] failed. Each message carries its cause, so
/// printing the error alone says what to fix. No message repeats the URL,
/// which may hold a password.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("invalid DATABASE_URL: {0}")]
    InvalidUrl(String),
    #[error("this build has no {0} support: rebuild with the `{0}` cargo feature")]
    BackendNotBuilt(Backend),
    #[error("invalid database options: {0}")]
    InvalidOptions(&'static str),
    #[error("the directory {0} for the SQLite database does not exist: create it, or fix the path in DATABASE_URL")]
    MissingDirectory(String),
    #[error("cannot create the directory {path} for the SQLite database: {cause}")]
    CreateDirectory { path: String, cause: std::io::Error },
    /// `cause` is the driver's or pool's own error.
    #[error("cannot connect to the {backend} database")]
    Connect {
        backend: Backend,
        #[source]
        cause: BoxError,
    },
    #[error("cannot migrate the {backend} database")]
    Migration {
        backend: Backend,
        #[source]
        cause: BoxError,
    },
}

/// One pool per backend; the variant is chosen once, by the URL.
#[derive(Clone)]
pub(crate) enum Pools {
    #[cfg(feature = "sqlite")]
    Sqlite(Pool<ConnectionManager<SqliteConnection>>),
    #[cfg(feature = "postgres")]
    Postgres(Pool<ConnectionManager<PgConnection>>),
}

/// A migrated database behind a connection pool. Cheap to clone: clones
/// share the pool. Implements the domain's repository ports.
#[derive(Clone)]
pub struct Database {
    pub(crate) pools: Pools,
    /// SQLite's background checkpoints, for as long as a clone lives.
    #[cfg(feature = "sqlite")]
    _checkpointer: Option<Arc<crate::checkpointer::Checkpointer>>,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

impl Database {
    /// Opens the database at `url`, applies the embedded migrations and
    /// returns a ready pool.
    ///
    /// `url` is `sqlite://<path>` (`sqlite:///abs/path.db` for an absolute
    /// path) or `postgres://...` / `postgresql://...`. A missing SQLite file
    /// is created; its missing directory only with `create_directory`.
    pub fn connect(url: &str, options: &DatabaseOptions) -> Result<Database, DatabaseError> {
        if options.max_connections == 0 {
            return Err(DatabaseError::InvalidOptions(
                "max_connections must be at least 1",
            ));
        }
        if options.connect_timeout.is_zero() {
            return Err(DatabaseError::InvalidOptions(
                "connect_timeout must be longer than zero",
            ));
        }
        let database = match Target::parse(url)? {
            #[cfg(feature = "sqlite")]
            Target::Sqlite(path) => connect_sqlite(path, options),
            #[cfg(not(feature = "sqlite"))]
            Target::Sqlite(_) => Err(DatabaseError::BackendNotBuilt(Backend::Sqlite)),
            #[cfg(feature = "postgres")]
            Target::Postgres(url) => connect_postgres(url, options),
            #[cfg(not(feature = "postgres"))]
            Target::Postgres(_) => Err(DatabaseError::BackendNotBuilt(Backend::Postgres)),
        }?;
        // The one step of a migration that SQL cannot do on every backend.
        database
            .fill_username_keys()
            .map_err(|e| DatabaseError::Migration {
                backend: database.backend(),
                cause: e.into(),
            })?;
        Ok(database)
    }

    /// Which backend `url` names, if it is well-formed and this build has
    /// that backend; nothing is opened or created.
    pub fn check_url(url: &str) -> Result<Backend, DatabaseError> {
        let backend = match Target::parse(url)? {
            Target::Sqlite(_) => Backend::Sqlite,
            Target::Postgres(_) => Backend::Postgres,
        };
        match backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite => Ok(backend),
            #[cfg(feature = "postgres")]
            Backend::Postgres => Ok(backend),
            #[allow(unreachable_patterns)]
            other => Err(DatabaseError::BackendNotBuilt(other)),
        }
    }

    /// The names of the embedded migrations the database at `url` lacks,
    /// oldest first, without applying any (for `chat-server migrate
    /// --check`). A SQLite file that does not exist yet lacks them all and
    /// is not created.
    pub fn pending_migrations(url: &str) -> Result<Vec<String>, DatabaseError> {
        match Target::parse(url)? {
            #[cfg(feature = "sqlite")]
            Target::Sqlite(path) => {
                let backend = Backend::Sqlite;
                if !Path::new(path).exists() {
                    return migration_names(SQLITE_MIGRATIONS, backend);
                }
                let mut conn =
                    SqliteConnection::establish(path).map_err(|e| DatabaseError::Connect {
                        backend,
                        cause: e.into(),
                    })?;
                pending_names(&mut conn, SQLITE_MIGRATIONS, backend)
            }
            #[cfg(not(feature = "sqlite"))]
            Target::Sqlite(_) => Err(DatabaseError::BackendNotBuilt(Backend::Sqlite)),
            #[cfg(feature = "postgres")]
            Target::Postgres(url) => {
                let backend = Backend::Postgres;
                let url = with_connect_timeout(url, DatabaseOptions::default().connect_timeout);
                let mut conn =
                    PgConnection::establish(&url).map_err(|e| DatabaseError::Connect {
                        backend,
                        cause: e.into(),
                    })?;
                pending_names(&mut conn, POSTGRES_MIGRATIONS, backend)
            }
            #[cfg(not(feature = "postgres"))]
            Target::Postgres(_) => Err(DatabaseError::BackendNotBuilt(Backend::Postgres)),
        }
    }

    /// The pool's connections now (for the pool gauges).
    pub fn pool_state(&self) -> PoolState {
        let state = match &self.pools {
            #[cfg(feature = "sqlite")]
            Pools::Sqlite(pool) => pool.state(),
            #[cfg(feature = "postgres")]
            Pools::Postgres(pool) => pool.state(),
        };
        PoolState {
            connections: state.connections,
            idle: state.idle_connections,
        }
    }

    pub fn backend(&self) -> Backend {
        match &self.pools {
            #[cfg(feature = "sqlite")]
            Pools::Sqlite(_) => Backend::Sqlite,
            #[cfg(feature = "postgres")]
            Pools::Postgres(_) => Backend::Postgres,
        }
    }
}

/// What a URL points at, decided by its scheme alone.
#[derive(Debug, PartialEq, Eq)]
enum Target<'a> {
    /// A file path.
    Sqlite(&'a str),
    /// The whole URL, as libpq takes it.
    Postgres(&'a str),
}

impl<'a> Target<'a> {
    fn parse(url: &'a str) -> Result<Self, DatabaseError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url));
        }
        let Some(path) = url.strip_prefix("sqlite://") else {
            // A bare word or path used to be taken as a SQLite file: a typo
            // such as `DATABASE_URL=garbage` then served a new, empty
            // database. The value is not repeated: it may hold a password.
            return Err(DatabaseError::InvalidUrl(match url.split_once("://") {
                Some((scheme, _)) => format!(
                    "unsupported scheme `{scheme}`: expected sqlite://<path> or postgres://..."
                ),
                None => "expected sqlite://<path> or postgres://... (a bare path is not taken)"
                    .to_owned(),
            }));
        };
        if path.is_empty() {
            return Err(DatabaseError::InvalidUrl(
                "the SQLite URL has no file path".to_owned(),
            ));
        }
        if path == ":memory:" {
            // Every pooled connection would open its own empty database.
            return Err(DatabaseError::InvalidUrl(
                "in-memory SQLite is not supported; give a file path".to_owned(),
            ));
        }
        Ok(Self::Sqlite(path))
    }
}

/// Runs `$body` with `$conn` bound to a connection checked out of whichever
/// pool `$db` holds, and evaluates to `Result<T, StoreError>`.
///
/// `$body` is the body of a closure returning `QueryResult<T>`: `?` and
/// `return` act on it, not on the calling function. It is expanded once per
/// backend, so it type-checks against each concrete connection type:
/// backend-specific DSL (RETURNING, ON CONFLICT) is checked for every
/// backend built in, without a generic bound in sight.
macro_rules! with_conn {
    ($db:expr, |$conn:ident| $body:expr) => {
        match &$db.pools {
            #[cfg(feature = "sqlite")]
            $crate::database::Pools::Sqlite(pool) => match pool.get() {
                Ok(mut pooled) => {
                    let $conn: &mut ::diesel::SqliteConnection = &mut pooled;
                    // The closure is the scope of `?` and `return` in `$body`.
                    #[allow(clippy::redundant_closure_call)]
                    let result = (|| -> ::diesel::QueryResult<_> { $body })();
                    result.map_err($crate::error::StoreError::Query)
                }
                Err(e) => Err($crate::error::StoreError::Pool(e)),
            },
            #[cfg(feature = "postgres")]
            $crate::database::Pools::Postgres(pool) => match pool.get() {
                Ok(mut pooled) => {
                    let $conn: &mut ::diesel::PgConnection = &mut pooled;
                    // The closure is the scope of `?` and `return` in `$body`.
                    #[allow(clippy::redundant_closure_call)]
                    let result = (|| -> ::diesel::QueryResult<_> { $body })();
                    result.map_err($crate::error::StoreError::Query)
                }
                Err(e) => Err($crate::error::StoreError::Pool(e)),
            },
        }
    };
}
pub(crate) use with_conn;

/// A transaction for a unit of work that writes.
pub(crate) trait WriteTransaction: Connection {
    fn write_transaction<T, F>(&mut self, f: F) -> QueryResult<T>
    where
        F: FnOnce(&mut Self) -> QueryResult<T>;

    /// Runs `append`, the unit of work that gives new messages of the
    /// chats it is handed (sorted, distinct) their ids and `seq`s, so that
    /// no other append to those chats runs between its reading of each
    /// chat's head and its insert: `seq`s are dense and unique, and within
    /// a chat ids and `seq`s become visible in increasing order. History
    /// pages and the sessions' "already replayed up to N" rely on that.
    ///
    /// `append` gets every chat of `chat_ids` (sorted, distinct), unless
    /// `skip_busy_except` is given: then only the chats no other
    /// transaction is appending to right now, plus those listed there
    /// (sorted), which are waited for.
    fn append_to_chats<T, F>(
        &mut self,
        chat_ids: &[i64],
        skip_busy_except: Option<&[i64]>,
        append: F,
    ) -> QueryResult<T>
    where
        F: FnOnce(&mut Self, &[i64]) -> QueryResult<T>;
}

#[cfg(feature = "sqlite")]
impl WriteTransaction for SqliteConnection {
    /// `BEGIN IMMEDIATE` takes the write lock up front (waiting out the busy
    /// timeout). A deferred transaction that reads first and then writes
    /// fails with SQLITE_BUSY at once if another writer got in between.
    fn write_transaction<T, F>(&mut self, f: F) -> QueryResult<T>
    where
        F: FnOnce(&mut Self) -> QueryResult<T>,
    {
        self.immediate_transaction(f)
    }

    /// `BEGIN IMMEDIATE`: the database's one write lock, held from the
    /// reading of the heads to the commit. The statement journal that
    /// SQLite keeps for a multi-row INSERT inside a transaction stays in
    /// memory (`temp_store = MEMORY`, see `configure_sqlite`): written to a
    /// temporary file, it cost nine system calls per message.
    ///
    /// Every chat, always: there is no other writer to skip.
    fn append_to_chats<T, F>(
        &mut self,
        chat_ids: &[i64],
        _skip_busy_except: Option<&[i64]>,
        append: F,
    ) -> QueryResult<T>
    where
        F: FnOnce(&mut Self, &[i64]) -> QueryResult<T>,
    {
        self.immediate_transaction(|conn| append(conn, chat_ids))
    }
}

#[cfg(feature = "postgres")]
impl WriteTransaction for PgConnection {
    /// READ COMMITTED: each statement sees what committed before it, and an
    /// `ON CONFLICT` insert waits for a concurrent insert of the same key.
    fn write_transaction<T, F>(&mut self, f: F) -> QueryResult<T>
    where
        F: FnOnce(&mut Self) -> QueryResult<T>,
    {
        self.transaction(f)
    }

    /// In a transaction that first takes `SELECT ... FOR UPDATE` on the chat
    /// rows, in id order so that two batches can never deadlock: appends to
    /// one chat queue up behind each other (heads are read and ids drawn
    /// from the sequence after the lock, by later statements that see what
    /// committed meanwhile), appends to other chats do not.
    ///
    /// Skipping busy chats: the chats to wait for are locked first (the
    /// only statement that waits, holding nothing yet, in id order: still
    /// no deadlock), then the others with `SKIP LOCKED`, which never waits.
    /// Two instances' writers then overlap on the chats they do not share
    /// instead of taking turns on all of them.
    fn append_to_chats<T, F>(
        &mut self,
        chat_ids: &[i64],
        skip_busy_except: Option<&[i64]>,
        append: F,
    ) -> QueryResult<T>
    where
        F: FnOnce(&mut Self, &[i64]) -> QueryResult<T>,
    {
        self.transaction(|conn| {
            let Some(wait_for) = skip_busy_except else {
                lock_chats(conn, chat_ids, false)?;
                return append(conn, chat_ids);
            };
            let (waited, others): (Vec<i64>, Vec<i64>) = chat_ids
                .iter()
                .partition(|chat| wait_for.binary_search(chat).is_ok());
            if !waited.is_empty() {
                lock_chats(conn, &waited, false)?;
            }
            let free = if others.is_empty() {
                Vec::new()
            } else {
                lock_chats(conn, &others, true)?
            };
            // The waited-for chats count as held even if a row is missing,
            // so that such a message fails (the foreign key) rather than
            // being left for later for ever.
            let mut held = waited;
            held.extend(free);
            held.sort_unstable();
            append(conn, &held)
        })
    }
}

/// `SELECT ... FOR UPDATE` on the rows of `chat_ids`, in id order (the
/// lock rows node sits above the sort); with `skip_locked`, only those no
/// other transaction holds. The ids are one array parameter joined to the
/// primary key, so the statement is prepared once per connection and
/// seeks each chat (a list of ids filtered a scan of every chat instead).
/// Returns the chats locked.
#[cfg(feature = "postgres")]
fn lock_chats(
    conn: &mut PgConnection,
    chat_ids: &[i64],
    skip_locked: bool,
) -> QueryResult<Vec<i64>> {
    use diesel::RunQueryDsl as _;

    #[derive(diesel::QueryableByName)]
    struct Locked {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        id: i64,
    }
    let sql = if skip_locked {
        "SELECT c.id FROM unnest($1::bigint[]) AS ids(id) JOIN direct_chats c ON c.id = ids.id
          ORDER BY c.id FOR UPDATE OF c SKIP LOCKED"
    } else {
        "SELECT c.id FROM unnest($1::bigint[]) AS ids(id) JOIN direct_chats c ON c.id = ids.id
          ORDER BY c.id FOR UPDATE OF c"
    };
    Ok(diesel::sql_query(sql)
        .bind::<diesel::sql_types::Array<diesel::sql_types::BigInt>, _>(chat_ids)
        .load::<Locked>(conn)?
        .into_iter()
        .map(|row| row.id)
        .collect())
}

/// Sends r2d2's connection failures (it retries in the background) to
/// `tracing` instead of the `log` crate.
#[derive(Debug)]
struct LogConnectionErrors;

impl<E: std::error::Error> HandleError<E> for LogConnectionErrors {
    fn handle_error(&self, error: E) {
        tracing::warn!(%error, "opening a database connection failed");
    }
}

#[cfg(feature = "sqlite")]
fn connect_sqlite(path: &str, options: &DatabaseOptions) -> Result<Database, DatabaseError> {
    let backend = Backend::Sqlite;
    let connect_error = |cause: BoxError| DatabaseError::Connect { backend, cause };

    if let Some(dir) = Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        if options.create_directory {
            crate::files::create_private_dir(dir).map_err(|cause| {
                DatabaseError::CreateDirectory {
                    path: dir.display().to_string(),
                    cause,
                }
            })?;
        } else if !dir.is_dir() {
            return Err(DatabaseError::MissingDirectory(dir.display().to_string()));
        }
        crate::files::warn_if_shared(dir, "password hashes");
    }
    // The file holds every password hash. Created here, owner-only, before
    // SQLite opens it: SQLite gives its `-wal` and `-shm` files the
    // database file's permissions, whatever the umask.
    crate::files::create_private_file(Path::new(path)).map_err(|e| connect_error(e.into()))?;
    for file in [
        path.to_owned(),
        format!("{path}-wal"),
        format!("{path}-shm"),
    ] {
        crate::files::warn_if_shared(Path::new(&file), "password hashes");
    }

    // One connection first, outside the pool: it reports the real error,
    // switches the file to WAL, and migrates before anyone else connects.
    let mut conn = SqliteConnection::establish(path).map_err(|e| connect_error(e.into()))?;
    configure_sqlite(&mut conn, options.sqlite_synchronous).map_err(|e| connect_error(e.into()))?;
    // WAL lets readers run alongside the one writer. The mode is stored in
    // the file, so setting it once is enough; doing it in the per-connection
    // hook races while the pool opens connections in parallel.
    conn.batch_execute("PRAGMA journal_mode = WAL")
        .map_err(|e| connect_error(e.into()))?;
    migrate(&mut conn, SQLITE_MIGRATIONS, backend)?;
    drop(conn);

    let pool = Pool::builder()
        .max_size(options.max_connections)
        .connection_timeout(options.connect_timeout)
        // A connection to a local file does not drop; skip the `SELECT 1`.
        .test_on_check_out(false)
        .connection_customizer(Box::new(SqliteSetup(options.sqlite_synchronous)))
        .error_handler(Box::new(LogConnectionErrors))
        .event_handler(Box::new(options.on_checkout.clone()))
        .build(ConnectionManager::<SqliteConnection>::new(path))
        .map_err(|e| connect_error(e.into()))?;
    let checkpointer = crate::checkpointer::Checkpointer::start(path, SQLITE_BUSY_TIMEOUT_MS)
        .map_err(|e| connect_error(e.into()))?;
    Ok(Database {
        pools: Pools::Sqlite(pool),
        _checkpointer: Some(Arc::new(checkpointer)),
    })
}

/// The most page cache one SQLite connection keeps, in KiB.
#[cfg(feature = "sqlite")]
const SQLITE_CACHE_KIB: u32 = 8 * 1024;

/// Settings SQLite keeps per connection, applied to every pooled one.
#[cfg(feature = "sqlite")]
fn configure_sqlite(
    conn: &mut SqliteConnection,
    synchronous: SqliteSynchronous,
) -> QueryResult<()> {
    conn.batch_execute(&format!(
        // busy_timeout first, so the rest waits for locks instead of failing.
        // foreign_keys is off by default in SQLite. temp_store keeps
        // statement journals in memory (see `append_to_chats`).
        //
        // cache_size: the writer's batches touch the newest index pages of
        // every chat they append to; in SQLite's default 2 MiB cache those
        // did not fit for a few hundred busy chats, and each commit read
        // them back from the file (a sixth of the writer's time under the
        // v2 closed loop). A reader's cache empties whenever the database
        // changes, so mostly the writer's connection fills it. (Giving the
        // writer a connection of its own, the only one with this cache,
        // measured no better.)
        //
        // wal_autocheckpoint: checkpoints run on a thread of their own
        // (`checkpointer.rs`); this is only the backstop that lets the log
        // start over.
        "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS};
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -{SQLITE_CACHE_KIB};
         PRAGMA synchronous = {};
         PRAGMA wal_autocheckpoint = {};",
        synchronous.pragma(),
        crate::checkpointer::BACKSTOP_PAGES,
    ))
}

#[cfg(feature = "sqlite")]
#[derive(Debug)]
struct SqliteSetup(SqliteSynchronous);

#[cfg(feature = "sqlite")]
impl diesel::r2d2::CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for SqliteSetup {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        configure_sqlite(conn, self.0).map_err(diesel::r2d2::Error::QueryError)
    }
}

#[cfg(feature = "postgres")]
fn connect_postgres(url: &str, options: &DatabaseOptions) -> Result<Database, DatabaseError> {
    let backend = Backend::Postgres;
    let connect_error = |cause: BoxError| DatabaseError::Connect { backend, cause };
    let url = with_url_parameter(
        &with_connect_timeout(url, options.connect_timeout),
        "application_name",
        APPLICATION_NAME,
    );

    // One connection first, outside the pool: libpq's own message ("connection
    // refused", "password authentication failed") reaches the caller at once,
    // and migrations run before the pool opens.
    let mut conn = PgConnection::establish(&url).map_err(|e| connect_error(e.into()))?;
    migrate(&mut conn, POSTGRES_MIGRATIONS, backend)?;
    wait_for_earlier_transactions(&mut conn, options.connect_timeout);
    drop(conn);

    let pool = Pool::builder()
        .max_size(options.max_connections)
        .connection_timeout(options.connect_timeout)
        .error_handler(Box::new(LogConnectionErrors))
        .event_handler(Box::new(options.on_checkout.clone()))
        .build(ConnectionManager::<PgConnection>::new(url))
        .map_err(|e| connect_error(e.into()))?;
    Ok(Database {
        pools: Pools::Postgres(pool),
        #[cfg(feature = "sqlite")]
        _checkpointer: None,
    })
}

/// How this server's sessions name themselves to PostgreSQL.
#[cfg(feature = "postgres")]
const APPLICATION_NAME: &str = "chat-server";

/// Waits (at most `timeout`) until no transaction of this server's name
/// that began before now is still open. A server killed while its COMMIT
/// was on the wire leaves PostgreSQL to finish that commit after the
/// process is gone: were this server to take a socket's snapshot before it
/// landed, the message would be above the snapshot's head, yet nobody would
/// announce it (its announcement died with the old process). Waiting for
/// such transactions to end before serving closes that window. Others'
/// transactions (a live instance's, which are milliseconds long) end at
/// once.
#[cfg(feature = "postgres")]
fn wait_for_earlier_transactions(conn: &mut PgConnection, timeout: Duration) {
    use diesel::sql_types::{BigInt, Text, Timestamptz};
    use diesel::RunQueryDsl as _;

    #[derive(diesel::QueryableByName)]
    struct Now {
        #[diesel(sql_type = Timestamptz)]
        now: chrono::DateTime<chrono::Utc>,
    }
    #[derive(diesel::QueryableByName)]
    struct Open {
        #[diesel(sql_type = BigInt)]
        open: i64,
    }
    let Ok(started) = diesel::sql_query("SELECT clock_timestamp() AS now").get_result::<Now>(conn)
    else {
        return;
    };
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let open = diesel::sql_query(
            "SELECT COUNT(*) AS open FROM pg_stat_activity
              WHERE datname = current_database() AND pid <> pg_backend_pid()
                AND application_name = $1 AND xact_start < $2",
        )
        .bind::<Text, _>(APPLICATION_NAME)
        .bind::<Timestamptz, _>(started.now)
        .get_result::<Open>(conn)
        .map_or(0, |row| row.open);
        if open == 0 {
            return;
        }
        if std::time::Instant::now() >= deadline {
            tracing::warn!(
                open,
                "transactions of an earlier run are still open; serving anyway"
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `url` with `name=value` added unless the URL sets `name` already.
#[cfg(any(feature = "postgres", test))]
fn with_url_parameter(url: &str, name: &str, value: &str) -> String {
    if url.contains(&format!("{name}=")) {
        return url.to_owned();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{name}={value}")
}

/// Adds libpq's `connect_timeout` (whole seconds) unless the URL sets one, so
/// an unreachable host fails within the configured time instead of TCP's.
#[cfg(any(feature = "postgres", test))]
fn with_connect_timeout(url: &str, timeout: Duration) -> String {
    let seconds = timeout.as_secs().max(1);
    with_url_parameter(url, "connect_timeout", &seconds.to_string())
}

impl chat_domain::health::StoreHealth for Database {
    fn check(&self, timeout: Duration) -> Result<(), StoreProblem> {
        match &self.pools {
            #[cfg(feature = "sqlite")]
            Pools::Sqlite(pool) => {
                let mut conn = pool.get_timeout(timeout).map_err(unreachable)?;
                pending_count(&mut *conn, SQLITE_MIGRATIONS)
            }
            #[cfg(feature = "postgres")]
            Pools::Postgres(pool) => {
                let mut conn = pool.get_timeout(timeout).map_err(unreachable)?;
                pending_count(&mut *conn, POSTGRES_MIGRATIONS)
            }
        }
    }
}

fn unreachable(error: impl fmt::Display) -> StoreProblem {
    StoreProblem::Unreachable(error.to_string())
}

/// Reading which migrations are applied is also the round trip that shows
/// the database answers.
fn pending_count<C>(conn: &mut C, migrations: EmbeddedMigrations) -> Result<(), StoreProblem>
where
    C: MigrationHarness<C::Backend> + Connection,
{
    match conn.pending_migrations(migrations) {
        Ok(pending) if pending.is_empty() => Ok(()),
        Ok(pending) => Err(StoreProblem::MigrationsPending(pending.len())),
        Err(error) => Err(unreachable(error)),
    }
}

fn pending_names<C>(
    conn: &mut C,
    migrations: EmbeddedMigrations,
    backend: Backend,
) -> Result<Vec<String>, DatabaseError>
where
    C: MigrationHarness<C::Backend> + Connection,
{
    conn.pending_migrations(migrations)
        .map(|pending| pending.iter().map(|m| m.name().to_string()).collect())
        .map_err(|e| DatabaseError::Migration { backend, cause: e })
}

/// Every embedded migration's name, for a database that has none yet.
#[cfg(feature = "sqlite")]
fn migration_names(
    migrations: EmbeddedMigrations,
    backend: Backend,
) -> Result<Vec<String>, DatabaseError> {
    use diesel::migration::MigrationSource as _;
    let all: Vec<Box<dyn diesel::migration::Migration<diesel::sqlite::Sqlite>>> = migrations
        .migrations()
        .map_err(|e| DatabaseError::Migration { backend, cause: e })?;
    Ok(all.iter().map(|m| m.name().to_string()).collect())
}

fn migrate<C>(
    conn: &mut C,
    migrations: EmbeddedMigrations,
    backend: Backend,
) -> Result<(), DatabaseError>
where
    C: MigrationHarness<C::Backend> + Connection,
{
    let applied = conn
        .run_pending_migrations(migrations)
        .map_err(|e| DatabaseError::Migration { backend, cause: e })?;
    tracing::info!(%backend, applied = applied.len(), "database migrated");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "sqlite")]
    #[test]
    fn a_missing_directory_is_refused_unless_asked_to_create_it() {
        let root = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}",
            root.path().join("typo/chat.sqlite3").display()
        );
        let error = Database::connect(&url, &DatabaseOptions::default()).unwrap_err();
        assert!(
            matches!(error, DatabaseError::MissingDirectory(_)),
            "{error}"
        );
        assert!(!root.path().join("typo").exists());
    }

    #[cfg(all(feature = "sqlite", unix))]
    #[test]
    fn a_new_sqlite_database_and_its_directory_are_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data").join("nested");
        let file = dir.join("chat.sqlite3");
        let _pool_held_open = Database::connect(
            &format!("sqlite://{}", file.display()),
            &DatabaseOptions {
                create_directory: true,
                ..DatabaseOptions::default()
            },
        )
        .unwrap();
        // A write while the pool is open, so that the WAL and shared-memory
        // files exist.
        let mut writer = SqliteConnection::establish(&file.display().to_string()).unwrap();
        writer
            .batch_execute("CREATE TABLE probe (x INTEGER)")
            .unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&root.path().join("data")), 0o700);
        for name in ["chat.sqlite3", "chat.sqlite3-wal", "chat.sqlite3-shm"] {
            assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
        }
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn every_pooled_sqlite_connection_gets_the_configured_synchronous_mode() {
        #[derive(diesel::QueryableByName)]
        struct Mode {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            synchronous: i32,
        }
        let dir = tempfile::tempdir().unwrap();
        for (setting, expected) in [(SqliteSynchronous::Normal, 1), (SqliteSynchronous::Full, 2)] {
            let path = dir.path().join(format!("{setting:?}.db"));
            let url = format!("sqlite://{}", path.display());
            let options = DatabaseOptions {
                sqlite_synchronous: setting,
                ..DatabaseOptions::default()
            };
            let database = Database::connect(&url, &options).unwrap();
            let mode: Result<Mode, crate::error::StoreError> = with_conn!(database, |conn| {
                diesel::RunQueryDsl::get_result::<Mode>(
                    diesel::sql_query("PRAGMA synchronous"),
                    conn,
                )
            });
            assert_eq!(mode.unwrap().synchronous, expected, "{setting:?}");
        }
    }

    #[test]
    fn urls_pick_the_backend_by_scheme() {
        assert_eq!(
            Target::parse("sqlite://data/chat.db").unwrap(),
            Target::Sqlite("data/chat.db")
        );
        assert_eq!(
            Target::parse("sqlite:///var/lib/chat.db").unwrap(),
            Target::Sqlite("/var/lib/chat.db")
        );
        assert_eq!(
            Target::parse("postgres://u@h/db").unwrap(),
            Target::Postgres("postgres://u@h/db")
        );
        assert_eq!(
            Target::parse("postgresql://u@h/db").unwrap(),
            Target::Postgres("postgresql://u@h/db")
        );
    }

    #[test]
    fn unknown_schemes_and_empty_or_memory_paths_are_refused() {
        for url in [
            "mysql://u@h/db",
            "sqlite://",
            "",
            "sqlite::memory:",
            "sqlite://:memory:",
            ":memory:",
            "garbage",
            "./chat.db",
            "sqlite:chat.db",
        ] {
            assert!(
                matches!(Target::parse(url), Err(DatabaseError::InvalidUrl(_))),
                "{url:?} was accepted"
            );
        }
    }

    #[test]
    fn the_url_error_does_not_echo_credentials() {
        let message = Target::parse("mysql://user:hunter2@h/db")
            .unwrap_err()
            .to_string();
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn a_connect_timeout_is_added_unless_present() {
        let five = Duration::from_secs(5);
        assert_eq!(
            with_connect_timeout("postgres://h/db", five),
            "postgres://h/db?connect_timeout=5"
        );
        assert_eq!(
            with_connect_timeout("postgres://h/db?sslmode=disable", five),
            "postgres://h/db?sslmode=disable&connect_timeout=5"
        );
        assert_eq!(
            with_connect_timeout("postgres://h/db?connect_timeout=1", five),
            "postgres://h/db?connect_timeout=1"
        );
    }

    #[test]
    fn a_url_parameter_is_added_unless_present() {
        assert_eq!(
            with_url_parameter("postgres://h/db", "application_name", "chat-server"),
            "postgres://h/db?application_name=chat-server"
        );
        assert_eq!(
            with_url_parameter(
                "postgres://h/db?application_name=x",
                "application_name",
                "y"
            ),
            "postgres://h/db?application_name=x"
        );
    }

    #[test]
    fn backends_display_as_their_feature_names() {
        assert_eq!(Backend::Sqlite.to_string(), "sqlite");
        assert_eq!(Backend::Postgres.to_string(), "postgres");
    }
}
