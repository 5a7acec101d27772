//! WebSocket chat: the handshake (`GET /ws/chat/<id>/`), the guard on
//! incoming frame sizes, one session task per connection, the writer that
//! stores messages in batches, the fan-out thread that broadcasts what the
//! writer committed, and the hub that holds each chat's connections.

pub mod fanout;
pub mod frame_guard;
pub mod frames;
pub mod handshake;
pub mod hub;
pub mod limits;
pub mod session;
pub mod writer;

pub use fanout::FanOut;
pub use handshake::chat_socket;
pub use hub::Hub;
pub use limits::{ConnectionLimits, RateLimit};
pub use writer::MessageWriter;
