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

/// Messages of failures that retrying once the database is back would fix.
/// Diesel gives no SQLSTATE, only the message: SQLite's SQLITE_BUSY and
/// SQLITE_LOCKED, and what libpq says when PostgreSQL restarts or the
/// connection drops (57P01 admin shutdown, 57P03 starting up, lost sockets).
const TRANSIENT_MESSAGES: &[&str] = &[
    "is locked",
    "terminating connection",
    "server closed the connection",
    "could not receive data from server",
    "could not send data to server",
    "no connection to the server",
    "connection to server",
    "the database system is shutting down",
    "the database system is starting up",
    "the database system is in recovery mode",
];

fn is_transient(error: &DieselError) -> bool {
    match error {
        DieselError::DatabaseError(
            DatabaseErrorKind::ClosedConnection
            | DatabaseErrorKind::UnableToSendCommand
            | DatabaseErrorKind::SerializationFailure,
            _,
        ) => true,
        DieselError::DatabaseError(_, info) => {
            let message = info.message();
            TRANSIENT_MESSAGES.iter().any(|m| message.contains(m))
        }
        _ => false,
    }
}

/// Data read back from the database that the domain refuses (for example a
/// username that no longer parses): a bug or a hand-edited database.
pub(crate) fn corrupt(what: impl std::fmt::Display) -> RepositoryError {
    RepositoryError::unexpected(format!("corrupt data in the database: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database_error(kind: DatabaseErrorKind, message: &str) -> DieselError {
        DieselError::DatabaseError(kind, Box::new(message.to_owned()))
    }

    #[test]
    fn a_restarting_or_locked_database_is_unavailable_not_broken() {
        for message in [
            "terminating connection due to administrator command",
            "server closed the connection unexpectedly",
            "the database system is starting up",
            "database is locked",
        ] {
            let error = RepositoryError::from(StoreError::Query(database_error(
                DatabaseErrorKind::Unknown,
                message,
            )));
            assert!(
                matches!(error, RepositoryError::Unavailable(_)),
                "{message}"
            );
        }
        let closed = RepositoryError::from(StoreError::Query(database_error(
            DatabaseErrorKind::ClosedConnection,
            "gone",
        )));
        assert!(matches!(closed, RepositoryError::Unavailable(_)));
    }

    #[test]
    fn other_failures_are_unexpected() {
        let error = RepositoryError::from(StoreError::Query(database_error(
            DatabaseErrorKind::CheckViolation,
            "new row violates check constraint",
        )));
        assert!(matches!(error, RepositoryError::Unexpected(_)));
    }
}
