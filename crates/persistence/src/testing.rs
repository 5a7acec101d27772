//! Fresh, isolated databases for tests (cargo feature `testing`).
//!
//! Each [`TestDatabase`] is new and empty, and is removed when dropped:
//! - built with `postgres` and `TEST_DATABASE_URL` set (an admin URL such as
//!   `postgres://postgres@127.0.0.1:5432/test`): a PostgreSQL database with a
//!   unique name, created through that URL and dropped `WITH (FORCE)`;
//! - otherwise: a SQLite file in its own temporary directory.
//!
//! Only the URL is handed out; [`Database::connect`] migrates it like any
//! other database.

use crate::{Backend, Database, DatabaseError, DatabaseOptions};

/// The variable holding the PostgreSQL admin URL for tests.
pub const TEST_DATABASE_URL: &str = "TEST_DATABASE_URL";

#[derive(Debug, thiserror::Error)]
#[error("cannot create a test database: {0}")]
pub struct TestDatabaseError(String);

/// A new, empty database that is removed on drop.
#[derive(Debug)]
pub struct TestDatabase {
    url: String,
    backend: Backend,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    #[cfg(feature = "sqlite")]
    RemoveDir(#[allow(dead_code)] tempfile::TempDir), // removed by its own Drop
    #[cfg(feature = "postgres")]
    DropDatabase { admin_url: String, name: String },
}

impl TestDatabase {
    /// Creates the database; see the module docs for which backend.
    pub fn create() -> Result<Self, TestDatabaseError> {
        #[cfg(feature = "postgres")]
        if let Ok(admin_url) = std::env::var(TEST_DATABASE_URL) {
            return Self::create_postgres(&admin_url);
        }
        #[cfg(feature = "sqlite")]
        {
            Self::create_sqlite()
        }
        #[cfg(not(feature = "sqlite"))]
        {
            Err(TestDatabaseError(format!(
                "this build has no SQLite; set {TEST_DATABASE_URL} to a PostgreSQL admin URL"
            )))
        }
    }

    /// The URL to hand to [`Database::connect`] or to the server.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Connects (and migrates) with default options.
    pub fn connect(&self) -> Result<Database, DatabaseError> {
        Database::connect(&self.url, &DatabaseOptions::default())
    }

    /// The database engine's own consistency check, for tests that crash
    /// the server: SQLite's `integrity_check` and `foreign_key_check`;
    /// PostgreSQL's `amcheck` over every index of the schema (the extension
    /// ships with PostgreSQL's contrib modules). `Err` says what is wrong.
    pub fn check_integrity(&self) -> Result<(), String> {
        use diesel::Connection as _;

        #[derive(diesel::QueryableByName)]
        struct Line {
            #[diesel(sql_type = diesel::sql_types::Text)]
            line: String,
        }
        match self.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite => {
                let path = self.url.trim_start_matches("sqlite://");
                let mut conn =
                    diesel::SqliteConnection::establish(path).map_err(|e| e.to_string())?;
                let query = |sql: &str, conn: &mut diesel::SqliteConnection| {
                    diesel::RunQueryDsl::load::<Line>(diesel::sql_query(sql), conn)
                        .map_err(|e| e.to_string())
                };
                let integrity = query(
                    "SELECT integrity_check AS line FROM pragma_integrity_check",
                    &mut conn,
                )?;
                if integrity.len() != 1 || integrity[0].line != "ok" {
                    let lines: Vec<_> = integrity.into_iter().map(|l| l.line).collect();
                    return Err(format!("integrity_check: {}", lines.join("; ")));
                }
                let dangling = query(
                    "SELECT \"table\" || ' row ' || rowid || ' -> ' || parent AS line
                     FROM pragma_foreign_key_check",
                    &mut conn,
                )?;
                if let Some(first) = dangling.first() {
                    return Err(format!("foreign_key_check: {}", first.line));
                }
                Ok(())
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres => {
                use diesel::connection::SimpleConnection as _;

                let mut conn =
                    diesel::PgConnection::establish(&self.url).map_err(|e| e.to_string())?;
                conn.batch_execute("CREATE EXTENSION IF NOT EXISTS amcheck")
                    .map_err(|e| format!("amcheck unavailable: {e}"))?;
                // bt_index_check raises an error on the first corrupt index.
                diesel::RunQueryDsl::load::<Line>(
                    diesel::sql_query(
                        "SELECT c.relname || ': ' || bt_index_check(c.oid, true)::text AS line
                         FROM pg_index i
                         JOIN pg_class c ON c.oid = i.indexrelid
                         JOIN pg_namespace n ON n.oid = c.relnamespace
                         JOIN pg_am a ON a.oid = c.relam
                         WHERE n.nspname = 'public' AND a.amname = 'btree'",
                    ),
                    &mut conn,
                )
                .map(drop)
                .map_err(|e| format!("amcheck: {e}"))
            }
            #[allow(unreachable_patterns)]
            other => Err(format!("{other} is not built in")),
        }
    }

    #[cfg(feature = "sqlite")]
    fn create_sqlite() -> Result<Self, TestDatabaseError> {
        let dir = tempfile::Builder::new()
            .prefix("chat-test-")
            .tempdir()
            .map_err(|e| TestDatabaseError(e.to_string()))?;
        let path = dir.path().join("chat.db");
        Ok(Self {
            url: format!("sqlite://{}", path.display()),
            backend: Backend::Sqlite,
            cleanup: Cleanup::RemoveDir(dir),
        })
    }

    #[cfg(feature = "postgres")]
    fn create_postgres(admin_url: &str) -> Result<Self, TestDatabaseError> {
        use diesel::connection::SimpleConnection as _;
        use diesel::Connection as _;

        let name = unique_name();
        let url = with_database_name(admin_url, &name).ok_or_else(|| {
            TestDatabaseError(format!("{TEST_DATABASE_URL} is not a postgres:// URL"))
        })?;
        let mut admin = diesel::PgConnection::establish(admin_url)
            .map_err(|e| TestDatabaseError(e.to_string()))?;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .map_err(|e| TestDatabaseError(e.to_string()))?;
        Ok(Self {
            url,
            backend: Backend::Postgres,
            cleanup: Cleanup::DropDatabase {
                admin_url: admin_url.to_owned(),
                name,
            },
        })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match &self.cleanup {
            #[cfg(feature = "sqlite")]
            Cleanup::RemoveDir(_) => {}
            #[cfg(feature = "postgres")]
            Cleanup::DropDatabase { admin_url, name } => {
                use diesel::connection::SimpleConnection as _;
                use diesel::Connection as _;

                // FORCE: a pool of the test may still hold connections.
                let dropped = diesel::PgConnection::establish(admin_url)
                    .map_err(|e| e.to_string())
                    .and_then(|mut admin| {
                        admin
                            .batch_execute(&format!(
                                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                            ))
                            .map_err(|e| e.to_string())
                    });
                if let Err(error) = dropped {
                    // A leftover database is worth a note, not a failed test.
                    eprintln!("could not drop test database {name}: {error}");
                }
            }
        }
    }
}

/// Unique across the test binaries running at once (pid) and the tests of
/// one binary (counter); the clock guards against a reused pid.
#[cfg(feature = "postgres")]
fn unique_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};

    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("chat_test_{}_{n}_{nanos}", std::process::id())
}

/// `admin_url` with its database (the path) replaced by `name`, query kept.
#[cfg(any(feature = "postgres", test))]
fn with_database_name(admin_url: &str, name: &str) -> Option<String> {
    let (scheme, rest) = admin_url.split_once("://")?;
    if !matches!(scheme, "postgres" | "postgresql") {
        return None;
    }
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    Some(match query {
        Some(query) => format!("{scheme}://{authority}/{name}?{query}"),
        None => format!("{scheme}://{authority}/{name}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_name_replaces_the_path_and_keeps_the_query() {
        assert_eq!(
            with_database_name("postgres://postgres@127.0.0.1:5432/test", "t1").as_deref(),
            Some("postgres://postgres@127.0.0.1:5432/t1")
        );
        assert_eq!(
            with_database_name("postgresql://u:p@h/db?sslmode=disable", "t2").as_deref(),
            Some("postgresql://u:p@h/t2?sslmode=disable")
        );
        assert_eq!(
            with_database_name("postgres://h", "t3").as_deref(),
            Some("postgres://h/t3")
        );
        assert_eq!(with_database_name("sqlite://x.db", "t4"), None);
    }
}
