//! A disposable workspace and an isolated run of the same handler, under bubblewrap or Docker.
//!
//! The sandbox never changes how a handler runs, only where: [`wrap`] turns the handler's
//! [`CommandSpec`](smartworker_handler::CommandSpec) into a bubblewrap command line and
//! [`run_sandboxed`] hands that to the handler crate's `run_command`; [`DockerSandbox`] runs the
//! same spec in a container. [`BackendChoice::resolve`] picks the backend a queue asked for
//! (`auto`: bubblewrap, then Docker) and [`SandboxBackend::run`] runs either, so callers never
//! know which one ran. Nothing here runs a handler on the host as this process's user, and
//! there is no unsandboxed fallback.

mod backend;
mod bwrap;
mod cgroup;
mod docker;
mod error;
mod handler;
mod inside;
mod options;
mod resolve;
mod seccomp;
mod workspace;

pub use backend::{BackendChoice, BackendKind, SandboxBackend, SandboxPolicy};
pub use bwrap::{check_available, run_sandboxed, wrap};
pub use cgroup::remove_leftover_cgroups;
pub use docker::{
    DEFAULT_DOCKER_SOCKET, DockerOptions, DockerSandbox, LABEL_JOB, LABEL_PID, LABEL_SANDBOX,
    check_docker, finish_removals, remove_leftovers,
};
pub use error::SandboxError;
pub use handler::{SandboxHandler, job_sandbox_env};
pub use options::{DEFAULT_SANDBOX_UID, SandboxOptions, is_usable_sandbox_uid};
pub use seccomp::denied_syscalls;
pub use workspace::{
    SKIPPED_DIRS, Workspace, WorkspaceOptions, is_secret_file, remove_stale_workspaces,
};
