//! What can go wrong while preparing or running a sandbox.

use smartworker_handler::HandlerError;
use std::io;
use std::path::PathBuf;

/// Why a workspace could not be made or a sandboxed run could not happen.
///
/// A handler that runs in the sandbox and fails is not an error here: it is a
/// [`smartworker_handler::CommandOutput`] with a non-zero exit.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A tool the sandbox needs is not installed.
    #[error("{tool} is not installed: {program:?} not found on PATH")]
    ToolMissing {
        /// What the tool is, e.g. `bubblewrap`.
        tool: &'static str,
        /// The program looked for.
        program: String,
    },
    /// bubblewrap is there but cannot build a sandbox on this machine.
    #[error("bubblewrap cannot create a sandbox here: {0}")]
    Unusable(String),
    /// The project root is missing or not a directory.
    #[error("project root {path:?} is not usable: {source}")]
    ProjectRoot {
        /// The root as given.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// The project is larger than the workspace may be.
    #[error("project {path:?} exceeds the workspace limit of {limit} {unit}")]
    TooLarge {
        /// The project root.
        path: PathBuf,
        /// The limit that was hit.
        limit: u64,
        /// `files` or `bytes`.
        unit: &'static str,
    },
    /// Copying one entry into the workspace failed.
    #[error("cannot copy {path:?} into the workspace: {source}")]
    Copy {
        /// The entry in the project.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// The workspace could not be handed to the sandbox user.
    #[error("cannot hand {path:?} to the sandbox user: {source}")]
    Ownership {
        /// The entry in the workspace.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// Removing the workspace failed.
    #[error("cannot remove workspace {path:?}: {source}")]
    Destroy {
        /// The workspace directory.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// The seccomp filter could not be built or written.
    #[error("cannot build the seccomp filter: {0}")]
    Seccomp(String),
    /// The handler's program was not found on the host's PATH.
    #[error("program {0:?} is not on PATH")]
    ProgramNotFound(String),
    /// No Docker engine answers on the socket.
    #[error("no docker engine answers on {socket:?}: {reason}")]
    DockerUnavailable {
        /// The socket tried.
        socket: PathBuf,
        /// Why it did not answer.
        reason: String,
    },
    /// The sandbox image is not on the engine; it is never pulled.
    #[error(
        "docker image {0:?} is not on this engine (sandbox images are built locally, never pulled)"
    )]
    ImageMissing(String),
    /// The engine refused a step of a run.
    #[error("docker could not {what}: {reason}")]
    Docker {
        /// The step, e.g. `start the container`.
        what: &'static str,
        /// The engine's reason.
        reason: String,
    },
    /// No backend the queue allows can run here; healing is refused rather than run bare.
    #[error("no sandbox is available (heal.sandbox = {choice:?}): {reasons}")]
    NoneAvailable {
        /// The configured choice.
        choice: String,
        /// Why each allowed backend cannot run.
        reasons: String,
    },
    /// The wrapped command could not be run.
    #[error("sandboxed run could not start: {0}")]
    Handler(#[from] HandlerError),
}
