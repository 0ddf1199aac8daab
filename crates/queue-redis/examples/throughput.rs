//! Prints how many no-op jobs per second the worker pool runs on the Redis backend, against a
//! private redis-server: `cargo run --release -p smartworker-queue-redis --features testing
//! --example throughput -- [jobs] [concurrency]`. A measurement for people, not a test.

#![allow(clippy::print_stdout, reason = "the example's output is its report")]

use async_trait::async_trait;
use serde_json::{Value, json};
use smartworker_core::{Handler, Job, JobFailure, NewJob, QueueBackend};
use smartworker_queue_redis::testing::RedisServer;
use smartworker_queue_redis::{RedisBackend, RedisOptions};
use smartworker_worker::{Worker, WorkerOptions};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Noop;

#[async_trait]
impl Handler for Noop {
    async fn run(&self, _job: &Job) -> Result<Value, JobFailure> {
        Ok(Value::Null)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let jobs: usize = args.next().map_or(Ok(20_000), |a| a.parse())?;
    let concurrency: usize = args.next().map_or(Ok(50), |a| a.parse())?;
    let server = RedisServer::start()?;
    let backend = Arc::new(RedisBackend::connect(RedisOptions::new(server.url())).await?);
    for chunk in (0..jobs).collect::<Vec<_>>().chunks(1000) {
        let batch = chunk
            .iter()
            .map(|n| NewJob::new("bench", "noop", json!({"n": n})));
        backend.add_bulk(batch.collect()).await?;
    }
    let opts = WorkerOptions {
        concurrency,
        idle_poll: Duration::from_millis(20),
        ..WorkerOptions::default()
    };
    let started = Instant::now();
    let backend_dyn: Arc<dyn QueueBackend> = backend.clone();
    let worker = Worker::spawn(backend_dyn, "bench", Arc::new(Noop), opts);
    loop {
        let counts = backend.counts("bench").await?;
        if counts.completed as usize >= jobs {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    worker.shutdown().await;
    let rate = jobs as f64 / elapsed.as_secs_f64();
    println!("{jobs} jobs, concurrency {concurrency}: {elapsed:.2?}, {rate:.0} jobs/s");
    Ok(())
}
