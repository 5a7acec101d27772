//! Accounts: registration, login, and turning a token back into a user.

pub mod models;
pub mod ports;
pub mod service;

pub use models::*;
pub use ports::*;
pub use service::*;
