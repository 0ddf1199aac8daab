//! The job model of SmartWorker and the traits that queue backends and handlers implement.
//!
//! Nothing in this crate does I/O: time is passed in as milliseconds since the Unix epoch, so
//! every rule here (backoff, retention, when a job is dead-lettered) is a pure function.

mod backend;
mod handler;
mod job;

pub use backend::{
    ActiveJob, BackendError, ClaimRequest, Counts, FinishOutcome, FinishRequest, QueueBackend,
};
pub use handler::{Handler, JobFailure};
pub use job::{
    Attempt, Backoff, FailureStep, HEAL_QUEUE, InvalidJob, Job, JobId, JobOptions, JobState,
    KeepJobs, MAX_PRIORITY, NewJob, autofix_requested, heal_job_for, validate_queue_name,
};
