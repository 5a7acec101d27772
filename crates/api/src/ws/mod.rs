//! WebSocket sockets of both protocols: the handshakes (`/ws/chat/<id>/`
//! for the seed protocol, `/ws/v2/` for protocol v2), the guard on incoming
//! frame sizes, the limits on sockets and message rates, what an open
//! socket's session shares (`connection`), and one session module per
//! protocol. What happens to a message once validated (storing, delivery)
//! is the `delivery` module's.

pub mod connection;
pub mod frame_guard;
pub mod handshake;
pub mod limits;
pub mod seed;
pub mod v2;

pub use handshake::{chat_socket, v2_socket};
pub use limits::{ConnectionLimits, RateLimit, RatesByKey, UserMessageRates};
