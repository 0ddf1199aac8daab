//! A cgroup of its own for each bubblewrap run, so memory and processes are limited for the run
//! as a whole, as a container's are, rather than per process.
//!
//! The cgroup is made under the cgroup this process is in (cgroup v1's `memory` and `pids`
//! hierarchies, or a cgroup v2 unified hierarchy whose controllers can be given to a child),
//! named `smartworker-<pid namespace>-<pid>-<n>` so a crashed SmartWorker's leftovers can be told
//! apart from a live one's. It holds every page the run charges: process memory, the tmpfs
//! pages of `/tmp`, the workspace and `/dev/shm`, and kernel memory such as inodes (swap too,
//! where the kernel offers it). Dropping a [`RunCgroup`] kills everything in it and removes it.

use crate::options::SandboxOptions;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How every run cgroup's name starts.
const CGROUP_PREFIX: &str = "smartworker-";

/// Where `/proc` says which cgroups this process is in.
const OWN_CGROUPS: &str = "/proc/self/cgroup";

/// Where `/proc` lists the mounts, cgroup file systems among them.
const MOUNTINFO: &str = "/proc/self/mountinfo";

/// How long removal waits for the killed processes to leave the cgroup.
const REMOVAL_WAIT: Duration = Duration::from_secs(10);

/// Run cgroups made by this process so far, for unique names.
static CREATED: AtomicU64 = AtomicU64::new(0);

/// The directories a run cgroup is made in: one per controller under cgroup v1, one under v2.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Parents {
    /// cgroup v1: the `memory` and the `pids` hierarchy, each at this process's own cgroup.
    V1 { memory: PathBuf, pids: PathBuf },
    /// cgroup v2: this process's own cgroup in the unified hierarchy.
    V2 { dir: PathBuf },
}

impl Parents {
    /// The parents of this process's run cgroups on this machine.
    fn find() -> Result<Parents, String> {
        let own = fs::read_to_string(OWN_CGROUPS).map_err(|e| format!("{OWN_CGROUPS}: {e}"))?;
        let mounts = fs::read_to_string(MOUNTINFO).map_err(|e| format!("{MOUNTINFO}: {e}"))?;
        let v1 = |controller| own_v1_dir(&own, &mounts, controller);
        if let (Some(memory), Some(pids)) = (v1("memory"), v1("pids")) {
            return Ok(Parents::V1 { memory, pids });
        }
        let Some(dir) = own_v2_dir(&own, &mounts) else {
            return Err("no cgroup v1 memory and pids hierarchies nor cgroup v2 is mounted".into());
        };
        let controllers = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
        let has = |c| controllers.split_whitespace().any(|have| have == c);
        if !has("memory") || !has("pids") {
            return Err(format!(
                "cgroup v2 at {dir:?} does not offer the memory and pids controllers"
            ));
        }
        Ok(Parents::V2 { dir })
    }

    fn dirs(&self) -> Vec<&Path> {
        match self {
            Parents::V1 { memory, pids } => vec![memory, pids],
            Parents::V2 { dir } => vec![dir],
        }
    }
}

/// This process's cgroup directory in the v1 hierarchy of `controller`, when one is mounted.
fn own_v1_dir(own: &str, mounts: &str, controller: &str) -> Option<PathBuf> {
    let path = own.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        controllers
            .split(',')
            .any(|c| c == controller)
            .then_some(path)
    })?;
    let mount = mounts
        .lines()
        .filter_map(Mount::parse)
        .find(|m| m.fstype == "cgroup" && m.options.split(',').any(|o| o == controller))?;
    mount.dir_of(path)
}

/// This process's cgroup directory in the unified (v2) hierarchy, when one is mounted.
fn own_v2_dir(own: &str, mounts: &str) -> Option<PathBuf> {
    let path = own.lines().find_map(|line| line.strip_prefix("0::"))?;
    let mount = mounts
        .lines()
        .filter_map(Mount::parse)
        .find(|m| m.fstype == "cgroup2")?;
    mount.dir_of(path)
}

/// One line of `/proc/self/mountinfo`, the fields a cgroup lookup needs.
struct Mount<'a> {
    /// The part of the hierarchy mounted, e.g. `/` or a container's own cgroup.
    root: &'a str,
    /// Where it is mounted.
    point: &'a str,
    fstype: &'a str,
    /// The super block's options; for cgroup v1 they name the controllers.
    options: &'a str,
}

impl<'a> Mount<'a> {
    fn parse(line: &'a str) -> Option<Mount<'a>> {
        let (left, right) = line.split_once(" - ")?;
        let mut left = left.split(' ').skip(3);
        let (root, point) = (left.next()?, left.next()?);
        let mut right = right.split(' ');
        let fstype = right.next()?;
        let options = right.nth(1).unwrap_or_default();
        Some(Mount {
            root,
            point,
            fstype,
            options,
        })
    }

    /// The directory of the cgroup at `path` in this mount's hierarchy.
    fn dir_of(&self, path: &str) -> Option<PathBuf> {
        let inside = path.strip_prefix(self.root.trim_end_matches('/'))?;
        Some(Path::new(self.point).join(inside.trim_start_matches('/')))
    }
}

/// The cgroup one bubblewrap run is in; dropping it kills the run's processes and removes it.
#[derive(Debug)]
pub(crate) struct RunCgroup {
    /// Its directory in each hierarchy (the memory one first under cgroup v1).
    dirs: Vec<PathBuf>,
    v2: bool,
    removed: bool,
}

impl RunCgroup {
    /// Makes the cgroup of one run, limited to `opts.memory_bytes` of memory (swap included
    /// where the kernel counts it) and `opts.max_processes` processes.
    ///
    /// # Errors
    /// Why the run cannot have a cgroup here (none mounted, not writable, controllers not
    /// delegated), in words for the run's record. Nothing is left behind.
    pub(crate) fn create(opts: &SandboxOptions) -> Result<RunCgroup, String> {
        RunCgroup::create_under(&Parents::find()?, opts)
    }

    /// [`RunCgroup::create`] under the given parents.
    fn create_under(parents: &Parents, opts: &SandboxOptions) -> Result<RunCgroup, String> {
        let name = run_name(std::process::id(), CREATED.fetch_add(1, Ordering::Relaxed));
        let mut cgroup = RunCgroup {
            dirs: Vec::new(),
            v2: matches!(parents, Parents::V2 { .. }),
            removed: false,
        };
        let made = cgroup.make(parents, &name, opts);
        match made {
            Ok(()) => Ok(cgroup),
            Err(reason) => {
                cgroup.remove();
                Err(reason)
            }
        }
    }

    /// Makes the directories under `parents` and sets the limits.
    fn make(&mut self, parents: &Parents, name: &str, opts: &SandboxOptions) -> Result<(), String> {
        if let Parents::V2 { dir } = parents {
            delegate_controllers(dir)?;
        }
        for parent in parents.dirs() {
            let dir = parent.join(name);
            fs::create_dir(&dir).map_err(|e| format!("cannot create cgroup {dir:?}: {e}"))?;
            self.dirs.push(dir);
        }
        self.set_limits(opts)
    }

    /// Writes the memory and process limits; swap is limited too when the kernel offers it.
    fn set_limits(&self, opts: &SandboxOptions) -> Result<(), String> {
        let (Some(memory), Some(pids)) = (self.dirs.first(), self.dirs.last()) else {
            return Err("the cgroup has no directory".into());
        };
        let bytes = opts.memory_bytes.to_string();
        if self.v2 {
            write(memory, "memory.max", &bytes)?;
            // No swap at all: the memory limit is then the whole run's, as `memsw` makes it.
            write_if_there(memory, "memory.swap.max", "0")?;
        } else {
            write(memory, "memory.limit_in_bytes", &bytes)?;
            write_if_there(memory, "memory.memsw.limit_in_bytes", &bytes)?;
        }
        write(pids, "pids.max", &opts.max_processes.to_string())
    }

    /// The `cgroup.procs` files a process writes its pid to, to enter the cgroup.
    pub(crate) fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// How many processes the kernel killed in this cgroup for going over its memory limit.
    pub(crate) fn oom_kills(&self) -> u64 {
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        let Some(memory) = self.dirs.first() else {
            return 0;
        };
        let text = fs::read_to_string(memory.join(file)).unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Kills every process in the cgroup and removes it, blocking until it is gone (or
    /// [`REMOVAL_WAIT`] has passed). Returns whether it is gone.
    pub(crate) fn remove(mut self) -> bool {
        self.removed = true;
        kill_and_remove(&self.dirs)
    }
}

impl Drop for RunCgroup {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        // A dropped run: the processes may take a moment to die, so wait off the caller's
        // thread, which may be an async runtime's.
        let dirs = std::mem::take(&mut self.dirs);
        std::thread::spawn(move || kill_and_remove(&dirs));
    }
}

/// The name of run `n` of SmartWorker `pid`, e.g. `smartworker-4026531836-812-3`.
///
/// The pid namespace is part of it: cgroup file systems are machine-wide, and a pid means
/// nothing outside its namespace.
fn run_name(pid: u32, n: u64) -> String {
    format!("{CGROUP_PREFIX}{}-{pid}-{n}", own_pid_namespace())
}

/// The inode of this process's pid namespace, e.g. `4026531836`; `0` when it cannot be read.
fn own_pid_namespace() -> u64 {
    let link = fs::read_link("/proc/self/ns/pid").unwrap_or_default();
    let link = link.to_string_lossy();
    link.trim_start_matches("pid:[")
        .trim_end_matches(']')
        .parse()
        .unwrap_or(0)
}

/// The SmartWorker pid in a run cgroup's name, when it was made in this pid namespace.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(CGROUP_PREFIX)?;
    let mut parts = rest.split('-');
    let namespace: u64 = parts.next()?.parse().ok()?;
    let pid = parts.next()?.parse().ok()?;
    parts.next()?.parse::<u64>().ok()?;
    (namespace == own_pid_namespace()).then_some(pid)
}

/// Gives the memory and pids controllers to the children of `dir` (cgroup v2), unless they
/// already have them.
fn delegate_controllers(dir: &Path) -> Result<(), String> {
    let enabled = fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
    let has = |c| enabled.split_whitespace().any(|have| have == c);
    if has("memory") && has("pids") {
        return Ok(());
    }
    // Refused (EBUSY) when `dir` holds processes and is not the root: cgroup v2 keeps
    // processes out of cgroups that give controllers to their children.
    write(dir, "cgroup.subtree_control", "+memory +pids")
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), String> {
    let path = dir.join(file);
    fs::write(&path, value).map_err(|e| format!("cannot write {value} to {path:?}: {e}"))
}

fn write_if_there(dir: &Path, file: &str, value: &str) -> Result<(), String> {
    if !dir.join(file).exists() {
        return Ok(());
    }
    write(dir, file, value)
}

/// Kills every process in `dirs` until none is left, then removes them. Returns whether all
/// are gone.
fn kill_and_remove(dirs: &[PathBuf]) -> bool {
    let deadline = Instant::now() + REMOVAL_WAIT;
    for dir in dirs {
        // cgroup v2 kills a whole cgroup at once, forks in flight included, where it can.
        // Opened, never created: only a cgroup v2 kernel has the file.
        let kill = fs::OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.kill"));
        if let Ok(mut kill) = kill {
            let _ = kill.write_all(b"1");
        }
    }
    loop {
        // A process forked while the others were being killed shows up on the next pass;
        // the pids limit bounds how many there can be.
        let mut left = 0;
        for pid in dirs.iter().flat_map(|d| pids_in(d)) {
            left += 1;
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        if left == 0 || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // The memory hierarchy is removed last, after every other hierarchy has let go.
    let mut gone = true;
    for dir in dirs.iter().rev() {
        gone &= remove_dir_retrying(dir, deadline);
    }
    gone
}

/// Removes an emptied cgroup; a process that has just died may still hold it for a moment.
fn remove_dir_retrying(dir: &Path, deadline: Instant) -> bool {
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return true,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => return false,
        }
    }
}

fn pids_in(dir: &Path) -> Vec<i32> {
    let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    procs
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Removes the run cgroups of SmartWorkers that are no longer running: those under this
/// process's own cgroups named for a pid of this pid namespace that no live process has,
/// killing whatever still runs in them. Meant for start-up, after a crash left cgroups behind.
/// Returns the directories removed; none when this machine gives no cgroups to runs.
pub fn remove_leftover_cgroups() -> Vec<PathBuf> {
    let Ok(parents) = Parents::find() else {
        return Vec::new();
    };
    let mut leftovers: Vec<(String, Vec<PathBuf>)> = Vec::new();
    for parent in parents.dirs() {
        let Ok(entries) = fs::read_dir(parent) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(owner) = owner_pid(&name) else {
                continue;
            };
            if Path::new("/proc").join(owner.to_string()).exists() {
                continue;
            }
            match leftovers.iter_mut().find(|(n, _)| *n == name) {
                Some((_, dirs)) => dirs.push(entry.path()),
                None => leftovers.push((name, vec![entry.path()])),
            }
        }
    }
    let mut removed = Vec::new();
    for (_, dirs) in leftovers {
        if kill_and_remove(&dirs) {
            removed.extend(dirs);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                          39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n\
                          41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";

    #[test]
    fn own_cgroups_are_found_in_each_mounted_hierarchy() {
        let own = "8:pids:/\n4:memory:/process_api/abc\n0::/user.slice\n";
        assert_eq!(
            own_v1_dir(own, MOUNTS, "memory"),
            Some(PathBuf::from("/sys/fs/cgroup/memory/process_api/abc"))
        );
        assert_eq!(
            own_v1_dir(own, MOUNTS, "pids"),
            Some(PathBuf::from("/sys/fs/cgroup/pids"))
        );
        assert_eq!(own_v1_dir(own, MOUNTS, "cpu"), None);
        assert_eq!(
            own_v2_dir(own, MOUNTS),
            Some(PathBuf::from("/sys/fs/cgroup/unified/user.slice"))
        );
    }

    #[test]
    fn a_mount_of_part_of_the_hierarchy_is_followed() {
        // A container sees its own cgroup as the root of the mount.
        let mounts = "12 1 0:40 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let own = "0::/docker/abc/worker\n";
        assert_eq!(
            own_v2_dir(own, mounts),
            Some(PathBuf::from("/sys/fs/cgroup/worker"))
        );
    }

    #[test]
    fn a_cgroup_that_cannot_be_made_says_why_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let parents = Parents::V1 {
            memory: dir.path().join("memory"),
            pids: dir.path().join("missing"),
        };
        std::fs::create_dir(dir.path().join("memory")).unwrap();

        let made = RunCgroup::create_under(&parents, &SandboxOptions::default());

        let reason = made.unwrap_err();
        assert!(reason.starts_with("cannot create cgroup"), "{reason}");
        assert!(reason.contains("missing"), "{reason}");
        let left: Vec<_> = fs::read_dir(dir.path().join("memory")).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn owner_pid_is_read_only_from_run_cgroups_of_this_pid_namespace() {
        let here = own_pid_namespace();
        assert_eq!(owner_pid(&run_name(812, 3)), Some(812));
        assert_eq!(owner_pid(&format!("smartworker-{here}-812-x")), None);
        assert_eq!(owner_pid(&format!("smartworker-{}-812-3", here + 1)), None);
        assert_eq!(owner_pid("docker"), None);
    }
}
