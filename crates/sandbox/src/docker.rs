//! The Docker sandbox: the same handler command, run in a throw-away container of the queue's
//! image through the Docker Engine API (`bollard`).
//!
//! Every container gets no network (`network_mode: none`), a read-only root, a size-limited
//! tmpfs on `/tmp`, no capabilities, `no-new-privileges`, the sandbox's seccomp policy,
//! memory, CPU, process and file limits, a non-root user, and the workspace at the project
//! root's own path, so a stack trace names the same files as the original failure: a
//! size-limited tmpfs filled from a read-only bind of the copy when the container starts (the
//! image needs `/bin/sh` and `cp` for that). Each carries the labels in [`LABEL_SANDBOX`],
//! [`LABEL_JOB`] and [`LABEL_PID`], is removed after its run (also when the run is dropped),
//! and kills its handler by itself when SmartWorker dies (see [`ENTER_CONTAINER`]);
//! [`remove_leftovers`] removes what a crashed SmartWorker left behind.

use crate::error::SandboxError;
use crate::inside::{ENTER_CONTAINER, SOURCE_MOUNT, STDIN_MOUNT, identity_files};
use crate::options::{SandboxOptions, memory_limit_note};
use crate::seccomp;
use crate::workspace::Workspace;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, ResourcesUlimits};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder, StartContainerOptions,
    WaitContainerOptions,
};
use futures_util::StreamExt;
use smartworker_handler::{Capture, CommandOutput, CommandSpec};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// The label every SmartWorker sandbox container carries, with the value `1`.
pub const LABEL_SANDBOX: &str = "smartworker.sandbox";

/// The label naming the job whose handler the container runs.
pub const LABEL_JOB: &str = "smartworker.job";

/// The label naming the process id of the SmartWorker that started the container.
pub const LABEL_PID: &str = "smartworker.pid";

/// The Docker Engine socket used when none is configured.
pub const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// How long one call to the engine may take (the run itself has its own timeout).
const API_TIMEOUT_SECS: u64 = 60;

/// The search path inside the container.
const SANDBOX_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Where a Docker sandbox runs: the engine's socket and the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DockerOptions {
    /// The Docker Engine's Unix socket.
    pub socket: PathBuf,
    /// The image every container of this queue starts from; it must hold the handler's
    /// interpreter (e.g. `python3`) on `/usr/local/bin:/usr/bin:/bin`, and `/bin/sh` and `cp`.
    pub image: String,
}

impl DockerOptions {
    /// Options for `image` on the default socket.
    pub fn new(image: impl Into<String>) -> Self {
        DockerOptions {
            socket: PathBuf::from(DEFAULT_DOCKER_SOCKET),
            image: image.into(),
        }
    }
}

/// A connected Docker engine and the image to run; cheap to clone.
#[derive(Clone, Debug)]
pub struct DockerSandbox {
    client: Docker,
    image: String,
}

impl DockerSandbox {
    /// Connects to the engine, agrees on an API version, and checks that the image exists
    /// locally (it is never pulled: a sandbox must not fetch code from a registry).
    ///
    /// # Errors
    /// [`SandboxError::DockerUnavailable`] when the engine does not answer,
    /// [`SandboxError::ImageMissing`] when the image is not there.
    pub async fn connect(opts: &DockerOptions) -> Result<DockerSandbox, SandboxError> {
        let client = connect(&opts.socket).await?;
        client
            .inspect_image(&opts.image)
            .await
            .map_err(|_| SandboxError::ImageMissing(opts.image.clone()))?;
        Ok(DockerSandbox {
            client,
            image: opts.image.clone(),
        })
    }

    /// The image this sandbox runs.
    pub fn image(&self) -> &str {
        &self.image
    }

    /// Runs `spec` in a container over `ws`, feeding it `stdin`.
    ///
    /// The container sees `opts.env`, `PATH`, `HOME=/tmp` and `EXECUTION_CONTEXT=sandbox`
    /// only. Output is captured like a host run (the tail of each stream, `spec`'s cap), and a
    /// container the kernel killed for memory says so on stderr.
    ///
    /// # Errors
    /// The engine refused to create, start or attach to the container; a handler that fails
    /// inside is an `Ok` output with a non-zero exit.
    ///
    /// # Cancel safety
    /// Dropping the future removes the container (in a background task), and so kills every
    /// process in it.
    pub async fn run(
        &self,
        spec: &CommandSpec,
        ws: &Workspace,
        project_root: &Path,
        opts: &SandboxOptions,
        stdin: &[u8],
    ) -> Result<CommandOutput, SandboxError> {
        let root =
            std::fs::canonicalize(project_root).map_err(|source| SandboxError::ProjectRoot {
                path: project_root.to_owned(),
                source,
            })?;
        let user = container_user(opts.sandbox_user());
        let mounts = Mounts {
            source: ws.path().to_owned(),
            stdin: ws.write_beside("stdin", stdin)?,
            identity: identity_files(ws, user)?,
            project_bytes: ws.disk_bytes()?,
        };
        if nix::unistd::geteuid().is_root() {
            ws.hand_over(user.0, user.1)?;
        }
        let body = container_body(&self.image, spec, &mounts, &root, opts, user);
        let mut guard = Removal::create(self.client.clone(), body);
        guard.created().await?;
        let timeout = spec
            .timeout
            .map_or(opts.wall_timeout, |t| t.min(opts.wall_timeout));
        let run = self.drive(&guard.name, spec.max_output_bytes, timeout);
        let output = run.await;
        let oom = output.is_ok() && self.oom_killed(&guard.name).await;
        guard.remove_now().await;
        let mut output = output?;
        output.memory_killed = oom;
        if oom {
            output
                .stderr
                .push_str(&memory_limit_note(opts.memory_bytes));
        }
        Ok(output)
    }

    /// Attaches, starts, captures output and waits, killing at `timeout`. The container's
    /// stdin is held open meanwhile and closed only when the run is over: it is the container's
    /// lifeline (the job's own stdin is a file, [`STDIN_MOUNT`]).
    async fn drive(
        &self,
        id: &str,
        cap: usize,
        timeout: Duration,
    ) -> Result<CommandOutput, SandboxError> {
        let attach = AttachContainerOptionsBuilder::default()
            .stdin(true)
            .stdout(true)
            .stderr(true)
            .stream(true)
            .build();
        let mut attached = self
            .client
            .attach_container(id, Some(attach))
            .await
            .map_err(|e| engine_err("attach to the container", e))?;
        let started = Instant::now();
        self.client
            .start_container(id, None::<StartContainerOptions>)
            .await
            .map_err(|e| engine_err("start the container", e))?;

        let lifeline = attached.input;
        let mut stdout = Capture::new(cap);
        let mut stderr = Capture::new(cap);
        let ended = tokio::time::timeout(timeout, async {
            while let Some(Ok(chunk)) = attached.output.next().await {
                match chunk {
                    LogOutput::StdErr { message } => stderr.push(&message),
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        stdout.push(&message);
                    }
                    LogOutput::StdIn { .. } => {}
                }
            }
            self.exit_code(id).await
        })
        .await;
        let (code, timed_out) = match ended {
            Ok(code) => (code, false),
            Err(_) => {
                self.kill(id).await;
                (None, true)
            }
        };
        drop(lifeline);
        let (stdout, out_cut) = stdout.finish();
        let (stderr, err_cut) = stderr.finish();
        let (exit_code, signal) = split_exit(code);
        Ok(CommandOutput {
            exit_code,
            signal,
            stdout,
            stderr,
            timed_out,
            duration: started.elapsed(),
            truncated: out_cut || err_cut,
            memory_killed: false,
        })
    }

    /// The container's exit code once it has stopped; `None` when the engine cannot say.
    async fn exit_code(&self, id: &str) -> Option<i64> {
        let mut wait = self.client.wait_container(id, None::<WaitContainerOptions>);
        match wait.next().await {
            Some(Ok(done)) => Some(done.status_code),
            // bollard reports a non-zero exit as an error carrying the code.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Some(code),
            _ => None,
        }
    }

    async fn kill(&self, id: &str) {
        let kill = KillContainerOptionsBuilder::default()
            .signal("SIGKILL")
            .build();
        let _ = self.client.kill_container(id, Some(kill)).await;
    }

    async fn oom_killed(&self, id: &str) -> bool {
        let inspected = self.client.inspect_container(id, None).await;
        inspected
            .ok()
            .and_then(|c| c.state)
            .and_then(|s| s.oom_killed)
            .unwrap_or(false)
    }
}

/// Checks that a Docker engine answers on `socket` and returns its version, e.g. `20.10.24`.
///
/// # Errors
/// [`SandboxError::DockerUnavailable`] with the engine's or the socket's reason.
pub async fn check_docker(socket: &Path) -> Result<String, SandboxError> {
    let client = connect(socket).await?;
    let version = client
        .version()
        .await
        .map_err(|e| unavailable(socket, &e.to_string()))?;
    Ok(version.version.unwrap_or_else(|| "unknown".to_owned()))
}

/// Removes every sandbox container whose SmartWorker is no longer running: those labelled
/// [`LABEL_SANDBOX`] whose [`LABEL_PID`] names no live process. Meant for start-up, after a
/// crash left containers behind. Returns the names removed.
///
/// # Errors
/// The engine does not answer or refuses to list containers. A container that cannot be
/// removed is skipped (it may be going away by itself).
pub async fn remove_leftovers(socket: &Path) -> Result<Vec<String>, SandboxError> {
    let client = connect(socket).await?;
    let filters = HashMap::from([("label", vec![format!("{LABEL_SANDBOX}=1")])]);
    let list = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let containers = client
        .list_containers(Some(list))
        .await
        .map_err(|e| engine_err("list sandbox containers", e))?;
    let mut removed = Vec::new();
    for container in containers {
        let labels = container.labels.unwrap_or_default();
        let owner = labels.get(LABEL_PID).and_then(|p| p.parse::<u32>().ok());
        if owner.is_some_and(process_is_alive) {
            continue;
        }
        let Some(id) = container.id else { continue };
        let force = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        if client.remove_container(&id, Some(force)).await.is_ok() {
            let names = container.names.unwrap_or_default();
            removed.push(names.first().cloned().unwrap_or(id));
        }
    }
    Ok(removed)
}

async fn connect(socket: &Path) -> Result<Docker, SandboxError> {
    let shown = socket.to_string_lossy();
    if !socket.exists() {
        return Err(unavailable(socket, "no such socket"));
    }
    let client = Docker::connect_with_unix(&shown, API_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
        .map_err(|e| unavailable(socket, &e.to_string()))?;
    // The engine may be older than the API version bollard speaks by default (Debian's 20.10
    // speaks 1.41); negotiating picks the highest both know.
    client
        .negotiate_version()
        .await
        .map_err(|e| unavailable(socket, &e.to_string()))
}

fn unavailable(socket: &Path, reason: &str) -> SandboxError {
    SandboxError::DockerUnavailable {
        socket: socket.to_owned(),
        reason: reason.to_owned(),
    }
}

fn engine_err(what: &'static str, err: bollard::errors::Error) -> SandboxError {
    SandboxError::Docker {
        what,
        reason: err.to_string(),
    }
}

/// What a container is given from the host: the copy, the job's stdin, the sandbox user's
/// `passwd` and `group`, and what the copy takes on a tmpfs.
struct Mounts {
    source: PathBuf,
    stdin: PathBuf,
    identity: Vec<(PathBuf, &'static str)>,
    project_bytes: u64,
}

/// The container's definition: isolation, limits, labels, the workspace mounts and the command.
fn container_body(
    image: &str,
    spec: &CommandSpec,
    mounts: &Mounts,
    root: &Path,
    opts: &SandboxOptions,
    user: (u32, u32),
) -> ContainerCreateBody {
    let root_text = root.to_string_lossy().into_owned();
    let entry = ["/bin/sh", "-c", ENTER_CONTAINER, "sh", SOURCE_MOUNT];
    let mut cmd: Vec<String> = entry.map(str::to_owned).to_vec();
    cmd.extend([root_text.clone(), container_cwd(&spec.cwd, root)]);
    cmd.push(STDIN_MOUNT.to_owned());
    cmd.push(spec.program.clone());
    cmd.extend(spec.args.iter().cloned());
    ContainerCreateBody {
        image: Some(image.to_owned()),
        cmd: Some(cmd),
        entrypoint: Some(Vec::new()),
        env: Some(container_env(&opts.env)),
        working_dir: Some(root_text),
        // Docker always sets HOSTNAME; a fixed name keeps the container's id out of it.
        hostname: Some("sandbox".to_owned()),
        user: Some(format!("{}:{}", user.0, user.1)),
        labels: Some(labels(&opts.env)),
        network_disabled: Some(true),
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        open_stdin: Some(true),
        // The engine closes the container's stdin when SmartWorker's attachment ends, also
        // when SmartWorker dies: that is what stops the handler then.
        stdin_once: Some(true),
        tty: Some(false),
        host_config: Some(host_config(mounts, root, opts, user)),
        ..ContainerCreateBody::default()
    }
}

fn host_config(
    mounts: &Mounts,
    root: &Path,
    opts: &SandboxOptions,
    user: (u32, u32),
) -> HostConfig {
    let memory = i64::try_from(opts.memory_bytes).unwrap_or(i64::MAX);
    let tmp = format!("rw,nosuid,nodev,size={}", opts.tmp_bytes);
    let room = mounts.project_bytes.saturating_add(opts.workspace_bytes);
    let workspace = format!(
        "rw,nosuid,nodev,size={room},uid={},gid={},mode=0755",
        user.0, user.1
    );
    // Typed mounts rather than `src:dst:ro` strings, so a path holding a colon stays whole.
    let read_only = |from: &Path, to: &str| Mount {
        source: Some(from.to_string_lossy().into_owned()),
        target: Some(to.to_owned()),
        typ: Some(MountType::BIND),
        read_only: Some(true),
        ..Mount::default()
    };
    let mut binds = vec![
        read_only(&mounts.source, SOURCE_MOUNT),
        read_only(&mounts.stdin, STDIN_MOUNT),
    ];
    binds.extend(mounts.identity.iter().map(|(file, to)| read_only(file, to)));
    HostConfig {
        network_mode: Some("none".to_owned()),
        readonly_rootfs: Some(true),
        tmpfs: Some(HashMap::from([
            ("/tmp".to_owned(), tmp),
            (root.to_string_lossy().into_owned(), workspace),
        ])),
        cap_drop: Some(vec!["ALL".to_owned()]),
        security_opt: Some(vec![
            "no-new-privileges".to_owned(),
            format!("seccomp={}", seccomp::docker_profile()),
        ]),
        memory: Some(memory),
        // Swap counted in, so the limit cannot be dodged by swapping.
        memory_swap: Some(memory),
        nano_cpus: Some((opts.cpus.max(0.01) * 1e9) as i64),
        pids_limit: Some(i64::try_from(opts.max_processes).unwrap_or(i64::MAX)),
        ulimits: Some(vec![
            ulimit("nofile", opts.max_open_files),
            ulimit("fsize", opts.max_file_bytes),
            ulimit("cpu", opts.wall_timeout.as_secs().max(1)),
        ]),
        mounts: Some(binds),
        ipc_mode: Some("none".to_owned()),
        init: Some(false),
        ..HostConfig::default()
    }
}

fn ulimit(name: &str, value: u64) -> ResourcesUlimits {
    let value = i64::try_from(value).unwrap_or(i64::MAX);
    ResourcesUlimits {
        name: Some(name.to_owned()),
        soft: Some(value),
        hard: Some(value),
    }
}

fn container_env(env: &[(String, String)]) -> Vec<String> {
    let base = [("PATH", SANDBOX_PATH), ("HOME", "/tmp")];
    let given = env.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    // EXECUTION_CONTEXT comes last so the handler can always tell it is in the sandbox.
    let last = [(smartworker_handler::EXECUTION_CONTEXT_VAR, "sandbox")];
    base.into_iter()
        .chain(given)
        .chain(last)
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

fn labels(env: &[(String, String)]) -> HashMap<String, String> {
    let job = env
        .iter()
        .find(|(k, _)| k == "SMARTWORKER_JOB_ID")
        .map_or_else(String::new, |(_, v)| v.clone());
    HashMap::from([
        (LABEL_SANDBOX.to_owned(), "1".to_owned()),
        (LABEL_JOB.to_owned(), job),
        (LABEL_PID.to_owned(), std::process::id().to_string()),
    ])
}

/// The handler's working directory inside: its own, when that is inside the project.
fn container_cwd(cwd: &Path, root: &Path) -> String {
    let cwd = std::fs::canonicalize(cwd).unwrap_or_else(|_| cwd.to_owned());
    let inside = if cwd.starts_with(root) {
        cwd.as_path()
    } else {
        root
    };
    inside.to_string_lossy().into_owned()
}

/// The configured sandbox user, or this process's own ids when it is not root (it cannot give
/// the workspace away then, and its own ids are not root either).
fn container_user(configured: u32) -> (u32, u32) {
    if nix::unistd::geteuid().is_root() {
        return (configured, configured);
    }
    (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    )
}

/// A unique name, so leftovers are recognisable in `docker ps -a`.
fn container_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("smartworker-sandbox-{}-{nanos:09}", std::process::id())
}

/// A container's exit code as a process's: 128 + n means the main process died of signal n.
fn split_exit(code: Option<i64>) -> (Option<i32>, Option<i32>) {
    let Some(code) = code.and_then(|c| i32::try_from(c).ok()) else {
        return (None, None);
    };
    if (129..=128 + 64).contains(&code) {
        return (None, Some(code - 128));
    }
    (Some(code), None)
}

fn process_is_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// A container from its creation to its removal: removed when the run ends, or in the
/// background when the run is dropped, even while the engine is still creating it.
struct Removal {
    client: Docker,
    /// The container's unique name, known before the engine has created it.
    name: String,
    /// The creation, in a task of its own so that dropping the run cannot cut it in half and
    /// leave a container nobody knows about.
    creating: Option<JoinHandle<Result<(), SandboxError>>>,
    done: bool,
}

impl Removal {
    /// Starts creating a container of `body` under a fresh name.
    fn create(client: Docker, body: ContainerCreateBody) -> Removal {
        let name = container_name();
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        let engine = client.clone();
        let creating = tokio::spawn(async move {
            let created = engine.create_container(Some(options), body).await;
            created
                .map(|_| ())
                .map_err(|e| engine_err("create a container", e))
        });
        Removal {
            client,
            name,
            creating: Some(creating),
            done: false,
        }
    }

    /// Waits until the engine has created the container.
    async fn created(&mut self) -> Result<(), SandboxError> {
        let Some(creating) = self.creating.as_mut() else {
            return Ok(());
        };
        let created = creating.await;
        self.creating = None;
        match created {
            Ok(result) => result,
            Err(err) => Err(SandboxError::Docker {
                what: "create a container",
                reason: err.to_string(),
            }),
        }
    }

    async fn remove_now(mut self) {
        self.done = true;
        remove(self.client.clone(), self.name.clone()).await;
    }
}

impl Drop for Removal {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (client, name, creating) =
            (self.client.clone(), self.name.clone(), self.creating.take());
        let removing = runtime.spawn(async move {
            if let Some(creating) = creating {
                let _ = creating.await;
            }
            remove(client, name).await;
        });
        let mut pending = PENDING_REMOVALS.lock().unwrap_or_else(|p| p.into_inner());
        pending.retain(|task| !task.is_finished());
        pending.push(removing);
    }
}

/// Removals of containers whose run was dropped (cancelled on timeout or at shutdown), still
/// going on in the background.
static PENDING_REMOVALS: std::sync::Mutex<Vec<JoinHandle<()>>> = std::sync::Mutex::new(Vec::new());

/// Waits up to `limit` for the containers of cancelled runs to be removed; false when some
/// were still being removed. Call it before the process exits: a removal left running in the
/// background would die with the runtime and leave its container until the next start-up.
pub async fn finish_removals(limit: Duration) -> bool {
    let pending: Vec<JoinHandle<()>> = {
        let mut pending = PENDING_REMOVALS.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *pending)
    };
    let all = futures_util::future::join_all(pending);
    tokio::time::timeout(limit, all).await.is_ok()
}

async fn remove(client: Docker, id: String) {
    let force = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    let _ = client.remove_container(&id, Some(force)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_above_128_are_signals() {
        assert_eq!(split_exit(Some(0)), (Some(0), None));
        assert_eq!(split_exit(Some(1)), (Some(1), None));
        assert_eq!(split_exit(Some(137)), (None, Some(9)));
        assert_eq!(split_exit(None), (None, None));
    }

    #[test]
    fn container_sees_only_the_given_environment_and_sandbox_context() {
        let env = vec![
            ("SMARTWORKER_JOB_ID".to_owned(), "42".to_owned()),
            ("EXECUTION_CONTEXT".to_owned(), "host".to_owned()),
        ];
        let seen = container_env(&env);
        assert_eq!(
            seen.first().map(String::as_str),
            Some("PATH=/usr/local/bin:/usr/bin:/bin")
        );
        assert_eq!(
            seen.last().map(String::as_str),
            Some("EXECUTION_CONTEXT=sandbox")
        );
        assert_eq!(labels(&env).get(LABEL_JOB).map(String::as_str), Some("42"));
    }
}
