//! The Redis queue backend of SmartWorker, in BullMQ's key layout.
//!
//! Jobs live where BullMQ keeps them (`bull:<queue>:<id>` hashes, the `wait`, `active`,
//! `prioritized`, `delayed`, `completed` and `failed` lists and sets, the `marker` and the
//! `events` stream), in the forms BullMQ writes, so Node producers, Node workers and Bull
//! Board share the queues with SmartWorker. Every state change is one Lua script, so it is
//! atomic, and the batch steps (add, claim, finish, extend) are one round trip per batch.
//!
//! # Public API (stable)
//!
//! - [`RedisBackend::connect`]`(`[`RedisOptions`]`)` (async, checks Redis answers) or
//!   [`RedisBackend::open`] (sync, connects on first use) → a
//!   [`smartworker_core::QueueBackend`]; also [`RedisBackend::ping`],
//!   [`RedisBackend::options`], [`RedisBackend::queue_key`].
//! - [`RedisOptions`]: `url` (`redis://` or `rediss://`, with password and database),
//!   `prefix` (default `bull`; hash-tag it, e.g. `{sw}`, for Redis Cluster),
//!   `dead_letter_queues` (queue → name; default `<queue>-dlq`), `max_stalled`, `cluster`
//!   (Redis Cluster client; needs a hash-tagged prefix), timeouts.
//! - Job ids are `<queue>:<BullMQ id>` (`signup:17` is BullMQ job `17` of queue `signup`).
//! - A job that used its attempts is `failed` in its queue, as BullMQ leaves it, and a copy
//!   waits in its dead-letter queue (a BullMQ queue of its own) with `sw:origin` naming the
//!   original; [`smartworker_core::QueueBackend::retry_dead`] accepts either id.
//! - Feature `testing`: [`testing::RedisServer`], a private redis-server on a free port
//!   (`start`, `start_with` a password or an append-only file, `url`, `port`, `kill`,
//!   `restart` on the same port), and [`testing::RedisCluster`], three private nodes.
//!
//! Not supported yet (each marked `FIXME` where it matters): BullMQ flows (parent and child
//! jobs), its rate limiter and global concurrency, repeatable jobs, and pause/resume from
//! SmartWorker (a queue paused by Node is honoured).
//!
//! Nothing here exposes BullMQ or `redis` types.

mod backend;
mod conn;
mod mapping;
mod options;
mod scripts;
#[cfg(feature = "testing")]
pub mod testing;

pub use backend::RedisBackend;
pub use options::{
    ConnectError, DEFAULT_DLQ_SUFFIX, DEFAULT_PREFIX, RedisOptions, has_hash_tag, redact,
};
