//! The domain's repository ports ([`UserRepository`], [`ChatRepository`],
//! [`MessageRepository`]) implemented with Diesel on SQLite or PostgreSQL.
//!
//! [`Database::connect`] picks the backend from the URL, applies the embedded
//! migrations (`migrations/{sqlite,postgres}` at the workspace root) and
//! returns a cloneable handle around an r2d2 pool. Each backend is a cargo
//! feature; both may be built in together.
//!
//! Where the SQL lives:
//! - `schema.rs`: the tables, one portable description for both backends;
//! - `users.rs`, `chats.rs`, `messages.rs`: one file per port, Diesel DSL
//!   everywhere except the chat list, which is one hand-written statement;
//! - `models.rs`: row structs and insert forms, converted to domain types at
//!   the boundary;
//! - `database.rs`: opening, per-connection settings, migrations, and the
//!   `with_conn!` macro that runs a query body on whichever backend the
//!   pool holds.
//!
//! Every call is blocking; the api layer runs them off the async executor.
//!
//! The `memory` feature adds [`MemoryStore`]-style storage that keeps
//! nothing: the benchmark's ceiling, never for real use.
//!
//! The `testing` feature adds [`testing::TestDatabase`]: a fresh database per
//! test, for this crate's tests and the server's.
//!
//! [`UserRepository`]: chat_domain::user::UserRepository
//! [`ChatRepository`]: chat_domain::chat::ChatRepository
//! [`MessageRepository`]: chat_domain::chat::MessageRepository

#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
compile_error!("chat-persistence needs a backend: enable the `sqlite` and/or `postgres` feature");

mod chats;
#[cfg(feature = "sqlite")]
mod checkpointer;
mod database;
pub mod django;
mod error;
pub mod files;
mod messages;
mod models;
mod schema;
mod stored_time;
mod users;

pub use database::{
    Backend, CheckoutObserver, Database, DatabaseError, DatabaseOptions, PoolState,
    SqliteSynchronous,
};

#[cfg(feature = "memory")]
mod memory;
#[cfg(feature = "memory")]
pub use memory::MemoryStore;

#[cfg(feature = "testing")]
pub mod testing;
