//! The delivery pipeline, from a validated message to the sockets: not
//! WebSocket code, but what every socket and REST route relies on.
//!
//! 1. [`writer`]: the one thread that stores messages in batches (group
//!    commit) through the message service, which publishes what committed;
//! 2. [`fanout`]: the `Broadcaster` the services are given, handing events
//!    to the one thread that delivers them, in commit order;
//! 3. [`hub`]: which sockets are open (by chat and by user) and the delivery
//!    of each event to the ones it concerns, encoded once per protocol; the
//!    seed frames it delivers are kept a while in [`replay_tail`], for the
//!    next seed socket's history replay;
//! 4. [`presence`] and [`typing`]: ephemeral state behind ports, and
//!    [`timers`], the thread that expires it and announces presence.

pub mod cluster_presence;
pub mod fanout;
pub mod hub;
pub mod presence;
pub mod relay;
pub mod replay_tail;
pub mod sequencer;
pub mod timers;
pub mod typing;
pub mod writer;

pub use fanout::FanOut;
pub use hub::{About, ConnectionId, Hub, Membership, Outbound};
pub use presence::{LocalPresence, PresenceGuard, PresenceRegistry};
pub use replay_tail::{ReplayTail, TailFrame};
pub use timers::Timers;
pub use typing::{LocalTyping, TypingRegistry};
pub use writer::{MessageWriter, StoreFailure};
