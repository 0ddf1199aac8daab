//! The shared backend conformance suite, run against the Redis backend on a private
//! redis-server per test.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly at the first unexpected error"
)]

use smartworker_conformance::Subject;
use smartworker_queue_redis::testing::RedisServer;
use smartworker_queue_redis::{RedisBackend, RedisOptions};
use std::sync::Arc;

async fn subject() -> Subject {
    let server = RedisServer::start().expect("start a private redis-server for the test");
    let backend = RedisBackend::connect(RedisOptions::new(server.url()))
        .await
        .unwrap();
    Subject {
        backend: Arc::new(backend),
        guard: Box::new(server),
    }
}

smartworker_conformance::suite!(subject);
