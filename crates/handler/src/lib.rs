//! Handlers run one job each: a command (one process per job, or a pool of long-lived
//! processes speaking JSON lines) or a Rust function.
//!
//! [`run_command`] is the only place a one-shot handler process is started, on the host or
//! wrapped in a sandbox, so a sandboxed re-run differs from the original only in where it
//! runs. [`PersistentCommandHandler`] starts its processes with the same setup (own process
//! group, piped stdio, killed on drop). [`CommandMode::outcome`] reads one run of either kind,
//! which is how a sandboxed re-run of a persistent handler is judged by its answer.

mod capture;
mod command;
mod function;
mod job;
mod mode;
mod outcome;
mod persistent;

pub use capture::Capture;
pub use command::{
    CommandOutput, CommandSpec, DEFAULT_MAX_OUTPUT_BYTES, HandlerError, run_command,
};
pub use function::{FnHandler, handler_fn};
pub use job::{CommandHandler, EXECUTION_CONTEXT_VAR, job_env, job_stdin};
pub use mode::CommandMode;
pub use outcome::job_outcome;
pub use persistent::{
    DEFAULT_STDERR_TAIL_BYTES, PersistentCommandHandler, PersistentOptions, single_run_outcome,
};
