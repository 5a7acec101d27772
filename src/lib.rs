//! The `chat-server` binary's library half: configuration, start-up wiring
//! and logging. `startup` is the only place where adapters meet ports.

pub mod commands;
pub mod configuration;
pub mod secret;
pub mod startup;
pub mod telemetry;
