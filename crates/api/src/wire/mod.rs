//! The two wire formats, kept apart from the code that moves frames:
//! - [`seed`]: the original application's socket frames, byte for byte;
//! - [`v2`]: protocol v2's objects and frames (the `/ws/v2/` socket and the
//!   v2 REST routes share its message and chat objects).

pub mod seed;
pub mod v2;
