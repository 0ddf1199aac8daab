//! The command handler: one process per job, the job's JSON on stdin, the result on stdout.
//!
//! [`job_stdin`] and [`job_env`] are public so a sandboxed re-run feeds a handler exactly the
//! payload and variables it had on the host.

use crate::command::{CommandSpec, run_command};
use crate::outcome::job_outcome;
use async_trait::async_trait;
use serde_json::{Value, json};
use smartworker_core::{Handler, Job, JobFailure};
use std::time::Duration;

/// The variable that tells a handler where it runs: `host` or `sandbox`.
pub const EXECUTION_CONTEXT_VAR: &str = "EXECUTION_CONTEXT";

/// Runs each job as one process of a configured command.
#[derive(Clone, Debug)]
pub struct CommandHandler {
    spec: CommandSpec,
}

impl CommandHandler {
    /// A handler running `spec` once per job.
    pub fn new(spec: CommandSpec) -> Self {
        CommandHandler { spec }
    }

    /// The command it runs.
    pub fn spec(&self) -> &CommandSpec {
        &self.spec
    }

    /// The spec for one job on the host: the job's variables added, its timeout applied.
    pub fn spec_for(&self, job: &Job) -> CommandSpec {
        let mut spec = self.spec.clone();
        spec.env.extend(job_env(job, "host"));
        if let Some(ms) = job.opts.timeout {
            spec.timeout = Some(Duration::from_millis(ms));
        }
        spec
    }
}

#[async_trait]
impl Handler for CommandHandler {
    async fn run(&self, job: &Job) -> Result<Value, JobFailure> {
        let spec = self.spec_for(job);
        let output = run_command(&spec, &job_stdin(job))
            .await
            .map_err(|err| JobFailure::new(err.to_string()))?;
        job_outcome(&output)
    }
}

/// The payload a command handler reads on stdin: `{"id","name","queue","data","attempt"}`.
///
/// `attempt` is 1 for the first run; it is never 0, even for a job not yet run.
pub fn job_stdin(job: &Job) -> Vec<u8> {
    let payload = json!({
        "id": job.id,
        "name": job.name,
        "queue": job.queue,
        "data": job.data,
        "attempt": job.attempts_made.max(1),
    });
    let mut bytes = payload.to_string().into_bytes();
    bytes.push(b'\n');
    bytes
}

/// The variables a command handler gets for `job`, running in `context` (`host`, `sandbox`).
pub fn job_env(job: &Job, context: &str) -> Vec<(String, String)> {
    vec![
        ("SMARTWORKER_JOB_ID".to_owned(), job.id.to_string()),
        ("SMARTWORKER_QUEUE".to_owned(), job.queue.clone()),
        ("SMARTWORKER_JOB_NAME".to_owned(), job.name.clone()),
        (EXECUTION_CONTEXT_VAR.to_owned(), context.to_owned()),
    ]
}
