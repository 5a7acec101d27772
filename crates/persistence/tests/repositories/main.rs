//! The repository contract: what every store behind the domain's ports
//! (`UserRepository`, `ChatRepository`, `MessageRepository`) must do, run
//! on every store.
//!
//! Each behavioural test is a function of `&dyn Store` and is listed once in
//! its file's [`contract_tests!`], which makes one `#[test]` of it per store:
//! - `sqlite::<name>`: a fresh SQLite file (always);
//! - `postgres::<name>`: a fresh PostgreSQL database (built with the
//!   `postgres` feature; without `TEST_DATABASE_URL` it says it is skipped
//!   and passes);
//! - `memory::<name>`: a new [`MemoryStore`](chat_persistence::MemoryStore)
//!   (the `memory` feature, which this crate's tests always enable).
//!
//! Tests of SQL itself (statement counts, URLs and pool options, the
//! migrations, durability across a reconnect) take an empty SQL database
//! instead and are listed in [`sql_tests!`]: SQLite and PostgreSQL only.
//!
//! Every test has a store of its own; none depends on another's data.

// clippy.toml allows these inside `#[test]` functions only; the helpers here
// are test code too, where a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// One `#[test]` per store for each listed `fn(&dyn Store)` of the
/// invoking module: `sqlite::<name>`, `postgres::<name>`, `memory::<name>`.
/// One invocation per module (it defines those three modules).
macro_rules! contract_tests {
    ($($test:ident),+ $(,)?) => {
        #[cfg(feature = "sqlite")]
        mod sqlite {
            $(
                #[test]
                fn $test() {
                    super::$test(&*crate::stores::empty_sqlite().connect());
                }
            )+
        }

        #[cfg(feature = "postgres")]
        mod postgres {
            $(
                #[test]
                fn $test() {
                    if let Some(empty) = crate::stores::empty_postgres() {
                        super::$test(&*empty.connect());
                    }
                }
            )+
        }

        #[cfg(feature = "memory")]
        mod memory {
            $(
                #[test]
                fn $test() {
                    super::$test(&chat_persistence::MemoryStore::new());
                }
            )+
        }
    };
}

/// One `#[test]` per SQL backend for each listed `fn(EmptyDb)` of the
/// invoking module: `sqlite::<name>`, `postgres::<name>`.
macro_rules! sql_tests {
    ($($test:ident),+ $(,)?) => {
        #[cfg(feature = "sqlite")]
        mod sqlite {
            $(
                #[test]
                fn $test() {
                    super::$test(crate::stores::empty_sqlite());
                }
            )+
        }

        #[cfg(feature = "postgres")]
        mod postgres {
            $(
                #[test]
                fn $test() {
                    if let Some(empty) = crate::stores::empty_postgres() {
                        super::$test(empty);
                    }
                }
            )+
        }
    };
}

mod stores;

// The contract, on every store.
mod chats;
mod cursors;
mod messages;
mod model;
mod pages;
mod users;

// SQL only.
mod connecting;
mod migrations;
mod statements;
