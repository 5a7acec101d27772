//! The chat domain: users, direct chats between two people, and their messages.
//!
//! This crate holds the value types that make bad states unrepresentable, the
//! rules, the ports (traits the outside world implements) and the services that
//! apply the rules through the ports. It knows nothing of HTTP, SQL or async
//! runtimes: the `api` crate drives it, the `persistence` crate implements its
//! repository ports.

pub mod chat;
pub mod error;
pub mod health;
pub mod user;

pub use error::RepositoryError;
