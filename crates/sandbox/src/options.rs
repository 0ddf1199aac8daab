//! The limits of one sandboxed run, the same whichever backend runs it.

use std::path::PathBuf;
use std::time::Duration;

/// The user (and group) id sandboxed code runs as, when nothing else is configured.
///
/// A dedicated id no account on a usual system has, rather than the shared `nobody` (65534):
/// other daemons running as `nobody` could otherwise read or write a workspace while it exists.
pub const DEFAULT_SANDBOX_UID: u32 = 61000;

/// What a run's stderr ends with when the kernel killed a process of it for memory, under
/// either backend.
pub(crate) fn memory_limit_note(memory_bytes: u64) -> String {
    format!(
        "\nsmartworker: the sandbox was killed for using more than its memory limit of \
         {memory_bytes} bytes\n"
    )
}

/// Isolation limits of one sandboxed run.
#[derive(Clone, Debug, PartialEq)]
pub struct SandboxOptions {
    /// Wall-clock time before the whole sandbox is killed; also the CPU-time limit.
    pub wall_timeout: Duration,
    /// Memory limit, in bytes, for the run as a whole: its processes, the pages of its tmpfs
    /// mounts and the kernel's memory for it (inodes), swap included where the kernel counts
    /// it; the run's cgroup under bubblewrap, the container's under Docker. Where bubblewrap
    /// gets no cgroup, each process's address space (`RLIMIT_AS`) instead.
    pub memory_bytes: u64,
    /// Processes (and threads) the sandbox may have at once: the run's pids cgroup under
    /// bubblewrap (`RLIMIT_NPROC`, counted per sandbox, where it gets no cgroup), the
    /// container's under Docker.
    pub max_processes: u64,
    /// Open files per process (`RLIMIT_NOFILE`).
    pub max_open_files: u64,
    /// The largest file a process may write (`RLIMIT_FSIZE`), in bytes.
    pub max_file_bytes: u64,
    /// Room for writes in the workspace, in bytes, on top of the project's own size.
    ///
    /// Each run gets the project in a tmpfs of its own sized to the project plus this, so what
    /// a run writes in all under the project is bounded, whatever the number of files.
    pub workspace_bytes: u64,
    /// The size of the fresh `/tmp`, in bytes.
    pub tmp_bytes: u64,
    /// The size of the fresh `/dev/shm`, in bytes (bubblewrap; Docker gives none, its IPC
    /// namespace being private). The rest of `/dev` is read-only.
    pub shm_bytes: u64,
    /// CPUs the run may use at once (Docker only; bubblewrap limits CPU time instead).
    pub cpus: f64,
    /// Host paths bound read-only at the same path, e.g. a toolchain under `/opt`
    /// (bubblewrap only; a Docker image brings its own).
    pub extra_ro_binds: Vec<PathBuf>,
    /// The only variables the handler sees, besides `PATH`, `HOME` and `EXECUTION_CONTEXT`.
    pub env: Vec<(String, String)>,
    /// The user (and group) id sandboxed code runs as on the host: under bubblewrap when this
    /// process is root, always under Docker.
    ///
    /// Dropping root is what makes `RLIMIT_NPROC` bite under bubblewrap: the kernel exempts
    /// processes whose host user is root from it, whatever user namespace they are in.
    pub host_user: u32,
}

impl SandboxOptions {
    /// What a run may write in all, in bytes: the workspace's room, `/tmp` and `/dev/shm`.
    pub fn written_bytes_limit(&self) -> u64 {
        self.workspace_bytes
            .saturating_add(self.tmp_bytes)
            .saturating_add(self.shm_bytes)
    }

    /// The user sandboxed code runs as: [`SandboxOptions::host_user`], unless that is root or
    /// a value the kernel reads as "leave the id unchanged" (`(uid_t)-1`, and 65535, the
    /// 16-bit -1), which would leave the sandbox running as this process's user.
    pub fn sandbox_user(&self) -> u32 {
        if is_usable_sandbox_uid(self.host_user) {
            self.host_user
        } else {
            DEFAULT_SANDBOX_UID
        }
    }
}

/// Whether `uid` can be the sandbox's user: not root, and not a value that means "unchanged".
pub fn is_usable_sandbox_uid(uid: u32) -> bool {
    uid != 0 && uid != u32::MAX && uid != u32::from(u16::MAX)
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            wall_timeout: Duration::from_secs(60),
            memory_bytes: 2 << 30,
            max_processes: 256,
            max_open_files: 1024,
            max_file_bytes: 256 << 20,
            workspace_bytes: 256 << 20,
            tmp_bytes: 256 << 20,
            shm_bytes: 64 << 20,
            cpus: 1.0,
            extra_ro_binds: Vec::new(),
            env: Vec::new(),
            host_user: DEFAULT_SANDBOX_UID,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reported: `APP_HEAL_SANDBOX_UID=4294967295` ran sandboxed code as root, since
    /// `setresuid(-1)` leaves the id unchanged.
    #[test]
    fn ids_that_mean_unchanged_or_root_fall_back_to_the_default_user() {
        for reserved in [0, u32::MAX, u32::from(u16::MAX)] {
            let opts = SandboxOptions {
                host_user: reserved,
                ..SandboxOptions::default()
            };
            assert_eq!(opts.sandbox_user(), DEFAULT_SANDBOX_UID, "{reserved}");
        }
        let opts = SandboxOptions {
            host_user: 62_000,
            ..SandboxOptions::default()
        };
        assert_eq!(opts.sandbox_user(), 62_000);
    }
}
