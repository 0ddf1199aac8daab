//! The one function that runs a command for a job, on the host or wrapped in a sandbox.
//!
//! The child runs in its own process group, and that whole group is killed when the command
//! times out, when it exits (leftover background processes die with it) and when the future
//! is dropped, so no grandchild outlives its job.

use crate::capture::Capture;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin, Command};

/// How long output may still arrive after the child has exited or been killed.
pub(crate) const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// The default cap on each of stdout and stderr.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 1024 * 1024;

/// What to run and how: the program, its arguments, directory, environment and limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandSpec {
    /// The program: a path, or a bare name looked up on `PATH`.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// The directory it runs in.
    pub cwd: PathBuf,
    /// Variables set on top of the environment (or instead of it, with `clear_env`).
    pub env: Vec<(String, String)>,
    /// Start from an empty environment instead of this process's.
    pub clear_env: bool,
    /// Wall-clock time after which the whole process group is killed; `None` waits forever.
    pub timeout: Option<Duration>,
    /// The most bytes kept of each of stdout and stderr; the tail is kept.
    pub max_output_bytes: usize,
}

impl CommandSpec {
    /// A spec running `program` with `args` in `cwd`, inheriting the environment, no timeout.
    pub fn new(program: impl Into<String>, args: &[&str], cwd: impl Into<PathBuf>) -> Self {
        CommandSpec {
            program: program.into(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            cwd: cwd.into(),
            env: Vec::new(),
            clear_env: false,
            timeout: None,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
        }
    }
}

/// What a finished (or killed) command left behind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandOutput {
    /// The exit code, when the process exited by itself.
    pub exit_code: Option<i32>,
    /// The signal that ended the process, when one did.
    pub signal: Option<i32>,
    /// The tail of stdout, at most `max_output_bytes`.
    pub stdout: String,
    /// The tail of stderr, at most `max_output_bytes`.
    pub stderr: String,
    /// True when the timeout expired and the process group was killed.
    pub timed_out: bool,
    /// Wall-clock time from spawn to the end of the output.
    pub duration: Duration,
    /// True when stdout or stderr was longer than the cap and its head was dropped.
    pub truncated: bool,
    /// True when a sandbox saw the kernel kill a process of the run for memory (set by the
    /// sandbox backends; a host run leaves it false).
    pub memory_killed: bool,
}

/// Why a command could not be run at all (as opposed to running and failing).
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The working directory does not exist or is not a directory.
    #[error("working directory {0:?} does not exist")]
    MissingCwd(PathBuf),
    /// The program could not be started: missing, not executable, …
    #[error("cannot start {program:?}: {source}")]
    Spawn {
        /// The program as given in the spec.
        program: String,
        /// The operating system's reason.
        source: io::Error,
    },
    /// Waiting for the child failed.
    #[error("cannot wait for {program:?}: {source}")]
    Wait {
        /// The program as given in the spec.
        program: String,
        /// The operating system's reason.
        source: io::Error,
    },
}

/// Kills a process group when dropped: the safety net for timeouts and dropped futures.
#[derive(Debug)]
pub(crate) struct GroupKill(Option<Pid>);

impl GroupKill {
    /// The guard for `child`'s process group (the child leads it).
    pub(crate) fn of(child: &Child) -> Self {
        GroupKill(
            child
                .id()
                .and_then(|id| i32::try_from(id).ok())
                .map(Pid::from_raw),
        )
    }

    /// Kills the whole group now; later calls do nothing.
    pub(crate) fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // ESRCH (the group is already gone) is the expected case after a clean exit.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `spec`, writes `stdin` to it, and collects its output.
///
/// The child leads its own process group. When it exits, times out or this future is dropped,
/// the whole group is killed, so background processes it started die with it; a process that
/// escaped the group with `setsid` is only waited for up to a short grace period.
///
/// # Errors
/// [`HandlerError`] when the command cannot be started. A command that runs and fails, or
/// times out, is an `Ok` output: see [`crate::job_outcome`].
///
/// # Cancel safety
/// Dropping the future kills the child's process group.
pub async fn run_command(spec: &CommandSpec, stdin: &[u8]) -> Result<CommandOutput, HandlerError> {
    if !spec.cwd.is_dir() {
        return Err(HandlerError::MissingCwd(spec.cwd.clone()));
    }
    let started = Instant::now();
    let mut child = command(spec)
        .spawn()
        .map_err(|source| HandlerError::Spawn {
            program: spec.program.clone(),
            source,
        })?;
    let mut group = GroupKill::of(&child);

    let mut stdout = Capture::new(spec.max_output_bytes);
    let mut stderr = Capture::new(spec.max_output_bytes);
    let ended = drive(
        &mut child,
        &mut group,
        stdin,
        &mut stdout,
        &mut stderr,
        spec.timeout,
    )
    .await;
    let status = ended.map_err(|source| HandlerError::Wait {
        program: spec.program.clone(),
        source,
    })?;

    let (stdout, out_cut) = stdout.finish();
    let (stderr, err_cut) = stderr.finish();
    Ok(CommandOutput {
        exit_code: status.status.code(),
        signal: status.status.signal(),
        stdout,
        stderr,
        timed_out: status.timed_out,
        duration: started.elapsed(),
        truncated: out_cut || err_cut,
        memory_killed: false,
    })
}

/// The command for `spec`: piped stdio, its own process group, killed when dropped.
pub(crate) fn command(spec: &CommandSpec) -> Command {
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .current_dir(&spec.cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    if spec.clear_env {
        cmd.env_clear();
    }
    cmd.envs(spec.env.iter().map(|(k, v)| (k, v)));
    cmd
}

/// How the child ended.
struct Ended {
    status: ExitStatus,
    timed_out: bool,
}

/// Feeds stdin, reads both pipes, and waits for the child or the timeout, whichever is first.
async fn drive(
    child: &mut Child,
    group: &mut GroupKill,
    stdin: &[u8],
    stdout: &mut Capture,
    stderr: &mut Capture,
    timeout: Option<Duration>,
) -> io::Result<Ended> {
    let (out_pipe, err_pipe, in_pipe) =
        (child.stdout.take(), child.stderr.take(), child.stdin.take());
    let reading = async { tokio::join!(stdout.fill(out_pipe), stderr.fill(err_pipe)) };
    tokio::pin!(reading);
    let mut read_done = false;

    let feeding = feed(in_pipe, stdin);
    tokio::pin!(feeding);
    let mut fed = false;

    let expiry = async {
        match timeout {
            Some(limit) => tokio::time::sleep(limit).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(expiry);

    // 1. Wait for the exit or the deadline, feeding stdin and reading output all along so the
    //    child never blocks on a pipe.
    let mut waiting = Box::pin(child.wait());
    let exited = loop {
        tokio::select! {
            status = &mut waiting => break Some(status?),
            () = &mut expiry => break None,
            _ = &mut reading, if !read_done => read_done = true,
            () = &mut feeding, if !fed => fed = true,
        }
    };
    drop(waiting);

    // 2. Kill what is left of the group, so background processes release the pipes.
    group.kill();

    // 3. Collect the output still buffered in the pipes.
    if !read_done {
        let _ = tokio::time::timeout(OUTPUT_GRACE, &mut reading).await;
    }

    // 4. Reap the child itself after a timeout; it was killed with its group.
    match exited {
        Some(status) => Ok(Ended {
            status,
            timed_out: false,
        }),
        None => {
            let _ = child.start_kill();
            let status = child.wait().await?;
            Ok(Ended {
                status,
                timed_out: true,
            })
        }
    }
}

/// Writes the payload and closes stdin. A child that exits without reading it is fine.
async fn feed(pipe: Option<ChildStdin>, bytes: &[u8]) {
    let Some(mut pipe) = pipe else {
        return;
    };
    // Errors here are EPIPE from a child that does not read stdin: not a failure of the job.
    let _ = pipe.write_all(bytes).await;
    let _ = pipe.shutdown().await;
}
