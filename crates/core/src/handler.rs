//! The trait every handler implements, and the failure a handler reports.

use crate::job::Job;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Why one attempt of a job failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct JobFailure {
    /// One line saying what went wrong.
    pub message: String,
    /// The stack trace, as the handler printed it.
    pub stack: Option<String>,
}

impl JobFailure {
    /// A failure with a message and no stack trace.
    pub fn new(message: impl Into<String>) -> Self {
        JobFailure {
            message: message.into(),
            stack: None,
        }
    }

    /// A failure with a stack trace.
    pub fn with_stack(message: impl Into<String>, stack: impl Into<String>) -> Self {
        JobFailure {
            message: message.into(),
            stack: Some(stack.into()),
        }
    }
}

/// Runs one job. A handler knows nothing of the backend the job came from.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Runs the job once and returns its result.
    ///
    /// # Errors
    /// A [`JobFailure`] makes the attempt failed; the worker pool decides about retries.
    ///
    /// # Cancel safety
    /// The pool drops the future when the job's timeout expires or on forced shutdown; a
    /// handler that starts processes must make sure dropping it stops them.
    async fn run(&self, job: &Job) -> Result<Value, JobFailure>;
}
