//! A handler that runs every job of a command queue in the sandbox, for
//! `EXECUTION_CONTEXT=sandbox`: the same command, the same payload, in a fresh workspace.
//!
//! Each job gets its own copy of the project, destroyed after the run, so what a job writes
//! under the project does not outlive it. The queue's backend choice picks bubblewrap or
//! Docker per job; when neither can run, the job fails rather than run unsandboxed.

use crate::{BackendChoice, SandboxBackend, SandboxOptions, Workspace, WorkspaceOptions};
use async_trait::async_trait;
use serde_json::Value;
use smartworker_core::{Handler, Job, JobFailure};
use smartworker_handler::{CommandHandler, CommandMode, CommandSpec, job_env, job_stdin};
use std::path::PathBuf;

/// Runs each job of a command queue in the sandbox.
pub struct SandboxHandler {
    command: CommandHandler,
    project_root: PathBuf,
    opts: SandboxOptions,
    workspaces: WorkspaceOptions,
    backend: BackendChoice,
    /// The backend the choice resolved to, found once by the first job.
    resolved: tokio::sync::OnceCell<SandboxBackend>,
    mode: CommandMode,
}

impl SandboxHandler {
    /// A handler running `spec` in the sandbox, in copies of `project_root`.
    pub fn new(spec: CommandSpec, project_root: PathBuf, opts: SandboxOptions) -> Self {
        SandboxHandler {
            command: CommandHandler::new(spec),
            project_root,
            opts,
            workspaces: WorkspaceOptions::default(),
            backend: BackendChoice::default(),
            resolved: tokio::sync::OnceCell::new(),
            mode: CommandMode::OneShot,
        }
    }

    /// The same handler, with the queue's backend choice instead of `auto` without an image.
    #[must_use]
    pub fn with_backend(mut self, backend: BackendChoice) -> Self {
        self.backend = backend;
        self
    }

    /// The same handler, making its workspaces as `workspaces` says (where, how large).
    #[must_use]
    pub fn with_workspaces(mut self, workspaces: WorkspaceOptions) -> Self {
        self.workspaces = workspaces;
        self
    }

    /// Reads each run the way `mode` answers. A persistent handler still gets a fresh process
    /// per job here (its request line, then end of input), since each job has its own copy.
    #[must_use]
    pub fn with_mode(mut self, mode: CommandMode) -> Self {
        self.mode = mode;
        self
    }
}

#[async_trait]
impl Handler for SandboxHandler {
    async fn run(&self, job: &Job) -> Result<Value, JobFailure> {
        let backend = self
            .resolved
            .get_or_try_init(|| self.backend.resolve())
            .await;
        let backend = backend.map_err(|e| JobFailure::new(format!("not run: {e}")))?;
        // FIXME: a full copy per job costs time on large projects (each run also copies it
        // once more, into its own tmpfs); `heal.workspace_dir` on a tmpfs makes the first cheap.
        let (root, workspaces) = (self.project_root.clone(), self.workspaces.clone());
        let ws = tokio::task::spawn_blocking(move || Workspace::create(&root, &workspaces))
            .await
            .map_err(|e| JobFailure::new(format!("sandbox workspace task failed: {e}")))?
            .map_err(|e| JobFailure::new(format!("cannot create the sandbox workspace: {e}")))?;

        let spec = self.command.spec_for(job);
        let mut opts = self.opts.clone();
        opts.env = job_sandbox_env(self.command.spec(), job);
        let stdin = job_stdin(job);
        let run = backend
            .run(&spec, &ws, &self.project_root, &opts, &stdin)
            .await;
        let _ = ws.destroy();
        let output = run.map_err(|e| JobFailure::new(format!("sandbox run failed: {e}")))?;
        self.mode.outcome(&output, job)
    }
}

/// What a job's handler sees in the sandbox: the host variables its queue passes on (`base` is
/// the queue's command, before any job's variables are added) and the job's own variables with
/// `EXECUTION_CONTEXT=sandbox`. Nothing else from the host.
pub fn job_sandbox_env(base: &CommandSpec, job: &Job) -> Vec<(String, String)> {
    let mut env = base.env.clone();
    env.extend(job_env(job, "sandbox"));
    env
}
