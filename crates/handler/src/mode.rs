//! The two ways a command handler talks to SmartWorker, and how one run's output is read in
//! each, so a sandboxed re-run judges a job exactly as its queue's handler would on the host.

use crate::command::CommandOutput;
use crate::outcome::job_outcome;
use crate::persistent::single_run_outcome;
use serde_json::Value;
use smartworker_core::{Job, JobFailure};
use std::fmt;

/// How a queue's command runs its jobs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CommandMode {
    /// One process per job: the job's JSON on stdin, its result on stdout, the exit code says
    /// whether it passed ([`crate::CommandHandler`]).
    #[default]
    OneShot,
    /// Long-lived processes reading one job per line and answering each with a JSON envelope
    /// `{"id", "ok", "result" | "error", "stack"}` ([`crate::PersistentCommandHandler`]).
    Persistent,
}

impl CommandMode {
    /// Every mode, as configuration spells it.
    pub const NAMES: [&'static str; 2] = ["oneshot", "persistent"];

    /// The mode configuration spells `name`, if any.
    pub fn from_name(name: &str) -> Option<CommandMode> {
        match name {
            "oneshot" => Some(CommandMode::OneShot),
            "persistent" => Some(CommandMode::Persistent),
            _ => None,
        }
    }

    /// How configuration spells the mode.
    pub fn name(self) -> &'static str {
        match self {
            CommandMode::OneShot => "oneshot",
            CommandMode::Persistent => "persistent",
        }
    }

    /// The job's outcome from one run of the command that was fed [`crate::job_stdin`] and
    /// then end of input.
    ///
    /// A one-shot command is read by [`job_outcome`]. A persistent command is read by its
    /// answer envelope: `{"ok": false}` is a failure even when the process then exits 0, and
    /// a process that ends without answering fails with what ended it.
    ///
    /// # Errors
    /// The job's [`JobFailure`] whenever the run does not count as a success.
    pub fn outcome(self, output: &CommandOutput, job: &Job) -> Result<Value, JobFailure> {
        match self {
            CommandMode::OneShot => job_outcome(output),
            CommandMode::Persistent => single_run_outcome(output, &job.id),
        }
    }
}

impl fmt::Display for CommandMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
