//! The worker pool against the real embedded backend: what only the pool does (panics,
//! events). Running, retrying, timeouts, shutdown and stalled recovery are checked against
//! every backend by `crates/conformance` (`worker_checks`).

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly at the first unexpected error"
)]

use async_trait::async_trait;
use serde_json::{Value, json};
use smartworker_core::{
    ActiveJob, BackendError, ClaimRequest, Counts, FinishOutcome, FinishRequest, Handler, Job,
    JobFailure, JobId, JobOptions, JobState, NewJob, QueueBackend,
};
use smartworker_queue::{SqliteBackend, SqliteOptions};
use smartworker_worker::{Worker, WorkerEvent, WorkerOptions};
use std::sync::Arc;
use std::sync::Mutex;
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

/// The embedded backend, except that the first run's result can never be recorded, as when
/// the store went away between that run's start and its end and the worker gave up.
struct FirstResultRefused {
    inner: Arc<dyn QueueBackend>,
    /// The lock token of the first run claimed.
    first: Mutex<Option<String>>,
}

#[async_trait]
impl QueueBackend for FirstResultRefused {
    async fn add(&self, job: NewJob) -> Result<JobId, BackendError> {
        self.inner.add(job).await
    }
    async fn add_bulk(&self, jobs: Vec<NewJob>) -> Result<Vec<JobId>, BackendError> {
        self.inner.add_bulk(jobs).await
    }
    async fn claim(&self, req: ClaimRequest<'_>) -> Result<Vec<ActiveJob>, BackendError> {
        let claimed = self.inner.claim(req).await?;
        let mut first = self.first.lock().unwrap();
        if first.is_none() {
            *first = claimed.first().map(|a| a.token.clone());
        }
        Ok(claimed)
    }
    async fn finish(&self, done: Vec<FinishRequest>) -> Result<Vec<FinishOutcome>, BackendError> {
        let first = self.first.lock().unwrap().clone();
        if done.iter().any(|d| Some(&d.token) == first.as_ref()) {
            return Err(BackendError::Storage("connection refused".into()));
        }
        self.inner.finish(done).await
    }
    async fn extend_locks(
        &self,
        worker: &str,
        ids: &[(JobId, String)],
        lock: Duration,
    ) -> Result<Vec<JobId>, BackendError> {
        self.inner.extend_locks(worker, ids, lock).await
    }
    async fn release(&self, id: &JobId, token: &str, reason: &str) -> Result<(), BackendError> {
        self.inner.release(id, token, reason).await
    }
    async fn recover_stalled(&self, queue: &str) -> Result<Vec<JobId>, BackendError> {
        self.inner.recover_stalled(queue).await
    }
    async fn wait_for_work(&self, queue: &str, max_wait: Duration) {
        self.inner.wait_for_work(queue, max_wait).await;
    }
    async fn wait_finished(&self, id: &JobId, timeout: Duration) -> Result<Job, BackendError> {
        self.inner.wait_finished(id, timeout).await
    }
    async fn get(&self, id: &JobId) -> Result<Option<Job>, BackendError> {
        self.inner.get(id).await
    }
    async fn list(
        &self,
        queue: &str,
        state: JobState,
        limit: usize,
    ) -> Result<Vec<Job>, BackendError> {
        self.inner.list(queue, state, limit).await
    }
    async fn counts(&self, queue: &str) -> Result<Counts, BackendError> {
        self.inner.counts(queue).await
    }
    async fn queues(&self) -> Result<Vec<String>, BackendError> {
        self.inner.queues().await
    }
    async fn retry_dead(&self, id: &JobId) -> Result<(), BackendError> {
        self.inner.retry_dead(id).await
    }
    async fn remove(&self, id: &JobId) -> Result<(), BackendError> {
        self.inner.remove(id).await
    }
}

/// Reported: a result the store refused for good left its job's lock renewed by the worker,
/// so the job stayed active for ever instead of running again once its lock expired.
#[tokio::test]
async fn a_result_that_cannot_be_recorded_leaves_its_job_to_run_again() {
    let (inner, h) = setup();
    let b: Arc<dyn QueueBackend> = Arc::new(FirstResultRefused {
        inner,
        first: Mutex::new(None),
    });
    let id = add(&b, json!({"n": 1}), JobOptions::default()).await;
    let worker = Worker::spawn(
        Arc::clone(&b),
        "q",
        h,
        WorkerOptions {
            lock: Duration::from_millis(400),
            stalled_interval: Duration::from_millis(100),
            finish_retry_delay: Duration::from_millis(10),
            ..opts(1)
        },
    );

    let job = finished(&b, &id).await;
    worker.shutdown().await;

    assert_eq!(job.state, JobState::Completed, "{job:?}");
    let stalled = job
        .attempts
        .iter()
        .filter(|a| a.error.as_deref().is_some_and(|e| e.contains("stalled")));
    assert_eq!(stalled.count(), 1, "{job:?}");
}
