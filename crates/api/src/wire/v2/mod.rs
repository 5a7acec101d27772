//! Protocol v2 on the wire: [`parse`] reads client frames, [`encode`]
//! writes server frames and the objects REST shares.

pub mod encode;
pub mod parse;

pub use encode::*;
pub use parse::{parse_client_frame, BadFrame, ClientFrame, Parsed};
