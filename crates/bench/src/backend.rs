//! The queue backend a measurement runs on: a fresh SQLite file in a temporary directory, or
//! fresh keys (a prefix of their own) on the Redis that `--redis-url` names.

use anyhow::Context;
use smartworker_core::QueueBackend;
use smartworker_queue::{SqliteBackend, SqliteOptions};
use smartworker_queue_redis::{RedisBackend, RedisOptions};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// Runs of this process so far, so each Redis run gets keys of its own.
static RUNS: AtomicU32 = AtomicU32::new(0);

/// A backend with no jobs: on Redis at `redis_url` when given, else in `dir/queue.db`.
///
/// # Errors
/// When the file cannot be made or Redis does not answer.
pub async fn open(redis_url: Option<&str>, dir: &Path) -> anyhow::Result<Arc<dyn QueueBackend>> {
    let Some(url) = redis_url else {
        let backend = SqliteBackend::open(&dir.join("queue.db"), SqliteOptions::default())?;
        return Ok(Arc::new(backend));
    };
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let opts = RedisOptions {
        prefix: format!("bench-{}-{run}", std::process::id()),
        ..RedisOptions::new(url)
    };
    let backend = RedisBackend::connect(opts)
        .await
        .with_context(|| format!("cannot open the redis backend at {}", redact(url)))?;
    Ok(Arc::new(backend))
}

/// The name of the backend for results: `sqlite` or `redis`.
pub fn name(redis_url: Option<&str>) -> &'static str {
    match redis_url {
        Some(_) => "redis",
        None => "sqlite",
    }
}

fn redact(url: &str) -> String {
    smartworker_queue_redis::redact(url)
}
