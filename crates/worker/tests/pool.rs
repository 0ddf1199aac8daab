//! The worker pool against the real embedded backend.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly at the first unexpected error"
)]

use async_trait::async_trait;
use serde_json::{Value, json};
use smartworker_core::{
    Backoff, ClaimRequest, Handler, Job, JobFailure, JobOptions, JobState, NewJob, QueueBackend,
};
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
async fn runs_jobs_with_at_most_the_configured_concurrency() {
    let (b, h) = setup();
    let mut ids = Vec::new();
    for n in 0..12 {
        ids.push(add(&b, json!({"n": n, "sleep_ms": 30}), JobOptions::default()).await);
    }
    let worker = Worker::spawn(Arc::clone(&b), "q", h.clone(), opts(4));
    for id in &ids {
        let job = finished(&b, id).await;
        assert_eq!(job.state, JobState::Completed);
    }
    let stats = worker.shutdown().await;
    assert_eq!(stats.completed, 12);
    assert_eq!(h.most_at_once.load(Ordering::SeqCst), 4);
    assert_eq!(
        b.get(&ids[3]).await.unwrap().unwrap().result,
        Some(json!({"echo": 3}))
    );
}

#[tokio::test]
async fn failing_job_is_retried_then_dead_lettered_with_its_errors() {
    let (b, h) = setup();
    let o = JobOptions {
        attempts: 3,
        backoff: Some(Backoff::Exponential { delay: 20 }),
        ..JobOptions::default()
    };
    let id = add(&b, json!({"do": "fail"}), o).await;
    let worker = Worker::spawn(Arc::clone(&b), "q", h, opts(1));
    let job = finished(&b, &id).await;
    worker.shutdown().await;
    assert_eq!(job.state, JobState::Dead);
    assert_eq!(job.attempts.len(), 3);
    assert!(
        job.attempts
            .iter()
            .all(|a| a.error.as_deref() == Some("KeyError: 'email'"))
    );
    assert_eq!(job.attempts[2].stack.as_deref(), Some("Traceback ..."));
}

#[tokio::test]
async fn job_over_its_timeout_fails_with_a_timeout_error() {
    let (b, h) = setup();
    let o = JobOptions {
        timeout: Some(50),
        ..JobOptions::default()
    };
    let id = add(&b, json!({"sleep_ms": 5_000}), o).await;
    let worker = Worker::spawn(Arc::clone(&b), "q", h, opts(1));
    let job = finished(&b, &id).await;
    worker.shutdown().await;
    assert_eq!(job.state, JobState::Dead);
    assert_eq!(
        job.failed_reason.as_deref(),
        Some("job timed out after 50 ms")
    );
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
async fn shutdown_lets_running_jobs_finish_within_the_grace_period() {
    let (b, h) = setup();
    let id = add(&b, json!({"sleep_ms": 200}), JobOptions::default()).await;
    let worker = Worker::spawn(Arc::clone(&b), "q", h, opts(1));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stats = worker.shutdown().await;
    assert_eq!(stats.completed, 1);
    assert_eq!(
        b.get(&id).await.unwrap().unwrap().state,
        JobState::Completed
    );
}

#[tokio::test]
async fn shutdown_past_the_grace_period_hands_jobs_back_without_using_an_attempt() {
    let (b, h) = setup();
    let id = add(&b, json!({"sleep_ms": 10_000}), JobOptions::default()).await;
    let o = WorkerOptions {
        shutdown_grace: Duration::from_millis(50),
        ..opts(1)
    };
    let worker = Worker::spawn(Arc::clone(&b), "q", h, o);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stats = worker.shutdown().await;
    assert_eq!(stats.released, 1);
    let job = b.get(&id).await.unwrap().unwrap();
    assert_eq!((job.state, job.attempts_made), (JobState::Waiting, 0));
}

#[tokio::test]
async fn stalled_job_is_recovered_after_worker_dies() {
    let (b, h) = setup();
    let id = add(&b, json!({"n": 7}), JobOptions::default()).await;
    // A worker that took the job and died: its lock expires and nobody renews it.
    let req = ClaimRequest {
        queue: "q",
        worker: "dead",
        max: 1,
        lock: Duration::from_millis(30),
    };
    assert_eq!(b.claim(req).await.unwrap().len(), 1);
    tokio::time::sleep(Duration::from_millis(40)).await;

    let o = WorkerOptions {
        stalled_interval: Duration::from_millis(20),
        ..opts(1)
    };
    let worker = Worker::spawn(Arc::clone(&b), "q", h, o);
    let job = finished(&b, &id).await;
    worker.shutdown().await;
    assert_eq!(job.state, JobState::Completed);
    assert_eq!(job.result, Some(json!({"echo": 7})));
    assert!(
        job.attempts[0]
            .error
            .as_deref()
            .unwrap()
            .contains("stalled")
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
