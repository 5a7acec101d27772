//! WebSocket chat: the handshake (`GET /ws/chat/<id>/`), one session task
//! per connection, the writer that stores messages in batches, and the hub
//! that fans committed messages out.

pub mod frames;
pub mod handshake;
pub mod hub;
pub mod session;
pub mod writer;

pub use handshake::chat_socket;
pub use hub::Hub;
pub use writer::MessageWriter;
