//! The worker pool against the real embedded backend: what only the pool does (panics,
//! events). Running, retrying, timeouts, shutdown and stalled recovery are checked against
//! every backend by `crates/conformance` (`worker_checks`).

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly at the first unexpected error"
)]

use async_trait::async_trait;
use serde_json::{Value, json};
use smartworker_core::{Handler, Job, JobFailure, JobOptions, NewJob, QueueBackend};
use smartworker_queue::{SqliteBackend, SqliteOptions};
use smartworker_worker::{Worker, WorkerEvent, WorkerOptions};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A handler whose behaviour the job's data chooses.
#[derive(Default)]
struct Scripted {
    running: AtomicUsize,
    most_at_once: AtomicUsize,
}

#[async_trait]
impl Handler for Scripted {
    async fn run(&self, job: &Job) -> Result<Value, JobFailure> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_at_once.fetch_max(now, Ordering::SeqCst);
        let sleep = job.data["sleep_ms"].as_u64().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(sleep)).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        match job.data["do"].as_str() {
            Some("fail") => Err(JobFailure::with_stack("KeyError: 'email'", "Traceback ...")),
            Some("panic") => panic!("index out of bounds"),
            _ => Ok(json!({"echo": job.data["n"]})),
        }
    }
}

fn setup() -> (Arc<dyn QueueBackend>, Arc<Scripted>) {
    let backend = SqliteBackend::open_in_memory(SqliteOptions::default()).unwrap();
    (Arc::new(backend), Arc::new(Scripted::default()))
}

fn opts(concurrency: usize) -> WorkerOptions {
    WorkerOptions {
        concurrency,
        idle_poll: Duration::from_millis(50),
        ..WorkerOptions::default()
    }
}

async fn add(b: &Arc<dyn QueueBackend>, data: Value, opts: JobOptions) -> smartworker_core::JobId {
    b.add(NewJob {
        opts,
        ..NewJob::new("q", "t", data)
    })
    .await
    .unwrap()
}

async fn finished(b: &Arc<dyn QueueBackend>, id: &smartworker_core::JobId) -> Job {
    b.wait_finished(id, Duration::from_secs(10)).await.unwrap()
}

#[tokio::test]
async fn panicking_handler_becomes_a_failed_attempt() {
    let (b, h) = setup();
    let id = add(&b, json!({"do": "panic"}), JobOptions::default()).await;
    let worker = Worker::spawn(Arc::clone(&b), "q", h, opts(1));
    let job = finished(&b, &id).await;
    worker.shutdown().await;
    assert_eq!(
        job.failed_reason.as_deref(),
        Some("handler panicked: index out of bounds")
    );
}

#[tokio::test]
async fn events_report_each_attempt_and_where_the_job_went() {
    let (b, h) = setup();
    let (tx, mut rx) = tokio::sync::broadcast::channel(16);
    let id = add(&b, json!({"do": "fail"}), JobOptions::default()).await;
    let o = WorkerOptions {
        events: Some(tx),
        ..opts(1)
    };
    let worker = Worker::spawn(Arc::clone(&b), "q", h, o);
    finished(&b, &id).await;
    let started = rx.recv().await.unwrap();
    assert!(matches!(started, WorkerEvent::Started { attempt: 1, .. }));
    let ended = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    let text = serde_json::to_value(&ended).unwrap();
    assert_eq!(text["event"], "finished");
    assert_eq!(text["outcome"]["outcome"], "dead_lettered");
    assert_eq!(text["error"], "KeyError: 'email'");
    worker.shutdown().await;
}
