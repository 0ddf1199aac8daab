//! Queue backends for SmartWorker.
//!
//! [`SqliteBackend`] is the embedded default: one SQLite file in WAL mode under
//! `.smartworker/`, where every state change of a job is one transaction. The Redis backend in
//! BullMQ's layout will sit beside it behind the same [`smartworker_core::QueueBackend`] trait.

mod schema;
mod sqlite;

pub use sqlite::{SqliteBackend, SqliteOptions};
