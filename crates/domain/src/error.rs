//! Failures of the outside world, as the domain sees them.

/// Any error type an adapter may carry as the cause of a failure.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A storage operation failed for a reason that is not a domain outcome.
#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    /// The store cannot be reached right now (connection refused, pool
    /// exhausted, database locked for too long). Retrying later may succeed.
    #[error("the database is unavailable")]
    Unavailable(#[source] BoxError),
    /// Anything else: a bug, corrupted data, a failed migration.
    #[error("unexpected database failure")]
    Unexpected(#[source] BoxError),
}

impl RepositoryError {
    pub fn unavailable(cause: impl Into<BoxError>) -> Self {
        Self::Unavailable(cause.into())
    }

    pub fn unexpected(cause: impl Into<BoxError>) -> Self {
        Self::Unexpected(cause.into())
    }
}
