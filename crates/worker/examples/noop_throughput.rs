//! Quick throughput probe: N no-op jobs through the embedded backend with a Rust handler.

use async_trait::async_trait;
use serde_json::{Value, json};
use smartworker_core::{Handler, Job, JobFailure, NewJob, QueueBackend};
use smartworker_queue::{SqliteBackend, SqliteOptions};
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
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(50_000);
    let conc: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(64);
    let dir = tempfile::tempdir()?;
    let b = SqliteBackend::open(&dir.path().join("q.db"), SqliteOptions::default())?;
    let b: Arc<dyn QueueBackend> = Arc::new(b);
    for chunk in (0..n).collect::<Vec<_>>().chunks(5_000) {
        let jobs = chunk.iter().map(|i| NewJob::new("bench", "noop", json!({"i": i}))).collect();
        b.add_bulk(jobs).await?;
    }
    let start = Instant::now();
    let opts = WorkerOptions { concurrency: conc, ..WorkerOptions::default() };
    let w = Worker::spawn(Arc::clone(&b), "bench", Arc::new(Noop), opts);
    while b.counts("bench").await?.completed < n as u64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    w.shutdown().await;
    eprintln!("{n} jobs, concurrency {conc}: {:.0} jobs/s", n as f64 / secs);
    Ok(())
}
