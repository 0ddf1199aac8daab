//! The bubblewrap sandbox: the same handler command, wrapped so that it runs in a workspace
//! copy with no network, no host secrets and hard limits.
//!
//! Layout seen inside: the system directories and a few `/etc` files read-only, a `passwd`
//! naming only the sandbox user, fresh `/proc`, a read-only `/dev` with a small `/dev/shm`, a
//! size-limited `/tmp`, and the workspace at the project root's own absolute path, so a stack
//! trace from the sandbox names the same files as the original failure. The workspace there is
//! a size-limited tmpfs filled from a read-only view of the copy when the run starts, so what a
//! run writes in all is bounded and stays in the sandbox.
//!
//! Memory and processes are limited for the run as a whole by a cgroup of its own
//! ([`RunCgroup`]), entered by the first shell before anything can fork; `prlimit` adds CPU
//! time, file size and open files per process. Where no cgroup can be made, the run goes ahead
//! with memory and processes limited per process (`RLIMIT_AS`, `RLIMIT_NPROC`) and its output
//! says so.

use crate::cgroup::RunCgroup;
use crate::error::SandboxError;
use crate::inside::{ENTER_WORKSPACE, SOURCE_MOUNT, identity_files, sandbox_ids};
use crate::options::{SandboxOptions, memory_limit_note};
use crate::resolve::{SYSTEM_DIRS, resolve_program};
use crate::workspace::{Workspace, WorkspaceOptions};
use smartworker_handler::{CommandOutput, CommandSpec, run_command};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Files and directories of `/etc` a handler may need: dynamic linking, alternatives, time
/// zones, CA certificates and Python's configuration. Never `/etc` wholesale.
const ETC_PIECES: [&str; 11] = [
    "/etc/alternatives",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/ssl/certs",
    "/etc/ssl/openssl.cnf",
    "/etc/ca-certificates",
    "/etc/python3",
    "/etc/mime.types",
];

/// The tool that sets the limits inside the sandbox (util-linux).
const PRLIMIT: &str = "/usr/bin/prlimit";

/// The tool that drops root before bubblewrap starts (util-linux).
const SETPRIV: &str = "/usr/bin/setpriv";

/// The tool that gives the binds a private mount namespace of their own (util-linux).
const UNSHARE: &str = "/usr/bin/unshare";

/// The shell that opens the seccomp filter files as descriptors 8 and 9 for bubblewrap.
const SH: &str = "/bin/sh";

/// Opens the two filter files (the first two arguments) on the descriptors bubblewrap's
/// `--add-seccomp-fd` flags name, then becomes the rest of the command line. The paths are
/// arguments, never part of the script.
const OPEN_FILTERS: &str = r#"deny=$1 clone3=$2; shift 2; exec "$@" 8<"$deny" 9<"$clone3""#;

/// Run as root in a private mount namespace: mounts each `SOURCE POINT` pair up to `--`
/// read-only, then becomes the rest of the command line. The sandbox user then binds the
/// points, which it can reach, instead of sources it may not (a toolchain under `/root`).
const MOUNT_BINDS: &str = r#"while [ "$1" != -- ]; do mount --bind -o ro "$1" "$2" || exit 125; shift 2; done; shift; exec "$@""#;

/// Run first: writes its own pid to each `cgroup.procs` file up to `--`, so everything it
/// becomes and starts is in the run's cgroup from the start, then becomes the rest of the
/// command line.
const ENTER_CGROUP: &str = r#"while [ "$1" != -- ]; do echo $$ > "$1" || { echo "smartworker: cannot enter the run's cgroup" >&2; exit 125; }; shift; done; shift; exec "$@""#;

/// The search path inside the sandbox.
const SANDBOX_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The command line that runs `spec` inside a bubblewrap sandbox over `ws`, with memory and
/// processes limited per process only ([`run_sandboxed`] adds a cgroup for the whole run).
///
/// The result is an ordinary [`CommandSpec`] for [`run_command`]: the handler runs the same
/// way, only somewhere else. `spec.env` and the host environment are dropped; the handler sees
/// `opts.env`, `PATH`, `HOME=/tmp` and `EXECUTION_CONTEXT=sandbox`. When this process is root,
/// the sandbox runs as `opts.host_user`, so [`Workspace::hand_over`] must give it the
/// workspace first ([`run_sandboxed`] does).
///
/// Everything in the sandbox runs under a seccomp filter refusing, with `EPERM`, the calls a
/// job never needs (see [`crate::denied_syscalls`]). The filter is written next to the
/// workspace and lives as long as `ws`; `/bin/sh` opens it for bubblewrap, so the command line
/// starts with the shell.
///
/// # Errors
/// The project root cannot be resolved, bubblewrap, prlimit, `/bin/sh` or the program is
/// missing, or the seccomp filter cannot be written.
pub fn wrap(
    spec: &CommandSpec,
    ws: &Workspace,
    project_root: &Path,
    opts: &SandboxOptions,
) -> Result<CommandSpec, SandboxError> {
    command_line(spec, ws, project_root, opts, None)
}

/// [`wrap`], run in `cgroup` when there is one: then the cgroup limits memory and processes
/// and `prlimit` only the rest.
fn command_line(
    spec: &CommandSpec,
    ws: &Workspace,
    project_root: &Path,
    opts: &SandboxOptions,
    cgroup: Option<&RunCgroup>,
) -> Result<CommandSpec, SandboxError> {
    let root = std::fs::canonicalize(project_root).map_err(|source| SandboxError::ProjectRoot {
        path: project_root.to_owned(),
        source,
    })?;
    let bwrap = find_tool("bubblewrap", "bwrap")?;
    let prlimit = require_tool("prlimit", PRLIMIT)?;

    let mut visible: Vec<&Path> = vec![&root];
    visible.extend(opts.extra_ro_binds.iter().map(PathBuf::as_path));
    let host_path = std::env::var_os("PATH");
    let resolved = resolve_program(&spec.program, host_path.as_deref(), &visible, &spec.cwd)?;
    let shell = require_tool("sh", SH)?;
    let (deny, clone3) = ws.seccomp_files()?;
    let user = drop_root_to(opts.sandbox_user());
    let binds: Vec<PathBuf> = opts
        .extra_ro_binds
        .iter()
        .chain(&resolved.binds)
        .cloned()
        .collect();

    let mut args = Vec::new();
    if let Some(cgroup) = cgroup {
        args.extend(["-c", ENTER_CGROUP, "sh"].map(str::to_owned));
        let procs = cgroup.procs_files();
        args.extend(procs.iter().map(|p| p.to_string_lossy().into_owned()));
        args.extend(["--".to_owned(), shell.clone()]);
    }
    args.extend(["-c", OPEN_FILTERS, "sh"].map(str::to_owned));
    args.extend([deny, clone3].map(|p| p.to_string_lossy().into_owned()));
    let sources = match user {
        Some(_) if !binds.is_empty() => mount_binds_privately(&mut args, ws, &binds, &shell)?,
        _ => binds.clone(),
    };
    if let Some(user) = user {
        args.push(require_tool("setpriv", SETPRIV)?);
        args.extend(setpriv_args(user));
    }
    args.push(bwrap);
    args.extend(isolation_args());
    args.extend(mount_args(opts, &identity_files(ws, sandbox_ids(user))?));
    for (source, bind) in sources.iter().zip(&binds) {
        args.extend(pair("--ro-bind", source, bind));
    }
    args.extend(workspace_args(ws, &root, opts)?);
    // Last of the mounts: the sandbox's own root (and `/etc` in it) and `/dev` become
    // read-only, as a container's are; `/tmp`, `/dev/shm` and the workspace stay writable,
    // being size-limited mounts of their own.
    args.extend(["--remount-ro", "/dev", "--remount-ro", "/"].map(str::to_owned));
    args.extend(["--chdir".to_owned(), root.to_string_lossy().into_owned()]);
    args.extend(env_args(&opts.env, &resolved.binds));
    args.extend(["--".to_owned(), shell.clone(), "-c".to_owned()]);
    args.push(ENTER_WORKSPACE.to_owned());
    args.extend(["sh".to_owned(), SOURCE_MOUNT.to_owned()]);
    args.extend([
        root.to_string_lossy().into_owned(),
        sandbox_cwd(&spec.cwd, &root),
    ]);
    args.push(prlimit);
    args.extend(limit_args(opts, cgroup.is_none()));
    args.extend(["--".to_owned(), resolved.program]);
    args.extend(spec.args.iter().cloned());

    Ok(CommandSpec {
        program: shell,
        args,
        cwd: ws.path().to_owned(),
        env: Vec::new(),
        clear_env: true,
        timeout: Some(
            spec.timeout
                .map_or(opts.wall_timeout, |t| t.min(opts.wall_timeout)),
        ),
        max_output_bytes: spec.max_output_bytes,
    })
}

/// Adds the step that, as root, mounts each bind on a point beside the workspace in a private
/// mount namespace (the host's mounts never change), and returns the points.
fn mount_binds_privately(
    args: &mut Vec<String>,
    ws: &Workspace,
    binds: &[PathBuf],
    shell: &str,
) -> Result<Vec<PathBuf>, SandboxError> {
    args.push(require_tool("unshare", UNSHARE)?);
    args.extend(["--mount", "--propagation", "private", "--"].map(str::to_owned));
    args.extend([shell.to_owned(), "-c".to_owned(), MOUNT_BINDS.to_owned()]);
    args.push("sh".to_owned());
    let mut points = Vec::new();
    for (index, bind) in binds.iter().enumerate() {
        let point = ws.mount_point(index)?;
        args.extend([bind, &point].map(|p| p.to_string_lossy().into_owned()));
        points.push(point);
    }
    args.push("--".to_owned());
    Ok(points)
}

/// The copy, read-only at [`SOURCE_MOUNT`], and the tmpfs at the project's path it is copied
/// into when the run starts: the project's size plus the room for writes.
fn workspace_args(
    ws: &Workspace,
    root: &Path,
    opts: &SandboxOptions,
) -> Result<Vec<String>, SandboxError> {
    let mut args = pair("--ro-bind", ws.path(), Path::new(SOURCE_MOUNT));
    let size = ws.disk_bytes()?.saturating_add(opts.workspace_bytes);
    args.extend(["--size".to_owned(), size.to_string()]);
    args.extend(["--tmpfs".to_owned(), root.to_string_lossy().into_owned()]);
    Ok(args)
}

/// Runs `spec` in a sandbox over `ws`, in a cgroup of its own: [`wrap`], then the handler
/// crate's [`run_command`].
///
/// The steps:
/// 1. Make the run's cgroup, limited to `opts.memory_bytes` and `opts.max_processes`. Where
///    none can be made, the run goes ahead with those limits per process, and its stderr ends
///    saying so: never silently weaker.
/// 2. Run the wrapped command; its first shell enters the cgroup before anything forks.
/// 3. Kill whatever is left in the cgroup and remove it, whether the run succeeded, failed or
///    timed out. When the kernel killed a process for memory, stderr ends saying so, as a
///    Docker run's does.
///
/// # Errors
/// The sandbox could not be built or started; a handler that fails inside it is an `Ok`
/// output with a non-zero exit.
///
/// # Cancel safety
/// Dropping the future kills bubblewrap and every process in the run's cgroup, and removes
/// the cgroup (on a thread of its own).
pub async fn run_sandboxed(
    spec: &CommandSpec,
    ws: &Workspace,
    project_root: &Path,
    opts: &SandboxOptions,
    stdin: &[u8],
) -> Result<CommandOutput, SandboxError> {
    let cgroup = RunCgroup::create(opts);
    let wrapped = command_line(spec, ws, project_root, opts, cgroup.as_ref().ok())?;
    if let Some(user) = drop_root_to(opts.sandbox_user()) {
        ws.hand_over(user, user)?;
    }
    let output = run_command(&wrapped, stdin).await;

    let (memory_killed, note) = match cgroup {
        Ok(cgroup) => {
            let killed = end_of_run(cgroup).await;
            (killed, killed.then(|| memory_limit_note(opts.memory_bytes)))
        }
        Err(reason) => {
            tracing::warn!(
                reason = %reason,
                "no cgroup for a bubblewrap run: memory and processes limited per process only"
            );
            (false, Some(per_process_note(&reason, opts)))
        }
    };
    let mut output = output?;
    output.memory_killed = memory_killed;
    if let Some(note) = note {
        output.stderr.push_str(&note);
    }
    Ok(output)
}

/// Reads whether the kernel killed a process of the run for memory, then empties and removes
/// the run's cgroup.
async fn end_of_run(cgroup: RunCgroup) -> bool {
    let oom_kills = cgroup.oom_kills();
    let removal = tokio::task::spawn_blocking(move || cgroup.remove()).await;
    if !matches!(removal, Ok(true)) {
        tracing::warn!("a run's cgroup could not be removed; start-up clean-up will retry");
    }
    oom_kills > 0
}

/// What a run's stderr ends with when no cgroup could hold it.
fn per_process_note(reason: &str, opts: &SandboxOptions) -> String {
    format!(
        "\nsmartworker: no cgroup could be made for this run ({reason}), so memory and processes \
         were limited per process only ({} bytes of address space and {} processes each), not \
         for the run as a whole\n",
        opts.memory_bytes, opts.max_processes
    )
}

/// Checks that bubblewrap can build a sandbox here and returns its version, e.g. `0.8.0`.
///
/// Blocks while it runs `/usr/bin/true` through the same wrapping as a real run; meant for
/// startup and `doctor`-style checks, not for an async hot path.
///
/// # Errors
/// [`SandboxError::ToolMissing`] when bubblewrap (or prlimit) is not installed,
/// [`SandboxError::Unusable`] when it cannot create namespaces, with its own explanation.
pub fn check_available() -> Result<String, SandboxError> {
    let bwrap = find_tool("bubblewrap", "bwrap")?;
    let version = Command::new(&bwrap)
        .arg("--version")
        .output()
        .map_err(|err| SandboxError::Unusable(format!("{bwrap} --version: {err}")))?;
    let version = String::from_utf8_lossy(&version.stdout);
    let version = version
        .trim()
        .trim_start_matches("bubblewrap")
        .trim()
        .to_owned();

    // A trivial run through the same wrapping as a real one, over an empty project.
    let project = tempfile::tempdir().map_err(|err| SandboxError::Unusable(err.to_string()))?;
    let ws = Workspace::create(project.path(), &WorkspaceOptions::default())?;
    let opts = SandboxOptions::default();
    let probe = CommandSpec::new("/usr/bin/true", &[], project.path());
    let wrapped = wrap(&probe, &ws, project.path(), &opts)?;
    if let Some(user) = drop_root_to(opts.sandbox_user()) {
        ws.hand_over(user, user)?;
    }
    let output = Command::new(&wrapped.program)
        .args(&wrapped.args)
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .map_err(|err| SandboxError::Unusable(format!("{bwrap}: {err}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(SandboxError::Unusable(stderr.trim().to_owned()));
    }
    Ok(version)
}

/// The user to become before starting bubblewrap: `Some` only when this process is root.
fn drop_root_to(host_user: u32) -> Option<u32> {
    nix::unistd::geteuid().is_root().then_some(host_user)
}

fn setpriv_args(user: u32) -> Vec<String> {
    let id = user.to_string();
    ["--reuid", &id, "--regid", &id, "--clear-groups", "--"]
        .map(str::to_owned)
        .to_vec()
}

fn isolation_args() -> Vec<String> {
    let flags = [
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--add-seccomp-fd",
        "8",
        "--add-seccomp-fd",
        "9",
    ];
    flags.map(str::to_owned).to_vec()
}

/// System dirs, `/etc` pieces and the sandbox user's identity, fresh `/proc` and `/dev`, a
/// size-limited `/dev/shm` and `/tmp`. Binds come after, so one under `/tmp` is not hidden.
fn mount_args(opts: &SandboxOptions, identity: &[(PathBuf, &'static str)]) -> Vec<String> {
    let mut args = Vec::new();
    for dir in SYSTEM_DIRS {
        args.extend(system_dir_args(Path::new(dir)));
    }
    for piece in ETC_PIECES {
        args.extend(pair("--ro-bind-try", Path::new(piece), Path::new(piece)));
    }
    for (file, place) in identity {
        args.extend(pair("--ro-bind", file, Path::new(place)));
    }
    args.extend(["--proc", "/proc", "--dev", "/dev"].map(str::to_owned));
    args.extend(["--size".to_owned(), opts.shm_bytes.to_string()]);
    args.extend(["--tmpfs", "/dev/shm"].map(str::to_owned));
    args.extend(["--size".to_owned(), opts.tmp_bytes.to_string()]);
    args.extend(["--tmpfs", "/tmp"].map(str::to_owned));
    args
}

/// `/lib` as the host has it: a symlink (merged `/usr`) is recreated, a directory is bound.
fn system_dir_args(dir: &Path) -> Vec<String> {
    if let Ok(target) = std::fs::read_link(dir) {
        return pair("--symlink", &target, dir);
    }
    if dir.is_dir() {
        return pair("--ro-bind", dir, dir);
    }
    Vec::new()
}

/// A cleared environment: `PATH` (led by the `bin` of each bound install prefix, so the
/// handler's own child processes find the same interpreter), `HOME`, the given variables, and
/// `EXECUTION_CONTEXT=sandbox` last, so the handler can always tell where it runs.
fn env_args(env: &[(String, String)], prefixes: &[PathBuf]) -> Vec<String> {
    let mut path: Vec<String> = prefixes
        .iter()
        .map(|p| p.join("bin"))
        .filter(|bin| bin.is_dir())
        .map(|bin| bin.to_string_lossy().into_owned())
        .collect();
    path.push(SANDBOX_PATH.to_owned());
    let path = path.join(":");
    let mut args = vec!["--clearenv".to_owned()];
    let base = [("PATH", path.as_str()), ("HOME", "/tmp")];
    let given = env.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let last = [(smartworker_handler::EXECUTION_CONTEXT_VAR, "sandbox")];
    for (key, value) in base.into_iter().chain(given).chain(last) {
        args.extend(["--setenv".to_owned(), key.to_owned(), value.to_owned()]);
    }
    args
}

/// The per-process limits: CPU time, open files and file size always, memory and processes
/// too when no cgroup limits them for the whole run.
fn limit_args(opts: &SandboxOptions, per_process_only: bool) -> Vec<String> {
    let cpu_secs = opts.wall_timeout.as_secs_f64().ceil().max(1.0);
    let mut args = Vec::new();
    if per_process_only {
        args.push(format!("--as={}", opts.memory_bytes));
    }
    args.push(format!("--cpu={cpu_secs}"));
    if per_process_only {
        args.push(format!("--nproc={}", opts.max_processes));
    }
    args.push(format!("--nofile={}", opts.max_open_files));
    args.push(format!("--fsize={}", opts.max_file_bytes));
    args
}

/// The handler's working directory inside: its own, when that is inside the project.
fn sandbox_cwd(cwd: &Path, root: &Path) -> String {
    let cwd = std::fs::canonicalize(cwd).unwrap_or_else(|_| cwd.to_owned());
    let inside = if cwd.starts_with(root) {
        cwd.as_path()
    } else {
        root
    };
    inside.to_string_lossy().into_owned()
}

fn pair(flag: &str, from: &Path, to: &Path) -> Vec<String> {
    let (from, to) = (from.to_string_lossy(), to.to_string_lossy());
    vec![flag.to_owned(), from.into_owned(), to.into_owned()]
}

fn find_tool(tool: &'static str, name: &str) -> Result<String, SandboxError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .map(|found| found.to_string_lossy().into_owned())
        .ok_or_else(|| SandboxError::ToolMissing {
            tool,
            program: name.to_owned(),
        })
}

fn require_tool(tool: &'static str, path: &str) -> Result<String, SandboxError> {
    if Path::new(path).is_file() {
        return Ok(path.to_owned());
    }
    Err(SandboxError::ToolMissing {
        tool,
        program: path.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_without_a_cgroup_says_its_limits_are_per_process_only() {
        let opts = SandboxOptions {
            memory_bytes: 256 << 20,
            max_processes: 32,
            ..SandboxOptions::default()
        };
        let note = per_process_note(
            "cannot create cgroup \"/sys/fs/cgroup/memory/x\": EROFS",
            &opts,
        );
        expect_test::expect![[r#"

            smartworker: no cgroup could be made for this run (cannot create cgroup "/sys/fs/cgroup/memory/x": EROFS), so memory and processes were limited per process only (268435456 bytes of address space and 32 processes each), not for the run as a whole
        "#]]
        .assert_eq(&note);
        let limits = limit_args(&opts, true);
        assert!(limits.contains(&"--as=268435456".to_owned()), "{limits:?}");
        assert!(limits.contains(&"--nproc=32".to_owned()), "{limits:?}");
        let limits = limit_args(&opts, false);
        assert!(
            !limits
                .iter()
                .any(|l| l.starts_with("--as") || l.starts_with("--nproc"))
        );
        assert!(limits.iter().any(|l| l.starts_with("--cpu=")), "{limits:?}");
    }
}
