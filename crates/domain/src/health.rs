//! Whether the store can serve: the port a readiness check asks.

use std::time::Duration;

/// Implemented by each store. Blocking, like the repositories.
pub trait StoreHealth: Send + Sync {
    /// Reaches the store (waiting at most `timeout` for a connection) and
    /// checks that its schema is the one this build expects.
    fn check(&self, timeout: Duration) -> Result<(), StoreProblem>;
}

/// Why a store cannot serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreProblem {
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// Another instance, or an older binary, left the schema behind (this
    /// one migrates at start, so only a rollback or a failed migration
    /// gets here).
    #[error("{0} migration(s) not applied")]
    MigrationsPending(usize),
}
