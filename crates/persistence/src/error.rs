//! How storage failures become the domain's [`RepositoryError`].
//!
//! The rule: whatever retrying later could fix (no connection in time, a
//! dropped connection, SQLite locked for longer than its busy timeout) is
//! `Unavailable`; everything else is `Unexpected`. Constraint violations that
//! mean something to the domain (a taken username) are matched by the
//! repository that expects them, before this mapping.

use chat_domain::RepositoryError;
use diesel::r2d2::PoolError;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// What can go wrong running one repository call.
#[derive(Debug)]
pub(crate) enum StoreError {
    /// No connection could be checked out of the pool in time.
    Pool(PoolError),
    /// A statement failed.
    Query(DieselError),
}

impl From<DieselError> for StoreError {
    fn from(error: DieselError) -> Self {
        Self::Query(error)
    }
}

impl From<StoreError> for RepositoryError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Pool(e) => RepositoryError::unavailable(e),
            StoreError::Query(e) if is_transient(&e) => RepositoryError::unavailable(e),
            StoreError::Query(e) => RepositoryError::unexpected(e),
        }
    }
}

fn is_transient(error: &DieselError) -> bool {
    match error {
        DieselError::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::SerializationFailure,
            _,
        ) => true,
        // Diesel reports SQLITE_BUSY / SQLITE_LOCKED only through SQLite's
        // message ("database is locked", "database table is locked").
        DieselError::DatabaseError(_, info) => info.message().contains("is locked"),
        _ => false,
    }
}

/// Data read back from the database that the domain refuses (for example a
/// username that no longer parses): a bug or a hand-edited database.
pub(crate) fn corrupt(what: impl std::fmt::Display) -> RepositoryError {
    RepositoryError::unexpected(format!("corrupt data in the database: {what}"))
}
