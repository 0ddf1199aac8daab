//! Which sandbox runs a job: the choice a queue is configured with, the backend it resolves to
//! on this machine, and one `run` for both, so nothing above this crate knows how bubblewrap or
//! Docker are driven.
//!
//! `auto` takes bubblewrap when it can build a sandbox here, else Docker when an engine answers
//! and the image is there. When nothing is available the choice fails with every reason; there
//! is no unsandboxed fallback.

use crate::bwrap;
use crate::docker::{DEFAULT_DOCKER_SOCKET, DockerOptions, DockerSandbox};
use crate::error::SandboxError;
use crate::options::SandboxOptions;
use crate::workspace::Workspace;
use smartworker_handler::{CommandOutput, CommandSpec};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The backend a queue asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendKind {
    /// Bubblewrap when it works here, else Docker.
    #[default]
    Auto,
    /// Bubblewrap only.
    Bubblewrap,
    /// Docker only.
    Docker,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Auto => "auto",
            BackendKind::Bubblewrap => "bubblewrap",
            BackendKind::Docker => "docker",
        })
    }
}

/// A queue's sandbox choice: the backend, and the image Docker would run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendChoice {
    /// Which backend.
    pub kind: BackendKind,
    /// The Docker image; without one, Docker is not an option.
    pub image: Option<String>,
    /// The Docker Engine's socket.
    pub docker_socket: PathBuf,
}

impl Default for BackendChoice {
    fn default() -> Self {
        BackendChoice {
            kind: BackendKind::Auto,
            image: None,
            docker_socket: PathBuf::from(DEFAULT_DOCKER_SOCKET),
        }
    }
}

impl BackendChoice {
    /// The backend this choice resolves to on this machine now.
    ///
    /// # Errors
    /// [`SandboxError::NoneAvailable`] naming the choice and why each backend it allows
    /// cannot run here.
    pub async fn resolve(&self) -> Result<SandboxBackend, SandboxError> {
        let mut reasons = Vec::new();
        if self.kind != BackendKind::Docker {
            match bubblewrap_works().await {
                Ok(()) => return Ok(SandboxBackend::Bubblewrap),
                Err(reason) => reasons.push(format!("bubblewrap: {reason}")),
            }
        }
        if self.kind != BackendKind::Bubblewrap {
            match self.docker().await {
                Ok(docker) => return Ok(SandboxBackend::Docker(docker)),
                Err(reason) => reasons.push(format!("docker: {reason}")),
            }
        }
        Err(SandboxError::NoneAvailable {
            choice: self.kind.to_string(),
            reasons: reasons.join("; "),
        })
    }

    async fn docker(&self) -> Result<DockerSandbox, String> {
        let Some(image) = &self.image else {
            return Err("no image is configured (sandbox_image)".to_owned());
        };
        let opts = DockerOptions {
            socket: self.docker_socket.clone(),
            image: image.clone(),
        };
        DockerSandbox::connect(&opts)
            .await
            .map_err(|e| e.to_string())
    }
}

/// Every queue's sandbox choice: one default and per-queue overrides.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SandboxPolicy {
    /// The choice of queues without their own.
    pub default: BackendChoice,
    /// Choices by queue name.
    pub queues: HashMap<String, BackendChoice>,
}

impl SandboxPolicy {
    /// The choice for `queue`.
    pub fn for_queue(&self, queue: &str) -> &BackendChoice {
        self.queues.get(queue).unwrap_or(&self.default)
    }

    /// The Docker sockets any queue may use, each once, for start-up clean-up.
    pub fn docker_sockets(&self) -> Vec<&Path> {
        let mut sockets: Vec<&Path> = std::iter::once(&self.default)
            .chain(self.queues.values())
            .filter(|c| c.kind != BackendKind::Bubblewrap && c.image.is_some())
            .map(|c| c.docker_socket.as_path())
            .collect();
        sockets.sort();
        sockets.dedup();
        sockets
    }
}

/// A sandbox that can run here now.
#[derive(Clone, Debug)]
pub enum SandboxBackend {
    /// bubblewrap, with the seccomp filter and limits.
    Bubblewrap,
    /// A Docker container of an image.
    Docker(DockerSandbox),
}

impl SandboxBackend {
    /// `bubblewrap` or `docker`, for records and logs.
    pub fn name(&self) -> &'static str {
        match self {
            SandboxBackend::Bubblewrap => "bubblewrap",
            SandboxBackend::Docker(_) => "docker",
        }
    }

    /// Runs `spec` over `ws` in this sandbox; the same contract as [`crate::run_sandboxed`].
    ///
    /// # Errors
    /// The sandbox could not be built or started; a handler that fails inside it is an `Ok`
    /// output with a non-zero exit.
    ///
    /// # Cancel safety
    /// Dropping the future kills everything running in the sandbox.
    pub async fn run(
        &self,
        spec: &CommandSpec,
        ws: &Workspace,
        project_root: &Path,
        opts: &SandboxOptions,
        stdin: &[u8],
    ) -> Result<CommandOutput, SandboxError> {
        match self {
            SandboxBackend::Bubblewrap => {
                bwrap::run_sandboxed(spec, ws, project_root, opts, stdin).await
            }
            SandboxBackend::Docker(docker) => docker.run(spec, ws, project_root, opts, stdin).await,
        }
    }
}

async fn bubblewrap_works() -> Result<(), String> {
    match tokio::task::spawn_blocking(bwrap::check_available).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(err)) => Err(err.to_string()),
        Err(err) => Err(format!("the check did not finish: {err}")),
    }
}
