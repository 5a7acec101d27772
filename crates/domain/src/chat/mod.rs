//! Direct chats between two users and the messages sent in them.

pub mod models;
pub mod ports;
pub mod service;

pub use models::*;
pub use ports::*;
pub use service::*;
