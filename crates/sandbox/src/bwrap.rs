//! The bubblewrap sandbox: the same handler command, wrapped so that it runs in a workspace
//! copy with no network, no host secrets and hard limits.
//!
//! Layout seen inside: the system directories and a few `/etc` files read-only, fresh `/proc`,
//! `/dev` and `/tmp`, and the workspace read-write at the project root's own absolute path, so
//! a stack trace from the sandbox names the same files as the original failure.

use crate::error::SandboxError;
use crate::options::SandboxOptions;
use crate::resolve::{SYSTEM_DIRS, resolve_program};
use crate::workspace::{Workspace, WorkspaceOptions};
use smartworker_handler::{CommandOutput, CommandSpec, run_command};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

// FIXME: without /etc/passwd the sandbox user has no name, so calls such as Node's
// `os.userInfo()` fail; a generated one-line passwd file would fix that.
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

/// The shell that opens the seccomp filter files as descriptors 8 and 9 for bubblewrap.
const SH: &str = "/bin/sh";

/// Opens the two filter files (the first two arguments) on the descriptors bubblewrap's
/// `--add-seccomp-fd` flags name, then becomes the rest of the command line. The paths are
/// arguments, never part of the script.
const OPEN_FILTERS: &str = r#"deny=$1 clone3=$2; shift 2; exec "$@" 8<"$deny" 9<"$clone3""#;

/// The search path inside the sandbox.
const SANDBOX_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The command line that runs `spec` inside a bubblewrap sandbox over `ws`.
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
    let root = std::fs::canonicalize(project_root).map_err(|source| SandboxError::ProjectRoot {
        path: project_root.to_owned(),
        source,
    })?;
    let bwrap = find_tool("bubblewrap", "bwrap")?;
    let prlimit = require_tool("prlimit", PRLIMIT)?;

    let mut visible: Vec<&Path> = vec![&root];
    visible.extend(opts.extra_ro_binds.iter().map(PathBuf::as_path));
    let resolved = resolve_program(&spec.program, std::env::var_os("PATH").as_deref(), &visible)?;
    let shell = require_tool("sh", SH)?;
    let (deny, clone3) = ws.seccomp_files()?;

    let mut args = vec!["-c".to_owned(), OPEN_FILTERS.to_owned(), "sh".to_owned()];
    args.extend([deny, clone3].map(|p| p.to_string_lossy().into_owned()));
    if let Some(user) = drop_root_to(opts.sandbox_user()) {
        args.push(require_tool("setpriv", SETPRIV)?);
        args.extend(setpriv_args(user));
    }
    args.push(bwrap);
    args.extend(isolation_args());
    args.extend(mount_args(opts, resolved.bind.as_deref()));
    args.extend(pair("--bind", ws.path(), &root));
    // Last of the mounts: the sandbox's own root (and `/etc` in it) becomes read-only, as a
    // container's root is; `/tmp` and the workspace stay writable, being mounts of their own.
    args.extend(["--remount-ro".to_owned(), "/".to_owned()]);
    args.extend(["--chdir".to_owned(), sandbox_cwd(&spec.cwd, &root)]);
    args.extend(env_args(&opts.env));
    args.extend(["--".to_owned(), prlimit]);
    args.extend(limit_args(opts));
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

/// Runs `spec` in a sandbox over `ws`: [`wrap`], then the handler crate's [`run_command`].
///
/// # Errors
/// The sandbox could not be built or started; a handler that fails inside it is an `Ok`
/// output with a non-zero exit.
///
/// # Cancel safety
/// Dropping the future kills bubblewrap, and with it every process in the sandbox.
pub async fn run_sandboxed(
    spec: &CommandSpec,
    ws: &Workspace,
    project_root: &Path,
    opts: &SandboxOptions,
    stdin: &[u8],
) -> Result<CommandOutput, SandboxError> {
    let wrapped = wrap(spec, ws, project_root, opts)?;
    if let Some(user) = drop_root_to(opts.sandbox_user()) {
        ws.hand_over(user, user)?;
    }
    Ok(run_command(&wrapped, stdin).await?)
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

/// System dirs, `/etc` pieces, fresh `/proc`, `/dev`, `/tmp`, then the extra binds (after the
/// `/tmp` tmpfs, so a bind under `/tmp` is not hidden by it).
fn mount_args(opts: &SandboxOptions, program_prefix: Option<&Path>) -> Vec<String> {
    let mut args = Vec::new();
    for dir in SYSTEM_DIRS {
        args.extend(system_dir_args(Path::new(dir)));
    }
    for piece in ETC_PIECES {
        args.extend(pair("--ro-bind-try", Path::new(piece), Path::new(piece)));
    }
    args.extend(["--proc", "/proc", "--dev", "/dev"].map(str::to_owned));
    args.extend(["--size".to_owned(), opts.tmp_bytes.to_string()]);
    args.extend(["--tmpfs", "/tmp"].map(str::to_owned));
    for path in opts
        .extra_ro_binds
        .iter()
        .map(PathBuf::as_path)
        .chain(program_prefix)
    {
        args.extend(pair("--ro-bind", path, path));
    }
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

fn env_args(env: &[(String, String)]) -> Vec<String> {
    let mut args = vec!["--clearenv".to_owned()];
    let base = [("PATH", SANDBOX_PATH), ("HOME", "/tmp")];
    let given = env.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    // EXECUTION_CONTEXT comes last so the handler can always tell it is in the sandbox.
    let last = [(smartworker_handler::EXECUTION_CONTEXT_VAR, "sandbox")];
    for (key, value) in base.into_iter().chain(given).chain(last) {
        args.extend(["--setenv".to_owned(), key.to_owned(), value.to_owned()]);
    }
    args
}

fn limit_args(opts: &SandboxOptions) -> Vec<String> {
    let cpu_secs = opts.wall_timeout.as_secs_f64().ceil().max(1.0);
    vec![
        format!("--as={}", opts.memory_bytes),
        format!("--cpu={cpu_secs}"),
        format!("--nproc={}", opts.max_processes),
        format!("--nofile={}", opts.max_open_files),
        format!("--fsize={}", opts.max_file_bytes),
    ]
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
