//! Checks of the worker pool (`smartworker_worker::Worker`) running on the backend.

#![allow(
    clippy::unwrap_used,
    reason = "these are test assertions: a check fails loudly at the first unexpected error"
)]

use async_trait::async_trait;
use serde_json::{Value, json};
use smartworker_core::{
    Backoff, ClaimRequest, Handler, Job, JobFailure, JobId, JobOptions, JobState, NewJob,
    QueueBackend,
};
use smartworker_worker::{Worker, WorkerOptions};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Backend = Arc<dyn QueueBackend>;

/// A handler whose behaviour the job's data chooses, counting runs per job.
#[derive(Default)]
struct Scripted {
    running: AtomicUsize,
    most_at_once: AtomicUsize,
    runs: Mutex<HashMap<JobId, usize>>,
}

#[async_trait]
impl Handler for Scripted {
    async fn run(&self, job: &Job) -> Result<Value, JobFailure> {
        *self.runs.lock().unwrap().entry(job.id.clone()).or_default() += 1;
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_at_once.fetch_max(now, Ordering::SeqCst);
        let sleep = job.data["sleep_ms"].as_u64().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(sleep)).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        match job.data["do"].as_str() {
            Some("fail") => Err(JobFailure::with_stack("KeyError: 'email'", "Traceback ...")),
            _ => Ok(json!({"echo": job.data["n"]})),
        }
    }
}

fn opts(concurrency: usize) -> WorkerOptions {
    WorkerOptions {
        concurrency,
        idle_poll: Duration::from_millis(50),
        ..WorkerOptions::default()
    }
}

async fn add(b: &Backend, data: Value, opts: JobOptions) -> JobId {
    b.add(NewJob {
        opts,
        ..NewJob::new("q", "t", data)
    })
    .await
    .unwrap()
}

async fn finished(b: &Backend, id: &JobId) -> Job {
    let job = b.wait_finished(id, Duration::from_secs(20)).await.unwrap();
    assert!(
        job.is_finished(),
        "job {id} did not finish: {:?}",
        job.state
    );
    job
}

/// Concurrency bounds how many jobs run at once, and each keeps its result.
pub async fn worker_runs_jobs_with_at_most_the_configured_concurrency(b: Backend) {
    let h = Arc::new(Scripted::default());
    let mut ids = Vec::new();
    for n in 0..12 {
        ids.push(add(&b, json!({"n": n, "sleep_ms": 50}), JobOptions::default()).await);
    }
    let worker = Worker::spawn(Arc::clone(&b), "q", h.clone(), opts(4));
    for id in &ids {
        assert_eq!(finished(&b, id).await.state, JobState::Completed);
    }
    let stats = worker.shutdown().await;
    assert_eq!(stats.completed, 12);
    assert_eq!(h.most_at_once.load(Ordering::SeqCst), 4);
    let job = b.get(&ids[3]).await.unwrap().unwrap();
    assert_eq!(job.result, Some(json!({"echo": 3})));
}

/// Attempts and backoff through the worker: three failures, then the dead-letter queue.
pub async fn worker_retries_then_dead_letters_with_each_error(b: Backend) {
    let h = Arc::new(Scripted::default());
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
    let numbers: Vec<u32> = job.attempts.iter().map(|a| a.number).collect();
    assert_eq!(numbers, [1, 2, 3]);
    assert!(
        job.attempts
            .iter()
            .all(|a| a.error.as_deref() == Some("KeyError: 'email'"))
    );
    assert_eq!(job.attempts[2].stack.as_deref(), Some("Traceback ..."));
}

/// A job over its timeout fails with a timeout error.
pub async fn worker_fails_a_job_over_its_timeout(b: Backend) {
    let h = Arc::new(Scripted::default());
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

/// Shutdown waits for running jobs within the grace period.
pub async fn worker_shutdown_lets_running_jobs_finish(b: Backend) {
    let h = Arc::new(Scripted::default());
    let id = add(&b, json!({"sleep_ms": 300}), JobOptions::default()).await;
    let worker = Worker::spawn(Arc::clone(&b), "q", h.clone(), opts(1));
    wait_until_running(&h).await;
    let stats = worker.shutdown().await;
    assert_eq!(stats.completed, 1);
    let job = b.get(&id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Completed);
}

/// Past the grace period, running jobs go back to the queue without using an attempt.
pub async fn worker_shutdown_past_the_grace_period_hands_jobs_back(b: Backend) {
    let h = Arc::new(Scripted::default());
    let id = add(&b, json!({"sleep_ms": 10_000}), JobOptions::default()).await;
    let o = WorkerOptions {
        shutdown_grace: Duration::from_millis(50),
        ..opts(1)
    };
    let worker = Worker::spawn(Arc::clone(&b), "q", h.clone(), o);
    wait_until_running(&h).await;
    let stats = worker.shutdown().await;
    assert_eq!(stats.released, 1);
    let job = b.get(&id).await.unwrap().unwrap();
    assert_eq!((job.state, job.attempts_made), (JobState::Waiting, 0));
}

async fn wait_until_running(h: &Scripted) {
    for _ in 0..500 {
        if h.running.load(Ordering::SeqCst) > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the job never started");
}

/// A job whose worker died (its lock ran out) is recovered and completed by another.
pub async fn worker_recovers_a_job_whose_worker_died(b: Backend) {
    let h = Arc::new(Scripted::default());
    let id = add(&b, json!({"n": 7}), JobOptions::default()).await;
    let req = ClaimRequest {
        queue: "q",
        worker: "dead",
        max: 1,
        lock: Duration::from_millis(50),
    };
    assert_eq!(b.claim(req).await.unwrap().len(), 1);
    tokio::time::sleep(Duration::from_millis(150)).await;

    let o = WorkerOptions {
        stalled_interval: Duration::from_millis(50),
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

/// Two workers on one queue share 300 jobs; every job completes, each run exactly once.
pub async fn two_workers_share_many_jobs_and_complete_each_once(b: Backend) {
    let h = Arc::new(Scripted::default());
    let jobs = (0..300)
        .map(|n| NewJob::new("q", "t", json!({"n": n})))
        .collect();
    let ids = b.add_bulk(jobs).await.unwrap();
    let first = Worker::spawn(Arc::clone(&b), "q", h.clone(), opts(8));
    let second = Worker::spawn(Arc::clone(&b), "q", h.clone(), opts(8));
    for id in &ids {
        assert_eq!(finished(&b, id).await.state, JobState::Completed);
    }
    let done = first.shutdown().await.completed + second.shutdown().await.completed;
    assert_eq!(done, 300);
    let runs = h.runs.lock().unwrap().clone();
    assert_eq!(runs.len(), 300);
    assert!(runs.values().all(|n| *n == 1), "a job ran twice");
    assert_eq!(b.counts("q").await.unwrap().completed, 300);
}
