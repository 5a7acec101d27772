//! Protocol v2's socket, `GET /ws/v2/`: one socket for all of a user's
//! chats, with catch-up by `seq`, retry-safe sends, receipts, typing and
//! presence.

pub mod session;
