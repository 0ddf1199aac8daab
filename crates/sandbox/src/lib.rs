//! A disposable workspace and an isolated run of the same handler, under bubblewrap.
//!
//! The sandbox never changes how a handler runs, only where: [`wrap`] turns the handler's
//! [`CommandSpec`](smartworker_handler::CommandSpec) into a bubblewrap command line, and
//! [`run_sandboxed`] hands that to the handler crate's `run_command`. Nothing here runs a
//! handler on the host as this process's user.

mod bwrap;
mod error;
mod handler;
mod resolve;
mod seccomp;
mod workspace;

pub use bwrap::{SandboxOptions, check_available, run_sandboxed, wrap};
pub use error::SandboxError;
pub use handler::{SandboxHandler, job_sandbox_env};
pub use seccomp::denied_syscalls;
pub use workspace::{SKIPPED_DIRS, Workspace, WorkspaceOptions};
