//! The interface every queue backend implements.
//!
//! Each method is one atomic step in the backend: a crash between two calls can leave a job
//! active under an expired lock (and [`QueueBackend::recover_stalled`] puts it back), but never
//! half-moved.

use crate::handler::JobFailure;
use crate::job::{Attempt, InvalidJob, Job, JobId, JobState, NewJob};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

/// What a backend can fail with.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// No job has that id.
    #[error("job {0} not found")]
    NotFound(JobId),
    /// The job is not in a state that allows the operation.
    #[error("job {id} is {state}, not {expected}")]
    WrongState {
        /// The job.
        id: JobId,
        /// Its state.
        state: JobState,
        /// The state the operation needs.
        expected: JobState,
    },
    /// The job was refused before it was stored.
    #[error(transparent)]
    Invalid(#[from] InvalidJob),
    /// The storage itself failed (disk, connection, corruption).
    #[error("storage error: {0}")]
    Storage(String),
}

/// A worker's request for jobs to run.
#[derive(Clone, Debug)]
pub struct ClaimRequest<'a> {
    /// The queue to take from.
    pub queue: &'a str,
    /// The worker's id, recorded with the lock.
    pub worker: &'a str,
    /// At most this many jobs.
    pub max: usize,
    /// How long the lock lasts unless extended.
    pub lock: Duration,
}

/// A job held by a worker, with the token that proves the lock.
#[derive(Clone, Debug)]
pub struct ActiveJob {
    /// The job, in state `Active`, with `attempts_made` counting this attempt.
    pub job: Job,
    /// The lock token to present when finishing.
    pub token: String,
}

/// The end of one attempt, as a worker reports it.
#[derive(Clone, Debug)]
pub struct FinishRequest {
    /// The job.
    pub id: JobId,
    /// The token from [`ActiveJob::token`].
    pub token: String,
    /// The attempt's record.
    pub attempt: Attempt,
    /// The handler's result.
    pub outcome: Result<Value, JobFailure>,
}

/// Where a finished attempt put the job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum FinishOutcome {
    /// The job completed.
    Completed,
    /// The job will run again at `run_at`.
    Retrying {
        /// ms since the epoch.
        run_at: i64,
    },
    /// The job used up its attempts; `heal_job` is the healing job added in the same step.
    DeadLettered {
        /// The healing job, when the job asked for healing.
        heal_job: Option<JobId>,
    },
    /// The lock had expired or passed to another worker; nothing was changed.
    LockLost,
}

/// How many jobs a queue holds in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Ready to run.
    pub waiting: u64,
    /// Waiting for their time.
    pub delayed: u64,
    /// Running.
    pub active: u64,
    /// Done.
    pub completed: u64,
    /// In the dead-letter queue.
    pub dead: u64,
}

impl Counts {
    /// Adds one job in `state`.
    pub fn add(&mut self, state: JobState, n: u64) {
        let slot = match state {
            JobState::Waiting => &mut self.waiting,
            JobState::Delayed => &mut self.delayed,
            JobState::Active => &mut self.active,
            JobState::Completed => &mut self.completed,
            JobState::Dead => &mut self.dead,
        };
        *slot += n;
    }
}

/// Stores and moves jobs. Implemented by the embedded SQLite backend and the Redis backend.
#[async_trait]
pub trait QueueBackend: Send + Sync + 'static {
    /// Adds one job and returns its id (the existing id when `opts.job_id` is taken).
    async fn add(&self, job: NewJob) -> Result<JobId, BackendError>;

    /// Adds many jobs in one step; either all are stored or none.
    async fn add_bulk(&self, jobs: Vec<NewJob>) -> Result<Vec<JobId>, BackendError>;

    /// Moves up to `max` runnable jobs (waiting, or delayed and due) to active under a lock,
    /// highest priority first, then oldest first.
    async fn claim(&self, req: ClaimRequest<'_>) -> Result<Vec<ActiveJob>, BackendError>;

    /// Records finished attempts, each one atomically, and says where each job went.
    async fn finish(&self, done: Vec<FinishRequest>) -> Result<Vec<FinishOutcome>, BackendError>;

    /// Extends the locks a worker holds; returns the ids whose lock was lost.
    async fn extend_locks(
        &self,
        worker: &str,
        ids: &[(JobId, String)],
        lock: Duration,
    ) -> Result<Vec<JobId>, BackendError>;

    /// Hands an active job back to waiting without counting the attempt, recording
    /// `reason` in its history; used when a worker shuts down before the job ends.
    async fn release(&self, id: &JobId, token: &str, reason: &str) -> Result<(), BackendError>;

    /// Puts active jobs whose lock expired back to waiting, so another worker runs them.
    async fn recover_stalled(&self, queue: &str) -> Result<Vec<JobId>, BackendError>;

    /// Waits until `queue` may have runnable work or `max_wait` passes, whichever is first.
    async fn wait_for_work(&self, queue: &str, max_wait: Duration);

    /// Waits until the job is completed or dead-lettered, or `timeout` passes.
    ///
    /// Returns the job as it is when the wait ends.
    async fn wait_finished(&self, id: &JobId, timeout: Duration) -> Result<Job, BackendError>;

    /// One job by id.
    async fn get(&self, id: &JobId) -> Result<Option<Job>, BackendError>;

    /// Jobs of a queue in a state, newest first.
    async fn list(
        &self,
        queue: &str,
        state: JobState,
        limit: usize,
    ) -> Result<Vec<Job>, BackendError>;

    /// Counts by state for one queue.
    async fn counts(&self, queue: &str) -> Result<Counts, BackendError>;

    /// Every queue that holds or held a job.
    async fn queues(&self) -> Result<Vec<String>, BackendError>;

    /// Moves a dead-lettered job back to waiting with fresh attempts; its history is kept.
    async fn retry_dead(&self, id: &JobId) -> Result<(), BackendError>;

    /// Removes a job that is not active.
    async fn remove(&self, id: &JobId) -> Result<(), BackendError>;
}
