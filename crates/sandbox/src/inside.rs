//! What both backends set up inside a sandbox the same way: where the copy is seen, how a run
//! enters its workspace, and who the sandbox user is.

use crate::error::SandboxError;
use crate::workspace::Workspace;
use std::path::PathBuf;

/// Where a sandbox sees the workspace copy, read-only; the run starts by copying it to the
/// project's own path.
pub(crate) const SOURCE_MOUNT: &str = "/.smartworker-source";

/// Where a container sees the job's stdin, read-only (its own stdin is the lifeline).
pub(crate) const STDIN_MOUNT: &str = "/.smartworker-stdin";

/// The shared first step of both entry scripts (arguments `SOURCE PROJECT CWD`, shifted off):
/// copy the read-only copy into the project's size-limited filesystem and enter the handler's
/// directory, or exit 125 saying so.
macro_rules! copy_in {
    () => {
        concat!(
            r#"src=$1 dst=$2 cwd=$3; shift 3; "#,
            r#"cp -RPp -- "$src/." "$dst/" && cd -- "$cwd" || "#,
            r#"{ echo "smartworker: cannot set up the workspace inside the sandbox" >&2; "#,
            r#"exit 125; }; unset OLDPWD; "#,
        )
    };
}

/// Arguments `SOURCE PROJECT CWD PROGRAM...`: copies the read-only copy into the project's
/// size-limited filesystem, enters the handler's directory and becomes the handler. Runs inside
/// the sandbox, as the sandbox user; paths are arguments, never part of the script.
pub(crate) const ENTER_WORKSPACE: &str = concat!(copy_in!(), r#"exec "$@""#);

/// [`ENTER_WORKSPACE`] for a container, with one more argument before the program, the job's
/// stdin file ([`STDIN_MOUNT`]). The container's first process must also stand in for
/// bubblewrap's `--die-with-parent`: the handler reads the job from that file, while the
/// container's own stdin stays open for as long as SmartWorker waits for the run. When it ends
/// (the run is over, or SmartWorker died and the engine closed it), everything else in the
/// container is killed, so a killed SmartWorker leaves no handler running.
pub(crate) const ENTER_CONTAINER: &str = concat!(
    copy_in!(),
    r#"input=$1; shift; exec 3<&0; "$@" <"$input" 3<&- & job=$!; "#,
    r#"{ while read -r _; do :; done; kill -s KILL -- -1 || kill -s KILL 0; } <&3 & "#,
    r#"wait "$job""#,
);

/// The user and group ids a sandbox runs as: `user` for both when this process hands the run
/// to another user, else this process's own.
pub(crate) fn sandbox_ids(user: Option<u32>) -> (u32, u32) {
    match user {
        Some(id) => (id, id),
        None => (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        ),
    }
}

/// Writes the sandbox user's `passwd` and `group` beside the copy and returns each with the
/// path it takes inside. Only that one user is named, so programs that look themselves up
/// (Node's `os.userInfo()`, Python's `getpass`) work, and no host account is revealed.
pub(crate) fn identity_files(
    ws: &Workspace,
    (uid, gid): (u32, u32),
) -> Result<Vec<(PathBuf, &'static str)>, SandboxError> {
    let passwd = format!("sandbox:x:{uid}:{gid}:sandbox:/tmp:/usr/sbin/nologin\n");
    let group = format!("sandbox:x:{gid}:\n");
    Ok(vec![
        (ws.write_beside("passwd", passwd.as_bytes())?, "/etc/passwd"),
        (ws.write_beside("group", group.as_bytes())?, "/etc/group"),
    ])
}
