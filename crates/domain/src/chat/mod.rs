//! Direct chats between two users and the messages sent in them.

pub mod events;
pub mod models;
pub mod ports;
pub mod receipts;
pub mod service;

pub use events::*;
pub use models::*;
pub use ports::*;
pub use receipts::*;
pub use service::*;
